package refresh

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/spotoken/spotoken"
)

// DefaultCacheSize is how many connections' tokens an engine keeps in
// memory unless Config.CacheSize says otherwise. An entry costs about
// CacheEntryBytes of heap with Spotify-sized tokens (see
// TestCacheEntryBytes): 50,000 entries are about 37 MB, however many
// distinct connections are vended.
const DefaultCacheSize = 50_000

// CacheEntryBytes is the approximate heap one cache entry holds with a
// Spotify-sized access token (about 300 bytes) and a few scopes; it is
// measured by TestCacheEntryBytes.
const CacheEntryBytes = 750

// cacheShards is how many independently locked parts the cache has; a
// power of two, so that a shard is the top bits of the key's hash.
const cacheShards = 64

// tokenCache is the engine's bounded token cache: a fixed number of shards,
// each a map from the key's 64-bit hash to its entry under a RWMutex, with
// CLOCK (second-chance) eviction once the shard is full. A hit hashes the
// key once (strHash over its two strings), takes a read lock, and reads a
// map keyed by an integer; it allocates nothing and writes no shared
// memory except its shard's hit counter and, once, the entry's reference
// bit. Two keys with the same 64-bit hash share a slot: the entry records
// its key, a lookup of the other key misses, and they replace each other.
type tokenCache struct {
	seed   uint64
	shards [cacheShards]cacheShard
	limit  int // entries per shard
	evicts atomic.Int64
}

type cacheShard struct {
	mu   sync.RWMutex
	m    map[uint64]*cached
	ring []*cached // CLOCK order; an entry no longer in m is a free slot
	hand int
	hits atomic.Int64
	_    [32]byte // keep neighbouring shards' hot words apart
}

// cached is a token in memory, served until it is no longer valid or, with
// a CacheTTL, until until. Its fields do not change once it is stored,
// except the reference bit and the time of the last recorded use.
type cached struct {
	AccessToken
	until time.Time
	key   spotoken.ConnectionKey
	hash  uint64
	// expNano and untilNano are Expiry and until in unix nanoseconds
	// (untilNano 0: none), so that a hit compares integers.
	expNano, untilNano int64
	slot               int         // index in its shard's ring
	ref                atomic.Bool // CLOCK: used since the hand last passed
	usedNano           atomic.Int64
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{seed: rand.Uint64(), limit: max(1, (size+cacheShards-1)/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]*cached)
	}
	return c
}

// hash is key's 64-bit hash, of both strings (two apps' connections with
// the same id must not collide), seeded per engine. It reads a word at a
// time and mixes with 64×64→128-bit multiplications (as wyhash does): a
// quarter of the instructions of two maphash.String calls, which matters on
// the hit path. Its quality only decides how evenly keys spread and how
// rarely two keys share an entry; a lookup compares the whole key.
func (c *tokenCache) hash(key spotoken.ConnectionKey) uint64 {
	return mum(strHash(strHash(c.seed, key.AppID), key.ID), hashK3)
}

// The multipliers of strHash: odd 64-bit constants of wyhash.
const (
	hashK1 = 0xa0761d6478bd642f
	hashK2 = 0xe7037ed1a0b428db
	hashK3 = 0x8ebc6af09c88c6e3
)

// mum multiplies to 128 bits and folds.
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// strHash mixes s, and its length, into h.
func strHash(h uint64, s string) uint64 {
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	h = mum(h^uint64(len(b)), hashK1)
	if len(b) < 8 {
		var w uint64
		for i, c := range b {
			w |= uint64(c) << (8 * i)
		}
		return mum(h^w, hashK2)
	}
	i := 0
	for ; len(b)-i > 8; i += 8 {
		h = mum(h^binary.LittleEndian.Uint64(b[i:]), hashK2)
	}
	// The last 8 bytes, overlapping words already mixed if need be.
	return mum(h^binary.LittleEndian.Uint64(b[len(b)-8:]), hashK2)
}

func (c *tokenCache) shard(h uint64) *cacheShard { return &c.shards[h>>(64-6)] }

// get returns key's entry, or nil. hit marks it used for CLOCK.
func (c *tokenCache) get(key spotoken.ConnectionKey, h uint64) *cached {
	s := c.shard(h)
	s.mu.RLock()
	e := s.m[h]
	s.mu.RUnlock()
	if e == nil || e.key != key {
		return nil
	}
	return e
}

// hit records a hit on e, found in the shard of hash h.
func (c *tokenCache) hit(e *cached) {
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	c.shard(e.hash).hits.Add(1)
}

// put stores e (whose key and hash are set) in place of any entry with its
// hash; keep, when not nil, must approve of the entry it replaces (or of
// none), else nothing is stored. A full shard first evicts an entry by
// CLOCK. put reports whether it stored e.
func (c *tokenCache) put(e *cached, keep func(old *cached) bool) bool {
	e.key = spotoken.ConnectionKey{AppID: strings.Clone(e.key.AppID), ID: strings.Clone(e.key.ID)} // do not pin a request's buffers
	s := c.shard(e.hash)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.m[e.hash]
	if keep != nil && !keep(old) {
		return false
	}
	if old != nil {
		if old.key == e.key {
			e.usedNano.Store(old.usedNano.Load()) // its last recorded use stays recorded
		}
		e.slot = old.slot
		s.ring[e.slot] = e
		s.m[e.hash] = e
		return true
	}
	if len(s.ring) < c.limit {
		e.slot = len(s.ring)
		s.ring = append(s.ring, e)
		s.m[e.hash] = e
		return true
	}
	for {
		v := s.ring[s.hand]
		if s.m[v.hash] == v && v.ref.Swap(false) {
			s.hand = (s.hand + 1) % len(s.ring)
			continue
		}
		if s.m[v.hash] == v {
			delete(s.m, v.hash)
			c.evicts.Add(1)
		}
		e.slot = s.hand
		s.ring[s.hand] = e
		s.m[e.hash] = e
		s.hand = (s.hand + 1) % len(s.ring)
		return true
	}
}

// remove drops key's entry; with only non-nil, only if it is only.
func (c *tokenCache) remove(key spotoken.ConnectionKey, h uint64, only *cached) {
	s := c.shard(h)
	s.mu.Lock()
	if e := s.m[h]; e != nil && e.key == key && (only == nil || e == only) {
		delete(s.m, h) // its ring slot is free: the hand takes it first
	}
	s.mu.Unlock()
}

// len counts the entries.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// hits counts the hits since the cache was made.
func (c *tokenCache) hits() int64 {
	var n int64
	for i := range c.shards {
		n += c.shards[i].hits.Load()
	}
	return n
}
