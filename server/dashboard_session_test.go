package server_test

import (
	"bytes"
	"context"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/pgtest"
	"github.com/spotoken/spotoken/internal/websession"
	"github.com/spotoken/spotoken/postgres"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
	"github.com/spotoken/spotoken/sqlite"
)

// Dashboard sessions are kept in the store: they survive a restart, work
// on every replica, are capped per app, and hold no secret in the clear.

// TestDashboardSessionSurvivesRestart: a person signed in before a restart
// (a new server, on the database opened again) is still signed in after.
func TestDashboardSessionSurvivesRestart(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	u := newDashUser(h)
	u.login(h.apiKey)
	token := u.csrf()

	store, err := sqlite.Open(context.Background(), sqlite.Config{Path: h.dbPath, Keys: h.ring, Now: h.emu.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	srv, err := server.New(server.Config{Store: store, Tokens: h.engine, PublicURL: h.ts.URL, Now: h.emu.Now})
	if err != nil {
		t.Fatal(err)
	}
	restarted := httptest.NewServer(srv)
	t.Cleanup(restarted.Close)
	u.base = restarted.URL // same host: the browser sends the cookie
	if body := u.overview(""); !hasRow(body, "u1") {
		t.Fatal("after the restart the overview lost u1")
	}
	resp, _ := u.post("/dashboard/connections/u1/delete", url.Values{"csrf_token": {token}})
	if resp.StatusCode != http.StatusOK || h.exists(appID, "u1") {
		t.Fatalf("delete with the CSRF token from before the restart: %d, u1 exists %v", resp.StatusCode, h.exists(appID, "u1"))
	}
}

// dashReplica is one server of several sharing a PostgreSQL database.
type dashReplica struct {
	store *postgres.DB
	srv   *server.Server
	ts    *httptest.Server
}

// TestDashboardAcrossReplicas: sign in through one replica; use the
// dashboard, see the outcome of a POST made on one replica on a page of the
// other, and sign out through the other; the signed-out cookie is dead on
// both.
func TestDashboardAcrossReplicas(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t), "dash")
	ring, err := seal.GenerateKeyFile(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ctx := context.Background()
	// The public URL is the first replica's; the second listens on another
	// port of the same host, so the browser's cookie reaches both, as it
	// reaches every replica behind one load balancer.
	var replicas []*dashReplica
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
		engine, err := refresh.New(refresh.Config{Store: store, Now: clock, Refresher: &refresh.SpotifyRefresher{TokenURL: "http://127.0.0.1:1/api/token"}})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.New(server.Config{Store: store, Tokens: engine, PublicURL: publicURL, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		handler = srv
		replicas = append(replicas, &dashReplica{store: store, srv: srv, ts: ts})
	}
	a, b := replicas[0], replicas[1]
	if err := a.store.CreateApp(ctx, &spotoken.App{ID: appID, ClientID: clientID, RedirectURIs: []string{a.srv.CallbackURL()},
		DefaultScopes: spotoken.Scopes{"user-read-email"}}); err != nil {
		t.Fatal(err)
	}
	key, rec := spotoken.NewAPIKey(appID, "team", now)
	if err := a.store.CreateAPIKey(ctx, rec); err != nil {
		t.Fatal(err)
	}

	u := newDashUserAt(t, a.ts.URL)
	u.login(key.Reveal())
	cookie := *u.cookie()
	u.base = b.ts.URL
	token := u.csrf() // the overview, on b
	resp, _ := u.do(u.stay, http.MethodPost, "/dashboard/connect-link", url.Values{"csrf_token": {token}, "connection_id": {"u7"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("connect link on b: %d, want 303", resp.StatusCode)
	}
	u.base = a.ts.URL
	if body := u.overview(""); !linkRE.MatchString(body) || !strings.Contains(body, "Connect link for u7") {
		t.Fatalf("a does not show the link made on b:\n%s", body)
	}
	u.base = b.ts.URL
	resp, body := u.post("/dashboard/logout", url.Values{"csrf_token": {token}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "You are signed out") {
		t.Fatalf("sign out on b: %d\n%s", resp.StatusCode, body)
	}
	for _, r := range replicas {
		replay := newDashUserAt(t, r.ts.URL)
		base, _ := url.Parse(r.ts.URL)
		replay.jar.SetCookies(base, []*http.Cookie{&cookie})
		resp, _ := replay.do(replay.stay, http.MethodGet, "/", nil, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard/login?ended=1" {
			t.Errorf("the signed-out cookie on %s: %d Location %q, want 303 to the login page", r.ts.URL, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// TestDashboardSessionCapPerApp: one app's key signing in past the cap
// ends that app's oldest sessions, that key's own first; another app's
// session survives, and so does another key's of the same app while the
// flooding key is over its own cap. (The binary is tested with 10,001
// sign-ins at the default caps in cmd/spotoken.)
func TestDashboardSessionCapPerApp(t *testing.T) {
	for _, tc := range []struct {
		name      string
		limits    spotoken.WebSessionLimits
		kept      int  // the flooding key's last sessions that are kept
		colleague bool // whether the other key's session survives
	}{
		{"per app", spotoken.WebSessionLimits{PerScope: 5, PerSubject: -1}, 5, false},
		{"per key", spotoken.WebSessionLimits{PerScope: 5, PerSubject: 3}, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.DashboardSessions = tc.limits }})
			other := newDashUser(h)
			other.login(h.otherKey)
			colleague := newDashUser(h)
			colleague.login(h.newKey(appID))
			var flood []*dashUser
			for range 30 {
				h.emu.Advance(time.Second)
				u := newDashUser(h)
				u.login(h.apiKey)
				flood = append(flood, u)
			}
			signedIn := func(u *dashUser) bool {
				resp, _ := u.do(u.stay, http.MethodGet, "/", nil, nil)
				return resp.StatusCode == http.StatusOK
			}
			for i, u := range flood {
				if got, want := signedIn(u), i >= len(flood)-tc.kept; got != want {
					t.Errorf("sign-in %d of the flooding key: signed in %v, want %v", i, got, want)
				}
			}
			if !signedIn(other) {
				t.Error("the other app's session did not survive")
			}
			if got := signedIn(colleague); got != tc.colleague {
				t.Errorf("the same app's other key's session: signed in %v, want %v", got, tc.colleague)
			}
			if !strings.Contains(h.logs.String(), `"scope":"dashboard:demo"`) || strings.Contains(h.logs.String(), `"scope":"dashboard:other"`) {
				t.Error("the log does not say which scope lost sessions, or names the wrong one")
			}
		})
	}
}

// TestDashboardCookieOverHTTPS: served over https the cookie is
// __Host-spotoken_dashboard, Secure; the name without the prefix is not
// read.
func TestDashboardCookieOverHTTPS(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	srv, err := server.New(server.Config{Store: h.store, Tokens: h.engine, PublicURL: "https://spotoken.example", Now: h.emu.Now})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "https://spotoken.example/dashboard/login", strings.NewReader(url.Values{"api_key": {h.apiKey}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, req)
	cookies := w.Result().Cookies()
	if w.Code != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("login: %d, cookies %v", w.Code, cookies)
	}
	c := cookies[0]
	if c.Name != "__Host-spotoken_dashboard" || !c.Secure || !c.HttpOnly || c.Path != "/" || c.Domain != "" || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie %s: want __Host-spotoken_dashboard, Secure, HttpOnly, Path=/, no Domain, SameSite=Strict", c)
	}
	get := func(name string) int {
		req := httptest.NewRequest(http.MethodGet, "https://spotoken.example/", nil)
		req.AddCookie(&http.Cookie{Name: name, Value: c.Value})
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		return w.Code
	}
	if got := get("__Host-spotoken_dashboard"); got != http.StatusOK {
		t.Errorf("GET / with the cookie: %d, want 200", got)
	}
	if got := get("spotoken_dashboard"); got != http.StatusSeeOther {
		t.Errorf("GET / with the value under the unprefixed name: %d, want 303 to the login page", got)
	}
}

// TestDashboardSessionSecretsAtRest: the session cookie, its CSRF token and
// a connect link waiting in the session to be shown are nowhere in the
// database files or the log.
func TestDashboardSessionSecretsAtRest(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	u := newDashUser(h)
	u.login(h.apiKey)
	token := u.csrf()
	resp, _ := u.do(u.stay, http.MethodPost, "/dashboard/connect-link", url.Values{"csrf_token": {token}, "connection_id": {"u3"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("connect link: %d", resp.StatusCode)
	}
	var db []byte // the files while the link waits in the session
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(h.dbPath + suffix)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		db = append(db, b...)
	}
	m := linkRE.FindStringSubmatch(u.overview(""))
	if m == nil {
		t.Fatal("no connect link on the page")
	}
	link := html.UnescapeString(m[1])
	secrets := map[string]string{
		"session cookie": u.cookie().Value, "CSRF token": token, "API key": h.apiKey,
		"connect link": strings.TrimPrefix(link, h.ts.URL+"/connect/"),
	}
	if !bytes.Contains(db, []byte("dashboard:"+appID)) {
		t.Fatal("the database files lack the session's scope: the search would prove nothing")
	}
	for what, s := range secrets {
		if len(s) < 20 {
			t.Fatalf("the %s %q is too short to search for", what, s)
		}
		if bytes.Contains(db, []byte(s)) {
			t.Errorf("the database files hold the %s", what)
		}
		if strings.Contains(h.logs.String(), s) {
			t.Errorf("the log holds the %s", what)
		}
	}
}

// TestDashboardRevokedKeyEndsAllItsSessions: the first request that finds
// a key revoked ends every session of that key, not only its own.
func TestDashboardRevokedKeyEndsAllItsSessions(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	var users []*dashUser
	var cookies []string
	for range 3 {
		u := newDashUser(h)
		u.login(h.apiKey)
		users = append(users, u)
		cookies = append(cookies, u.cookie().Value)
	}
	h.revokeKey(h.apiKey)
	ctx := context.Background()
	if resp, _ := users[0].do(users[0].stay, http.MethodGet, "/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("GET / with a revoked key: %d", resp.StatusCode)
	}
	for i, c := range cookies {
		if _, err := h.store.WebSession(ctx, websession.IDHash(c)); err == nil {
			t.Errorf("session %d of the revoked key is still stored", i)
		}
	}
}
