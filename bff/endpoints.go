package bff

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/bff/bffclient"
	"github.com/spotoken/spotoken/internal/websession"
	"github.com/spotoken/spotoken/server"
)

// The BFF's own error codes, beyond the root package's (needs_reauth 409,
// rate_limited 429, not_found 404, ...).
const (
	// ELoginRequired: no session, or it ended (timed out, signed out,
	// evicted, its grant deleted); sign in again.
	ELoginRequired = "login_required"
	// ECSRFRequired: the request lacks X-Spotoken-CSRF: 1.
	ECSRFRequired = "csrf_required"
	// EOriginNotAllowed: the request came from a page of an origin the app
	// does not list.
	EOriginNotAllowed = "origin_not_allowed"
	// EScopeNotAllowed: the token-mediating mode would hand a page a token
	// with scopes beyond the app's token scopes.
	EScopeNotAllowed = "scope_not_allowed"
)

var (
	errLoginRequired = &server.StatusError{Status: http.StatusUnauthorized,
		Err: spotoken.Errorf(ELoginRequired, "Nobody is signed in (or the session ended); sign in again at /bff/{app}/login.")}
	errCSRF = &server.StatusError{Status: http.StatusUnauthorized,
		Err: spotoken.Errorf(ECSRFRequired, "The request needs the header "+bffclient.CSRFHeader+": "+bffclient.CSRFValue+" (the BFF's client.js sends it).")}
	errOrigin = &server.StatusError{Status: http.StatusForbidden,
		Err: spotoken.Errorf(EOriginNotAllowed, "The request comes from a page of an origin this app does not list.")}
	errPreflight = &server.StatusError{Status: http.StatusForbidden,
		Err: spotoken.Errorf(EOriginNotAllowed, "CORS preflight refused: the origin, method or headers are not allowed here.")}
)

// request is one call to an endpoint that needs a session.
type request struct {
	app   *spotoken.BrowserApp
	route string // session, logout, token or api
	m     *websession.Manager
	ws    *spotoken.WebSession // nil when nobody is signed in
	key   spotoken.ConnectionKey
}

// endpoint wraps the handler of a route that pages call with fetch: it
// loads the app's settings (404 when its BFF is off), answers CORS and
// preflights, refuses foreign origins (403) and requests without the CSRF
// header (401), and reads the session. h runs only then, with the session
// or nil: each handler decides what no session means. A nil h answers
// preflights only.
func (h *Handler) endpoint(fn func(w http.ResponseWriter, r *http.Request, q *request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h.serveEndpoint(w, r, fn); err != nil {
			h.cfg.Server.WriteError(w, r, err)
		}
	}
}

func (h *Handler) serveEndpoint(w http.ResponseWriter, r *http.Request, fn func(w http.ResponseWriter, r *http.Request, q *request) error) error {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	appID := r.PathValue("app")
	b, err := h.cfg.Store.BrowserApp(r.Context(), appID)
	if errors.Is(err, spotoken.ErrNotFound) {
		return spotoken.Errorf(spotoken.ENotFound, "App %q has no browser app: its BFF is off.", truncate(appID, 64))
	}
	if err != nil {
		return err
	}
	q := &request{app: b, route: routeOf(r)}
	corsHeaders(w, r, b)
	if r.Method == http.MethodOptions {
		methods, headers, ok := preflight(b, q.route, r.Header.Get("Origin"), r.Header.Get("Access-Control-Request-Method"),
			r.Header.Get("Access-Control-Request-Headers"))
		if !ok {
			hd := w.Header()
			for _, k := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers"} {
				hd.Del(k)
			}
			h.log.Info("bff: preflight refused", "request_id", server.RequestID(r), "app", b.AppID, "route", q.route)
			return errPreflight
		}
		hd := w.Header()
		hd.Set("Access-Control-Allow-Methods", methods)
		hd.Set("Access-Control-Allow-Headers", headers)
		hd.Set("Access-Control-Max-Age", preflightMaxAge)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if fn == nil { // the mux sends only OPTIONS here
		return spotoken.Errorf(spotoken.ENotFound, "No such endpoint.")
	}
	if !websession.AllowedOrigin(r, h.self, b.Origins...) {
		h.log.Info("bff: request from a foreign origin refused", "request_id", server.RequestID(r), "app", b.AppID, "route", q.route)
		return errOrigin
	}
	if r.Header.Get(bffclient.CSRFHeader) != bffclient.CSRFValue {
		h.log.Info("bff: request without the CSRF header refused", "request_id", server.RequestID(r), "app", b.AppID, "route", q.route)
		return errCSRF
	}
	if q.m, err = h.manager(b.AppID); err != nil {
		return err
	}
	q.ws, err = q.m.Read(r)
	switch {
	case errors.Is(err, websession.ErrEnded):
		q.m.ClearCookie(w)
		q.ws = nil
	case errors.Is(err, websession.ErrNoSession):
		q.ws = nil
	case err != nil:
		return err
	}
	if q.ws != nil {
		var d sessionData
		if q.ws.AppID != b.AppID || json.Unmarshal([]byte(q.ws.Data.Reveal()), &d) != nil || d.Connection == "" {
			h.log.Error("bff: a session's data does not decode", "request_id", server.RequestID(r), "app", b.AppID)
			q.m.ClearCookie(w)
			q.ws = nil
		} else {
			q.key = spotoken.ConnectionKey{AppID: b.AppID, ID: d.Connection}
		}
	}
	return fn(w, r, q)
}

// routeOf names the route of a request to /bff/{app}/{route}[/...].
func routeOf(r *http.Request) string {
	rest := strings.TrimPrefix(r.URL.Path, "/bff/")
	_, rest, _ = strings.Cut(rest, "/")
	route, _, _ := strings.Cut(rest, "/")
	return route
}

// end ends the request's session: the grant behind it is gone.
func (h *Handler) end(w http.ResponseWriter, r *http.Request, q *request) {
	if err := q.m.End(w, r); err != nil {
		h.log.Warn("bff: end a session", "request_id", server.RequestID(r), "app", q.app.AppID, "err", err)
	}
}

// fail answers an error of the grant behind a session: a connection that
// is gone ends the session (401: sign in again); one whose user must grant
// access again ends it too (409 needs_reauth); anything else is answered as
// the API answers it.
func (h *Handler) fail(q *request) func(w http.ResponseWriter, r *http.Request, err error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		switch {
		case errors.Is(err, spotoken.ErrNotFound):
			// Spotoken answers not_found only for the connection: deleted
			// by the app's service, or by a sign-out everywhere.
			h.log.Info("bff: the connection is gone; session ended", "request_id", server.RequestID(r), "app", q.app.AppID)
			h.end(w, r, q)
			err = errLoginRequired
		case errors.Is(err, spotoken.ErrNeedsReauth):
			h.log.Info("bff: the grant is gone; session ended", "request_id", server.RequestID(r), "app", q.app.AppID)
			h.end(w, r, q)
			err = &server.StatusError{Status: http.StatusConflict, Err: spotoken.Errorf(spotoken.ENeedsReauth,
				"Spotify access must be granted again: sign in again at /bff/%s/login.", q.app.AppID)}
		}
		h.cfg.Server.WriteError(w, r, err)
	}
}

// sessionView is GET /bff/{app}/session's answer: who is signed in, never
// a token.
type sessionView struct {
	User             userView        `json:"user"`
	Scopes           spotoken.Scopes `json:"scopes"`
	GrantExpiresAt   time.Time       `json:"grant_expires_at"`
	SessionExpiresAt time.Time       `json:"session_expires_at"`
	LogoutURL        string          `json:"logout_url"`
	TokenMediating   bool            `json:"token_mediating"`
}

type userView struct {
	ID          string `json:"id"`
	DisplayName string `json:"display_name"`
}

func (h *Handler) handleSession(w http.ResponseWriter, r *http.Request, q *request) error {
	if q.ws == nil {
		return errLoginRequired
	}
	c, err := h.cfg.Store.Connection(r.Context(), q.key)
	if errors.Is(err, spotoken.ErrNotFound) {
		h.end(w, r, q)
		return errLoginRequired
	}
	if err != nil {
		return err
	}
	if c.State != spotoken.StateActive {
		h.fail(q)(w, r, spotoken.ErrNeedsReauth)
		return nil
	}
	scopes := c.Scopes
	if scopes == nil {
		scopes = spotoken.Scopes{}
	}
	writeJSON(w, http.StatusOK, sessionView{
		User:   userView{ID: c.SpotifyUserID, DisplayName: c.DisplayName},
		Scopes: scopes, GrantExpiresAt: c.GrantExpiresAt.UTC(), SessionExpiresAt: q.ws.EndsAt().UTC(),
		LogoutURL:      h.public + "/bff/" + url.PathEscape(q.app.AppID) + "/logout",
		TokenMediating: q.app.TokenMediating(),
	})
	return nil
}

func (h *Handler) handleLogout(w http.ResponseWriter, r *http.Request, q *request) error {
	erase := false
	switch v := r.URL.Query(); {
	case len(v) == 0:
	case len(v) == 1 && len(v["erase_grant"]) == 1:
		switch v.Get("erase_grant") {
		case "true", "1":
			erase = true
		case "false", "0":
		default:
			return spotoken.Errorf(spotoken.EInvalid, "erase_grant must be true or false")
		}
	default:
		return spotoken.Errorf(spotoken.EInvalid, "logout takes one query parameter, erase_grant=true|false")
	}
	if q.ws != nil && erase {
		err := h.cfg.Server.DeleteConnection(r, q.key, "signed_out")
		if err != nil && !errors.Is(err, spotoken.ErrNotFound) {
			return err
		}
		n, err := h.cfg.Store.DeleteWebSessions(r.Context(), q.ws.Scope, q.ws.Subject)
		if err != nil {
			return err
		}
		h.log.Info("bff: signed out everywhere; grant erased", "request_id", server.RequestID(r), "app", q.app.AppID,
			"connection", q.key.ID, "sessions", n)
	} else if q.ws != nil {
		h.log.Info("bff: signed out", "request_id", server.RequestID(r), "app", q.app.AppID, "connection", q.key.ID)
	}
	if err := q.m.End(w, r); err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// tokenView is POST /bff/{app}/token's answer: an access token, never the
// refresh token.
type tokenView struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresIn   int       `json:"expires_in"`
	ExpiresAt   time.Time `json:"expires_at"`
	Scope       string    `json:"scope"`
}

// tokenMinTTL is the least lifetime a handed-out token has left.
const tokenMinTTL = 5 * time.Minute

func (h *Handler) handleToken(w http.ResponseWriter, r *http.Request, q *request) error {
	if !q.app.TokenMediating() {
		return spotoken.Errorf(spotoken.ENotFound, "The token-mediating mode is off for app %s: its pages call Spotify through /bff/%s/api/.",
			q.app.AppID, q.app.AppID)
	}
	if q.ws == nil {
		return errLoginRequired
	}
	wait, count := h.tokens.take(q.ws.IDHash, h.cfg.Now())
	if wait > 0 {
		h.log.Warn("bff: token requests over the session's limit (a script fetching tokens?)", "request_id", server.RequestID(r),
			"app", q.app.AppID, "connection", q.key.ID, "session", fingerprint(q.ws.IDHash), "count", count)
		return &spotoken.Error{Code: spotoken.ERateLimited, Message: "Too many token requests from this session; try again later.", RetryAfter: wait}
	}
	at, err := h.cfg.Tokens.Token(r.Context(), q.key, tokenMinTTL)
	if err != nil {
		h.fail(q)(w, r, err)
		return nil
	}
	if wider := excess(at.Scopes, q.app.TokenScopes); len(wider) > 0 {
		h.log.Warn("bff: token refused: the grant has scopes beyond the app's token scopes", "request_id", server.RequestID(r),
			"app", q.app.AppID, "connection", q.key.ID, "scopes", wider.String())
		return &server.StatusError{Status: http.StatusForbidden, Err: spotoken.Errorf(EScopeNotAllowed,
			"The grant carries scopes (%s) beyond those this app hands to pages; ask an operator to narrow the sign-in's scopes or widen the token scopes.", wider.String())}
	}
	now := h.cfg.Now()
	h.log.Info("bff: access token handed to a page", "request_id", server.RequestID(r), "app", q.app.AppID,
		"connection", q.key.ID, "session", fingerprint(q.ws.IDHash), "count", count)
	writeJSON(w, http.StatusOK, tokenView{AccessToken: at.Token.Reveal(), TokenType: "Bearer",
		ExpiresIn: int(at.Expiry.Sub(now) / time.Second), ExpiresAt: at.Expiry.UTC(), Scope: at.Scopes.String()})
	return nil
}

// excess returns the scopes of granted that allowed lacks.
func excess(granted, allowed spotoken.Scopes) spotoken.Scopes {
	return allowed.Missing(granted)
}

func (h *Handler) handleAPI(w http.ResponseWriter, r *http.Request, q *request) error {
	if q.ws == nil {
		return errLoginRequired
	}
	h.cfg.Server.Proxy(w, r, q.key, apiRest(r.URL.EscapedPath()), h.fail(q))
	return nil
}

// apiRest returns the escaped path after /bff/{app}/api/; the route
// guarantees that shape.
func apiRest(escapedPath string) string {
	rest := strings.TrimPrefix(escapedPath, "/bff/")
	_, rest, _ = strings.Cut(rest, "/") // {app}
	_, rest, _ = strings.Cut(rest, "/") // api
	return rest
}

// fingerprint names a session in the log without its cookie: the start of
// the hash the store keeps.
func fingerprint(idHash [32]byte) string { return hex.EncodeToString(idHash[:6]) }

// validUserID is a Spotify user id that can follow "bff:" in a connection id.
var validUserID = regexp.MustCompile(`^[A-Za-z0-9._@:-]{1,124}$`)

// connectionFor names the connection of Spotify user userID.
func connectionFor(userID string) string {
	if validUserID.MatchString(userID) && strings.Trim(userID, ".") != "" {
		return "bff:" + userID
	}
	sum := sha256.Sum256([]byte(userID))
	return "bff:sha256-" + hex.EncodeToString(sum[:20])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal","error_description":"Internal error."}`)
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
