package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/server"
)

// health is an app's health at a glance: its connections by state, those
// backing off, grants expiring soon, webhook deliveries failing or given
// up, and the rate-limit window at Spotify's token endpoint.
type health struct {
	ID, URL                                      string
	Total, Active, NeedsReauth, Revoked          int
	BackingOff, Expiring, Failing, GaveUp        int
	RateLimited                                  when
	ExpiringDays                                 int
	NeedsReauthURL, BackingOffURL, ExpiringURL   string
	FailingURL, GaveUpURL, ActiveURL, RevokedURL string
}

// healthOf returns every app's health: the figures counted at most
// Config.HealthTTL ago, or counted now. Counting connections by state
// scans an index of every connection (half a second at a million on
// SQLite), so the console counts once for every page and person within
// HealthTTL, one request counting while the others wait for it; its own
// changes count again at once (see done).
func (h *Handler) healthOf(ctx context.Context, now time.Time) (map[string]*health, error) {
	if h.cfg.HealthTTL < 0 {
		return h.countHealth(ctx, now)
	}
	h.healthMu.Lock()
	if h.health != nil && now.Sub(h.healthAt) < h.cfg.HealthTTL && !now.Before(h.healthAt) {
		m := h.health
		h.healthMu.Unlock()
		return m, nil
	}
	h.healthMu.Unlock()
	v, err, _ := h.healthFlight.Do("health", func() (any, error) {
		m, err := h.countHealth(context.WithoutCancel(ctx), now)
		if err == nil {
			h.healthMu.Lock()
			h.health, h.healthAt = m, now
			h.healthMu.Unlock()
		}
		return m, err
	})
	if err != nil {
		return nil, err
	}
	return v.(map[string]*health), nil
}

// forgetHealth makes the next page count the health figures again.
func (h *Handler) forgetHealth() {
	h.healthMu.Lock()
	h.health = nil
	h.healthMu.Unlock()
}

// countHealth counts every app's health, each figure from an index.
func (h *Handler) countHealth(ctx context.Context, now time.Time) (map[string]*health, error) {
	out := map[string]*health{}
	get := func(app string) *health {
		hh := out[app]
		if hh == nil {
			hh = h.newHealth(app)
			out[app] = hh
		}
		return hh
	}
	counts, err := h.cfg.Store.CountConnections(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range counts {
		hh := get(c.AppID)
		hh.Total += c.Count
		switch c.State {
		case spotoken.StateActive:
			hh.Active = c.Count
		case spotoken.StateNeedsReauth:
			hh.NeedsReauth = c.Count
		case spotoken.StateRevoked:
			hh.Revoked = c.Count
		}
	}
	backoff, err := h.cfg.Store.CountBackingOff(ctx, now)
	if err != nil {
		return nil, err
	}
	for _, c := range backoff {
		get(c.AppID).BackingOff = c.Count
	}
	expiring, err := h.cfg.Store.CountExpiringGrants(ctx, now.Add(h.cfg.ExpiryWindow))
	if err != nil {
		return nil, err
	}
	for _, c := range expiring {
		get(c.AppID).Expiring = c.Count
	}
	undelivered, err := h.cfg.Store.CountUndelivered(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range undelivered {
		if c.Status == spotoken.EventGaveUp {
			get(c.AppID).GaveUp = c.Count
		} else {
			get(c.AppID).Failing = c.Count
		}
	}
	limits, err := h.cfg.Store.RateLimits(ctx, now)
	if err != nil {
		return nil, err
	}
	for _, l := range limits {
		get(l.AppID).RateLimited = newWhen(l.Until, now)
	}
	return out, nil
}

func (h *Handler) newHealth(app string) *health {
	base := h.appURL(app)
	days := int(h.cfg.ExpiryWindow / (24 * time.Hour))
	return &health{
		ID: app, URL: base, ExpiringDays: days,
		ActiveURL: base + "?state=active", NeedsReauthURL: base + "?state=needs_reauth", RevokedURL: base + "?state=revoked",
		BackingOffURL: base + "?backoff=1", ExpiringURL: base + "?expiring=" + strconv.Itoa(days),
		FailingURL: base + "/deliveries?status=failed", GaveUpURL: base + "/deliveries?status=gave_up",
	}
}

// appsPage is an operator's apps list.
type appsPage struct {
	chrome
	Apps []*health
}

func (h *Handler) appsList(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	apps, err := h.cfg.Store.Apps(ctx)
	if err != nil {
		return err
	}
	all, err := h.healthOf(ctx, h.cfg.Now())
	if err != nil {
		return err
	}
	p := appsPage{chrome: h.chrome(r, s, "", "apps")}
	for _, a := range apps {
		if strings.HasPrefix(a.ID, "_profile.") {
			continue // 'spotoken login' profiles: personal, not served
		}
		hh := all[a.ID]
		if hh == nil {
			hh = h.newHealth(a.ID)
		}
		p.Apps = append(p.Apps, hh)
	}
	h.render(w, r, http.StatusOK, pages.apps, p)
	return nil
}

// listQuery is what the connections list shows: a state, grants expiring
// within some days, those backing off, an order and a page.
type listQuery struct {
	State    spotoken.State
	Expiring int // days; zero: any
	Backoff  bool
	Sort     string // "id", "grant_expiry" or "next_attempt"
	Cursor   string
}

// parseListQuery reads the connections list's parameters; each may be given
// once.
func parseListQuery(q url.Values) (listQuery, error) {
	for name, v := range q {
		if len(v) > 1 {
			return listQuery{}, spotoken.Errorf(spotoken.EInvalid, "The parameter %s is repeated.", truncate(name, 32))
		}
	}
	lq := listQuery{State: spotoken.State(q.Get("state")), Sort: q.Get("sort"), Cursor: q.Get("cursor"), Backoff: q.Get("backoff") != ""}
	if lq.State != "" && !lq.State.Valid() {
		return listQuery{}, spotoken.Errorf(spotoken.EInvalid, "The state filter must be active, needs_reauth or revoked.")
	}
	if v := q.Get("expiring"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3650 {
			return listQuery{}, spotoken.Errorf(spotoken.EInvalid, "“Grant expires within” must be a number of days from 1 to 3650.")
		}
		lq.Expiring = n
	}
	switch lq.Sort {
	case "", "id", "grant_expiry", "next_attempt":
	default:
		return listQuery{}, spotoken.Errorf(spotoken.EInvalid, "The order must be id, grant_expiry or next_attempt.")
	}
	// Each listing reads one index: those backing off by their next
	// attempt, grants by their expiry, anything else by id.
	switch {
	case lq.Backoff || lq.Sort == "next_attempt":
		lq.Backoff, lq.Sort = true, "next_attempt"
	case lq.Sort == "grant_expiry" || lq.Expiring > 0:
		lq.Sort = "grant_expiry"
	default:
		lq.Sort = "id"
	}
	return lq, nil
}

// values are the query's parameters, without the cursor.
func (lq listQuery) values() url.Values {
	v := url.Values{}
	if lq.State != "" {
		v.Set("state", string(lq.State))
	}
	if lq.Expiring > 0 {
		v.Set("expiring", strconv.Itoa(lq.Expiring))
	}
	if lq.Backoff {
		v.Set("backoff", "1")
	}
	if lq.Sort == "grant_expiry" && lq.Expiring == 0 {
		v.Set("sort", lq.Sort) // else implied by expiring or backoff
	}
	return v
}

// filtered reports whether the list shows less than every connection.
func (lq listQuery) filtered() bool { return lq.State != "" || lq.Expiring > 0 || lq.Backoff }

// errBadCursor: a cursor this console did not make.
var errBadCursor = spotoken.Errorf(spotoken.EInvalid, "The page cursor is not one this console made; go back to the first page.")

// list reads one page of an app's connections as lq says, and the cursor of
// the next page ("" on the last).
func (h *Handler) list(ctx context.Context, app string, lq listQuery, now time.Time) ([]*spotoken.Connection, string, string, error) {
	if lq.Sort == "id" {
		if lq.Cursor != "" && server.CheckConnectionID(lq.Cursor) != nil {
			return nil, "", "", errBadCursor
		}
		cs, err := h.cfg.Store.Connections(ctx, spotoken.ConnectionFilter{AppID: app, State: lq.State, After: lq.Cursor, Limit: pageSize + 1})
		if err != nil {
			return nil, "", "", err
		}
		next := ""
		if len(cs) > pageSize {
			cs, next = cs[:pageSize], cs[pageSize-1].ID
		}
		return cs, next, "", nil
	}
	if lq.State != "" && lq.State != spotoken.StateActive {
		return nil, "", "Only active connections back off and have grants that expire: choose the state All or Active.", nil
	}
	q := spotoken.BrowseQuery{AppID: app, Order: spotoken.OrderGrantExpiry, Limit: pageSize + 1}
	if lq.Sort == "next_attempt" {
		q.Order, q.BackingOffAt = spotoken.OrderNextAttempt, now
	}
	if lq.Expiring > 0 {
		q.GrantExpiresBefore = now.Add(time.Duration(lq.Expiring) * 24 * time.Hour)
	}
	if lq.Cursor != "" {
		at, id, ok := strings.Cut(lq.Cursor, ".")
		micros, err := strconv.ParseInt(at, 10, 64)
		if !ok || err != nil || micros <= 0 || server.CheckConnectionID(id) != nil {
			return nil, "", "", errBadCursor
		}
		q.After = spotoken.BrowseCursor{At: time.UnixMicro(micros).UTC(), ID: id}
	}
	cs, err := h.cfg.Store.BrowseConnections(ctx, q)
	if err != nil {
		return nil, "", "", err
	}
	next := ""
	if len(cs) > pageSize {
		cs = cs[:pageSize]
		last := cs[pageSize-1]
		at := last.GrantExpiresAt
		if q.Order == spotoken.OrderNextAttempt {
			at = last.NextAttemptAt
		}
		next = strconv.FormatInt(at.UnixMicro(), 10) + "." + last.ID
	}
	return cs, next, "", nil
}

// option is a choice of a select.
type option struct {
	Value, Label string
	Selected     bool
}

// appPage is an app's page: its health, charts, connections and the form
// that makes a connect link.
type appPage struct {
	chrome
	Health        *health
	Charts        []chartView
	ChartsFrom    string
	DefaultScopes string
	States, Sorts []option
	Expiring      string
	Backoff       bool
	Filtered      bool
	List          rowsView
	Empty         string
	FirstURL      string
	NextURL       string
	flashView
	SortLabel string
}

var sortLabels = map[string]string{
	"id":           "connection ID",
	"grant_expiry": "grant expiry, soonest first",
	"next_attempt": "next retry, soonest first (connections backing off)",
}

func (h *Handler) handleApp(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	appID := r.PathValue("app")
	app, err := h.app(ctx, appID)
	if err != nil {
		return err
	}
	lq, err := parseListQuery(r.URL.Query())
	if err != nil {
		return err
	}
	now := h.cfg.Now()
	all, err := h.healthOf(ctx, now)
	if err != nil {
		return err
	}
	p := appPage{chrome: h.chrome(r, s, app.ID, "connections"), Health: all[app.ID],
		DefaultScopes: app.DefaultScopes.Normalize().String(), Backoff: lq.Backoff, Filtered: lq.filtered(), SortLabel: sortLabels[lq.Sort]}
	if p.Health == nil {
		p.Health = h.newHealth(app.ID)
	}
	if lq.Expiring > 0 {
		p.Expiring = strconv.Itoa(lq.Expiring)
	}
	p.flashView = h.flashOf(r, s)
	if p.Charts, p.ChartsFrom, err = h.charts(ctx, app.ID, now); err != nil {
		return err
	}
	p.States = []option{{Value: "", Label: "All", Selected: lq.State == ""}}
	for _, st := range []spotoken.State{spotoken.StateActive, spotoken.StateNeedsReauth, spotoken.StateRevoked} {
		if st == spotoken.StateRevoked && p.Health.Revoked == 0 && lq.State != st {
			continue // deleting a connection removes it: revoked ones are rare
		}
		p.States = append(p.States, option{Value: string(st), Label: stateLabel(st), Selected: lq.State == st})
	}
	// Backing off lists by next retry, whatever the order chosen.
	for _, v := range []string{"id", "grant_expiry"} {
		p.Sorts = append(p.Sorts, option{Value: v, Label: sortLabels[v], Selected: lq.Sort == v})
	}
	cs, next, empty, err := h.list(ctx, app.ID, lq, now)
	if err != nil {
		return err
	}
	p.List.CSRF = p.CSRF
	for _, c := range cs {
		p.List.Rows = append(p.List.Rows, h.newRow(c, now))
	}
	p.Empty = empty
	if p.Empty == "" && len(p.List.Rows) == 0 {
		p.Empty = "No connections yet: make a connect link above and send it to a user."
		if lq.filtered() || lq.Cursor != "" {
			p.Empty = "No connections here."
		}
	}
	base := h.appURL(app.ID)
	v := lq.values()
	if next != "" {
		nv := lq.values()
		nv.Set("cursor", next)
		p.NextURL = base + "?" + nv.Encode()
	}
	if lq.Cursor != "" {
		p.FirstURL = base
		if len(v) > 0 {
			p.FirstURL += "?" + v.Encode()
		}
	}
	h.render(w, r, http.StatusOK, pages.app, p)
	return nil
}

// app reads the app id; not found names it.
func (h *Handler) app(ctx context.Context, id string) (*spotoken.App, error) {
	app, err := h.cfg.Store.App(ctx, id)
	if errors.Is(err, spotoken.ErrNotFound) {
		return nil, errNoApp(id)
	}
	return app, err
}

// handleNewConnectLink makes a connect link for the connection id typed in
// the app page's form: a new user, or an existing one again.
func (h *Handler) handleNewConnectLink(w http.ResponseWriter, r *http.Request, s *session) error {
	id := strings.TrimSpace(r.PostForm.Get("connection_id"))
	if server.CheckConnectionID(id) != nil {
		return errBadConnectionID
	}
	r.SetPathValue("id", id)
	return h.connectLink(w, r, s, h.appURL(r.PathValue("app")))
}

// errBadConnectionID answers a connection id that cannot be one.
var errBadConnectionID = spotoken.Errorf(spotoken.EInvalid,
	"The connection ID must be 1 to 128 letters, digits or . _ @ : - (no spaces). Nothing was changed.")

// deliveriesPage is an app's webhook deliveries.
type deliveriesPage struct {
	chrome
	Webhook           string
	Statuses          []option
	Status            string
	Events            []eventView
	Failing, GaveUp   int
	NextURL, FirstURL string
	flashView
	Back               string
	NoWebhook, NoEvent bool
}

func (h *Handler) handleDeliveries(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	app, err := h.app(ctx, r.PathValue("app"))
	if err != nil {
		return err
	}
	q := r.URL.Query()
	for name, v := range q {
		if len(v) > 1 {
			return spotoken.Errorf(spotoken.EInvalid, "The parameter %s is repeated.", truncate(name, 32))
		}
	}
	status := spotoken.EventStatus(q.Get("status"))
	if status != "" && !status.Valid() {
		return spotoken.Errorf(spotoken.EInvalid, "The status must be pending, failed, gave_up or delivered.")
	}
	filter := spotoken.EventFilter{AppID: app.ID, Status: status, Limit: pageSize + 1}
	if filter.Before, err = eventCursor(q.Get("cursor")); err != nil {
		return err
	}
	events, err := h.cfg.Store.Events(ctx, filter)
	if err != nil {
		return err
	}
	now := h.cfg.Now()
	all, err := h.healthOf(ctx, now)
	if err != nil {
		return err
	}
	p := deliveriesPage{chrome: h.chrome(r, s, app.ID, "deliveries"), Webhook: app.WebhookURL, Status: string(status),
		NoWebhook: app.WebhookURL == "", Back: r.URL.RequestURI()}
	if hh := all[app.ID]; hh != nil {
		p.Failing, p.GaveUp = hh.Failing, hh.GaveUp
	}
	p.flashView = h.flashOf(r, s)
	p.Statuses = []option{{Value: "", Label: "All", Selected: status == ""}}
	for _, st := range []spotoken.EventStatus{spotoken.EventPending, spotoken.EventFailed, spotoken.EventGaveUp, spotoken.EventDelivered} {
		p.Statuses = append(p.Statuses, option{Value: string(st), Label: statusLabels[st], Selected: status == st})
	}
	base := h.appURL(app.ID) + "/deliveries"
	for i, e := range events {
		if i == pageSize {
			v := url.Values{"cursor": {strconv.FormatInt(events[pageSize-1].ID, 10)}}
			if status != "" {
				v.Set("status", string(status))
			}
			p.NextURL = base + "?" + v.Encode()
			break
		}
		p.Events = append(p.Events, h.newEventView(e, now))
	}
	if filter.Before > 0 {
		p.FirstURL = base
		if status != "" {
			p.FirstURL += "?status=" + url.QueryEscape(string(status))
		}
	}
	p.NoEvent = len(p.Events) == 0
	h.render(w, r, http.StatusOK, pages.deliveries, p)
	return nil
}

// eventCursor reads a page cursor of events: the id the page starts
// before; zero for the newest.
func eventCursor(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, errBadCursor
	}
	return n, nil
}

// handleRedeliver makes one event due again now.
func (h *Handler) handleRedeliver(w http.ResponseWriter, r *http.Request, s *session) error {
	app := r.PathValue("app")
	id, err := strconv.ParseInt(strings.TrimPrefix(r.PathValue("event"), "evt_"), 10, 64)
	if err != nil || id <= 0 {
		return spotoken.Errorf(spotoken.ENotFound, "There is no event %q.", truncate(r.PathValue("event"), 32))
	}
	if err := h.cfg.Admin.RedeliverEvent(r.Context(), s.actor(), app, id); err != nil {
		if errors.Is(err, spotoken.ErrNotFound) {
			return spotoken.Errorf(spotoken.ENotFound, "App %s has no event evt_%d.", app, id)
		}
		return err
	}
	back := r.PostForm.Get("back")
	if !strings.HasPrefix(back, h.appURL(app)+"/") && back != h.appURL(app) || strings.HasPrefix(back, "//") {
		back = h.appURL(app) + "/deliveries"
	}
	return h.done(w, r, s, &flash{Notice: fmt.Sprintf("Event evt_%d is due again: it is sent to the webhook within seconds, with a fresh schedule of attempts.", id)}, back)
}

// handleRedeliverAll makes every given-up (or failed) event due again now.
func (h *Handler) handleRedeliverAll(w http.ResponseWriter, r *http.Request, s *session) error {
	app := r.PathValue("app")
	status := spotoken.EventStatus(r.PostForm.Get("status"))
	if status != spotoken.EventGaveUp && status != spotoken.EventFailed {
		return spotoken.Errorf(spotoken.EInvalid, "Only failed or given-up events are redelivered all at once.")
	}
	n, err := h.cfg.Admin.RedeliverEvents(r.Context(), s.actor(), app, status)
	if err != nil {
		return err
	}
	return h.done(w, r, s, &flash{Notice: fmt.Sprintf("%d %s event(s) are due again: they are sent within seconds, oldest first.", n, statusLabels[status])},
		h.appURL(app)+"/deliveries")
}
