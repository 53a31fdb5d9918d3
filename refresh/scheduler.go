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
	Due(ctx context.Context, before time.Time, limit int) ([]spotoken.DueConnection, error)
}

// Scheduler refreshes connections whose access tokens expire within Window,
// so callers find fresh tokens. Run one on every replica: the store's leases
// keep two replicas off the same connection, and a replica skips a connection
// another one is refreshing instead of waiting for it.
//
// It reads due connections in batches from an index, so it works the same
// with a million stored connections: memory is bounded by Batch.
type Scheduler struct {
	Engine *Engine
	Store  DueStore
	// Now is the clock; default the engine's.
	Now func() time.Time
	// Window: refresh tokens that expire within it. Default 5m.
	Window time.Duration
	// Interval between looks at the store, jittered by ±25% so replicas
	// drift apart. Default 30s.
	Interval time.Duration
	// Batch is how many due connections one look reads. Default 500.
	Batch int
	// Concurrency bounds refreshes in flight. Default 4.
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
	if s.Interval <= 0 {
		s.Interval = 30 * time.Second
	}
	if s.Batch <= 0 {
		s.Batch = 500
	}
	if s.Concurrency <= 0 {
		s.Concurrency = 4
	}
	if s.Logger == nil {
		s.Logger = s.Engine.log
	}
}

// Run looks for due connections every Interval until ctx is done.
func (s *Scheduler) Run(ctx context.Context) error {
	s.defaults()
	for {
		p, err := s.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			s.Logger.Error("scheduler pass", "err", err)
		} else if p.Due > 0 {
			s.Logger.Info("scheduler pass", "due", p.Due, "refreshed", p.Refreshed, "skipped", p.Skipped, "failed", p.Failed)
		}
		wait := time.Duration(float64(s.Interval) * (0.75 + 0.5*mathrand.Float64()))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// RunOnce refreshes the connections due now, batch by batch, until a batch
// comes back short or only holds connections it could not refresh.
func (s *Scheduler) RunOnce(ctx context.Context) (Pass, error) {
	s.defaults()
	var total Pass
	seen := make(map[spotoken.ConnectionKey]bool)
	for {
		due, err := s.Store.Due(ctx, s.Now().Add(s.Window), s.Batch)
		if err != nil {
			return total, err
		}
		var fresh []spotoken.ConnectionKey
		for _, d := range due {
			if !seen[d.Key] {
				seen[d.Key] = true
				fresh = append(fresh, d.Key)
			}
		}
		p := s.refreshAll(ctx, fresh)
		total.Due += p.Due
		total.Refreshed += p.Refreshed
		total.Skipped += p.Skipped
		total.Failed += p.Failed
		// A short batch was the last; a batch of nothing new (all skipped or
		// failing) would only repeat itself.
		if len(due) < s.Batch || len(fresh) == 0 || ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}

func (s *Scheduler) refreshAll(ctx context.Context, keys []spotoken.ConnectionKey) Pass {
	var refreshed, skipped, failed atomic.Int64
	sem := make(chan struct{}, s.Concurrency)
	var wg sync.WaitGroup
	for _, key := range keys {
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
			_, err := s.Engine.fly(ctx, key, request{minTTL: s.Window, noWait: true})
			switch {
			case err == nil:
				refreshed.Add(1)
			case errors.Is(err, errLeaseBusy):
				skipped.Add(1)
			default:
				failed.Add(1)
				s.Logger.Debug("scheduled refresh", "connection", key.String(), "err", err)
			}
		}()
	}
	wg.Wait()
	return Pass{Due: len(keys), Refreshed: int(refreshed.Load()), Skipped: int(skipped.Load()), Failed: int(failed.Load())}
}
