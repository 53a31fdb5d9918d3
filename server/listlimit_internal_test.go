package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
)

// fakeListClock is a listClock that moves only when told to, firing the
// timers that come due on the way, each at its time, in order.
type fakeListClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeListTimer
}

type fakeListTimer struct {
	at   time.Time
	f    func()
	done bool // fired or stopped
}

func newFakeListClock() *fakeListClock {
	return &fakeListClock{now: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeListClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeListClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeListTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.done
		t.done = true
		return was
	}
}

// Advance moves the clock on by d; the timers' functions run in the
// caller's goroutine, without the clock's lock.
func (c *fakeListClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *fakeListTimer
		for _, t := range c.timers {
			if !t.done && !t.at.After(end) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		next.done = true
		c.now = next.at
		c.mu.Unlock()
		next.f()
	}
}

// pending is how many timers have neither fired nor been stopped.
func (c *fakeListClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.done {
			n++
		}
	}
	return n
}

// gateState is key's running listings, held slots and waiting listings.
func (l *listLimiter) gateState(key string) (running, held, waiting int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.gates[key]
	if g == nil {
		return 0, 0, 0
	}
	return g.running, len(g.holds), len(g.queue)
}

// untilQueued yields until key has n listings waiting (a listing started
// in another goroutine has queued itself).
func untilQueued(l *listLimiter, key string, n int) {
	for {
		if _, _, w := l.gateState(key); w == n {
			return
		}
		runtime.Gosched()
	}
}

type acquired struct {
	release func(charge bool)
	retry   time.Duration
	ok      bool
}

// acquireAsync starts acquire(ctx, key) and returns where its outcome
// arrives, once the listing is waiting.
func acquireAsync(ctx context.Context, l *listLimiter, key string) <-chan acquired {
	_, _, before := l.gateState(key)
	ch := make(chan acquired, 1)
	go func() {
		release, retry, ok := l.acquire(ctx, key)
		ch <- acquired{release, retry, ok}
	}()
	untilQueued(l, key, before+1)
	return ch
}

// mustAcquire takes a slot of key at once, or fails the test.
func mustAcquire(t *testing.T, l *listLimiter, key string) func(charge bool) {
	t.Helper()
	release, retry, ok := l.acquire(context.Background(), key)
	if !ok {
		t.Fatalf("acquire %q refused (retry %v), want a slot at once", key, retry)
	}
	return release
}

// TestListHold: after a listing that took d, the key's slot stays held
// for d*(1-share)/share, at most maxListHold; share 1 holds nothing.
func TestListHold(t *testing.T) {
	for _, c := range []struct {
		share float64
		d     time.Duration
		want  time.Duration
	}{
		{0.2, 2 * time.Millisecond, 8 * time.Millisecond},
		{0.5, 3 * time.Millisecond, 3 * time.Millisecond},
		{0.25, time.Second, 3 * time.Second},
		{0.2, 2 * time.Second, 8 * time.Second},
		{0.2, 3 * time.Second, maxListHold},
		{0.01, time.Hour, maxListHold},
		{1, 5 * time.Second, 0},
		{0.2, 0, 0},
	} {
		clock := newFakeListClock()
		l := newListLimiter(1, time.Hour, c.share, clock)
		release := mustAcquire(t, l, "k")
		clock.Advance(c.d)
		release(true)
		running, held, _ := l.gateState("k")
		if c.want == 0 {
			if n := l.inFlight(); n != 0 || clock.pending() != 0 {
				t.Errorf("share %v, listing of %v: %d keys and %d timers left, want none", c.share, c.d, n, clock.pending())
			}
			mustAcquire(t, l, "k")(true) // at once
			continue
		}
		if running != 0 || held != 1 {
			t.Fatalf("share %v, listing of %v: %d running, %d held, want the slot held", c.share, c.d, running, held)
		}
		clock.Advance(c.want - 1)
		if _, held, _ := l.gateState("k"); held != 1 {
			t.Errorf("share %v, listing of %v: freed before %v", c.share, c.d, c.want)
		}
		clock.Advance(1)
		if n := l.inFlight(); n != 0 {
			t.Errorf("share %v, listing of %v: still held after %v", c.share, c.d, c.want)
		}
	}
}

// TestListWaiterStartsWhenHoldEnds: a listing waiting behind a held slot
// starts the moment the hold ends, not before; its own duration is
// measured from then; and waiting listings start in their order.
func TestListWaiterStartsWhenHoldEnds(t *testing.T) {
	clock := newFakeListClock()
	l := newListLimiter(1, 2*time.Second, 0.2, clock)
	release := mustAcquire(t, l, "k")
	clock.Advance(100 * time.Millisecond)
	release(true) // held 400 ms
	first := acquireAsync(context.Background(), l, "k")
	second := acquireAsync(context.Background(), l, "k")
	clock.Advance(400*time.Millisecond - 1)
	if running, held, waiting := l.gateState("k"); running != 0 || held != 1 || waiting != 2 {
		t.Fatalf("1 ns before the hold ends: %d running, %d held, %d waiting; want 0, 1, 2", running, held, waiting)
	}
	clock.Advance(1)
	a := <-first
	if !a.ok {
		t.Fatalf("the first waiting listing refused when the hold ended (retry %v)", a.retry)
	}
	if running, held, waiting := l.gateState("k"); running != 1 || held != 0 || waiting != 1 {
		t.Fatalf("when the hold ended: %d running, %d held, %d waiting; want 1, 0, 1", running, held, waiting)
	}
	// It runs 250 ms from its start: the slot is then held 1 s, and the
	// second starts 1,250 ms after the first did, within its wait.
	clock.Advance(250 * time.Millisecond)
	a.release(true)
	clock.Advance(time.Second - 1)
	select {
	case b := <-second:
		t.Fatalf("the second listing ended its wait before the hold did: %+v", b)
	default:
	}
	clock.Advance(1)
	b := <-second
	if !b.ok {
		t.Fatalf("the second waiting listing refused (retry %v)", b.retry)
	}
	b.release(true) // took no time: nothing held
	if n := l.inFlight(); n != 0 || clock.pending() != 0 {
		t.Errorf("%d keys and %d timers left", n, clock.pending())
	}
}

// TestListRetryAfter: a listing that cannot start within the wait is
// refused with the time until the key's held slot frees (at least a
// second): at once when the hold outlasts the wait, after the wait when
// the slot was still running the listing ahead of it.
func TestListRetryAfter(t *testing.T) {
	clock := newFakeListClock()
	l := newListLimiter(1, time.Second, 0.2, clock)

	// Held 2.8 s, past the 1 s wait: refused at once.
	release := mustAcquire(t, l, "k")
	clock.Advance(700 * time.Millisecond)
	release(true)
	if _, retry, ok := l.acquire(context.Background(), "k"); ok || retry != 2800*time.Millisecond {
		t.Errorf("behind a hold of 2.8 s: ok %v, retry %v; want refused, 2.8s", ok, retry)
	}
	// 0.8 s before the hold ends, within the wait: it waits, and starts.
	clock.Advance(2 * time.Second)
	waiter := acquireAsync(context.Background(), l, "k")
	clock.Advance(800 * time.Millisecond)
	if a := <-waiter; !a.ok {
		t.Fatalf("a listing 0.8 s before the hold ends, with a 1 s wait: refused (retry %v)", a.retry)
	} else {
		a.release(true) // took no time: nothing held
	}
	if n := l.inFlight(); n != 0 {
		t.Fatalf("%d keys left after the hold", n)
	}

	// Behind a running listing: refused when the wait is over, with a
	// second (its end is not known).
	release = mustAcquire(t, l, "k")
	waiter = acquireAsync(context.Background(), l, "k")
	clock.Advance(time.Second)
	if a := <-waiter; a.ok || a.retry != time.Second {
		t.Errorf("behind a running listing: %+v, want refused with retry 1s", a)
	}
	// Behind a listing that ends during the wait and then holds the slot
	// past it: the time left of that hold.
	waiter = acquireAsync(context.Background(), l, "k")
	clock.Advance(500 * time.Millisecond)
	release(true) // ran 1.5 s: held 6 s, until 6.5 s after the waiter came
	clock.Advance(500 * time.Millisecond)
	if a := <-waiter; a.ok || a.retry != 5500*time.Millisecond {
		t.Errorf("behind a hold 5.5 s from its end: %+v, want refused with retry 5.5s", a)
	}
	clock.Advance(5500 * time.Millisecond)
	if n := l.inFlight(); n != 0 || clock.pending() != 0 {
		t.Errorf("%d keys and %d timers left", n, clock.pending())
	}
}

// TestListUncharged: a slot released without charge frees at once,
// however long its listing took.
func TestListUncharged(t *testing.T) {
	clock := newFakeListClock()
	l := newListLimiter(1, time.Second, 0.2, clock)
	release := mustAcquire(t, l, "k")
	clock.Advance(time.Minute)
	release(false)
	if n := l.inFlight(); n != 0 || clock.pending() != 0 {
		t.Fatalf("%d keys and %d timers left", n, clock.pending())
	}
	mustAcquire(t, l, "k")(true)
}

// TestListOtherKey: one key's held and running slots and waiting listings
// do not delay another key's.
func TestListOtherKey(t *testing.T) {
	clock := newFakeListClock()
	l := newListLimiter(1, time.Second, 0.2, clock)
	release := mustAcquire(t, l, "a")
	clock.Advance(time.Second)
	release(true) // a held 4 s
	mustAcquire(t, l, "b")(true)
	release = mustAcquire(t, l, "c")
	waiter := acquireAsync(context.Background(), l, "c")
	mustAcquire(t, l, "b")(true)
	release(true)
	<-waiter
	if _, held, _ := l.gateState("a"); held != 1 {
		t.Error("key a's hold is gone")
	}
}

// TestListEntriesDropped: nothing of a key is kept once its listings
// ended, its holds ran out and its waiting listings started or gave up,
// however they ended (refused, cancelled, timed out).
func TestListEntriesDropped(t *testing.T) {
	clock := newFakeListClock()
	l := newListLimiter(2, time.Second, 0.5, clock)
	r1 := mustAcquire(t, l, "k")
	r2 := mustAcquire(t, l, "k")
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := acquireAsync(ctx, l, "k")
	timedOut := acquireAsync(context.Background(), l, "k")
	cancel()
	if a := <-cancelled; a.ok {
		t.Error("a cancelled waiter got a slot")
	}
	clock.Advance(time.Second)
	if a := <-timedOut; a.ok {
		t.Error("a waiter got a slot with both running")
	}
	r1(true)
	clock.Advance(2 * time.Second)
	r2(true) // ran 3 s: held 3 s
	// The other slot is free.
	r3 := mustAcquire(t, l, "k")
	if running, held, _ := l.gateState("k"); running != 1 || held != 1 {
		t.Errorf("%d running and %d held, want 1 and 1", running, held)
	}
	r3(true) // took no time: nothing held
	if n := l.inFlight(); n != 1 {
		t.Fatalf("%d keys during the hold, want 1", n)
	}
	clock.Advance(3 * time.Second)
	if n := l.inFlight(); n != 0 || clock.pending() != 0 {
		t.Errorf("%d keys and %d timers left", n, clock.pending())
	}
	if len(l.gates) != 0 {
		t.Errorf("gates left: %v", l.gates)
	}
}

// TestListCancelledAfterGrant: a waiter whose request ends as it is given
// the slot gives it back, held for nothing.
func TestListCancelledAfterGrant(t *testing.T) {
	clock := newFakeListClock()
	l := newListLimiter(1, time.Hour, 1, clock)
	release := mustAcquire(t, l, "k")
	ctx, cancel := context.WithCancel(context.Background())
	waiter := acquireAsync(ctx, l, "k")
	// Grant and cancel before the waiter's goroutine looks: it may see
	// either first; both must leave nothing behind.
	cancel()
	release(true)
	if a := <-waiter; a.ok {
		a.release(true)
	}
	if n := l.inFlight(); n != 0 {
		t.Errorf("%d keys left", n)
	}
}

// TestListLimitedAnswer: the refusal is 429 rate_limited with Retry-After
// the hold's time left, rounded up to whole seconds, and it is counted.
func TestListLimitedAnswer(t *testing.T) {
	clock := newFakeListClock()
	s := &Server{log: slog.New(slog.DiscardHandler), metrics: NewMetrics(), lists: newListLimiter(1, time.Second, 0.2, clock)}
	calls := 0
	list := s.limitListing(func(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error {
		calls++
		clock.Advance(700 * time.Millisecond) // held 2.8 s after
		return nil
	})
	key := &spotoken.APIKey{ID: "k"}
	req := httptest.NewRequest("GET", "/v1/connections", nil)
	if err := list(httptest.NewRecorder(), req, key); err != nil {
		t.Fatal(err)
	}
	err := list(httptest.NewRecorder(), req, key)
	var se *spotoken.Error
	if !errors.As(err, &se) || se.Code != spotoken.ERateLimited || se.RetryAfter != 2800*time.Millisecond {
		t.Fatalf("second listing: %v, want rate_limited with RetryAfter 2.8s", err)
	}
	rec := httptest.NewRecorder()
	s.writeError(rec, req, err)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "3" {
		t.Errorf("answered %d, Retry-After %q; want 429, 3", rec.Code, rec.Header().Get("Retry-After"))
	}
	if calls != 1 {
		t.Errorf("the handler ran %d times, want once", calls)
	}
	if other := list(httptest.NewRecorder(), req, &spotoken.APIKey{ID: "other"}); other != nil {
		t.Errorf("another key's listing: %v", other)
	}
	if got := counterValue(t, s.metrics, "spotoken_list_limited_total"); got != 1 {
		t.Errorf("spotoken_list_limited_total = %v, want 1", got)
	}
}

// TestListUnavailableNotCharged: a listing answered 503 unavailable (the
// database could not be reached) leaves no pause after it, however long it
// waited; one that failed otherwise (its query timed out) does.
func TestListUnavailableNotCharged(t *testing.T) {
	clock := newFakeListClock()
	s := &Server{log: slog.New(slog.DiscardHandler), metrics: NewMetrics(), lists: newListLimiter(1, time.Second, 0.2, clock)}
	var answer error
	list := s.limitListing(func(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error {
		clock.Advance(time.Second) // the database's deadline
		return answer
	})
	key := &spotoken.APIKey{ID: "k"}
	req := httptest.NewRequest("GET", "/v1/connections", nil)
	answer = fmt.Errorf("listing: %w", spotoken.ErrStoreUnavailable)
	for i := range 3 {
		if err := list(httptest.NewRecorder(), req, key); spotoken.ErrorCode(err) != spotoken.EStoreUnavailable {
			t.Fatalf("listing %d with the database away: %v, want it answered unavailable, not limited", i, err)
		}
		if n := s.lists.inFlight(); n != 0 {
			t.Fatalf("after listing %d answered unavailable: %d keys held", i, n)
		}
	}
	answer = &spotoken.Error{Code: spotoken.EQueryTimeout, Message: "too slow"}
	list(httptest.NewRecorder(), req, key)
	if err := list(httptest.NewRecorder(), req, key); spotoken.ErrorCode(err) != spotoken.ERateLimited {
		t.Errorf("a listing right after a query that timed out: %v, want rate_limited", err)
	}
}

// counterValue reads an unlabelled counter of m.
func counterValue(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestListLimiterConcurrent: many callers of a few keys at once, on the
// wall clock; no key ever has more than max listings running, every caller
// gets its turn (the wait is long), and no entry is left behind once the
// holds ran out.
func TestListLimiterConcurrent(t *testing.T) {
	const limit, keys, callers = 2, 3, 60
	l := newListLimiter(limit, time.Minute, 0.5, nil)
	var running [keys]atomic.Int32
	var peak [keys]atomic.Int32
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := i % keys
			release, _, ok := l.acquire(context.Background(), string(rune('a'+k)))
			if !ok {
				t.Errorf("caller %d refused with a minute's wait", i)
				return
			}
			n := running[k].Add(1)
			for p := peak[k].Load(); n > p && !peak[k].CompareAndSwap(p, n); p = peak[k].Load() {
			}
			time.Sleep(time.Millisecond) // hold the slot while others arrive
			running[k].Add(-1)
			release(true)
		}()
	}
	wg.Wait()
	for k := range keys {
		if p := peak[k].Load(); p > limit || p < 1 {
			t.Errorf("key %d: %d listings at once, want 1 to %d", k, p, limit)
		}
	}
	// The last holds end on their own (each as long as its listing took):
	// a listing of each key then gets its turn, and the entries go.
	for k := range keys {
		release, _, ok := l.acquire(context.Background(), string(rune('a'+k)))
		if !ok {
			t.Fatalf("key %d refused after the others", k)
		}
		release(true)
	}
	for l.inFlight() != 0 {
		runtime.Gosched()
	}
}

// TestLogPathShortcut: skipping the regexp for paths without "cs_"
// redacts exactly what the regexp alone did.
func TestLogPathShortcut(t *testing.T) {
	for _, p := range []string{"/v1/connections/cs_abc/token", "/x/CS_abc", "/x/cſ_abc", "/v1/connections/user-1/token", "/x/c_s_", "/a/cs_"} {
		want := sessionTokenPattern.ReplaceAllString(p, "cs_[REDACTED]")
		if got := logPath(p); got != want && got != "/connect/[REDACTED]" {
			t.Errorf("logPath(%q) = %q, want %q", p, got, want)
		}
	}
}
