package refresh_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
)

// TestSchedulerActiveWindow: the scheduler refreshes ahead of expiry the
// connections a caller used within its active window, as the engine
// recorded them, and leaves idle ones alone; an idle one is refreshed when
// a caller asks for it. Uses are coalesced: many vends, one write.
func TestSchedulerActiveWindow(t *testing.T) {
	w := newWorld(t, "always", nil)
	used, idle := w.connect("used"), w.connect("idle")
	w.emu.Advance(3 * time.Hour) // both idle past the window, tokens expired
	if _, err := w.engine.Token(ctx, used, 0); err != nil {
		t.Fatal(err)
	}
	if got := w.refreshes(); got != 1 {
		t.Fatalf("%d refreshes for the expired token, want 1 on demand", got)
	}
	for range 100 { // from memory: the use is already noted
		if _, err := w.engine.Token(ctx, used, 0); err != nil {
			t.Fatal(err)
		}
	}
	if s := w.engine.Stats(); s.UsesPending != 1 {
		t.Fatalf("%d uses pending after 101 vends of one connection, want 1", s.UsesPending)
	}
	w.emu.Advance(57 * time.Minute) // the used token has 3 minutes left
	s := &refresh.Scheduler{Engine: w.engine, Store: w.store, Window: 5 * time.Minute}
	if p, err := s.RunOnce(ctx); err != nil || p.Due != 0 {
		t.Fatalf("pass before the use is written: %+v, %v; want nothing due (the store knows only the creation, 4h ago)", p, err)
	}
	if err := w.engine.FlushUses(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.engine.Stats(); st.UsesPending != 0 || st.UsesWritten != 1 {
		t.Fatalf("after the flush: %d pending, %d written; want 0 and 1", st.UsesPending, st.UsesWritten)
	}
	p, err := s.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Due != 1 || p.Refreshed != 1 || w.refreshes() != 2 {
		t.Fatalf("pass %+v, %d refreshes; want the used connection alone refreshed", p, w.refreshes())
	}
	c, _ := w.store.Connection(ctx, used)
	if c.Token.Expiry.Sub(w.emu.Now()) < 59*time.Minute {
		t.Errorf("used connection not refreshed ahead: expires %v, now %v", c.Token.Expiry, w.emu.Now())
	}
	if st := w.engine.Stats(); st.UsesPending != 0 {
		t.Errorf("the scheduler's refresh counted as a use: %d pending", st.UsesPending)
	}
	ci, _ := w.store.Connection(ctx, idle)
	if ci.Token.Expiry.After(w.emu.Now()) {
		t.Errorf("idle connection refreshed ahead: expires %v", ci.Token.Expiry)
	}

	// On demand, the idle one is refreshed at once.
	at, err := w.engine.Token(ctx, idle, 0)
	if err != nil || !at.Valid(w.emu.Now(), 59*time.Minute) || w.refreshes() != 3 {
		t.Fatalf("idle on demand: %v (expires %v), %d refreshes; want a fresh token from the third refresh", err, at.Expiry, w.refreshes())
	}
	if w.me(at.Token) != 200 {
		t.Error("the idle connection's new token is refused")
	}

	// A use is written again once UseResolution (5m) has passed, not before.
	w.engine.Token(ctx, used, 0) // the last use recorded was an hour ago
	w.engine.FlushUses(ctx)
	written := w.engine.Stats().UsesWritten
	w.emu.Advance(4 * time.Minute)
	w.engine.Token(ctx, used, 0)
	w.engine.FlushUses(ctx)
	if got := w.engine.Stats().UsesWritten; got != written {
		t.Errorf("uses written %d, then %d 4 minutes later; want no new one", written, got)
	}
	w.emu.Advance(2 * time.Minute)
	w.engine.Token(ctx, used, 0)
	w.engine.FlushUses(ctx)
	if got := w.engine.Stats().UsesWritten; got != written+1 {
		t.Errorf("uses written %d, then %d 6 minutes later; want one more", written, got)
	}

	// With a negative ActiveWindow every connection is refreshed ahead.
	w.emu.Advance(50 * time.Minute) // both tokens expire within 5 minutes
	all := &refresh.Scheduler{Engine: w.engine, Store: w.store, Window: 5 * time.Minute, ActiveWindow: -1}
	if p, err := all.RunOnce(ctx); err != nil || p.Due != 2 || p.Refreshed != 2 {
		t.Errorf("pass over every connection: %+v, %v; want 2 due and refreshed", p, err)
	}
}

// TestCallerNotQueuedBehindScheduler: with the upstream budget spent by the
// scheduler (a rate of one an hour), a caller whose token expired still
// refreshes at once: callers spend the budget first and never wait for the
// scheduler's backlog. The scheduler's backlog and lag are reported.
func TestCallerNotQueuedBehindScheduler(t *testing.T) {
	w := newWorld(t, "never", func(c *refresh.Config) {
		c.UpstreamRate, c.UpstreamBurst = rate.Limit(1.0/3600), 2
	})
	var keys []spotoken.ConnectionKey
	for i := range 6 {
		keys = append(keys, w.connect(fmt.Sprintf("c%d", i)))
	}
	w.emu.Advance(time.Hour + time.Minute) // every token expired a minute ago
	s := &refresh.Scheduler{Engine: w.engine, Store: w.store, Window: 5 * time.Minute, Concurrency: 1}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan refresh.Pass)
	go func() {
		p, _ := s.RunOnce(sctx)
		done <- p
	}()
	// The scheduler spends the budget beyond the callers' reserve (one
	// refresh), then waits for more.
	for w.engine.Stats().ScheduledWaits == 0 {
		time.Sleep(time.Millisecond)
	}
	if got := w.refreshes(); got != 1 {
		t.Fatalf("the scheduler sent %d refreshes before waiting for budget, want 1", got)
	}
	st := w.engine.Stats()
	if st.DueBacklog != 5 {
		t.Errorf("due backlog %d, want 5 (6 due, 1 refreshed)", st.DueBacklog)
	}
	// The oldest due token expired a minute ago: due 6 minutes ago.
	if want := time.Minute + s.Window; st.SchedulerLag != want {
		t.Errorf("scheduler lag %v, want %v", st.SchedulerLag, want)
	}

	// A caller asks for the last connection of the backlog: it does not
	// wait for the hour the scheduler's next refresh waits for.
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	at, err := w.engine.Token(cctx, keys[5], 0)
	if err != nil {
		t.Fatalf("caller behind the scheduler's backlog: %v", err)
	}
	if !at.Valid(w.emu.Now(), 59*time.Minute) || w.refreshes() != 2 {
		t.Fatalf("caller got a token expiring %v after %d refreshes; want a fresh one from the second", at.Expiry, w.refreshes())
	}
	stop()
	if p := <-done; p.Refreshed != 1 {
		t.Errorf("scheduler pass %+v, want 1 refreshed before it was stopped", p)
	}
	if st := w.engine.Stats(); st.DueBacklog != 0 || st.SchedulerLag != 0 {
		t.Errorf("after the pass: backlog %d, lag %v; want 0 and 0", st.DueBacklog, st.SchedulerLag)
	}
}

// TestUpstreamRateAdapts: a 429 halves the upstream rate, which then climbs
// back linearly to the ceiling over UpstreamRecovery per half; the app's
// Retry-After window is honoured meanwhile.
func TestUpstreamRateAdapts(t *testing.T) {
	const ceiling, recovery = 100.0, 5 * time.Minute
	w := newWorld(t, "never", func(c *refresh.Config) {
		c.UpstreamRate, c.UpstreamRecovery = ceiling, recovery
	})
	key := w.connect("c1")
	if got := w.engine.Stats().UpstreamRate; got != ceiling {
		t.Fatalf("initial rate %v, want the ceiling %v", got, ceiling)
	}
	three := 3
	if err := w.emu.SetFaults(emulator.Faults{TokenStatus: 429, RetryAfter: &three, Count: 1}); err != nil {
		t.Fatal(err)
	}
	w.emu.Advance(time.Hour)
	if _, err := w.engine.Token(ctx, key, 0); !errors.Is(err, spotoken.ErrRateLimited) {
		t.Fatalf("first call: %v, want rate_limited", err)
	}
	if got := w.engine.Stats().UpstreamRate; got != ceiling/2 {
		t.Fatalf("rate after a 429: %v, want %v", got, ceiling/2)
	}
	w.emu.Advance(time.Second)
	if _, err := w.engine.Token(ctx, key, 0); !errors.Is(err, spotoken.ErrRateLimited) || w.refreshes() != 1 {
		t.Fatalf("inside Retry-After: %v after %d refreshes, want rate_limited and no new request", err, w.refreshes())
	}
	w.emu.Advance(2 * time.Second)
	if _, err := w.engine.Token(ctx, key, 0); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
	// Linear recovery: half the ceiling back over UpstreamRecovery.
	slope := ceiling / 2 / recovery.Seconds()
	if got, want := w.engine.Stats().UpstreamRate, ceiling/2+3*slope; !near(got, want) {
		t.Errorf("rate 3s after the 429: %v, want %v", got, want)
	}
	w.emu.Advance(recovery / 2)
	if got, want := w.engine.Stats().UpstreamRate, ceiling/2+(3+recovery.Seconds()/2)*slope; !near(got, want) {
		t.Errorf("rate %v after the 429: %v, want %v", recovery/2, got, want)
	}
	w.emu.Advance(recovery)
	if got := w.engine.Stats().UpstreamRate; got != ceiling {
		t.Errorf("rate after the recovery: %v, want the ceiling %v", got, ceiling)
	}
	// A second 429 halves what the rate is then.
	w.emu.Advance(time.Hour)
	if err := w.emu.SetFaults(emulator.Faults{TokenStatus: 429, RetryAfter: &three, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.engine.Token(ctx, key, 0); !errors.Is(err, spotoken.ErrRateLimited) {
		t.Fatalf("second 429: %v", err)
	}
	if got := w.engine.Stats().UpstreamRate; got != ceiling/2 {
		t.Errorf("rate after the second 429: %v, want %v", got, ceiling/2)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// TestCacheBound: however many distinct connections are vended, the cache
// holds at most CacheSize tokens; an evicted token is read again from the
// store, right; a connection asked for all along stays in memory (CLOCK).
func TestCacheBound(t *testing.T) {
	const size, n = 128, 1000
	w := newWorld(t, "never", func(c *refresh.Config) { c.CacheSize = size })
	now := w.emu.Now()
	keys := make([]spotoken.ConnectionKey, n)
	for i := range keys {
		c := &spotoken.Connection{AppID: appID, ID: fmt.Sprintf("c%04d", i), SpotifyUserID: "u", State: spotoken.StateActive,
			Token: spotoken.Token{AccessToken: spotoken.Secret(fmt.Sprintf("at-%d", i)), RefreshToken: "rt", Expiry: now.Add(time.Hour)}}
		if err := w.store.CreateConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
		keys[i] = c.Key()
	}
	hot := w.connect("hot")
	vend := func(key spotoken.ConnectionKey, want spotoken.Secret) {
		t.Helper()
		at, err := w.engine.Token(ctx, key, 0)
		if err != nil {
			t.Fatalf("token of %s: %v", key, err)
		}
		if want != "" && at.Token != want {
			t.Fatalf("token of %s: %q, want %q", key, at.Token.Reveal(), want.Reveal())
		}
	}
	for round := range 2 {
		for i, k := range keys {
			vend(k, spotoken.Secret(fmt.Sprintf("at-%d", i)))
			vend(hot, "")
			if got := w.engine.Stats().Cached; got > size {
				t.Fatalf("round %d: %d tokens in memory after %d connections, want at most %d", round, got, i+1, size)
			}
		}
	}
	st := w.engine.Stats()
	if st.CacheSize != size || st.Evictions < 2*n-size {
		t.Errorf("cache size %d, %d evictions; want %d and at least %d", st.CacheSize, st.Evictions, size, 2*n-size)
	}
	if st.VendsStore < 2*n {
		t.Errorf("%d tokens read from the store, want every one of the %d distinct vends (evicted before their second)", st.VendsStore, 2*n)
	}
	before := w.engine.Stats().VendsMemory
	vend(hot, "")
	if w.engine.Stats().VendsMemory != before+1 {
		t.Error("the connection asked for between every other was evicted")
	}
	if w.refreshes() != 0 {
		t.Errorf("%d refreshes, want none (every token valid)", w.refreshes())
	}
}

// TestCacheEntryBytes measures the heap one cache entry holds with a
// Spotify-sized access token, which CacheEntryBytes documents.
func TestCacheEntryBytes(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("fills a cache of 5,000 tokens; measures allocations, which the race detector changes")
	}
	const n = 5_000
	w := newWorld(t, "never", nil)
	now := w.emu.Now()
	token := strings.Repeat("A", 300) // Spotify's access tokens are about this long
	keys := make([]spotoken.ConnectionKey, n)
	for i := range keys {
		c := &spotoken.Connection{AppID: appID, ID: fmt.Sprintf("connection-%08d", i), SpotifyUserID: "u", State: spotoken.StateActive,
			Scopes: spotoken.Scopes{"user-read-private", "user-read-email", "playlist-read-private"},
			Token:  spotoken.Token{AccessToken: spotoken.Secret(token + fmt.Sprint(i)), RefreshToken: "rt", Expiry: now.Add(time.Hour)}}
		if err := w.store.CreateConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
		keys[i] = c.Key()
	}
	heap := func() int64 {
		runtime.GC()
		runtime.GC() // sync.Pool's victims too
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	// What an engine holding the tokens holds, less what remains when
	// it is gone: the store's own memory is the same in both.
	e, err := refresh.New(refresh.Config{Store: w.store, Now: w.emu.Now, CacheSize: n,
		Refresher: &refresh.SpotifyRefresher{TokenURL: w.srv.URL + "/api/token", Now: w.emu.Now}})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if _, err := e.Token(ctx, k, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.FlushUses(ctx); err != nil { // the uses noted are not the cache's
		t.Fatal(err)
	}
	cached := e.Stats().Cached // a few less than n: shards fill unevenly
	with := heap()
	runtime.KeepAlive(e)
	e = nil
	grown := with - heap()
	if grown <= 0 {
		t.Fatalf("dropping an engine of %d tokens freed %d bytes", cached, grown)
	}
	per := float64(grown) / float64(cached)
	runtime.KeepAlive(keys)
	t.Logf("%.0f bytes of heap per cached token (%d tokens)", per, cached)
	if per > 1.25*refresh.CacheEntryBytes {
		t.Errorf("%.0f bytes per cached token, CacheEntryBytes says %d", per, refresh.CacheEntryBytes)
	}
}

// slowPassStore is a DueStore whose count of due connections takes two
// hours of the test's clock: a pass longer than the scheduler's Interval.
type slowPassStore struct {
	refresh.DueStore
	advance func(time.Duration)
	counts  atomic.Int64
}

func (s *slowPassStore) CountDue(ctx context.Context, q spotoken.DueQuery) (int, error) {
	s.counts.Add(1)
	s.advance(2 * time.Hour)
	return s.DueStore.CountDue(ctx, q)
}

// TestSchedulerPassLongerThanInterval: a pass that took longer than the
// Interval is followed by the next one at once, not after another
// Interval (an hour here) while what fell due meanwhile expires. Before,
// Run waited a whole Interval after every pass: this test waited for the
// second pass until its deadline.
func TestSchedulerPassLongerThanInterval(t *testing.T) {
	w := newWorld(t, "always", nil)
	store := &slowPassStore{DueStore: w.store, advance: w.emu.Advance}
	s := &refresh.Scheduler{Engine: w.engine, Store: store, Window: 5 * time.Minute, Interval: time.Hour}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	deadline := time.After(20 * time.Second) // liveness only: the old Run would wait 45-75 minutes
	for store.counts.Load() < 3 {
		select {
		case <-deadline:
			cancel()
			t.Fatalf("%d passes in 20s with every pass taking 2h of a 1h interval, want the next pass at once", store.counts.Load())
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
}
