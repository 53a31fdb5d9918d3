package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/websession"
)

// The dashboard is a server-rendered page at / for the people behind an
// app: they sign in with one of the app's API keys and see the app's
// connections, delete them and make connect links. It needs no JavaScript.
//
// A sign-in makes a session kept in the store by internal/websession, so
// it survives a restart and every replica sees it, named by an HttpOnly,
// SameSite=Strict cookie (__Host-spotoken_dashboard over https). It ends
// after an hour unused or twelve hours after sign-in. Each app keeps at
// most Config.DashboardSessions of them (1,000, and 100 per API key by
// default): signing in past the cap ends that app's (or that key's)
// soonest-ending session, never another app's. The API key itself is never
// stored, echoed or logged: the session keeps the key's SHA-256 hash, sealed,
// and looks the key up on every request, so revoking the key ends its
// sessions at once. Every POST carries the session's CSRF token and, when
// the browser sends Sec-Fetch-Site, Origin or Referer, must come from the
// dashboard's own origin.

const (
	dashCookie      = "spotoken_dashboard"
	dashKind        = "dashboard"
	dashSessionTTL  = 12 * time.Hour
	dashIdleTimeout = time.Hour
	dashPageSize    = 50
	dashMaxForm     = 16 << 10
	dashCSRFField   = "csrf_token"
)

// dashCSP allows the pages their inline style and nothing else: no script,
// no image, no frame, forms only to this origin.
const dashCSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

var dashTemplates = struct{ login, overview, problem, audit *template.Template }{
	login:    dashPage("templates/dashboard_login.html"),
	overview: dashPage("templates/dashboard_overview.html"),
	problem:  dashPage("templates/dashboard_problem.html"),
	audit:    dashPage("templates/dashboard_audit.html"),
}

// dashPage parses a page with the dashboard's layout.
func dashPage(name string) *template.Template {
	return template.Must(template.ParseFS(templateFS, "templates/dashboard_layout.html", name))
}

type dashboard struct {
	s *Server
	// base is the admin URL's path; links, form actions and redirects
	// start with it.
	base     string
	sessions *websession.Manager
}

// dashSession is a signed-in person: the stored session (scope
// dashboard:<app>, subject the API key's id) and its data. It holds the API
// key's hash, never the key.
type dashSession struct {
	ws    *spotoken.WebSession
	appID string
	keyID string
	dashData
}

// dashData is what a dashboard session keeps, sealed in the store.
type dashData struct {
	KeyHash  []byte `json:"key_hash"`
	KeyLabel string `json:"key_label"`
	// Flash is shown once, by the next page: the outcome of a POST. It may
	// hold a connect link, hence sealed.
	Flash *dashFlash `json:"flash,omitempty"`
}

func (d dashData) encode() spotoken.Secret {
	b, err := json.Marshal(d)
	if err != nil {
		panic(fmt.Sprintf("server: dashboard session data must marshal: %v", err))
	}
	return spotoken.Secret(b)
}

// dashFlash is what a POST tells the page it redirects to.
type dashFlash struct {
	Notice string    `json:"notice,omitempty"`
	Link   *dashLink `json:"link,omitempty"`
}

// dashLink is a connect link just made.
type dashLink struct {
	ConnectionID string `json:"connection_id"`
	URL          string `json:"url"`
	Expires      string `json:"expires"`
}

func newDashboard(s *Server) (*dashboard, error) {
	sessions, err := websession.New(websession.Config{
		Store: s.cfg.Store, Cookie: dashCookie, PublicURL: s.admin.String(), Kinds: []string{dashKind},
		IdleTimeout: dashIdleTimeout, MaxAge: dashSessionTTL, Limits: s.cfg.DashboardSessions,
		Now: s.cfg.Now, Logger: s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("server: dashboard: %w", err)
	}
	return &dashboard{s: s, base: s.admin.Path, sessions: sessions}, nil
}

func (d *dashboard) routes(m *http.ServeMux) {
	m.HandleFunc("GET /{$}", d.signedIn(d.handleOverview))
	m.HandleFunc("GET /dashboard/login", d.handleLoginPage)
	m.HandleFunc("POST /dashboard/login", d.handleLogin)
	m.HandleFunc("POST /dashboard/logout", d.handleLogout)
	m.HandleFunc("POST /dashboard/connect-link", d.signedIn(d.handleConnectLink))
	m.HandleFunc("POST /dashboard/connections/{id}/delete", d.signedIn(d.handleDelete))
	m.HandleFunc("GET /dashboard/connections/{id}/audit", d.signedIn(d.handleAudit))
}

// sweep deletes the web sessions (the dashboard's and any other) that have
// ended.
func (d *dashboard) sweep(ctx context.Context) {
	if n, err := d.s.cfg.Store.DeleteExpiredWebSessions(ctx, d.s.cfg.Now()); err != nil {
		d.s.log.Warn("delete ended web sessions", "err", err)
	} else if n > 0 {
		d.s.log.Debug("deleted ended web sessions", "count", n)
	}
}

// setHeaders sets the headers every dashboard response carries.
func setHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", dashCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// signedIn wraps a handler that needs a session: without one (none, expired,
// or its key revoked) the person is sent to the login page. A POST must
// also come from the dashboard's origin and carry the session's CSRF token.
func (d *dashboard) signedIn(h func(w http.ResponseWriter, r *http.Request, sess *dashSession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		setHeaders(w)
		if r.Method == http.MethodPost && !d.sessions.SameOrigin(r) {
			d.refuse(w, r)
			return
		}
		sess, err := d.session(r)
		if errors.Is(err, websession.ErrNoSession) || errors.Is(err, websession.ErrEnded) {
			loginURL := d.base + "/dashboard/login"
			if errors.Is(err, websession.ErrEnded) {
				d.sessions.ClearCookie(w)
				loginURL += "?ended=1"
			}
			http.Redirect(w, r, loginURL, http.StatusSeeOther)
			return
		}
		if err != nil {
			d.fail(w, r, err)
			return
		}
		if r.Method == http.MethodPost {
			if err := d.readForm(w, r); err != nil {
				d.fail(w, r, err)
				return
			}
			if !websession.CheckCSRF(sess.ws, r.PostForm.Get(dashCSRFField)) {
				d.refuse(w, r)
				return
			}
		}
		h(w, r, sess)
	}
}

// session returns the request's live session: websession.ErrNoSession
// without a cookie, websession.ErrEnded when it names no live session, or
// one whose API key was revoked or deleted (every session of that key is
// deleted then).
func (d *dashboard) session(r *http.Request) (*dashSession, error) {
	ws, err := d.sessions.Read(r)
	if err != nil {
		return nil, err
	}
	sess := &dashSession{ws: ws, appID: ws.AppID, keyID: ws.Subject}
	if err := json.Unmarshal([]byte(ws.Data.Reveal()), &sess.dashData); err != nil || len(sess.KeyHash) != 32 {
		d.s.log.Error("dashboard: a session's data does not decode", "request_id", requestID(r), "app", ws.AppID)
		return nil, websession.ErrEnded
	}
	ok, err := d.keyActive(r.Context(), sess)
	if err != nil {
		return nil, err
	}
	if !ok {
		if _, err := d.s.cfg.Store.DeleteWebSessions(r.Context(), ws.Scope, ws.Subject); err != nil {
			d.s.log.Warn("dashboard: end the sessions of a revoked key", "request_id", requestID(r), "err", err)
		}
		return nil, websession.ErrEnded
	}
	return sess, nil
}

// keyActive looks the session's API key up again: it must still exist, be
// the same key of the same app, and not be revoked.
func (d *dashboard) keyActive(ctx context.Context, sess *dashSession) (bool, error) {
	key, err := d.s.cfg.Store.APIKeyByHash(ctx, [32]byte(sess.KeyHash))
	if errors.Is(err, spotoken.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("dashboard: look up the session's API key: %w", err)
	}
	return subtle.ConstantTimeCompare(key.Hash[:], sess.KeyHash) == 1 &&
		key.ID == sess.keyID && key.AppID == sess.appID && !key.Revoked(), nil
}

// dashFields are the form fields each POST accepts.
var dashFields = map[string][]string{
	"/dashboard/login":                   {"api_key"},
	"/dashboard/logout":                  {dashCSRFField},
	"/dashboard/connect-link":            {dashCSRFField, "connection_id"},
	"/dashboard/connections/{id}/delete": {dashCSRFField},
}

// readForm parses a POST's URL-encoded form into r.PostForm, refusing other
// encodings, bodies over dashMaxForm, malformed escapes, and fields that
// are unknown or repeated.
func (d *dashboard) readForm(w http.ResponseWriter, r *http.Request) error {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/x-www-form-urlencoded" {
		return spotoken.Errorf(spotoken.EInvalid, "The form must be sent as application/x-www-form-urlencoded.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, dashMaxForm)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return spotoken.Errorf(ETooLarge, "The form is over %d bytes.", dashMaxForm)
		}
		return spotoken.Errorf(spotoken.EInvalid, "The form is malformed: it is not valid URL encoding.")
	}
	allowed := dashFields[strings.TrimPrefix(r.Pattern, "POST ")]
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

// refuse answers a POST that did not come from the dashboard's own page.
func (d *dashboard) refuse(w http.ResponseWriter, r *http.Request) {
	d.s.log.Warn("dashboard: refused a cross-site or stale form", "request_id", requestID(r), "route", r.Pattern)
	d.problem(w, r, http.StatusForbidden, "Request refused",
		"This form did not come from this dashboard, or the page was stale. Nothing was changed; go back to the dashboard, reload it and try again.")
}

// fail answers err with an error page: the client-safe message, and for an
// internal error only a request id, the detail going to the log.
func (d *dashboard) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := d.errorStatus(r, err)
	d.problem(w, r, status, http.StatusText(status), msg)
}

func (d *dashboard) errorStatus(r *http.Request, err error) (int, string) {
	code, msg := spotoken.ErrorCode(err), spotoken.ErrorMessage(err)
	if code == spotoken.EInternal {
		d.s.log.Error("dashboard: internal error", "request_id", requestID(r), "route", r.Pattern, "err", err)
		msg = "Internal error; the server log has the detail (request id " + requestID(r) + ")."
	}
	status, ok := statuses[code]
	if !ok {
		status = http.StatusBadRequest
	}
	return status, msg
}

func (d *dashboard) problem(w http.ResponseWriter, r *http.Request, status int, title, message string) {
	d.render(w, r, status, dashTemplates.problem, struct {
		Base, Title, Message string
	}{d.base, title, message})
}

// render executes t into a buffer first, so a template error is a clean 500.
func (d *dashboard) render(w http.ResponseWriter, r *http.Request, status int, t *template.Template, data any) {
	setHeaders(w)
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		d.s.log.Error("dashboard: render", "request_id", requestID(r), "err", err)
		http.Error(w, "Internal error.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

type loginData struct {
	Base, Notice, Error string
}

func (d *dashboard) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	data := loginData{Base: d.base}
	if r.URL.Query().Get("ended") != "" {
		data.Notice = "Your session ended: it expired, was unused for an hour, or its API key was revoked. Sign in again."
	}
	if r.URL.Query().Get("signed_out") != "" {
		data.Notice = "You are signed out."
	}
	d.render(w, r, http.StatusOK, dashTemplates.login, data)
}

// handleLogin signs a person in with one of the app's API keys, verified
// as the API verifies it, then looked up afresh as every later request does.
func (d *dashboard) handleLogin(w http.ResponseWriter, r *http.Request) {
	setHeaders(w)
	if !d.sessions.SameOrigin(r) {
		d.refuse(w, r)
		return
	}
	if err := d.readForm(w, r); err != nil {
		status, msg := d.errorStatus(r, err)
		d.render(w, r, status, dashTemplates.login, loginData{Base: d.base, Error: msg})
		return
	}
	raw := strings.TrimSpace(r.PostForm.Get("api_key"))
	if raw == "" {
		d.render(w, r, http.StatusBadRequest, dashTemplates.login,
			loginData{Base: d.base, Error: "Paste one of the app's API keys (they start with " + spotoken.APIKeyPrefix + ")."})
		return
	}
	authReq, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "/", nil)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	authReq.Header.Set("Authorization", "Bearer "+raw)
	key, err := d.s.auth.authenticate(authReq)
	var sess *dashSession
	if err == nil {
		hash := spotoken.HashAPIKey(spotoken.Secret(raw))
		sess = &dashSession{appID: key.AppID, keyID: key.ID, dashData: dashData{KeyHash: hash[:], KeyLabel: keyLabel(key)}}
		var ok bool
		if ok, err = d.keyActive(r.Context(), sess); err == nil && !ok {
			err = errInvalidKey
		}
	}
	if errors.Is(err, errInvalidKey) {
		d.s.log.Info("dashboard: sign-in refused", "request_id", requestID(r))
		d.render(w, r, http.StatusUnauthorized, dashTemplates.login,
			loginData{Base: d.base, Error: "That API key is not valid: it is mistyped, revoked, or not a spotoken API key."})
		return
	}
	if err != nil {
		d.fail(w, r, err)
		return
	}
	// A new session, never the browser's old one, which ends.
	if _, err := d.sessions.Start(w, r, websession.SignIn{Kind: dashKind, AppID: sess.appID, Subject: sess.keyID,
		Data: sess.dashData.encode()}); err != nil {
		d.fail(w, r, err)
		return
	}
	d.s.log.Info("dashboard: signed in", "request_id", requestID(r), "app", sess.appID, "key_id", sess.keyID)
	http.Redirect(w, r, d.base+"/", http.StatusSeeOther)
}

// keyLabel names a key for the page: its name and the start of its value,
// which the store keeps to tell keys apart.
func keyLabel(k *spotoken.APIKey) string {
	label := k.Prefix + "…"
	if k.Name != "" {
		label = k.Name + " (" + label + ")"
	}
	return label
}

func (d *dashboard) handleLogout(w http.ResponseWriter, r *http.Request) {
	d.signedIn(func(w http.ResponseWriter, r *http.Request, sess *dashSession) {
		if err := d.sessions.End(w, r); err != nil {
			d.fail(w, r, err)
			return
		}
		d.s.log.Info("dashboard: signed out", "request_id", requestID(r), "app", sess.appID, "key_id", sess.keyID)
		http.Redirect(w, r, d.base+"/dashboard/login?signed_out=1", http.StatusSeeOther)
	})(w, r)
}

// setFlash keeps f in the session for the next page. Failing to is logged:
// the action it reports was done, and the page says what it can.
func (d *dashboard) setFlash(r *http.Request, sess *dashSession, f *dashFlash) {
	if err := d.updateFlash(r.Context(), sess, f); err != nil {
		d.s.log.Warn("dashboard: keep a notice for the next page", "request_id", requestID(r), "err", err)
	}
}

// takeFlash returns the session's flash, if any, and removes it.
func (d *dashboard) takeFlash(r *http.Request, sess *dashSession) *dashFlash {
	f := sess.Flash
	if f == nil {
		return nil
	}
	if err := d.updateFlash(r.Context(), sess, nil); err != nil {
		d.s.log.Warn("dashboard: remove a notice shown", "request_id", requestID(r), "err", err)
	}
	return f
}

func (d *dashboard) updateFlash(ctx context.Context, sess *dashSession, f *dashFlash) error {
	_, err := d.sessions.Update(ctx, sess.ws, func(ws *spotoken.WebSession) error {
		var data dashData
		if err := json.Unmarshal([]byte(ws.Data.Reveal()), &data); err != nil {
			return fmt.Errorf("dashboard: decode session data: %w", err)
		}
		data.Flash = f
		ws.Data = data.encode()
		return nil
	})
	return err
}

const errBadConnectionID = "The connection ID must be 1 to 128 letters, digits or . _ @ : - (no spaces). Nothing was changed."

func (d *dashboard) handleConnectLink(w http.ResponseWriter, r *http.Request, sess *dashSession) {
	id := strings.TrimSpace(r.PostForm.Get("connection_id"))
	if checkConnectionID(id) != nil {
		d.overview(w, r, sess, overviewExtra{status: http.StatusBadRequest, err: errBadConnectionID, newID: truncate(id, 128)})
		return
	}
	app, err := d.s.cfg.Store.App(r.Context(), sess.appID)
	if err == nil {
		var cs ConnectSession
		cs, err = d.s.mintSession(r.Context(), app, id, app.DefaultScopes.Normalize(), "", d.s.cfg.SessionTTL)
		if err == nil {
			d.s.log.Info("dashboard: connect link created", "request_id", requestID(r), "connection", spotoken.ConnectionKey{AppID: app.ID, ID: id}.String())
			d.setFlash(r, sess, &dashFlash{Link: &dashLink{ConnectionID: id, URL: cs.URL, Expires: cs.ExpiresAt.UTC().Format(dashTimeFormat)}})
			http.Redirect(w, r, d.base+"/", http.StatusSeeOther)
			return
		}
	}
	status, msg := d.errorStatus(r, err)
	d.overview(w, r, sess, overviewExtra{status: status, err: msg, newID: id})
}

func (d *dashboard) handleDelete(w http.ResponseWriter, r *http.Request, sess *dashSession) {
	id := r.PathValue("id")
	if checkConnectionID(id) != nil {
		d.overview(w, r, sess, overviewExtra{status: http.StatusBadRequest, err: errBadConnectionID})
		return
	}
	r = d.auditActor(r, sess)
	if err := d.s.deleteConnection(r, spotoken.ConnectionKey{AppID: sess.appID, ID: id}, "deleted"); err != nil {
		status, msg := d.errorStatus(r, err)
		d.overview(w, r, sess, overviewExtra{status: status, err: msg})
		return
	}
	d.setFlash(r, sess, &dashFlash{Notice: fmt.Sprintf("Deleted connection %s: its tokens are erased, and the app was sent a connection.revoked event.", id)})
	http.Redirect(w, r, d.base+"/", http.StatusSeeOther)
}

func (d *dashboard) handleOverview(w http.ResponseWriter, r *http.Request, sess *dashSession) {
	q := r.URL.Query()
	for _, name := range []string{"state", "cursor"} {
		if len(q[name]) > 1 {
			d.problem(w, r, http.StatusBadRequest, "Bad request", "The parameter "+name+" is repeated.")
			return
		}
	}
	state, cursor := spotoken.State(q.Get("state")), q.Get("cursor")
	if state != "" && !state.Valid() {
		d.problem(w, r, http.StatusBadRequest, "Bad request", "The state filter must be active, needs_reauth or revoked.")
		return
	}
	if cursor != "" && checkConnectionID(cursor) != nil {
		d.problem(w, r, http.StatusBadRequest, "Bad request", "The cursor is not one this page made; go back to the first page.")
		return
	}
	d.overview(w, r, sess, overviewExtra{status: http.StatusOK, state: state, cursor: cursor, flash: d.takeFlash(r, sess)})
}

// overviewExtra is what a request adds to the overview: the filter, and
// the outcome of an action.
type overviewExtra struct {
	status int
	state  spotoken.State
	cursor string
	flash  *dashFlash
	err    string
	newID  string // the connection id to put back in the form after an error
}

type overviewData struct {
	Base, CSRF, AppID, KeyLabel string
	Now                         string
	DefaultScopes               string
	Counts                      []stateCount
	Total                       int
	States                      []stateOption
	State                       string
	Filtered                    bool
	Rows                        []dashRow
	FirstURL, NextURL           string
	Notice, Error               string
	Link                        *dashLink
	NewID                       string
	// RateLimited, while the app's rate-limit window at Spotify lasts,
	// says until when no token is refreshed.
	RateLimited *dashTime
}

type stateCount struct {
	State, Label, URL string
	Count             int
}

type stateOption struct {
	Value, Label string
	Selected     bool
}

// dashRow is a connection as the page shows it: strings only, so no token
// can reach the template.
type dashRow struct {
	ID, DisplayName, SpotifyUser, State, StateLabel, LastError string
	Scopes                                                     []string
	Expires, GrantExpires, LastRefresh                         dashTime
}

type dashTime struct {
	ISO, Text, Rel string
}

var stateLabels = map[spotoken.State]string{
	spotoken.StateActive:      "Active",
	spotoken.StateNeedsReauth: "Needs re-authorization",
	spotoken.StateRevoked:     "Revoked",
}

var dashStates = []spotoken.State{spotoken.StateActive, spotoken.StateNeedsReauth, spotoken.StateRevoked}

const dashTimeFormat = "2006-01-02 15:04 UTC"

func (d *dashboard) overview(w http.ResponseWriter, r *http.Request, sess *dashSession, x overviewExtra) {
	ctx := r.Context()
	app, err := d.s.cfg.Store.App(ctx, sess.appID)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	counts, err := d.s.cfg.Store.CountConnections(ctx)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	cs, err := d.s.cfg.Store.Connections(ctx, spotoken.ConnectionFilter{AppID: sess.appID, State: x.state, After: x.cursor, Limit: dashPageSize + 1})
	if err != nil {
		d.fail(w, r, err)
		return
	}
	until, err := d.s.cfg.Store.RateLimitedUntil(ctx, sess.appID)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	now := d.s.cfg.Now()
	data := overviewData{
		Base: d.base, CSRF: sess.ws.CSRF.Reveal(), AppID: sess.appID, KeyLabel: sess.KeyLabel,
		Now: now.UTC().Format(dashTimeFormat), DefaultScopes: app.DefaultScopes.Normalize().String(),
		State: string(x.state), Filtered: x.state != "" || x.cursor != "",
		Error: x.err, NewID: x.newID,
	}
	if x.flash != nil {
		data.Notice, data.Link = x.flash.Notice, x.flash.Link
	}
	if until.After(now) {
		t := newDashTime(until, now)
		data.RateLimited = &t
	}
	byState := map[spotoken.State]int{}
	for _, c := range counts {
		if c.AppID == sess.appID {
			byState[c.State] += c.Count
			data.Total += c.Count
		}
	}
	data.States = append(data.States, stateOption{Value: "", Label: "All states", Selected: x.state == ""})
	for _, st := range dashStates {
		data.Counts = append(data.Counts, stateCount{State: string(st), Label: stateLabels[st], Count: byState[st],
			URL: d.base + "/?" + url.Values{"state": {string(st)}}.Encode()})
		data.States = append(data.States, stateOption{Value: string(st), Label: stateLabels[st], Selected: x.state == st})
	}
	for i, c := range cs {
		if i == dashPageSize {
			q := url.Values{"cursor": {cs[dashPageSize-1].ID}}
			if x.state != "" {
				q.Set("state", string(x.state))
			}
			data.NextURL = d.base + "/?" + q.Encode()
			break
		}
		data.Rows = append(data.Rows, newDashRow(c, now))
	}
	if x.cursor != "" {
		data.FirstURL = d.base + "/"
		if x.state != "" {
			data.FirstURL += "?" + url.Values{"state": {string(x.state)}}.Encode()
		}
	}
	d.render(w, r, x.status, dashTemplates.overview, data)
}

func newDashRow(c *spotoken.Connection, now time.Time) dashRow {
	name := c.DisplayName
	if name == c.SpotifyUserID {
		name = ""
	}
	label := stateLabels[c.State]
	if label == "" {
		label = string(c.State)
	}
	return dashRow{
		ID: c.ID, DisplayName: name, SpotifyUser: c.SpotifyUserID,
		State: string(c.State), StateLabel: label, Scopes: c.Scopes.Normalize(), LastError: c.LastErrorCode,
		Expires: newDashTime(c.Token.Expiry, now), GrantExpires: newDashTime(c.GrantExpiresAt, now),
		LastRefresh: newDashTime(c.LastRefreshAt, now),
	}
}

func newDashTime(t, now time.Time) dashTime {
	if t.IsZero() {
		return dashTime{}
	}
	return dashTime{ISO: t.UTC().Format(time.RFC3339), Text: t.UTC().Format(dashTimeFormat), Rel: relTime(t.Sub(now))}
}

// relTime says how far off d is, roughly: "in 59 min", "3 h ago".
func relTime(d time.Duration) string {
	past := d < 0
	if past {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		return "now"
	case d < time.Hour:
		s = fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%d h", int(d/time.Hour))
	default:
		s = fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	if past {
		return s + " ago"
	}
	return "in " + s
}
