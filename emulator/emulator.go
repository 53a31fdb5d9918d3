// Package emulator is a stand-in for Spotify's accounts service
// (https://accounts.spotify.com) and a subset of its Web API
// (https://api.spotify.com/v1), served from one base URL, for tests, demos and
// offline development.
//
// It is strict where Spotify is strict: registered clients, exact redirect
// URIs (RFC 8252 loopback ports aside), known scopes, single-use expiring
// authorization codes, PKCE S256 (RFC 7636), form-encoded token requests,
// Spotify's error statuses, bodies and headers. Refresh-token rotation is
// configurable (never, always, grace, reuse-detection), so clients can be
// tested against every behaviour Spotify has shown. Faults (token endpoint
// errors, API 429s, latency, outages) are injected and counters read through
// /_emulator/ control endpoints or the Go methods of Emulator, and a virtual
// clock expires tokens without sleeping.
//
// Paths served:
//
//	GET  /authorize                               consent page (or auto-approval)
//	POST /authorize/consent                       the consent page's form
//	POST /api/token                               authorization_code, refresh_token, client_credentials
//	GET  /v1/me                                   current user
//	GET  /v1/me/player/currently-playing          user-read-currently-playing
//	PUT  /v1/me/player/play                       user-modify-playback-state, Premium, an active device
//	PUT  /v1/me/player/pause                      user-modify-playback-state, Premium, an active device
//	GET  /v1/me/playlists                         playlist-read-private
//	POST /v1/me/playlists                         playlist-modify-public or -private
//	POST /v1/users/{user_id}/playlists            the same; 403 Forbidden in development mode
//	GET  /v1/me/top/{artists|tracks}              user-top-read
//	     /_emulator/...                           control: stats, clock, users, faults
//
// The package imports nothing from the rest of spotoken: it plays the other
// side of the protocol, so a bug in spotoken's client cannot cancel itself out
// here. An Emulator is an http.Handler and is safe for concurrent use.
//
// It behaves as Spotify does today (SPOTIFY.md, late 2026): the Web API's
// 401 says "Missing/invalid/expired access token" whatever the reason
// (Config.Legacy401 brings back the messages of before 2026-07), player
// endpoints answer a missing scope with 401 "Permissions missing", a
// development-mode app's allowlist (Client.Allowlist) refuses other users
// with a plain-text 403, and Config.DevelopmentMode takes away what
// development mode lost in 2026-02/03. docs/emulator.md lists every
// behaviour with its source.
package emulator

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Emulator is the emulated Spotify. Create one with New and serve it with any
// http.Server or httptest.Server.
type Emulator struct {
	cfg     Config
	clients map[string]*Client
	secrets clientSecrets // see SetClientSecrets
	log     *slog.Logger
	mux     *http.ServeMux

	mu        sync.Mutex
	offset    time.Duration // virtual clock = cfg.Now() + offset
	lastSweep time.Time     // virtual time of the last sweepLocked
	auto      string        // auto-approve user
	users     map[string]*user
	pending   map[string]*pendingConsent
	codes     map[string]*authCode
	refresh   map[string]*refreshToken
	access    map[string]*accessToken
	families  map[string][]*family // by user id
	rate      map[string][]time.Time
	faults    faultState
	stats     Stats
}

// New returns an emulator for cfg, or an error naming the first invalid
// client.
func New(cfg Config) (*Emulator, error) {
	if len(cfg.Clients) == 0 {
		cfg.Clients = []Client{{ID: DefaultClientID, RedirectURIs: []string{DefaultRedirectURI}}}
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.TokenTTL < time.Second {
		return nil, fmt.Errorf("token TTL %v: must be at least 1s", cfg.TokenTTL)
	}
	if cfg.CodeTTL <= 0 {
		cfg.CodeTTL = DefaultCodeTTL
	}
	if cfg.RefreshLifetime == 0 {
		cfg.RefreshLifetime = DefaultRefreshLifetime
	}
	if cfg.ExpiredGrantDescription == "" {
		cfg.ExpiredGrantDescription = DefaultExpiredGrantDescription
	}
	if cfg.RateLimit < 0 {
		return nil, fmt.Errorf("rate limit %d: must not be negative", cfg.RateLimit)
	}
	switch cfg.Rotation.Mode {
	case "":
		cfg.Rotation.Mode = RotateNever
	case RotateNever, RotateAlways, RotateReuseDetection:
	case RotateGrace:
		if cfg.Rotation.Grace <= 0 {
			return nil, fmt.Errorf("rotation grace period %v: must be positive", cfg.Rotation.Grace)
		}
	default:
		return nil, fmt.Errorf("rotation mode %q: unknown", cfg.Rotation.Mode)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Emulator{
		cfg:      cfg,
		clients:  make(map[string]*Client),
		log:      cfg.Logger,
		auto:     cfg.AutoApprove,
		users:    make(map[string]*user),
		pending:  make(map[string]*pendingConsent),
		codes:    make(map[string]*authCode),
		refresh:  make(map[string]*refreshToken),
		access:   make(map[string]*accessToken),
		families: make(map[string][]*family),
		rate:     make(map[string][]time.Time),
		stats:    newStats(),
	}
	for i := range cfg.Clients {
		c := cfg.Clients[i]
		if err := c.validate(); err != nil {
			return nil, err
		}
		if _, dup := e.clients[c.ID]; dup {
			return nil, fmt.Errorf("client %q: registered twice", c.ID)
		}
		e.clients[c.ID] = &c
	}
	e.routes()
	return e, nil
}

func (e *Emulator) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /authorize", e.handleAuthorize)
	m.HandleFunc("POST /authorize/consent", e.handleConsent)
	m.HandleFunc("/api/token", e.handleToken)

	m.HandleFunc("GET /v1/me", e.api(nil, e.handleMe))
	m.HandleFunc("GET /v1/me/player/currently-playing", e.api(scopes("user-read-currently-playing"), e.handleCurrentlyPlaying))
	m.HandleFunc("PUT /v1/me/player/play", e.api(scopes("user-modify-playback-state"), e.handlePlay))
	m.HandleFunc("PUT /v1/me/player/pause", e.api(scopes("user-modify-playback-state"), e.handlePause))
	m.HandleFunc("GET /v1/me/playlists", e.api(scopes("playlist-read-private"), e.handleMyPlaylists))
	m.HandleFunc("POST /v1/me/playlists", e.api(nil, e.handleCreatePlaylist))
	m.HandleFunc("POST /v1/users/{user_id}/playlists", e.api(nil, e.handleCreateUserPlaylist))
	m.HandleFunc("GET /v1/me/top/{type}", e.api(scopes("user-top-read"), e.handleTop))
	m.HandleFunc("/v1/", e.api(nil, func(w http.ResponseWriter, r *http.Request, _ *accessToken) {
		writeAPIError(w, http.StatusNotFound, "Service not found")
	}))

	e.controlRoutes(m)
	e.mux = m
}

// ServeHTTP implements http.Handler.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	if !strings.HasPrefix(r.URL.Path, "/_emulator/") {
		if e.serveFault(sw, r) {
			e.logRequest(r, sw.status, start)
			return
		}
	}
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		defer func() { e.countAPI(sw.status) }()
	}
	e.mux.ServeHTTP(sw, r)
	e.logRequest(r, sw.status, start)
}

func (e *Emulator) logRequest(r *http.Request, status int, start time.Time) {
	// Only the path: queries carry state and PKCE challenges, bodies carry
	// codes, secrets and tokens.
	e.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", status), slog.Duration("duration", time.Since(start)))
}

// Now returns the emulator's virtual time: the configured clock plus every Advance.
func (e *Emulator) Now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.nowLocked()
}

func (e *Emulator) nowLocked() time.Time { return e.cfg.Now().Add(e.offset) }

// Advance moves the virtual clock forward by d, expiring tokens, codes and
// grants without sleeping. A negative d is ignored.
func (e *Emulator) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	e.mu.Lock()
	e.offset += d
	e.mu.Unlock()
}

// SetAutoApprove changes the auto-approve user; "" shows the consent page again.
func (e *Emulator) SetAutoApprove(userID string) {
	e.mu.Lock()
	e.auto = userID
	e.mu.Unlock()
}

// Stats are the emulator's counters, as served at GET /_emulator/stats.
type Stats struct {
	// TokenRequests counts /api/token requests by grant_type
	// (authorization_code, refresh_token, client_credentials, or "other").
	TokenRequests map[string]int64 `json:"token_requests"`
	// TokenErrors counts /api/token error answers by error code.
	TokenErrors map[string]int64 `json:"token_errors"`
	// APIResponses counts Web API responses by HTTP status.
	APIResponses map[string]int64 `json:"api_responses"`
}

func newStats() Stats {
	return Stats{
		TokenRequests: map[string]int64{"authorization_code": 0, "refresh_token": 0, "client_credentials": 0},
		TokenErrors:   map[string]int64{},
		APIResponses:  map[string]int64{},
	}
}

// Stats returns a copy of the counters.
func (e *Emulator) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := newStats()
	for _, p := range []struct{ dst, src map[string]int64 }{
		{s.TokenRequests, e.stats.TokenRequests},
		{s.TokenErrors, e.stats.TokenErrors},
		{s.APIResponses, e.stats.APIResponses},
	} {
		for k, v := range p.src {
			p.dst[k] = v
		}
	}
	return s
}

// ResetStats sets every counter to zero.
func (e *Emulator) ResetStats() {
	e.mu.Lock()
	e.stats = newStats()
	e.mu.Unlock()
}

func (e *Emulator) countTokenRequest(grantType string) {
	switch grantType {
	case "authorization_code", "refresh_token", "client_credentials":
	default:
		grantType = "other"
	}
	e.mu.Lock()
	e.stats.TokenRequests[grantType]++
	e.mu.Unlock()
}

func (e *Emulator) countTokenError(code string) {
	e.mu.Lock()
	e.stats.TokenErrors[code]++
	e.mu.Unlock()
}

func (e *Emulator) countAPI(status int) {
	e.mu.Lock()
	e.stats.APIResponses[strconv.Itoa(status)]++
	e.mu.Unlock()
}

type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// randomToken returns prefix followed by n random bytes, base64url-encoded.
func randomToken(prefix string, n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// baseURL is the emulator's own base URL as the client reached it, for hrefs.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
