package refresh

import (
	"context"
	"errors"
	"log/slog"
	mathrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spotoken/spotoken"
)

// DueStore lists connections whose tokens expire soon.
type DueStore interface {
	DueUsed(ctx context.Context, q spotoken.DueQuery) ([]spotoken.DueConnection, error)
	CountDue(ctx context.Context, q spotoken.DueQuery) (int, error)
}

// DefaultActiveWindow is the Scheduler's default ActiveWindow. Two hours:
// tokens live one, so a service that asks for a connection's token about
// hourly (a cron job, a poller) finds it refreshed ahead every time, with
// room for jitter and for UseResolution's coarseness, while a connection
// nobody asked for in two hours costs at most two more refreshes, then
// none until its next use, which pays for one on-demand refresh. Spotify
// does not expire unused refresh tokens (the grant runs six months
// regardless of use), so nothing is lost by leaving them idle.
const DefaultActiveWindow = 2 * time.Hour

// Scheduler refreshes connections whose access tokens expire within Window,
// so callers find fresh tokens: the connections callers used within
// ActiveWindow; the others are refreshed when a caller asks. Run one on
// every replica: the store's leases keep two replicas off the same
// connection, and a replica skips a connection another one is refreshing
// instead of waiting for it. Its refreshes spend only the upstream budget
// callers leave (see Config.UpstreamRate).
//
// It reads due connections in batches from an index, from a cursor, so it
// works the same with a million stored connections: memory is bounded by
// Batch, and connections idle for longer than ActiveWindow (whose tokens
// expired before it began) are not even read.
type Scheduler struct {
	Engine *Engine
	Store  DueStore
	// Now is the clock; default the engine's.
	Now func() time.Time
	// Window: refresh tokens that expire within it. Default 5m.
	Window time.Duration
	// ActiveWindow: refresh ahead of expiry only connections a caller used
	// within it (Engine records uses). Default DefaultActiveWindow;
	// negative: every active connection, used or not.
	ActiveWindow time.Duration
	// Interval between looks at the store, jittered by ±25% so replicas
	// drift apart. Default 30s.
	Interval time.Duration
	// Batch is how many due connections one look reads. Default 500.
	Batch int
	// Concurrency bounds refreshes in flight. Default 16: with Spotify
	// answering in about 150 ms, enough for 100 refreshes a second.
	Concurrency int
	// Logger: default the engine's.
	Logger *slog.Logger
}

// Pass is what one RunOnce did.
type Pass struct {
	Due       int // connections read as due
	Refreshed int // refreshed, or found fresh (another replica did it)
	Skipped   int // another replica was refreshing them
	Failed    int // refresh failed (backoff, needs_reauth, ...)
}

func (s *Scheduler) defaults() {
	if s.Now == nil {
		s.Now = s.Engine.cfg.Now
	}
	if s.Window <= 0 {
		s.Window = 5 * time.Minute
	}
	if s.ActiveWindow == 0 {
		s.ActiveWindow = DefaultActiveWindow
	}
	if s.Interval <= 0 {
		s.Interval = 30 * time.Second
	}
	if s.Batch <= 0 {
		s.Batch = 500
	}
	if s.Concurrency <= 0 {
		s.Concurrency = 16
	}
	if s.Logger == nil {
		s.Logger = s.Engine.log
	}
}

// Run looks for due connections every Interval (jittered) until ctx is
// done. The Interval runs from the start of one pass to the start of the
// next: a pass that took longer (a backlog of thousands due at once) is
// followed by the next at once, not after another Interval while the
// tokens that fell due during it expire.
func (s *Scheduler) Run(ctx context.Context) error {
	s.defaults()
	for {
		start := s.Now()
		p, err := s.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			s.Logger.Error("scheduler pass", "err", err)
		} else if p.Due > 0 {
			s.Logger.Info("scheduler pass", "due", p.Due, "refreshed", p.Refreshed, "skipped", p.Skipped, "failed", p.Failed)
		}
		wait := time.Duration(float64(s.Interval)*(0.75+0.5*mathrand.Float64())) - s.Now().Sub(start)
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// RunOnce refreshes the connections due now, batch by batch, each read
// after the last one's end, until a batch comes back short. It counts them
// first (Stats.DueBacklog) and tells the engine how late the oldest one
// is (Stats.SchedulerLag) as it goes. Its store calls are background work
// (spotoken.Background).
func (s *Scheduler) RunOnce(ctx context.Context) (Pass, error) {
	s.defaults()
	// No caller waits for these refreshes: a store with one writer lets
	// callers' writes (their own refreshes, connects) go first.
	ctx = spotoken.Background(ctx)
	now := s.Now()
	q := spotoken.DueQuery{Before: now.Add(s.Window), Limit: s.Batch}
	if s.ActiveWindow > 0 {
		// A connection used since UsedSince was vended a valid token then,
		// so its token expires after UsedSince: start the cursor there and
		// never read the idle connections whose tokens expired long ago.
		q.UsedSince = now.Add(-s.ActiveWindow)
		q.After.Expiry = q.UsedSince
	}
	st := &s.Engine.stats
	defer func() { st.dueBacklog.Store(0); st.dueSince.Store(0) }()
	n, err := s.Store.CountDue(ctx, q)
	if err != nil {
		return Pass{}, err
	}
	st.dueBacklog.Store(int64(n))
	var total Pass
	for {
		due, err := s.Store.DueUsed(ctx, q)
		if err != nil {
			return total, err
		}
		if len(due) > 0 {
			st.dueSince.Store(due[0].Expiry.Add(-s.Window).UnixNano())
			q.After = due[len(due)-1]
		}
		p := s.refreshAll(ctx, due)
		total.Due += p.Due
		total.Refreshed += p.Refreshed
		total.Skipped += p.Skipped
		total.Failed += p.Failed
		if len(due) < s.Batch || ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}

func (s *Scheduler) refreshAll(ctx context.Context, due []spotoken.DueConnection) Pass {
	var refreshed, skipped, failed atomic.Int64
	sem := make(chan struct{}, s.Concurrency)
	var wg sync.WaitGroup
	for _, d := range due {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, err := s.Engine.fly(ctx, d.Key, request{minTTL: s.Window, noWait: true, scheduled: true})
			s.Engine.stats.dueBacklog.Add(-1)
			switch {
			case err == nil:
				refreshed.Add(1)
			case errors.Is(err, errLeaseBusy):
				skipped.Add(1)
			default:
				failed.Add(1)
				s.Logger.Debug("scheduled refresh", "connection", d.Key.String(), "err", err)
			}
		}()
	}
	wg.Wait()
	return Pass{Due: len(due), Refreshed: int(refreshed.Load()), Skipped: int(skipped.Load()), Failed: int(failed.Load())}
}
