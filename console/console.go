// Package console is spotoken's operator's console: server-rendered pages
// (html/template, embedded, no JavaScript) on the admin side of the server
// (server.Server.MountAdmin), under /console/.
//
// Two kinds of people sign in. Operators sign in with an admin credential
// (sa_…, made by 'spotoken admins create') and see every app: its health,
// connections, deliveries, API keys and settings, and change them through
// package admin, which checks and records every change. App teams sign in
// with one of their app's API keys (sk_…) and see only that app: its
// connections (with the connect link, force refresh and delete the API
// lets their key do), its deliveries and charts, never its keys or
// settings. The console grew out of the per-app dashboard, whose URLs (/,
// /dashboard/login and its forms) still lead here.
//
// Sessions are kept in the store by internal/websession (cookie
// spotoken_dashboard, __Host- prefixed over https; kinds "admin" and
// "dashboard"), hold the credential's SHA-256 hash (never the credential)
// and look it up on every request, so revoking it ends its sessions at
// once. Every POST must carry the session's CSRF token and, when the
// browser sends Sec-Fetch-Site, Origin or Referer, come from the console's
// own origin. Pages carry a strict Content-Security-Policy (no script at
// all, styles only from the console's own stylesheet).
//
// Nothing on a page comes from a token: views are made of strings, built
// from connections whose tokens the stores never open for a listing. A
// secret shown once (a new API key, a new webhook secret, a connect link)
// waits for the next page in the session's sealed data and is removed when
// shown.
package console

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/internal/websession"
	"github.com/spotoken/spotoken/server"
)

// Store is what the console reads of a store (changes go through
// admin.Service and the server's connection actions).
type Store interface {
	websession.Store
	DeleteWebSessions(ctx context.Context, scope, subject string) (int, error)
	App(ctx context.Context, id string) (*spotoken.App, error)
	Apps(ctx context.Context) ([]*spotoken.App, error)
	APIKeyByHash(ctx context.Context, hash [32]byte) (*spotoken.APIKey, error)
	APIKeys(ctx context.Context, appID string) ([]*spotoken.APIKey, error)
	AdminKeyByHash(ctx context.Context, hash [32]byte) (*spotoken.AdminKey, error)
	Connection(ctx context.Context, key spotoken.ConnectionKey) (*spotoken.Connection, error)
	Connections(ctx context.Context, filter spotoken.ConnectionFilter) ([]*spotoken.Connection, error)
	CountConnections(ctx context.Context) ([]spotoken.ConnectionCount, error)
	CountExpiringGrants(ctx context.Context, before time.Time) ([]spotoken.ConnectionCount, error)
	RateLimits(ctx context.Context, after time.Time) ([]spotoken.AppRateLimit, error)
	spotoken.ConnectionFinder
	spotoken.ConnectionBrowser
	Events(ctx context.Context, filter spotoken.EventFilter) ([]*spotoken.Event, error)
	RefreshTallies(ctx context.Context, appID string, since time.Time) ([]spotoken.RefreshTally, error)
}

var _ Store = spotoken.Store(nil)

// Actions are the connection actions the console takes through the server,
// the same code paths as the API's: a *server.Server.
type Actions interface {
	NewConnectLink(ctx context.Context, key spotoken.ConnectionKey, scopes []string, returnTo string) (server.ConnectSession, error)
	RefreshConnection(ctx context.Context, key spotoken.ConnectionKey) error
	DeleteConnection(r *http.Request, key spotoken.ConnectionKey, reason string) error
	// AuditAs names who acts in r, for the audit trail's record of the
	// changes the server makes for it.
	AuditAs(r *http.Request, actorType, id, label, appID string) *http.Request
}

// AuditReader reads the audit trail (an *audit.Trail).
type AuditReader interface {
	Records(ctx context.Context, filter spotoken.AuditFilter) ([]*spotoken.AuditRecord, error)
}

// AuthLimiter is the per-address limit on failed authentication that the
// API answers with 429 (an *audit.Trail).
type AuthLimiter interface {
	// Record takes a record; one of refused credentials (action
	// auth.failed) counts towards its address's limit.
	Record(rec spotoken.AuditRecord)
	// AuthWait is how long addr must wait before it may try again; zero
	// when it may.
	AuthWait(addr netip.Addr) time.Duration
}

var _ Actions = (*server.Server)(nil)

// DefaultExpiryWindow is how soon a grant must expire to count as
// expiring soon on the apps list; the same as serve's --expiry-warning.
const DefaultExpiryWindow = 14 * 24 * time.Hour

// Config configures a Handler. Store, Admin, Actions and BaseURL are
// required.
type Config struct {
	Store Store
	// Admin makes and records operators' changes, and authenticates admin
	// credentials.
	Admin *admin.Service
	// Actions deletes, refreshes and sends connect links for connections.
	Actions Actions
	// Audit, when set, is the audit trail whose records of a connection
	// its page shows; without it the page says the trail is off.
	Audit AuditReader
	// AuthLimit, when set, counts refused sign-ins against the address's
	// failed-authentication limit, shared with the API's refused keys,
	// and answers a sign-in from an address under the limit with 429 and
	// Retry-After without looking at its credential. Other addresses
	// are not affected.
	AuthLimit AuthLimiter
	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client's address, as for the API (server.ClientIP).
	TrustedProxies []netip.Prefix
	// BaseURL is where operators' browsers reach the admin side (the
	// server's AdminURL): its origin is the only one forms are accepted
	// from, https gives the cookie the __Host- prefix, and its path prefixes
	// every link.
	BaseURL string
	// Now is the clock; default time.Now. Give the store the same.
	Now func() time.Time
	// Logger gets sign-ins, refusals and errors; never a credential,
	// token or link. Default: discard.
	Logger *slog.Logger
	// Sessions caps the sessions each app's team keeps (PerScope, scope
	// dashboard:<app>) and each of its API keys (PerSubject); the same caps
	// hold for operators (scope admin, per admin credential). Signing in
	// past a cap ends that scope's (or that credential's) soonest-ending
	// session, never another's. Zero fields take websession's defaults
	// (1,000 and 100); negative ones mean no cap.
	Sessions spotoken.WebSessionLimits
	// ExpiryWindow is how soon a grant must expire to count as expiring
	// soon; default DefaultExpiryWindow.
	ExpiryWindow time.Duration
	// HealthTTL is how long the apps' health figures (connections by
	// state, backing off, expiring, failing deliveries, rate-limit
	// windows) are reused before they are counted again; default
	// DefaultHealthTTL, negative to count on every page.
	HealthTTL time.Duration
}

// DefaultHealthTTL is the default of Config.HealthTTL.
const DefaultHealthTTL = 10 * time.Second

// Handler serves the console. Create it with New and register its routes
// with Mount; it is safe for concurrent use.
type Handler struct {
	cfg      Config
	log      *slog.Logger
	base     string // the base URL's path: every link starts with it
	sessions *websession.Manager

	healthMu     sync.Mutex
	health       map[string]*health // counted at healthAt; nil: count again
	healthAt     time.Time
	healthFlight singleflight.Group
}

// Session cookie and kinds: the dashboard's cookie and kind are kept, so
// the console is where the dashboard's sessions continue.
const (
	cookieName  = "spotoken_dashboard"
	kindAdmin   = "admin"
	kindApp     = "dashboard"
	idleTimeout = time.Hour
	maxAge      = 12 * time.Hour
	pageSize    = 50
	maxForm     = 16 << 10
	csrfField   = "csrf_token"
)

// csp allows the pages the console's stylesheet and nothing else: no
// script, no inline style, no frame, forms only to this origin.
const csp = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

//go:embed templates static
var files embed.FS

// New returns a Handler for cfg.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil || cfg.Admin == nil || cfg.Actions == nil {
		return nil, errors.New("console: Config needs a Store, Admin and Actions")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ExpiryWindow <= 0 {
		cfg.ExpiryWindow = DefaultExpiryWindow
	}
	if cfg.HealthTTL == 0 {
		cfg.HealthTTL = DefaultHealthTTL
	}
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("console: the base URL must be an absolute http(s) URL, got %q", cfg.BaseURL)
	}
	sessions, err := websession.New(websession.Config{
		Store: cfg.Store, Cookie: cookieName, PublicURL: u.String(), Kinds: []string{kindAdmin, kindApp},
		IdleTimeout: idleTimeout, MaxAge: maxAge, Limits: cfg.Sessions, Now: cfg.Now, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	return &Handler{cfg: cfg, log: cfg.Logger, base: u.Path, sessions: sessions}, nil
}

// Mount registers the console's routes on m: everything under /console/,
// and the dashboard's old URLs (/, /dashboard/login and its forms), which
// lead to it.
func (h *Handler) Mount(m *http.ServeMux) {
	static, _ := fs.Sub(files, "static")
	m.Handle("GET /console/static/", http.StripPrefix("/console/static/", staticFiles(http.FileServerFS(static))))

	m.HandleFunc("GET /console/login", h.handleLoginPage)
	m.HandleFunc("POST /console/login", h.handleLogin)
	m.HandleFunc("POST /console/logout", h.signedIn(h.handleLogout))
	m.HandleFunc("GET /console/{$}", h.signedIn(h.handleHome))
	m.HandleFunc("GET /console/search", h.signedIn(h.handleSearch))

	app := func(pattern string, fn handlerFunc, operatorOnly bool) {
		m.HandleFunc(pattern, h.signedIn(h.forApp(fn, operatorOnly)))
	}
	app("GET /console/apps/{app}", h.handleApp, false)
	app("POST /console/apps/{app}/connect-link", h.handleNewConnectLink, false)
	app("GET /console/apps/{app}/connections/{id}", h.handleConnection, false)
	app("POST /console/apps/{app}/connections/{id}/connect-link", h.handleConnectLink, false)
	app("POST /console/apps/{app}/connections/{id}/refresh", h.handleRefresh, false)
	app("POST /console/apps/{app}/connections/{id}/delete", h.handleDelete, false)
	app("GET /console/apps/{app}/deliveries", h.handleDeliveries, false)
	app("POST /console/apps/{app}/deliveries/redeliver", h.handleRedeliverAll, true)
	app("POST /console/apps/{app}/deliveries/{event}/redeliver", h.handleRedeliver, true)
	app("GET /console/apps/{app}/keys", h.handleKeys, true)
	app("POST /console/apps/{app}/keys", h.handleCreateKey, true)
	app("POST /console/apps/{app}/keys/{key}/revoke", h.handleRevokeKey, true)
	app("GET /console/apps/{app}/settings", h.handleSettings, true)
	app("POST /console/apps/{app}/settings", h.handleSaveSettings, true)
	app("POST /console/apps/{app}/client-secret", h.handleStageSecret, true)
	app("POST /console/apps/{app}/client-secret/retire", h.handleRetireSecret, true)
	app("POST /console/apps/{app}/webhook-secret/rotate", h.handleRotateWebhookSecret, true)
	app("POST /console/apps/{app}/webhook-secret/retire", h.handleRetireWebhookSecret, true)

	// The dashboard's URLs.
	m.HandleFunc("GET /{$}", h.redirect("/console/"))
	m.HandleFunc("GET /dashboard/login", h.redirect("/console/login"))
	m.HandleFunc("POST /dashboard/login", h.handleLogin)
	m.HandleFunc("POST /dashboard/logout", h.signedIn(h.handleLogout))
	m.HandleFunc("POST /dashboard/connect-link", h.signedIn(h.ownApp(h.handleNewConnectLink)))
	m.HandleFunc("POST /dashboard/connections/{id}/delete", h.signedIn(h.ownApp(h.handleDelete)))
	m.HandleFunc("GET /dashboard/connections/{id}/audit", h.signedIn(h.ownApp(h.handleOldAudit)))
}

// staticFiles serves the stylesheet with the console's headers, cacheable.
func staticFiles(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setHeaders(w)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		next.ServeHTTP(w, r)
	})
}

// redirect answers with a redirect to path under the base.
func (h *Handler) redirect(path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		setHeaders(w)
		http.Redirect(w, r, h.base+path, http.StatusSeeOther)
	}
}

// setHeaders sets the headers every console response carries.
func setHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
}

// session is a signed-in person: the stored session and its data. It
// holds the credential's hash, never the credential.
type session struct {
	ws *spotoken.WebSession
	// appID is the app of an app team's session; empty for an operator.
	appID string
	// subject is the API key's or the admin credential's id.
	subject string
	data    sessionData
}

// operator reports whether the session is an operator's (admin credential).
func (s *session) operator() bool { return s.appID == "" }

// actor is who an operator's change is recorded as made by.
func (s *session) actor() admin.Actor {
	return admin.Actor{Kind: admin.ActorAdminKey, ID: s.subject, Name: s.data.Name}
}

// auditAs returns r naming the signed-in person as who acts, for the audit
// trail's record of a change the server makes (as the admin API and the
// API name theirs, with "(console)" in the label).
func (h *Handler) auditAs(r *http.Request, s *session) *http.Request {
	if s.operator() {
		return h.cfg.Actions.AuditAs(r, spotoken.ActorAdmin, s.subject, admin.ActorAdminKey+":"+s.data.Name+" (console)", "")
	}
	return h.cfg.Actions.AuditAs(r, spotoken.ActorAPIKey, s.subject, s.data.Label+" (console)", s.appID)
}

// sessionData is what a session keeps, sealed in the store.
type sessionData struct {
	KeyHash []byte `json:"key_hash"`
	// Label names the credential on pages: its name and the start of its
	// value, which the store keeps to tell credentials apart.
	Label string `json:"key_label"`
	// Name is an admin credential's name, for the record of changes.
	Name string `json:"name,omitempty"`
	// Flash is shown once, by the next page: the outcome of a POST. It
	// may hold a connect link or a new secret, hence sealed.
	Flash *flash `json:"flash,omitempty"`
}

func (d sessionData) encode() spotoken.Secret {
	b, err := json.Marshal(d)
	if err != nil {
		panic(fmt.Sprintf("console: session data must marshal: %v", err))
	}
	return spotoken.Secret(b)
}

// flash is what a POST tells the page it redirects to.
type flash struct {
	Notice string `json:"notice,omitempty"`
	// Link is a connect link just made.
	Link *linkView `json:"link,omitempty"`
	// Secret is a secret shown this once (a new API key, a new webhook
	// secret), with what it is.
	Secret *secretView `json:"secret,omitempty"`
}

// handlerFunc is a page or an action: it writes a page or a redirect, or
// returns an error, which the one renderer (fail) maps to a page.
type handlerFunc func(w http.ResponseWriter, r *http.Request, s *session) error

// signedIn wraps a handler that needs a session: without one (none,
// ended, or its credential revoked) the person is sent to sign in. A POST
// must come from the console's origin, be a well-formed form, and carry
// the session's CSRF token.
func (h *Handler) signedIn(fn handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		setHeaders(w)
		if r.Method == http.MethodPost && !h.sessions.SameOrigin(r) {
			h.refuse(w, r)
			return
		}
		s, err := h.session(r)
		if errors.Is(err, websession.ErrNoSession) || errors.Is(err, websession.ErrEnded) {
			to := h.base + "/console/login"
			if errors.Is(err, websession.ErrEnded) {
				h.sessions.ClearCookie(w)
				to += "?ended=1"
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		if err == nil && r.Method == http.MethodPost {
			if err = readForm(w, r); err == nil && !websession.CheckCSRF(s.ws, r.PostForm.Get(csrfField)) {
				h.refuse(w, r)
				return
			}
		}
		if err == nil {
			err = fn(w, r, s)
		}
		if err != nil {
			h.fail(w, r, s, err)
		}
	}
}

// errNoApp answers a path naming an app the session may not see, as one
// naming no app: an app team learns nothing of other apps.
func errNoApp(id string) error {
	return spotoken.Errorf(spotoken.ENotFound, "There is no app %q, or it is not yours to see.", truncate(id, 64))
}

// errOperatorsOnly refuses an app team what only operators may do.
var errOperatorsOnly = &spotoken.Error{Code: "forbidden",
	Message: "Only operators, signed in with an admin credential (sa_…), can see or change an app's API keys and settings, and redeliver its events."}

// forApp wraps a handler of one app's pages: an app team sees only its
// app, and operatorOnly pages only operators.
func (h *Handler) forApp(fn handlerFunc, operatorOnly bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, s *session) error {
		if app := r.PathValue("app"); !s.operator() && app != s.appID {
			return errNoApp(app)
		}
		if operatorOnly && !s.operator() {
			return errOperatorsOnly
		}
		return fn(w, r, s)
	}
}

// ownApp serves a dashboard form of the session's own app (the
// dashboard's URLs named no app).
func (h *Handler) ownApp(fn handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, s *session) error {
		if s.operator() {
			return spotoken.Errorf(spotoken.ENotFound, "This form is the old dashboard's; use the console's pages.")
		}
		r.SetPathValue("app", s.appID)
		return fn(w, r, s)
	}
}

// session returns the request's live session: websession.ErrNoSession
// without a cookie, websession.ErrEnded when it names no live session, or
// one whose credential was revoked or deleted (every session of that
// credential is deleted then).
func (h *Handler) session(r *http.Request) (*session, error) {
	ws, err := h.sessions.Read(r)
	if err != nil {
		return nil, err
	}
	s := &session{ws: ws, appID: ws.AppID, subject: ws.Subject}
	if err := json.Unmarshal([]byte(ws.Data.Reveal()), &s.data); err != nil || len(s.data.KeyHash) != 32 {
		h.log.Error("console: a session's data does not decode", "request_id", server.RequestID(r), "scope", ws.Scope)
		return nil, websession.ErrEnded
	}
	ok, err := h.credentialActive(r.Context(), s)
	if err != nil {
		return nil, err
	}
	if !ok {
		if _, err := h.cfg.Store.DeleteWebSessions(r.Context(), ws.Scope, ws.Subject); err != nil {
			h.log.Warn("console: end the sessions of a revoked credential", "request_id", server.RequestID(r), "err", err)
		}
		return nil, websession.ErrEnded
	}
	return s, nil
}

// credentialActive looks the session's credential up again: it must still
// exist, be the same one (of the same app), and not be revoked.
func (h *Handler) credentialActive(ctx context.Context, s *session) (bool, error) {
	hash := [32]byte(s.data.KeyHash)
	if s.operator() {
		k, err := h.cfg.Store.AdminKeyByHash(ctx, hash)
		if errors.Is(err, spotoken.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("console: look up the session's admin credential: %w", err)
		}
		return subtle.ConstantTimeCompare(k.Hash[:], hash[:]) == 1 && k.ID == s.subject && !k.Revoked() &&
			s.ws.Scope == kindAdmin, nil
	}
	k, err := h.cfg.Store.APIKeyByHash(ctx, hash)
	if errors.Is(err, spotoken.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("console: look up the session's API key: %w", err)
	}
	return subtle.ConstantTimeCompare(k.Hash[:], hash[:]) == 1 && k.ID == s.subject && k.AppID == s.appID && !k.Revoked(), nil
}

// formFields are the form fields each POST accepts, by route.
var formFields = map[string][]string{
	"/console/login":                                    {"credential", "api_key"},
	"/dashboard/login":                                  {"credential", "api_key"},
	"/console/logout":                                   {csrfField},
	"/dashboard/logout":                                 {csrfField},
	"/console/apps/{app}/connect-link":                  {csrfField, "connection_id"},
	"/dashboard/connect-link":                           {csrfField, "connection_id"},
	"/console/apps/{app}/connections/{id}/connect-link": {csrfField},
	"/console/apps/{app}/connections/{id}/refresh":      {csrfField},
	"/console/apps/{app}/connections/{id}/delete":       {csrfField},
	"/dashboard/connections/{id}/delete":                {csrfField},
	"/console/apps/{app}/deliveries/redeliver":          {csrfField, "status"},
	"/console/apps/{app}/deliveries/{event}/redeliver":  {csrfField, "back"},
	"/console/apps/{app}/keys":                          {csrfField, "name"},
	"/console/apps/{app}/keys/{key}/revoke":             {csrfField},
	"/console/apps/{app}/settings":                      {csrfField, "client_id", "redirect_uris", "default_scopes", "return_to_origins", "webhook_url"},
	"/console/apps/{app}/client-secret":                 {csrfField, "client_secret"},
	"/console/apps/{app}/client-secret/retire":          {csrfField, "force"},
	"/console/apps/{app}/webhook-secret/rotate":         {csrfField},
	"/console/apps/{app}/webhook-secret/retire":         {csrfField},
}

// readForm parses a POST's URL-encoded form into r.PostForm, refusing other
// encodings, bodies over maxForm, malformed escapes, and fields that are
// unknown or repeated.
func readForm(w http.ResponseWriter, r *http.Request) error {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/x-www-form-urlencoded" {
		return spotoken.Errorf(spotoken.EInvalid, "The form must be sent as application/x-www-form-urlencoded.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return spotoken.Errorf(server.ETooLarge, "The form is over %d bytes.", maxForm)
		}
		return spotoken.Errorf(spotoken.EInvalid, "The form is malformed: it is not valid URL encoding.")
	}
	allowed := formFields[strings.TrimPrefix(r.Pattern, "POST ")]
	for name, v := range r.PostForm {
		if !slices.Contains(allowed, name) {
			return spotoken.Errorf(spotoken.EInvalid, "The form has an unknown field %q.", truncate(name, 32))
		}
		if len(v) > 1 {
			return spotoken.Errorf(spotoken.EInvalid, "The form field %s is repeated.", name)
		}
	}
	return nil
}

// refuse answers a POST that did not come from the console's own page.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request) {
	h.log.Warn("console: refused a cross-site or stale form", "request_id", server.RequestID(r), "route", r.Pattern)
	h.problem(w, r, nil, http.StatusForbidden, "Request refused",
		"This form did not come from this console, or the page was stale. Nothing was changed; go back, reload the page and try again.")
}

// fail is the one renderer of errors: the client-safe message on a page
// with the status the API gives the same error, and for an internal error
// only a request id, the detail going to the log.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code, msg := spotoken.ErrorCode(err), spotoken.ErrorMessage(err)
	status := server.HTTPStatus(code)
	switch code {
	case spotoken.EInternal:
		h.log.Error("console: internal error", "request_id", server.RequestID(r), "route", r.Pattern, "err", err)
		msg = "Internal error; the server log has the detail (request id " + server.RequestID(r) + ")."
	case "forbidden":
		status = http.StatusForbidden
	}
	var se *spotoken.Error
	if errors.As(err, &se) && se.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(se.RetryAfter.Round(time.Second)/time.Second)))
	}
	h.problem(w, r, s, status, http.StatusText(status), msg)
}

// problemPage is the error page's view.
type problemPage struct {
	chrome
	Title, Message string
	// Back is where to go from here: the page the form was on, or home.
	Back string
}

func (h *Handler) problem(w http.ResponseWriter, r *http.Request, s *session, status int, title, message string) {
	p := problemPage{chrome: h.chrome(r, s, "", ""), Title: title, Message: message, Back: h.base + "/console/"}
	if app := r.PathValue("app"); app != "" && s != nil && (s.operator() || app == s.appID) {
		p.Back = h.appURL(app)
		if id := r.PathValue("id"); id != "" && server.CheckConnectionID(id) == nil && r.Method == http.MethodPost {
			p.Back = h.connURL(app, id)
		}
	}
	h.render(w, r, status, pages.problem, p)
}

// render executes t into a buffer first, so a template error is a clean 500.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, t *template.Template, data any) {
	setHeaders(w)
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		h.log.Error("console: render", "request_id", server.RequestID(r), "route", r.Pattern, "err", err)
		http.Error(w, "Internal error.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// setFlash keeps f in the session for the next page. Failing to is logged:
// the action it reports was done.
func (h *Handler) setFlash(r *http.Request, s *session, f *flash) {
	if err := h.updateFlash(r.Context(), s, f); err != nil {
		h.log.Warn("console: keep a notice for the next page", "request_id", server.RequestID(r), "err", err)
	}
}

// takeFlash returns the session's flash, if any, and removes it: what it
// holds is shown once.
func (h *Handler) takeFlash(r *http.Request, s *session) *flash {
	f := s.data.Flash
	if f == nil {
		return nil
	}
	if err := h.updateFlash(r.Context(), s, nil); err != nil {
		h.log.Warn("console: remove a notice shown", "request_id", server.RequestID(r), "err", err)
	}
	return f
}

func (h *Handler) updateFlash(ctx context.Context, s *session, f *flash) error {
	_, err := h.sessions.Update(ctx, s.ws, func(ws *spotoken.WebSession) error {
		var data sessionData
		if err := json.Unmarshal([]byte(ws.Data.Reveal()), &data); err != nil {
			return fmt.Errorf("console: decode session data: %w", err)
		}
		data.Flash = f
		ws.Data = data.encode()
		return nil
	})
	return err
}

// done ends an action: the outcome waits in the session for the page the
// browser is sent to (post, redirect, get).
func (h *Handler) done(w http.ResponseWriter, r *http.Request, s *session, f *flash, to string) error {
	h.forgetHealth() // the action may have changed a figure
	if f != nil {
		h.setFlash(r, s, f)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// appURL and connURL are links to an app's page and a connection's page.
func (h *Handler) appURL(app string) string { return h.base + "/console/apps/" + url.PathEscape(app) }

func (h *Handler) connURL(app, id string) string {
	return h.appURL(app) + "/connections/" + url.PathEscape(id)
}

// truncate shortens s to n bytes (at a rune boundary) with an ellipsis, for
// echoing input in messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
