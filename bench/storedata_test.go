package bench_test

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
)

// The synthetic connections the store benchmarks load. Every field of row i
// is a pure function of i and the table size n, so the loader, the checks
// and the benchmarks agree on what the table holds without reading it back,
// and a cached database can be checked against the generator.

// envConnections sizes the large table of the store benchmarks.
const envConnections = "SPOTOKEN_BENCH_CONNECTIONS"

const (
	// smallRows is the size of the baseline table of the Due benchmarks, and
	// the default of envConnections.
	smallRows = 10000
	// benchApps is how many apps the connections are spread over, in
	// contiguous blocks of row numbers.
	benchApps = 4
	// dueWindow is how far ahead of the store's clock Due looks: the
	// scheduler calls Due(now+dueWindow, dueLimit).
	dueWindow = 5 * time.Minute
	dueLimit  = 500
	// dataVersion names the generator below and the loaders' layout: bump it
	// whenever either changes, so that cached databases are rebuilt.
	dataVersion = 1
)

// refTime is the store's clock in every store benchmark and the "now" the
// loaded rows are relative to: fixed, so a cached database stays valid.
var refTime = time.Date(2030, time.January, 1, 0, 0, 0, 0, time.UTC)

// Microseconds, the stores' precision.
const (
	usSecond = int64(time.Second / time.Microsecond)
	usMinute = 60 * usSecond
	usHour   = 60 * usMinute
	usDay    = 24 * usHour
)

// benchConnections returns the size of the large table: envConnections, or
// smallRows when it is unset.
func benchConnections() (int, error) {
	s := os.Getenv(envConnections)
	if s == "" {
		return smallRows, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 99_999_999 {
		return 0, fmt.Errorf("%s=%q: want a number of connections from 1 to 99999999", envConnections, s)
	}
	return n, nil
}

// benchKeys is the key ring that seals every benchmark database: fixed, so a
// cached database opens in a later process.
func benchKeys() (*seal.KeyRing, error) {
	return seal.NewKeyRing([]seal.Key{{Version: 1, Material: sha256.Sum256([]byte("spotoken store benchmarks, key 1"))}}, 1)
}

// splitmix is SplitMix64's finalizer: a cheap, well-mixed hash of x.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// rowKind is what a generated connection is doing at refTime.
type rowKind uint8

const (
	// kindActive: refreshed within the last hour; expires in (now, now+1h].
	kindActive rowKind = iota
	// kindBackoff: active, its last refreshes failed transiently and it is
	// held back until NextAttemptAt, in (now, now+15m]; its access token
	// expires in [now-30m, now+5m). Due skips it.
	kindBackoff
	// kindRetry: like kindBackoff, but the backoff has run out
	// (NextAttemptAt in (now-5m, now]) and the token expired in the last
	// 30 minutes: due, and first in Due's order.
	kindRetry
	// kindNeedsReauth: Spotify answered invalid_grant; tokens kept, the
	// access token expired up to 30 days ago.
	kindNeedsReauth
	// kindRevoked: tokens erased.
	kindRevoked
)

// The mix, in thousandths of all rows: 3% needs_reauth, 1% revoked; of the
// active rest, 1% in backoff and 0.5% whose backoff just ran out.
const (
	permilleNeedsReauth = 30
	permilleRevoked     = 10
	permilleBackoff     = 10 // of the active rows
	permilleRetry       = 5  // of the active rows
)

// rowMeta is the part of row i that decides whether Due returns it.
type rowMeta struct {
	kind     rowKind
	h        uint64 // the row's hash, for the other fields
	expiry   int64  // access token expiry, unix µs; 0: none
	next     int64  // NextAttemptAt, unix µs; 0: none
	failures int
	version  int64
}

// rowMetaAt returns the Due-relevant fields of row i.
func rowMetaAt(i int) rowMeta {
	h := splitmix(uint64(i) ^ 0x5370746b62656e63)
	h2 := splitmix(h)
	t0 := refTime.UnixMicro()
	m := rowMeta{h: h, version: 1 + int64(h>>48)%500}
	switch s := h % 1000; {
	case s < permilleNeedsReauth:
		m.kind = kindNeedsReauth
		m.expiry = t0 - 1 - int64(h2%uint64(30*usDay))
	case s < permilleNeedsReauth+permilleRevoked:
		m.kind = kindRevoked
	default:
		switch a := (h >> 10) % 1000; {
		case a < permilleBackoff:
			m.kind = kindBackoff
			m.expiry = t0 - 30*usMinute + int64(h2%uint64(35*usMinute))
			m.next = t0 + 1 + int64((h2>>32)%uint64(15*usMinute))
			m.failures = 1 + int((h>>20)%5)
		case a < permilleBackoff+permilleRetry:
			m.kind = kindRetry
			m.expiry = t0 - 30*usMinute + int64(h2%uint64(30*usMinute))
			m.next = t0 - int64((h2>>32)%uint64(5*usMinute))
			m.failures = 1 + int((h>>20)%5)
		default:
			m.kind = kindActive
			m.expiry = t0 + 1 + int64(h2%uint64(usHour))
		}
	}
	return m
}

// due reports whether Due(refTime+dueWindow, ...) with the store's clock at
// refTime returns the row.
func (m rowMeta) due() bool {
	t0 := refTime.UnixMicro()
	switch m.kind {
	case kindActive, kindBackoff, kindRetry:
		return m.expiry < t0+int64(dueWindow/time.Microsecond) && (m.next == 0 || m.next <= t0)
	}
	return false
}

// casEligible reports whether the CAS benchmarks may rewrite the row: an
// active connection outside Due's window, so that moving its expiry to
// refTime+1h leaves Due's answer as it was.
func (m rowMeta) casEligible() bool {
	return m.kind == kindActive && !m.due()
}

func benchAppID(a int) string { return "bench-app-" + strconv.Itoa(a) }

// rowKey returns row i's key in a table of n rows: apps in contiguous blocks,
// ids zero-padded, so keys sort as row numbers do.
func rowKey(i, n int) spotoken.ConnectionKey {
	return spotoken.ConnectionKey{AppID: benchAppID(i * benchApps / n), ID: fmt.Sprintf("conn-%08d", i)}
}

// benchScopeSets are the granted scopes, normalized.
var benchScopeSets = []spotoken.Scopes{
	spotoken.ParseScopes("user-read-private user-read-email"),
	spotoken.ParseScopes("playlist-read-private playlist-modify-private playlist-modify-public user-read-private user-read-email"),
	spotoken.ParseScopes("user-read-playback-state user-modify-playback-state user-read-currently-playing user-read-recently-played user-library-read"),
}

const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// Token lengths like Spotify's: access tokens "BQ…" of about 200
// characters, refresh tokens "AQ…" of 131.
const (
	accessTokenLen  = 200
	refreshTokenLen = 131
)

// fakeToken returns a token of length n that starts with prefix, the rest
// filled from seed.
func fakeToken(prefix string, n int, seed uint64) spotoken.Secret {
	b := make([]byte, n)
	copy(b, prefix)
	var x uint64
	for j := len(prefix); j < n; j++ {
		if (j-len(prefix))%10 == 0 {
			seed = splitmix(seed)
			x = seed
		}
		b[j] = tokenAlphabet[x&63]
		x >>= 6
	}
	return spotoken.Secret(b)
}

func usToTime(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// genConnection returns row i of a table of n rows, as the store's
// Connection returns it (times in UTC at microsecond precision).
func genConnection(i, n int) *spotoken.Connection {
	m := rowMetaAt(i)
	k := rowKey(i, n)
	h3 := splitmix(m.h + 3)
	t0 := refTime.UnixMicro()
	consented := t0 - usDay - int64(h3%uint64(365*usDay))
	c := &spotoken.Connection{
		AppID:               k.AppID,
		ID:                  k.ID,
		SpotifyUserID:       string(fakeToken("", 25, h3)),
		DisplayName:         "Bench User " + strconv.Itoa(i),
		Scopes:              benchScopeSets[(m.h>>40)%uint64(len(benchScopeSets))],
		State:               spotoken.StateActive,
		Version:             m.version,
		ConsecutiveFailures: m.failures,
		NextAttemptAt:       usToTime(m.next),
		ConsentedAt:         usToTime(consented),
		CreatedAt:           usToTime(consented),
		UpdatedAt:           usToTime(consented),
	}
	if m.kind != kindRevoked {
		c.Token = spotoken.Token{
			AccessToken:  fakeToken("BQ", accessTokenLen, m.h^1),
			RefreshToken: fakeToken("AQ", refreshTokenLen, m.h^2),
			Expiry:       usToTime(m.expiry),
		}
		c.LastRefreshAt = usToTime(m.expiry - usHour)
		c.UpdatedAt = c.LastRefreshAt
	}
	switch m.kind {
	case kindBackoff, kindRetry:
		c.LastErrorCode = "server_error"
		c.UpdatedAt = usToTime(t0 - int64(h3>>40)%usMinute)
	case kindNeedsReauth:
		c.State = spotoken.StateNeedsReauth
		c.LastErrorCode = "invalid_grant"
	case kindRevoked:
		c.State = spotoken.StateRevoked
		c.UpdatedAt = usToTime(t0 - int64(h3>>40)%usDay)
	}
	return c
}

// tableFacts is what the benchmarks need to know of a generated table of n
// rows, computed from the generator alone.
type tableFacts struct {
	n int
	// dueCount is how many rows Due(refTime+dueWindow, ∞) returns.
	dueCount int
	// firstDue is the first dueLimit rows Due returns, in its order.
	firstDue []spotoken.DueConnection
	// cas are rows the CAS benchmarks rewrite: active, outside Due's window,
	// spread over the whole table; at most 4096.
	cas []spotoken.ConnectionKey
	// sample are rows, not in cas, that the loader's check reads back
	// through the store and compares with the generator; about 256, every
	// kind included.
	sample []int
	// kinds counts the rows of each kind.
	kinds [kindRevoked + 1]int
}

func tableFactsFor(n int) *tableFacts {
	f := &tableFacts{n: n}
	type due struct {
		i      int
		expiry int64
	}
	var dues []due
	for i := range n {
		m := rowMetaAt(i)
		f.kinds[m.kind]++
		if m.due() {
			dues = append(dues, due{i, m.expiry})
		}
	}
	f.dueCount = len(dues)
	// Due's order: expiry, then app and id, which sort as row numbers do.
	slices.SortFunc(dues, func(a, b due) int {
		return cmp.Or(cmp.Compare(a.expiry, b.expiry), cmp.Compare(a.i, b.i))
	})
	for _, d := range dues[:min(dueLimit, len(dues))] {
		f.firstDue = append(f.firstDue, spotoken.DueConnection{Key: rowKey(d.i, n), Expiry: usToTime(d.expiry), Version: rowMetaAt(d.i).version})
	}
	inCAS := map[int]bool{}
	stride := max(1, n/4096)
	for i := 3; i < n && len(f.cas) < 4096; i += stride {
		if rowMetaAt(i).casEligible() {
			f.cas = append(f.cas, rowKey(i, n))
			inCAS[i] = true
		}
	}
	stride = max(1, n/256)
	for i := 5; i < n; i += stride {
		if !inCAS[i] {
			f.sample = append(f.sample, i)
		}
	}
	// Make sure every kind is checked, however small the sample.
	for k := kindActive; k <= kindRevoked; k++ {
		for i := range n {
			if rowMetaAt(i).kind == k && !inCAS[i] {
				f.sample = append(f.sample, i)
				break
			}
		}
	}
	return f
}
