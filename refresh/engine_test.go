package refresh_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/sqlite"
)

const (
	appID    = "app"
	clientID = "pub-client"
	redirect = "http://127.0.0.1/callback"
)

var ctx = context.Background()

// fixedClock is the emulator's base clock; time moves with Emulator.Advance.
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// world is an emulator, a real SQLite store on the emulator's clock, and an
// engine refreshing through the emulator.
type world struct {
	t      *testing.T
	emu    *emulator.Emulator
	srv    *httptest.Server
	store  *sqlite.DB
	engine *refresh.Engine
}

func newWorld(t *testing.T, mode string, mutate func(*refresh.Config)) *world {
	t.Helper()
	return newWorldEmu(t, mode, nil, mutate)
}

// newWorldEmu is newWorld with the emulator's configuration changed by emu.
func newWorldEmu(t *testing.T, mode string, emuCfg func(*emulator.Config), mutate func(*refresh.Config)) *world {
	t.Helper()
	rot, err := emulator.ParseRotation(mode)
	if err != nil {
		t.Fatal(err)
	}
	ecfg := emulator.Config{
		Clients:     []emulator.Client{{ID: clientID, RedirectURIs: []string{redirect}}, {ID: "conf", Secret: "right", RedirectURIs: []string{"https://x.example/cb"}}},
		AutoApprove: "alice",
		Rotation:    rot,
		Now:         fixedClock{time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)}.Now,
	}
	if emuCfg != nil {
		emuCfg(&ecfg)
	}
	emu, err := emulator.New(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	keys, _ := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{7}}}, 1)
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "db"), Keys: keys, Now: emu.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.CreateApp(ctx, &spotoken.App{ID: appID, ClientID: clientID, RedirectURIs: []string{redirect}}); err != nil {
		t.Fatal(err)
	}
	cfg := refresh.Config{
		Store:     store,
		Refresher: &refresh.SpotifyRefresher{TokenURL: srv.URL + "/api/token", Now: emu.Now},
		Now:       emu.Now,
		WaitPoll:  time.Millisecond,
		Jitter:    func() float64 { return 0.5 },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	engine, err := refresh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, emu: emu, srv: srv, store: store, engine: engine}
}

// connect runs the PKCE flow at the emulator and stores the grant as a connection.
func (w *world) connect(id string, scopes ...string) spotoken.ConnectionKey {
	w.t.Helper()
	ac := accounts.New(accounts.Config{ClientID: clientID, AuthURL: w.srv.URL + "/authorize", TokenURL: w.srv.URL + "/api/token", Now: w.emu.Now})
	verifier := accounts.GenerateVerifier()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(ac.AuthCodeURL("s", redirect, scopes, verifier, false))
	if err != nil {
		w.t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	g, err := ac.Exchange(ctx, loc.Query().Get("code"), redirect, verifier)
	if err != nil {
		w.t.Fatalf("exchange: %v", err)
	}
	c := &spotoken.Connection{AppID: appID, ID: id, SpotifyUserID: "alice", Scopes: g.Scopes, State: spotoken.StateActive,
		Token: g.Token(), ConsentedAt: w.emu.Now(), GrantExpiresAt: w.emu.Now().Add(emulator.DefaultRefreshLifetime)}
	if err := w.store.CreateConnection(ctx, c); err != nil {
		w.t.Fatal(err)
	}
	return c.Key()
}

func (w *world) refreshes() int64 { return w.emu.Stats().TokenRequests["refresh_token"] }

// me calls /v1/me with token and returns the status.
func (w *world) me(token spotoken.Secret) int {
	req, _ := http.NewRequest("GET", w.srv.URL+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+token.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

var modes = []string{"never", "always", "grace=1m", "reuse-detection"}

// TestStampede: 1,000 goroutines ask for one expired connection; exactly one
// refresh reaches Spotify and everyone gets the same, working token.
func TestStampede(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, mode, nil)
			key := w.connect("c1")
			for round := 0; round < 3; round++ {
				w.emu.Advance(time.Hour)
				before := w.refreshes()
				const callers = 1000
				tokens := make([]spotoken.Secret, callers)
				var wg sync.WaitGroup
				for i := range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						at, err := w.engine.Token(ctx, key, 0)
						if err != nil {
							t.Errorf("caller %d: %v", i, err)
						}
						tokens[i] = at.Token
					}()
				}
				wg.Wait()
				if got := w.refreshes() - before; got != 1 {
					t.Fatalf("round %d: %d refresh requests for %d callers, want 1", round, got, callers)
				}
				for i, tok := range tokens {
					if tok != tokens[0] {
						t.Fatalf("round %d: caller %d got a different token", round, i)
					}
				}
				if code := w.me(tokens[0]); code != 200 {
					t.Errorf("round %d: the vended token gets %d from /v1/me", round, code)
				}
			}
			if n := w.emu.Stats().TokenErrors["invalid_grant"]; n != 0 {
				t.Errorf("%d invalid_grant answers: a rotation was lost", n)
			}
		})
	}
}

// TestRotationCommittedBeforeVend: the rotated refresh token is in the store
// when the new access token is handed out.
func TestRotationCommittedBeforeVend(t *testing.T) {
	w := newWorld(t, "always", nil)
	key := w.connect("c1")
	before, _ := w.store.Connection(ctx, key)
	w.emu.Advance(time.Hour)
	at, err := w.engine.Token(ctx, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := w.store.Connection(ctx, key)
	if after.Token.AccessToken != at.Token || after.Token.RefreshToken == before.Token.RefreshToken || after.Version != before.Version+1 {
		t.Fatalf("store after refresh: same refresh token %v, version %d→%d", after.Token.RefreshToken == before.Token.RefreshToken, before.Version, after.Version)
	}
	// The stored one is the live one: a second engine (another replica, no
	// memory) refreshes with it.
	other, err := refresh.New(refresh.Config{Store: w.store, Refresher: &refresh.SpotifyRefresher{TokenURL: w.srv.URL + "/api/token", Now: w.emu.Now}, Now: w.emu.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Refresh(ctx, key); err != nil {
		t.Errorf("refresh with the stored token: %v", err)
	}
	events, _ := w.store.PendingEvents(ctx, w.emu.Now(), 10)
	var types []string
	for _, e := range events {
		types = append(types, string(e.Type))
	}
	if got := strings.Join(types, ","); got != "connection.refreshed,connection.rotated,connection.refreshed,connection.rotated" {
		t.Errorf("events: %s", got)
	}
}

// TestFreshTokenNotRefreshed: a valid token comes from memory or the store.
func TestFreshTokenNotRefreshed(t *testing.T) {
	w := newWorld(t, "never", nil)
	key := w.connect("c1")
	for i := 0; i < 3; i++ {
		if _, err := w.engine.Token(ctx, key, 10*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if w.refreshes() != 0 {
		t.Errorf("%d refreshes for a fresh token", w.refreshes())
	}
	st := w.engine.Stats()
	if st.VendsStore != 1 || st.VendsMemory != 2 {
		t.Errorf("vends: %+v", st)
	}
	// min_ttl beyond what is left forces a refresh.
	w.emu.Advance(55 * time.Minute)
	if _, err := w.engine.Token(ctx, key, 10*time.Minute); err != nil || w.refreshes() != 1 {
		t.Errorf("min TTL not met: %v, %d refreshes", err, w.refreshes())
	}
}

// TestRevokedGrant: invalid_grant moves the connection to needs_reauth after
// one attempt, with an event, and nothing retries it.
func TestRevokedGrant(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, mode, nil)
			key := w.connect("c1")
			if err := w.emu.RevokeGrant("alice", clientID); err != nil {
				t.Fatal(err)
			}
			w.emu.Advance(time.Hour)
			for i := 0; i < 5; i++ {
				_, err := w.engine.Token(ctx, key, 0)
				if !errors.Is(err, spotoken.ErrNeedsReauth) {
					t.Fatalf("attempt %d: %v, want needs_reauth", i, err)
				}
			}
			if w.refreshes() != 1 {
				t.Errorf("%d refresh requests, want exactly 1", w.refreshes())
			}
			c, _ := w.store.Connection(ctx, key)
			if c.State != spotoken.StateNeedsReauth || c.LastErrorCode != "invalid_grant" || c.Token.RefreshToken == "" {
				t.Errorf("connection: state %s, error %q, refresh token kept %v", c.State, c.LastErrorCode, c.Token.RefreshToken != "")
			}
			events, _ := w.store.PendingEvents(ctx, w.emu.Now(), 10)
			if len(events) != 1 || events[0].Type != spotoken.EventConnectionNeedsReauth || !strings.Contains(string(events[0].Data), `"reason":"revoked"`) {
				t.Errorf("events: %+v", events)
			}
		})
	}
}

// TestRateLimited: a 429 with Retry-After: 3 means no request before 3 s have
// passed on the clock, and callers get a prompt answer saying when.
func TestRateLimited(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, mode, nil)
			key := w.connect("c1")
			three := 3
			if err := w.emu.SetFaults(emulator.Faults{TokenStatus: 429, RetryAfter: &three, Count: 1}); err != nil {
				t.Fatal(err)
			}
			w.emu.Advance(time.Hour)
			_, err := w.engine.Token(ctx, key, 0)
			var se *spotoken.Error
			if !errors.As(err, &se) || se.Code != spotoken.ERateLimited || se.RetryAfter < 3*time.Second {
				t.Fatalf("first call: %v, want rate_limited with RetryAfter >= 3s", err)
			}
			for _, step := range []time.Duration{0, time.Second, time.Second, 999 * time.Millisecond} {
				w.emu.Advance(step)
				if _, err := w.engine.Token(ctx, key, 0); !errors.Is(err, spotoken.ErrRateLimited) {
					t.Errorf("inside Retry-After: %v", err)
				}
			}
			if w.refreshes() != 1 {
				t.Fatalf("%d token requests inside Retry-After, want only the first", w.refreshes())
			}
			w.emu.Advance(time.Millisecond) // 3 s since the 429
			if _, err := w.engine.Token(ctx, key, 0); err != nil {
				t.Fatalf("after Retry-After: %v", err)
			}
			if w.refreshes() != 2 {
				t.Errorf("%d token requests, want 2", w.refreshes())
			}
		})
	}
}

// TestOutage: during a 5-minute outage the cached token is served until it
// expires; after recovery, one refresh serves a crowd.
func TestOutage(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, mode, nil)
			key := w.connect("c1")
			if _, err := w.engine.Token(ctx, key, 0); err != nil {
				t.Fatal(err)
			}
			w.emu.Advance(57 * time.Minute) // 3 minutes left
			if err := w.emu.SetFaults(emulator.Faults{TokenStatus: 503}); err != nil {
				t.Fatal(err)
			}
			for minute := 0; minute < 5; minute++ {
				at, err := w.engine.Token(ctx, key, 5*time.Minute) // wants a refresh, gets the cached token
				valid := minute < 3
				if valid && (err != nil || at.Token == "") {
					t.Errorf("minute %d: %v, want the still-valid token", minute, err)
				}
				if !valid && !errors.Is(err, spotoken.ErrUnavailable) {
					t.Errorf("minute %d, token expired: %v, want temporarily_unavailable", minute, err)
				}
				w.emu.Advance(time.Minute)
			}
			attempts := w.refreshes()
			w.emu.ClearFaults()
			w.emu.Advance(10 * time.Minute) // past any backoff
			var wg sync.WaitGroup
			for range 200 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := w.engine.Token(ctx, key, 0); err != nil {
						t.Errorf("after recovery: %v", err)
					}
				}()
			}
			wg.Wait()
			if got := w.refreshes() - attempts; got != 1 {
				t.Errorf("%d refreshes after recovery for 200 callers, want 1", got)
			}
			c, _ := w.store.Connection(ctx, key)
			if c.State != spotoken.StateActive || c.ConsecutiveFailures != 0 || c.LastErrorCode != "" {
				t.Errorf("after recovery: %+v", c)
			}
		})
	}
}

// TestInvalidate: a burst of 401s for one token causes one refresh.
func TestInvalidate(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, mode, nil)
			key := w.connect("c1")
			at, err := w.engine.Token(ctx, key, 0)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for range 100 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, err := w.engine.Invalidate(ctx, key, at.Token)
					if err != nil || got.Token == at.Token {
						t.Errorf("Invalidate: %v, same token %v", err, got.Token == at.Token)
					}
				}()
			}
			wg.Wait()
			if w.refreshes() != 1 {
				t.Errorf("%d refreshes for 100 invalidations of one token, want 1", w.refreshes())
			}
			if _, err := w.engine.Invalidate(ctx, key, at.Token); err != nil || w.refreshes() != 1 {
				t.Errorf("a late 401 for the old token refreshed again: %v, %d", err, w.refreshes())
			}
		})
	}
}

// TestInvalidClient: Spotify refusing the app's credentials is an app error,
// not the user's: the connection stays active.
func TestInvalidClient(t *testing.T) {
	w := newWorld(t, "never", nil)
	key := w.connect("c1")
	if _, err := w.store.UpdateApp(ctx, appID, func(a *spotoken.App) error { a.ClientID = "conf"; a.ClientSecret = "wrong"; return nil }); err != nil {
		t.Fatal(err)
	}
	w.emu.Advance(time.Hour)
	if _, err := w.engine.Token(ctx, key, 0); !errors.Is(err, spotoken.ErrAppMisconfigured) {
		t.Fatalf("wrong app secret: %v", err)
	}
	if _, err := w.engine.Token(ctx, key, 0); !errors.Is(err, spotoken.ErrAppMisconfigured) {
		t.Fatalf("second call: %v", err)
	}
	if w.refreshes() != 1 {
		t.Errorf("%d refresh requests, want 1 (no retries into invalid_client)", w.refreshes())
	}
	c, _ := w.store.Connection(ctx, key)
	events, _ := w.store.PendingEvents(ctx, w.emu.Now(), 10)
	if c.State != spotoken.StateActive || len(events) != 1 || events[0].Type != spotoken.EventAppError {
		t.Errorf("state %s, events %+v", c.State, events)
	}
}

// TestScheduler refreshes exactly the connections that expire within the window.
func TestScheduler(t *testing.T) {
	w := newWorld(t, "always", nil)
	var soon []spotoken.ConnectionKey
	for i := range 6 {
		soon = append(soon, w.connect(string(rune('a'+i))))
	}
	w.emu.Advance(30 * time.Minute)
	for i := range 4 {
		w.connect(string(rune('p' + i))) // expire in an hour from now
	}
	w.emu.Advance(27 * time.Minute) // the first six have 3 minutes left
	s := &refresh.Scheduler{Engine: w.engine, Store: w.store, Window: 5 * time.Minute, Batch: 4, Concurrency: 3}
	p, err := s.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Due != 6 || p.Refreshed != 6 || w.refreshes() != 6 {
		t.Errorf("pass %+v, %d refreshes; want 6 due and refreshed", p, w.refreshes())
	}
	if p, _ := s.RunOnce(ctx); p.Due != 0 || w.refreshes() != 6 {
		t.Errorf("second pass %+v, %d refreshes; want nothing to do", p, w.refreshes())
	}
	for _, k := range soon {
		c, _ := w.store.Connection(ctx, k)
		if c.Token.Expiry.Sub(w.emu.Now()) < 59*time.Minute {
			t.Errorf("%s not refreshed: expires %v", k, c.Token.Expiry)
		}
	}
	_ = json.Valid
}
