package refresh_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
)

// The confidential app of the app-token tests: the world's emulator client
// "conf" with secret "right".
const confApp = "catalog"

// newAppTokens registers confApp in w's store and returns an AppTokens on it.
func newAppTokens(t *testing.T, w *world, mutate func(*refresh.AppTokensConfig)) *refresh.AppTokens {
	t.Helper()
	if _, err := w.store.App(ctx, confApp); errors.Is(err, spotoken.ErrNotFound) {
		if err := w.store.CreateApp(ctx, &spotoken.App{ID: confApp, ClientID: "conf", ClientSecret: "right"}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := refresh.AppTokensConfig{
		Store:    w.store,
		Spotify:  &refresh.SpotifyRefresher{TokenURL: w.srv.URL + "/api/token", Now: w.emu.Now},
		Now:      w.emu.Now,
		WaitPoll: time.Millisecond,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := refresh.NewAppTokens(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (w *world) clientCredentials() int64 { return w.emu.Stats().TokenRequests["client_credentials"] }

// liveAppToken reports whether the emulator knows token as an unexpired
// client-credentials token: its user endpoints answer such a token 401
// "Unauthorized." (no user), and an unknown or expired one otherwise.
func (w *world) liveAppToken(token spotoken.Secret) bool {
	w.t.Helper()
	req, _ := http.NewRequest("GET", w.srv.URL+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+token.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusUnauthorized && strings.Contains(string(body), `"Unauthorized."`)
}

// appStampede has n goroutines ask for appID's token at once through each
// of sources in turn, and returns the tokens they got.
func appStampede(t *testing.T, sources []*refresh.AppTokens, appID string, n int) []spotoken.Secret {
	t.Helper()
	tokens := make([]spotoken.Secret, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			at, err := sources[i%len(sources)].Token(ctx, appID, time.Minute)
			tokens[i], errs[i] = at.Token, err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	return tokens
}

// TestAppTokenStampede: 300 concurrent requests for an app's token after it
// expired cause exactly one client-credentials request to Spotify, in one
// process and with two AppTokens (replicas) sharing a store, and everyone
// gets that token, which the Web API accepts.
func TestAppTokenStampede(t *testing.T) {
	for _, replicas := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d replicas", replicas), func(t *testing.T) {
			w := newWorld(t, "never", nil)
			var sources []*refresh.AppTokens
			for i := range replicas {
				sources = append(sources, newAppTokens(t, w, func(c *refresh.AppTokensConfig) { c.Owner = fmt.Sprint("replica-", i) }))
			}
			var last spotoken.Secret
			for round := range 4 {
				before := w.clientCredentials()
				tokens := appStampede(t, sources, confApp, 300)
				if got := w.clientCredentials() - before; got != 1 {
					t.Errorf("round %d: %d client-credentials requests for 300 callers, want 1", round, got)
				}
				for i, tok := range tokens {
					if tok != tokens[0] {
						t.Fatalf("round %d: caller %d got another token than caller 0", round, i)
					}
				}
				if !w.liveAppToken(tokens[0]) {
					t.Errorf("round %d: the emulator does not know the app token, or it expired", round)
				}
				if round > 0 && tokens[0] == last {
					t.Errorf("round %d: the expired token was served again", round)
				}
				last = tokens[0]
				w.emu.Advance(time.Hour) // the token expires
			}
			row, err := w.store.AppToken(ctx, confApp)
			if err != nil || row.AccessToken != last || row.Lease.Owner != "" {
				t.Errorf("stored app token: %+v, %v; want the last token, no lease", row, err)
			}
		})
	}
}

// TestAppTokenPublicApp: a public app gets a clear unauthorized_client, and
// Spotify is not asked.
func TestAppTokenPublicApp(t *testing.T) {
	w := newWorld(t, "never", nil)
	a := newAppTokens(t, w, nil)
	_, err := a.Token(ctx, appID, 0) // the world's app is public
	var se *spotoken.Error
	if !errors.As(err, &se) || se.Code != spotoken.EUnauthorizedClient {
		t.Fatalf("public app: %v, want unauthorized_client", err)
	}
	if n := w.clientCredentials(); n != 0 {
		t.Errorf("%d client-credentials requests for a public app", n)
	}
	if _, err := a.Token(ctx, "nope", 0); !errors.Is(err, spotoken.ErrNotFound) {
		t.Errorf("unknown app: %v, want not_found", err)
	}
}

// TestAppTokenFailures: a refused client answers app_misconfigured and
// holds further fetches back; an outage serves the still-valid token.
func TestAppTokenFailures(t *testing.T) {
	w := newWorld(t, "never", nil)
	a := newAppTokens(t, w, nil)
	if _, err := w.store.UpdateApp(ctx, confApp, func(app *spotoken.App) error { app.ClientSecret = "wrong"; return nil }); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_, err := a.Token(ctx, confApp, 0)
		var se *spotoken.Error
		if !errors.As(err, &se) || se.Code != spotoken.EAppMisconfigured || se.RetryAfter <= 0 {
			t.Fatalf("call %d with a wrong secret: %v, want app_misconfigured with a retry-after", i, err)
		}
	}
	if n := w.clientCredentials(); n != 1 {
		t.Errorf("%d client-credentials requests for 3 calls, want 1 (the failure holds the others back)", n)
	}

	w2 := newWorld(t, "never", nil)
	b := newAppTokens(t, w2, nil)
	first, err := b.Token(ctx, confApp, 0)
	if err != nil {
		t.Fatal(err)
	}
	w2.emu.Advance(50 * time.Minute)
	if err := w2.emu.SetFaults(emulator.Faults{TokenStatus: 503, Count: 1}); err != nil {
		t.Fatal(err)
	}
	at, err := b.Token(ctx, confApp, 15*time.Minute)
	if err != nil || at.Token != first.Token {
		t.Errorf("during an outage: %v; want the still-valid token", err)
	}
}

// TestAppTokenInvalidate: a burst of 401s for the current token causes one
// new fetch; a 401 for an old token causes none.
func TestAppTokenInvalidate(t *testing.T) {
	w := newWorld(t, "never", nil)
	a := newAppTokens(t, w, nil)
	first, err := a.Token(ctx, confApp, 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	got := make([]refresh.AccessToken, 50)
	for i := range got {
		wg.Go(func() {
			var err error
			if got[i], err = a.Invalidate(ctx, confApp, first.Token); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := w.clientCredentials(); n != 2 {
		t.Errorf("%d client-credentials requests, want 2 (the first and one after the 401s)", n)
	}
	for _, at := range got {
		if at.Token == first.Token || at.Token != got[0].Token {
			t.Fatalf("after the 401s: a caller got the rejected token or another new one")
		}
	}
	if at, err := a.Invalidate(ctx, confApp, first.Token); err != nil || at.Token != got[0].Token || w.clientCredentials() != 2 {
		t.Errorf("a late 401 for the old token: %v, %d requests; want the current token and no request", err, w.clientCredentials())
	}
}

// TestAppTokenSecretRotation: with a new client secret staged that Spotify
// does not know yet, app tokens still come (the previous secret is
// presented after invalid_client); once Spotify knows only the new one and
// the previous is retired, not one invalid_client more.
func TestAppTokenSecretRotation(t *testing.T) {
	w := newWorld(t, "never", nil)
	a := newAppTokens(t, w, nil)
	if _, err := w.store.UpdateApp(ctx, confApp, func(app *spotoken.App) error {
		app.PreviousClientSecret, app.ClientSecret = app.ClientSecret, "next"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Refresh(ctx, confApp); err != nil {
		t.Fatalf("with the new secret staged before Spotify issued it: %v", err)
	}
	if err := w.emu.SetClientSecrets("conf", "next"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.UpdateApp(ctx, confApp, func(app *spotoken.App) error { app.PreviousClientSecret = ""; return nil }); err != nil {
		t.Fatal(err)
	}
	refused := w.emu.Stats().TokenErrors["invalid_client"]
	if _, err := a.Refresh(ctx, confApp); err != nil {
		t.Fatalf("after retiring the previous secret: %v", err)
	}
	if n := w.emu.Stats().TokenErrors["invalid_client"] - refused; n != 0 {
		t.Errorf("%d invalid_client after the previous secret was retired", n)
	}
}

// TestAppTokenRateLimitWindow: a 429 to a client-credentials request opens
// the app's rate-limit window in the store, which every replica honours
// (no request to Spotify inside it, a prompt rate_limited with the time
// left), and the app's connections' refreshes too.
func TestAppTokenRateLimitWindow(t *testing.T) {
	w := newWorld(t, "never", nil)
	a := newAppTokens(t, w, nil)
	b := newAppTokens(t, w, func(c *refresh.AppTokensConfig) { c.Owner = "replica-b" })
	ra := 7200
	if err := w.emu.SetFaults(emulator.Faults{TokenStatus: 429, RetryAfter: &ra, Count: 1}); err != nil {
		t.Fatal(err)
	}
	for i, src := range []*refresh.AppTokens{a, b, b} {
		_, err := src.Token(ctx, confApp, 0)
		var se *spotoken.Error
		if !errors.As(err, &se) || se.Code != spotoken.ERateLimited || se.RetryAfter < time.Hour {
			t.Fatalf("call %d inside the window: %v, want rate_limited with about two hours to wait", i, err)
		}
	}
	if n := w.clientCredentials(); n != 1 {
		t.Errorf("%d client-credentials requests, want 1: the window holds every replica back", n)
	}
	if until, err := w.store.RateLimitedUntil(ctx, confApp); err != nil || until.Sub(w.emu.Now()) < time.Hour {
		t.Errorf("the store's window ends at %v (%v), want two hours on", until, err)
	}
	w.emu.Advance(2*time.Hour + time.Second)
	if _, err := b.Token(ctx, confApp, 0); err != nil || w.clientCredentials() != 2 {
		t.Errorf("after the window: %v, %d requests", err, w.clientCredentials())
	}
}
