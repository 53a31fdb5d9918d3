package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
	"github.com/spotoken/spotoken/sqlite"
)

// The test app: a public client of the emulator, registered with a
// loopback redirect URI without a port, so any httptest port matches.
const (
	appID      = "demo"
	clientID   = "pub-app"
	otherAppID = "other"
)

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

// harness is a server backed by SQLite, a refresh engine and the emulator,
// all on the emulator's virtual clock.
type harness struct {
	t        *testing.T
	emu      *emulator.Emulator
	emuSrv   *httptest.Server
	store    *sqlite.DB
	dbPath   string
	ring     *seal.KeyRing // the store's keys, to open it again
	engine   *refresh.Engine
	srv      *server.Server
	ts       *httptest.Server
	logs     *syncBuffer
	apiKey   string // the demo app's key
	otherKey string // a key of another app
	// admin is the admin service of the admin API; adminKey an admin
	// credential; appTokens the apps' client-credentials tokens.
	admin     *admin.Service
	adminKey  string
	appTokens *refresh.AppTokens
	// browser follows redirects and keeps cookies, like a user's browser.
	browser *http.Client
}

type harnessOptions struct {
	// frozenBroker runs the store, engine and server on the emulator's
	// base clock, which Advance does not move: tokens then expire at
	// Spotify while the broker still thinks them valid.
	frozenBroker bool
	emulator     func(*emulator.Config)
	server       func(*server.Config)
	engine       func(*refresh.Config)
	app          func(*spotoken.App)
}

func newHarness(t *testing.T, opts harnessOptions) *harness {
	t.Helper()
	h := &harness{t: t, logs: &syncBuffer{}}
	ecfg := emulator.Config{
		Clients:     []emulator.Client{{ID: clientID, RedirectURIs: []string{"http://127.0.0.1/callback"}}},
		AutoApprove: "alice",
		Now:         func() time.Time { return time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC) },
	}
	if opts.emulator != nil {
		opts.emulator(&ecfg)
	}
	emu, err := emulator.New(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	h.emu = emu
	now := emu.Now
	if opts.frozenBroker {
		now = ecfg.Now
	}
	h.emuSrv = httptest.NewServer(emu)
	t.Cleanup(h.emuSrv.Close)

	ring, err := seal.GenerateKeyFile(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	h.ring = ring
	h.dbPath = filepath.Join(t.TempDir(), "spotoken.db")
	h.store, err = sqlite.Open(context.Background(), sqlite.Config{Path: h.dbPath, Keys: ring, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.store.Close() })

	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rcfg := refresh.Config{
		Store: h.store, Now: now, Logger: log,
		Refresher: &refresh.SpotifyRefresher{TokenURL: h.emuSrv.URL + "/api/token", Now: now},
	}
	if opts.engine != nil {
		opts.engine(&rcfg)
	}
	h.engine, err = refresh.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}

	// Start the listener first: the public URL is part of the app's
	// registered redirect URI.
	var handler http.Handler
	h.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(h.ts.Close)
	spotify := &refresh.SpotifyRefresher{TokenURL: h.emuSrv.URL + "/api/token", Now: now}
	h.appTokens, err = refresh.NewAppTokens(refresh.AppTokensConfig{Store: h.store, Spotify: spotify, Now: now, Logger: log, WaitPoll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h.admin, err = admin.New(admin.Config{Store: h.store, Now: now, Logger: log, CheckClientSecret: spotify.CheckClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	scfg := server.Config{
		Store: h.store, Tokens: h.engine, PublicURL: h.ts.URL, AccountsURL: h.emuSrv.URL, APIURL: h.emuSrv.URL,
		Now: now, Logger: log, EngineStats: h.engine.Stats, AppTokens: h.appTokens, Admin: h.admin,
	}
	if opts.server != nil {
		opts.server(&scfg)
	}
	h.srv, err = server.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	handler = h.srv

	ctx := context.Background()
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
	adminKey, _, err := h.admin.CreateAdminKey(ctx, admin.Actor{Kind: admin.ActorCLI, Name: "test"}, "tester")
	if err != nil {
		t.Fatal(err)
	}
	h.adminKey = adminKey.Reveal()

	jar, _ := cookiejar.New(nil)
	h.browser = &http.Client{Jar: jar}
	return h
}

// newKey stores a new API key for app and returns it.
func (h *harness) newKey(app string) string {
	h.t.Helper()
	key, rec := spotoken.NewAPIKey(app, "test", h.emu.Now())
	if err := h.store.CreateAPIKey(context.Background(), rec); err != nil {
		h.t.Fatal(err)
	}
	return key.Reveal()
}

// call makes an API request with key and decodes a JSON answer into out
// (when not nil), returning the response with its body read.
func (h *harness) call(method, path, key string, body any, out any) (*http.Response, []byte) {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, _ := json.Marshal(b)
		rd = bytes.NewReader(buf)
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

// session mints a connect link for connectionID.
func (h *harness) session(connectionID string, scopes []string, returnTo string) server.ConnectSession {
	h.t.Helper()
	body := map[string]any{"connection_id": connectionID}
	if scopes != nil {
		body["scopes"] = scopes
	}
	if returnTo != "" {
		body["return_to"] = returnTo
	}
	var sess server.ConnectSession
	resp, raw := h.call("POST", "/v1/connect-sessions", h.apiKey, body, &sess)
	if resp.StatusCode != http.StatusCreated {
		h.t.Fatalf("POST /v1/connect-sessions: %d %s", resp.StatusCode, raw)
	}
	return sess
}

// connect runs the whole connect flow for connectionID in the browser (the
// emulator auto-approves consent) and checks it succeeded.
func (h *harness) connect(connectionID string, scopes ...string) {
	h.t.Helper()
	sess := h.session(connectionID, scopes, "")
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

// token vends a token for connectionID.
func (h *harness) token(connectionID string) (server.TokenResponse, *http.Response, []byte) {
	h.t.Helper()
	var tok server.TokenResponse
	resp, raw := h.call("POST", "/v1/connections/"+connectionID+"/token", h.apiKey, nil, &tok)
	return tok, resp, raw
}

// refreshes counts refresh_token requests at the emulator.
func (h *harness) refreshes() int64 { return h.emu.Stats().TokenRequests["refresh_token"] }
