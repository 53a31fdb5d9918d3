package emulator_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/internal/browsertest"
)

// The browser tests drive a real headless Chromium through the consent page,
// as a person would: type a user id, untick a scope, press a button.
//
// They skip when no chromium is installed, unless SPOTOKEN_TEST_BROWSER is
// "required". SPOTOKEN_TEST_SCREENSHOT_DIR, when set, also receives the
// screenshots of the consent page (consent.png, consent-filled.png).

const (
	browserClient   = "browser-app"
	browserRedirect = "http://127.0.0.1/cb" // loopback without a port: any port matches
	browserTimeout  = 60 * time.Second
	browserScopes   = "user-read-email playlist-read-private"
)

// callbackApp is the app's side of the redirect: an httptest server (on
// 127.0.0.1) that records the query of every request to /cb.
type callbackApp struct {
	srv     *httptest.Server
	mu      sync.Mutex
	queries []url.Values
}

func newCallbackApp(t *testing.T) *callbackApp {
	t.Helper()
	a := &callbackApp{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cb", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.queries = append(a.queries, r.URL.Query())
		a.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>App callback</title></head>`+
			`<body><h1 id="callback">Back at the app</h1></body></html>`)
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

// redirectURI is the redirect URI the app sends: the registered one with the server's port.
func (a *callbackApp) redirectURI() string { return a.srv.URL + "/cb" }

// only returns the one query /cb received, failing the test if there were not exactly one.
func (a *callbackApp) only(t *testing.T) url.Values {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.queries) != 1 {
		t.Fatalf("callback received %d requests, want 1: %v", len(a.queries), a.queries)
	}
	return a.queries[0]
}

// newBrowser starts a fresh headless Chromium (own profile, so no cookie from
// another test) and returns a tab context bounded by browserTimeout.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	return browsertest.New(t, browserTimeout, 1024, 768)
}

// browserEnv is an emulator that shows the consent page (no AutoApprove),
// an app that receives the redirect, and a browser.
type browserEnv struct {
	*env
	app *callbackApp
	ctx context.Context
}

func newBrowserEnv(t *testing.T) *browserEnv {
	t.Helper()
	ctx := newBrowser(t) // first, so a missing chromium skips before anything else starts
	e := newEnv(t, func(c *emulator.Config) {
		c.AutoApprove = ""
		c.Clients = append(c.Clients, emulator.Client{ID: browserClient, RedirectURIs: []string{browserRedirect}})
	})
	return &browserEnv{env: e, app: newCallbackApp(t), ctx: ctx}
}

// authorizeURL is the /authorize URL the app would send the person to.
func (b *browserEnv) authorizeURL(state string) string {
	q := url.Values{"client_id": {browserClient}, "response_type": {"code"}, "redirect_uri": {b.app.redirectURI()},
		"state": {state}, "scope": {browserScopes}, "code_challenge_method": {"S256"}, "code_challenge": {challenge}}
	return b.srv.URL + "/authorize?" + q.Encode()
}

// do runs browser actions, failing the test with what was being done.
func (b *browserEnv) do(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// openConsent navigates to /authorize and waits for the consent form.
func (b *browserEnv) openConsent(t *testing.T, state string) {
	t.Helper()
	b.do(t, "open the consent page",
		chromedp.Navigate(b.authorizeURL(state)),
		chromedp.WaitVisible(chromedp.ID("agree")),
		chromedp.WaitVisible(chromedp.ID("cancel")),
		chromedp.WaitVisible(chromedp.ID("new_user")),
	)
	body, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		t.Fatalf("browser: read the consent page: %v", err)
	}
	if !strings.Contains(body, browserClient) {
		t.Errorf("consent page does not name the client %q:\n%s", browserClient, body)
	}
	for _, s := range strings.Fields(browserScopes) {
		if !b.checked(t, s) {
			t.Errorf("scope %s is not ticked when the page opens", s)
		}
	}
}

// scopeBox selects the checkbox of one scope.
func scopeBox(scope string) chromedp.CSS {
	return chromedp.CSS(`input[type="checkbox"][name="scope"][value="` + scope + `"]`)
}

// checked reports whether the checkbox of scope is ticked in the page.
func (b *browserEnv) checked(t *testing.T, scope string) bool {
	t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.JavascriptAttribute[bool](scopeBox(scope), "checked"))
	if err != nil {
		t.Fatalf("browser: read checkbox %s: %v", scope, err)
	}
	return v
}

// clickAndLand clicks button and waits until the browser shows the app's
// callback page, then checks the address bar is the callback.
func (b *browserEnv) clickAndLand(t *testing.T, button string) {
	t.Helper()
	b.do(t, "click #"+button+" and wait for the callback page",
		chromedp.Click(chromedp.ID(button)),
		chromedp.WaitVisible(chromedp.ID("callback")),
	)
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		t.Fatalf("browser: location: %v", err)
	}
	if !strings.HasPrefix(loc, b.app.redirectURI()+"?") {
		t.Fatalf("browser is at %q, want the callback %s?...", loc, b.app.redirectURI())
	}
}

// screenshot writes a full-page screenshot to t.TempDir() and, when
// SPOTOKEN_TEST_SCREENSHOT_DIR is set, there too.
func (b *browserEnv) screenshot(t *testing.T, name string) {
	t.Helper()
	browsertest.Screenshot(t, b.ctx, name)
}

func TestBrowserConsent(t *testing.T) {
	t.Run("agree with a new user and one scope unticked", func(t *testing.T) {
		b := newBrowserEnv(t)
		const state = "agree-st4te/with+odd chars"
		const user = "browser.user_1"
		b.openConsent(t, state)
		b.screenshot(t, "consent.png")

		b.do(t, "type a new user id and untick playlist-read-private",
			chromedp.SendKeys(chromedp.ID("new_user"), user),
			chromedp.Click(scopeBox("playlist-read-private")),
		)
		typed, err := chromedp.Run(b.ctx, chromedp.Value(chromedp.ID("new_user")))
		if err != nil {
			t.Fatalf("browser: read #new_user: %v", err)
		}
		if typed != user {
			t.Fatalf("#new_user holds %q after typing, want %q", typed, user)
		}
		if b.checked(t, "playlist-read-private") {
			t.Fatal("playlist-read-private is still ticked after clicking it")
		}
		if !b.checked(t, "user-read-email") {
			t.Fatal("user-read-email was unticked too")
		}
		b.screenshot(t, "consent-filled.png")

		b.clickAndLand(t, "agree")
		q := b.app.only(t)
		if got := q.Get("state"); got != state {
			t.Errorf("callback state = %q, want %q", got, state)
		}
		if q.Has("error") {
			t.Errorf("callback got error=%q after Agree", q.Get("error"))
		}
		code := q.Get("code")
		if code == "" {
			t.Fatalf("callback got no code: %v", q)
		}

		res := b.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {browserClient},
			"code_verifier": {verifier}, "redirect_uri": {b.app.redirectURI()}}, "", "")
		if res.Status != http.StatusOK {
			t.Fatalf("code exchange: %d %s", res.Status, res.Raw)
		}
		if got := res.str("scope"); got != "user-read-email" {
			t.Errorf("granted scope = %q, want exactly %q (playlist-read-private was unticked)", got, "user-read-email")
		}
		at := res.str("access_token")
		if at == "" {
			t.Fatalf("no access_token: %s", res.Raw)
		}
		// The token is the typed user's, and the unticked scope really is missing.
		if me := b.api(http.MethodGet, "/v1/me", at, ""); me.Status != http.StatusOK || me.Body["id"] != user {
			t.Errorf("/v1/me: %d id=%v, want 200 id=%q", me.Status, me.Body["id"], user)
		}
		if pl := b.api(http.MethodGet, "/v1/me/playlists", at, ""); pl.Status != http.StatusForbidden {
			t.Errorf("/v1/me/playlists without playlist-read-private: %d, want 403", pl.Status)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		b := newBrowserEnv(t)
		const state = "cancel-st4te"
		b.openConsent(t, state)
		b.clickAndLand(t, "cancel")
		q := b.app.only(t)
		if got := q.Get("error"); got != "access_denied" {
			t.Errorf("callback error = %q, want access_denied (query %v)", got, q)
		}
		if got := q.Get("state"); got != state {
			t.Errorf("callback state = %q, want %q", got, state)
		}
		if q.Has("code") {
			t.Errorf("callback got a code after Cancel: %v", q)
		}
	})
}
