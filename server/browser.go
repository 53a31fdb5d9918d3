package server

// What the server exports for the handlers mounted on it: the
// backend-for-frontend (package bff) signs browsers in through the connect
// flow, calls the Web API through the proxy, and answers errors and logs
// requests as the rest of the server does, without copying any of it.

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
)

// MountPublic lets mount register routes on the public side, beside the
// API and the connect flow, where browsers reach them (the
// backend-for-frontend's bff.Handler.Mount): they get the server's request
// ids, request log, metrics and JSON answers to unknown paths. Call it
// before serving. Routes must not clash with the server's own (a clash
// panics, as http.ServeMux does).
func (s *Server) MountPublic(mount func(*http.ServeMux)) { mount(s.muxes.public) }

// RequestID is the id the server gave the request (echoed in X-Request-Id
// and found in its log line).
func RequestID(r *http.Request) string { return requestID(r) }

// StatusError is an error answered with its own HTTP status instead of the
// one its code maps to: codes of a mounted handler, such as the BFF's
// login_required (401). Its message is shown to the client.
type StatusError struct {
	Status int
	Err    *spotoken.Error
}

// Error implements error.
func (e *StatusError) Error() string { return e.Err.Error() }

// Unwrap returns the client-safe error.
func (e *StatusError) Unwrap() error { return e.Err }

// WriteError answers err as JSON, as the API answers its own errors:
// {"error": code, "error_description": message} (and retry_after,
// required_scopes where they apply), the status its code maps to or a
// StatusError's; an error that is not a *spotoken.Error is logged and
// answered 500 without its detail.
func (s *Server) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	s.writeError(w, r, err)
}

// Proxy calls the Web API as connection key's user, exactly as ANY
// /v1/proxy/{id}/{path} does: path is the escaped Web API path without its
// leading slash (v1/me/player), held to the same rules; the request's
// method, query, body and the few headers the proxy passes on go to
// Spotify, nothing else (no Cookie, no Origin); the scopes are checked
// first; a token Spotify rejects is refreshed and the request sent once
// more; Spotify's answer, 429 and Retry-After included, is streamed back
// without Set-Cookie or Spotify's own CORS headers. Every error, met before
// calling Spotify or after (a refresh that failed), goes to fail, which
// answers the request; none carries a connect link, as a browser app signs
// in again instead.
func (s *Server) Proxy(w http.ResponseWriter, r *http.Request, key spotoken.ConnectionKey, path string,
	fail func(w http.ResponseWriter, r *http.Request, err error)) {
	if err := s.proxyConnection(w, r, key, path, proxyOptions{fail: fail}); err != nil {
		fail(w, r, err)
	}
}

// DeleteConnection deletes the connection, erasing its sealed tokens, with a
// connection.revoked event giving reason (the API's DELETE gives
// "deleted"); ErrNotFound if none.
func (s *Server) DeleteConnection(r *http.Request, key spotoken.ConnectionKey, reason string) error {
	return s.deleteConnection(r, key, reason)
}

// A browser sign-in is the connect flow with one difference: the
// connection is named after the code exchange, once the Spotify user is
// known, by the LoginHandler of the sign-in's kind, which also answers the
// browser at the end (a BFF sets its session cookie there). The browser
// carries only what every connect flow gives it, the state (bound to it by
// the state cookie) and the code (bound to the PKCE verifier kept here):
// the grant and who the user is pass from the callback to the handler in
// this process, so nothing the browser could forge decides either.

// Login is a browser sign-in to start.
type Login struct {
	// Kind names the LoginHandler that completes it (see HandleLogins).
	Kind  string
	AppID string
	// Scopes are asked of the user (Spotify may grant fewer); empty for the
	// app's default scopes.
	Scopes spotoken.Scopes
	// ReturnTo is handed back to the handler at the end; the caller has
	// checked it (no open redirect).
	ReturnTo string
}

// LoginResult is how a browser sign-in ended.
type LoginResult struct {
	AppID    string
	ReturnTo string
	// Outcome is "connected", or why not, as a connect flow's return_to
	// hears it: access_denied, state_mismatch, exchange_failed,
	// profile_failed, server_error.
	Outcome string
	// Description is a sentence for the person; empty when connected.
	Description string
	// Connection holds the new grant when connected; nil otherwise.
	Connection *spotoken.Connection
}

// Connected reports whether the sign-in succeeded.
func (r *LoginResult) Connected() bool { return r.Outcome == flowConnected && r.Connection != nil }

// LoginHandler completes the browser sign-ins of one kind. Its methods are
// called concurrently.
type LoginHandler interface {
	// LoginConnection names the connection that keeps the grant of Spotify
	// user userID to app appID: a valid connection id.
	LoginConnection(appID, userID string) string
	// FinishLogin answers the browser at the end of a sign-in, whatever its
	// outcome.
	FinishLogin(w http.ResponseWriter, r *http.Request, res *LoginResult)
}

// HandleLogins makes h complete the browser sign-ins of kind. Call it
// before serving, on every replica alike: a sign-in started on one may end
// on another.
func (s *Server) HandleLogins(kind string, h LoginHandler) {
	if s.logins == nil {
		s.logins = make(map[string]LoginHandler)
	}
	s.logins[kind] = h
}

// BeginLogin starts a browser sign-in: it keeps the state and PKCE
// verifier, binds the state to the browser with a cookie, and redirects to
// Spotify's consent page with show_dialog=true, so that the person sees
// which account they sign in with. Errors (no such app, an app without
// spotoken's redirect URI, the store failing) are returned unanswered.
func (s *Server) BeginLogin(w http.ResponseWriter, r *http.Request, l Login) error {
	if s.logins[l.Kind] == nil {
		return fmt.Errorf("server: no LoginHandler for browser sign-ins of kind %q", l.Kind)
	}
	app, err := s.cfg.Store.App(r.Context(), l.AppID)
	if err != nil {
		return err
	}
	if !slices.Contains(app.RedirectURIs, s.CallbackURL()) {
		return spotoken.Errorf(spotoken.EAppMisconfigured, "app %s has no redirect URI %s; register it with Spotify and with 'spotoken apps'",
			app.ID, s.CallbackURL())
	}
	scopes := l.Scopes.Normalize()
	if len(scopes) == 0 {
		scopes = app.DefaultScopes.Normalize()
	}
	state, verifier := randomToken(""), accounts.GenerateVerifier()
	now := s.cfg.Now()
	p := &spotoken.PendingAuthorization{
		StateHash: pendingHash(domainState, state), AppID: app.ID, Login: l.Kind,
		Verifier: spotoken.Secret(verifier), Scopes: scopes, RedirectURI: s.CallbackURL(),
		ReturnTo: l.ReturnTo, CreatedAt: now, ExpiresAt: now.Add(s.cfg.StateTTL),
	}
	if err := s.cfg.Store.CreatePending(r.Context(), p); err != nil {
		return fmt.Errorf("store the state of a browser sign-in: %w", err)
	}
	s.authorize(w, r, app, state, verifier, p.Scopes, true)
	return nil
}

// loginConnection names the connection of a browser sign-in.
func (s *Server) loginConnection(p *spotoken.PendingAuthorization, userID string) (string, error) {
	h := s.logins[p.Login]
	if h == nil {
		return "", fmt.Errorf("no LoginHandler for browser sign-ins of kind %q", p.Login)
	}
	id := h.LoginConnection(p.AppID, userID)
	if err := checkConnectionID(id); err != nil {
		return "", fmt.Errorf("the LoginHandler of %q named connection %q: %w", p.Login, truncate(id, 140), err)
	}
	return id, nil
}

// finishLogin hands the end of a browser sign-in to its handler.
func (s *Server) finishLogin(w http.ResponseWriter, r *http.Request, p *spotoken.PendingAuthorization, outcome, connectionID string) {
	h := s.logins[p.Login]
	if h == nil {
		s.log.Error("callback: no LoginHandler for a browser sign-in", "request_id", requestID(r), "app", p.AppID, "login", p.Login)
		s.flowPage(w, r, http.StatusInternalServerError, flowServerError, "")
		return
	}
	res := &LoginResult{AppID: p.AppID, ReturnTo: p.ReturnTo, Outcome: outcome}
	if outcome == flowConnected {
		c, err := s.cfg.Store.Connection(r.Context(), spotoken.ConnectionKey{AppID: p.AppID, ID: connectionID})
		if err != nil {
			s.log.Error("callback: read the connection of a browser sign-in", "request_id", requestID(r), "app", p.AppID, "err", err)
			res.Outcome = flowServerError
		} else {
			res.Connection = c
		}
	}
	if res.Outcome != flowConnected {
		res.Description = flowMessages[res.Outcome]
	}
	s.metrics.connectFlow(res.Outcome)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	h.FinishLogin(w, r, res)
}
