// Package websession signs browsers in to spotoken's pages (the dashboard
// today; the operator's console and the backend-for-frontend next) with
// sessions kept in the store, so that they survive a restart and every
// replica sees them, and defends those pages against cross-site request
// forgery.
//
// A Manager owns one cookie. Its value is 32 random bytes; the store keeps
// only its SHA-256 (see IDHash), with the session's anti-CSRF token and the
// handler's data sealed. Signing in always makes a new session and ends the
// one the browser had (session fixation); sessions end after an idle
// timeout and at an absolute one, and each scope (kind and app: see
// spotoken.WebSessionScope) keeps a capped number, so that one app signing
// in again and again evicts only its own sessions.
//
// The cookie (OWASP Session Management Cheat Sheet; RFC 6265bis §4.1.3) is
// HttpOnly, Path=/, without Domain, SameSite=Strict unless configured, and
// over HTTPS named with the __Host- prefix and Secure, so that no sibling
// subdomain can set or overwrite it. A public URL with plain http is the
// development mode: no prefix and no Secure, as browsers refuse both
// without TLS. It is meant for loopback addresses (127.0.0.1, localhost,
// [::1]); on any other host the cookie crosses the network in clear, and New
// says so in the log.
//
// Forgery defences, for handlers to combine:
//   - forms carry the session's CSRF token (Session.CSRF), checked with
//     CheckCSRF in constant time;
//   - AllowedOrigin (or Manager.SameOrigin) checks Sec-Fetch-Site, Origin
//     and Referer against the origins the pages are served from;
//   - a browser app's API (BFF) instead requires a custom request header,
//     which a cross-site page cannot send without a CORS preflight, and
//     AllowedOrigin with the app's origins.
//
// How the next handlers use it: the console, which grows out of the
// dashboard, keeps its cookie and kind "dashboard" for app teams (scope
// dashboard:<app>) and adds kind "admin" for operators (no app: a scope of
// its own), so its Manager has Kinds {"admin", "dashboard"}; it checks the
// CSRF token of every form and SameOrigin of every POST. The BFF makes a
// Manager of its own cookie with Kinds {"bff"}, starts the session at the
// end of its callback (never before: a cookie from before the login is not
// the one signed in) with the Spotify user as Subject, the connection in
// Data and ExpiresAt the grant's expiry, checks its custom header and
// AllowedOrigin with the app's origins on every API call, and ends all of a
// user's sessions with the store's DeleteWebSessions on a global sign-out.
package websession

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
)

// Store is what a Manager needs of a store.
type Store interface {
	CreateWebSession(ctx context.Context, s *spotoken.WebSession, limits spotoken.WebSessionLimits) (int, error)
	WebSession(ctx context.Context, idHash [32]byte) (*spotoken.WebSession, error)
	TouchWebSession(ctx context.Context, idHash [32]byte, at time.Time) error
	UpdateWebSession(ctx context.Context, idHash [32]byte, fn func(s *spotoken.WebSession) error) (*spotoken.WebSession, error)
	DeleteWebSession(ctx context.Context, idHash [32]byte) error
}

var _ Store = spotoken.SessionStore(nil)

// Defaults of Config.
const (
	DefaultIdleTimeout = time.Hour
	DefaultMaxAge      = 12 * time.Hour
	DefaultPerScope    = 1000
	DefaultPerSubject  = 100
)

// HostPrefix starts the cookie's name over HTTPS.
const HostPrefix = "__Host-"

// maxCookieLen bounds what is hashed and looked up as a cookie value.
const maxCookieLen = 128

// Config configures a Manager. Store, Cookie, PublicURL and Kinds are
// required.
type Config struct {
	Store Store
	// Cookie is the cookie's name without prefix, e.g. "spotoken_dashboard".
	Cookie string
	// PublicURL is the base URL the pages are served at: https gives the
	// __Host- prefix and Secure; http is the development mode.
	PublicURL string
	// Kinds are the kinds of session this Manager starts and accepts: a
	// cookie naming a session of another kind (another Manager's) is
	// refused.
	Kinds []string
	// SameSite is the cookie's SameSite attribute; default Strict.
	SameSite http.SameSite
	// IdleTimeout ends a session not used for that long; default one hour,
	// negative for none.
	IdleTimeout time.Duration
	// MaxAge is a session's absolute lifetime, and the cookie's Max-Age;
	// default 12 hours.
	MaxAge time.Duration
	// Limits caps the sessions of each scope and of each subject in a
	// scope; zero fields take DefaultPerScope and DefaultPerSubject,
	// negative ones mean no cap.
	Limits spotoken.WebSessionLimits
	// TouchEvery is how often a session's use is written to the store,
	// which moves its idle end; default a minute, or a tenth of the idle
	// timeout if that is shorter.
	TouchEvery time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger gets sign-ins, evictions and failed touches, never a cookie
	// value or token; default discard.
	Logger *slog.Logger
}

// Manager issues, reads and ends the sessions of one cookie. It is safe for
// concurrent use.
type Manager struct {
	cfg    Config
	name   string // the cookie's full name
	secure bool
	self   string // the origin of PublicURL
}

// Errors of Read and Update, for errors.Is.
var (
	// ErrNoSession: the request carries no session cookie.
	ErrNoSession = errors.New("websession: no session cookie")
	// ErrEnded: the request's cookie names no live session of this
	// Manager's kinds (unknown, ended, signed out, evicted or malformed).
	// Clear the cookie and ask the person to sign in again.
	ErrEnded = errors.New("websession: the session has ended")
)

// New returns a Manager for cfg.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil || cfg.Cookie == "" || len(cfg.Kinds) == 0 {
		return nil, errors.New("websession: Config needs a Store, a Cookie and Kinds")
	}
	u, err := url.Parse(cfg.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("websession: the public URL must be an absolute http(s) URL, got %q", cfg.PublicURL)
	}
	if cfg.SameSite == 0 || cfg.SameSite == http.SameSiteDefaultMode {
		cfg.SameSite = http.SameSiteStrictMode
	}
	if cfg.SameSite == http.SameSiteNoneMode && u.Scheme != "https" {
		return nil, errors.New("websession: SameSite=None needs an https public URL")
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.IdleTimeout < 0 {
		cfg.IdleTimeout = 0
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	cfg.Limits.PerScope = limit(cfg.Limits.PerScope, DefaultPerScope)
	cfg.Limits.PerSubject = limit(cfg.Limits.PerSubject, DefaultPerSubject)
	if cfg.TouchEvery <= 0 {
		cfg.TouchEvery = time.Minute
		if cfg.IdleTimeout > 0 {
			cfg.TouchEvery = min(cfg.TouchEvery, cfg.IdleTimeout/10)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, name: cfg.Cookie, secure: u.Scheme == "https", self: Origin(u)}
	if m.secure {
		m.name = HostPrefix + cfg.Cookie
	} else if !loopback(u.Hostname()) {
		cfg.Logger.Warn("websession: the public URL is plain http on a host that is not loopback: the session cookie "+
			"crosses the network in clear; serve over https or give an https public URL", "cookie", cfg.Cookie, "host", u.Host)
	}
	return m, nil
}

// limit maps a Config cap to a store cap: zero takes def, negative none.
func limit(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

// loopback reports whether host is a loopback name or address.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CookieName is the name of the cookie, with its prefix.
func (m *Manager) CookieName() string { return m.name }

// Secure reports whether the cookie is Secure (an https public URL).
func (m *Manager) Secure() bool { return m.secure }

// MaxAge is a session's absolute lifetime.
func (m *Manager) MaxAge() time.Duration { return m.cfg.MaxAge }

// IDHash is the hash under which the store keeps the session whose cookie
// holds value.
func IDHash(value string) [32]byte {
	return sha256.Sum256([]byte("spotoken web session\x00" + value))
}

// SignIn says who a new session is for.
type SignIn struct {
	// Kind is one of the Manager's Kinds.
	Kind string
	// AppID is the app the session is for; empty for none (an operator).
	// The scope, and so the cap, is the kind and the app.
	AppID string
	// Subject is who signs in: an API key id, an admin credential id, a
	// Spotify user.
	Subject string
	// Data is kept with the session, sealed; empty for none.
	Data spotoken.Secret
	// ExpiresAt, when not zero and sooner than MaxAge from now, ends the
	// session earlier: a browser app's session ends with the grant behind
	// it (Spotify's six months).
	ExpiresAt time.Time
}

// Start signs a browser in: it ends the session the request's cookie
// names, if any (a sign-in never keeps a session id the browser had before:
// session fixation), creates a new session with a new random id and CSRF
// token, evicting the scope's soonest-ending sessions past the caps, and
// sets the cookie on w. The caller has authenticated the person.
func (m *Manager) Start(w http.ResponseWriter, r *http.Request, in SignIn) (*spotoken.WebSession, error) {
	if !slices.Contains(m.cfg.Kinds, in.Kind) {
		return nil, fmt.Errorf("websession: start a session of kind %q, which this manager does not keep", in.Kind)
	}
	if value, ok := m.cookie(r); ok {
		if err := m.cfg.Store.DeleteWebSession(r.Context(), IDHash(value)); err != nil && !errors.Is(err, spotoken.ErrNotFound) {
			return nil, fmt.Errorf("websession: end the browser's previous session: %w", err)
		}
	}
	value := randomToken()
	now := m.cfg.Now()
	expires := now.Add(m.cfg.MaxAge)
	if !in.ExpiresAt.IsZero() && in.ExpiresAt.Before(expires) {
		expires = in.ExpiresAt
	}
	if !now.Before(expires) {
		return nil, fmt.Errorf("websession: start a session that has ended already (at %v)", expires)
	}
	s := &spotoken.WebSession{
		IDHash: IDHash(value), Scope: spotoken.WebSessionScope(in.Kind, in.AppID), AppID: in.AppID, Subject: in.Subject,
		CSRF: spotoken.Secret(randomToken()), Data: in.Data,
		IdleTimeout: m.cfg.IdleTimeout, ExpiresAt: expires,
	}
	evicted, err := m.cfg.Store.CreateWebSession(r.Context(), s, m.cfg.Limits)
	if err != nil {
		return nil, fmt.Errorf("websession: create session: %w", err)
	}
	if evicted > 0 {
		m.cfg.Logger.Info("websession: sessions evicted to stay within the cap", "scope", s.Scope, "evicted", evicted)
	}
	m.setCookie(w, value, int(expires.Sub(now)/time.Second))
	return s, nil
}

// Read returns the live session the request's cookie names: ErrNoSession
// without a cookie, ErrEnded when it names no live session of this
// Manager's kinds, another error when the store fails. A session ended by
// this Manager's clock is deleted. A use is written to the store at most
// every TouchEvery, which moves the idle end.
func (m *Manager) Read(r *http.Request) (*spotoken.WebSession, error) {
	value, ok := m.cookie(r)
	if !ok {
		return nil, ErrNoSession
	}
	if len(value) > maxCookieLen {
		return nil, ErrEnded
	}
	ctx := r.Context()
	id := IDHash(value)
	s, err := m.cfg.Store.WebSession(ctx, id)
	switch {
	case errors.Is(err, spotoken.ErrNotFound):
		return nil, ErrEnded
	case errors.Is(err, spotoken.ErrExpired):
		m.drop(ctx, id)
		return nil, ErrEnded
	case err != nil:
		return nil, fmt.Errorf("websession: read session: %w", err)
	case !m.accepts(s):
		return nil, ErrEnded
	}
	now := m.cfg.Now()
	if !s.Live(now) {
		m.drop(ctx, id)
		return nil, ErrEnded
	}
	if now.Sub(s.LastSeenAt) >= m.cfg.TouchEvery {
		err := m.cfg.Store.TouchWebSession(ctx, id, now)
		switch {
		case errors.Is(err, spotoken.ErrNotFound) || errors.Is(err, spotoken.ErrExpired):
			return nil, ErrEnded // signed out or ended meanwhile
		case err != nil:
			// The session stays valid; its idle end just did not move.
			m.cfg.Logger.Warn("websession: record a session's use", "scope", s.Scope, "err", err)
		default:
			s.LastSeenAt = now
		}
	}
	return s, nil
}

// drop deletes an ended session found by Read, rather than leave it to the
// sweep; failing to is only logged.
func (m *Manager) drop(ctx context.Context, id [32]byte) {
	if err := m.cfg.Store.DeleteWebSession(ctx, id); err != nil && !errors.Is(err, spotoken.ErrNotFound) {
		m.cfg.Logger.Warn("websession: delete an ended session", "err", err)
	}
}

// accepts reports whether s is of one of the Manager's kinds, and its scope
// is the one its kind and app make.
func (m *Manager) accepts(s *spotoken.WebSession) bool {
	for _, k := range m.cfg.Kinds {
		if s.Scope == spotoken.WebSessionScope(k, s.AppID) {
			return true
		}
	}
	return false
}

// Update changes the session's data or CSRF token (see
// spotoken.SessionStore.UpdateWebSession): ErrEnded if it has ended.
func (m *Manager) Update(ctx context.Context, s *spotoken.WebSession, fn func(s *spotoken.WebSession) error) (*spotoken.WebSession, error) {
	out, err := m.cfg.Store.UpdateWebSession(ctx, s.IDHash, fn)
	if errors.Is(err, spotoken.ErrNotFound) || errors.Is(err, spotoken.ErrExpired) {
		return nil, ErrEnded
	}
	return out, err
}

// End signs the browser out: it deletes the session the request's cookie
// names, if any, and clears the cookie.
func (m *Manager) End(w http.ResponseWriter, r *http.Request) error {
	m.ClearCookie(w)
	value, ok := m.cookie(r)
	if !ok || len(value) > maxCookieLen {
		return nil
	}
	if err := m.cfg.Store.DeleteWebSession(r.Context(), IDHash(value)); err != nil && !errors.Is(err, spotoken.ErrNotFound) {
		return fmt.Errorf("websession: end session: %w", err)
	}
	return nil
}

// ClearCookie tells the browser to drop the cookie.
func (m *Manager) ClearCookie(w http.ResponseWriter) { m.setCookie(w, "", -1) }

// cookie returns the value of the Manager's cookie in r.
func (m *Manager) cookie(r *http.Request) (string, bool) {
	c, err := r.Cookie(m.name)
	if err != nil || c.Value == "" {
		return "", false
	}
	return c.Value, true
}

func (m *Manager) setCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: m.name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: m.cfg.SameSite, Secure: m.secure,
	})
}

// CheckCSRF reports, in constant time, whether token is the session's CSRF
// token.
func CheckCSRF(s *spotoken.WebSession, token string) bool {
	return s != nil && s.CSRF != "" && token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.CSRF.Reveal())) == 1
}

// SameOrigin reports whether r may have come from the Manager's own pages
// (see AllowedOrigin).
func (m *Manager) SameOrigin(r *http.Request) bool { return AllowedOrigin(r, m.self) }

// AllowedOrigin reports whether a state-changing request may have come
// from a page of origin self, or of one of the trusted origins (a browser
// app's). Each of Sec-Fetch-Site, Origin and Referer that the browser sent
// must agree:
//   - Sec-Fetch-Site must be same-origin, or, when trusted origins are
//     given, same-site or cross-site with an Origin that is one of them;
//   - Origin must be self or trusted; "null" (what browsers send for a
//     same-origin form under Referrer-Policy: no-referrer, and for a
//     sandboxed frame) only when Sec-Fetch-Site vouches same-origin;
//   - Referer's origin must be self or trusted.
//
// A request with none of them (not a browser) is left to the CSRF token or
// the custom header. Origins compare as Origin writes them: scheme, host
// and port, lower case, without a default port.
func AllowedOrigin(r *http.Request, self string, trusted ...string) bool {
	allowed := func(o string) bool { return o == self || slices.Contains(trusted, o) }
	origin := r.Header.Get("Origin")
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin":
	case "same-site", "cross-site":
		if len(trusted) == 0 || origin == "" || origin == "null" || !allowed(parseOrigin(origin)) {
			return false
		}
	default:
		return false
	}
	if origin == "null" {
		if r.Header.Get("Sec-Fetch-Site") != "same-origin" {
			return false
		}
	} else if origin != "" && !allowed(parseOrigin(origin)) {
		return false
	}
	if ref := r.Header.Get("Referer"); ref != "" && !allowed(parseOrigin(ref)) {
		return false
	}
	return true
}

// parseOrigin is the origin of a URL, "" if it has none or carries user
// information (which no browser sends in these headers).
func parseOrigin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil {
		return ""
	}
	return Origin(u)
}

// Origin is u's scheme://host[:port], lower case, without a default port.
func Origin(u *url.URL) string {
	host := strings.ToLower(u.Host)
	scheme := strings.ToLower(u.Scheme)
	if scheme == "http" {
		host = strings.TrimSuffix(host, ":80")
	} else if scheme == "https" {
		host = strings.TrimSuffix(host, ":443")
	}
	return scheme + "://" + host
}

// randomToken returns 32 random bytes in URL-safe base64: a session id or a
// CSRF token.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
