package server

// App tokens: POST /v1/app-token gives the app's own access token (the
// client-credentials grant, no user) for catalog calls, and
// ANY /v1/proxy/-/{path...} calls the Web API with it. "-" stands for the
// app itself where a connection id would be; connect sessions refuse it as
// a connection id, so no connection is ever shadowed by this route.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/refresh"
)

// AppTokens hands out apps' own access tokens: a *refresh.AppTokens.
type AppTokens interface {
	Token(ctx context.Context, appID string, minTTL time.Duration) (refresh.AccessToken, error)
	Refresh(ctx context.Context, appID string) (refresh.AccessToken, error)
	Invalidate(ctx context.Context, appID string, token spotoken.Secret) (refresh.AccessToken, error)
}

var _ AppTokens = (*refresh.AppTokens)(nil)

// appSelf is the path segment that names the app itself in /v1/proxy/-/.
const appSelf = "-"

var errNoAppTokens = spotoken.Errorf(spotoken.ENotFound, "app tokens are not enabled on this server")

func (s *Server) handleAppToken(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error {
	if s.cfg.AppTokens == nil {
		return errNoAppTokens
	}
	var req tokenRequest
	if err := decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	var at refresh.AccessToken
	var err error
	if req.ForceRefresh {
		// The app's own force_refresh allowance, apart from its connections'.
		if wait := s.forceAllowed(spotoken.ConnectionKey{AppID: key.AppID}); wait > 0 {
			s.metrics.vend("force_limited")
			return &spotoken.Error{Code: spotoken.ERateLimited, Message: "force_refresh is limited per app token; try again later", RetryAfter: wait}
		}
		at, err = s.cfg.AppTokens.Refresh(r.Context(), key.AppID)
	} else {
		at, err = s.cfg.AppTokens.Token(r.Context(), key.AppID, req.minTTL())
	}
	if err != nil {
		s.metrics.vend(spotoken.ErrorCode(err))
		return err
	}
	s.metrics.vend("ok")
	writeJSON(w, http.StatusOK, TokenResponse{AccessToken: at.Token.Reveal(), TokenType: "Bearer", ExpiresAt: at.Expiry.UTC(), Scope: ""})
	return nil
}

func (s *Server) handleAppProxy(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) (err error) {
	outcome := ""
	defer s.countProxy(&outcome, &err)
	if s.cfg.AppTokens == nil {
		return errNoAppTokens
	}
	target, endpoint, body, err := s.proxyRequest(w, r, proxyRest(r.URL.EscapedPath()))
	if err != nil {
		return err
	}
	if endpoint == "/v1/me" || strings.HasPrefix(endpoint, "/v1/me/") {
		return spotoken.Errorf(spotoken.EInvalid, "%s acts for a user, and an app token has none: call it through /v1/proxy/{connection id}/", endpoint)
	}
	at, err := s.cfg.AppTokens.Token(r.Context(), key.AppID, proxyMinTTL)
	if err != nil {
		return err
	}
	outcome = s.forward(w, r, appSubject{s, key.AppID}, at.Token, target, body, s.writeError, func(err error) error {
		if errors.Is(err, errPermissionsMissing) {
			return spotoken.Errorf(EInsufficientScope, "Spotify answered 401 Permissions missing: %s %s needs a user's token, and an app token has none; call it through /v1/proxy/{connection id}/", r.Method, endpoint)
		}
		return nil
	})
	return nil
}

// appSubject is the app itself, as the proxy's subject.
type appSubject struct {
	s     *Server
	appID string
}

func (a appSubject) invalidate(ctx context.Context, token spotoken.Secret) (refresh.AccessToken, error) {
	return a.s.cfg.AppTokens.Invalidate(ctx, a.appID, token)
}

func (a appSubject) answer(_ *http.Request, err error) error {
	if errors.Is(err, spotoken.ErrNotFound) {
		return spotoken.Errorf(spotoken.ENotFound, "no app %q", a.appID)
	}
	return err
}

func (a appSubject) String() string { return a.appID + "/" + appSelf }
