package bench_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/sqlite"
)

// The refresh engine's benchmarks: Engine.Token's fast path (a cached,
// valid token) against the cheapest possible lookup and against
// golang.org/x/oauth2's ReuseTokenSource, and a stampede of callers on an
// expired token against a lone caller. Each compares with a baseline
// measured in the same process, which runs first, and reports the ratio of
// wall times (ns/op) as a metric of its own, vs-<baseline>. Every line also
// reports cpu-ns/op, the process's CPU time per operation (see doc.go).
//
// Run them in interleaved rounds, as the others:
//
//	for i in 1 2 3 4 5 6 7 8 9 10; do
//	  go test -run '^$' -bench 'TokenCached|Stampede' -benchtime 2s -count 1 ./bench/
//	done | tee /tmp/engine.txt
//
// and read medians and paired ratios with ratio.sh, renaming the baseline
// of interest BenchmarkBaseline:
//
//	grep '^BenchmarkTokenCached/' /tmp/engine.txt |
//	  sed -E 's#^BenchmarkTokenCached/syncmap(-[0-9]+)?[[:space:]]#BenchmarkBaseline\1 #' |
//	  UNIT=cpu-ns/op sh bench/ratio.sh
//
// (reuse instead of syncmap for the ratios to ReuseTokenSource;
// '^BenchmarkStampede/' and callers=1 for the stampede).
//
// On a machine of two CPUs shared with other work, what a counter shared by
// the goroutines costs depends on whether the two goroutines of
// b.RunParallel actually run at the same time, which varies from run to
// run: read several rounds.
//
// No timing is checked anywhere; what is checked is that each benchmark
// measured what it says (cached vends only, exactly one refresh per
// stampede, one token for every caller).

const engAppID = "bench-engine-app"

// engRatios records the ns/op of the last run of each engine benchmark in
// this process, so that a later one can report its ratio to an earlier one.
var engRatios = struct {
	sync.Mutex
	ns map[string]float64
}{ns: map[string]float64{}}

// engRecord stores name's ns/op and reports ns/op ÷ base's ns/op as the
// metric "vs-"+base for each base that has run in this process (the latest
// run of it: with interleaved rounds, the same round's).
func engRecord(b *testing.B, name string, bases ...string) {
	s := b.Elapsed().Seconds()
	if s <= 0 || b.N == 0 {
		return
	}
	ns := s * 1e9 / float64(b.N)
	engRatios.Lock()
	defer engRatios.Unlock()
	engRatios.ns[name] = ns
	for _, base := range bases {
		if d, ok := engRatios.ns[base]; ok && d > 0 {
			b.ReportMetric(ns/d, "vs-"+base)
		}
	}
}

// engWorld is the refresh package's test world (refresh/engine_test.go's
// newWorld): an emulator served by httptest, a real SQLite store on the
// emulator's clock, and an engine refreshing through the emulator with
// refresh.SpotifyRefresher.
type engWorld struct {
	emu    *emulator.Emulator
	srv    *httptest.Server
	store  *sqlite.DB
	engine *refresh.Engine
}

// newEngWorld builds a world. base is the emulator's base clock (its virtual
// clock is base plus every Advance); engineNow, when not nil, is the
// engine's clock instead of the emulator's virtual one.
func newEngWorld(b *testing.B, rotation string, base, engineNow func() time.Time) *engWorld {
	b.Helper()
	ctx := context.Background()
	rot, err := emulator.ParseRotation(rotation)
	if err != nil {
		b.Fatal(err)
	}
	emu, err := emulator.New(emulator.Config{
		Clients:         []emulator.Client{{ID: pubID, RedirectURIs: []string{redirect}}},
		AutoApprove:     benchUser,
		Rotation:        rot,
		RefreshLifetime: -1, // a long stampede run advances the clock by years
		Now:             base,
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	b.Cleanup(srv.Close)
	keys, err := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{7}}}, 1)
	if err != nil {
		b.Fatal(err)
	}
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(b.TempDir(), "db"), Keys: keys, Now: emu.Now})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	if err := store.CreateApp(ctx, &spotoken.App{ID: engAppID, ClientID: pubID, RedirectURIs: []string{redirect}}); err != nil {
		b.Fatal(err)
	}
	if engineNow == nil {
		engineNow = emu.Now
	}
	engine, err := refresh.New(refresh.Config{
		Store:     store,
		Refresher: &refresh.SpotifyRefresher{TokenURL: srv.URL + "/api/token", Now: emu.Now},
		Now:       engineNow,
		WaitPoll:  time.Millisecond,
		Jitter:    func() float64 { return 0.5 },
		// The default upstream limit (20/s) would make the stampede
		// benchmark measure the limiter: it refreshes as fast as it can.
		UpstreamRate: math.MaxFloat64,
	})
	if err != nil {
		b.Fatal(err)
	}
	return &engWorld{emu: emu, srv: srv, store: store, engine: engine}
}

// connect runs the PKCE flow at the emulator and stores the grant as
// connection id.
func (w *engWorld) connect(b *testing.B, id string) spotoken.ConnectionKey {
	b.Helper()
	ctx := context.Background()
	ac := accounts.New(accounts.Config{ClientID: pubID, AuthURL: w.srv.URL + "/authorize", TokenURL: w.srv.URL + "/api/token", Now: w.emu.Now})
	verifier := accounts.GenerateVerifier()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(ac.AuthCodeURL("s", redirect, spotoken.Scopes{"user-read-private"}, verifier, false))
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		b.Fatal(err)
	}
	g, err := ac.Exchange(ctx, loc.Query().Get("code"), redirect, verifier)
	if err != nil {
		b.Fatalf("exchange: %v", err)
	}
	c := &spotoken.Connection{AppID: engAppID, ID: id, SpotifyUserID: benchUser, Scopes: g.Scopes, State: spotoken.StateActive,
		Token: g.Token(), ConsentedAt: w.emu.Now()}
	if err := w.store.CreateConnection(ctx, c); err != nil {
		b.Fatal(err)
	}
	return c.Key()
}

func (w *engWorld) refreshes() int64 { return w.emu.Stats().TokenRequests["refresh_token"] }

// BenchmarkTokenCached measures Engine.Token on a cached, valid token (the
// fast path: a lock-free table lookup and an expiry check) from b.RunParallel
// goroutines, against:
//
//   - syncmap: the floor. A bare sync.Map holding the same
//     *refresh.AccessToken under the same spotoken.ConnectionKey: Load, the
//     type assertion, a copy of the struct and the same validity check
//     (AccessToken.Valid against time.Now, minTTL 0). Nothing can be
//     cheaper and still answer the question.
//   - syncmap-counted: the floor plus what the engine adds on this path
//     besides a function call: one atomic increment of a counter shared by
//     every goroutine (the engine counts memory vends in Stats). Reports
//     vs-syncmap.
//   - reuse: golang.org/x/oauth2's ReuseTokenSource over a static source,
//     Token() on a valid token (a mutex and a time.Now per call).
//   - engine: Engine.Token(ctx, key, 0), the engine on its default clock
//     (time.Now), the production configuration. Reports vs-syncmap and
//     vs-reuse, its ns/op ÷ theirs.
//   - engine-emuclock: the same, on the clock refresh/engine_test.go gives
//     the engine, the emulator's virtual clock (Emulator.Now, a mutex around
//     time.Now): what the test harness's clock adds. Reports vs-syncmap and
//     vs-engine.
//
// The engines use a real SQLite store and the emulator, and their cache is
// warmed before the timer starts; each run fails unless every call it
// timed was answered from memory. The emulator's base clock is the wall
// clock here, so that the wall-clock engine's token is valid (for an hour).
func BenchmarkTokenCached(b *testing.B) {
	ctx := context.Background()
	w := newEngWorld(b, "never", time.Now, time.Now)
	key := w.connect(b, "cached")
	warm, err := w.engine.Token(ctx, key, 0) // from the store, into the cache
	if err != nil {
		b.Fatal(err)
	}
	emuClock, err := refresh.New(refresh.Config{
		Store:     w.store,
		Refresher: &refresh.SpotifyRefresher{TokenURL: w.srv.URL + "/api/token", Now: w.emu.Now},
		Now:       w.emu.Now,
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := emuClock.Token(ctx, key, 0); err != nil {
		b.Fatal(err)
	}

	b.Run("syncmap", func(b *testing.B) {
		var m sync.Map
		at := warm
		m.Store(key, &at)
		benchCached(b, func() error {
			v, ok := m.Load(key)
			if !ok {
				return fmt.Errorf("%s not in the map", key)
			}
			if at := *v.(*refresh.AccessToken); !at.Valid(time.Now(), 0) {
				return fmt.Errorf("%s: token not valid", key)
			}
			return nil
		})
		engRecord(b, "syncmap")
	})
	b.Run("syncmap-counted", func(b *testing.B) {
		var m sync.Map
		at := warm
		m.Store(key, &at)
		vends := new(engCounter)
		benchCached(b, func() error {
			v, ok := m.Load(key)
			if !ok {
				return fmt.Errorf("%s not in the map", key)
			}
			if at := *v.(*refresh.AccessToken); !at.Valid(time.Now(), 0) {
				return fmt.Errorf("%s: token not valid", key)
			}
			vends.n.Add(1)
			return nil
		})
		if got := vends.n.Load(); got != int64(b.N) {
			b.Fatalf("counted %d of %d", got, b.N)
		}
		engRecord(b, "syncmap-counted", "syncmap")
	})
	b.Run("reuse", func(b *testing.B) {
		src := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: warm.Token.Reveal(), TokenType: "Bearer", Expiry: warm.Expiry})
		ts := oauth2.ReuseTokenSource(nil, src)
		if _, err := ts.Token(); err != nil { // cache it
			b.Fatal(err)
		}
		benchCached(b, func() error {
			t, err := ts.Token()
			if err != nil {
				return err
			}
			if t.AccessToken == "" {
				return fmt.Errorf("empty token")
			}
			return nil
		})
		engRecord(b, "reuse", "syncmap")
	})
	engineRun := func(e *refresh.Engine, name string, bases ...string) func(*testing.B) {
		return func(b *testing.B) {
			before := e.Stats()
			benchCached(b, func() error {
				at, err := e.Token(ctx, key, 0)
				if err != nil {
					return err
				}
				if at.Token == "" {
					return fmt.Errorf("empty token")
				}
				return nil
			})
			after := e.Stats()
			if got := after.VendsMemory - before.VendsMemory; got != int64(b.N) || after.VendsStore != before.VendsStore || after.VendsRefresh != before.VendsRefresh {
				b.Fatalf("%d of %d calls answered from memory, %d from the store, %d by refreshing",
					got, b.N, after.VendsStore-before.VendsStore, after.VendsRefresh-before.VendsRefresh)
			}
			engRecord(b, name, bases...)
		}
	}
	b.Run("engine", engineRun(w.engine, "engine", "syncmap", "reuse"))
	b.Run("engine-emuclock", engineRun(emuClock, "engine-emuclock", "syncmap", "engine"))
}

// engCounter is a counter alone on its cache line (its size class is 128
// bytes, so it starts on a line boundary), like the engine's vends counter,
// whose line holds nothing the fast path reads.
type engCounter struct {
	n atomic.Int64
	_ [120]byte
}

// benchCached runs get from b.RunParallel goroutines (GOMAXPROCS of them:
// the work is CPU-bound, more goroutines would only queue) and fails the
// benchmark on the first error. It returns the cpu-ns/op it reports, 0
// where the process's CPU time is not known.
func benchCached(b *testing.B, get func() error) float64 {
	b.Helper()
	var fail firstError
	b.ReportAllocs()
	cpu0, cpuOK := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(); err != nil {
				fail.set(err)
				return
			}
		}
	})
	b.StopTimer()
	if fail.err != nil {
		b.Fatal(fail.err)
	}
	if cpu1, ok := processCPU(); ok && cpuOK {
		cpu := float64((cpu1 - cpu0).Nanoseconds()) / float64(b.N)
		b.ReportMetric(cpu, "cpu-ns/op")
		return cpu
	}
	return 0
}

// BenchmarkStampede measures a stampede on an expired token: each iteration
// moves the emulator's clock past the token's expiry, then callers
// goroutines, started beforehand and released together, call Engine.Token
// for the connection. ns/op is the time from their release until the last
// one has its token, one refresh through the emulator and the SQLite store
// included. callers=1 is the baseline, a lone caller refreshing;
// callers=1000 reports vs-1caller, its ns/op ÷ the lone caller's.
//
// Every line reports refreshes/stampede, the refresh_token requests the
// emulator received per iteration, which must be 1: the benchmark fails
// otherwise, or if a caller got an error or a token other than the rest.
// The emulator rotates the refresh token on every refresh, so a lost
// rotation would fail the next iteration with invalid_grant.
func BenchmarkStampede(b *testing.B) {
	for _, callers := range []int{1, 1000} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) { benchStampede(b, callers) })
	}
}

func benchStampede(b *testing.B, callers int) {
	ctx := context.Background()
	start := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	w := newEngWorld(b, "always", func() time.Time { return start }, nil)
	key := w.connect(b, "stampede")
	if _, err := w.engine.Token(ctx, key, 0); err != nil {
		b.Fatal(err)
	}
	tokens := make([]spotoken.Secret, callers)
	errs := make([]error, callers)
	var total int64
	var cpu time.Duration
	cpuOK := true
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		w.emu.Advance(emulator.DefaultTokenTTL + time.Second)
		before := w.refreshes()
		release := make(chan struct{})
		var ready, done sync.WaitGroup
		for i := range callers {
			ready.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				ready.Done()
				<-release
				at, err := w.engine.Token(ctx, key, 0)
				tokens[i], errs[i] = at.Token, err
			}()
		}
		ready.Wait()
		cpu0, ok0 := processCPU()
		b.StartTimer()
		close(release)
		done.Wait()
		b.StopTimer()
		cpu1, ok1 := processCPU()
		cpuOK = cpuOK && ok0 && ok1
		cpu += cpu1 - cpu0
		n := w.refreshes() - before
		total += n
		for i := range callers {
			if errs[i] != nil {
				b.Fatalf("caller %d: %v", i, errs[i])
			}
			if tokens[i] == "" || tokens[i] != tokens[0] {
				b.Fatalf("caller %d got another token than caller 0", i)
			}
		}
		if n != 1 {
			b.Fatalf("%d refresh_token requests for one stampede of %d callers, want 1", n, callers)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(total)/float64(b.N), "refreshes/stampede")
	if cpuOK {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
	if bad := w.emu.Stats().TokenErrors["invalid_grant"]; bad != 0 {
		b.Fatalf("%d invalid_grant answers: a rotation was lost", bad)
	}
	if callers == 1 {
		engRecord(b, "1caller")
	} else {
		engRecord(b, fmt.Sprintf("%dcallers", callers), "1caller")
	}
}
