package refresh

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultUpstreamRate is the default ceiling of token requests per second
// that one engine sends to Spotify (Config.UpstreamRate). Spotify publishes
// no number: its limit is per app over a rolling 30 seconds, and a 429 can
// hold the whole app back for hours (Retry-After up to 86,400 s has been
// seen), so the ceiling is set by need rather than by a guess at Spotify's
// limit, and the rate adapts below it. A connection in use costs one
// refresh an hour (tokens live an hour and are refreshed 5 minutes early):
// 50/s keeps 165,000 connections in use fresh from one replica, 2.5 times
// what the former fixed 20/s could, while spending at most 1,500 token
// requests in any 30 seconds.
const DefaultUpstreamRate = 50

// DefaultUpstreamRecovery is how long the adaptive rate takes to climb back
// from half of the ceiling to the ceiling after a 429 (Config.UpstreamRecovery).
const DefaultUpstreamRecovery = 5 * time.Minute

// budget spends the token requests an engine may send to Spotify: a token
// bucket whose rate adapts (AIMD) and whose tokens callers take first.
//
// Priority. A caller whose token must be refreshed takes a token if there
// is one, or queues behind other callers only (the bucket goes into debt,
// which later refills repay). The scheduler takes one only when the bucket
// holds more than reserve (half its burst) beyond it, and otherwise waits
// for that: it spends what callers leave, never what they need, and while
// callers use the whole rate it pauses.
//
// Adaptation. The rate starts at the ceiling. A 429 from Spotify halves it
// (at most once a second: one burst of answers is one signal), down to a
// floor of one a second or the ceiling if lower, and empties the bucket;
// then it climbs back linearly, reaching the ceiling DefaultUpstreamRecovery
// after a fall from the ceiling to half of it (additive increase). The
// rate's clock is the engine's (so tests move it); the bucket refills in
// real time, as a limiter must.
type budget struct {
	mu      sync.Mutex
	ceiling float64 // tokens per second
	floor   float64
	slope   float64 // recovery: tokens per second gained per second
	burst   float64
	reserve float64
	// base is the rate when the last 429 was met, at since (engine
	// clock); zero since: none yet.
	base  float64
	since time.Time
	// tokens at last (real time); negative while callers are queued.
	tokens float64
	last   time.Time
	now    func() time.Time // the engine's clock
	real   func() time.Time
	// unlimited: the ceiling is infinite (rate.Inf), nothing is counted.
	unlimited bool

	schedWaits atomic.Int64
}

func newBudget(ceiling float64, burst int, recovery time.Duration, now func() time.Time) *budget {
	b := &budget{ceiling: ceiling, floor: min(1, ceiling), burst: float64(burst), now: now, real: time.Now,
		unlimited: ceiling >= math.MaxFloat64}
	b.slope = ceiling / 2 / recovery.Seconds()
	b.reserve = b.burst / 2
	b.tokens = b.burst
	b.last = b.real()
	return b
}

// rateAt is the adaptive rate at t (engine clock).
func (b *budget) rateAt(t time.Time) float64 {
	if b.since.IsZero() || b.unlimited {
		return b.ceiling
	}
	return min(b.ceiling, b.base+b.slope*max(0, t.Sub(b.since).Seconds()))
}

// Rate is the current adaptive rate, in token requests per second.
func (b *budget) Rate() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rateAt(b.now())
}

// refill adds the tokens earned since last; b.mu is held.
func (b *budget) refill() float64 {
	r := b.rateAt(b.now())
	t := b.real()
	if b.unlimited {
		b.tokens = b.burst
	} else {
		b.tokens = min(b.burst, b.tokens+r*t.Sub(b.last).Seconds())
	}
	b.last = t
	return r
}

// limited records a 429: the rate halves (once a second at most) and the
// bucket empties.
func (b *budget) limited() {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if !b.since.IsZero() && now.Sub(b.since) < time.Second {
		return
	}
	b.refill()
	b.base = max(b.floor, b.rateAt(now)/2)
	b.since = now
	b.tokens = min(b.tokens, 0)
}

// takeCaller takes a token for a caller, waiting (in real time) behind
// other callers only.
func (b *budget) takeCaller(ctx context.Context) error {
	b.mu.Lock()
	r := b.refill()
	b.tokens--
	if b.tokens >= 0 || b.unlimited {
		b.mu.Unlock()
		return nil
	}
	wait := time.Duration(-b.tokens / r * float64(time.Second))
	b.mu.Unlock()
	if err := sleep(ctx, wait); err != nil {
		b.mu.Lock()
		b.tokens++ // give the place back
		b.mu.Unlock()
		return err
	}
	return nil
}

// takeScheduled takes a token for the scheduler when the bucket holds one
// beyond the callers' reserve, waiting until it does.
func (b *budget) takeScheduled(ctx context.Context) error {
	counted := false
	for {
		b.mu.Lock()
		r := b.refill()
		if b.tokens >= 1+b.reserve || b.unlimited {
			b.tokens--
			b.mu.Unlock()
			return nil
		}
		wait := time.Duration((1 + b.reserve - b.tokens) / r * float64(time.Second))
		b.mu.Unlock()
		if !counted {
			b.schedWaits.Add(1)
			counted = true
		}
		// Look again at least every second: the rate may have changed.
		if err := sleep(ctx, min(wait, time.Second)); err != nil {
			return err
		}
	}
}

// sleep waits d in real time, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
