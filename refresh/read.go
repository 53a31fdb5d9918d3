package refresh

import (
	"context"
	"errors"
	"sync"

	"github.com/spotoken/spotoken"
)

// The read of a vend that missed the cache
//
// Most vends that miss the engine's memory need no refresh: the stored
// token is good (another replica refreshed it, or this process evicted
// it), or the connection's state answers. Such a vend is one read of the
// row. A refresh flight runs on a goroutine of its own (it must outlive a
// caller that gives up), and that goroutine's stack grew to SQLite's depth
// on every miss: 7% of a miss's CPU (docs/BENCHMARKS.md). So a plain vend
// first reads the row on the caller's own goroutine, shared by the
// callers that miss the same connection at once, as a flight would be:
// the first reads, the others wait for its answer (or their own context).
// Only when the row cannot answer (a refresh is due, held back or taken
// by another replica) do they go on to the flight, which reads the row
// again under its own rules.

// readCall is one shared read of a row.
type readCall struct {
	done chan struct{}
	at   AccessToken
	err  error
	ok   bool // the row answered: at or err is the answer
	// joined counts the callers waiting for this read (tests).
	joined int
}

// reads are the shared reads in progress, by connection.
type reads struct {
	mu    sync.Mutex
	calls map[spotoken.ConnectionKey]*readCall
}

// readShared answers req (a plain vend: no force, no rejected token) from
// the stored row when the row can, reading it on the caller's goroutine
// or waiting for a concurrent caller's read of the same connection. ok is
// false when a flight must answer instead.
func (e *Engine) readShared(ctx context.Context, key spotoken.ConnectionKey, req request) (at AccessToken, ok bool, err error) {
	r := &e.reads
	r.mu.Lock()
	if call, found := r.calls[key]; found {
		call.joined++
		r.mu.Unlock()
		select {
		case <-call.done:
		case <-ctx.Done():
			return AccessToken{}, false, nil // the flight answers ctx's end
		}
		if !call.ok || (call.err == nil && !call.at.Valid(e.cfg.Now(), req.minTTL)) {
			return AccessToken{}, false, nil
		}
		return call.at, true, call.err
	}
	if r.calls == nil {
		r.calls = make(map[spotoken.ConnectionKey]*readCall)
	}
	call := &readCall{done: make(chan struct{})}
	r.calls[key] = call
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.calls, key)
		r.mu.Unlock()
		close(call.done)
	}()

	req.gen = e.generation(key).Load()
	c, err := e.cfg.Store.Connection(ctx, key)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			// This caller's end, not the row's answer: others read again.
			return AccessToken{}, false, nil
		}
		call.ok, call.err = true, err
		return AccessToken{}, true, err
	}
	at, done, err := e.fromRow(c, req)
	if !done {
		return AccessToken{}, false, nil
	}
	if err == nil {
		e.stats.vendsStore.Add(1)
	}
	call.ok, call.at, call.err = true, at, err
	return at, true, err
}
