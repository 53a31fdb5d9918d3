package server

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/spotoken/spotoken"
)

// Defaults of Config.ListConcurrency and Config.ListWait.
const (
	DefaultListConcurrency = 1
	DefaultListWait        = 2 * time.Second
)

// listLimiter bounds how many listings (GET /v1/connections, GET
// /v1/audit) one API key runs at once. A page is read from an index in
// milliseconds, but a listing is still several times a cached vend's work
// (a page of views, the app's rate-limit window, the audit record), and a
// service that lists from many goroutines back to back takes that much of
// the broker's CPU from every other app's token requests: four such loops
// took a third of a two-core broker's cache-miss vends. So each key's
// listings beyond max wait, in turn (FIFO), up to wait for one in flight to
// end, then are answered 429 rate_limited with Retry-After. Paging one page
// after another, as the API's cursors do, never waits; other keys are not
// affected. Memory: an entry per key with a listing in flight or waiting,
// dropped when the last ends.
type listLimiter struct {
	max  int
	wait time.Duration

	mu    sync.Mutex
	gates map[string]*listGate
}

// listGate is one key's slots: a listing holds one while it runs.
type listGate struct {
	slots chan struct{}
	users int // listings running or waiting
}

func newListLimiter(n int, wait time.Duration) *listLimiter {
	return &listLimiter{max: n, wait: wait, gates: map[string]*listGate{}}
}

// acquire takes one of key's slots, waiting up to l.wait (or until ctx
// ends) for one; release gives it back. ok is false when none came free.
func (l *listLimiter) acquire(ctx context.Context, key string) (release func(), ok bool) {
	l.mu.Lock()
	g := l.gates[key]
	if g == nil {
		g = &listGate{slots: make(chan struct{}, l.max)}
		l.gates[key] = g
	}
	g.users++
	l.mu.Unlock()
	leave := func() {
		l.mu.Lock()
		if g.users--; g.users == 0 {
			delete(l.gates, key)
		}
		l.mu.Unlock()
	}
	select {
	case g.slots <- struct{}{}:
	default:
		t := time.NewTimer(l.wait)
		defer t.Stop()
		select {
		case g.slots <- struct{}{}:
		case <-t.C:
			leave()
			return nil, false
		case <-ctx.Done():
			leave()
			return nil, false
		}
	}
	return func() { <-g.slots; leave() }, true
}

// inFlight returns how many keys have a listing running or waiting.
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
		release, ok := s.lists.acquire(r.Context(), key.ID)
		if !ok {
			s.metrics.listLimited()
			return &spotoken.Error{Code: spotoken.ERateLimited, RetryAfter: time.Second, Message: fmt.Sprintf(
				"this API key has %d listing(s) in flight, its limit, and none ended within %s; list one page after another", s.lists.max, s.lists.wait)}
		}
		defer release()
		return h(w, r, key)
	}
}
