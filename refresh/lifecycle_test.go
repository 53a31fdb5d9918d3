package refresh_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
	"github.com/spotoken/spotoken/refresh"
)

// gatedRefresher holds every refresh until released.
type gatedRefresher struct {
	inner   refresh.Refresher
	started chan struct{}
	release chan struct{}
}

func (g *gatedRefresher) Refresh(ctx context.Context, app *spotoken.App, rt spotoken.Secret) (*accounts.Grant, error) {
	g.started <- struct{}{}
	<-g.release
	return g.inner.Refresh(ctx, app, rt)
}

// TestCallerGivesUpFlightContinues: the caller that started a refresh
// hanging up neither aborts the call to Spotify (which could lose a rotated
// refresh token) nor keeps the result from being committed; Drain waits for it.
func TestCallerGivesUpFlightContinues(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			var gate *gatedRefresher
			w := newWorld(t, mode, func(c *refresh.Config) {
				gate = &gatedRefresher{inner: c.Refresher, started: make(chan struct{}, 1), release: make(chan struct{})}
				c.Refresher = gate
			})
			key := w.connect("u1")
			before, _ := w.store.Connection(ctx, key)
			w.emu.Advance(2 * time.Hour)

			callerCtx, cancel := context.WithCancel(ctx)
			errc := make(chan error, 1)
			go func() { _, err := w.engine.Token(callerCtx, key, 0); errc <- err }()
			<-gate.started
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("caller that gave up got %v, want context.Canceled", err)
			}
			short, stop := context.WithTimeout(ctx, 20*time.Millisecond)
			defer stop()
			if err := w.engine.Drain(short); err == nil {
				t.Fatal("Drain returned while a refresh was in flight")
			}
			close(gate.release)
			if err := w.engine.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			after, err := w.store.Connection(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if after.Token.AccessToken == before.Token.AccessToken || after.LastRefreshAt.IsZero() {
				t.Fatal("the abandoned refresh was not committed")
			}
			at, err := w.engine.Token(ctx, key, 0)
			if err != nil || at.Token != after.Token.AccessToken {
				t.Fatalf("Token after the flight = %v, %v; want the committed token", at.Token == after.Token.AccessToken, err)
			}
			if got := w.refreshes(); got != 1 {
				t.Errorf("refresh requests = %d, want 1", got)
			}
			if w.me(at.Token) != 200 {
				t.Error("the committed token does not work")
			}
		})
	}
}

// TestCacheTTL: with a CacheTTL, a connection deleted elsewhere stops being
// served from memory once the TTL has passed.
func TestCacheTTL(t *testing.T) {
	for _, ttl := range []time.Duration{0, 2 * time.Second} {
		t.Run(ttl.String(), func(t *testing.T) {
			w := newWorld(t, "never", func(c *refresh.Config) { c.CacheTTL = ttl })
			key := w.connect("u1")
			if _, err := w.engine.Token(ctx, key, 0); err != nil {
				t.Fatal(err)
			}
			if err := w.store.DeleteConnection(ctx, key); err != nil {
				t.Fatal(err)
			}
			if _, err := w.engine.Token(ctx, key, 0); err != nil {
				t.Fatalf("within the TTL the token should come from memory: %v", err)
			}
			w.emu.Advance(3 * time.Second)
			_, err := w.engine.Token(ctx, key, 0)
			if ttl == 0 && err != nil {
				t.Fatalf("without a TTL memory serves until expiry: %v", err)
			}
			if ttl > 0 && !errors.Is(err, spotoken.ErrNotFound) {
				t.Fatalf("after the TTL: %v, want not found", err)
			}
		})
	}
}
