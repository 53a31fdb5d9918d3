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
// each an open-addressing hash table (linear probing) of the key's 64-bit
// hash, with CLOCK (second-chance) eviction once the shard is full. Its
// table never grows: it has at least twice as many slots as the shard may
// hold entries, so a probe soon meets an empty slot.
//
// A hit hashes the key once (strHash over its two strings), then reads
// slots with atomic loads, taking no lock, and compares the key; it
// allocates nothing and writes no shared memory except its shard's hit
// counter and, once, the entry's reference bit. Writers (put, remove, the
// eviction) hold the shard's mutex and delete by backward shift, with no
// tombstones; a reader racing one may miss an entry that is being moved,
// and then reads the store as for any miss, but never finds an entry after
// its removal returned. Two keys with the same 64-bit hash share an entry:
// the entry records its key, a lookup of the other key misses, and they
// replace each other.
type tokenCache struct {
	seed   uint64
	shards [cacheShards]cacheShard
	limit  int // entries per shard
	evicts atomic.Int64
}

type cacheShard struct {
	slots []atomic.Pointer[cached] // len a power of two, ≥ 2 limit
	mu    sync.Mutex
	ring  []*cached // CLOCK order; an entry no longer live is a free place
	hand  int
	n     int // live entries
	hits  atomic.Int64
	_     [32]byte // keep neighbouring shards' hot words apart
}

// cached is a token in memory, served until it is no longer valid or, with
// a CacheTTL, until until. Its fields do not change once it is stored,
// except the reference bit and the time of the last recorded use, and
// those its shard's mutex guards.
type cached struct {
	AccessToken
	until time.Time
	key   spotoken.ConnectionKey
	hash  uint64
	// expNano and untilNano are Expiry and until in unix nanoseconds
	// (untilNano 0: none), so that a hit compares integers.
	expNano, untilNano int64
	ref                atomic.Bool // CLOCK: used since the hand last passed
	usedNano           atomic.Int64
	// Guarded by the shard's mutex:
	place int  // index in its shard's ring
	live  bool // in the table
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{seed: rand.Uint64(), limit: max(1, (size+cacheShards-1)/cacheShards)}
	slots := 1
	for slots < 2*c.limit {
		slots <<= 1
	}
	for i := range c.shards {
		c.shards[i].slots = make([]atomic.Pointer[cached], slots)
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

// strHash mixes s, and its length, into h: 16 bytes per multiplication.
// Keys are made of short strings: 8 to 16 bytes take one multiplication of
// their first and last 8 (overlapping) here, inlined; the others go to
// strHashOther.
func strHash(h uint64, s string) uint64 {
	n := len(s)
	if n < 8 || n > 16 {
		return strHashOther(h, s)
	}
	b := unsafe.Slice(unsafe.StringData(s), n)
	return mum(h^binary.LittleEndian.Uint64(b)^hashK1, binary.LittleEndian.Uint64(b[n-8:])^hashK2^uint64(n))
}

// strHashOther is strHash of strings shorter than 8 bytes or longer than 16.
func strHashOther(h uint64, s string) uint64 {
	n := len(s)
	b := unsafe.Slice(unsafe.StringData(s), n)
	if n < 8 {
		var w uint64
		for i, c := range b {
			w |= uint64(c) << (8 * i)
		}
		return mum(h^w^hashK1, uint64(n)^hashK2)
	}
	for i := 0; n-i > 16; i += 16 {
		h = mum(h^binary.LittleEndian.Uint64(b[i:])^hashK1, binary.LittleEndian.Uint64(b[i+8:])^hashK2)
	}
	// The last 16 bytes, overlapping what was mixed if need be.
	return mum(h^binary.LittleEndian.Uint64(b[n-16:])^hashK1, binary.LittleEndian.Uint64(b[n-8:])^hashK2^uint64(n))
}

func (c *tokenCache) shard(h uint64) *cacheShard { return &c.shards[h>>(64-6)] }

// get returns key's entry, or nil. It takes no lock.
func (c *tokenCache) get(key spotoken.ConnectionKey, h uint64) *cached {
	s := c.shard(h)
	mask := uint64(len(s.slots) - 1)
	for i, n := h&mask, 0; n < len(s.slots); i, n = (i+1)&mask, n+1 {
		e := s.slots[i].Load()
		if e == nil {
			return nil
		}
		if e.hash == h && e.key == key {
			return e
		}
	}
	return nil
}

// hit records a hit on e.
func (c *tokenCache) hit(e *cached) {
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	c.shard(e.hash).hits.Add(1)
}

// find returns the table index of the entry with hash h, or of the empty
// slot where it would go; s.mu is held.
func (s *cacheShard) find(h uint64) int {
	mask := uint64(len(s.slots) - 1)
	i := h & mask
	for {
		e := s.slots[i].Load()
		if e == nil || e.hash == h {
			return int(i)
		}
		i = (i + 1) & mask
	}
}

// delete empties table index i by backward shift: each later entry of the
// run that may move closer to its home slot does, the hole moving with it;
// s.mu is held.
func (s *cacheShard) delete(i int) {
	mask := len(s.slots) - 1
	s.slots[i].Load().live = false
	s.n--
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		e := s.slots[j].Load()
		if e == nil {
			break
		}
		home := int(e.hash) & mask
		// e stays unless its home is cyclically outside (i, j].
		if (i < j && i < home && home <= j) || (i > j && (i < home || home <= j)) {
			continue
		}
		s.slots[i].Store(e) // for a moment at both places: a reader finds one
		i = j
	}
	s.slots[i].Store(nil)
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
	i := s.find(e.hash)
	old := s.slots[i].Load()
	if keep != nil && !keep(old) {
		return false
	}
	e.live = true
	if old != nil { // the same hash: e takes its places
		if old.key == e.key {
			e.usedNano.Store(old.usedNano.Load()) // its last recorded use stays recorded
		}
		old.live = false
		e.place = old.place
		s.ring[e.place] = e
		s.slots[i].Store(e)
		return true
	}
	if len(s.ring) < c.limit {
		e.place = len(s.ring)
		s.ring = append(s.ring, e)
	} else {
		var evicted bool
		e.place, evicted = s.evict()
		if evicted {
			c.evicts.Add(1)
		}
		s.ring[e.place] = e
		i = s.find(e.hash) // the eviction may have moved the empty slot
	}
	s.n++
	s.slots[i].Store(e)
	return true
}

// evict frees a place in the full ring by CLOCK and returns it: the first
// place whose entry is gone, or was not used since the hand last passed it
// (whose entry it removes, reporting so); s.mu is held.
func (s *cacheShard) evict() (place int, evicted bool) {
	for {
		v, at := s.ring[s.hand], s.hand
		s.hand = (s.hand + 1) % len(s.ring)
		if v.live && v.ref.Swap(false) {
			continue
		}
		if !v.live {
			return at, false
		}
		s.delete(s.find(v.hash))
		return at, true
	}
}

// remove drops key's entry; with only non-nil, only if it is only.
func (c *tokenCache) remove(key spotoken.ConnectionKey, h uint64, only *cached) {
	s := c.shard(h)
	s.mu.Lock()
	i := s.find(h)
	if e := s.slots[i].Load(); e != nil && e.key == key && (only == nil || e == only) {
		s.delete(i)
	}
	s.mu.Unlock()
}

// len counts the entries.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.n
		s.mu.Unlock()
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
