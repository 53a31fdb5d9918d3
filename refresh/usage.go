package refresh

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spotoken/spotoken"
)

// Recording use
//
// The scheduler refreshes ahead of expiry only the connections callers
// used lately (Scheduler.ActiveWindow), so the engine records each
// caller's use (Token, Refresh, Invalidate; never the scheduler's own
// refreshes) in the store's last_used_at. Not one write per vend: a use is
// noted in memory at most once per connection every Config.UseResolution
// (the cache entry remembers when), collected in a bounded set, and
// written in batches by FlushUses, which Run calls every
// Config.UseFlushInterval. A use that does not fit in the set
// (Config.MaxPendingUses) is dropped and counted: its connection is then
// at worst refreshed on demand rather than ahead of time.

// uses is the set of uses waiting to be written.
type uses struct {
	mu      sync.Mutex
	pending map[spotoken.ConnectionKey]int64 // unix nanoseconds
	max     int
	dropped atomic.Int64
	written atomic.Int64
}

// note records a use of key at n (unix nanoseconds).
func (u *uses) note(key spotoken.ConnectionKey, n int64) {
	u.mu.Lock()
	if old, ok := u.pending[key]; ok {
		u.pending[key] = max(old, n)
	} else if len(u.pending) < u.max {
		u.pending[key] = n
	} else {
		u.dropped.Add(1)
	}
	u.mu.Unlock()
}

func (u *uses) len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.pending)
}

// used records a caller's use of key at now, unless one was recorded within
// UseResolution (as the key's cache entry, if any, remembers).
func (e *Engine) used(key spotoken.ConnectionKey, h uint64, now time.Time) {
	n := now.UnixNano()
	if c := e.cache.get(key, h); c != nil {
		e.usedEntry(c, n)
		return
	}
	e.uses.note(key, n)
}

// usedUnless records a caller's use of key at now, unless err says there
// is no such connection: made-up ids leave nothing behind.
func (e *Engine) usedUnless(key spotoken.ConnectionKey, h uint64, now time.Time, err error) {
	if !errors.Is(err, spotoken.ErrNotFound) {
		e.used(key, h, now)
	}
}

// usedEntry records a use of c's key at n (unix nanoseconds) unless one was
// recorded within UseResolution.
func (e *Engine) usedEntry(c *cached, n int64) {
	last := c.usedNano.Load()
	if n-last < int64(e.cfg.UseResolution) || !c.usedNano.CompareAndSwap(last, n) {
		return
	}
	e.uses.note(c.key, n)
}

// markBatch is how many uses one MarkUsed call writes.
const markBatch = 1000

// FlushUses writes the uses noted so far to the store, in batches, as
// background work (spotoken.Background: a store with one writer lets
// callers' writes go first). Uses it could not write are noted again
// (unless newer ones were), and the first error is returned.
func (e *Engine) FlushUses(ctx context.Context) error {
	e.uses.mu.Lock()
	pending := e.uses.pending
	if len(pending) == 0 {
		e.uses.mu.Unlock()
		return nil
	}
	e.uses.pending = make(map[spotoken.ConnectionKey]int64)
	e.uses.mu.Unlock()
	batch := make([]spotoken.ConnectionUse, 0, min(len(pending), markBatch))
	for k, n := range pending {
		batch = append(batch, spotoken.ConnectionUse{Key: k, At: time.Unix(0, n).UTC()})
	}
	// Sorted, so that two replicas writing the same rows lock them in
	// the same order.
	slices.SortFunc(batch, func(a, b spotoken.ConnectionUse) int {
		return cmp.Or(cmp.Compare(a.Key.AppID, b.Key.AppID), cmp.Compare(a.Key.ID, b.Key.ID))
	})
	ctx = spotoken.Background(ctx) // no caller waits for these writes
	var first error
	for chunk := range slices.Chunk(batch, markBatch) {
		if err := e.cfg.Store.MarkUsed(ctx, chunk); err != nil {
			if first == nil {
				first = fmt.Errorf("refresh: record connections' use: %w", err)
			}
			for _, u := range chunk {
				e.uses.note(u.Key, u.At.UnixNano())
			}
			continue
		}
		e.uses.written.Add(int64(len(chunk)))
	}
	return first
}

// Run writes callers' uses of connections to the store every
// Config.UseFlushInterval until ctx is done, then once more. Run one per
// engine in a long-lived process (serve); without it, uses are noted up to
// Config.MaxPendingUses and no further.
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(e.cfg.UseFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := e.FlushUses(fctx); err != nil {
				e.log.Warn("record connections' use", "err", err)
			}
			return ctx.Err()
		case <-t.C:
			if err := e.FlushUses(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("record connections' use", "err", err)
			}
		}
	}
}
