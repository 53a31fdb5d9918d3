package server

// What handlers mounted on the admin side from outside this package (the
// operator's console, see MountAdmin) use of the server beside what
// browser.go exports: connect links, force refresh, the status of an error
// code. They are the same code paths the API and the admin API take, so a
// connection refreshed or sent a link from the console is treated exactly
// as through the API (and deleted through DeleteConnection, as the API and
// the BFF delete).

import (
	"context"
	"errors"
	"net/http"

	"github.com/spotoken/spotoken"
)

// HTTPStatus is the HTTP status the API answers an error of code with: the
// one table, for pages that map errors the same way.
func HTTPStatus(code string) int {
	if status, ok := statuses[code]; ok {
		return status
	}
	return http.StatusBadRequest
}

// NewConnectLink mints a one-time connect link for the connection key
// (which need not exist yet), valid for Config.SessionTTL: for scopes, or,
// when scopes is nil, the connection's scopes, or the app's default scopes
// for a new connection. returnTo, when set, must be of one of the app's
// return-to origins. Errors: not_found for no such app, invalid_request for
// a malformed id, scope or return_to, app_misconfigured for an app without
// this server's redirect URI.
func (s *Server) NewConnectLink(ctx context.Context, key spotoken.ConnectionKey, scopes []string, returnTo string) (ConnectSession, error) {
	if err := checkConnectionID(key.ID); err != nil {
		return ConnectSession{}, err
	}
	if key.ID == appSelf {
		return ConnectSession{}, spotoken.Errorf(spotoken.EInvalid, "connection id %q names the app itself; choose another id", appSelf)
	}
	if err := checkScopeNames(scopes); err != nil {
		return ConnectSession{}, err
	}
	app, err := s.cfg.Store.App(ctx, key.AppID)
	if errors.Is(err, spotoken.ErrNotFound) {
		return ConnectSession{}, spotoken.Errorf(spotoken.ENotFound, "no app %q", truncate(key.AppID, 64))
	}
	if err != nil {
		return ConnectSession{}, err
	}
	returnTo, err = checkReturnTo(app, returnTo)
	if err != nil {
		return ConnectSession{}, err
	}
	fallback := app.DefaultScopes
	if c, err := s.cfg.Store.Connection(ctx, key); err == nil {
		fallback = c.Scopes
	} else if !errors.Is(err, spotoken.ErrNotFound) {
		return ConnectSession{}, err
	}
	return s.mintSession(ctx, app, key.ID, linkScopes(scopes, fallback), returnTo, s.cfg.SessionTTL)
}

// RefreshConnection refreshes the connection's access token with Spotify
// now, as force_refresh does and within the same per-connection limit
// (rate_limited with the time to wait past it); the token is never handed
// out. A refusal that moved the connection to needs_reauth is not an error
// here: the connection shows it. not_found if there is no such connection.
func (s *Server) RefreshConnection(ctx context.Context, key spotoken.ConnectionKey) error {
	if err := checkConnectionID(key.ID); err != nil {
		return err
	}
	if _, err := s.cfg.Store.Connection(ctx, key); errors.Is(err, spotoken.ErrNotFound) {
		return spotoken.Errorf(spotoken.ENotFound, "no connection %s", key)
	} else if err != nil {
		return err
	}
	if wait := s.forceAllowed(key); wait > 0 {
		return &spotoken.Error{Code: spotoken.ERateLimited, Message: "force_refresh is limited per connection; try again later", RetryAfter: wait}
	}
	if _, err := s.cfg.Tokens.Refresh(ctx, key); err != nil && !errors.Is(err, spotoken.ErrNeedsReauth) {
		if errors.Is(err, spotoken.ErrNotFound) {
			return spotoken.Errorf(spotoken.ENotFound, "no connection %s", key)
		}
		return err
	}
	return nil
}

// CheckConnectionID reports, as an invalid_request error, an id that is not
// a connection id (1 to 128 letters, digits or . _ @ : -, not . or ..).
func CheckConnectionID(id string) error { return checkConnectionID(id) }

// AuditAs returns r naming who acts, for the audit trail's record of the
// changes the server makes for r (a connection deleted through
// DeleteConnection is recorded in the deletion's transaction, with this
// actor): actorType one of spotoken's Actor constants, id and label the
// credential's, appID the app of an app's credential. Without the audit
// trail it returns r as it is.
func (s *Server) AuditAs(r *http.Request, actorType, id, label, appID string) *http.Request {
	if s.cfg.Audit == nil {
		return r
	}
	rec := s.auditActor(r, nil, ClientIP(r, s.cfg.TrustedProxies))
	rec.ActorType, rec.ActorID, rec.ActorLabel, rec.AppID = actorType, id, label, appID
	return withNote(r, rec)
}
