package server

// The admin API, /admin/v1/…: operators manage every app with an admin
// credential (Authorization: Bearer sa_…), never with an app's API key,
// which it refuses as the app API refuses admin keys. Every change goes
// through the admin.Service of Config.Admin, which checks and records it.
// It is the backend of the operator's console; docs/api.md lists it.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
)

func (s *Server) adminRoutes(m *http.ServeMux) {
	if s.cfg.Admin == nil {
		return
	}
	h := func(pattern string, fn func(w http.ResponseWriter, r *http.Request, by admin.Actor) error) {
		m.Handle(pattern, s.adminAuthenticated(fn))
	}
	h("GET /admin/v1/apps", s.adminListApps)
	h("POST /admin/v1/apps", s.adminCreateApp)
	h("GET /admin/v1/apps/{app}", s.adminGetApp)
	h("PATCH /admin/v1/apps/{app}", s.adminPatchApp)
	h("DELETE /admin/v1/apps/{app}", s.adminDeleteApp)
	h("POST /admin/v1/apps/{app}/client-secret/retire", s.adminRetireClientSecret)
	h("POST /admin/v1/apps/{app}/webhook-secret/rotate", s.adminRotateWebhookSecret)
	h("POST /admin/v1/apps/{app}/webhook-secret/retire", s.adminRetireWebhookSecret)
	h("GET /admin/v1/apps/{app}/api-keys", s.adminListAPIKeys)
	h("POST /admin/v1/apps/{app}/api-keys", s.adminCreateAPIKey)
	h("POST /admin/v1/apps/{app}/api-keys/{key}/revoke", s.adminRevokeAPIKey)
	h("GET /admin/v1/apps/{app}/events", s.adminListEvents)
	h("POST /admin/v1/apps/{app}/events/redeliver", s.adminRedeliverEvents)
	h("POST /admin/v1/apps/{app}/events/{event}/redeliver", s.adminRedeliverEvent)
	h("GET /admin/v1/connections", s.adminListConnections)
	h("GET /admin/v1/apps/{app}/connections/{id}", s.adminGetConnection)
	h("DELETE /admin/v1/apps/{app}/connections/{id}", s.adminDeleteConnection)
	h("POST /admin/v1/apps/{app}/connections/{id}/refresh", s.adminRefreshConnection)
	h("POST /admin/v1/apps/{app}/connections/{id}/connect-link", s.adminConnectLink)
	h("GET /admin/v1/admin-keys", s.adminListAdminKeys)
	h("POST /admin/v1/admin-keys/{key}/revoke", s.adminRevokeAdminKey)
}

// errNoAdminKey: the request carries no Bearer credentials at all.
var errNoAdminKey = &spotoken.Error{Code: EInvalidToken, Message: "An admin credential is required: Authorization: Bearer " + spotoken.AdminKeyPrefix + "…"}

// adminAuthenticated wraps an admin handler: it authenticates the admin
// credential and answers the handler's error as JSON.
func (s *Server) adminAuthenticated(h func(w http.ResponseWriter, r *http.Request, by admin.Actor) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var err error = errNoAdminKey
		scheme, raw, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			var key *spotoken.AdminKey
			if key, err = s.cfg.Admin.Authenticate(r.Context(), spotoken.Secret(raw)); err == nil {
				err = h(w, r, admin.KeyActor(key))
			}
		}
		if err != nil {
			if err == errNoAdminKey { // not errors.Is: every invalid_token error matches it

				w.Header().Set("WWW-Authenticate", `Bearer realm="spotoken-admin"`)
			} else if spotoken.ErrorCode(err) == EInvalidToken {
				w.Header().Set("WWW-Authenticate", `Bearer realm="spotoken-admin", error="invalid_token"`)
			}
			s.writeError(w, r, err)
		}
	})
}

// appView returns app's view with its connection counts from counts.
func appView(a *spotoken.App, counts []spotoken.ConnectionCount) AppView {
	var c ConnectionCounts
	for _, n := range counts {
		if n.AppID != a.ID {
			continue
		}
		switch n.State {
		case spotoken.StateActive:
			c.Active = n.Count
		case spotoken.StateNeedsReauth:
			c.NeedsReauth = n.Count
		case spotoken.StateRevoked:
			c.Revoked = n.Count
		}
	}
	return NewAppView(a, c)
}

// adminAppView reads the connection counts and the rate-limit window and
// returns app's view.
func (s *Server) adminAppView(r *http.Request, app *spotoken.App) (AppView, error) {
	counts, err := s.cfg.Admin.CountConnections(r.Context())
	if err != nil {
		return AppView{}, err
	}
	v := appView(app, counts)
	if v.RateLimitedUntil, err = s.rateLimitWindow(r, app.ID); err != nil {
		return AppView{}, err
	}
	b, err := s.cfg.Admin.BrowserApp(r.Context(), app.ID)
	if err != nil {
		return AppView{}, err
	}
	v.BFF = NewBrowserAppView(b)
	return v, nil
}

// rateLimitWindows are the apps' rate-limit windows that last beyond now.
func (s *Server) rateLimitWindows(r *http.Request) (map[string]*time.Time, error) {
	now := s.cfg.Now()
	limits, err := s.cfg.Store.RateLimits(r.Context(), now)
	if err != nil {
		return nil, fmt.Errorf("read the rate-limit windows: %w", err)
	}
	out := make(map[string]*time.Time, len(limits))
	for _, l := range limits {
		out[l.AppID] = RateLimitWindow(l.Until, now)
	}
	return out, nil
}

// noQuery refuses query parameters on endpoints that take none.
func noQuery(r *http.Request) error {
	if r.URL.RawQuery != "" {
		return spotoken.Errorf(spotoken.EInvalid, "this endpoint takes no query parameters")
	}
	return nil
}

func (s *Server) adminListApps(w http.ResponseWriter, r *http.Request, _ admin.Actor) error {
	if err := noQuery(r); err != nil {
		return err
	}
	apps, err := s.cfg.Admin.Apps(r.Context())
	if err != nil {
		return err
	}
	counts, err := s.cfg.Admin.CountConnections(r.Context())
	if err != nil {
		return err
	}
	windows, err := s.rateLimitWindows(r)
	if err != nil {
		return err
	}
	out := AppList{Apps: make([]AppView, 0, len(apps))}
	for _, a := range apps {
		v := appView(a, counts)
		v.RateLimitedUntil = windows[a.ID]
		b, err := s.cfg.Admin.BrowserApp(r.Context(), a.ID)
		if err != nil {
			return err
		}
		v.BFF = NewBrowserAppView(b)
		out.Apps = append(out.Apps, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

type createAppRequest struct {
	ID              string   `json:"id"`
	ClientID        string   `json:"client_id"`
	ClientSecret    string   `json:"client_secret"`
	RedirectURIs    []string `json:"redirect_uris"`
	DefaultScopes   []string `json:"default_scopes"`
	ReturnToOrigins []string `json:"return_to_origins"`
	WebhookURL      string   `json:"webhook_url"`
}

func (s *Server) adminCreateApp(w http.ResponseWriter, r *http.Request, by admin.Actor) error {
	var req createAppRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	app, secret, err := s.cfg.Admin.CreateApp(r.Context(), by, admin.NewApp{
		ID: req.ID, ClientID: req.ClientID, ClientSecret: spotoken.Secret(req.ClientSecret), RedirectURIs: req.RedirectURIs,
		DefaultScopes: req.DefaultScopes, ReturnToOrigins: req.ReturnToOrigins, WebhookURL: req.WebhookURL,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, AppChange{App: NewAppView(app, ConnectionCounts{}), WebhookSecret: secret.Reveal()})
	return nil
}

// pathApp reads the {app} path value and the app it names.
func (s *Server) pathApp(r *http.Request) (*spotoken.App, error) {
	app, err := s.cfg.Admin.App(r.Context(), r.PathValue("app"))
	if errors.Is(err, spotoken.ErrNotFound) {
		return nil, spotoken.Errorf(spotoken.ENotFound, "no app %q", truncate(r.PathValue("app"), 64))
	}
	return app, err
}

func (s *Server) adminGetApp(w http.ResponseWriter, r *http.Request, _ admin.Actor) error {
	app, err := s.pathApp(r)
	if err != nil {
		return err
	}
	v, err := s.adminAppView(r, app)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

type patchAppRequest struct {
	ClientID            *string   `json:"client_id"`
	ClientSecret        *string   `json:"client_secret"`
	RedirectURIs        *[]string `json:"redirect_uris"`
	DefaultScopes       *[]string `json:"default_scopes"`
	ReturnToOrigins     *[]string `json:"return_to_origins"`
	WebhookURL          *string   `json:"webhook_url"`
	RotateWebhookSecret bool      `json:"rotate_webhook_secret"`
	// BFF changes the app's backend-for-frontend: origins [] turns it off.
	BFF *patchBFFRequest `json:"bff"`
}

type patchBFFRequest struct {
	Origins     *[]string `json:"origins"`
	Scopes      *[]string `json:"scopes"`
	TokenScopes *[]string `json:"token_scopes"`
}

// patch is the admin patch of the request.
func (b *patchBFFRequest) patch() *admin.BrowserAppPatch {
	if b == nil {
		return nil
	}
	p := &admin.BrowserAppPatch{Origins: b.Origins}
	if b.Scopes != nil {
		scopes := spotoken.Scopes(*b.Scopes)
		p.Scopes = &scopes
	}
	if b.TokenScopes != nil {
		scopes := spotoken.Scopes(*b.TokenScopes)
		p.TokenScopes = &scopes
	}
	return p
}

// refuseNulls answers a body whose top-level object has a null member: in
// a PATCH, leaving a field out keeps the setting and "" or [] clears it,
// so a null could only be a mistake. It puts the body back for decodeJSON.
func refuseNulls(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return spotoken.Errorf(ETooLarge, "the body is over %d bytes", maxBody)
	}
	if err != nil {
		return spotoken.Errorf(spotoken.EInvalid, "reading the body failed")
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return nil // decodeJSON says what is wrong
	}
	for name, v := range fields {
		if string(bytes.TrimSpace(v)) == "null" {
			return spotoken.Errorf(spotoken.EInvalid, "%s is null: leave a field out to keep the setting, or give \"\" or [] to clear it", truncate(name, 64))
		}
	}
	return nil
}

func (s *Server) adminPatchApp(w http.ResponseWriter, r *http.Request, by admin.Actor) error {
	if err := refuseNulls(w, r); err != nil {
		return err
	}
	var req patchAppRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	patch := admin.AppPatch{ClientID: req.ClientID, RedirectURIs: req.RedirectURIs, ReturnToOrigins: req.ReturnToOrigins,
		WebhookURL: req.WebhookURL, RotateWebhookSecret: req.RotateWebhookSecret, BrowserApp: req.BFF.patch()}
	if req.ClientSecret != nil {
		secret := spotoken.Secret(*req.ClientSecret)
		patch.ClientSecret = &secret
	}
	if req.DefaultScopes != nil {
		scopes := spotoken.Scopes(*req.DefaultScopes)
		patch.DefaultScopes = &scopes
	}
	up, err := s.cfg.Admin.UpdateApp(r.Context(), by, r.PathValue("app"), patch)
	if errors.Is(err, spotoken.ErrNotFound) {
		return spotoken.Errorf(spotoken.ENotFound, "no app %q", truncate(r.PathValue("app"), 64))
	}
	if err != nil {
		return err
	}
	v, err := s.adminAppView(r, up.App)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, AppChange{App: v, WebhookSecret: up.WebhookSecret.Reveal(), Changed: up.Changed, Redelivered: up.Redelivered})
	return nil
}

func (s *Server) adminDeleteApp(w http.ResponseWriter, r *http.Request, by admin.Actor) error {
	if err := s.cfg.Admin.DeleteApp(r.Context(), by, r.PathValue("app")); err != nil {
		if errors.Is(err, spotoken.ErrNotFound) {
			return spotoken.Errorf(spotoken.ENotFound, "no app %q", truncate(r.PathValue("app"), 64))
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type retireRequest struct {
	// Force retires without asking Spotify first whether it accepts the
	// current secret.
	Force bool `json:"force"`
}

func (s *Server) adminRetireClientSecret(w http.ResponseWriter, r *http.Request, by admin.Actor) error {
	var req retireRequest
	if err := decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	app, err := s.cfg.Admin.RetireClientSecret(r.Context(), by, r.PathValue("app"), req.Force)
	if err != nil {
		return err
	}
	return s.writeAppChange(w, r, app, "")
}

func (s *Server) writeAppChange(w http.ResponseWriter, r *http.Request, app *spotoken.App, secret spotoken.Secret) error {
	v, err := s.adminAppView(r, app)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, AppChange{App: v, WebhookSecret: secret.Reveal()})
	return nil
}

func (s *Server) adminRotateWebhookSecret(w http.ResponseWriter, r *http.Request, by admin.Actor) error {
	if err := decodeJSON(w, r, &struct{}{}, true); err != nil {
		return err
	}
	app, secret, err := s.cfg.Admin.RotateWebhookSecret(r.Context(), by, r.PathValue("app"))
	if err != nil {
		return err
	}
	return s.writeAppChange(w, r, app, secret)
}

func (s *Server) adminRetireWebhookSecret(w http.ResponseWriter, r *http.Request, by admin.Actor) error {
	if err := decodeJSON(w, r, &struct{}{}, true); err != nil {
		return err
	}
	app, err := s.cfg.Admin.RetireWebhookSecret(r.Context(), by, r.PathValue("app"))
	if err != nil {
		return err
	}
	return s.writeAppChange(w, r, app, "")
}

func (s *Server) adminListAPIKeys(w http.ResponseWriter, r *http.Request, _ admin.Actor) error {
	app, err := s.pathApp(r)
	if err != nil {
		return err
	}
	keys, err := s.cfg.Admin.APIKeys(r.Context(), app.ID)
	if err != nil {
		return err
	}
	out := APIKeyList{APIKeys: make([]APIKeyView, 0, len(keys))}
	for _, k := range keys {
		out.APIKeys = append(out.APIKeys, NewAPIKeyView(k))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

type createAPIKeyRequest struct {
	Name string `json:"name"`
}

func (s *Server) adminCreateAPIKey(w http.ResponseWriter, r *http.Request, by admin.Actor) error {
	var req createAPIKeyRequest
	if err := decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	app, err := s.pathApp(r)
	if err != nil {
		return err
	}
	key, rec, err := s.cfg.Admin.CreateAPIKey(r.Context(), by, app.ID, req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, NewAPIKey{APIKey: NewAPIKeyView(rec), Key: key.Reveal()})
	return nil
}

func (s *Server) adminRevokeAPIKey(w http.ResponseWriter, r *http.Request, by admin.Actor) error {
	if err := decodeJSON(w, r, &struct{}{}, true); err != nil {
		return err
	}
	if err := s.cfg.Admin.RevokeAPIKey(r.Context(), by, r.PathValue("app"), r.PathValue("key")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listParams reads a list endpoint's query: only the names in allowed,
// each at most once, and limit from 1 to 1000 (default 100).
func listParams(r *http.Request, allowed ...string) (map[string]string, int, error) {
	out := map[string]string{}
	limit := 100
	for name, v := range r.URL.Query() {
		if len(v) > 1 {
			return nil, 0, spotoken.Errorf(spotoken.EInvalid, "parameter %s is repeated", truncate(name, 32))
		}
		switch {
		case name == "limit":
			n, err := strconv.Atoi(v[0])
			if err != nil || n < 1 || n > 1000 {
				return nil, 0, spotoken.Errorf(spotoken.EInvalid, "limit must be an integer from 1 to 1000")
			}
			limit = n
		case !slices.Contains(allowed, name):
			return nil, 0, spotoken.Errorf(spotoken.EInvalid, "unknown parameter %q; use %s, limit", truncate(name, 32), strings.Join(allowed, ", "))
		default:
			out[name] = v[0]
		}
	}
	return out, limit, nil
}

func (s *Server) adminListEvents(w http.ResponseWriter, r *http.Request, _ admin.Actor) error {
	q, limit, err := listParams(r, "status", "connection_id", "cursor")
	if err != nil {
		return err
	}
	app, err := s.pathApp(r)
	if err != nil {
		return err
	}
	filter := spotoken.EventFilter{AppID: app.ID, ConnectionID: q["connection_id"], Status: spotoken.EventStatus(q["status"]), Limit: limit + 1}
	if filter.Status != "" && !filter.Status.Valid() {
		return spotoken.Errorf(spotoken.EInvalid, "status must be pending, failed, gave_up or delivered")
	}
	if c, ok := q["cursor"]; ok {
		if filter.Before, ok = parseEventID(c); !ok {
			return spotoken.Errorf(spotoken.EInvalid, "cursor is not a cursor this API returned")
		}
	}
	events, err := s.cfg.Admin.Events(r.Context(), filter)
	if err != nil {
		return err
	}
	out := EventList{Events: make([]EventView, 0, min(len(events), limit))}
	for i, e := range events {
		if i == limit {
			out.NextCursor = webhookID(events[limit-1].ID)
			break
		}
		out.Events = append(out.Events, NewEventView(e))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) adminRedeliverEvent(w http.ResponseWriter, r *http.Request, by admin.Actor) error {
	if err := decodeJSON(w, r, &struct{}{}, true); err != nil {
		return err
	}
	id, ok := parseEventID(r.PathValue("event"))
	if !ok {
		return spotoken.Errorf(spotoken.ENotFound, "no event %q", truncate(r.PathValue("event"), 32))
	}
	if err := s.cfg.Admin.RedeliverEvent(r.Context(), by, r.PathValue("app"), id); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, Redelivery{Redelivered: 1})
	return nil
}

type redeliverRequest struct {
	Status spotoken.EventStatus `json:"status"`
}

func (s *Server) adminRedeliverEvents(w http.ResponseWriter, r *http.Request, by admin.Actor) error {
	var req redeliverRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if req.Status != spotoken.EventFailed && req.Status != spotoken.EventGaveUp {
		return spotoken.Errorf(spotoken.EInvalid, "status must be failed or gave_up")
	}
	n, err := s.cfg.Admin.RedeliverEvents(r.Context(), by, r.PathValue("app"), req.Status)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, Redelivery{Redelivered: n})
	return nil
}

func (s *Server) adminListConnections(w http.ResponseWriter, r *http.Request, _ admin.Actor) error {
	p, limit, err := listParams(r, "app", "connection_id", "spotify_user_id", "state", "cursor")
	if err != nil {
		return err
	}
	q := spotoken.ConnectionQuery{AppID: p["app"], ID: p["connection_id"], SpotifyUserID: p["spotify_user_id"],
		State: spotoken.State(p["state"]), Limit: limit + 1}
	if q.State != "" && !q.State.Valid() {
		return spotoken.Errorf(spotoken.EInvalid, "state must be active, needs_reauth or revoked")
	}
	if c, ok := p["cursor"]; ok {
		app, id, found := strings.Cut(c, "/")
		if !found || app == "" || checkConnectionID(id) != nil {
			return spotoken.Errorf(spotoken.EInvalid, "cursor is not a cursor this API returned")
		}
		q.After = spotoken.ConnectionKey{AppID: app, ID: id}
	}
	cs, err := s.cfg.Admin.FindConnections(r.Context(), q)
	if err != nil {
		return err
	}
	windows, err := s.rateLimitWindows(r)
	if err != nil {
		return err
	}
	out := AdminConnectionList{Connections: make([]AdminConnectionView, 0, min(len(cs), limit))}
	for i, c := range cs {
		if i == limit {
			out.NextCursor = cs[limit-1].Key().String()
			break
		}
		v := NewAdminConnectionView(c)
		v.RateLimitedUntil = windows[c.AppID]
		out.Connections = append(out.Connections, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// pathConnection reads the {app} and {id} path values.
func pathConnection(r *http.Request) (spotoken.ConnectionKey, error) {
	id := r.PathValue("id")
	if err := checkConnectionID(id); err != nil {
		return spotoken.ConnectionKey{}, err
	}
	return spotoken.ConnectionKey{AppID: r.PathValue("app"), ID: id}, nil
}

// adminConnection reads the connection key names.
func (s *Server) adminConnection(r *http.Request, ck spotoken.ConnectionKey) (*spotoken.Connection, error) {
	c, err := s.cfg.Store.Connection(r.Context(), ck)
	if errors.Is(err, spotoken.ErrNotFound) {
		return nil, spotoken.Errorf(spotoken.ENotFound, "no connection %s", ck)
	}
	return c, err
}

// writeAdminConnection answers c's view, with its app's rate-limit window.
func (s *Server) writeAdminConnection(w http.ResponseWriter, r *http.Request, c *spotoken.Connection) error {
	v := NewAdminConnectionView(c)
	var err error
	if v.RateLimitedUntil, err = s.rateLimitWindow(r, c.AppID); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) adminGetConnection(w http.ResponseWriter, r *http.Request, _ admin.Actor) error {
	ck, err := pathConnection(r)
	if err != nil {
		return err
	}
	c, err := s.adminConnection(r, ck)
	if err != nil {
		return err
	}
	return s.writeAdminConnection(w, r, c)
}

func (s *Server) adminDeleteConnection(w http.ResponseWriter, r *http.Request, by admin.Actor) error {
	ck, err := pathConnection(r)
	if err != nil {
		return err
	}
	r = s.adminAuditActor(r, by)
	if err := s.deleteConnection(r, ck, "deleted"); err != nil {
		return err
	}
	s.cfg.Admin.Record(r.Context(), admin.Change{Actor: by, Action: admin.ActionConnectionDelete, AppID: ck.AppID, Target: ck.ID})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// adminRefreshConnection refreshes the connection's token with Spotify now
// and answers the connection: never the token.
func (s *Server) adminRefreshConnection(w http.ResponseWriter, r *http.Request, by admin.Actor) error {
	if err := decodeJSON(w, r, &struct{}{}, true); err != nil {
		return err
	}
	ck, err := pathConnection(r)
	if err != nil {
		return err
	}
	err = s.RefreshConnection(r.Context(), ck)
	if spotoken.ErrorCode(err) == spotoken.ENotFound || spotoken.ErrorCode(err) == spotoken.ERateLimited {
		return err // nothing was asked of Spotify
	}
	s.cfg.Admin.Record(r.Context(), admin.Change{Actor: by, Action: admin.ActionConnectionRefresh, AppID: ck.AppID, Target: ck.ID})
	if err != nil {
		return err
	}
	c, err := s.adminConnection(r, ck)
	if err != nil {
		return err
	}
	return s.writeAdminConnection(w, r, c)
}

type connectLinkRequest struct {
	Scopes   []string `json:"scopes"`
	ReturnTo string   `json:"return_to"`
}

// adminConnectLink mints a one-time connect link for the connection (which
// need not exist yet): for the connection's scopes, the app's default
// scopes for a new one, or the scopes given.
func (s *Server) adminConnectLink(w http.ResponseWriter, r *http.Request, by admin.Actor) error {
	var req connectLinkRequest
	if err := decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	ck, err := pathConnection(r)
	if err != nil {
		return err
	}
	sess, err := s.NewConnectLink(r.Context(), ck, req.Scopes, req.ReturnTo)
	if err != nil {
		return err
	}
	s.cfg.Admin.Record(r.Context(), admin.Change{Actor: by, Action: admin.ActionConnectLink, AppID: ck.AppID, Target: ck.ID})
	writeJSON(w, http.StatusCreated, sess)
	return nil
}

func (s *Server) adminListAdminKeys(w http.ResponseWriter, r *http.Request, _ admin.Actor) error {
	if err := noQuery(r); err != nil {
		return err
	}
	keys, err := s.cfg.Admin.AdminKeys(r.Context())
	if err != nil {
		return err
	}
	out := AdminKeyList{AdminKeys: make([]AdminKeyView, 0, len(keys))}
	for _, k := range keys {
		out.AdminKeys = append(out.AdminKeys, AdminKeyView{ID: k.ID, Name: k.Name, Prefix: k.Prefix, CreatedAt: k.CreatedAt.UTC(),
			LastUsedAt: optTime(k.LastUsedAt), RevokedAt: optTime(k.RevokedAt)})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) adminRevokeAdminKey(w http.ResponseWriter, r *http.Request, by admin.Actor) error {
	if err := decodeJSON(w, r, &struct{}{}, true); err != nil {
		return err
	}
	if err := s.cfg.Admin.RevokeAdminKey(r.Context(), by, r.PathValue("key")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
