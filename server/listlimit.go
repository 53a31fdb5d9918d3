package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/spotoken/spotoken"
)

// Defaults of Config.ListConcurrency, Config.ListWait and Config.ListShare.
const (
	DefaultListConcurrency = 1
	DefaultListWait        = 2 * time.Second
	DefaultListShare       = 0.2
)

// maxListHold caps the pause after one listing (see listLimiter), so that
// one very long listing (a slow disk, a client reading its page slowly)
// keeps its API key from listing for at most this long after it ends.
const maxListHold = 10 * time.Second

// listLimiter bounds how much of the broker one API key's listings (GET
// /v1/connections, GET /v1/audit) take. A page is read from an index in
// milliseconds, but a listing is still several times a cached vend's work
// (a page of views, the app's rate-limit window, the audit record), and a
// service that lists from many goroutines back to back takes that much of
// the broker's CPU from every other app's token requests: four such loops
// took a third of a two-core broker's cache-miss vends. So each key has max
// slots, and a listing runs in one of them; after a listing that took d
// (wall time, as measured here), its slot stays reserved for a further
// d*(1-share)/share (at most maxListHold), so that a key's listings
// occupy each slot at most share of the time (a 2 ms listing at 0.2 holds
// the slot 8 ms more: at most 100 such listings a second per slot). Share
// 1 reserves nothing after a listing, and neither does a listing answered
// 503 unavailable (it was waiting for a database that could not be
// reached, not working). A listing that finds no slot free
// waits, in turn (FIFO), up to wait for one; if none comes free it is
// answered 429 rate_limited with Retry-After the time until the key's
// next reserved slot frees (at least a second; a second when every slot
// is running a listing, whose end is unknown). When every slot is
// reserved past the wait, the listing is refused at once. Paging one page
// after another, as the API's cursors do, is paced the same way (each
// page waits out the pause after the previous one); other keys are not
// affected. Memory: an entry per key with a listing in flight or waiting,
// or a slot still reserved, dropped when the last of those ends.
type listLimiter struct {
	max   int
	wait  time.Duration
	share float64
	clock listClock

	mu    sync.Mutex
	gates map[string]*listGate
}

// listGate is one key's slots: each busy slot is running a listing or
// reserved after one (held), and the listings waiting for one.
type listGate struct {
	running int
	holds   []time.Time   // when each held slot frees
	queue   []*listWaiter // first come, first served
}

// listWaiter is a listing waiting for a slot. ready is closed when it was
// given one (granted, with start the time) or gave up waiting (retry then
// tells when to try again).
type listWaiter struct {
	ready   chan struct{}
	granted bool
	start   time.Time
	retry   time.Duration
	stop    func() bool // the wait's timer
}

// listClock is the limiter's clock: the time, and timers that call f when
// they fire. Wall time (realListClock) outside tests.
type listClock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realListClock struct{}

func (realListClock) Now() time.Time { return time.Now() }
func (realListClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// newListLimiter returns a limiter of n slots a key, a wait of wait and a
// share of share (in (0, 1]) on clock (nil: wall time).
func newListLimiter(n int, wait time.Duration, share float64, clock listClock) *listLimiter {
	if clock == nil {
		clock = realListClock{}
	}
	return &listLimiter{max: n, wait: wait, share: share, clock: clock, gates: map[string]*listGate{}}
}

// holdAfter is how long a slot stays reserved after a listing that took d.
func (l *listLimiter) holdAfter(d time.Duration) time.Duration {
	if l.share >= 1 || d <= 0 {
		return 0
	}
	return min(time.Duration(float64(d)*(1-l.share)/l.share), maxListHold)
}

// acquire takes one of key's slots, waiting up to l.wait (or until ctx
// ends) for one; release gives it back, reserved for holdAfter the
// listing's duration when charge is true, free at once otherwise. ok is
// false when none came free; retry is then when to try again (at least a
// second).
func (l *listLimiter) acquire(ctx context.Context, key string) (release func(charge bool), retry time.Duration, ok bool) {
	l.mu.Lock()
	g := l.gates[key]
	if g == nil {
		g = &listGate{}
		l.gates[key] = g
	}
	now := l.clock.Now()
	if g.running+len(g.holds) < l.max {
		g.running++
		l.mu.Unlock()
		return l.releaser(key, g, now), 0, true
	}
	if g.running == 0 && g.firstFree().Sub(now) > l.wait {
		// Every slot is reserved past the wait, and no listing can
		// start before one frees: no use waiting.
		retry = g.retryAfter(now)
		l.mu.Unlock()
		return nil, retry, false
	}
	w := &listWaiter{ready: make(chan struct{})}
	g.queue = append(g.queue, w)
	w.stop = l.clock.AfterFunc(l.wait, func() { l.giveUp(key, g, w) })
	l.mu.Unlock()

	select {
	case <-w.ready:
	case <-ctx.Done():
		l.giveUp(key, g, w)
		<-w.ready
		if w.granted { // given a slot as the request ended: give it back
			l.mu.Lock()
			g.running--
			l.free(key, g)
			l.mu.Unlock()
			return nil, w.retry, false
		}
	}
	if !w.granted {
		return nil, w.retry, false
	}
	return l.releaser(key, g, w.start), 0, true
}

// giveUp takes w out of g's queue, if it is still waiting, with the time
// to try again.
func (l *listLimiter) giveUp(key string, g *listGate, w *listWaiter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := slices.Index(g.queue, w)
	if i < 0 {
		return // granted already, or given up
	}
	g.queue = slices.Delete(g.queue, i, i+1)
	w.retry = g.retryAfter(l.clock.Now())
	close(w.ready)
	l.drop(key, g)
}

// releaser returns the release of a slot of g taken at start.
func (l *listLimiter) releaser(key string, g *listGate, start time.Time) func(charge bool) {
	return func(charge bool) {
		now := l.clock.Now()
		var hold time.Duration
		if charge {
			hold = l.holdAfter(now.Sub(start))
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		g.running--
		if hold <= 0 {
			l.free(key, g)
			return
		}
		end := now.Add(hold)
		g.holds = append(g.holds, end)
		l.clock.AfterFunc(hold, func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			i := slices.Index(g.holds, end)
			g.holds = slices.Delete(g.holds, i, i+1)
			l.free(key, g)
		})
	}
}

// free hands a slot of g that has just come free to the first listing
// waiting, if any (l.mu held).
func (l *listLimiter) free(key string, g *listGate) {
	if len(g.queue) == 0 {
		l.drop(key, g)
		return
	}
	w := g.queue[0]
	g.queue = slices.Delete(g.queue, 0, 1)
	w.stop()
	w.granted, w.start = true, l.clock.Now()
	g.running++
	close(w.ready)
}

// drop forgets g once nothing of it is left (l.mu held).
func (l *listLimiter) drop(key string, g *listGate) {
	if g.running == 0 && len(g.holds) == 0 && len(g.queue) == 0 {
		delete(l.gates, key)
	}
}

// retryAfter is the time from now until g's first held slot frees: when
// to try again. A second when none is held (every slot runs a listing,
// whose end is not known) or it frees within a second.
func (g *listGate) retryAfter(now time.Time) time.Duration {
	if len(g.holds) == 0 {
		return time.Second
	}
	return max(g.firstFree().Sub(now), time.Second)
}

// firstFree is when g's first held slot frees (g.holds not empty).
func (g *listGate) firstFree() time.Time {
	return slices.MinFunc(g.holds, time.Time.Compare)
}

// inFlight returns how many keys have a listing running or waiting, or a
// slot reserved.
func (l *listLimiter) inFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.gates)
}

// limitListing wraps a listing handler in the API key's listing limit.
func (s *Server) limitListing(h func(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error) func(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error {
	if s.lists == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error {
		release, retry, ok := s.lists.acquire(r.Context(), key.ID)
		if !ok {
			s.metrics.listLimited()
			return &spotoken.Error{Code: spotoken.ERateLimited, RetryAfter: retry, Message: s.lists.refusal()}
		}
		err := h(w, r, key)
		// A listing answered 503 unavailable spent its time waiting for a
		// database that could not be reached, not working: no pause after
		// it, or an outage's listings would keep their key out for four
		// times the database's deadline each.
		release(spotoken.ErrorCode(err) != spotoken.EStoreUnavailable)
		return err
	}
}

// refusal is the message of a listing that found no slot.
func (l *listLimiter) refusal() string {
	pace := ""
	if l.share < 1 {
		pace = ", each followed by a pause of " + strconv.FormatFloat((1-l.share)/l.share, 'g', 3, 64) + " times its duration,"
	}
	return fmt.Sprintf("this API key's listings run %d at a time%s and none could start within %s; list one page after another and wait Retry-After before the next", l.max, pace, l.wait)
}
