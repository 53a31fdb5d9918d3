// Package dbguard puts every call to a spotoken store under a deadline and
// tells its callers, with one error, when the database cannot be reached:
// spotoken.ErrStoreUnavailable, which the API answers 503 "unavailable"
// with Retry-After.
//
// A call that fails because the database refused the connection, cut it,
// or did not answer within Timeout opens the guard: for ProbeEvery, calls
// fail at once instead of each waiting out the deadline, then one call goes
// through as a probe; the first that succeeds closes the guard again. So
// while the database is away requests answer promptly, and when it comes
// back the broker recovers on its own.
package dbguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/spotoken/spotoken"
)

// Config configures a Guard.
type Config struct {
	// Timeout bounds each store call. Default 5s.
	Timeout time.Duration
	// ProbeEvery is how often one call is let through while the database
	// is away. Default 1s.
	ProbeEvery time.Duration
	// RetryAfter is what callers are told to wait. Default 5s.
	RetryAfter time.Duration
	// Unavailable reports driver errors that mean the database cannot
	// serve (a connection error, a server shutting down); network errors,
	// cut connections and timeouts count without it.
	Unavailable func(error) bool
	// Logger gets a line when the database goes away and comes back.
	Logger *slog.Logger
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
	reason    string
}

// New guards store.
func New(store spotoken.Store, cfg Config) *Guard {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
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
		return g.do(ctx, func(ctx context.Context) error { _, err := g.store.CountPending(ctx, "", time.Now()); return err })
	}
	return g.do(ctx, r.Ready)
}

// Down reports whether the database is away, since when, and why.
func (g *Guard) Down() (down bool, since time.Time, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.down, g.since, g.reason
}

// do runs f under the deadline, unless the database is away and this is
// not the time for a probe.
func (g *Guard) do(ctx context.Context, f func(context.Context) error) error {
	if !g.admit() {
		g.mu.Lock()
		reason := g.reason
		g.mu.Unlock()
		return g.unavailable(reason, nil)
	}
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	err := f(cctx)
	var se *spotoken.Error
	switch {
	case err == nil || errors.As(err, &se):
		g.up()
		return err
	case ctx.Err() != nil:
		return err // the caller gave up: says nothing of the database
	case cctx.Err() != nil:
		return g.fail(fmt.Sprintf("the database did not answer within %s", g.cfg.Timeout), err)
	case g.isUnavailable(err):
		return g.fail("the database cannot be reached", err)
	}
	g.up()
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

// admit reports whether a call may go to the database now.
func (g *Guard) admit() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.down {
		return true
	}
	if now := time.Now(); now.Sub(g.lastProbe) >= g.cfg.ProbeEvery {
		g.lastProbe = now
		return true
	}
	return false
}

func (g *Guard) up() {
	g.mu.Lock()
	was, since := g.down, g.since
	g.down, g.reason = false, ""
	g.mu.Unlock()
	if was {
		g.cfg.Logger.Info("the database is back", "away_for", time.Since(since).Round(time.Millisecond))
	}
}

func (g *Guard) fail(reason string, cause error) error {
	g.mu.Lock()
	was := g.down
	if !was {
		g.down, g.since = true, time.Now()
	}
	g.lastProbe, g.reason = time.Now(), reason
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
