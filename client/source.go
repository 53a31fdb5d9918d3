package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// TokenSource returns an oauth2.TokenSource of connectionID's access
// tokens. It is safe for concurrent use. It serves a cached token until the
// expiry margin before its expiry, then asks the broker for a new one;
// there is at most one call to the broker at a time per connection, and
// concurrent callers share its answer. Errors are not cached: the next
// call asks again.
//
// Every TokenSource, Transport and HTTPClient of one connection on one
// Client share the cache. Token has no context: a call to the broker is
// bounded by the broker client's timeout (see WithHTTPClient).
func (c *Client) TokenSource(connectionID string) oauth2.TokenSource {
	return tokenSource{c.source(connectionID)}
}

// tokenSource is the oauth2.TokenSource view of a source.
type tokenSource struct{ s *source }

// Token implements oauth2.TokenSource.
func (ts tokenSource) Token() (*oauth2.Token, error) { return ts.s.token(context.Background(), "") }

// source is one connection's cached token, or the app's own (app), and
// its call to the broker in flight.
type source struct {
	c   *Client
	id  string
	app bool // the app's own token: id is "-"

	// mu guards the fields below. Client.mu may be held when taking it,
	// never the other way round.
	mu     sync.Mutex
	cached *oauth2.Token
	flight *flight
}

// flight is one call to the provider that any number of callers wait for.
type flight struct {
	done    chan struct{} // closed when tok and err are set
	force   bool
	tok     *oauth2.Token
	err     error
	waiters int // callers still waiting; when the last leaves, cancel
	cancel  context.CancelFunc
}

// fresh reports whether t may still be used at now.
func (s *source) fresh(t *oauth2.Token, now time.Time) bool {
	return t != nil && now.Add(s.c.opts.margin).Before(t.Expiry)
}

// idle reports whether s holds nothing worth keeping: no call in flight and
// no token that may still be used.
func (s *source) idle(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flight == nil && !s.fresh(s.cached, now)
}

// token returns a token for s's connection. With rejected set (the token
// Spotify just refused), it returns a token other than rejected: the cached
// one if another caller has already replaced it, else one from a
// force_refresh call to the provider.
func (s *source) token(ctx context.Context, rejected string) (*oauth2.Token, error) {
	for {
		s.mu.Lock()
		if t := s.cached; s.fresh(t, s.c.opts.now()) && (rejected == "" || t.AccessToken != rejected) {
			s.mu.Unlock()
			return copyToken(t), nil
		}
		f := s.flight
		if f == nil {
			f = s.start(ctx, rejected)
		}
		f.waiters++
		s.mu.Unlock()

		select {
		case <-f.done:
		case <-ctx.Done():
			s.mu.Lock()
			if f.waiters--; f.waiters == 0 {
				// Nobody waits any more: stop the call, and let the next
				// caller start its own.
				f.cancel()
				if s.flight == f {
					s.flight = nil
				}
			}
			s.mu.Unlock()
			return nil, fmt.Errorf("client: connection %q: waiting for a token: %w", s.id, context.Cause(ctx))
		}
		if f.err != nil {
			return nil, f.err
		}
		if rejected != "" && !f.force && f.tok.AccessToken == rejected {
			// This flight started before the rejection and brought back
			// the same token: ask again, forcing a refresh.
			continue
		}
		return copyToken(f.tok), nil
	}
}

// start begins a call to the provider; s.mu is held. The call runs on its
// own context, which keeps ctx's values but not its cancellation: it is
// cancelled when every caller waiting for it has gone.
func (s *source) start(ctx context.Context, rejected string) *flight {
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &flight{done: make(chan struct{}), force: rejected != "", cancel: cancel}
	s.flight = f
	req := TokenRequest{MinTTL: s.c.opts.margin, ForceRefresh: f.force, Rejected: rejected}
	go func() {
		tok, err := s.fetch(fctx, req)
		cancel()
		s.mu.Lock()
		f.tok, f.err = tok, err
		if err == nil {
			s.cached = tok
		}
		if s.flight == f {
			s.flight = nil
		}
		s.mu.Unlock()
		close(f.done)
	}()
	return f
}

// copyToken returns a copy of t, so that callers cannot change the cached
// token. Extra's map is shared, read-only.
func copyToken(t *oauth2.Token) *oauth2.Token {
	c := *t
	return &c
}

// fetch asks the provider for s's token.
func (s *source) fetch(ctx context.Context, req TokenRequest) (*oauth2.Token, error) {
	if !s.app {
		return s.c.provider.FetchToken(ctx, s.id, req)
	}
	p, ok := s.c.provider.(AppTokenProvider)
	if !ok {
		return nil, errors.New("client: this client's token provider gives no app tokens")
	}
	return p.FetchAppToken(ctx, req)
}
