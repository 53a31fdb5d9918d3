package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/server"
)

// connectionPage is a connection's page: what spotoken knows of it, what
// happened to it, and what can be done.
type connectionPage struct {
	chrome
	ID, DisplayName, SpotifyUser, State, StateLabel string
	// Why explains a state that needs action (needs_reauth: why Spotify
	// refused, and what to do).
	Why          string
	Scopes       []string
	Token        tokenView
	RetryAt      when
	Failures     int
	LastError    string
	LastRefresh  when
	Consented    when
	GrantExpires when
	Created      when
	Updated      when
	RateLimited  when
	Timeline     []eventView
	OlderURL     string
	NewestURL    string
	flashView
	Back           string
	CanRedeliver   bool
	GrantExpiresIn string
	// AuditOn: the audit trail is kept; Audit is the connection's latest
	// records.
	AuditOn bool
	Audit   []auditView
}

// auditRows is how many audit records a connection's page shows.
const auditRows = 50

// auditView is an audit record as a connection's page shows it.
type auditView struct {
	At                                          when
	Action, Actor, ActorID, ClientIP, UserAgent string
	Route, Status, Upstream, Outcome            string
	// Fingerprint is the keyed fingerprint of the token handed out
	// (hmac-sha256:…), never the token.
	Fingerprint string
}

func newAuditView(rec *spotoken.AuditRecord, now time.Time) auditView {
	v := auditView{At: newWhen(rec.At, now), Action: string(rec.Action), Actor: rec.ActorType, ActorID: rec.ActorID,
		ClientIP: rec.ClientIP, UserAgent: rec.UserAgent, Route: strings.TrimSpace(rec.Method + " " + rec.Route),
		Outcome: rec.Outcome, Fingerprint: rec.Fingerprint}
	if rec.ActorLabel != "" {
		v.ActorID = rec.ActorLabel
	}
	if rec.Status != 0 {
		v.Status = strconv.Itoa(rec.Status)
	}
	if rec.UpstreamStatus != 0 {
		v.Upstream = strconv.Itoa(rec.UpstreamStatus)
	}
	return v
}

// handleOldAudit sends the dashboard's audit page of a connection to the
// connection's page, which shows its audit trail.
func (h *Handler) handleOldAudit(w http.ResponseWriter, r *http.Request, s *session) error {
	if server.CheckConnectionID(r.PathValue("id")) != nil {
		return errBadConnectionID
	}
	http.Redirect(w, r, h.connURL(s.appID, r.PathValue("id"))+"#audit-heading", http.StatusSeeOther)
	return nil
}

func (h *Handler) handleConnection(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	key := spotoken.ConnectionKey{AppID: r.PathValue("app"), ID: r.PathValue("id")}
	if server.CheckConnectionID(key.ID) != nil {
		return errBadConnectionID
	}
	c, err := h.cfg.Store.Connection(ctx, key)
	if errors.Is(err, spotoken.ErrNotFound) {
		if _, err := h.app(ctx, key.AppID); err != nil {
			return err
		}
		return spotoken.Errorf(spotoken.ENotFound, "App %s has no connection %q (deleted connections are gone, with their tokens).", key.AppID, key.ID)
	}
	if err != nil {
		return err
	}
	q := r.URL.Query()
	filter := spotoken.EventFilter{AppID: key.AppID, ConnectionID: key.ID, Limit: pageSize + 1}
	if len(q["before"]) > 1 {
		return errBadCursor
	}
	if filter.Before, err = eventCursor(q.Get("before")); err != nil {
		return err
	}
	events, err := h.cfg.Store.Events(ctx, filter)
	if err != nil {
		return err
	}
	now := h.cfg.Now()
	limits, err := h.cfg.Store.RateLimits(ctx, now)
	if err != nil {
		return err
	}
	name := c.DisplayName
	if name == c.SpotifyUserID {
		name = ""
	}
	p := connectionPage{
		chrome: h.chrome(r, s, key.AppID, "connections"),
		ID:     c.ID, DisplayName: name, SpotifyUser: c.SpotifyUserID, State: string(c.State), StateLabel: stateLabel(c.State),
		Scopes: c.Scopes.Normalize(), Token: newTokenView(c, now), RetryAt: backoffView(c, now),
		Failures: c.ConsecutiveFailures, LastError: c.LastErrorCode, LastRefresh: newWhen(c.LastRefreshAt, now),
		Consented: newWhen(c.ConsentedAt, now), GrantExpires: newWhen(c.GrantExpiresAt, now),
		Created: newWhen(c.CreatedAt, now), Updated: newWhen(c.UpdatedAt, now),
		Back: r.URL.RequestURI(), CanRedeliver: s.operator(),
	}
	for _, l := range limits {
		if l.AppID == key.AppID {
			p.RateLimited = newWhen(l.Until, now)
		}
	}
	p.flashView = h.flashOf(r, s)
	for i, e := range events {
		if i == pageSize {
			p.OlderURL = h.connURL(key.AppID, key.ID) + "?" + url.Values{"before": {strconv.FormatInt(events[pageSize-1].ID, 10)}}.Encode()
			break
		}
		p.Timeline = append(p.Timeline, h.newEventView(e, now))
	}
	if filter.Before > 0 {
		p.NewestURL = h.connURL(key.AppID, key.ID)
	}
	p.Why = h.why(c, events)
	if h.cfg.Audit != nil {
		p.AuditOn = true
		recs, err := h.cfg.Audit.Records(ctx, spotoken.AuditFilter{AppID: key.AppID, ConnectionID: key.ID, Newest: true, Limit: auditRows})
		if err != nil {
			return err
		}
		for _, rec := range recs {
			p.Audit = append(p.Audit, newAuditView(rec, now))
		}
	}
	h.render(w, r, http.StatusOK, pages.connection, p)
	return nil
}

// why explains a connection that needs action, from its state and its most
// recent needs_reauth event.
func (h *Handler) why(c *spotoken.Connection, events []*spotoken.Event) string {
	switch c.State {
	case spotoken.StateNeedsReauth:
		reason := ""
		for _, e := range events {
			if e.Type == spotoken.EventConnectionNeedsReauth {
				reason = eventData(e)["reason"]
				break
			}
		}
		why := "Spotify refused the refresh token (" + orDash(c.LastErrorCode) + ")"
		switch reason {
		case "grant_expired":
			why += ": the grant reached the end of its six months."
		case "revoked":
			why += ": the user removed the app from their Spotify account, or Spotify revoked the grant."
		case "rotation_lost":
			why += ": a rotated refresh token was lost in transit (Spotify's answer to a refresh never arrived)."
		default:
			why += "."
		}
		return why + " No access token is served and nothing is retried until the user authorizes again: send them a connect link."
	case spotoken.StateRevoked:
		return "The connection was revoked; its tokens are erased."
	}
	if c.LastErrorCode == "invalid_client" {
		return "Spotify refused the app's client credentials (invalid_client): fix the app's client secret in its settings."
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// eventView is an event as a timeline or the deliveries list shows it.
type eventView struct {
	ID, Type, Label, Kind, Detail string
	ConnectionID, ConnectionURL   string
	At                            when
	Status, StatusLabel           string
	Attempts                      int
	NextAttempt, Delivered        when
	LastError                     string
	// Redeliver is the form action that makes it due again.
	Redeliver string
}

// eventLabels name event types on pages, with the kind of thing they
// report (ok, warn, bad) for their colour.
var eventLabels = map[spotoken.EventType][2]string{
	spotoken.EventConnectionCreated:       {"Connected", "ok"},
	spotoken.EventConnectionReauthorized:  {"Authorized again", "ok"},
	spotoken.EventConnectionRefreshed:     {"Refreshed", "ok"},
	spotoken.EventConnectionRotated:       {"Refresh token rotated", "ok"},
	spotoken.EventConnectionRefreshFailed: {"Refresh failed", "warn"},
	spotoken.EventConnectionNeedsReauth:   {"Needs re-authorization", "bad"},
	spotoken.EventConnectionRevoked:       {"Deleted", "bad"},
	spotoken.EventConnectionExpiring:      {"Grant expiring", "warn"},
	spotoken.EventAppError:                {"App credentials refused", "bad"},
	spotoken.EventConnectFailed:           {"Connect failed", "bad"},
}

// statusLabels name delivery statuses.
var statusLabels = map[spotoken.EventStatus]string{
	spotoken.EventPending:   "pending",
	spotoken.EventFailed:    "failed, will retry",
	spotoken.EventGaveUp:    "given up",
	spotoken.EventDelivered: "delivered",
}

func (h *Handler) newEventView(e *spotoken.Event, now time.Time) eventView {
	label, kind := string(e.Type), "info"
	if l, ok := eventLabels[e.Type]; ok {
		label, kind = l[0], l[1]
	}
	st := e.Status()
	v := eventView{
		ID: "evt_" + strconv.FormatInt(e.ID, 10), Type: string(e.Type), Label: label, Kind: kind, Detail: eventDetail(e, now),
		ConnectionID: e.ConnectionID, At: newWhen(e.CreatedAt, now), Status: string(st), StatusLabel: statusLabels[st],
		Attempts: e.Attempts, Delivered: newWhen(e.DeliveredAt, now), LastError: truncate(e.LastError, 200),
		Redeliver: h.appURL(e.AppID) + "/deliveries/evt_" + strconv.FormatInt(e.ID, 10) + "/redeliver",
	}
	if e.ConnectionID != "" && server.CheckConnectionID(e.ConnectionID) == nil {
		v.ConnectionURL = h.connURL(e.AppID, e.ConnectionID)
	}
	if st == spotoken.EventFailed {
		v.NextAttempt = newWhen(e.NextAttemptAt, now)
	}
	return v
}

// eventData is an event's payload as strings (event data never holds a
// secret); nil when it does not decode.
func eventData(e *spotoken.Event) map[string]string {
	var raw map[string]any
	if json.Unmarshal(e.Data, &raw) != nil {
		return nil
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		switch v := v.(type) {
		case string:
			out[k] = v
		case []any:
			var parts []string
			for _, p := range v {
				parts = append(parts, fmt.Sprint(p))
			}
			out[k] = strings.Join(parts, " ")
		default:
			b, _ := json.Marshal(v)
			out[k] = string(b)
		}
	}
	return out
}

// eventDetail says what an event's payload tells, in words.
func eventDetail(e *spotoken.Event, now time.Time) string {
	d := eventData(e)
	at := func(key string) string {
		t, err := time.Parse(time.RFC3339Nano, d[key])
		if err != nil {
			return d[key]
		}
		w := newWhen(t, now)
		return w.Text + " (" + w.Rel + ")"
	}
	switch e.Type {
	case spotoken.EventConnectionCreated, spotoken.EventConnectionReauthorized:
		return fmt.Sprintf("Spotify user %s granted %s; the grant expires %s.", orDash(d["spotify_user_id"]), orDash(d["scopes"]), at("grant_expires_at"))
	case spotoken.EventConnectionRefreshed:
		return "New access token, valid until " + at("expires_at") + "."
	case spotoken.EventConnectionRotated:
		return "Spotify sent a new refresh token; the old one is replaced."
	case spotoken.EventConnectionRefreshFailed:
		return fmt.Sprintf("Error %s (attempt %s); retried at %s, the access token served while it is valid.", orDash(d["error"]), orDash(d["attempt"]), at("retry_at"))
	case spotoken.EventConnectionNeedsReauth:
		return fmt.Sprintf("Error %s, reason %s: the user must authorize again.", orDash(d["error"]), orDash(d["reason"]))
	case spotoken.EventConnectionRevoked:
		return "Tokens erased (" + orDash(d["reason"]) + ")."
	case spotoken.EventConnectionExpiring:
		return "The grant expires " + at("grant_expires_at") + "; the app was asked to have the user authorize again."
	case spotoken.EventAppError:
		return "Error " + orDash(d["error"]) + ": Spotify refused the app's client credentials."
	case spotoken.EventConnectFailed:
		return "Reason " + orDash(d["reason"]) + ": no grant was stored."
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		if k != "connection_id" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+" "+truncate(d[k], 80))
	}
	return strings.Join(parts, "; ")
}

// connectLink mints a connect link for the request's connection and sends
// the browser to back, where it is shown once.
func (h *Handler) connectLink(w http.ResponseWriter, r *http.Request, s *session, back string) error {
	key := spotoken.ConnectionKey{AppID: r.PathValue("app"), ID: r.PathValue("id")}
	cs, err := h.cfg.Actions.NewConnectLink(r.Context(), key, nil, "")
	if err != nil {
		return err
	}
	if s.operator() {
		h.cfg.Admin.Record(r.Context(), admin.Change{Actor: s.actor(), Action: admin.ActionConnectLink, AppID: key.AppID, Target: key.ID})
	}
	h.log.Info("console: connect link created", "request_id", server.RequestID(r), "connection", key.String(), "by", s.subject)
	return h.done(w, r, s, &flash{Link: &linkView{ConnectionID: key.ID, URL: cs.URL, Expires: cs.ExpiresAt.UTC().Format(timeFormat)}}, back)
}

func (h *Handler) handleConnectLink(w http.ResponseWriter, r *http.Request, s *session) error {
	if server.CheckConnectionID(r.PathValue("id")) != nil {
		return errBadConnectionID
	}
	return h.connectLink(w, r, s, h.connURL(r.PathValue("app"), r.PathValue("id")))
}

// handleRefresh refreshes the connection with Spotify now; the page shows
// the outcome (in its timeline too), never the token.
func (h *Handler) handleRefresh(w http.ResponseWriter, r *http.Request, s *session) error {
	key := spotoken.ConnectionKey{AppID: r.PathValue("app"), ID: r.PathValue("id")}
	if server.CheckConnectionID(key.ID) != nil {
		return errBadConnectionID
	}
	err := h.cfg.Actions.RefreshConnection(r.Context(), key)
	code := spotoken.ErrorCode(err)
	if code == spotoken.ENotFound {
		return err
	}
	if s.operator() && code != spotoken.ERateLimited { // rate_limited: nothing was asked of Spotify
		h.cfg.Admin.Record(r.Context(), admin.Change{Actor: s.actor(), Action: admin.ActionConnectionRefresh, AppID: key.AppID, Target: key.ID})
	}
	notice := "Refreshed: Spotify gave a new access token (it is never shown here)."
	switch {
	case code == spotoken.EInternal:
		h.log.Error("console: refresh", "request_id", server.RequestID(r), "connection", key.String(), "err", err)
		notice = "The refresh failed; the server log has the detail (request id " + server.RequestID(r) + ")."
	case err != nil:
		notice = "The refresh did not succeed: " + spotoken.ErrorMessage(err) + " (" + code + "). The connection below, and its timeline, say where it stands."
	default:
		if c, rerr := h.cfg.Store.Connection(r.Context(), key); rerr == nil && c.State == spotoken.StateNeedsReauth {
			notice = "Spotify refused the refresh token: the connection needs re-authorization. Send the user a connect link."
		}
	}
	return h.done(w, r, s, &flash{Notice: notice}, h.connURL(key.AppID, key.ID))
}

// handleDelete deletes the connection, erasing its tokens.
func (h *Handler) handleDelete(w http.ResponseWriter, r *http.Request, s *session) error {
	key := spotoken.ConnectionKey{AppID: r.PathValue("app"), ID: r.PathValue("id")}
	if server.CheckConnectionID(key.ID) != nil {
		return errBadConnectionID
	}
	if err := h.cfg.Actions.DeleteConnection(h.auditAs(r, s), key, "deleted"); err != nil {
		return err
	}
	if s.operator() {
		h.cfg.Admin.Record(r.Context(), admin.Change{Actor: s.actor(), Action: admin.ActionConnectionDelete, AppID: key.AppID, Target: key.ID})
	}
	h.log.Info("console: connection deleted", "request_id", server.RequestID(r), "connection", key.String(), "by", s.subject)
	return h.done(w, r, s, &flash{Notice: fmt.Sprintf("Deleted connection %s: its tokens are erased, and the app was sent a connection.revoked event.", key.ID)},
		h.appURL(key.AppID))
}

// searchPage is the connections found by connection id or Spotify user.
type searchPage struct {
	chrome
	List  rowsView
	Error string
	More  bool
}

// maxSearch caps the connections a search shows.
const maxSearch = 100

// handleSearch finds connections by connection id or Spotify user id, both
// exactly (each an index search): across every app for an operator, in
// its app for an app team.
func (h *Handler) handleSearch(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	p := searchPage{chrome: h.chrome(r, s, s.appID, "search")}
	p.Query = truncate(q, 128)
	switch {
	case q == "":
		p.Error = "Type a connection ID or a Spotify user ID."
	case len(q) > 128 || strings.ContainsFunc(q, func(r rune) bool { return r < ' ' || r == 0x7f }):
		p.Error = "That is not a connection ID or a Spotify user ID (at most 128 printable characters)."
	}
	if p.Error != "" {
		h.render(w, r, http.StatusBadRequest, pages.search, p)
		return nil
	}
	var found []*spotoken.Connection
	seen := map[spotoken.ConnectionKey]bool{}
	queries := []spotoken.ConnectionQuery{{AppID: s.appID, SpotifyUserID: q, Limit: maxSearch + 1}}
	if server.CheckConnectionID(q) == nil {
		queries = append([]spotoken.ConnectionQuery{{AppID: s.appID, ID: q, Limit: maxSearch + 1}}, queries...)
	}
	for _, cq := range queries {
		cs, err := h.cfg.Store.FindConnections(ctx, cq)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if !seen[c.Key()] {
				seen[c.Key()] = true
				found = append(found, c)
			}
		}
	}
	if len(found) > maxSearch {
		found, p.More = found[:maxSearch], true
	}
	now := h.cfg.Now()
	p.List = rowsView{ShowApp: s.operator(), CSRF: p.CSRF}
	for _, c := range found {
		p.List.Rows = append(p.List.Rows, h.newRow(c, now))
	}
	h.render(w, r, http.StatusOK, pages.search, p)
	return nil
}
