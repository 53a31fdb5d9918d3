package server

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/time/rate"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/refresh"
)

// maxMinTTL is the longest min_ttl a token request may ask: Spotify's
// access tokens live an hour, so more could never be met.
const maxMinTTL = 3300

func connectionKey(r *http.Request, key *spotoken.APIKey) (spotoken.ConnectionKey, error) {
	id := r.PathValue("id")
	if err := checkConnectionID(id); err != nil {
		return spotoken.ConnectionKey{}, err
	}
	return spotoken.ConnectionKey{AppID: key.AppID, ID: id}, nil
}

// notFound is the answer for a connection the key's app does not have,
// whether it exists for another app or not at all.
func notFound(id string) error {
	return spotoken.Errorf(spotoken.ENotFound, "no connection %q", id)
}

func (s *Server) handleListConnections(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error {
	q := r.URL.Query()
	for name, v := range q {
		if len(v) > 1 {
			return spotoken.Errorf(spotoken.EInvalid, "parameter %s is repeated", name)
		}
		if name != "state" && name != "limit" && name != "cursor" {
			return spotoken.Errorf(spotoken.EInvalid, "unknown parameter %q; use state, limit, cursor", truncate(name, 32))
		}
	}
	filter := spotoken.ConnectionFilter{AppID: key.AppID, State: spotoken.State(q.Get("state")), After: q.Get("cursor"), Limit: 100}
	if filter.State != "" && !filter.State.Valid() {
		return spotoken.Errorf(spotoken.EInvalid, "state must be active, needs_reauth or revoked")
	}
	if filter.After != "" {
		if err := checkConnectionID(filter.After); err != nil {
			return spotoken.Errorf(spotoken.EInvalid, "cursor is not a cursor this API returned")
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return spotoken.Errorf(spotoken.EInvalid, "limit must be an integer from 1 to 1000")
		}
		filter.Limit = n
	}
	want := filter.Limit
	filter.Limit++ // one more tells whether there is a next page
	cs, err := s.cfg.Store.Connections(r.Context(), filter)
	if err != nil {
		return err
	}
	window, err := s.rateLimitWindow(r, key.AppID)
	if err != nil {
		return err
	}
	out := ConnectionList{Connections: make([]ConnectionView, 0, min(len(cs), want))}
	for i, c := range cs {
		if i == want {
			out.NextCursor = cs[want-1].ID
			break
		}
		v := NewConnectionView(c)
		v.RateLimitedUntil = window
		out.Connections = append(out.Connections, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleGetConnection(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error {
	ck, err := connectionKey(r, key)
	if err != nil {
		return err
	}
	c, err := s.cfg.Store.Connection(r.Context(), ck)
	if errors.Is(err, spotoken.ErrNotFound) {
		return notFound(ck.ID)
	}
	if err != nil {
		return err
	}
	v := NewConnectionView(c)
	if v.RateLimitedUntil, err = s.rateLimitWindow(r, ck.AppID); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// rateLimitWindow is the app's rate-limit window for its views.
func (s *Server) rateLimitWindow(r *http.Request, appID string) (*time.Time, error) {
	until, err := s.cfg.Store.RateLimitedUntil(r.Context(), appID)
	if err != nil {
		return nil, fmt.Errorf("read the rate-limit window of app %s: %w", appID, err)
	}
	return RateLimitWindow(until, s.cfg.Now()), nil
}

func (s *Server) handleDeleteConnection(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error {
	ck, err := connectionKey(r, key)
	if err != nil {
		return err
	}
	if err := s.deleteConnection(r, ck, "deleted"); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteConnection deletes the connection, erasing its sealed tokens, with a
// connection.revoked event giving reason; the API, the dashboard and a
// browser app's sign-out everywhere all delete through it. With the audit
// trail, the deletion's record is written in its transaction.
func (s *Server) deleteConnection(r *http.Request, ck spotoken.ConnectionKey, reason string) error {
	ctx := r.Context()
	if rec, ok := s.changeRecord(r, spotoken.AuditConnectionDelete, ck); ok {
		rec.Detail = map[string]string{"reason": reason}
		ctx = spotoken.WithAudit(ctx, rec)
	}
	err := s.cfg.Store.DeleteConnection(ctx, ck,
		spotoken.NewEvent(spotoken.EventConnectionRevoked, ck, s.cfg.Now(), map[string]any{"reason": reason}))
	if n := noteOf(r); n != nil && err == nil {
		n.done = true // recorded with the deletion
	}
	s.cfg.Tokens.Forget(ck)
	if errors.Is(err, spotoken.ErrNotFound) {
		return notFound(ck.ID)
	}
	if err != nil {
		return err
	}
	s.log.Info("connection deleted", "request_id", requestID(r), "connection", ck.String(), "reason", reason)
	return nil
}

type tokenRequest struct {
	MinTTL       *ttlSeconds `json:"min_ttl"`
	ForceRefresh bool        `json:"force_refresh"`
}

// minTTL is the request's min_ttl, zero when absent.
func (t tokenRequest) minTTL() time.Duration {
	if t.MinTTL == nil {
		return 0
	}
	return time.Duration(*t.MinTTL) * time.Second
}

// ttlSeconds is min_ttl: whole seconds from 0 to maxMinTTL.
type ttlSeconds int

var errMinTTL = spotoken.Errorf(spotoken.EInvalid, "min_ttl must be an integer number of seconds from 0 to %d", maxMinTTL)

// UnmarshalJSON accepts a JSON integer literal in range: not 1.5, 1e3 or "60".
func (s *ttlSeconds) UnmarshalJSON(b []byte) error {
	n, err := strconv.Atoi(string(b))
	if err != nil || n < 0 || n > maxMinTTL {
		return errMinTTL
	}
	*s = ttlSeconds(n)
	return nil
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error {
	ck, err := connectionKey(r, key)
	if err != nil {
		return err
	}
	var req tokenRequest
	if err := decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	var at refresh.AccessToken
	if req.ForceRefresh {
		if wait := s.forceAllowed(ck); wait > 0 {
			s.metrics.vend("force_limited")
			return &spotoken.Error{Code: spotoken.ERateLimited, Message: "force_refresh is limited per connection; try again later", RetryAfter: wait}
		}
		at, err = s.cfg.Tokens.Refresh(r.Context(), ck)
		if errors.Is(err, spotoken.ErrNotFound) {
			s.forgetForce(ck)
		}
	} else {
		at, err = s.cfg.Tokens.Token(r.Context(), ck, req.minTTL())
	}
	if err != nil {
		s.metrics.vend(spotoken.ErrorCode(err))
		return s.tokenError(r, ck, err, true)
	}
	s.metrics.vend("ok")
	noteToken(r, at.Token)
	writeJSON(w, http.StatusOK, TokenResponse{
		AccessToken: at.Token.Reveal(), TokenType: "Bearer", ExpiresAt: at.Expiry.UTC(), Scope: at.Scopes.String(),
	})
	return nil
}

// tokenError turns a Tokens error into the API's answer: not found stays
// not found; needs_reauth carries a fresh connect link when links.
func (s *Server) tokenError(r *http.Request, ck spotoken.ConnectionKey, err error, links bool) error {
	switch {
	case errors.Is(err, spotoken.ErrNotFound):
		return notFound(ck.ID)
	case errors.Is(err, spotoken.ErrNeedsReauth) && links:
		var se *spotoken.Error
		errors.As(err, &se)
		return s.reconsent(r.Context(), ck, se, ErrorResponse{}, nil)
	}
	return err
}

// forceAllowed takes a force_refresh allowance for the connection and
// returns zero, or how long to wait for one. Each app holds at most
// Config.MaxForceLimiters allowances in memory, so one app's keys cannot
// grow the broker's memory or push another app's limiters out; past that,
// full (idle) ones of the same app are dropped, and if none is idle the
// request waits.
func (s *Server) forceAllowed(ck spotoken.ConnectionKey) time.Duration {
	now := s.cfg.Now()
	s.forceMu.Lock()
	app := s.force[ck.AppID]
	if app == nil {
		app = make(map[string]*rate.Limiter)
		s.force[ck.AppID] = app
	}
	l := app[ck.ID]
	if l == nil {
		if len(app) >= s.cfg.MaxForceLimiters {
			sweepLimiters(app, now)
		}
		if len(app) >= s.cfg.MaxForceLimiters {
			s.forceMu.Unlock()
			return s.cfg.ForceRefreshInterval
		}
		l = rate.NewLimiter(rate.Every(s.cfg.ForceRefreshInterval), 3)
		app[ck.ID] = l
	}
	s.forceMu.Unlock()
	if l.AllowN(now, 1) {
		return 0
	}
	res := l.ReserveN(now, 1)
	wait := res.DelayFrom(now)
	res.CancelAt(now)
	return time.Duration(math.Ceil(wait.Seconds())) * time.Second
}

// forgetForce drops the connection's force_refresh allowance (the
// connection does not exist: nothing to hold for it).
func (s *Server) forgetForce(ck spotoken.ConnectionKey) {
	s.forceMu.Lock()
	if app := s.force[ck.AppID]; app != nil {
		delete(app, ck.ID)
		if len(app) == 0 {
			delete(s.force, ck.AppID)
		}
	}
	s.forceMu.Unlock()
}

// sweepLimiters drops the limiters that are full again: forgetting them
// changes nothing.
func sweepLimiters(m map[string]*rate.Limiter, now time.Time) {
	for k, l := range m {
		if l.TokensAt(now) >= float64(l.Burst()) {
			delete(m, k)
		}
	}
}
