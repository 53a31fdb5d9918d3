package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/audit"
	"github.com/spotoken/spotoken/console"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
	"github.com/spotoken/spotoken/sqlite"
)

// The test apps: public clients of the emulator, registered with a loopback
// redirect URI without a port, so any httptest port matches.
const (
	appID      = "demo"
	otherAppID = "other"
	clientID   = "pub-app"
	cookie     = "spotoken_dashboard"
)

var ctx = context.Background()

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is the whole broker as serve wires it (SQLite, the refresh
// engine with its tally, the server, the admin service and the console
// mounted on the admin side), with the emulator, all on the emulator's
// virtual clock.
type harness struct {
	t        *testing.T
	emu      *emulator.Emulator
	emuSrv   *httptest.Server
	store    *sqlite.DB
	dbPath   string
	ring     *seal.KeyRing
	engine   *refresh.Engine
	tally    *refresh.Tally
	trail    *audit.Trail // with harnessOptions.audit
	srv      *server.Server
	admin    *admin.Service
	console  *console.Handler
	ts       *httptest.Server
	logs     *syncBuffer
	apiKey   string // the demo app's key
	otherKey string // the other app's
	adminKey string // an operator's admin credential
	browser  *http.Client
}

type harnessOptions struct {
	server  func(*server.Config)
	console func(*console.Config)
	app     func(*spotoken.App)
	// base, when set, is the URL the console is told it is served at
	// (default the test server's).
	base string
	// audit keeps the audit trail (h.trail), for the server and the
	// console.
	audit bool
}

func newHarness(t *testing.T, opts harnessOptions) *harness {
	t.Helper()
	h := &harness{t: t, logs: &syncBuffer{}}
	ecfg := emulator.Config{
		Clients:     []emulator.Client{{ID: clientID, RedirectURIs: []string{"http://127.0.0.1/callback"}}},
		AutoApprove: "alice",
		Now:         func() time.Time { return time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC) },
	}
	emu, err := emulator.New(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	h.emu = emu
	now := emu.Now
	h.emuSrv = httptest.NewServer(emu)
	t.Cleanup(h.emuSrv.Close)

	if h.ring, err = seal.GenerateKeyFile(filepath.Join(t.TempDir(), "keys")); err != nil {
		t.Fatal(err)
	}
	h.dbPath = filepath.Join(t.TempDir(), "spotoken.db")
	if h.store, err = sqlite.Open(ctx, sqlite.Config{Path: h.dbPath, Keys: h.ring, Now: now}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.store.Close() })
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	spotify := &refresh.SpotifyRefresher{TokenURL: h.emuSrv.URL + "/api/token", Now: now}
	h.tally = &refresh.Tally{Store: h.store, Now: now, Logger: log}
	if h.engine, err = refresh.New(refresh.Config{Store: h.store, Now: now, Logger: log, Refresher: h.tally.Refresher(spotify),
		WaitPoll: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	var handler http.Handler
	h.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(h.ts.Close)
	if h.admin, err = admin.New(admin.Config{Store: h.store, Now: now, Logger: log, CheckClientSecret: spotify.CheckClientSecret}); err != nil {
		t.Fatal(err)
	}
	scfg := server.Config{Store: h.store, Tokens: h.engine, PublicURL: h.ts.URL, AccountsURL: h.emuSrv.URL, APIURL: h.emuSrv.URL,
		Now: now, Logger: log, EngineStats: h.engine.Stats, Admin: h.admin,
		AuthCacheTTL: -1} // a key revoked in the console stops working at once (the clock stands still)
	if opts.audit {
		if h.trail, err = audit.New(audit.Config{Store: h.store, Now: now, Logger: log}); err != nil {
			t.Fatal(err)
		}
		scfg.Audit = h.trail
	}
	if opts.server != nil {
		opts.server(&scfg)
	}
	if h.srv, err = server.New(scfg); err != nil {
		t.Fatal(err)
	}
	base := opts.base
	if base == "" {
		base = h.ts.URL
	}
	// The health figures are counted on every page: the tests change the
	// store behind the console's back on a clock that does not move.
	// TestHealthReused checks the reuse.
	ccfg := console.Config{Store: h.store, Admin: h.admin, Actions: h.srv, BaseURL: base, Now: now, Logger: log, HealthTTL: -1}
	if h.trail != nil {
		ccfg.Audit, ccfg.AuthLimit = h.trail, h.trail
	}
	if opts.console != nil {
		opts.console(&ccfg)
	}
	if h.console, err = console.New(ccfg); err != nil {
		t.Fatal(err)
	}
	h.srv.MountAdmin(h.console.Mount)
	handler = h.srv.AdminHandler()

	app := &spotoken.App{ID: appID, ClientID: clientID, RedirectURIs: []string{h.srv.CallbackURL()},
		DefaultScopes: spotoken.Scopes{"user-read-email"}, ReturnToOrigins: []string{"https://app.example"}}
	if opts.app != nil {
		opts.app(app)
	}
	for _, a := range []*spotoken.App{app, {ID: otherAppID, ClientID: clientID, RedirectURIs: []string{h.srv.CallbackURL()}}} {
		if err := h.store.CreateApp(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	h.apiKey = h.newKey(appID)
	h.otherKey = h.newKey(otherAppID)
	key, _, err := h.admin.CreateAdminKey(ctx, admin.Actor{Kind: admin.ActorCLI, Name: "test"}, "ops-oncall")
	if err != nil {
		t.Fatal(err)
	}
	h.adminKey = key.Reveal()
	jar, _ := cookiejar.New(nil)
	h.browser = &http.Client{Jar: jar}
	return h
}

// newKey stores a new API key for app and returns it.
func (h *harness) newKey(app string) string {
	h.t.Helper()
	key, rec := spotoken.NewAPIKey(app, "team", h.emu.Now())
	if err := h.store.CreateAPIKey(ctx, rec); err != nil {
		h.t.Fatal(err)
	}
	return key.Reveal()
}

// call makes an API request with key and decodes a JSON answer into out.
func (h *harness) call(method, path, key string, body any, out any) (*http.Response, []byte) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.ts.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			h.t.Fatalf("%s %s: decoding %s: %v", method, path, raw, err)
		}
	}
	return resp, raw
}

// connectAs runs the whole connect flow of app's connectionID, with key, in
// the browser (the emulator approves as alice).
func (h *harness) connectAs(key, connectionID string) {
	h.t.Helper()
	var sess server.ConnectSession
	if resp, raw := h.call("POST", "/v1/connect-sessions", key, map[string]any{"connection_id": connectionID}, &sess); resp.StatusCode != http.StatusCreated {
		h.t.Fatalf("POST /v1/connect-sessions: %d %s", resp.StatusCode, raw)
	}
	resp, err := h.browser.Get(sess.URL)
	if err != nil {
		h.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `data-outcome="connected"`) {
		h.t.Fatalf("connect %s: %d %s", connectionID, resp.StatusCode, body)
	}
}

// connect connects the demo app's connectionID.
func (h *harness) connect(connectionID string) { h.t.Helper(); h.connectAs(h.apiKey, connectionID) }

func (h *harness) exists(app, id string) bool {
	h.t.Helper()
	_, err := h.store.Connection(ctx, spotoken.ConnectionKey{AppID: app, ID: id})
	if err != nil && !errors.Is(err, spotoken.ErrNotFound) {
		h.t.Fatal(err)
	}
	return err == nil
}

// revokedEvents lists the connection.revoked events waiting for delivery.
func (h *harness) revokedEvents() []string {
	h.t.Helper()
	evs, err := h.store.PendingEvents(ctx, h.emu.Now().Add(time.Hour), 1000)
	if err != nil {
		h.t.Fatal(err)
	}
	var ids []string
	for _, e := range evs {
		if e.Type == spotoken.EventConnectionRevoked {
			ids = append(ids, e.AppID+"/"+e.ConnectionID)
		}
	}
	return ids
}

// revokeKey revokes an API key, as 'spotoken apikeys revoke' does.
func (h *harness) revokeKey(raw string) {
	h.t.Helper()
	key, err := h.store.APIKeyByHash(ctx, spotoken.HashAPIKey(spotoken.Secret(raw)))
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.store.RevokeAPIKey(ctx, key.AppID, key.ID, h.emu.Now()); err != nil {
		h.t.Fatal(err)
	}
}

// user is a person at the console: a client with its own cookie jar that
// sends forms the way a browser does (but no Origin header).
type user struct {
	t    *testing.T
	base string
	jar  http.CookieJar
	c    *http.Client // follows redirects
	stay *http.Client // does not
}

func newUser(h *harness) *user { return newUserAt(h.t, h.ts.URL) }

func newUserAt(t *testing.T, base string) *user {
	jar, _ := cookiejar.New(nil)
	return &user{t: t, base: base, jar: jar, c: &http.Client{Jar: jar},
		stay: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request (a form when body is url.Values or a string) and
// returns the response with its body read.
func (u *user) do(c *http.Client, method, path string, body any, header map[string]string) (*http.Response, string) {
	u.t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case url.Values:
		rd, ct = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	case string:
		rd, ct = strings.NewReader(b), "application/x-www-form-urlencoded"
	default:
		u.t.Fatalf("body %T", body)
	}
	req, err := http.NewRequest(method, u.base+path, rd)
	if err != nil {
		u.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, string(raw)
}

func (u *user) get(path string) (*http.Response, string) {
	u.t.Helper()
	return u.do(u.c, http.MethodGet, path, nil, nil)
}

func (u *user) post(path string, form url.Values) (*http.Response, string) {
	u.t.Helper()
	return u.do(u.c, http.MethodPost, path, form, nil)
}

// login signs in with a credential and returns the page it lands on
// (an operator's apps list, an app team's app page).
func (u *user) login(credential string) string {
	u.t.Helper()
	resp, body := u.post("/console/login", url.Values{"credential": {credential}})
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.Path, "/console/") || strings.Contains(resp.Request.URL.Path, "login") {
		u.t.Fatalf("login: %d at %s:\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	return body
}

// page fetches a console page and fails unless it is one, signed in.
func (u *user) page(path string) string {
	u.t.Helper()
	resp, body := u.get(path)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="sign-out"`) {
		u.t.Fatalf("GET %s: %d at %s:\n%s", path, resp.StatusCode, resp.Request.URL, body)
	}
	return body
}

var csrfRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// csrf returns the CSRF token of the session's pages.
func (u *user) csrf() string {
	u.t.Helper()
	m := csrfRE.FindStringSubmatch(u.page("/console/search?q=x"))
	if m == nil {
		u.t.Fatal("the page has no CSRF token")
	}
	return m[1]
}

func (u *user) cookie() *http.Cookie {
	base, _ := url.Parse(u.base)
	for _, c := range u.jar.Cookies(base) {
		if c.Name == cookie {
			return c
		}
	}
	return nil
}

func setCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

var linkRE = regexp.MustCompile(`id="connect-link" type="text" readonly value="([^"]+)"`)

func hasRow(body, id string) bool { return strings.Contains(body, `<tr data-connection="`+id+`"`) }

var rowRE = regexp.MustCompile(`<tr data-connection="([^"]+)"`)

// rows lists the connections a page shows, in order.
func rows(body string) []string {
	var out []string
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

func wantHeaders(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
		"X-Content-Type-Options":  "nosniff",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
}

// conn reads a connection, tokens and all.
func (h *harness) conn(app, id string) *spotoken.Connection {
	h.t.Helper()
	c, err := h.store.Connection(ctx, spotoken.ConnectionKey{AppID: app, ID: id})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}
