package bff

import (
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/websession"
	"github.com/spotoken/spotoken/server"
)

// maxReturnTo bounds return_to.
const maxReturnTo = 2048

// parseReturnTo checks where a sign-in sends the browser back to: an
// absolute http(s) URL on one of the app's origins, without user
// information (no open redirect); empty means the first origin's root. A
// fragment is kept, as SPAs route with it.
func parseReturnTo(b *spotoken.BrowserApp, raw string) (string, error) {
	if raw == "" {
		return b.Origins[0] + "/", nil
	}
	bad := spotoken.Errorf(spotoken.EInvalid, "return_to must be an absolute http(s) URL of at most %d bytes on one of the app's origins", maxReturnTo)
	if len(raw) > maxReturnTo || strings.ContainsAny(raw, "\\\x00\r\n\t") {
		return "", bad
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", bad
	}
	origin := websession.Origin(u)
	if !b.AllowsOrigin(origin) {
		return "", spotoken.Errorf(spotoken.EInvalid, "return_to origin %s is not among the app's origins", truncate(origin, 80))
	}
	return u.String(), nil
}

// handleLogin starts a sign-in: GET /bff/{app}/login?return_to=URL, a
// navigation (no CSRF header), which ends at Spotify's consent page.
// Nothing is signed in here: the session starts at the end (FinishLogin),
// with a new id.
func (h *Handler) handleLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		// A link checker or a chat app's preview: nothing is started.
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		return
	}
	if err := h.login(w, r); err != nil {
		h.cfg.Server.WriteError(w, r, err)
	}
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) error {
	appID := r.PathValue("app")
	b, err := h.cfg.Store.BrowserApp(r.Context(), appID)
	if err != nil {
		if spotoken.ErrorCode(err) == spotoken.ENotFound {
			return spotoken.Errorf(spotoken.ENotFound, "App %q has no browser app: its BFF is off.", truncate(appID, 64))
		}
		return err
	}
	if wait, _ := h.logins.take(sha256.Sum256([]byte(b.AppID)), h.cfg.Now()); wait > 0 {
		h.log.Warn("bff: sign-ins over the app's limit", "request_id", server.RequestID(r), "app", b.AppID)
		return &spotoken.Error{Code: spotoken.ERateLimited, Message: "Too many sign-ins are starting for this app; try again shortly.", RetryAfter: wait}
	}
	q := r.URL.Query()
	for name, v := range q {
		if name != "return_to" || len(v) != 1 {
			return spotoken.Errorf(spotoken.EInvalid, "login takes one query parameter, return_to")
		}
	}
	returnTo, err := parseReturnTo(b, q.Get("return_to"))
	if err != nil {
		return err
	}
	// Signing in again signs out first: the session the browser had (its
	// cookie comes along when the page that sent it here is of the same
	// site) ends now, not only when the new one starts.
	m, err := h.manager(b.AppID)
	if err != nil {
		return err
	}
	if err := m.End(w, r); err != nil {
		return err
	}
	return h.cfg.Server.BeginLogin(w, r, server.Login{Kind: LoginKind, AppID: b.AppID, Scopes: b.Scopes, ReturnTo: returnTo})
}

// FinishLogin ends a sign-in: on success it starts the session (a new
// random id; the browser's previous session, if its cookie came along, is
// ended) for the Spotify user, ending with the grant at the latest, and
// sends the browser back to return_to; otherwise it sends the browser back
// with error and error_description, as a connect flow does.
func (h *Handler) FinishLogin(w http.ResponseWriter, r *http.Request, res *server.LoginResult) {
	u, err := url.Parse(res.ReturnTo)
	if err != nil || res.ReturnTo == "" {
		h.log.Error("bff: a sign-in has no return_to", "request_id", server.RequestID(r), "app", res.AppID)
		h.cfg.Server.WriteError(w, r, spotoken.Errorf(spotoken.EInternal, "sign-in without return_to"))
		return
	}
	outcome, description := res.Outcome, res.Description
	if res.Connected() {
		if err := h.start(w, r, res); err != nil {
			h.log.Error("bff: start a session", "request_id", server.RequestID(r), "app", res.AppID, "err", err)
			outcome, description = "server_error", "Something went wrong on our side; try again later."
		}
	}
	if outcome != "connected" {
		q := u.Query()
		q.Set("error", outcome)
		q.Set("error_description", description)
		u.RawQuery = q.Encode()
		h.log.Info("bff: sign-in failed", "request_id", server.RequestID(r), "app", res.AppID, "outcome", outcome)
	}
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// start starts the session of a successful sign-in.
func (h *Handler) start(w http.ResponseWriter, r *http.Request, res *server.LoginResult) error {
	m, err := h.manager(res.AppID)
	if err != nil {
		return err
	}
	c := res.Connection
	data, err := json.Marshal(sessionData{Connection: c.ID})
	if err != nil {
		return err
	}
	ws, err := m.Start(w, r, websession.SignIn{Kind: LoginKind, AppID: res.AppID, Subject: c.SpotifyUserID,
		Data: spotoken.Secret(data), ExpiresAt: c.GrantExpiresAt})
	if err != nil {
		return err
	}
	h.log.Info("bff: signed in", "request_id", server.RequestID(r), "app", res.AppID, "connection", c.ID,
		"session", fingerprint(ws.IDHash), "session_ends_at", ws.ExpiresAt)
	return nil
}
