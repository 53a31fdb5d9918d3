// Package dbguard puts every call to a spotoken store under a deadline and
// tells its callers, with one error, when the database cannot be reached:
// spotoken.ErrStoreUnavailable, which the API answers 503 "unavailable"
// with Retry-After.
//
// A call that fails because the database refused the connection, cut it,
// or did not answer within Timeout opens the guard: from then on calls fail
// at once instead of each waiting out the deadline, except one probe at a
// time, at most every ProbeEvery; the first call that succeeds closes the
// guard again. So while the database is away requests answer promptly, and
// when it comes back the broker recovers on its own.
//
// # What the deadline bounds
//
// Timeout is a deadline per call: it is how long a database that does not
// answer is given before it counts as away. It is not a budget for a whole
// request, whose calls may each take their time on a database that is slow
// but answering (cutting those short would turn load into errors, and a
// refresh's commit after Spotify answered must get its own full deadline).
// What a request must not do is wait out the deadline twice: a context
// marked by Request (Handler marks every HTTP request's) is charged at most
// one failed wait. Once one of its calls has found the database away, its
// later calls fail at once for as long as the guard stays open, even when
// it is time for a probe; another request probes instead. So with the
// database refusing or black-holed, every request answers within Timeout
// plus its own work.
//
// # Background work
//
// A call whose context is marked spotoken.Background (work no caller waits
// for: the refresh scheduler's pass, batched last-use and audit writes) and
// that runs out of time does not open the guard: at a store with one writer
// such calls queue behind callers' writes by design, so their deadline
// passing says the database is busy, not away. It fails on its own (its
// caller retries later). Refused or cut connections open the guard whoever
// meets them, and so does a caller's call that runs out of time.
//
// # The answering reserve
//
// Timeout is what an operator promises callers: a request that meets a
// database that does not answer is answered within it. The request's own
// work around the failed call (reading it, writing the 503) takes little
// CPU but can wait for a core on a loaded machine, so each call is given
// Timeout less Reserve (a tenth by default) and the rest is kept for
// answering. With a 1 s Timeout on a 2-core machine at load average 4–12,
// without the reserve 39 of 553,116 answers left 1–89 ms past the second
// (docs/BENCHMARKS.md).
package dbguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spotoken/spotoken"
)

// Config configures a Guard.
type Config struct {
	// Timeout bounds how long a request waits for a database that does not
	// answer: each store call is given Timeout less Reserve. Default 5s.
	Timeout time.Duration
	// Reserve is the part of Timeout kept for a request's own work after a
	// call gave up, so its answer leaves within Timeout. Default a tenth of
	// Timeout; it must be less than Timeout.
	Reserve time.Duration
	// ProbeEvery is how often, at most, one call is let through while the
	// database is away. Default 1s.
	ProbeEvery time.Duration
	// RetryAfter is what callers are told to wait. Default 5s.
	RetryAfter time.Duration
	// Unavailable reports driver errors that mean the database cannot
	// serve (a connection error, a server shutting down); network errors,
	// cut connections and timeouts count without it.
	Unavailable func(error) bool
	// Logger gets a line when the database goes away and comes back.
	Logger *slog.Logger
	// Now is the clock that paces probes; default time.Now. Deadlines are
	// real time (they are context deadlines).
	Now func() time.Time
}

// Guard is a spotoken.Store that calls another under deadlines. It is safe
// for concurrent use.
type Guard struct {
	store spotoken.Store
	cfg   Config

	mu        sync.Mutex
	down      bool
	since     time.Time
	lastProbe time.Time
	probing   bool // a probe is in flight: no other call goes through
	reason    string
}

// New guards store.
func New(store spotoken.Store, cfg Config) *Guard {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Reserve <= 0 || cfg.Reserve >= cfg.Timeout {
		cfg.Reserve = cfg.Timeout / 10
	}
	if cfg.ProbeEvery <= 0 {
		cfg.ProbeEvery = time.Second
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Guard{store: store, cfg: cfg}
}

// Unwrap returns the guarded store.
func (g *Guard) Unwrap() spotoken.Store { return g.store }

// Close closes the guarded store.
func (g *Guard) Close() error { return g.store.Close() }

// Reseal calls the store's Reseal without a deadline: it walks every table.
func (g *Guard) Reseal(ctx context.Context, batch int) (int, error) {
	return g.store.Reseal(ctx, batch)
}

// Ready reports whether the database answers (and, if the store can tell,
// is migrated), under the deadline; it is also a probe.
func (g *Guard) Ready(ctx context.Context) error {
	r, ok := g.store.(interface{ Ready(context.Context) error })
	if !ok {
		return g.do(ctx, func(ctx context.Context) error { _, err := g.store.Apps(ctx); return err })
	}
	return g.do(ctx, r.Ready)
}

// Down reports whether the database is away, since when, and why.
func (g *Guard) Down() (down bool, since time.Time, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.down, g.since, g.reason
}

// Unavailable returns spotoken.ErrStoreUnavailable (with the reason) while
// the database is known to be away, and nil otherwise. It calls nothing:
// callers ask it before doing what they could not undo without the
// database, such as sending a refresh token to Spotify.
func (g *Guard) Unavailable() error {
	g.mu.Lock()
	down, reason := g.down, g.reason
	g.mu.Unlock()
	if !down {
		return nil
	}
	return g.unavailable(reason, nil)
}

// request is what Request puts in a context: whether one of the request's
// calls has already waited for a database that was away.
type request struct{ waited atomic.Bool }

type requestKey struct{}

// Request returns a context for one request's calls: the request waits out
// at most one failed call (see the package documentation). Contexts derived
// from it, including by context.WithoutCancel, share its account.
func Request(ctx context.Context) context.Context {
	return context.WithValue(ctx, requestKey{}, new(request))
}

// Handler marks each request's context with Request before h serves it.
func Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(Request(r.Context())))
	})
}

// do runs f under the deadline, unless the database is away and this call
// may not probe it.
func (g *Guard) do(ctx context.Context, f func(context.Context) error) error {
	req, _ := ctx.Value(requestKey{}).(*request)
	probe, err := g.admit(req)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout-g.cfg.Reserve)
	defer cancel()
	err = f(cctx)
	var se *spotoken.Error
	switch {
	case err == nil || errors.As(err, &se):
		g.up(probe)
		return err
	case ctx.Err() != nil:
		g.done(probe)
		return err // the caller gave up: says nothing of the database
	case cctx.Err() != nil && spotoken.IsBackground(ctx) && !probe:
		// Background work (the scheduler's pass, batched last-use and
		// audit writes) waits behind callers' writes at a store with one
		// writer (spotoken.Background), so its running out of time says
		// the store is busy, not away: it fails alone, and callers are
		// not answered 503 for it. A database that is really away fails
		// callers' calls too, which open the guard.
		g.done(probe)
		return fmt.Errorf("background store call: no answer within %s: %w", g.cfg.Timeout-g.cfg.Reserve, err)
	case cctx.Err() != nil:
		return g.fail(req, probe, fmt.Sprintf("the database did not answer within %s", g.cfg.Timeout), err)
	case g.isUnavailable(err):
		return g.fail(req, probe, "the database cannot be reached", err)
	}
	g.up(probe)
	return err
}

func (g *Guard) isUnavailable(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	return g.cfg.Unavailable != nil && g.cfg.Unavailable(err)
}

// admit decides whether a call of req may go to the database now: always
// while it is up; while it is away, only as the one probe in flight, at
// most every ProbeEvery, and never for a request that already waited.
// Otherwise it returns the error to answer at once.
func (g *Guard) admit(req *request) (probe bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.down {
		return false, nil
	}
	if !g.probing && (req == nil || !req.waited.Load()) {
		if now := g.cfg.Now(); now.Sub(g.lastProbe) >= g.cfg.ProbeEvery {
			g.lastProbe, g.probing = now, true
			return true, nil
		}
	}
	return false, g.unavailable(g.reason, nil)
}

// done ends a probe that told nothing (its caller gave up).
func (g *Guard) done(probe bool) {
	if probe {
		g.mu.Lock()
		g.probing = false
		g.mu.Unlock()
	}
}

// up records that the database answered.
func (g *Guard) up(probe bool) {
	g.mu.Lock()
	was, since := g.down, g.since
	g.down, g.reason = false, ""
	if probe {
		g.probing = false
	}
	g.mu.Unlock()
	if was {
		g.cfg.Logger.Info("the database is back", "away_for", g.cfg.Now().Sub(since).Round(time.Millisecond))
	}
}

// fail records that the database did not serve a call of req, and returns
// the error to answer.
func (g *Guard) fail(req *request, probe bool, reason string, cause error) error {
	if req != nil {
		req.waited.Store(true)
	}
	now := g.cfg.Now()
	g.mu.Lock()
	was := g.down
	if !was {
		g.down, g.since = true, now
	}
	g.lastProbe, g.reason = now, reason
	if probe {
		g.probing = false
	}
	g.mu.Unlock()
	if !was {
		g.cfg.Logger.Error("the database is unavailable; answering 503 until it is back", "reason", reason, "err", cause)
	}
	return g.unavailable(reason, cause)
}

func (g *Guard) unavailable(reason string, cause error) error {
	e := &spotoken.Error{Code: spotoken.EStoreUnavailable, Message: reason + "; try again later", RetryAfter: g.cfg.RetryAfter}
	if cause == nil {
		return e
	}
	return fmt.Errorf("%w (%v)", e, cause)
}
