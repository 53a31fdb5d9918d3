package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"slices"
	"strconv"
	"sync"

	"github.com/spotoken/spotoken"
)

// FingerprintPrefix starts every fingerprint: "hmac-sha256:V:HEX", V the
// version of the fingerprint key, HEX the HMAC-SHA256 of the secret.
const FingerprintPrefix = "hmac-sha256:"

// Fingerprinter computes the keyed fingerprints that the trail stores in
// place of secrets. Its keys are derived from the deployment's sealing keys
// (cmd/spotoken derives one per key version), so nobody without the key
// file can test a guess against a fingerprint, and the same secret has the
// same fingerprint on every replica. It is safe for concurrent use.
type Fingerprinter struct {
	keys    map[uint32][]byte
	primary uint32
	pools   map[uint32]*sync.Pool // of hash.Hash: hmac.New costs more than the HMAC of a token

	// recent remembers the primary fingerprints of recent secrets: a
	// service vends the same cached token many times an hour. It holds
	// what the process holds anyway (the engine caches the same tokens),
	// in memory only, and is emptied when full.
	mu     sync.Mutex
	recent map[spotoken.Secret]string
}

// recentMax bounds Fingerprinter.recent.
const recentMax = 8192

// NewFingerprinter returns a fingerprinter that fingerprints under the key of
// version primary and can match fingerprints made under any of keys.
func NewFingerprinter(keys map[uint32][]byte, primary uint32) *Fingerprinter {
	cp := make(map[uint32][]byte, len(keys))
	for v, k := range keys {
		cp[v] = slices.Clone(k)
	}
	f := &Fingerprinter{keys: cp, primary: primary, pools: make(map[uint32]*sync.Pool, len(cp)), recent: make(map[spotoken.Secret]string)}
	for v, k := range cp {
		f.pools[v] = &sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}
	}
	return f
}

// Fingerprint returns s's fingerprint under the primary key; "" for an
// empty secret, or when the fingerprinter has no key.
func (f *Fingerprinter) Fingerprint(s spotoken.Secret) string {
	if f == nil || s == "" {
		return ""
	}
	f.mu.Lock()
	fp, ok := f.recent[s]
	f.mu.Unlock()
	if ok {
		return fp
	}
	fp = f.under(f.primary, s)
	f.mu.Lock()
	if len(f.recent) >= recentMax {
		clear(f.recent)
	}
	f.recent[s] = fp
	f.mu.Unlock()
	return fp
}

// All returns s's fingerprints under every key, newest version first: what
// to search the trail for, since records written before a key rotation
// carry the older version's.
func (f *Fingerprinter) All(s spotoken.Secret) []string {
	if f == nil || s == "" {
		return nil
	}
	versions := make([]uint32, 0, len(f.keys))
	for v := range f.keys {
		versions = append(versions, v)
	}
	slices.Sort(versions)
	slices.Reverse(versions)
	out := make([]string, 0, len(versions))
	for _, v := range versions {
		out = append(out, f.under(v, s))
	}
	return out
}

func (f *Fingerprinter) under(version uint32, s spotoken.Secret) string {
	pool, ok := f.pools[version]
	if !ok {
		return ""
	}
	m := pool.Get().(hash.Hash)
	m.Reset()
	io.WriteString(m, s.Reveal())
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	pool.Put(m)
	var buf [len(FingerprintPrefix) + 11 + 2*sha256.Size]byte
	b := append(buf[:0], FingerprintPrefix...)
	b = strconv.AppendUint(b, uint64(version), 10)
	b = append(b, ':')
	return string(hex.AppendEncode(b, sum[:]))
}
