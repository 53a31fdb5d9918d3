package bff_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/bff"
	"github.com/spotoken/spotoken/server"
)

// noToken fails the test if body holds any access or refresh token the
// emulator issued so far.
func (h *harness) noToken(what string, body []byte) {
	h.t.Helper()
	access, refresh := h.rec.tokens()
	for _, tok := range append(access, refresh...) {
		if bytes.Contains(body, []byte(tok)) {
			h.t.Errorf("%s holds a token the emulator issued", what)
		}
	}
}

func TestSignInCallAndSignOut(t *testing.T) {
	h := newHarness(t, harnessOptions{autoApprove: "alice"})
	b := h.newBrowser(h.spa.URL)

	r := b.call(http.MethodGet, "/bff/demo/session", true, "")
	if r.Status != http.StatusUnauthorized || r.json(t)["error"] != bff.ELoginRequired {
		t.Fatalf("session before sign-in: %d %s, want 401 login_required", r.Status, r.Body)
	}

	b.login()
	if b.cookie() == "" {
		t.Fatal("no session cookie after the sign-in")
	}
	r = b.call(http.MethodGet, "/bff/demo/session", true, "")
	if r.Status != http.StatusOK {
		t.Fatalf("session: %d %s", r.Status, r.Body)
	}
	s := r.json(t)
	user, _ := s["user"].(map[string]any)
	if user["id"] != "alice" || user["display_name"] != "alice" || s["logout_url"] != h.ts.URL+"/bff/demo/logout" ||
		s["token_mediating"] != false || s["grant_expires_at"] == nil {
		t.Errorf("session = %s", r.Body)
	}
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != h.spa.URL {
		t.Errorf("Access-Control-Allow-Origin = %q, want the SPA's origin %q", got, h.spa.URL)
	}
	if r.Header.Get("Access-Control-Allow-Credentials") != "true" || !slices.Contains(r.Header.Values("Vary"), "Origin") {
		t.Errorf("CORS headers: %v", r.Header)
	}
	h.noToken("the session answer", r.Body)

	// The connection is the Spotify user's, visible to the app's service.
	if c := h.connection("bff:alice"); c.Status != http.StatusOK || c.json(t)["spotify_user_id"] != "alice" {
		t.Errorf("connection bff:alice: %d %s", c.Status, c.Body)
	}

	before := h.rec.apiCount()
	r = b.call(http.MethodGet, "/bff/demo/api/v1/me?market=SE", true, "")
	if r.Status != http.StatusOK || r.json(t)["id"] != "alice" {
		t.Fatalf("api v1/me: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("Access-Control-Allow-Origin") != h.spa.URL {
		t.Errorf("proxied answer's Access-Control-Allow-Origin = %q, want %q", r.Header.Get("Access-Control-Allow-Origin"), h.spa.URL)
	}
	reqs := h.rec.apiRequests(before)
	if len(reqs) != 1 || reqs[0].Path != "/v1/me" {
		t.Fatalf("the emulator got %v, want one GET /v1/me", reqs)
	}
	for _, name := range []string{"Cookie", "Origin", "Sec-Fetch-Site", csrfHeader} {
		if v := reqs[0].Header.Values(name); len(v) > 0 {
			t.Errorf("the proxy forwarded %s to Spotify: %q", name, v)
		}
	}
	access, _ := h.rec.tokens()
	if got := reqs[0].Header.Get("Authorization"); got != "Bearer "+access[len(access)-1] {
		t.Errorf("Spotify got Authorization %q, want the connection's access token", got)
	}

	// A state-changing call goes through too.
	r = b.call(http.MethodPut, "/bff/demo/api/v1/me/player/play", true, `{}`, "Content-Type", "application/json")
	if r.Status != http.StatusNoContent {
		t.Fatalf("PUT play: %d %s", r.Status, r.Body)
	}
	r = b.call(http.MethodGet, "/bff/demo/api/v1/me/player/currently-playing", true, "")
	if r.Status != http.StatusOK || r.json(t)["is_playing"] != true {
		t.Fatalf("currently-playing: %d %s", r.Status, r.Body)
	}

	old := b.cookie()
	r = b.call(http.MethodPost, "/bff/demo/logout", true, "")
	if r.Status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	if b.cookie() != "" {
		t.Error("the session cookie is still set after logout")
	}
	// The old cookie, replayed, is refused, and nothing reaches Spotify.
	b.setCookie(old)
	before = h.rec.apiCount()
	for _, path := range []string{"/bff/demo/session", "/bff/demo/api/v1/me"} {
		if r := b.call(http.MethodGet, path, true, ""); r.Status != http.StatusUnauthorized {
			t.Errorf("%s with the cookie of a signed-out session: %d %s, want 401", path, r.Status, r.Body)
		}
	}
	if n := h.rec.apiCount() - before; n != 0 {
		t.Errorf("the emulator got %d Web API requests after sign-out", n)
	}
	// Signing out keeps the grant: the user's other browsers stay signed in.
	if c := h.connection("bff:alice"); c.Status != http.StatusOK {
		t.Errorf("connection after a plain sign-out: %d, want it kept", c.Status)
	}
}

// The Set-Cookie of the sign-in: HttpOnly, SameSite=Strict, Path=/, no
// Domain; over plain http (loopback development) without prefix or Secure.
func TestSessionCookieDevelopmentMode(t *testing.T) {
	h := newHarness(t, harnessOptions{autoApprove: "alice"})
	b := h.newBrowser(h.spa.URL)
	var setCookie []string
	b.c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if resp := req.Response; resp != nil && strings.HasPrefix(resp.Request.URL.Path, "/callback") {
			setCookie = resp.Header.Values("Set-Cookie")
		}
		return nil
	}
	b.login()
	var session string
	for _, c := range setCookie {
		if strings.HasPrefix(c, "Http-spotoken_bff_demo=") {
			session = c
		}
	}
	if session == "" {
		t.Fatalf("the callback set no session cookie: %q", setCookie)
	}
	for _, want := range []string{"Path=/", "HttpOnly", "SameSite=Strict", "Max-Age="} {
		if !strings.Contains(session, want) {
			t.Errorf("Set-Cookie %q lacks %s", session, want)
		}
	}
	for _, not := range []string{"Domain=", "Secure"} {
		if strings.Contains(session, not) {
			t.Errorf("Set-Cookie %q has %s", session, not)
		}
	}
}

// Over https the cookie is __Host-Http-spotoken_bff_<app>, Secure too.
func TestSessionCookieHTTPS(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	handler, err := bff.New(bff.Config{Store: h.store, Server: h.srv, Tokens: h.engine, PublicURL: "https://tokens.example", Now: h.emu.Now})
	if err != nil {
		t.Fatal(err)
	}
	c := &spotoken.Connection{AppID: appID, ID: "bff:alice", SpotifyUserID: "alice", State: spotoken.StateActive,
		Token: spotoken.Token{AccessToken: "a", RefreshToken: "r", Expiry: h.emu.Now().Add(time.Hour)}, GrantExpiresAt: h.emu.Now().Add(24 * time.Hour)}
	if err := h.store.CreateConnection(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "https://tokens.example/callback", nil)
	handler.FinishLogin(w, r, &server.LoginResult{AppID: appID, ReturnTo: "https://spa.example/", Outcome: "connected", Connection: c})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "https://spa.example/" {
		t.Fatalf("FinishLogin: %d to %q", w.Code, w.Header().Get("Location"))
	}
	got := w.Header().Get("Set-Cookie")
	if !strings.HasPrefix(got, "__Host-Http-spotoken_bff_demo=") {
		t.Errorf("Set-Cookie %q: want the __Host-Http- prefix", got)
	}
	for _, want := range []string{"Path=/", "HttpOnly", "Secure", "SameSite=Strict", "Max-Age=86400"} {
		if !strings.Contains(got, want) {
			t.Errorf("Set-Cookie %q lacks %s (the session ends with the grant, in a day)", got, want)
		}
	}
	if strings.Contains(got, "Domain=") {
		t.Errorf("Set-Cookie %q has a Domain", got)
	}
}

// Everything that is not the app's page calling with client.js is refused
// before Spotify is called.
func TestRefusedBeforeSpotify(t *testing.T) {
	h := newHarness(t, harnessOptions{autoApprove: "alice"})
	ctx := context.Background()
	if err := h.store.CreateApp(ctx, &spotoken.App{ID: "other", ClientID: clientID, RedirectURIs: []string{h.srv.CallbackURL()}}); err != nil {
		t.Fatal(err)
	}
	if err := h.store.PutBrowserApp(ctx, &spotoken.BrowserApp{AppID: "other", Origins: []string{h.spa.URL}}); err != nil {
		t.Fatal(err)
	}
	if err := h.store.CreateApp(ctx, &spotoken.App{ID: "off", ClientID: clientID, RedirectURIs: []string{h.srv.CallbackURL()}}); err != nil {
		t.Fatal(err)
	}
	victim := h.newBrowser(h.spa.URL)
	victim.login()
	cookie := victim.cookie()
	if r := victim.call(http.MethodGet, "/bff/demo/api/v1/me", true, ""); r.Status != http.StatusOK {
		t.Fatalf("control: the victim's own call: %d %s", r.Status, r.Body)
	}

	const foreign = "http://127.0.0.1:1" // same site, not the app's origin
	tests := []struct {
		name    string
		method  string
		path    string
		csrf    bool
		headers []string
		cookie  string // "" for the victim's
		status  int
		code    string
	}{
		{"no CSRF header", "GET", "/bff/demo/api/v1/me", false, nil, "", 401, bff.ECSRFRequired},
		{"no CSRF header, POST", "POST", "/bff/demo/api/v1/users/alice/playlists", false, []string{"Content-Type", "text/plain"}, "", 401, bff.ECSRFRequired},
		{"CSRF header with another value", "GET", "/bff/demo/api/v1/me", false, []string{csrfHeader, "0"}, "", 401, bff.ECSRFRequired},
		{"a page of another origin of the site", "GET", "/bff/demo/api/v1/me", true, []string{"Origin", foreign, "Sec-Fetch-Site", "same-site"}, "", 403, bff.EOriginNotAllowed},
		{"a cross-site page", "POST", "/bff/demo/api/v1/me/player/play", true, []string{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"}, "", 403, bff.EOriginNotAllowed},
		{"Origin null", "GET", "/bff/demo/api/v1/me", true, []string{"Origin", "null", "Sec-Fetch-Site", "cross-site"}, "", 403, bff.EOriginNotAllowed},
		{"a foreign Referer", "GET", "/bff/demo/api/v1/me", true, []string{"Origin", "", "Sec-Fetch-Site", "", "Referer", "http://evil.example/x"}, "", 403, bff.EOriginNotAllowed},
		{"no session", "GET", "/bff/demo/api/v1/me", true, nil, "-", 401, bff.ELoginRequired},
		{"a made-up cookie", "GET", "/bff/demo/api/v1/me", true, nil, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 401, bff.ELoginRequired},
		{"the cookie with one character changed", "GET", "/bff/demo/api/v1/me", true, nil, flipLast(cookie), 401, bff.ELoginRequired},
		{"a method the proxy does not forward", "TRACE", "/bff/demo/api/v1/me", true, nil, "", 405, server.EMethodNotAllowed},
		{"a path out of the Web API", "GET", "/bff/demo/api/v1/%2e%2e/%2e%2e/admin", true, nil, "", 400, spotoken.EInvalid},
		{"an app whose BFF is off", "GET", "/bff/off/api/v1/me", true, nil, "", 404, spotoken.ENotFound},
		{"a token request in the BFF mode", "POST", "/bff/demo/token", true, nil, "", 404, spotoken.ENotFound},
		{"the token endpoint with GET", "GET", "/bff/demo/token", true, nil, "", 405, server.EMethodNotAllowed},
		{"logout with GET", "GET", "/bff/demo/logout", true, nil, "", 405, server.EMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := h.newBrowser(h.spa.URL)
			switch tt.cookie {
			case "":
				b.setCookie(cookie)
			case "-":
			default:
				b.setCookie(tt.cookie)
			}
			before := h.rec.apiCount()
			r := b.call(tt.method, tt.path, tt.csrf, "", tt.headers...)
			if r.Status != tt.status {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, r.Status, r.Body, tt.status)
			}
			if tt.code != "" && r.json(t)["error"] != tt.code {
				t.Errorf("error = %v, want %s", r.json(t)["error"], tt.code)
			}
			if n := h.rec.apiCount() - before; n != 0 {
				t.Errorf("the emulator got %d Web API requests", n)
			}
			if tt.status == http.StatusForbidden && r.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("a refused origin got Access-Control-Allow-Origin %q", r.Header.Get("Access-Control-Allow-Origin"))
			}
			h.noToken("the refusal", r.Body)
		})
	}

	// The demo session's cookie value under the other app's cookie: a
	// session is for its own app only.
	t.Run("another app's session", func(t *testing.T) {
		b := h.newBrowser(h.spa.URL)
		u, _ := url.Parse(h.ts.URL)
		b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "Http-spotoken_bff_other", Value: cookie, Path: "/"}})
		before := h.rec.apiCount()
		if r := b.call(http.MethodGet, "/bff/other/api/v1/me", true, ""); r.Status != http.StatusUnauthorized {
			t.Errorf("demo's session on other's BFF: %d %s, want 401", r.Status, r.Body)
		}
		if h.rec.apiCount() != before {
			t.Error("the emulator got a request")
		}
	})

	// The victim is still signed in: no refusal ended the session.
	if r := victim.call(http.MethodGet, "/bff/demo/session", true, ""); r.Status != http.StatusOK {
		t.Errorf("the victim's session after the attempts: %d", r.Status)
	}
}

func flipLast(s string) string {
	if strings.HasSuffix(s, "A") {
		return s[:len(s)-1] + "B"
	}
	return s[:len(s)-1] + "A"
}

func TestPreflight(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	preflight := func(path, origin, method, headers string) response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodOptions, h.ts.URL+path, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		if headers != "" {
			req.Header.Set("Access-Control-Request-Headers", headers)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return response{Status: resp.StatusCode, Header: resp.Header, Body: body}
	}
	r := preflight("/bff/demo/api/v1/me/player/play", h.spa.URL, "PUT", "content-type,x-spotoken-csrf")
	if r.Status != http.StatusNoContent {
		t.Fatalf("preflight from the SPA: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("Access-Control-Allow-Origin") != h.spa.URL || r.Header.Get("Access-Control-Allow-Credentials") != "true" ||
		!strings.Contains(r.Header.Get("Access-Control-Allow-Methods"), "PUT") ||
		r.Header.Get("Access-Control-Allow-Headers") != "content-type, x-spotoken-csrf" || r.Header.Get("Access-Control-Max-Age") == "" {
		t.Errorf("preflight answer headers: %v", r.Header)
	}
	if r := preflight("/bff/demo/session", h.spa.URL, "GET", "X-Spotoken-CSRF"); r.Status != http.StatusNoContent ||
		r.Header.Get("Access-Control-Allow-Methods") != "GET" {
		t.Errorf("session preflight: %d %v", r.Status, r.Header)
	}
	for _, tt := range []struct{ name, path, origin, method, headers string }{
		{"an unknown origin", "/bff/demo/api/v1/me", "http://127.0.0.1:1", "GET", "x-spotoken-csrf"},
		{"the SPA's origin with another scheme", "/bff/demo/api/v1/me", strings.Replace(h.spa.URL, "http:", "https:", 1), "GET", "x-spotoken-csrf"},
		{"no origin", "/bff/demo/api/v1/me", "", "GET", "x-spotoken-csrf"},
		{"a header spotoken does not take", "/bff/demo/api/v1/me", h.spa.URL, "GET", "x-spotoken-csrf, authorization"},
		{"a method the route does not take", "/bff/demo/logout", h.spa.URL, "DELETE", "x-spotoken-csrf"},
		{"a method the proxy does not take", "/bff/demo/api/v1/me", h.spa.URL, "TRACE", "x-spotoken-csrf"},
	} {
		r := preflight(tt.path, tt.origin, tt.method, tt.headers)
		if r.Status != http.StatusForbidden || r.Header.Get("Access-Control-Allow-Origin") != "" || r.Header.Get("Access-Control-Allow-Methods") != "" {
			t.Errorf("%s: %d %v, want 403 without CORS headers", tt.name, r.Status, r.Header)
		}
	}
}

// An access token that expires (the emulator's clock) is refreshed and the
// call goes through; many calls at once cost Spotify one refresh.
func TestExpiryRefreshesOnce(t *testing.T) {
	h := newHarness(t, harnessOptions{autoApprove: "alice"})
	b := h.newBrowser(h.spa.URL)
	b.login()
	if r := b.call(http.MethodGet, "/bff/demo/api/v1/me", true, ""); r.Status != http.StatusOK {
		t.Fatalf("before expiry: %d %s", r.Status, r.Body)
	}
	h.emu.Advance(2 * time.Hour)
	refreshes := h.rec.refreshes()
	var wg sync.WaitGroup
	const callers = 40
	statuses := make([]int, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = b.call(http.MethodGet, "/bff/demo/api/v1/me", true, "").Status
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("caller %d after expiry: %d", i, s)
		}
	}
	if n := h.rec.refreshes() - refreshes; n != 1 {
		t.Errorf("%d concurrent calls after expiry made %d refreshes, want 1", callers, n)
	}
	if r := b.call(http.MethodGet, "/bff/demo/session", true, ""); r.Status != http.StatusOK {
		t.Errorf("the session after two hours: %d, want it alive", r.Status)
	}
}

// When Spotify no longer honours the grant, the session ends with 409
// needs_reauth: sign in again. No connect link reaches the page.
func TestGrantGoneEndsSession(t *testing.T) {
	h := newHarness(t, harnessOptions{autoApprove: "alice"})
	b := h.newBrowser(h.spa.URL)
	b.login()
	if err := h.emu.RevokeGrant("alice", clientID); err != nil {
		t.Fatal(err)
	}
	h.emu.Advance(2 * time.Hour)
	r := b.call(http.MethodGet, "/bff/demo/api/v1/me", true, "")
	if r.Status != http.StatusConflict || r.json(t)["error"] != spotoken.ENeedsReauth {
		t.Fatalf("after revocation: %d %s, want 409 needs_reauth", r.Status, r.Body)
	}
	if bytes.Contains(r.Body, []byte("connect_url")) || bytes.Contains(r.Body, []byte("/connect/")) {
		t.Errorf("the page got a connect link: %s", r.Body)
	}
	if b.cookie() != "" {
		t.Error("the session cookie is still set")
	}
	if r := b.call(http.MethodGet, "/bff/demo/session", true, ""); r.Status != http.StatusUnauthorized {
		t.Errorf("session after needs_reauth: %d, want 401", r.Status)
	}
	// Signing in again restores the grant.
	b.login()
	if r := b.call(http.MethodGet, "/bff/demo/api/v1/me", true, ""); r.Status != http.StatusOK {
		t.Errorf("after signing in again: %d %s", r.Status, r.Body)
	}
}

// A call that needs a scope the sign-in did not ask for is 403
// insufficient_scope with the scopes, and no connect link.
func TestInsufficientScope(t *testing.T) {
	h := newHarness(t, harnessOptions{autoApprove: "alice", browserApp: func(b *spotoken.BrowserApp) {
		b.Scopes = spotoken.Scopes{"user-read-private"}
	}})
	b := h.newBrowser(h.spa.URL)
	b.login()
	before := h.rec.apiCount()
	r := b.call(http.MethodPut, "/bff/demo/api/v1/me/player/play", true, "{}", "Content-Type", "application/json")
	if r.Status != http.StatusForbidden || r.json(t)["error"] != server.EInsufficientScope {
		t.Fatalf("play without its scope: %d %s", r.Status, r.Body)
	}
	if bytes.Contains(r.Body, []byte("connect_url")) || !bytes.Contains(r.Body, []byte("user-modify-playback-state")) {
		t.Errorf("insufficient_scope answer: %s", r.Body)
	}
	if h.rec.apiCount() != before {
		t.Error("the emulator got the request")
	}
}

func TestSignOutEverywhere(t *testing.T) {
	h := newHarness(t, harnessOptions{autoApprove: "alice"})
	laptop, phone := h.newBrowser(h.spa.URL), h.newBrowser(h.spa.URL)
	laptop.login()
	phone.login()
	if laptop.cookie() == phone.cookie() {
		t.Fatal("two browsers share a session id")
	}
	for _, b := range []*browser{laptop, phone} {
		if r := b.call(http.MethodGet, "/bff/demo/session", true, ""); r.Status != http.StatusOK {
			t.Fatalf("session: %d", r.Status)
		}
	}
	if r := laptop.call(http.MethodPost, "/bff/demo/logout?erase_grant=yes", true, ""); r.Status != http.StatusBadRequest {
		t.Errorf("logout?erase_grant=yes: %d, want 400", r.Status)
	}
	if r := laptop.call(http.MethodPost, "/bff/demo/logout?erase_grant=true", true, ""); r.Status != http.StatusNoContent {
		t.Fatalf("logout everywhere: %d %s", r.Status, r.Body)
	}
	if r := phone.call(http.MethodGet, "/bff/demo/session", true, ""); r.Status != http.StatusUnauthorized {
		t.Errorf("the phone's session after sign-out everywhere: %d, want 401", r.Status)
	}
	if c := h.connection("bff:alice"); c.Status != http.StatusNotFound {
		t.Errorf("the grant after sign-out everywhere: %d, want erased (404)", c.Status)
	}
}

// Session fixation: a cookie the browser had before signing in (planted or
// from an earlier sign-in) is never the signed-in one.
func TestSessionFixation(t *testing.T) {
	h := newHarness(t, harnessOptions{autoApprove: "alice"})
	attacker := h.newBrowser(h.spa.URL)
	attacker.login()
	planted := attacker.cookie() // a live session the attacker knows

	victim := h.newBrowser(h.spa.URL)
	victim.setCookie(planted)
	victim.login()
	if got := victim.cookie(); got == "" || got == planted {
		t.Fatalf("after signing in the victim holds %q, the planted cookie %q", got, planted)
	}
	if r := attacker.call(http.MethodGet, "/bff/demo/session", true, ""); r.Status != http.StatusUnauthorized {
		t.Errorf("the planted session after the victim signed in: %d, want ended (401)", r.Status)
	}

	// Signing in again gives a new id, and the previous one is ended.
	first := victim.cookie()
	victim.login()
	if second := victim.cookie(); second == first {
		t.Fatal("signing in again kept the session id")
	}
	stale := h.newBrowser(h.spa.URL)
	stale.setCookie(first)
	if r := stale.call(http.MethodGet, "/bff/demo/session", true, ""); r.Status != http.StatusUnauthorized {
		t.Errorf("the previous session after signing in again: %d, want 401", r.Status)
	}

	// A made-up value planted before sign-in is refused before and after.
	fresh := h.newBrowser(h.spa.URL)
	fresh.setCookie("planted-by-a-sibling-subdomain")
	fresh.login()
	if fresh.cookie() == "planted-by-a-sibling-subdomain" {
		t.Error("the made-up cookie survived the sign-in")
	}
}

func TestLoginRefusals(t *testing.T) {
	h := newHarness(t, harnessOptions{autoApprove: "alice"})
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct {
		name, query string
		status      int
	}{
		{"another origin", "return_to=" + url.QueryEscape("https://evil.example/"), 400},
		{"user information", "return_to=" + url.QueryEscape("http://x@"+strings.TrimPrefix(h.spa.URL, "http://")+"/"), 400},
		{"scheme-relative", "return_to=" + url.QueryEscape("//evil.example/"), 400},
		{"javascript", "return_to=" + url.QueryEscape("javascript:alert(1)"), 400},
		{"backslash", "return_to=" + url.QueryEscape(h.spa.URL+"\\@evil.example/"), 400},
		{"a parameter twice", "return_to=" + url.QueryEscape(h.spa.URL+"/") + "&return_to=" + url.QueryEscape(h.spa.URL+"/"), 400},
		{"an unknown parameter", "next=" + url.QueryEscape(h.spa.URL+"/"), 400},
	} {
		resp, err := c.Get(h.ts.URL + "/bff/demo/login?" + tt.query)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.Header.Get("Location") != "" {
			t.Errorf("%s: %d to %q, want %d and no redirect", tt.name, resp.StatusCode, resp.Header.Get("Location"), tt.status)
		}
	}
	resp, err := c.Get(h.ts.URL + "/bff/off/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("login to an app without a BFF: %d", resp.StatusCode)
	}
	// The sign-in asks Spotify with show_dialog=true, PKCE S256 and a state.
	resp, err = c.Get(h.ts.URL + "/bff/demo/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	q := loc.Query()
	if resp.StatusCode != http.StatusFound || loc.Path != "/authorize" || q.Get("show_dialog") != "true" ||
		q.Get("code_challenge_method") != "S256" || q.Get("state") == "" {
		t.Errorf("login redirects %d to %s", resp.StatusCode, loc)
	}
	if got := spotoken.ParseScopes(q.Get("scope")); !slices.Equal(got, appScopes) {
		t.Errorf("login asks scopes %v, want the app's %v", got, appScopes)
	}
}

// A sign-in the user declines comes back to the SPA with the error, and no
// session.
func TestLoginDeclined(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	b := h.newBrowser(h.spa.URL)
	resp, err := b.c.Get(h.ts.URL + "/bff/demo/login?return_to=" + url.QueryEscape(h.spa.URL+"/app#/home"))
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The emulator shows its consent page; decline there.
	id := between(string(html), `name="request" value="`, `"`)
	if id == "" {
		t.Fatalf("no consent request id on the emulator's page (%s):\n%s", resp.Request.URL, html)
	}
	form := url.Values{"action": {"cancel"}, "request": {id}}
	resp, err = b.c.PostForm(h.emuSrv.URL+"/authorize/consent", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	final := resp.Request.URL
	if final.Host != strings.TrimPrefix(h.spa.URL, "http://") || final.Query().Get("error") != "access_denied" || final.Fragment != "/home" {
		t.Errorf("declining ended at %s, want the SPA with error=access_denied and the fragment kept", final)
	}
	if b.cookie() != "" {
		t.Error("a declined sign-in set a session cookie")
	}
	events, err := h.store.PendingEvents(context.Background(), h.emu.Now().Add(time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Type != spotoken.EventConnectFailed || events[0].ConnectionID != "" ||
		!strings.Contains(string(events[0].Data), `"reason":"access_denied"`) {
		t.Errorf("events after a declined sign-in: %+v", events)
	}
}

func between(s, start, end string) string {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, end)
	return v
}

func TestTokenMediating(t *testing.T) {
	h := newHarness(t, harnessOptions{autoApprove: "alice",
		browserApp: func(b *spotoken.BrowserApp) { b.TokenScopes = appScopes },
		bff:        func(c *bff.Config) { c.TokenBurst, c.TokenEvery = 3, time.Hour }})
	b := h.newBrowser(h.spa.URL)
	if r := b.call(http.MethodPost, "/bff/demo/token", true, ""); r.Status != http.StatusUnauthorized {
		t.Errorf("token before sign-in: %d, want 401", r.Status)
	}
	b.login()
	if r := b.call(http.MethodPost, "/bff/demo/token", false, ""); r.Status != http.StatusUnauthorized {
		t.Errorf("token without the CSRF header: %d, want 401", r.Status)
	}
	r := b.call(http.MethodPost, "/bff/demo/token", true, "")
	if r.Status != http.StatusOK {
		t.Fatalf("token: %d %s", r.Status, r.Body)
	}
	tok := r.json(t)
	access, refresh := h.rec.tokens()
	if tok["access_token"] != access[len(access)-1] || tok["token_type"] != "Bearer" || tok["expires_in"].(float64) <= 0 ||
		tok["scope"] != appScopes.String() {
		t.Errorf("token answer: %s", r.Body)
	}
	for _, rt := range refresh {
		if bytes.Contains(r.Body, []byte(rt)) {
			t.Error("the token answer holds a refresh token")
		}
	}
	if _, ok := tok["refresh_token"]; ok {
		t.Error("the token answer has a refresh_token field")
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", r.Header.Get("Cache-Control"))
	}
	// Rate-limited per session: a burst of 3, then 429.
	b.call(http.MethodPost, "/bff/demo/token", true, "")
	b.call(http.MethodPost, "/bff/demo/token", true, "")
	r = b.call(http.MethodPost, "/bff/demo/token", true, "")
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Errorf("fourth token request: %d %v", r.Status, r.Header)
	}
	h.noToken("the rate-limited answer", r.Body)
	if !strings.Contains(h.logs.String(), "token requests over the session's limit") {
		t.Error("the log does not tell of the session over its token limit")
	}
	// Another session has its own allowance.
	other := h.newBrowser(h.spa.URL)
	other.login()
	if r := other.call(http.MethodPost, "/bff/demo/token", true, ""); r.Status != http.StatusOK {
		t.Errorf("another session's token: %d", r.Status)
	}
}

// The token-mediating mode hands out no token wider than the app's token
// scopes.
func TestTokenScopeTooWide(t *testing.T) {
	h := newHarness(t, harnessOptions{autoApprove: "alice",
		browserApp: func(b *spotoken.BrowserApp) { b.TokenScopes = spotoken.Scopes{"user-read-private"} }})
	b := h.newBrowser(h.spa.URL)
	b.login()
	r := b.call(http.MethodPost, "/bff/demo/token", true, "")
	if r.Status != http.StatusForbidden || r.json(t)["error"] != bff.EScopeNotAllowed {
		t.Fatalf("token with a grant wider than the token scopes: %d %s", r.Status, r.Body)
	}
	h.noToken("the refusal", r.Body)
}

// No token, and no session cookie, is written to the log or in the clear
// to the database files.
func TestNoSecretsInLogsOrDatabase(t *testing.T) {
	h := newHarness(t, harnessOptions{autoApprove: "alice",
		browserApp: func(b *spotoken.BrowserApp) { b.TokenScopes = appScopes }})
	b := h.newBrowser(h.spa.URL)
	b.login()
	cookie := b.cookie()
	b.call(http.MethodGet, "/bff/demo/api/v1/me", true, "")
	h.emu.Advance(2 * time.Hour)
	b.call(http.MethodGet, "/bff/demo/api/v1/me", true, "")
	b.call(http.MethodPost, "/bff/demo/token", true, "")
	b.call(http.MethodGet, "/bff/demo/api/v1/me", false, "") // refused, logged
	second := h.newBrowser(h.spa.URL)
	second.login()
	cookie2 := second.cookie()
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	access, refresh := h.rec.tokens()
	if len(access) < 2 || len(refresh) < 1 {
		t.Fatalf("the emulator issued %d access and %d refresh tokens; want a refresh to have happened", len(access), len(refresh))
	}
	secrets := map[string]string{"session cookie": cookie, "second session cookie": cookie2}
	for i, s := range access {
		secrets["access token "+string(rune('0'+i))] = s
	}
	for i, s := range refresh {
		secrets["refresh token "+string(rune('0'+i))] = s
	}
	var db []byte
	for _, name := range []string{h.dbPath, h.dbPath + "-wal", h.dbPath + "-shm"} {
		bs, err := os.ReadFile(name)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		db = append(db, bs...)
	}
	logs := h.logs.String()
	for _, control := range []string{"bff: signed in", "bff: access token handed to a page", "csrf header refused"} {
		if !strings.Contains(strings.ToLower(logs), strings.ToLower(control)) {
			t.Errorf("control %q not in the log: the search cannot be trusted", control)
		}
	}
	if !bytes.Contains(db, []byte("bff:alice")) {
		t.Error("control: bff:alice not in the database files")
	}
	for name, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds the %s", name)
		}
		if bytes.Contains(db, []byte(s)) {
			t.Errorf("the database files hold the %s in the clear", name)
		}
	}
}

// /login keeps a state for each sign-in it starts and needs no credential:
// each app's sign-ins are limited, and a HEAD starts none.
func TestLoginLimited(t *testing.T) {
	h := newHarness(t, harnessOptions{bff: func(c *bff.Config) { c.LoginBurst, c.LoginEvery = 3, time.Hour }})
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Head(h.ts.URL + "/bff/demo/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" {
		t.Errorf("HEAD /login: %d to %q, want 200 and nothing started", resp.StatusCode, resp.Header.Get("Location"))
	}
	for i := range 4 {
		resp, err := c.Get(h.ts.URL + "/bff/demo/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusFound
		if i == 3 {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want {
			t.Errorf("sign-in %d: %d, want %d", i+1, resp.StatusCode, want)
		}
		if i == 3 && resp.Header.Get("Retry-After") == "" {
			t.Error("the refused sign-in has no Retry-After")
		}
	}
}
