package dbguard_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/dbguard"
)

// clock is a fake clock: it moves only when a test moves it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Modes of the fake database.
const (
	serving   = iota
	refusing  // every call fails at once with ECONNREFUSED
	blackHole // every call waits until its context ends
	blocked   // every call waits until release is closed
)

// fakeStore is a database the test switches between serving, refusing and
// black-holed. Only App and Ready are implemented; the embedded nil Store
// panics if the guard lets any other call through.
type fakeStore struct {
	spotoken.Store
	mode    atomic.Int32
	calls   atomic.Int64
	inside  atomic.Int64 // calls in progress
	maxIn   atomic.Int64 // the most calls in progress at once
	release chan struct{}
	entered chan struct{} // receives when a call starts, in blocked mode
	// deadlines receives each call's context deadline, if non-nil.
	deadlines chan time.Duration
}

func newFake() *fakeStore {
	return &fakeStore{release: make(chan struct{}), entered: make(chan struct{}, 100)}
}

func (f *fakeStore) App(ctx context.Context, id string) (*spotoken.App, error) {
	f.calls.Add(1)
	n := f.inside.Add(1)
	defer f.inside.Add(-1)
	for {
		m := f.maxIn.Load()
		if n <= m || f.maxIn.CompareAndSwap(m, n) {
			break
		}
	}
	if f.deadlines != nil {
		if d, ok := ctx.Deadline(); ok {
			f.deadlines <- time.Until(d)
		} else {
			f.deadlines <- -1
		}
	}
	switch f.mode.Load() {
	case refusing:
		return nil, fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	case blackHole:
		<-ctx.Done()
		return nil, fmt.Errorf("read: %w", ctx.Err())
	case blocked:
		f.entered <- struct{}{}
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, fmt.Errorf("read: %w", ctx.Err())
		}
	}
	if id == "missing" {
		return nil, spotoken.Errorf(spotoken.ENotFound, "app %q not found", id)
	}
	if id == "broken" {
		return nil, errors.New("a bug: not the database's absence")
	}
	return &spotoken.App{ID: id}, nil
}

const probeEvery = time.Second

func newGuard(t *testing.T, f *fakeStore, timeout time.Duration) (*dbguard.Guard, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)}
	return dbguard.New(f, dbguard.Config{Timeout: timeout, ProbeEvery: probeEvery, RetryAfter: 7 * time.Second, Now: clk.Now}), clk
}

func wantUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	var se *spotoken.Error
	if !errors.Is(err, spotoken.ErrStoreUnavailable) || !errors.As(err, &se) || se.RetryAfter != 7*time.Second {
		t.Fatalf("%s: %v, want unavailable with Retry-After 7s", what, err)
	}
}

// TestOutageEnteredAndLeft: a refused call opens the guard; calls then fail
// at once without reaching the database, except one probe per ProbeEvery;
// a probe that fails keeps it open, one that succeeds closes it.
func TestOutageEnteredAndLeft(t *testing.T) {
	f := newFake()
	g, clk := newGuard(t, f, time.Minute)
	if _, err := g.App(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if down, _, _ := g.Down(); down || g.Unavailable() != nil {
		t.Fatal("down before any failure")
	}

	f.mode.Store(refusing)
	_, err := g.App(context.Background(), "a")
	wantUnavailable(t, "refused", err)
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("the cause is not kept for the log: %v", err)
	}
	down, since, reason := g.Down()
	if !down || !since.Equal(clk.Now()) || reason != "the database cannot be reached" {
		t.Errorf("Down() = %v, %s, %q", down, since, reason)
	}
	wantUnavailable(t, "Unavailable()", g.Unavailable())

	before := f.calls.Load()
	for range 100 {
		_, err := g.App(context.Background(), "a")
		wantUnavailable(t, "while away", err)
	}
	if n := f.calls.Load() - before; n != 0 {
		t.Fatalf("%d calls reached the database while it was away and no probe was due", n)
	}

	clk.Advance(probeEvery)
	for range 10 {
		g.App(context.Background(), "a")
	}
	if n := f.calls.Load() - before; n != 1 {
		t.Fatalf("%d calls reached the database after ProbeEvery, want 1 probe", n)
	}
	if down, _, _ := g.Down(); !down {
		t.Fatal("a failed probe closed the guard")
	}

	f.mode.Store(serving)
	clk.Advance(probeEvery / 2)
	_, err = g.App(context.Background(), "a")
	wantUnavailable(t, "half a period after a failed probe", err)
	clk.Advance(probeEvery / 2)
	if _, err := g.App(context.Background(), "a"); err != nil {
		t.Fatalf("the probe after the database came back: %v", err)
	}
	if down, _, _ := g.Down(); down || g.Unavailable() != nil {
		t.Fatal("still down after a probe succeeded")
	}
	before = f.calls.Load()
	for range 10 {
		if _, err := g.App(context.Background(), "a"); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.calls.Load() - before; n != 10 {
		t.Errorf("%d of 10 calls reached the database after it came back", n)
	}
}

// TestAnswersAreNotOutages: not found, a bug, and a caller giving up say
// nothing of the database; an answer of any kind ends an outage.
func TestAnswersAreNotOutages(t *testing.T) {
	f := newFake()
	g, _ := newGuard(t, f, time.Minute)
	if _, err := g.App(context.Background(), "missing"); !errors.Is(err, spotoken.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
	if _, err := g.App(context.Background(), "broken"); err == nil || errors.Is(err, spotoken.ErrStoreUnavailable) {
		t.Errorf("broken: %v, want the error itself", err)
	}
	f.mode.Store(blackHole)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.App(ctx, "a"); !errors.Is(err, context.Canceled) || errors.Is(err, spotoken.ErrStoreUnavailable) {
		t.Errorf("canceled by the caller: %v", err)
	}
	if down, _, _ := g.Down(); down {
		t.Fatal("the guard opened on answers and a caller giving up")
	}
}

// TestDeadline: every call gets the deadline; a database that does not
// answer within it is away, and the guard says why.
func TestDeadline(t *testing.T) {
	f := newFake()
	f.deadlines = make(chan time.Duration, 1)
	const timeout = 20 * time.Millisecond
	g, _ := newGuard(t, f, timeout)
	if _, err := g.App(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	// A tenth of the timeout is kept for answering (Config.Reserve).
	if d := <-f.deadlines; d <= 0 || d > timeout-timeout/10 {
		t.Errorf("the store's context had %v left, want a deadline within %v", d, timeout-timeout/10)
	}
	// A caller's own, earlier deadline is kept.
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	g.App(ctx, "a")
	if d := <-f.deadlines; d > time.Millisecond {
		t.Errorf("the caller's 1ms deadline became %v", d)
	}

	f.mode.Store(blackHole)
	_, err := g.App(context.Background(), "a")
	<-f.deadlines
	wantUnavailable(t, "black-holed", err)
	if _, _, reason := g.Down(); reason != "the database did not answer within 20ms" {
		t.Errorf("reason %q", reason)
	}
	if err := g.Ready(context.Background()); !errors.Is(err, spotoken.ErrStoreUnavailable) || spotoken.ErrorMessage(err) != "the database did not answer within 20ms; try again later" {
		t.Errorf("Ready: %v", err)
	}
}

// TestOneProbeInFlight: while a probe waits on a database that does not
// answer, no other call goes through, however long it takes.
func TestOneProbeInFlight(t *testing.T) {
	f := newFake()
	g, clk := newGuard(t, f, time.Minute)
	f.mode.Store(refusing)
	g.App(context.Background(), "a")

	f.mode.Store(blocked)
	clk.Advance(probeEvery)
	probe := make(chan error)
	go func() { _, err := g.App(context.Background(), "a"); probe <- err }()
	<-f.entered
	for range 5 {
		clk.Advance(probeEvery)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := g.App(ctx, "a")
		cancel()
		wantUnavailable(t, "while a probe is in flight", err)
	}
	if n := f.maxIn.Load(); n != 1 {
		t.Errorf("%d calls in the database at once, want the probe alone", n)
	}
	close(f.release)
	if err := <-probe; err != nil {
		t.Fatalf("the probe: %v", err)
	}
	if down, _, _ := g.Down(); down {
		t.Fatal("down after the probe succeeded")
	}
}

// TestRequestWaitsOnce: a request whose call waited out the deadline does
// not wait again while the database is away, even when a probe is due: the
// next request probes instead. Once the database is back, the first
// request's calls go through again.
func TestRequestWaitsOnce(t *testing.T) {
	f := newFake()
	g, clk := newGuard(t, f, 10*time.Millisecond)
	f.mode.Store(blackHole)
	r1 := dbguard.Request(context.Background())
	_, err := g.App(r1, "a") // waits out the deadline
	wantUnavailable(t, "r1's first call", err)

	clk.Advance(probeEvery)
	before := f.calls.Load()
	_, err = g.App(context.WithoutCancel(r1), "a")
	wantUnavailable(t, "r1's second call", err)
	if f.calls.Load() != before {
		t.Fatal("a request that already waited out the deadline was let through as the probe")
	}
	f.mode.Store(serving)
	r2 := dbguard.Request(context.Background())
	if _, err := g.App(r2, "a"); err != nil || f.calls.Load() != before+1 {
		t.Fatalf("another request's call was not the probe: %v", err)
	}
	if _, err := g.App(r1, "a"); err != nil {
		t.Errorf("r1 after the database came back: %v", err)
	}
}

// TestHandler: Handler gives each request its own account.
func TestHandler(t *testing.T) {
	f := newFake()
	g, clk := newGuard(t, f, 10*time.Millisecond)
	f.mode.Store(blackHole)
	var calls []int64
	h := dbguard.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		before := f.calls.Load()
		for range 3 {
			clk.Advance(probeEvery)
			g.App(r.Context(), "a")
		}
		calls = append(calls, f.calls.Load()-before)
	}))
	for range 2 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}
	if !reflect.DeepEqual(calls, []int64{1, 1}) {
		t.Errorf("database calls per request %v, want one wait each", calls)
	}
}

// TestEveryMethodGuarded: with the database away, every store method of the
// guard answers unavailable without reaching the store (whose other methods
// would panic), so no call escapes the deadline.
func TestEveryMethodGuarded(t *testing.T) {
	f := newFake()
	g, _ := newGuard(t, f, time.Minute)
	f.mode.Store(refusing)
	g.App(context.Background(), "a")

	store := reflect.TypeFor[spotoken.Store]()
	gv := reflect.ValueOf(g)
	for i := range store.NumMethod() {
		m := store.Method(i)
		switch m.Name {
		case "Close", "Reseal": // not database calls under a deadline
			continue
		}
		fn := gv.MethodByName(m.Name)
		args := make([]reflect.Value, fn.Type().NumIn())
		for j := range args {
			args[j] = reflect.Zero(fn.Type().In(j))
		}
		args[0] = reflect.ValueOf(context.Background())
		call := fn.Call
		if fn.Type().IsVariadic() {
			call = fn.CallSlice
		}
		out := call(args)
		err, _ := out[len(out)-1].Interface().(error)
		if !errors.Is(err, spotoken.ErrStoreUnavailable) {
			t.Errorf("%s while away: %v, want unavailable", m.Name, err)
		}
	}
	if f.calls.Load() != 1 {
		t.Errorf("%d calls reached the store", f.calls.Load())
	}
}

// TestConcurrentOutage (run with -race): many callers while the database
// refuses, then serves. While it is away at most one call is in the
// database at a time and no more than one per ProbeEvery; after it is
// back every call succeeds.
func TestConcurrentOutage(t *testing.T) {
	f := newFake()
	g, clk := newGuard(t, f, 10*time.Millisecond)
	f.mode.Store(refusing)
	g.App(context.Background(), "a")
	f.calls.Store(0)
	f.maxIn.Store(0)

	const workers, each, advances = 50, 200, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				ctx := dbguard.Request(context.Background())
				if w == 0 && i%(each/advances) == 0 {
					clk.Advance(probeEvery)
				}
				if _, err := g.App(ctx, "a"); !errors.Is(err, spotoken.ErrStoreUnavailable) {
					t.Errorf("while refused: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := f.calls.Load(); n < 1 || n > advances {
		t.Errorf("%d calls reached the database over %d probe periods", n, advances)
	}
	if n := f.maxIn.Load(); n > 1 {
		t.Errorf("%d calls in the database at once while it was away", n)
	}

	f.mode.Store(serving)
	clk.Advance(probeEvery)
	var failed atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := g.App(dbguard.Request(context.Background()), "a"); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	// The first probe closes the guard; until it answers, the others fail fast.
	if n := failed.Load(); n >= workers*each {
		t.Errorf("nothing succeeded after the database came back")
	}
	if down, _, _ := g.Down(); down {
		t.Fatal("still down after the database came back")
	}
	if _, err := g.App(context.Background(), "a"); err != nil {
		t.Errorf("after recovery: %v", err)
	}
}

// TestBackgroundTimeoutKeepsGuardClosed: background work that runs out of
// time (it queues behind callers' writes by design) fails alone and does
// not make callers' calls answer unavailable; a background call that is
// refused still opens the guard, and so does a caller's call that runs out
// of time.
func TestBackgroundTimeoutKeepsGuardClosed(t *testing.T) {
	f := newFake()
	g, _ := newGuard(t, f, 20*time.Millisecond)
	bg := spotoken.Background(context.Background())

	f.mode.Store(blackHole)
	_, err := g.App(bg, "a")
	if err == nil || errors.Is(err, spotoken.ErrStoreUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("background call past its deadline: %v, want a deadline error that is not unavailable", err)
	}
	if down, _, _ := g.Down(); down {
		t.Fatal("a background call's deadline opened the guard")
	}
	f.mode.Store(serving)
	if _, err := g.App(context.Background(), "a"); err != nil {
		t.Fatalf("caller after a background deadline: %v", err)
	}

	f.mode.Store(refusing)
	_, err = g.App(bg, "a")
	wantUnavailable(t, "background call refused", err)
	if down, _, _ := g.Down(); !down {
		t.Fatal("a refused background call did not open the guard")
	}

	f.mode.Store(serving)
	g2, _ := newGuard(t, f, 20*time.Millisecond)
	f.mode.Store(blackHole)
	_, err = g2.App(context.Background(), "a")
	wantUnavailable(t, "caller past its deadline", err)
	if down, _, _ := g2.Down(); !down {
		t.Fatal("a caller's deadline did not open the guard")
	}
}
