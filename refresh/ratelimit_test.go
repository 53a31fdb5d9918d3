package refresh_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
)

// wantRateLimited checks that err is rate_limited with a Retry-After of
// left, to the second.
func wantRateLimited(t *testing.T, what string, err error, left time.Duration) {
	t.Helper()
	var se *spotoken.Error
	if !errors.As(err, &se) || se.Code != spotoken.ERateLimited {
		t.Errorf("%s: %v, want rate_limited", what, err)
		return
	}
	if d := se.RetryAfter - left; d < -time.Second || d > time.Second {
		t.Errorf("%s: RetryAfter %v, want %v", what, se.RetryAfter, left)
	}
}

// TestRateLimitWindow: a 429 with Retry-After: 7200 from the token endpoint
// closes the whole app, for every connection and every engine on the
// store, for the full two hours: callers are answered rate_limited at once
// with the time left, and the only token request of the window is the one
// that met the 429. The emulator's window grows if called into, so a
// request inside it would also show in the second answer's Retry-After.
func TestRateLimitWindow(t *testing.T) {
	const window = 7200
	w := newWorld(t, "never", nil)
	keys := []spotoken.ConnectionKey{w.connect("c1"), w.connect("c2"), w.connect("c3"), w.connect("c4")}
	wait := window
	if err := w.emu.SetFaults(emulator.Faults{TokenStatus: 429, RetryAfter: &wait, Window: true}); err != nil {
		t.Fatal(err)
	}
	w.emu.Advance(time.Hour) // every access token expires
	before := w.refreshes()

	_, err := w.engine.Token(ctx, keys[0], 0)
	wantRateLimited(t, "the call that met the 429", err, window*time.Second)

	// Another engine on the store, as another replica or a restart.
	other, err := refresh.New(refresh.Config{Store: w.store, Now: w.emu.Now,
		Refresher: &refresh.SpotifyRefresher{TokenURL: w.srv.URL + "/api/token", Now: w.emu.Now}})
	if err != nil {
		t.Fatal(err)
	}
	const callers = 200
	errs := make([]error, callers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		wg.Go(func() {
			<-start
			engine := w.engine
			if i%2 == 1 {
				engine = other
			}
			_, errs[i] = engine.Token(ctx, keys[i%len(keys)], 0)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		wantRateLimited(t, fmt.Sprintf("caller %d", i), err, window*time.Second)
		if t.Failed() {
			break
		}
	}
	// The whole window, to its last second; Scheduler passes too.
	w.emu.Advance(window*time.Second - time.Second)
	for _, k := range keys {
		_, err := other.Refresh(ctx, k)
		wantRateLimited(t, "a forced refresh a second before the end", err, time.Second)
	}
	sched := &refresh.Scheduler{Engine: w.engine, Store: w.store}
	if p, err := sched.RunOnce(ctx); err != nil || p.Refreshed != 0 {
		t.Errorf("scheduler pass in the window: %+v, %v", p, err)
	}
	if got := w.refreshes() - before; got != 1 {
		t.Fatalf("%d token requests in the window, want the one that met the 429", got)
	}

	w.emu.Advance(time.Second)
	for _, k := range keys {
		if _, err := w.engine.Token(ctx, k, 0); err != nil {
			t.Errorf("after the window, %s: %v", k, err)
		}
	}
	if got := w.refreshes() - before; got != 1+int64(len(keys)) {
		t.Errorf("%d token requests, want 1 and one per connection after the window", got)
	}
	if got := w.emu.Stats().TokenErrors["http_429"]; got != 1 {
		t.Errorf("the emulator answered %d 429s, want 1: something called into the window", got)
	}
}

// longerWindow is a Refresher that answers 429 with a short Retry-After
// after another replica, meanwhile, recorded a longer window for the app.
type longerWindow struct {
	store interface {
		ExtendRateLimit(ctx context.Context, app string, until time.Time) (time.Time, error)
	}
	now    func() time.Time
	longer time.Duration
}

func (l *longerWindow) Refresh(ctx context.Context, app *spotoken.App, _ spotoken.Secret) (*accounts.Grant, error) {
	if _, err := l.store.ExtendRateLimit(ctx, app.ID, l.now().Add(l.longer)); err != nil {
		return nil, err
	}
	return nil, &accounts.Error{Status: 429, RetryAfter: time.Minute}
}

// TestRateLimitWindowOnlyGrows: replicas answered 429 at once each record
// their Retry-After; a shorter one recorded last does not shorten the
// window, and the caller is told the longer wait.
func TestRateLimitWindowOnlyGrows(t *testing.T) {
	var w *world
	w = newWorld(t, "never", func(c *refresh.Config) {
		c.Refresher = &longerWindow{store: lazyStore{&w}, now: func() time.Time { return w.emu.Now() }, longer: 3 * time.Hour}
	})
	key := w.connect("c1")
	w.emu.Advance(time.Hour)
	_, err := w.engine.Token(ctx, key, 0)
	wantRateLimited(t, "the caller", err, 3*time.Hour)
	until, err := w.store.RateLimitedUntil(ctx, appID)
	if err != nil || !until.Equal(w.emu.Now().Add(3*time.Hour)) {
		t.Errorf("window ends %v (%v), want the longer one, %v", until, err, w.emu.Now().Add(3*time.Hour))
	}
}

// lazyStore reaches the world's store once the world exists.
type lazyStore struct{ w **world }

func (l lazyStore) ExtendRateLimit(ctx context.Context, app string, until time.Time) (time.Time, error) {
	return (*l.w).store.ExtendRateLimit(ctx, app, until)
}

// TestGrantExpiryByOurClock: invalid_grant is grant_expired at or after the
// connection's GrantExpiresAt and revoked before it, whichever description
// Spotify sends (felix-hilden/tekore#349: both are seen for an expired grant).
func TestGrantExpiryByOurClock(t *testing.T) {
	for _, tc := range []struct {
		name, description string
		expired           bool
		want              string
	}{
		{"expired, described as expired", "Refresh token expired", true, "grant_expired"},
		{"expired, described as revoked", "Refresh token revoked", true, "grant_expired"},
		{"revoked before expiry, described as expired", "Refresh token expired", false, "revoked"},
		{"revoked before expiry, described as revoked", "Refresh token revoked", false, "revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const lifetime = 48 * time.Hour
			w := newWorldEmu(t, "never", func(c *emulator.Config) {
				c.RefreshLifetime = lifetime
				c.ExpiredGrantDescription = tc.description
			}, nil)
			key := w.connect("c1")
			if _, err := w.store.UpdateConnection(ctx, key, func(c *spotoken.Connection) ([]spotoken.Event, error) {
				c.GrantExpiresAt = c.ConsentedAt.Add(lifetime)
				return nil, nil
			}); err != nil {
				t.Fatal(err)
			}
			if tc.expired {
				w.emu.Advance(lifetime) // exactly at GrantExpiresAt
			} else {
				w.emu.Advance(time.Hour)
				if err := w.emu.SetFaults(emulator.Faults{TokenStatus: 400, TokenError: "invalid_grant", TokenErrorDescription: tc.description}); err != nil {
					t.Fatal(err)
				}
			}
			_, err := w.engine.Token(ctx, key, 0)
			if !errors.Is(err, spotoken.ErrNeedsReauth) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Token: %v, want needs_reauth (%s)", err, tc.want)
			}
			events, _ := w.store.PendingEvents(ctx, w.emu.Now(), 10)
			if len(events) != 1 || events[0].Type != spotoken.EventConnectionNeedsReauth || !strings.Contains(string(events[0].Data), `"reason":"`+tc.want+`"`) {
				t.Errorf("events: %+v, want one connection.needs_reauth with reason %s", events, tc.want)
			}
		})
	}
}

// windowOnLease is a store on which another replica's 429 is recorded for
// the app just as this replica takes a connection's lease: after the
// engine last looked at the window, before its call to Spotify.
type windowOnLease struct {
	refresh.Store
	until time.Time
}

func (s *windowOnLease) AcquireLease(ctx context.Context, key spotoken.ConnectionKey, owner string, ttl time.Duration) (spotoken.Lease, error) {
	if _, err := s.Store.ExtendRateLimit(ctx, key.AppID, s.until); err != nil {
		return spotoken.Lease{}, err
	}
	return s.Store.AcquireLease(ctx, key, owner, ttl)
}

// TestRateLimitWindowCheckedUnderLease: the window is read again under the
// lease, right before the call to Spotify, so a 429 that another replica
// met in between keeps this one from calling.
func TestRateLimitWindowCheckedUnderLease(t *testing.T) {
	var w *world
	var store *windowOnLease
	w = newWorld(t, "never", func(c *refresh.Config) {
		store = &windowOnLease{Store: c.Store}
		c.Store = store
	})
	key := w.connect("c1")
	w.emu.Advance(time.Hour)
	store.until = w.emu.Now().Add(time.Hour)
	_, err := w.engine.Token(ctx, key, 0)
	wantRateLimited(t, "Token", err, time.Hour)
	if n := w.refreshes(); n != 0 {
		t.Errorf("%d token requests reached Spotify inside the window", n)
	}
}
