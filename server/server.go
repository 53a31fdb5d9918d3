// Package server is spotoken's HTTP face: the API that apps' services call
// with an API key (connect sessions, connections, token vending, the Web API
// proxy), the connect and callback pages that users' browsers go through,
// webhooks, metrics and health checks. The operator's console (package
// console) mounts itself on the admin side (MountAdmin).
//
// The API's contract is in openapi.json (served at /openapi.json) and
// docs/api.md. Every handler answers malformed input with a JSON error
// {"error": code, "error_description": text}, using RFC 6749 and RFC 6750
// codes where they apply, and writes nothing to the store when it refuses a
// request. No token, client secret, API key or connect link is ever logged.
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/refresh"
)

// Store is what the server needs of a store.
type Store interface {
	App(ctx context.Context, id string) (*spotoken.App, error)
	APIKeyByHash(ctx context.Context, hash [32]byte) (*spotoken.APIKey, error)
	TouchAPIKey(ctx context.Context, id string, at time.Time) error
	CreatePending(ctx context.Context, p *spotoken.PendingAuthorization) error
	ConsumePending(ctx context.Context, stateHash [32]byte) (*spotoken.PendingAuthorization, error)
	DeleteExpiredPending(ctx context.Context, before time.Time) (int, error)
	CreateConnection(ctx context.Context, c *spotoken.Connection, events ...spotoken.Event) error
	Connection(ctx context.Context, key spotoken.ConnectionKey) (*spotoken.Connection, error)
	UpdateConnection(ctx context.Context, key spotoken.ConnectionKey, fn func(c *spotoken.Connection) ([]spotoken.Event, error)) (*spotoken.Connection, error)
	DeleteConnection(ctx context.Context, key spotoken.ConnectionKey, events ...spotoken.Event) error
	Connections(ctx context.Context, filter spotoken.ConnectionFilter) ([]*spotoken.Connection, error)
	CountConnections(ctx context.Context) ([]spotoken.ConnectionCount, error)
	ExpiringGrants(ctx context.Context, before time.Time, limit int) ([]spotoken.DueConnection, error)
	CountExpiringGrants(ctx context.Context, before time.Time) ([]spotoken.ConnectionCount, error)
	AppendEvents(ctx context.Context, events ...spotoken.Event) error
	RateLimitedUntil(ctx context.Context, appID string) (time.Time, error)
	ExtendRateLimit(ctx context.Context, appID string, until time.Time) (time.Time, error)
	RateLimits(ctx context.Context, after time.Time) ([]spotoken.AppRateLimit, error)
	spotoken.PendingGrantStore
	// Browser sign-ins' sessions, and the janitor's sweep of all web
	// sessions (the console's too).
	spotoken.SessionStore
}

// Tokens hands out fresh access tokens: a *refresh.Engine.
type Tokens interface {
	Token(ctx context.Context, key spotoken.ConnectionKey, minTTL time.Duration) (refresh.AccessToken, error)
	Refresh(ctx context.Context, key spotoken.ConnectionKey) (refresh.AccessToken, error)
	Invalidate(ctx context.Context, key spotoken.ConnectionKey, token spotoken.Secret) (refresh.AccessToken, error)
	Forget(key spotoken.ConnectionKey)
}

// Spotify's hosts, the defaults of Config.AccountsURL and Config.APIURL.
const (
	SpotifyAccountsURL = "https://accounts.spotify.com"
	SpotifyAPIURL      = "https://api.spotify.com"
)

// Defaults of the Config durations.
const (
	DefaultSessionTTL    = 15 * time.Minute
	DefaultStateTTL      = 10 * time.Minute
	DefaultGrantLifetime = 4380 * time.Hour // Spotify's six months from consent
	DefaultAuthCacheTTL  = 2 * time.Second
	DefaultForceInterval = 10 * time.Second
	DefaultConfirmTTL    = 10 * time.Minute
	// DefaultMaxPending is how many connect links and grants awaiting
	// confirmation one app may have pending at once.
	DefaultMaxPending = 1000
	// DefaultMaxForceLimiters is how many connections of one app may have
	// a force_refresh allowance in memory at once.
	DefaultMaxForceLimiters = 10000
)

// Config configures a Server. Store, Tokens and PublicURL are required.
type Config struct {
	Store  Store
	Tokens Tokens
	// PublicURL is the base URL at which users' browsers reach this server;
	// the redirect URI registered with Spotify is PublicURL + "/callback".
	PublicURL string
	// AccountsURL and APIURL are Spotify's accounts service and Web API
	// (defaults: Spotify's real hosts); the emulator's base URL for both
	// when testing.
	AccountsURL, APIURL string
	// HTTPClient makes the calls to Spotify (code exchange, /v1/me, the
	// proxy); default a client with a 30s timeout.
	HTTPClient *http.Client
	// Now is the clock; default time.Now. Give the store and engine the same.
	Now func() time.Time
	// Logger gets one line per request and the details of errors whose
	// clients see only a summary; never a secret. Default: discard.
	Logger *slog.Logger
	// Metrics collects the Prometheus metrics served at /metrics; default
	// a new registry.
	Metrics *Metrics
	// EngineStats, when set, exports the refresh engine's counters.
	EngineStats func() refresh.Stats
	// Ready reports whether the server can serve (database reachable,
	// migrations applied); /readyz answers 503 while it fails. Default: ready.
	Ready func(ctx context.Context) error
	// SessionTTL is how long a connect link can be opened; StateTTL how long
	// the user has at Spotify's consent page. Defaults 15 and 10 minutes.
	SessionTTL, StateTTL time.Duration
	// GrantLifetime is how long Spotify keeps a grant's refresh token valid
	// after the user's consent (default six months); it sets
	// Connection.GrantExpiresAt.
	GrantLifetime time.Duration
	// AuthCacheTTL is how long a verified API key is trusted before it is
	// looked up again, so a revoked key stops working within it. Default 2s;
	// negative looks every key up on every request.
	AuthCacheTTL time.Duration
	// ExpiryWarning is how long before a grant expires that the app gets a
	// connection.expiring event (see WarnExpiring). Default 14 days;
	// negative sends none.
	ExpiryWarning time.Duration
	// LinkTTL is how long the connect link in a webhook (see ConnectLink)
	// stays valid. Default 72 hours.
	LinkTTL time.Duration
	// ForceRefreshInterval is the rate at which each connection may ask for
	// force_refresh (a burst of 3, then one per interval). Default 10s.
	ForceRefreshInterval time.Duration
	// Audit, when set, keeps the audit trail (see Auditor), limits failed
	// authentication per address, and serves GET /v1/audit.
	Audit Auditor
	// AuditStats, when set, exports the audit trail's counters.
	AuditStats func() spotoken.AuditStats
	// TrustedProxies are the proxies whose X-Forwarded-For names the client
	// (see ClientIP); without them the peer's address is the client's.
	TrustedProxies []netip.Prefix
	// ConfirmTTL is how long a grant awaiting the app's confirmation (a
	// connect session with require_confirmation) waits before it is
	// erased. Default 10 minutes.
	ConfirmTTL time.Duration
	// MaxPending caps, per app, the connect links not yet used and the
	// grants awaiting confirmation. Default DefaultMaxPending.
	MaxPending int
	// MaxForceLimiters caps, per app, the connections with a
	// force_refresh allowance held in memory. Default DefaultMaxForceLimiters.
	MaxForceLimiters int
	// BodyTimeout is how long a request's body may take beyond what
	// MinBodyRate (bytes per second) allows for its size; see
	// withBodyDeadline. Defaults 10s and 1 KiB/s; a negative BodyTimeout
	// sets no deadline.
	BodyTimeout time.Duration
	MinBodyRate int
	// OutageGrace is how long past AuthCacheTTL an API key verified
	// before keeps being accepted while the store answers
	// spotoken.ErrStoreUnavailable. Zero: none.
	OutageGrace time.Duration
	// AppTokens, when set, serves apps' own tokens: POST /v1/app-token and
	// the proxy's /v1/proxy/-/ (a *refresh.AppTokens). Without it those
	// answer not_found.
	AppTokens AppTokens
	// Admin, when set, serves the admin API under /admin/v1/ to admin
	// credentials; without it the admin API answers not_found.
	Admin *admin.Service

	// The admin side (see listeners.go): metrics, the admin API (when
	// Admin is set) and what MountAdmin adds (the console).
	//
	// SeparateAdmin serves the admin routes from AdminHandler only, for a
	// listener of their own; otherwise Handler serves them beside the API.
	SeparateAdmin bool
	// AdminURL is the base URL at which operators reach the admin routes;
	// default PublicURL.
	AdminURL string
	// MetricsToken, when set, is the bearer token /metrics requires.
	MetricsToken spotoken.Secret
	// NoMetrics leaves /metrics out (it answers 404 with the reason), for a
	// listener reachable by anyone when no MetricsToken guards it.
	NoMetrics bool
	// ListConcurrency is how many listings (GET /v1/connections, GET
	// /v1/audit) one API key may run at once; ListWait how long one more
	// waits for a slot before it is answered 429 rate_limited (see
	// listLimiter). Defaults DefaultListConcurrency and DefaultListWait;
	// a negative ListConcurrency sets no limit (and no pacing).
	ListConcurrency int
	ListWait        time.Duration
	// ListShare paces each key's listings: after a listing that took d,
	// its slot stays reserved for a further d*(1-ListShare)/ListShare (at
	// most 10 s), so they occupy a slot at most that fraction of the time.
	// In (0, 1]; 1 reserves nothing after a listing. Default
	// DefaultListShare.
	ListShare float64
	// Counter is what the store-wide gauges of /metrics (connections by
	// app and state, grants expiring, rate-limit windows) are counted from;
	// default Store. Give the store without a per-call deadline shorter
	// than a count can take (serve gives it the store without --db-timeout's
	// guard, so that a slow count is not taken for a database that is
	// away): the count runs in the background under its own deadline,
	// CountInterval.
	Counter ConnectionCounter
	// CountInterval is how old those gauges' counts may grow before a
	// scrape starts counting them again in the background; scrapes answer
	// with the last counts meanwhile (see connCollector). Default
	// DefaultCountInterval.
	CountInterval time.Duration
	// HSTSMaxAge is the max-age of the Strict-Transport-Security header sent
	// on responses over HTTPS (a TLS connection, or a base URL that is
	// https behind a TLS-terminating proxy). Default one year; negative
	// sends none.
	HSTSMaxAge time.Duration
}

// UpstreamTransport returns the transport spotoken serve uses for its calls
// to Spotify: http.DefaultTransport's settings, but keeping up to 128 idle
// connections per host rather than 2, so that concurrent proxied calls and
// refreshes reuse connections (and TLS sessions) instead of opening and
// closing one each.
func UpstreamTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128
	return t
}

// Server is spotoken's HTTP server. Create it with New; it is safe for
// concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	metrics  *Metrics
	counts   *connCollector
	lists    *listLimiter // nil: no limit
	links    reconsentLinks
	public   *url.URL
	admin    *url.URL // the admin routes' base URL: Config.AdminURL
	accounts *url.URL
	api      *url.URL
	handler  http.Handler // the public listener's
	muxes    muxes        // where routes are registered; see listeners.go
	auth     authCache
	logins   map[string]LoginHandler // by kind: see HandleLogins

	forceMu sync.Mutex
	force   map[string]map[string]*rate.Limiter // app id → connection id → force_refresh allowance
}

// New returns a server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Tokens == nil {
		return nil, errors.New("server: Config needs a Store and Tokens")
	}
	public, err := parseBaseURL("public URL", cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	if cfg.AdminURL == "" {
		cfg.AdminURL = cfg.PublicURL
	}
	admin, err := parseBaseURL("admin URL", cfg.AdminURL)
	if err != nil {
		return nil, err
	}
	if cfg.AccountsURL == "" {
		cfg.AccountsURL = SpotifyAccountsURL
	}
	if cfg.APIURL == "" {
		cfg.APIURL = SpotifyAPIURL
	}
	accountsURL, err := parseBaseURL("accounts URL", cfg.AccountsURL)
	if err != nil {
		return nil, err
	}
	api, err := parseBaseURL("API URL", cfg.APIURL)
	if err != nil {
		return nil, err
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.Ready == nil {
		cfg.Ready = func(context.Context) error { return nil }
	}
	cfg.SessionTTL = orDefault(cfg.SessionTTL, DefaultSessionTTL)
	cfg.StateTTL = orDefault(cfg.StateTTL, DefaultStateTTL)
	cfg.GrantLifetime = orDefault(cfg.GrantLifetime, DefaultGrantLifetime)
	cfg.ForceRefreshInterval = orDefault(cfg.ForceRefreshInterval, DefaultForceInterval)
	cfg.ConfirmTTL = orDefault(cfg.ConfirmTTL, DefaultConfirmTTL)
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.MinBodyRate <= 0 {
		cfg.MinBodyRate = DefaultMinBodyRate
	}
	if cfg.MaxForceLimiters <= 0 {
		cfg.MaxForceLimiters = DefaultMaxForceLimiters
	}
	if cfg.ExpiryWarning == 0 {
		cfg.ExpiryWarning = DefaultExpiryWarning
	}
	cfg.LinkTTL = orDefault(cfg.LinkTTL, DefaultLinkTTL)
	if cfg.HSTSMaxAge == 0 {
		cfg.HSTSMaxAge = DefaultHSTSMaxAge
	}
	if cfg.AuthCacheTTL == 0 {
		cfg.AuthCacheTTL = DefaultAuthCacheTTL
	}
	if cfg.Counter == nil {
		cfg.Counter = cfg.Store
	}
	cfg.CountInterval = orDefault(cfg.CountInterval, DefaultCountInterval)
	if cfg.ListConcurrency == 0 {
		cfg.ListConcurrency = DefaultListConcurrency
	}
	cfg.ListWait = orDefault(cfg.ListWait, DefaultListWait)
	if cfg.ListShare == 0 {
		cfg.ListShare = DefaultListShare
	}
	if !(cfg.ListShare > 0 && cfg.ListShare <= 1) {
		return nil, fmt.Errorf("server: ListShare %v: want a fraction in (0, 1]", cfg.ListShare)
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, metrics: cfg.Metrics, public: public, admin: admin, accounts: accountsURL, api: api,
		force: make(map[string]map[string]*rate.Limiter),
	}
	s.auth.init(s)
	if cfg.ListConcurrency > 0 {
		s.lists = newListLimiter(cfg.ListConcurrency, cfg.ListWait, cfg.ListShare, nil)
	}
	s.counts = newConnCollector(cfg.Counter, cfg.Now, cfg.CountInterval, cfg.Logger)
	s.metrics.registerStore(s.counts)
	if cfg.EngineStats != nil {
		s.metrics.registerEngine(cfg.EngineStats)
	}
	if cfg.AuditStats != nil {
		s.metrics.registerAudit(cfg.AuditStats)
	}
	s.routes()
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// parseBaseURL checks that raw is an absolute http(s) URL with no query or
// fragment, and drops trailing slashes (links made from "https://host//"
// would start with "//connect/").
func parseBaseURL(what, raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("server: the %s must be an absolute http(s) URL without query or credentials, got %q", what, raw)
	}
	return u, nil
}

// Handler returns the server's HTTP handler: the API, the connect and
// callback pages, health checks and, unless Config.SeparateAdmin, the admin
// routes (see AdminHandler).
func (s *Server) Handler() http.Handler { return s.handler }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// CallbackURL is the redirect URI to register with Spotify for every app.
func (s *Server) CallbackURL() string { return s.public.String() + "/callback" }

//go:embed openapi.json
var openAPI []byte

// publicRoutes registers what the public listener serves: the API, the
// connect flow, health checks and the API's description. What is for
// operators only goes in operatorRoutes.
func (s *Server) publicRoutes(m *http.ServeMux) {
	api := func(pattern string, h func(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error) {
		m.Handle(pattern, s.authenticated(h))
	}
	api("POST /v1/connect-sessions", s.handleCreateSession)
	api("GET /v1/connections", s.limitListing(s.handleListConnections))
	api("GET /v1/connections/{id}", s.handleGetConnection)
	api("DELETE /v1/connections/{id}", s.handleDeleteConnection)
	api("POST /v1/connections/{id}/token", s.handleToken)
	api("POST /v1/connections/{id}/confirm", s.handleConfirm)
	api("/v1/proxy/{id}/{path...}", s.handleProxy)
	api("GET /v1/audit", s.limitListing(s.handleAudit))
	api("POST /v1/app-token", s.handleAppToken)
	api("/v1/proxy/-/{path...}", s.handleAppProxy)
	m.HandleFunc("GET /connect/{session}", s.handleConnect)
	m.HandleFunc("GET /callback", s.handleCallback)
	s.healthRoutes(m)
	m.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	})
}

// healthRoutes registers /healthz and /readyz, which every listener serves.
func (s *Server) healthRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	m.HandleFunc("GET /readyz", s.handleReady)
}

// operatorRoutes registers what is for operators: metrics and the admin
// API. With Config.SeparateAdmin they are served on the admin listener
// only. The console mounts itself beside them with MountAdmin; nothing for
// operators goes in publicRoutes.
func (s *Server) operatorRoutes(m *http.ServeMux) {
	m.Handle("GET /metrics", s.metricsHandler())
	s.adminRoutes(m)
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.cfg.Ready(ctx); err != nil {
		s.log.Warn("not ready", "err", err)
		reason := "the database is not reachable or not migrated"
		if errors.Is(err, spotoken.ErrStoreUnavailable) {
			reason = spotoken.ErrorMessage(err) // why: refused, or no answer within the deadline
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": reason})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Run deletes expired pending authorizations, ended web sessions, idle
// per-connection rate limiters and re-consent links no longer reused every
// interval until ctx is done.
func (s *Server) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if n, err := s.cfg.Store.DeleteExpiredPending(ctx, s.cfg.Now()); err != nil {
			s.log.Warn("delete expired pending authorizations", "err", err)
		} else if n > 0 {
			s.log.Debug("deleted expired pending authorizations", "count", n)
		}
		if n, err := s.cfg.Store.DeleteExpiredPendingGrants(ctx, s.cfg.Now()); err != nil {
			s.log.Warn("erase expired grants awaiting confirmation", "err", err)
		} else if n > 0 {
			s.log.Info("erased grants their apps never confirmed", "count", n)
		}
		s.forceMu.Lock()
		now := s.cfg.Now()
		for app, m := range s.force {
			if sweepLimiters(m, now); len(m) == 0 {
				delete(s.force, app)
			}
		}
		s.forceMu.Unlock()
		s.links.sweep(s.cfg.Now())
		if n, err := s.cfg.Store.DeleteExpiredWebSessions(ctx, s.cfg.Now()); err != nil {
			s.log.Warn("delete ended web sessions", "err", err)
		} else if n > 0 {
			s.log.Debug("deleted ended web sessions", "count", n)
		}
		if _, err := s.WarnExpiring(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("warn of expiring grants", "err", err)
		}
	}
}

// randomToken returns prefix and 32 random bytes in URL-safe base64.
func randomToken(prefix string) string {
	b := make([]byte, 32)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// The hash domains of pending authorizations: a connect session and an
// OAuth state are both stored as pending authorizations, found by a hash
// that also names which of the two it is, so neither can be used as the other.
const (
	domainSession = "spotoken connect-session\x00"
	domainState   = "spotoken state\x00"
	domainConfirm = "spotoken confirm\x00"
)

func pendingHash(domain, token string) [32]byte { return sha256.Sum256([]byte(domain + token)) }

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
