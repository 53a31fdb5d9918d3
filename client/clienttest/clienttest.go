// Package clienttest runs a real spotoken broker in-process, for tests of
// code that uses package client.
//
// NewBroker starts the Spotify emulator and a spotoken server backed by
// SQLite in a temporary directory and a refresh engine, all on the
// emulator's virtual clock, registers one app and one API key for it, and
// stops everything when the test ends. Connect runs the whole connect flow,
// as a user's browser would, with the emulator approving consent as user
// "alice". Nothing leaves the machine: the servers listen on 127.0.0.1.
//
//	b := clienttest.NewBroker(t)
//	b.Connect(t, "user-42")
//	c, err := client.New(b.URL, b.APIKey, client.WithClock(b.Now))
//	...
//	spotify.New(c.HTTPClient("user-42"), spotify.WithBaseURL(b.EmulatorURL+"/v1/"))
//
// The package is for tests only: it imports the server, the store and the
// emulator, which a program using package client does not need.
package clienttest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
	"github.com/spotoken/spotoken/sqlite"
)

// The app that NewBroker registers, and the emulator user that approves
// every connect flow.
const (
	AppID    = "demo"
	ClientID = "demo-client"
	User     = "alice"
)

// DefaultScopes are the registered app's default scopes, which Connect asks
// for when given none: enough for /v1/me and the player endpoints.
var DefaultScopes = []string{
	"user-modify-playback-state", "user-read-currently-playing", "user-read-email",
	"user-read-playback-state", "user-read-private",
}

// Broker is an in-process spotoken server in front of the emulator.
type Broker struct {
	// URL is the broker's base URL, for client.New.
	URL string
	// APIKey is an API key of app AppID.
	APIKey string
	// EmulatorURL is the emulator's base URL: Spotify's accounts service
	// and Web API (EmulatorURL + "/v1/...").
	EmulatorURL string

	// Emulator is the emulated Spotify: its faults, counters and clock.
	Emulator *emulator.Emulator
	// Engine is the broker's refresh engine, for local mode (package
	// client/local) against the same store.
	Engine *refresh.Engine
	// Server is the broker's HTTP handler.
	Server *server.Server

	// browser follows redirects and keeps cookies, like a user's browser.
	browser *http.Client
	now     func() time.Time // the broker's clock
}

// Option changes how NewBroker builds a broker.
type Option func(*config)

type config struct {
	emulator     func(*emulator.Config)
	server       func(*server.Config)
	frozen       bool
	clientSecret string
}

// ClientSecret makes the app a confidential client of the emulator with
// secret, which can have app tokens (client credentials).
func ClientSecret(secret string) Option {
	return func(c *config) { c.clientSecret = secret }
}

// FrozenBroker runs the broker (store, engine, server) on the emulator's
// base clock, which Advance does not move: Advance then expires tokens at
// Spotify only, while the broker still thinks them valid, as when Spotify
// ends a token early or the clocks disagree.
func FrozenBroker() Option {
	return func(c *config) { c.frozen = true }
}

// EmulatorConfig lets fn change the emulator's configuration (rotation
// mode, token lifetime, rate limit, base clock) before it starts.
func EmulatorConfig(fn func(*emulator.Config)) Option {
	return func(c *config) { c.emulator = fn }
}

// ServerConfig lets fn change the server's configuration before it starts.
func ServerConfig(fn func(*server.Config)) Option {
	return func(c *config) { c.server = fn }
}

// NewBroker starts a broker and its emulator for the test t; they stop when
// t ends. The emulator's clock starts at the real time; Advance moves it
// (and so the broker's) forward.
func NewBroker(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	ecfg := emulator.Config{
		// A loopback redirect URI registered without a port matches any
		// port (RFC 8252), so the httptest server's port needs no registration.
		Clients:     []emulator.Client{{ID: ClientID, Secret: cfg.clientSecret, RedirectURIs: []string{"http://127.0.0.1/callback"}}},
		AutoApprove: User,
	}
	if cfg.emulator != nil {
		cfg.emulator(&ecfg)
	}
	emu, err := emulator.New(ecfg)
	if err != nil {
		t.Fatalf("clienttest: emulator: %v", err)
	}
	emuSrv := httptest.NewServer(emu)
	t.Cleanup(emuSrv.Close)
	now := emu.Now
	if cfg.frozen {
		now = ecfg.Now
		if now == nil {
			now = time.Now
		}
	}

	dir := t.TempDir()
	ring, err := seal.GenerateKeyFile(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatalf("clienttest: key file: %v", err)
	}
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(dir, "spotoken.db"), Keys: ring, Now: now})
	if err != nil {
		t.Fatalf("clienttest: store: %v", err)
	}
	t.Cleanup(func() { store.Close() })

	spotify := &refresh.SpotifyRefresher{TokenURL: emuSrv.URL + "/api/token", Now: now}
	engine, err := refresh.New(refresh.Config{Store: store, Now: now, Refresher: spotify})
	if err != nil {
		t.Fatalf("clienttest: engine: %v", err)
	}
	appTokens, err := refresh.NewAppTokens(refresh.AppTokensConfig{Store: store, Spotify: spotify, Now: now})
	if err != nil {
		t.Fatalf("clienttest: app tokens: %v", err)
	}

	// Listen first: the public URL is part of the app's redirect URI.
	var handler http.Handler
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(ts.Close)
	scfg := server.Config{
		Store: store, Tokens: engine, PublicURL: ts.URL, AccountsURL: emuSrv.URL, APIURL: emuSrv.URL,
		Now: now, EngineStats: engine.Stats, AppTokens: appTokens,
	}
	if cfg.server != nil {
		cfg.server(&scfg)
	}
	srv, err := server.New(scfg)
	if err != nil {
		t.Fatalf("clienttest: server: %v", err)
	}
	handler = srv

	app := &spotoken.App{ID: AppID, ClientID: ClientID, ClientSecret: spotoken.Secret(cfg.clientSecret), RedirectURIs: []string{srv.CallbackURL()},
		DefaultScopes: spotoken.Scopes(DefaultScopes).Normalize()}
	if err := store.CreateApp(ctx, app); err != nil {
		t.Fatalf("clienttest: app: %v", err)
	}
	key, rec := spotoken.NewAPIKey(AppID, "clienttest", now())
	if err := store.CreateAPIKey(ctx, rec); err != nil {
		t.Fatalf("clienttest: API key: %v", err)
	}
	jar, _ := cookiejar.New(nil)
	return &Broker{
		URL: ts.URL, APIKey: key.Reveal(), EmulatorURL: emuSrv.URL,
		Emulator: emu, Engine: engine, Server: srv,
		browser: &http.Client{Jar: jar}, now: now,
	}
}

// Now is the broker's clock, the emulator's unless FrozenBroker: give it to
// client.WithClock so that the client sees tokens expire when Advance moves
// the clock.
func (b *Broker) Now() time.Time { return b.now() }

// Advance moves the emulator's clock forward by d, and so the broker's
// unless FrozenBroker.
func (b *Broker) Advance(d time.Duration) { b.Emulator.Advance(d) }

// Refreshes is the number of refresh_token requests the emulator has seen.
func (b *Broker) Refreshes() int64 { return b.Emulator.Stats().TokenRequests["refresh_token"] }

// RevokeGrant withdraws User's grant to the app at the emulator, as a user
// does on Spotify's account page: the next refresh answers invalid_grant,
// while access tokens already issued keep working until they expire.
func (b *Broker) RevokeGrant(t testing.TB) {
	t.Helper()
	if err := b.Emulator.RevokeGrant(User, ClientID); err != nil {
		t.Fatalf("clienttest: revoke: %v", err)
	}
}

// Connect connects User under connectionID through the whole connect flow:
// a connect session made with the API key, then the browser's way through
// /connect, the emulator's /authorize (consent approved at once) and the
// broker's /callback. scopes default to DefaultScopes. It fails t unless
// the flow ends connected.
func (b *Broker) Connect(t testing.TB, connectionID string, scopes ...string) {
	t.Helper()
	body := map[string]any{"connection_id": connectionID}
	if len(scopes) > 0 {
		body["scopes"] = scopes
	}
	raw, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, b.URL+"/v1/connect-sessions", strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("clienttest: connect %s: %v", connectionID, err)
	}
	req.Header.Set("Authorization", "Bearer "+b.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("clienttest: connect %s: %v", connectionID, err)
	}
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	var sess server.ConnectSession
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(out, &sess) != nil || sess.URL == "" {
		t.Fatalf("clienttest: connect %s: POST /v1/connect-sessions: %d %s", connectionID, resp.StatusCode, out)
	}

	resp, err = b.browser.Get(sess.URL)
	if err != nil {
		t.Fatalf("clienttest: connect %s: %v", connectionID, err)
	}
	page, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `data-outcome="connected"`) {
		t.Fatalf("clienttest: connect %s: the flow ended with %d:\n%s", connectionID, resp.StatusCode, page)
	}
}
