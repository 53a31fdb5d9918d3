package server_test

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

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/server"
)

// The proxy and the connect flow against today's Spotify (SPOTIFY.md, late
// 2026): one 401 message for every rejected token, 401 Permissions missing
// on player endpoints, the plain-text 403 of development mode's allowlist.

// TestProxyRejectedTokenEras: the access token expired at Spotify (the
// emulator's clock moved, the broker's did not, so the broker still thinks
// it valid). A proxied call succeeds after exactly one refresh, and 300
// concurrent such calls cause one refresh, whether Spotify says so with
// today's message or the older ones.
func TestProxyRejectedTokenEras(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy 401 %v", legacy), func(t *testing.T) {
			t.Parallel()
			for _, callers := range []int{1, 300} {
				h := newHarness(t, harnessOptions{frozenBroker: true, emulator: func(c *emulator.Config) { c.Legacy401 = legacy }})
				h.connect("u1", "user-read-email")
				before, want401 := h.refreshes(), "Missing/invalid/expired access token"
				if legacy {
					want401 = "The access token expired"
				}
				h.emu.Advance(2 * time.Hour) // expired at Spotify only
				if got := spotifyMessage(t, []byte(h.emu401(t))); got != want401 {
					t.Fatalf("the emulator answers %q, want %q", got, want401)
				}

				codes := make([]int, callers)
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range callers {
					wg.Go(func() {
						<-start
						resp, raw := proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me", nil, nil)
						codes[i] = resp.StatusCode
						if resp.StatusCode != http.StatusOK {
							t.Errorf("caller %d: %d %s", i, resp.StatusCode, raw)
						}
					})
				}
				close(start)
				wg.Wait()
				if got := h.refreshes() - before; got != 1 {
					t.Errorf("%d callers: %d refreshes, want exactly 1", callers, got)
				}
				if t.Failed() {
					return
				}
			}
		})
	}
}

// emu401 is the emulator's answer, at its clock, to the connection's stored
// access token.
func (h *harness) emu401(t *testing.T) string {
	t.Helper()
	c := h.connection(appID, "u1")
	req, _ := http.NewRequest("GET", h.emuSrv.URL+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+c.Token.AccessToken.Reveal())
	rec := httptest.NewRecorder()
	h.emu.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("the stored token is not refused at Spotify: %d", rec.Code)
	}
	return rec.Body.String()
}

// TestProxyPermissionsMissing: a player call that Spotify refuses with 401
// Permissions missing answers insufficient_scope with a link asking for the
// scope, and no refresh is made. The proxy's own scope table lets both calls
// through to Spotify: one connection holds user-read-playback-state, which
// the table takes for currently-playing and Spotify (here) does not; the
// other's recorded scopes claim user-read-currently-playing, which its grant
// at Spotify does not have.
func TestProxyPermissionsMissing(t *testing.T) {
	h, up := newProxyHarness(t, harnessOptions{})
	h.connect("alt", "user-read-playback-state")
	h.connect("claims", "user-read-email")
	if _, err := h.store.UpdateConnection(context.Background(), spotoken.ConnectionKey{AppID: appID, ID: "claims"},
		func(c *spotoken.Connection) ([]spotoken.Event, error) {
			c.Scopes = append(c.Scopes, "user-read-currently-playing").Normalize()
			return nil, nil
		}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		conn string
		want spotoken.Scopes // the scopes the link asks for
	}{
		{"alt", spotoken.Scopes{"user-read-currently-playing", "user-read-playback-state"}},
		{"claims", spotoken.Scopes{"user-read-currently-playing", "user-read-email"}},
	} {
		t.Run(tc.conn, func(t *testing.T) {
			refreshes, n, perms := h.refreshes(), up.count(), h.emu.Stats().APIResponses["401"]
			resp, raw := proxyDo(t, h, "GET", "/v1/proxy/"+tc.conn+"/v1/me/player/currently-playing", nil, nil)
			e := wantProxyError(t, resp, raw, http.StatusForbidden, "insufficient_scope")
			if diff := cmp.Diff([]string(e.RequiredScopes), []string{"user-read-currently-playing"}); diff != "" {
				t.Errorf("required_scopes (-got +want):\n%s", diff)
			}
			if !strings.Contains(e.Description, "Permissions missing") {
				t.Errorf("description %q does not say what Spotify answered", e.Description)
			}
			if got := h.emu.Stats().APIResponses["401"] - perms; got != 1 {
				t.Errorf("the emulator answered 401 %d times, want once: Spotify's Permissions missing", got)
			}
			if got := len(up.since(n)); got != 1 {
				t.Errorf("%d requests reached the Web API, want 1", got)
			}
			if got := h.refreshes() - refreshes; got != 0 {
				t.Errorf("%d refreshes, want none", got)
			}
			// The link asks for the scope on top of those granted.
			r := flowGet(t, stayClient(nil), e.ConnectURL)
			loc, err := url.Parse(r.Location)
			if err != nil || r.Status != http.StatusFound {
				t.Fatalf("connect_url: %d %q", r.Status, r.Location)
			}
			if got := spotoken.ParseScopes(loc.Query().Get("scope")); !cmp.Equal(got, tc.want) {
				t.Errorf("the link asks for %v, want %v", got, tc.want)
			}
		})
	}
}

// TestProxyNotAllowlisted: the app's owner took the connection's user off a
// development-mode allowlist. The proxy answers Spotify's plain-text 403
// with user_not_allowlisted and does not refresh; a 403 that is Spotify's
// JSON error object, or a plain-text 403 while /v1/me still answers, passes
// through as it is.
func TestProxyNotAllowlisted(t *testing.T) {
	h, up := newProxyHarness(t, harnessOptions{})
	h.connect("u1", "user-read-email", "user-top-read")
	if err := h.emu.SetAllowlist(clientID, []string{"carol"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path     string
		upstream int // /v1/me needs no second look
	}{{"/v1/me", 1}, {"/v1/me/top/tracks", 2}} {
		refreshes, n := h.refreshes(), up.count()
		resp, raw := proxyDo(t, h, "GET", "/v1/proxy/u1"+tc.path, nil, nil)
		e := wantProxyError(t, resp, raw, http.StatusForbidden, server.EUserNotAllowlisted)
		if !strings.Contains(e.Description, "allowlist") || !strings.Contains(e.Description, "developer dashboard") {
			t.Errorf("%s: description %q does not say what to do", tc.path, e.Description)
		}
		if got := len(up.since(n)); got != tc.upstream {
			t.Errorf("%s: %d requests reached the Web API, want %d", tc.path, got, tc.upstream)
		}
		if h.refreshes() != refreshes {
			t.Errorf("%s: a refresh", tc.path)
		}
	}

	if err := h.emu.SetAllowlist(clientID, nil); err != nil {
		t.Fatal(err)
	}
	// Spotify's own 403s are passed on.
	h.connect("noscope", "user-read-email")
	resp, raw := proxyDo(t, h, "GET", "/v1/proxy/noscope/v1/me/playlists", nil, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("no scope: %d %s", resp.StatusCode, raw)
	}
	if got := spotifyMessage(t, raw); got != "Insufficient client scope" {
		t.Errorf("no scope: Spotify's %q, want it passed on", got)
	}
	// A plain-text 403 from something else, while /v1/me answers: passed on.
	up.setFake(func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.URL.Path != "/v1/me/top/tracks" {
			return false
		}
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte("<html>Forbidden by the firewall</html>"))
		return true
	})
	defer up.setFake(nil)
	resp, raw = proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me/top/tracks", nil, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(raw), "firewall") {
		t.Errorf("a 403 from in front of Spotify: %d %s, want it passed on", resp.StatusCode, raw)
	}
}

// TestConnectNotAllowlisted: a user who is not on a development-mode app's
// allowlist logs in at Spotify, and /v1/me then answers the plain-text 403.
// The flow ends with error=user_not_allowlisted at return_to, or a page
// that says what happened and what the app's owner must do; nothing is
// stored; the app gets one connect.failed webhook with the reason. A user
// on the allowlist connects.
func TestConnectNotAllowlisted(t *testing.T) {
	secret := spotoken.NewWebhookSecret()
	sink := &hookSink{t: t, secret: secret}
	recv := httptest.NewServer(sink)
	t.Cleanup(recv.Close)
	h := newHarness(t, harnessOptions{
		emulator: func(c *emulator.Config) { c.Clients[0].Allowlist = []string{"carol"} },
		app:      func(a *spotoken.App) { a.WebhookURL, a.WebhookSecret = recv.URL+"/hooks", secret },
	})
	sink.now = h.emu.Now
	hooks := &server.Webhooks{Store: h.store, Now: h.emu.Now, Client: recv.Client(), ConnectLink: h.srv.ConnectLink}
	deliver := func() []receivedHook {
		t.Helper()
		if _, err := hooks.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		sink.mu.Lock()
		defer sink.mu.Unlock()
		got := sink.got
		sink.got = nil
		return got
	}

	// With return_to: the app gets the error.
	f := h.startFlow(nil, h.session("u1", nil, "https://app.example/done").URL)
	r := f.callback(t, f.callbackURL)
	u, err := url.Parse(r.Location)
	if r.Status != http.StatusFound || err != nil || u.Host != "app.example" {
		t.Fatalf("callback: %d %q, want a redirect to return_to", r.Status, r.Location)
	}
	q := u.Query()
	if q.Get("error") != "user_not_allowlisted" || q.Get("connection_id") != "u1" || !strings.Contains(q.Get("error_description"), "User Management") {
		t.Errorf("return_to query %v, want error=user_not_allowlisted with what to do", q)
	}
	h.wantNothingStored()
	got := deliver()
	want := []receivedHook{{Type: "connect.failed", Data: map[string]any{"connection_id": "u1", "reason": "user_not_allowlisted"}}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("webhooks (-got +want):\n%s", diff)
	}

	// Without return_to: spotoken's page says it.
	f = h.startFlow(nil, h.session("u2", nil, "").URL)
	r = f.callback(t, f.callbackURL)
	if r.Status != http.StatusBadRequest || r.Outcome != "user_not_allowlisted" {
		t.Errorf("page: %d %q, want 400 user_not_allowlisted", r.Status, r.Outcome)
	}
	for _, says := range []string{"development mode", "User Management", "developer dashboard", "5 users", "Nothing was stored"} {
		if !strings.Contains(r.Body, says) {
			t.Errorf("the page does not say %q:\n%s", says, r.Body)
		}
	}
	h.wantNothingStored()
	if got := deliver(); len(got) != 1 || got[0].Data["connection_id"] != "u2" || got[0].Data["reason"] != "user_not_allowlisted" {
		t.Errorf("webhooks %v, want one connect.failed for u2", got)
	}

	// carol is on the list.
	h.emu.SetAutoApprove("carol")
	h.connect("u3")
	if c := h.connection(appID, "u3"); c == nil || c.SpotifyUserID != "carol" {
		t.Errorf("carol's connection: %+v", c)
	}
}

// TestRateLimitWindowShown: while the app's rate-limit window lasts, token
// requests that need a refresh answer rate_limited with the time left, and
// the connection views (API), the metrics and the dashboard show when it
// ends.
func TestRateLimitWindowShown(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1", "user-read-email")
	h.connect("u2", "user-read-email")
	wait := 7200
	if err := h.emu.SetFaults(emulator.Faults{TokenStatus: 429, RetryAfter: &wait, Window: true}); err != nil {
		t.Fatal(err)
	}
	h.emu.Advance(2 * time.Hour)
	until := h.emu.Now().Add(2 * time.Hour)
	for _, id := range []string{"u1", "u2"} {
		_, resp, raw := h.token(id)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "7200" || !strings.Contains(string(raw), `"error":"rate_limited"`) {
			t.Errorf("token %s: %d Retry-After %q %s, want 429 rate_limited with 7200", id, resp.StatusCode, resp.Header.Get("Retry-After"), raw)
		}
	}
	if n := h.emu.Stats().TokenErrors["http_429"]; n != 1 {
		t.Errorf("%d token requests met the 429, want 1", n)
	}

	var one server.ConnectionView
	h.call("GET", "/v1/connections/u2", h.apiKey, nil, &one)
	var list server.ConnectionList
	h.call("GET", "/v1/connections", h.apiKey, nil, &list)
	got := []*time.Time{one.RateLimitedUntil}
	for _, c := range list.Connections {
		got = append(got, c.RateLimitedUntil)
	}
	for i, g := range got {
		if g == nil || !g.Equal(until) {
			t.Errorf("view %d: rate_limited_until %v, want %v", i, g, until)
		}
	}

	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := `spotoken_app_rate_limited_seconds{app="demo"} 7200`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("metrics lack %s", want)
	}
	if strings.Contains(rec.Body.String(), `spotoken_app_rate_limited_seconds{app="other"}`) {
		t.Error("metrics show a window for the other app")
	}

	u := newDashUser(h)
	u.login(h.apiKey)
	if page := u.overview(""); !strings.Contains(page, `id="rate-limited"`) || !strings.Contains(page, until.UTC().Format(time.RFC3339)) {
		t.Errorf("the dashboard does not show the window:\n%s", page)
	}

	// Once it has passed, it is shown no more.
	h.emu.Advance(2 * time.Hour)
	one = server.ConnectionView{}
	h.call("GET", "/v1/connections/u2", h.apiKey, nil, &one)
	if one.RateLimitedUntil != nil {
		t.Errorf("after the window: rate_limited_until %v", one.RateLimitedUntil)
	}
	u = newDashUser(h) // the two hours ended the first sign-in
	u.login(h.apiKey)
	if page := u.overview(""); strings.Contains(page, `id="rate-limited"`) {
		t.Error("the dashboard still shows the window")
	}
}
