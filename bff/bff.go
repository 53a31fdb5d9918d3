// Package bff is spotoken's backend-for-frontend for browser apps: a
// single-page app signs its users in with Spotify through spotoken and
// calls the Web API through it, and the browser holds only an HttpOnly
// session cookie, never a token (the pattern that "OAuth 2.0 for
// Browser-Based Applications", RFC 10017, ranks first). An app may opt in
// to the token-mediating mode, which also hands the page short-lived access
// tokens (never the refresh token) for what must call Spotify directly,
// such as the Web Playback SDK.
//
// The routes, for an app whose BrowserApp settings list the SPA's origins:
//
//	GET  /bff/client.js                  the JavaScript client (package bffclient)
//	GET  /bff/{app}/login?return_to=URL  sign in: Spotify's consent page, then back to URL
//	GET  /bff/{app}/session              who is signed in; 401 when nobody
//	POST /bff/{app}/logout               sign out (?erase_grant=true: everywhere)
//	POST /bff/{app}/token                the access token (token-mediating mode only)
//	ANY  /bff/{app}/api/{path}           the Web API at /{path}, as /v1/proxy
//
// Every route but login and client.js requires the X-Spotoken-CSRF: 1
// header (a page of another origin cannot send it without a CORS preflight,
// which is answered only for the app's origins) and, when the browser names
// one, an Origin of the app's; anything else is refused before Spotify is
// called. CORS answers name the exact origin with credentials, never "*".
//
// A sign-in is the server's connect flow (PKCE, a state bound to the
// browser, show_dialog): the server hands its end to the Handler in-process
// (server.LoginHandler), which names the connection after the Spotify user
// ("bff:" and the user's id: one connection per user of the app, shared by
// the user's browsers) and only then starts the session, with a new random
// id, so a cookie from before the sign-in is never the signed-in one. The
// session is kept in the store (internal/websession), ends after an idle
// timeout, at an absolute one, and with the grant.
//
// See docs/browser-apps.md for the threat model and the choices.
package bff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/bff/bffclient"
	"github.com/spotoken/spotoken/internal/websession"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/server"
)

// LoginKind is the kind of the BFF's browser sign-ins: wire the Handler
// with server.HandleLogins(LoginKind, h).
const LoginKind = "bff"

// Defaults of Config.
const (
	DefaultIdleTimeout = 7 * 24 * time.Hour
	DefaultMaxAge      = 30 * 24 * time.Hour
	DefaultPerApp      = 1_000_000
	DefaultPerUser     = 50
	DefaultTokenEvery  = 2 * time.Minute
	DefaultTokenBurst  = 10
	DefaultLoginEvery  = 50 * time.Millisecond
	DefaultLoginBurst  = 200
)

// cookieName is the session cookie's name without prefix: over https the
// browser sees __Host-Http-spotoken_bff_<app> (websession adds __Host-).
const cookieName = "Http-spotoken_bff_"

// Store is what the BFF needs of a store.
type Store interface {
	BrowserApp(ctx context.Context, appID string) (*spotoken.BrowserApp, error)
	Connection(ctx context.Context, key spotoken.ConnectionKey) (*spotoken.Connection, error)
	DeleteWebSessions(ctx context.Context, scope, subject string) (int, error)
	websession.Store
}

var _ Store = spotoken.Store(nil)

// Server is what the BFF needs of spotoken's server: a *server.Server.
type Server interface {
	BeginLogin(w http.ResponseWriter, r *http.Request, l server.Login) error
	Proxy(w http.ResponseWriter, r *http.Request, key spotoken.ConnectionKey, path string, fail func(http.ResponseWriter, *http.Request, error))
	WriteError(w http.ResponseWriter, r *http.Request, err error)
	DeleteConnection(r *http.Request, key spotoken.ConnectionKey, reason string) error
}

var _ Server = (*server.Server)(nil)

// Tokens hands out access tokens: a *refresh.Engine.
type Tokens interface {
	Token(ctx context.Context, key spotoken.ConnectionKey, minTTL time.Duration) (refresh.AccessToken, error)
}

// Config configures a Handler. Store, Server, Tokens and PublicURL are
// required.
type Config struct {
	Store  Store
	Server Server
	Tokens Tokens
	// PublicURL is the server's public base URL: https gives the session
	// cookie the __Host- prefix and Secure; http is the development mode,
	// meant for loopback addresses only (see internal/websession).
	PublicURL string
	// IdleTimeout ends a session unused that long; MaxAge is a session's
	// absolute lifetime, which the grant's expiry shortens. Defaults 7 and
	// 30 days.
	IdleTimeout, MaxAge time.Duration
	// Sessions caps the sessions of each app (PerScope) and of each of its
	// Spotify users (PerSubject); zero fields take DefaultPerApp and
	// DefaultPerUser, negative ones mean no cap.
	Sessions spotoken.WebSessionLimits
	// TokenEvery and TokenBurst limit each session's POST /token: a burst,
	// then one per TokenEvery. Defaults 10 and 2 minutes.
	TokenEvery time.Duration
	TokenBurst int
	// LoginEvery and LoginBurst limit each app's sign-ins started on this
	// replica (each keeps a state for ten minutes, and /login needs no
	// credential): a burst, then one per LoginEvery. Defaults 200 and 50ms
	// (20 a second).
	LoginEvery time.Duration
	LoginBurst int
	// Now is the clock; default time.Now. Give the server and engine the same.
	Now func() time.Time
	// Logger gets sign-ins, sign-outs, token hand-outs and refusals, never
	// a cookie or a token; default discard.
	Logger *slog.Logger
}

// Handler serves the BFF's routes (Mount, given to server.MountPublic) and
// completes its sign-ins (server.LoginHandler). Create it with New; it is safe for concurrent use.
type Handler struct {
	cfg    Config
	log    *slog.Logger
	public string   // the public URL, without trailing slash
	self   string   // its origin
	tokens *limiter // by session
	logins *limiter // by app

	mu       sync.Mutex
	sessions map[string]*websession.Manager // by app: each app's SPA has its own cookie
}

var _ server.LoginHandler = (*Handler)(nil)

// New returns a Handler for cfg.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil || cfg.Server == nil || cfg.Tokens == nil {
		return nil, errors.New("bff: Config needs a Store, a Server and Tokens")
	}
	u, err := url.Parse(strings.TrimRight(cfg.PublicURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("bff: the public URL must be an absolute http(s) URL, got %q", cfg.PublicURL)
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Sessions.PerScope == 0 {
		cfg.Sessions.PerScope = DefaultPerApp
	}
	if cfg.Sessions.PerSubject == 0 {
		cfg.Sessions.PerSubject = DefaultPerUser
	}
	if cfg.TokenEvery <= 0 {
		cfg.TokenEvery = DefaultTokenEvery
	}
	if cfg.TokenBurst <= 0 {
		cfg.TokenBurst = DefaultTokenBurst
	}
	if cfg.LoginEvery <= 0 {
		cfg.LoginEvery = DefaultLoginEvery
	}
	if cfg.LoginBurst <= 0 {
		cfg.LoginBurst = DefaultLoginBurst
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, public: u.String(), self: websession.Origin(u),
		tokens: newLimiter(cfg.TokenEvery, cfg.TokenBurst), logins: newLimiter(cfg.LoginEvery, cfg.LoginBurst), sessions: make(map[string]*websession.Manager)}
	// A manager now, so that a bad configuration fails (and a cookie over
	// plain http on a host that is not loopback is logged) at start.
	if _, err := h.manager("<app>"); err != nil {
		return nil, err
	}
	delete(h.sessions, "<app>")
	return h, nil
}

// Mount adds the BFF's routes to m.
func (h *Handler) Mount(m *http.ServeMux) {
	m.HandleFunc("GET "+bffclient.ScriptPath, h.handleScript)
	m.HandleFunc("GET /bff/{app}/login", h.handleLogin)
	m.HandleFunc("GET /bff/{app}/session", h.endpoint(h.handleSession))
	m.HandleFunc("POST /bff/{app}/logout", h.endpoint(h.handleLogout))
	m.HandleFunc("POST /bff/{app}/token", h.endpoint(h.handleToken))
	m.HandleFunc("/bff/{app}/api/{path...}", h.endpoint(h.handleAPI))
	for _, p := range []string{"/bff/{app}/session", "/bff/{app}/logout", "/bff/{app}/token"} {
		m.HandleFunc("OPTIONS "+p, h.endpoint(nil))
	}
}

// manager returns the session manager of app's cookie.
func (h *Handler) manager(app string) (*websession.Manager, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m := h.sessions[app]; m != nil {
		return m, nil
	}
	idle := h.cfg.IdleTimeout
	m, err := websession.New(websession.Config{
		Store: h.cfg.Store, Cookie: cookieName + app, PublicURL: h.public, Kinds: []string{LoginKind},
		SameSite: http.SameSiteStrictMode, IdleTimeout: idle, MaxAge: h.cfg.MaxAge, Limits: h.cfg.Sessions,
		Now: h.cfg.Now, Logger: h.log,
	})
	if err != nil {
		return nil, fmt.Errorf("bff: %w", err)
	}
	h.sessions[app] = m
	return m, nil
}

func (h *Handler) handleScript(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Type", "text/javascript; charset=utf-8")
	hd.Set("Cache-Control", "public, max-age=300")
	hd.Set("X-Content-Type-Options", "nosniff")
	// An SPA of another origin loads it with <script src>.
	hd.Set("Cross-Origin-Resource-Policy", "cross-origin")
	w.Write(bffclient.Script)
}

// LoginConnection names the connection of a Spotify user of app: "bff:"
// and the user's id, or a hash of it when the id has characters a
// connection id cannot (Spotify's ids are letters and digits; old user
// names may have more).
func (h *Handler) LoginConnection(appID, userID string) string {
	return connectionFor(userID)
}

// sessionData is what a BFF session keeps, sealed in the store.
type sessionData struct {
	Connection string `json:"connection"`
}
