package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
)

// validConnectionID reports whether id can be the app's own id for its
// user: 1 to 128 of A-Z a-z 0-9 . _ @ : - (the regular expression
// ^[A-Za-z0-9._@:-]{1,128}$, which TestValidConnectionID holds it to; a
// loop, because every audited request checks its path's id, and the
// expression cost a vend half a microsecond).
func validConnectionID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '@', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

func checkConnectionID(id string) error {
	// "." and ".." would be path segments that HTTP clients and the router
	// resolve away: such a connection could never be read or deleted.
	if !validConnectionID(id) || id == "." || id == ".." {
		return spotoken.Errorf(spotoken.EInvalid, "connection_id must be 1 to 128 letters, digits or . _ @ : -, and not . or ..")
	}
	return nil
}

// accountsClients are the accounts-service clients of app, one per client
// secret to try (see accounts.AppClients): the current secret's first.
func (s *Server) accountsClients(app *spotoken.App) []*accounts.Client {
	return accounts.AppClients(accounts.Config{
		AuthURL: s.accounts.String() + "/authorize", TokenURL: s.accounts.String() + "/api/token",
		HTTPClient: s.cfg.HTTPClient, Now: s.cfg.Now,
	}, app)
}

type createSessionRequest struct {
	ConnectionID        string   `json:"connection_id"`
	Scopes              []string `json:"scopes"`
	ReturnTo            string   `json:"return_to"`
	RequireConfirmation bool     `json:"require_confirmation"`
	ShowDialog          *bool    `json:"show_dialog"`
}

func (s *Server) handleCreateSession(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error {
	var req createSessionRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if err := checkConnectionID(req.ConnectionID); err != nil {
		return err
	}
	if req.ConnectionID == appSelf {
		return spotoken.Errorf(spotoken.EInvalid, "connection_id %q names the app itself in /v1/proxy/-/; choose another id", appSelf)
	}
	if err := checkScopeNames(req.Scopes); err != nil {
		return err
	}
	app, err := s.cfg.Store.App(r.Context(), key.AppID)
	if err != nil {
		return err
	}
	returnTo, err := checkReturnTo(app, req.ReturnTo)
	if err != nil {
		return err
	}
	if req.RequireConfirmation && returnTo == "" {
		return spotoken.Errorf(spotoken.EInvalid, "require_confirmation needs a return_to: the confirm code travels there")
	}
	scopes := linkScopes(req.Scopes, app.DefaultScopes)
	opts := sessionOptions{requireConfirmation: req.RequireConfirmation, skipDialog: req.ShowDialog != nil && !*req.ShowDialog}
	sess, err := s.mintSessionWith(r.Context(), app, req.ConnectionID, scopes, returnTo, s.cfg.SessionTTL, opts)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, sess)
	return nil
}

// checkScopeNames checks that each requested scope is one Spotify defines
// (made-up ones would only be stored, then refused by Spotify), and that
// there are no more of them than Spotify defines.
func checkScopeNames(scopes []string) error {
	if len(scopes) > len(spotoken.SpotifyScopes) {
		return spotoken.Errorf(spotoken.EInvalid, "scopes: at most %d scopes (Spotify defines %d)", len(spotoken.SpotifyScopes), len(spotoken.SpotifyScopes))
	}
	for _, sc := range scopes {
		if !spotoken.KnownScope(sc) {
			return spotoken.Errorf(spotoken.EInvalid, "scopes: %q is not a scope Spotify defines (see docs/api.md)", truncate(sc, 64))
		}
	}
	return nil
}

// linkScopes are the scopes a connect link asks for: those requested, or
// fallback when the request named none (nil; an empty list asks for none).
func linkScopes(requested []string, fallback spotoken.Scopes) spotoken.Scopes {
	if requested == nil {
		return fallback.Normalize()
	}
	return spotoken.Scopes(requested).Normalize()
}

// checkReturnTo accepts an absolute http(s) URL whose origin the app
// allowlisted, so the connect flow is no open redirect.
func checkReturnTo(app *spotoken.App, raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" || len(raw) > 2048 {
		return "", spotoken.Errorf(spotoken.EInvalid, "return_to must be an absolute http(s) URL without credentials or fragment")
	}
	origin := strings.ToLower(u.Scheme + "://" + u.Host)
	for _, o := range app.ReturnToOrigins {
		if strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return u.String(), nil
		}
	}
	return "", spotoken.Errorf(spotoken.EInvalid, "return_to origin %s is not among the app's allowed origins", origin)
}

// sessionOptions are a connect session's choices beyond its connection,
// scopes and return_to.
type sessionOptions struct {
	requireConfirmation bool // hold the grant until the app confirms it
	skipDialog          bool // do not send show_dialog=true
}

// mintSession stores a one-time connect link for the connection, valid for ttl.
func (s *Server) mintSession(ctx context.Context, app *spotoken.App, connectionID string, scopes spotoken.Scopes, returnTo string, ttl time.Duration) (ConnectSession, error) {
	return s.mintSessionWith(ctx, app, connectionID, scopes, returnTo, ttl, sessionOptions{})
}

// mintSessionWith is mintSession with options. An app may have at most
// Config.MaxPending connect links and grants waiting at once.
func (s *Server) mintSessionWith(ctx context.Context, app *spotoken.App, connectionID string, scopes spotoken.Scopes, returnTo string, ttl time.Duration, opts sessionOptions) (ConnectSession, error) {
	if !slices.Contains(app.RedirectURIs, s.CallbackURL()) {
		return ConnectSession{}, spotoken.Errorf(spotoken.EAppMisconfigured,
			"app %s has no redirect URI %s; register it with Spotify and with 'spotoken apps' (the app has %s)",
			app.ID, s.CallbackURL(), strings.Join(app.RedirectURIs, ", "))
	}
	now := s.cfg.Now()
	expires := now.Add(ttl)
	token := newSessionToken(expires)
	p := &spotoken.PendingAuthorization{
		StateHash: pendingHash(domainSession, token), AppID: app.ID, ConnectionID: connectionID,
		Scopes: scopes, ReturnTo: returnTo, CreatedAt: now, ExpiresAt: expires,
		RequireConfirmation: opts.requireConfirmation, SkipDialog: opts.skipDialog,
	}
	err := s.cfg.Store.CreatePendingWithin(ctx, p, s.cfg.MaxPending)
	if errors.Is(err, spotoken.ErrLimitExceeded) {
		return ConnectSession{}, &spotoken.Error{Code: ELimitExceeded, RetryAfter: time.Minute,
			Message: fmt.Sprintf("app %s has %d connect links and grants pending, its limit; unused ones expire within %s", app.ID, s.cfg.MaxPending, s.cfg.SessionTTL)}
	}
	if err != nil {
		return ConnectSession{}, fmt.Errorf("store connect session: %w", err)
	}
	return ConnectSession{URL: s.public.String() + "/connect/" + token, ExpiresAt: p.ExpiresAt.UTC()}, nil
}

// reconsent is the error for a connection whose user must authorize again,
// carrying a fresh connect link for scopes (the connection's own when nil).
// A link minted for the same connection and scopes within linkReuse is
// handed out again instead (see reconsentLinks).
func (s *Server) reconsent(ctx context.Context, key spotoken.ConnectionKey, cause *spotoken.Error, body ErrorResponse, scopes spotoken.Scopes) error {
	asked := scopes.String()
	if scopes == nil {
		asked = ""
	}
	now := s.cfg.Now()
	if sess, ok := s.links.get(key, asked, now); ok {
		body.ConnectURL, body.ConnectURLExpiresAt = sess.URL, &sess.ExpiresAt
		return &apiError{err: cause, body: body}
	}
	if s.links.atCap(key.AppID, now) {
		return &apiError{err: cause, body: body}
	}
	app, err := s.cfg.Store.App(ctx, key.AppID)
	if err != nil {
		return err
	}
	if scopes == nil {
		if c, err := s.cfg.Store.Connection(ctx, key); err == nil {
			scopes = c.Scopes
		}
	}
	if sess, err := s.mintSession(ctx, app, key.ID, scopes, "", s.cfg.SessionTTL); err == nil {
		s.links.put(key, asked, sess, now)
		body.ConnectURL, body.ConnectURLExpiresAt = sess.URL, &sess.ExpiresAt
	} else {
		if spotoken.ErrorCode(err) == ELimitExceeded {
			s.links.metCap(key.AppID, now)
		}
		s.log.Warn("mint re-consent link", "connection", key.String(), "err", err)
	}
	return &apiError{err: cause, body: body}
}

// Connect-flow outcomes shown to the user (and sent to return_to).
const (
	flowConnected      = "connected"
	flowInvalidSession = "invalid_session"
	flowSessionUsed    = "session_used"
	flowSessionExpired = "session_expired"
	flowAccessDenied   = "access_denied"
	flowInvalidState   = "invalid_state"
	flowStateUsed      = "state_used"
	flowStateExpired   = "state_expired"
	flowStateMismatch  = "state_mismatch"
	flowExchangeFailed = "exchange_failed"
	flowProfileFailed  = "profile_failed"
	flowNotAllowlisted = "user_not_allowlisted"
	flowRateLimited    = "rate_limited"
	flowServerError    = "server_error"
	flowUnavailable    = "unavailable"
	// flowConfirm: the grant waits for the app's confirmation; the
	// redirect to return_to carries the confirm code.
	flowConfirm = "confirmation_required"
)

var flowMessages = map[string]string{
	flowInvalidSession: "This connect link is not valid. Ask the app for a new one.",
	flowSessionUsed:    "This connect link was already used. Ask the app for a new one.",
	flowSessionExpired: "This connect link has expired. Ask the app for a new one.",
	flowAccessDenied:   "You declined to connect your Spotify account. Nothing was stored.",
	flowInvalidState:   "This sign-in response is not one we started. Nothing was stored; start again from the app.",
	flowStateUsed:      "This sign-in response was already used. Nothing more was stored; start again from the app if needed.",
	flowStateExpired:   "The sign-in took too long and expired. Nothing was stored; start again from the app.",
	flowStateMismatch:  "This sign-in was started in another browser or tab. Nothing was stored; start again from the app.",
	flowExchangeFailed: "Spotify did not complete the sign-in. Nothing was stored; try again from the app.",
	flowProfileFailed:  "Spotify did not let us read your profile. Nothing was stored; try again from the app.",
	flowNotAllowlisted: "This app is in Spotify's development mode, which lets only the Spotify accounts its owner has added use it, and yours is not one of them. " +
		"Nothing was stored. The app's owner must add your account (your name and the email address of your Spotify account) under User Management " +
		"in the Spotify developer dashboard; development mode serves up to 5 users. Then connect again from the app.",
	flowRateLimited: "Spotify is limiting this app's requests for now. Nothing was stored; try again from the app later.",
	flowServerError: "Something went wrong on our side. Nothing was stored; try again later.",
	flowUnavailable: "We cannot reach our database right now. Nothing was stored; try again in a minute.",
}

// stateCookie names the cookie that binds a state to the browser that
// started the flow (RFC 6749 §10.12); several flows can run at once.
func stateCookie(state string) string {
	h := sha256.Sum256([]byte("spotoken cookie\x00" + state))
	return "spotoken_state_" + hex.EncodeToString(h[:6])
}

func stateCookieValue(state string) string {
	h := sha256.Sum256([]byte("spotoken browser\x00" + state))
	return hex.EncodeToString(h[:])
}

// callbackPath is the path at which browsers reach /callback: under the
// public URL's path when a proxy publishes spotoken under one.
func (s *Server) callbackPath() string { return s.public.Path + "/callback" }

// headOnly answers a HEAD request (a link checker, a chat app's preview)
// without touching the one-time session or state: HEAD is safe (RFC 9110
// §9.2.1), and consuming on it would leave the user a dead link.
func headOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodHead {
		return false
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusOK)
	return true
}

func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request) {
	if headOnly(w, r) {
		return
	}
	token := r.PathValue("session")
	unknown := flowInvalidSession
	if sessionTokenExpired(token, s.cfg.Now()) {
		unknown = flowSessionExpired // the janitor deleted it after it expired
	}
	sess, ok := s.consume(w, r, domainSession, token, [3]string{unknown, flowSessionUsed, flowSessionExpired})
	if !ok {
		return
	}
	s.links.forget(spotoken.ConnectionKey{AppID: sess.AppID, ID: sess.ConnectionID})
	app, err := s.cfg.Store.App(r.Context(), sess.AppID)
	if err != nil {
		s.log.Error("connect: load app", "request_id", requestID(r), "app", sess.AppID, "err", err)
		s.flowFailed(w, r, err)
		return
	}
	state, verifier := randomToken(""), accounts.GenerateVerifier()
	now := s.cfg.Now()
	p := &spotoken.PendingAuthorization{
		StateHash: pendingHash(domainState, state), AppID: sess.AppID, ConnectionID: sess.ConnectionID,
		Verifier: spotoken.Secret(verifier), Scopes: sess.Scopes, RedirectURI: s.CallbackURL(),
		ReturnTo: sess.ReturnTo, CreatedAt: now, ExpiresAt: now.Add(s.cfg.StateTTL),
		RequireConfirmation: sess.RequireConfirmation, SkipDialog: sess.SkipDialog,
	}
	if err := s.cfg.Store.CreatePending(r.Context(), p); err != nil {
		s.log.Error("connect: store state", "request_id", requestID(r), "err", err)
		s.flowFailed(w, r, err)
		return
	}
	s.authorize(w, r, app, state, verifier, sess.Scopes, !sess.SkipDialog)
}

// authorize sets the cookie that binds state to this browser and sends the
// browser to Spotify's consent page.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, app *spotoken.App, state, verifier string, scopes spotoken.Scopes, showDialog bool) {
	http.SetCookie(w, &http.Cookie{
		Name: stateCookie(state), Value: stateCookieValue(state), Path: s.callbackPath(),
		MaxAge: int(s.cfg.StateTTL.Seconds()), HttpOnly: true, Secure: s.public.Scheme == "https", SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	s.metrics.connectFlow("started")
	// show_dialog=true makes Spotify show its consent page even to a user
	// who approved the app before, naming the account being linked: a
	// link forwarded to someone else is then not followed unawares.
	http.Redirect(w, r, s.accountsClients(app)[0].AuthCodeURL(state, s.CallbackURL(), scopes, verifier, showDialog), http.StatusFound)
}

// consume uses up the pending authorization that token names in domain (a
// connect session or a state), or shows the user why it cannot: outcomes
// are the flow outcomes for unknown, used and expired. A session has no
// verifier and a state has one, a second check that neither passes for the
// other.
func (s *Server) consume(w http.ResponseWriter, r *http.Request, domain, token string, outcomes [3]string) (*spotoken.PendingAuthorization, bool) {
	p, err := s.cfg.Store.ConsumePending(r.Context(), pendingHash(domain, token))
	outcome := ""
	switch {
	case errors.Is(err, spotoken.ErrNotFound):
		outcome = outcomes[0]
	case errors.Is(err, spotoken.ErrAlreadyUsed):
		outcome = outcomes[1]
	case errors.Is(err, spotoken.ErrExpired):
		outcome = outcomes[2]
	case err != nil:
		s.log.Error("consume pending authorization", "request_id", requestID(r), "err", err)
		s.flowFailed(w, r, err)
		return nil, false
	case (p.Verifier != "") != (domain == domainState):
		outcome = outcomes[0]
	default:
		return p, true
	}
	s.flowPage(w, r, http.StatusBadRequest, outcome, "")
	return nil, false
}

func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request) {
	if headOnly(w, r) {
		return
	}
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 256 {
		s.flowPage(w, r, http.StatusBadRequest, flowInvalidState, "")
		return
	}
	p, ok := s.consume(w, r, domainState, state, [3]string{flowInvalidState, flowStateUsed, flowStateExpired})
	if !ok {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: stateCookie(state), Value: "", Path: s.callbackPath(), MaxAge: -1, HttpOnly: true,
		Secure: s.public.Scheme == "https", SameSite: http.SameSiteLaxMode})
	if c, err := r.Cookie(stateCookie(state)); err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(stateCookieValue(state))) != 1 {
		s.flowResult(w, r, p, flowStateMismatch, "")
		return
	}
	if e := q.Get("error"); e != "" {
		outcome := flowAccessDenied
		if e != "access_denied" {
			s.log.Warn("callback: Spotify answered an error", "request_id", requestID(r), "error", truncate(e, 64))
			outcome = flowExchangeFailed
		}
		s.flowResult(w, r, p, outcome, "")
		return
	}
	code := q.Get("code")
	if code == "" || len(code) > 2048 {
		s.flowResult(w, r, p, flowExchangeFailed, "")
		return
	}
	key := spotoken.ConnectionKey{AppID: p.AppID, ID: p.ConnectionID}
	outcome, confirm := s.completeConnection(r, &key, p, code)
	if outcome == flowUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(int(storeRetryAfter.Seconds())))
	}
	s.flowResultWith(w, r, p, outcome, key.ID, confirm)
}

// completeConnection exchanges the code, reads the user's profile and
// stores the grant, creating the connection or replacing its grant; or,
// when the session requires the app's confirmation, holds the grant apart
// and returns the confirm code. For a browser sign-in, whose connection is
// named only now that the Spotify user is known, it sets key.ID.
func (s *Server) completeConnection(r *http.Request, key *spotoken.ConnectionKey, p *spotoken.PendingAuthorization, code string) (outcome, confirm string) {
	ctx := r.Context()
	app, err := s.cfg.Store.App(ctx, key.AppID)
	if err != nil {
		s.log.Error("callback: load app", "request_id", requestID(r), "app", key.AppID, "err", err)
		return flowFailure(err), ""
	}
	// The exchange is a token request: none inside the app's rate-limit
	// window (DESIGN §3.4), which a 429 here opens for every replica.
	if until, err := s.cfg.Store.RateLimitedUntil(ctx, app.ID); err != nil {
		s.log.Error("callback: read the app's rate-limit window", "request_id", requestID(r), "app", app.ID, "err", err)
		return flowFailure(err), ""
	} else if until.After(s.cfg.Now()) {
		s.log.Warn("callback: the app is rate-limited at Spotify; no code exchange", "request_id", requestID(r), "connection", key.String(), "until", until)
		return flowRateLimited, ""
	}
	// While the app's client secret is rotated, the exchange falls back to
	// the previous secret if Spotify refuses the new one.
	grant, err := accounts.FirstAccepted(s.accountsClients(app), func(c *accounts.Client) (*accounts.Grant, error) {
		return c.Exchange(ctx, code, p.RedirectURI, p.Verifier.Reveal())
	})
	if err == nil && grant.RefreshToken == "" {
		err = errors.New("the token response has no refresh token")
	}
	var ae *accounts.Error
	if errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests {
		if _, werr := s.cfg.Store.ExtendRateLimit(ctx, app.ID, s.cfg.Now().Add(max(ae.RetryAfter, time.Second))); werr != nil {
			s.log.Error("callback: record the app's rate-limit window", "request_id", requestID(r), "app", app.ID, "err", werr)
		}
		s.log.Warn("callback: Spotify rate-limited the code exchange", "request_id", requestID(r), "connection", key.String(), "retry_after", ae.RetryAfter)
		return flowRateLimited, ""
	}
	if err != nil {
		s.log.Warn("callback: code exchange failed", "request_id", requestID(r), "connection", key.String(), "err", err)
		return flowExchangeFailed, ""
	}
	me, err := s.profile(ctx, grant.AccessToken)
	if errors.Is(err, errProfileForbidden) {
		s.log.Warn("callback: Spotify refused the user: the app is in development mode and the user is not on its allowlist",
			"request_id", requestID(r), "connection", key.String())
		return flowNotAllowlisted, ""
	}
	if err != nil {
		s.log.Warn("callback: reading the Spotify profile failed", "request_id", requestID(r), "connection", key.String(), "err", err)
		return flowProfileFailed, ""
	}
	if p.Login != "" {
		if key.ID, err = s.loginConnection(p, me.ID); err != nil {
			s.log.Error("callback: name the connection of a browser sign-in", "request_id", requestID(r), "app", key.AppID, "login", p.Login, "err", err)
			return flowServerError, ""
		}
	}
	scopes := grant.Scopes
	if scopes == nil {
		scopes = p.Scopes
	}
	if p.RequireConfirmation {
		confirm = randomToken("cc_")
		g := &spotoken.PendingGrant{CodeHash: pendingHash(domainConfirm, confirm), AppID: key.AppID, ConnectionID: key.ID,
			SpotifyUserID: me.ID, DisplayName: me.DisplayName, Scopes: scopes, Token: grant.Token(),
			ExpiresAt: s.cfg.Now().Add(s.cfg.ConfirmTTL)}
		if err := s.cfg.Store.CreatePendingGrant(ctx, g); err != nil {
			s.log.Error("callback: store the grant awaiting confirmation", "request_id", requestID(r), "connection", key.String(), "err", err)
			return flowFailure(err), ""
		}
		s.log.Info("connection authorized, awaiting the app's confirmation", "request_id", requestID(r), "connection", key.String())
		return flowConfirm, confirm
	}
	if err := s.applyGrant(s.userActor(r, me.ID), *key, grant.Token(), scopes, me.ID, me.DisplayName); err != nil {
		s.log.Error("callback: store connection", "request_id", requestID(r), "connection", key.String(), "err", err)
		return flowFailure(err), ""
	}
	s.log.Info("connection authorized", "request_id", requestID(r), "connection", key.String(), "scopes", scopes.String())
	return flowConnected, ""
}

// applyGrant makes a user's new grant the connection's, creating it or
// replacing its grant, with a connection.created or .reauthorized event.
func (s *Server) applyGrant(ctx context.Context, key spotoken.ConnectionKey, token spotoken.Token, scopes spotoken.Scopes, userID, displayName string) error {
	now := s.cfg.Now()
	grantTo := func(c *spotoken.Connection) {
		c.Token = token
		c.Scopes, c.State = scopes, spotoken.StateActive
		c.SpotifyUserID, c.DisplayName = userID, displayName
		c.ConsentedAt, c.GrantExpiresAt, c.ExpiryWarnedAt = now, now.Add(s.cfg.GrantLifetime), time.Time{}
		c.LastErrorCode, c.ConsecutiveFailures, c.NextAttemptAt, c.RefreshUnknownAt = "", 0, time.Time{}, time.Time{}
	}
	data := map[string]any{"spotify_user_id": userID, "scopes": scopes, "grant_expires_at": now.Add(s.cfg.GrantLifetime).UTC()}
	var err error
	for range 3 {
		c := &spotoken.Connection{AppID: key.AppID, ID: key.ID, CreatedAt: now}
		grantTo(c)
		err = s.cfg.Store.CreateConnection(s.flowAudit(ctx, spotoken.AuditConnect, key, userID, scopes), c,
			spotoken.NewEvent(spotoken.EventConnectionCreated, key, now, data))
		if !errors.Is(err, spotoken.ErrConflict) {
			break
		}
		_, err = s.cfg.Store.UpdateConnection(s.flowAudit(ctx, spotoken.AuditReconsent, key, userID, scopes), key, func(c *spotoken.Connection) ([]spotoken.Event, error) {
			grantTo(c)
			return []spotoken.Event{spotoken.NewEvent(spotoken.EventConnectionReauthorized, key, now, data)}, nil
		})
		if !errors.Is(err, spotoken.ErrNotFound) { // deleted meanwhile: create it again
			break
		}
	}
	if err != nil {
		return err
	}
	s.cfg.Tokens.Forget(key)
	return nil
}

type spotifyUser struct {
	ID          string `json:"id"`
	DisplayName string `json:"display_name"`
}

// errProfileForbidden: /v1/me answered 403 to a token that the code
// exchange had just issued. /v1/me needs no scope and exists in every mode,
// so the one thing such a 403 can mean is that the app is in development
// mode and the user is not on its allowlist. The status decides, not the
// body: Spotify's answer is plain text ("User not registered in the
// Developer Dashboard"), and neither its wording nor its shape is needed.
var errProfileForbidden = errors.New("GET /v1/me: 403: the user is not on the app's allowlist")

// profile reads the user's Spotify id and display name from /v1/me.
func (s *Server) profile(ctx context.Context, token spotoken.Secret) (*spotifyUser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.api.String()+"/v1/me", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token.Reveal())
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /v1/me: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("GET /v1/me: %w", err)
	}
	if resp.StatusCode == http.StatusForbidden {
		return nil, errProfileForbidden
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/me: status %d", resp.StatusCode)
	}
	var me spotifyUser
	if err := json.Unmarshal(body, &me); err != nil || me.ID == "" {
		return nil, fmt.Errorf("GET /v1/me: the response has no user id")
	}
	return &me, nil
}

// flowResult ends the flow: a redirect to the app's return_to with the
// outcome, or spotoken's own page. A flow that failed once the user was
// back from Spotify is a connect.failed event for the app, with the
// outcome as its reason.
func (s *Server) flowResult(w http.ResponseWriter, r *http.Request, p *spotoken.PendingAuthorization, outcome, connectionID string) {
	s.flowResultWith(w, r, p, outcome, connectionID, "")
}

// flowResultWith is flowResult with the confirm code of a grant that waits
// for the app's confirmation.
func (s *Server) flowResultWith(w http.ResponseWriter, r *http.Request, p *spotoken.PendingAuthorization, outcome, connectionID, confirm string) {
	if outcome != flowConnected && outcome != flowConfirm {
		key := spotoken.ConnectionKey{AppID: p.AppID, ID: p.ConnectionID}
		ev := spotoken.NewEvent(spotoken.EventConnectFailed, key, s.cfg.Now(), map[string]any{"reason": outcome})
		if err := s.cfg.Store.AppendEvents(r.Context(), ev); err != nil {
			s.log.Error("callback: record connect.failed", "request_id", requestID(r), "connection", key.String(), "err", err)
		}
	}
	if p.Login != "" {
		s.finishLogin(w, r, p, outcome, connectionID)
		return
	}
	if p.ReturnTo == "" {
		status := http.StatusOK
		switch outcome {
		case flowConnected:
		case flowServerError:
			status = http.StatusInternalServerError
		case flowUnavailable:
			status = http.StatusServiceUnavailable
		default:
			status = http.StatusBadRequest
		}
		s.flowPage(w, r, status, outcome, connectionID)
		return
	}
	u, err := url.Parse(p.ReturnTo)
	if err != nil { // checked when the session was made
		s.flowPage(w, r, http.StatusInternalServerError, flowServerError, "")
		return
	}
	s.metrics.connectFlow(outcome)
	q := u.Query()
	q.Set("connection_id", p.ConnectionID)
	switch outcome {
	case flowConnected:
		q.Set("status", flowConnected)
	case flowConfirm:
		q.Set("status", flowConfirm)
		q.Set("confirm", confirm)
	default:
		q.Set("error", outcome)
		q.Set("error_description", flowMessages[outcome])
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// flowFailure is the flow outcome of a store error: unavailable while the
// database cannot be reached, else server_error.
func flowFailure(err error) string {
	if errors.Is(err, spotoken.ErrStoreUnavailable) {
		return flowUnavailable
	}
	return flowServerError
}

// flowFailed shows the user the page for a store error.
func (s *Server) flowFailed(w http.ResponseWriter, r *http.Request, err error) {
	if outcome := flowFailure(err); outcome == flowUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(int(storeRetryAfter.Seconds())))
		s.flowPage(w, r, http.StatusServiceUnavailable, outcome, "")
		return
	}
	s.flowPage(w, r, http.StatusInternalServerError, flowServerError, "")
}

// storeRetryAfter is the Retry-After of pages shown while the database
// cannot be reached.
const storeRetryAfter = 10 * time.Second

// newSessionToken is a connect session's token: cs_ and, in URL-safe
// base64, its expiry (unix seconds, big-endian) and 32 random bytes. The
// expiry is not secret; it lets a link that expired and was swept away
// say so, with nothing kept.
func newSessionToken(expires time.Time) string {
	b := make([]byte, 8+32)
	binary.BigEndian.PutUint64(b, uint64(expires.Unix()))
	rand.Read(b[8:])
	return "cs_" + base64.RawURLEncoding.EncodeToString(b)
}

// sessionTokenExpired reports whether token has newSessionToken's shape
// and an expiry at or before now.
func sessionTokenExpired(token string, now time.Time) bool {
	raw, ok := strings.CutPrefix(token, "cs_")
	if !ok || len(raw) != 54 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(b) != 40 {
		return false
	}
	return !now.Before(time.Unix(int64(binary.BigEndian.Uint64(b)), 0))
}
