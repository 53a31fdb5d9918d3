package refresh

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
)

// TallyStore is what a Tally needs of a store.
type TallyStore interface {
	AddRefreshTallies(ctx context.Context, tallies ...spotoken.RefreshTally) error
	DeleteRefreshTalliesBefore(ctx context.Context, before time.Time) (int, error)
}

var _ TallyStore = spotoken.Store(nil)

// Defaults of the Tally settings.
const (
	DefaultTallyInterval  = 10 * time.Second
	DefaultTallyRetention = 8 * 24 * time.Hour
)

// Tally counts each app's refresh requests to Spotify by hour and outcome
// (refreshed, failed, rate-limited) for the operator's console's charts.
// Wrap the engine's Refresher with Refresher: every request is counted in
// memory, never with a write of its own, and Run adds the counts to the
// store (spotoken.TallyStore) every Interval, each replica its own, so a
// busy hour costs one upsert per app and replica every Interval. What a
// replica counted since its last flush is lost if it crashes (at most an
// Interval's worth); on a clean shutdown Run flushes once more. A flush
// that fails keeps its counts for the next.
//
// Set the fields before the first use and do not change them afterwards.
// A Tally is safe for concurrent use.
type Tally struct {
	// Store keeps the tallies. Required.
	Store TallyStore
	// Now is the clock that decides the hour; default time.Now.
	Now func() time.Time
	// Logger gets failed flushes; default discard.
	Logger *slog.Logger
	// Interval is how often Run flushes; default 10s.
	Interval time.Duration
	// Retention is how long tallies are kept; Run deletes older ones once
	// an hour. Default 8 days.
	Retention time.Duration

	mu     sync.Mutex
	counts map[tallyKey]*spotoken.RefreshTally
	swept  time.Time
}

type tallyKey struct {
	app  string
	hour int64
}

// Refresher returns r with every Refresh counted.
func (t *Tally) Refresher(r Refresher) Refresher { return tallied{r, t} }

type tallied struct {
	Refresher
	t *Tally
}

func (r tallied) Refresh(ctx context.Context, app *spotoken.App, refreshToken spotoken.Secret) (*accounts.Grant, error) {
	g, err := r.Refresher.Refresh(ctx, app, refreshToken)
	r.t.Count(app.ID, err)
	return g, err
}

// Count counts one refresh request of appID that ended with err: nil is a
// refresh, a 429 a rate limit, anything else a failure, except a canceled
// context (the process stopping), which is not counted.
func (t *Tally) Count(appID string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	hour := t.now().UTC().Truncate(time.Hour)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts == nil {
		t.counts = make(map[tallyKey]*spotoken.RefreshTally)
	}
	k := tallyKey{appID, hour.Unix()}
	c := t.counts[k]
	if c == nil {
		c = &spotoken.RefreshTally{AppID: appID, Hour: hour}
		t.counts[k] = c
	}
	var ae *accounts.Error
	switch {
	case err == nil:
		c.Refreshed++
	case errors.As(err, &ae) && ae.Status == 429:
		c.RateLimited++
	default:
		c.Failed++
	}
}

func (t *Tally) now() time.Time {
	if t.Now == nil {
		return time.Now()
	}
	return t.Now()
}

// Flush adds what was counted since the last flush to the store. On
// failure the counts are kept for the next flush.
func (t *Tally) Flush(ctx context.Context) error {
	t.mu.Lock()
	counts := t.counts
	t.counts = nil
	t.mu.Unlock()
	if len(counts) == 0 {
		return nil
	}
	batch := make([]spotoken.RefreshTally, 0, len(counts))
	for _, c := range counts {
		batch = append(batch, *c)
	}
	if err := t.Store.AddRefreshTallies(spotoken.Background(ctx), batch...); err != nil {
		t.mu.Lock()
		for _, c := range batch {
			t.merge(c)
		}
		t.mu.Unlock()
		return err
	}
	return nil
}

// merge adds c back to the counts; t.mu is held.
func (t *Tally) merge(c spotoken.RefreshTally) {
	if t.counts == nil {
		t.counts = make(map[tallyKey]*spotoken.RefreshTally)
	}
	k := tallyKey{c.AppID, c.Hour.Unix()}
	if have := t.counts[k]; have != nil {
		have.Refreshed += c.Refreshed
		have.Failed += c.Failed
		have.RateLimited += c.RateLimited
		return
	}
	t.counts[k] = &c
}

// Sweep deletes the tallies older than Retention, at most once an hour
// (of the Tally's clock) unless it is forced.
func (t *Tally) Sweep(ctx context.Context, force bool) error {
	now := t.now()
	t.mu.Lock()
	due := force || now.Sub(t.swept) >= time.Hour
	if due {
		t.swept = now
	}
	t.mu.Unlock()
	if !due {
		return nil
	}
	retention := t.Retention
	if retention <= 0 {
		retention = DefaultTallyRetention
	}
	_, err := t.Store.DeleteRefreshTalliesBefore(ctx, now.Add(-retention))
	return err
}

// Run flushes every Interval and sweeps once an hour until ctx is done,
// then flushes once more.
func (t *Tally) Run(ctx context.Context) error {
	interval := t.Interval
	if interval <= 0 {
		interval = DefaultTallyInterval
	}
	log := t.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := t.Flush(final); err != nil {
				log.Warn("refresh tallies: last flush", "err", err)
			}
			return nil
		case <-tick.C:
		}
		if err := t.Flush(ctx); err != nil && ctx.Err() == nil {
			log.Warn("refresh tallies: flush", "err", err)
		}
		if err := t.Sweep(ctx, false); err != nil && ctx.Err() == nil {
			log.Warn("refresh tallies: delete old tallies", "err", err)
		}
	}
}
