package bench_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/refresh"
)

// BenchmarkTokenFloors measures a cached Engine.Token, one call at a time,
// against two floors, with one key and with floorKeys keys (a different
// key each call, in turn):
//
//   - reuse: golang.org/x/oauth2's ReuseTokenSource, one per key, each
//     asked once before the timer starts, then Token() on its valid token:
//     a mutex, a time.Now and an expiry check. It holds
//     one token and looks nothing up, so with many keys it is the cost of
//     the token alone, given the key's source.
//   - rwmap: a map[string]*refresh.AccessToken under a sync.RWMutex, keyed
//     by "app/id" strings made beforehand: the plainest keyed cache, with
//     the same validity check against time.Now.
//   - engine: Engine.Token(ctx, key, 0), its cache warmed with every key
//     before the timer starts, on time.Now, its cache bound above
//     floorKeys. The run fails unless every timed call was answered from
//     memory.
//
// Tokens and keys are the bench table's (storedata_test.go): rows valid at
// refTime (2030), read by the engine from a SQLite table of floorRows
// rows (loadStoreDB, cached between runs), and generated for the floors.
// Each reports vs-reuse, its ns/op ÷ reuse's in the same process.
//
// Wall time is noisy on a shared machine; bench/callgrind.sh counts the
// instructions per call of each under valgrind instead (see
// docs/BENCHMARKS.md), which this benchmark's loop, runFloor, makes easy
// to isolate (--toggle-collect).
func BenchmarkTokenFloors(b *testing.B) {
	for _, n := range []int{1, floorKeys} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			keys, tokens := floorTokens(n)
			b.Run("reuse", func(b *testing.B) {
				srcs := make([]oauth2.TokenSource, n)
				for i, at := range tokens {
					srcs[i] = oauth2.ReuseTokenSource(nil, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: at.Token.Reveal(), TokenType: "Bearer", Expiry: at.Expiry}))
					if _, err := srcs[i].Token(); err != nil { // cached from now on
						b.Fatal(err)
					}
				}
				runFloor(b, n, func(i int) error {
					t, err := srcs[i].Token()
					if err != nil || t.AccessToken == "" {
						return fmt.Errorf("reuse %d: %v", i, err)
					}
					return nil
				})
				engRecord(b, "floor-reuse")
			})
			b.Run("rwmap", func(b *testing.B) {
				var mu sync.RWMutex
				m := make(map[string]*refresh.AccessToken, n)
				skeys := make([]string, n)
				for i, k := range keys {
					skeys[i] = k.String()
					m[skeys[i]] = &tokens[i]
				}
				runFloor(b, n, func(i int) error {
					mu.RLock()
					at := m[skeys[i]]
					mu.RUnlock()
					if at == nil || !at.Valid(time.Now(), 0) {
						return fmt.Errorf("rwmap %s: no valid token", skeys[i])
					}
					return nil
				})
				engRecord(b, "floor-rwmap", "floor-reuse")
			})
			b.Run("engine", func(b *testing.B) {
				ctx := context.Background()
				f := loadStoreDB(b, "sqlite", floorRows)
				e, err := refresh.New(refresh.Config{Store: f.store, Refresher: &refresh.SpotifyRefresher{TokenURL: "http://127.0.0.1:1/unused"},
					CacheSize: 2 * floorKeys, UpstreamRate: rate.Inf,
					// A hit also notes the connection's use for the
					// scheduler, once per key per UseResolution (5 min by
					// default). Warming 100,000 keys under valgrind takes
					// longer than that, so with the default some timed hits
					// would note a use and others not, depending on how
					// long the warm-up took: bench/callgrind.sh's
					// difference of two runs would count the clock, not
					// the hit path. A day keeps every timed hit a plain hit.
					UseResolution: 24 * time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				for i, k := range keys {
					at, err := e.Token(ctx, k, 0)
					if err != nil {
						b.Fatalf("warm %s: %v", k, err)
					}
					if at.Token != tokens[i].Token {
						b.Fatalf("warm %s: the store's token is not the generator's", k)
					}
				}
				before := e.Stats()
				runFloor(b, n, func(i int) error {
					at, err := e.Token(ctx, keys[i], 0)
					if err != nil || at.Token == "" {
						return fmt.Errorf("engine %s: %v", keys[i], err)
					}
					return nil
				})
				after := e.Stats()
				if got := after.VendsMemory - before.VendsMemory; got != int64(b.N) || after.VendsStore != before.VendsStore {
					b.Fatalf("%d of %d calls answered from memory, %d from the store", got, b.N, after.VendsStore-before.VendsStore)
				}
				engRecord(b, "floor-engine", "floor-reuse", "floor-rwmap")
			})
		})
	}
}

// floorKeys is the many-keys case of BenchmarkTokenFloors; floorRows is
// the size of the SQLite table its engine reads, enough rows valid at
// refTime.
const (
	floorKeys = 100_000
	floorRows = 110_000
)

// floorTokens returns the keys and tokens of the first n rows of the
// bench table of floorRows rows whose access token is valid at refTime.
func floorTokens(n int) ([]spotoken.ConnectionKey, []refresh.AccessToken) {
	keys := make([]spotoken.ConnectionKey, 0, n)
	tokens := make([]refresh.AccessToken, 0, n)
	for i := 0; len(keys) < n && i < floorRows; i++ {
		c := genConnection(i, floorRows)
		if c.State != spotoken.StateActive || !c.Token.Expiry.After(refTime) {
			continue
		}
		keys = append(keys, c.Key())
		tokens = append(tokens, refresh.AccessToken{Token: c.Token.AccessToken, Expiry: c.Token.Expiry, Scopes: c.Scopes})
	}
	if len(keys) < n {
		panic(fmt.Sprintf("bench table of %d rows has %d valid tokens, want %d", floorRows, len(keys), n))
	}
	return keys, tokens
}

// runFloor is the timed loop of BenchmarkTokenFloors: op(i) b.N times, i
// going round 0..n-1, on one goroutine. bench/callgrind.sh collects
// instructions inside it alone.
//
//go:noinline
func runFloor(b *testing.B, n int, op func(i int) error) {
	b.ReportAllocs()
	b.ResetTimer()
	for k, i := 0, 0; k < b.N; k++ {
		if err := op(i); err != nil {
			b.Fatal(err)
		}
		if i++; i == n {
			i = 0
		}
	}
	b.StopTimer()
}
