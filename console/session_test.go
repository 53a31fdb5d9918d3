package console_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/console"
	"github.com/spotoken/spotoken/internal/pgtest"
	"github.com/spotoken/spotoken/internal/websession"
	"github.com/spotoken/spotoken/postgres"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
	"github.com/spotoken/spotoken/sqlite"
)

// Console sessions are kept in the store: they survive a restart, work on
// every replica, are capped per scope, end with their credential, and
// hold no secret in the clear (TestSecretsNeverLeak).

// mount builds a server and a console on store, as another replica (or
// the same one restarted) would, and serves them.
func mount(t *testing.T, store spotoken.Store, public string, now func() time.Time) http.Handler {
	t.Helper()
	engine, err := refresh.New(refresh.Config{Store: store, Now: now, Refresher: &refresh.SpotifyRefresher{TokenURL: "http://127.0.0.1:1/api/token"}})
	if err != nil {
		t.Fatal(err)
	}
	adm, err := admin.New(admin.Config{Store: store, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: store, Tokens: engine, PublicURL: public, Now: now, Admin: adm})
	if err != nil {
		t.Fatal(err)
	}
	c, err := console.New(console.Config{Store: store, Admin: adm, Actions: srv, BaseURL: public, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	srv.MountAdmin(c.Mount)
	return srv.AdminHandler()
}

// TestSessionSurvivesRestart: signed in before a restart (a new server and
// console on the database opened again), still signed in after, and the
// CSRF token of before still works.
func TestSessionSurvivesRestart(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	u := newUser(h)
	u.login(h.apiKey)
	token := u.csrf()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: h.dbPath, Keys: h.ring, Now: h.emu.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	restarted := httptest.NewServer(mount(t, store, h.ts.URL, h.emu.Now))
	t.Cleanup(restarted.Close)
	u.base = restarted.URL // same host: the browser sends the cookie
	if body := u.page("/console/apps/demo"); !hasRow(body, "u1") {
		t.Fatal("after the restart the page lost u1")
	}
	resp, _ := u.post("/console/apps/demo/connections/u1/delete", url.Values{"csrf_token": {token}})
	if resp.StatusCode != http.StatusOK || h.exists(appID, "u1") {
		t.Fatalf("delete with the CSRF token from before the restart: %d, u1 exists %v", resp.StatusCode, h.exists(appID, "u1"))
	}
}

// TestSessionAcrossReplicas: signed in through one replica, the console
// works on another, sharing PostgreSQL: a connect link made on one is shown
// on a page of the other; signing out on the other ends the session on
// both.
func TestSessionAcrossReplicas(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t), "console")
	ring, err := seal.GenerateKeyFile(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	var stores []*postgres.DB
	var servers []*httptest.Server
	var publicURL string
	for i := range 2 {
		var handler http.Handler
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
		t.Cleanup(ts.Close)
		if i == 0 {
			publicURL = ts.URL
		}
		store, err := postgres.Open(ctx, postgres.Config{DSN: dsn, Keys: ring, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		handler = mount(t, store, publicURL, clock)
		stores, servers = append(stores, store), append(servers, ts)
	}
	if err := stores[0].CreateApp(ctx, &spotoken.App{ID: appID, ClientID: clientID, RedirectURIs: []string{publicURL + "/callback"},
		DefaultScopes: spotoken.Scopes{"user-read-email"}}); err != nil {
		t.Fatal(err)
	}
	adm, _ := admin.New(admin.Config{Store: stores[1], Now: clock})
	key, _, err := adm.CreateAdminKey(ctx, admin.Actor{Kind: admin.ActorCLI}, "ops")
	if err != nil {
		t.Fatal(err)
	}
	u := newUserAt(t, servers[0].URL)
	u.login(key.Reveal())
	cookie := *u.cookie()
	u.base = servers[1].URL
	token := u.csrf()
	resp, _ := u.do(u.stay, http.MethodPost, "/console/apps/demo/connect-link", url.Values{"csrf_token": {token}, "connection_id": {"u7"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("connect link on replica 2: %d, want 303", resp.StatusCode)
	}
	u.base = servers[0].URL
	if body := u.page("/console/apps/demo"); !linkRE.MatchString(body) || !strings.Contains(body, "Connect link for u7") {
		t.Fatalf("replica 1 does not show the link made on replica 2:\n%s", body)
	}
	u.base = servers[1].URL
	resp, body := u.post("/console/logout", url.Values{"csrf_token": {token}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "You are signed out") {
		t.Fatalf("sign out on replica 2: %d\n%s", resp.StatusCode, body)
	}
	for _, ts := range servers {
		replay := newUserAt(t, ts.URL)
		base, _ := url.Parse(ts.URL)
		replay.jar.SetCookies(base, []*http.Cookie{&cookie})
		resp, _ := replay.do(replay.stay, http.MethodGet, "/console/", nil, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/login?ended=1" {
			t.Errorf("the signed-out cookie on %s: %d Location %q, want 303 to the sign-in page", ts.URL, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// TestSessionCaps: one API key signing in past the cap ends that app's
// soonest-ending sessions (that key's own first), never another app's nor
// an operator's; and operators' sessions are capped in a scope of their
// own.
func TestSessionCaps(t *testing.T) {
	for _, tc := range []struct {
		name      string
		limits    spotoken.WebSessionLimits
		kept      int  // the flooding key's last sessions that are kept
		colleague bool // whether the same app's other key's session survives
	}{
		{"per app", spotoken.WebSessionLimits{PerScope: 5, PerSubject: -1}, 5, false},
		{"per key", spotoken.WebSessionLimits{PerScope: 5, PerSubject: 3}, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{console: func(c *console.Config) { c.Sessions = tc.limits }})
			other := newUser(h)
			other.login(h.otherKey)
			operator := newUser(h)
			operator.login(h.adminKey)
			colleague := newUser(h)
			colleague.login(h.newKey(appID))
			var flood []*user
			for range 12 {
				h.emu.Advance(time.Second)
				u := newUser(h)
				u.login(h.apiKey)
				flood = append(flood, u)
			}
			signedIn := func(u *user) bool {
				resp, _ := u.do(u.stay, http.MethodGet, "/console/search?q=x", nil, nil)
				return resp.StatusCode == http.StatusOK
			}
			for i, u := range flood {
				if got, want := signedIn(u), i >= len(flood)-tc.kept; got != want {
					t.Errorf("sign-in %d of the flooding key: signed in %v, want %v", i, got, want)
				}
			}
			if !signedIn(other) || !signedIn(operator) {
				t.Error("the other app's session or the operator's did not survive")
			}
			if got := signedIn(colleague); got != tc.colleague {
				t.Errorf("the same app's other key's session: signed in %v, want %v", got, tc.colleague)
			}
			if !strings.Contains(h.logs.String(), `"scope":"dashboard:demo"`) || strings.Contains(h.logs.String(), `"scope":"admin"`) {
				t.Error("the log does not say which scope lost sessions, or names the wrong one")
			}
		})
	}
	t.Run("operators", func(t *testing.T) {
		h := newHarness(t, harnessOptions{console: func(c *console.Config) { c.Sessions = spotoken.WebSessionLimits{PerScope: 2} }})
		team := newUser(h)
		team.login(h.apiKey)
		var ops []*user
		for range 4 {
			h.emu.Advance(time.Second)
			u := newUser(h)
			u.login(h.adminKey)
			ops = append(ops, u)
		}
		for i, u := range ops {
			resp, _ := u.do(u.stay, http.MethodGet, "/console/", nil, nil)
			if got, want := resp.StatusCode == http.StatusOK, i >= 2; got != want {
				t.Errorf("operator sign-in %d: signed in %v, want %v", i, got, want)
			}
		}
		if resp, _ := team.do(team.stay, http.MethodGet, "/console/apps/demo", nil, nil); resp.StatusCode != http.StatusOK {
			t.Error("operators signing in ended an app team's session")
		}
	})
}

// TestCookieOverHTTPS: served over https the cookie is
// __Host-spotoken_dashboard, Secure; the name without the prefix is not
// read.
func TestCookieOverHTTPS(t *testing.T) {
	h := newHarness(t, harnessOptions{base: "https://console.example"})
	handler := h.srv.AdminHandler()
	req := httptest.NewRequest(http.MethodPost, "https://console.example/console/login", strings.NewReader(url.Values{"credential": {h.adminKey}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	handler.ServeHTTP(w, req)
	cookies := w.Result().Cookies()
	if w.Code != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("login: %d, cookies %v", w.Code, cookies)
	}
	c := cookies[0]
	if c.Name != "__Host-spotoken_dashboard" || !c.Secure || !c.HttpOnly || c.Path != "/" || c.Domain != "" || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie %s: want __Host-spotoken_dashboard, Secure, HttpOnly, Path=/, no Domain, SameSite=Strict", c)
	}
	get := func(name string) int {
		req := httptest.NewRequest(http.MethodGet, "https://console.example/console/", nil)
		req.AddCookie(&http.Cookie{Name: name, Value: c.Value})
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		return w.Code
	}
	if got := get("__Host-spotoken_dashboard"); got != http.StatusOK {
		t.Errorf("GET /console/ with the cookie: %d, want 200", got)
	}
	if got := get("spotoken_dashboard"); got != http.StatusSeeOther {
		t.Errorf("GET /console/ with the value under the unprefixed name: %d, want 303 to the sign-in page", got)
	}
}

// TestRevokedCredentialEndsSessions: the first request that finds a
// credential revoked (an API key, an admin credential) ends every session
// of it, not only its own; a POST with it changes nothing; it cannot sign
// in again.
func TestRevokedCredentialEndsSessions(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	for _, tc := range []struct {
		name, credential string
		revoke           func()
	}{
		{"API key", h.apiKey, func() { h.revokeKey(h.apiKey) }},
		{"admin credential", h.adminKey, func() {
			k, err := h.admin.Authenticate(ctx, spotoken.Secret(h.adminKey))
			if err != nil {
				t.Fatal(err)
			}
			if err := h.admin.RevokeAdminKey(ctx, admin.Actor{Kind: admin.ActorCLI}, k.ID); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var users []*user
			var cookies []string
			for range 3 {
				u := newUser(h)
				u.login(tc.credential)
				users = append(users, u)
				cookies = append(cookies, u.cookie().Value)
			}
			token := users[0].csrf()
			tc.revoke()
			resp, _ := users[0].do(users[0].stay, http.MethodPost, "/console/apps/demo/connections/u1/delete", url.Values{"csrf_token": {token}}, nil)
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/login?ended=1" {
				t.Fatalf("POST after revocation: %d Location %q, want 303 to the sign-in page", resp.StatusCode, resp.Header.Get("Location"))
			}
			if c := setCookie(resp, cookie); c == nil || c.MaxAge >= 0 {
				t.Errorf("the ended session's cookie was not cleared: %v", c)
			}
			if !h.exists(appID, "u1") {
				t.Fatal("a revoked credential's session deleted u1")
			}
			for i, c := range cookies {
				if _, err := h.store.WebSession(ctx, websession.IDHash(c)); err == nil {
					t.Errorf("session %d of the revoked credential is still stored", i)
				}
			}
			resp, body := users[1].get("/console/")
			if resp.Request.URL.Path != "/console/login" || !strings.Contains(body, "Your session ended") {
				t.Errorf("GET /console/ after revocation landed at %s:\n%s", resp.Request.URL, body)
			}
			resp, _ = users[2].do(users[2].stay, http.MethodPost, "/console/login", url.Values{"credential": {tc.credential}}, nil)
			if resp.StatusCode != http.StatusUnauthorized || setCookie(resp, cookie) != nil {
				t.Errorf("sign-in with a revoked credential: %d, want 401 and no cookie", resp.StatusCode)
			}
		})
	}
}

// TestSessionExpires: used every 55 minutes, a session lasts 12 hours after
// sign-in and not a minute more; unused for an hour, it ends.
func TestSessionExpires(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	u := newUser(h)
	u.login(h.adminKey)
	for range 13 {
		h.emu.Advance(55 * time.Minute)
		u.page("/console/")
	}
	h.emu.Advance(5 * time.Minute)
	resp, _ := u.do(u.stay, http.MethodGet, "/console/", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/login?ended=1" {
		t.Fatalf("GET /console/ 12h after sign-in: %d Location %q, want 303 to the sign-in page", resp.StatusCode, resp.Header.Get("Location"))
	}
	u.login(h.adminKey)
	h.emu.Advance(59 * time.Minute)
	u.page("/console/")
	h.emu.Advance(time.Hour)
	resp, _ = u.do(u.stay, http.MethodGet, "/console/", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/login?ended=1" {
		t.Fatalf("GET /console/ an hour after the last use: %d Location %q, want 303 to the sign-in page", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestLogout: signing out clears the cookie and ends the session; the old
// cookie replayed is dead.
func TestLogout(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, credential := range []string{h.adminKey, h.apiKey} {
		u := newUser(h)
		u.login(credential)
		value := u.cookie().Value
		resp, body := u.post("/console/logout", url.Values{"csrf_token": {u.csrf()}})
		if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/console/login" || !strings.Contains(body, "You are signed out") {
			t.Fatalf("logout: %d at %s\n%s", resp.StatusCode, resp.Request.URL, body)
		}
		if u.cookie() != nil {
			t.Error("the cookie is still set after logout")
		}
		base, _ := url.Parse(h.ts.URL)
		u.jar.SetCookies(base, []*http.Cookie{{Name: cookie, Value: value, Path: "/"}})
		resp, _ = u.do(u.stay, http.MethodGet, "/console/", nil, nil)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/login") {
			t.Fatalf("GET /console/ with the signed-out cookie: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// TestSeparateAdminListener: with the admin side on a listener of its own
// (serve --admin-addr), the console is there only, works on that origin,
// and refuses a sign-in claiming the public origin; the public listener
// serves none of it.
func TestSeparateAdminListener(t *testing.T) {
	var adminHandler http.Handler
	adminTS := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { adminHandler.ServeHTTP(w, r) }))
	t.Cleanup(adminTS.Close)
	h := newHarness(t, harnessOptions{base: adminTS.URL, server: func(c *server.Config) { c.SeparateAdmin, c.AdminURL = true, adminTS.URL }})
	adminHandler = h.srv.AdminHandler()
	public := h.srv.Handler()
	for _, path := range []string{"/", "/console/", "/console/login", "/dashboard/login", "/console/static/console.css"} {
		rec := httptest.NewRecorder()
		public.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s on the public listener: %d, want 404", path, rec.Code)
		}
	}
	u := newUserAt(t, adminTS.URL)
	post := func(origin string) int {
		resp, _ := u.do(u.stay, http.MethodPost, "/console/login", url.Values{"credential": {h.adminKey}}, map[string]string{"Origin": origin})
		return resp.StatusCode
	}
	if got := post(h.ts.URL); got != http.StatusForbidden {
		t.Errorf("sign-in claiming the public origin: %d, want 403", got)
	}
	if got := post(adminTS.URL); got != http.StatusSeeOther {
		t.Errorf("sign-in from the admin origin: %d, want 303", got)
	}
	if body := u.page("/console/"); !strings.Contains(body, `<tr data-app="demo">`) {
		t.Errorf("the console on the admin listener:\n%s", body)
	}
}
