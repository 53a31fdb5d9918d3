package server

import (
	"context"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
)

// Auditor keeps the audit trail: an *audit.Trail, wired in cmd/spotoken.
// The server hands it one record per API request once the request's outcome
// is known (a wrapper around the handlers), and the records of lifecycle
// changes ride in the change's own transaction (spotoken.WithAudit).
type Auditor interface {
	// Record takes one record; it must not block.
	Record(rec spotoken.AuditRecord)
	// RecordSecret takes one record whose Fingerprint is to be secret's,
	// made later, off the request's path; it must not block.
	RecordSecret(rec spotoken.AuditRecord, secret spotoken.Secret)
	// Fingerprint returns the keyed fingerprint of a secret, the only
	// form in which a secret appears in the trail.
	Fingerprint(s spotoken.Secret) string
	// AuthWait returns how long addr must wait before it may try to
	// authenticate again (it failed too often); zero when it may.
	AuthWait(addr netip.Addr) time.Duration
	// Records lists stored records.
	Records(ctx context.Context, filter spotoken.AuditFilter) ([]*spotoken.AuditRecord, error)
}

// auditNote is what a handler adds to its request's audit record: the
// token it handed out, Spotify's status, or that the record was written
// with the change. The wrapper puts one in the request's context.
type auditNote struct {
	actor    spotoken.AuditRecord // ActorType, ActorID, ActorLabel, ClientIP, UserAgent, RequestID
	token    spotoken.Secret
	upstream string // the proxy's outcome: Spotify's status, or an error code
	done     bool   // recorded in the change's transaction
}

type auditNoteKey struct{}

func noteOf(r *http.Request) *auditNote { return noteFrom(r.Context()) }

// noteFrom returns the audit note of ctx's request: the one withNote put
// in its request info, else one a context names (userActor).
func noteFrom(ctx context.Context) *auditNote {
	if ri, _ := ctx.Value(requestIDKey{}).(*requestInfo); ri != nil && ri.note != nil {
		return ri.note
	}
	n, _ := ctx.Value(auditNoteKey{}).(*auditNote)
	return n
}

// withNote returns r carrying an audit note for actor: in the request
// info logRequests made, so that no new request or context is made for
// it, or else in a new context.
func withNote(r *http.Request, actor spotoken.AuditRecord) *http.Request {
	if ri, _ := r.Context().Value(requestIDKey{}).(*requestInfo); ri != nil {
		ri.note = &auditNote{actor: actor}
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), auditNoteKey{}, &auditNote{actor: actor}))
}

// noteToken records the token a request handed out.
func noteToken(r *http.Request, token spotoken.Secret) {
	if n := noteOf(r); n != nil {
		n.token = token
	}
}

// noteUpstream records the proxy's outcome: Spotify's status, or the code
// of spotoken's own answer.
func noteUpstream(r *http.Request, outcome string) {
	if n := noteOf(r); n != nil {
		n.upstream = outcome
	}
}

// auditActor is the record of who sends r: its API key, from its address.
func (s *Server) auditActor(r *http.Request, key *spotoken.APIKey, ip netip.Addr) spotoken.AuditRecord {
	rec := spotoken.AuditRecord{ActorType: spotoken.ActorAnonymous, UserAgent: AuditUserAgent(r), RequestID: requestID(r)}
	if ip.IsValid() {
		rec.ClientIP = ip.String()
	}
	if key != nil {
		rec.ActorType, rec.ActorID, rec.ActorLabel, rec.AppID = spotoken.ActorAPIKey, key.ID, keyLabel(key), key.AppID
	}
	return rec
}

// AuditUserAgent is r's User-Agent as the audit trail keeps it: at most
// 256 bytes, printable ASCII, and with anything shaped like an API key cut
// out (a client may put anything there).
func AuditUserAgent(r *http.Request) string {
	ua := r.UserAgent()
	if len(ua) > 256 {
		ua = ua[:256]
	}
	for i := 0; i < len(ua); i++ {
		if c := ua[i]; c < 0x20 || c > 0x7e {
			b := []byte(ua)
			for j, c := range b {
				if c < 0x20 || c > 0x7e {
					b[j] = '?'
				}
			}
			ua = string(b)
			break
		}
	}
	if i := strings.Index(ua, spotoken.APIKeyPrefix); i >= 0 {
		ua = ua[:i] + spotoken.APIKeyPrefix + "[REDACTED]"
	}
	return ua
}

// auditActions names the API routes' actions; any other route is api.call.
var auditActions = map[string]spotoken.AuditAction{
	"POST /v1/connections/{id}/token": spotoken.AuditTokenVend,
	"/v1/proxy/{id}/{path...}":        spotoken.AuditProxyCall,
	"POST /v1/connect-sessions":       spotoken.AuditConnectLink,
	"GET /v1/connections":             spotoken.AuditConnectionGet,
	"GET /v1/connections/{id}":        spotoken.AuditConnectionGet,
	"DELETE /v1/connections/{id}":     spotoken.AuditConnectionDelete,
	"GET /v1/audit":                   spotoken.AuditAuditRead,
	"POST /v1/app-token":              spotoken.AuditTokenVend, // the app's own token: no connection
	"/v1/proxy/-/{path...}":           spotoken.AuditProxyCall,
}

// auditRequest writes the audit record of an API request whose outcome is
// known: err is what the handler returned (or the authentication's error),
// key the API key (nil when refused).
func (s *Server) auditRequest(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey, ip netip.Addr, err error) {
	note := noteOf(r)
	if note != nil && note.done {
		return
	}
	var rec spotoken.AuditRecord
	if note != nil {
		rec = note.actor // made once, when the request was authenticated
	} else {
		rec = s.auditActor(r, key, ip)
	}
	rec.Action = auditActions[r.Pattern]
	if rec.Action == "" {
		rec.Action = spotoken.AuditAPICall
	}
	if key == nil {
		rec.Action = spotoken.AuditAuthFailed
	}
	rec.Method, rec.Route = r.Method, routeTemplate(r.Pattern)
	if sw, ok := w.(*statusWriter); ok {
		rec.Status = sw.status
	}
	rec.Outcome = "ok"
	if err != nil {
		rec.Outcome = spotoken.ErrorCode(err)
	}
	if id := r.PathValue("id"); id != "" && key != nil && checkConnectionID(id) == nil {
		rec.ConnectionID = id
	}
	var secret spotoken.Secret
	if note != nil {
		if note.token != "" && err == nil {
			secret = note.token // fingerprinted by the trail's writer
		}
		if rec.Action == spotoken.AuditProxyCall {
			rec.Route = s.proxyRoute(r)
			if code, err := strconv.Atoi(note.upstream); err == nil {
				rec.UpstreamStatus = code
				if code >= 400 {
					rec.Outcome = "upstream_" + note.upstream
				}
			} else if note.upstream != "" {
				rec.Outcome = note.upstream
			}
		}
	}
	s.cfg.Audit.RecordSecret(rec, secret)
}

// routeTemplate is a mux pattern without its method.
func routeTemplate(pattern string) string {
	if _, path, ok := strings.Cut(pattern, " "); ok {
		return path
	}
	return pattern
}

// proxyRoute is the Web API endpoint a proxied request called, as a
// template: the scope table's path when it lists the endpoint, else the
// path with every segment that is not a plain lower-case word (an id, a
// user name with digits) replaced by {id}.
func (s *Server) proxyRoute(r *http.Request) string {
	_, endpoint, err := proxyTarget(s.api, proxyRest(r.URL.EscapedPath()))
	if err != nil {
		return "/v1/proxy/{id}/{path...}"
	}
	if e := endpointFor(r.Method, endpoint); e != nil {
		return e.path
	}
	segs := strings.Split(endpoint, "/")
	for i, seg := range segs {
		if i < 2 || seg == "" {
			continue
		}
		if len(seg) > 32 || strings.Trim(seg, "abcdefghijklmnopqrstuvwxyz-_") != "" {
			segs[i] = "{id}"
		}
	}
	return strings.Join(segs, "/")
}

// authLimited answers a request from an address over the failed
// authentication limit.
func (s *Server) authLimited(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	secs := int(math.Ceil(wait.Seconds()))
	s.writeError(w, r, &spotoken.Error{Code: spotoken.ERateLimited, RetryAfter: time.Duration(secs) * time.Second,
		Message: "Too many failed authentications from this address; try again after " + strconv.Itoa(secs) + " seconds."})
}

// changeRecord is the record of a lifecycle change made by r's actor (from
// its audit note), for spotoken.WithAudit; ok is false when the trail is off.
func (s *Server) changeRecord(r *http.Request, action spotoken.AuditAction, ck spotoken.ConnectionKey) (spotoken.AuditRecord, bool) {
	if s.cfg.Audit == nil {
		return spotoken.AuditRecord{}, false
	}
	rec := s.auditActor(r, nil, ClientIP(r, s.cfg.TrustedProxies))
	if n := noteOf(r); n != nil {
		rec = n.actor
	}
	rec.Version, rec.At, rec.Action = spotoken.AuditVersion, s.cfg.Now(), action
	rec.AppID, rec.ConnectionID = ck.AppID, ck.ID
	rec.Method, rec.Route, rec.Status, rec.Outcome = r.Method, routeTemplate(r.Pattern), 0, "ok"
	return rec, true
}

// userActor returns r's context naming the Spotify user userID, whose
// browser r comes from, as the actor of the consent it stores.
func (s *Server) userActor(r *http.Request, userID string) context.Context {
	if s.cfg.Audit == nil {
		return r.Context()
	}
	rec := s.auditActor(r, nil, ClientIP(r, s.cfg.TrustedProxies))
	rec.ActorType, rec.ActorID = spotoken.ActorUser, userID
	rec.Method, rec.Route = r.Method, routeTemplate(r.Pattern)
	return context.WithValue(r.Context(), auditNoteKey{}, &auditNote{actor: rec})
}

// flowAudit returns ctx carrying the record of a consent (connect or
// re-consent) to key, for the store write that makes it. The actor is
// the one ctx names (the user's browser at the callback, the app's key
// when it confirms a grant), else spotoken.
func (s *Server) flowAudit(ctx context.Context, action spotoken.AuditAction, key spotoken.ConnectionKey, spotifyUser string, scopes spotoken.Scopes) context.Context {
	if s.cfg.Audit == nil {
		return ctx
	}
	rec := spotoken.AuditRecord{ActorType: spotoken.ActorSystem}
	if n := noteFrom(ctx); n != nil {
		rec = n.actor
	}
	rec.Version, rec.At, rec.Action, rec.Outcome = spotoken.AuditVersion, s.cfg.Now(), action, "ok"
	rec.AppID, rec.ConnectionID = key.AppID, key.ID
	rec.Detail = map[string]string{"spotify_user_id": spotifyUser, "scopes": scopes.String()}
	return spotoken.WithAudit(ctx, rec)
}

// AuditRecordView is an audit record as the API, the CLI and exports show
// it: one JSON object, "v" the format version (spotoken.AuditVersion).
type AuditRecordView struct {
	Version        int               `json:"v"`
	ID             int64             `json:"id"`
	At             time.Time         `json:"at"`
	Action         string            `json:"action"`
	AppID          string            `json:"app_id,omitempty"`
	ConnectionID   string            `json:"connection_id,omitempty"`
	Actor          AuditActorView    `json:"actor"`
	ClientIP       string            `json:"client_ip,omitempty"`
	UserAgent      string            `json:"user_agent,omitempty"`
	RequestID      string            `json:"request_id,omitempty"`
	Method         string            `json:"method,omitempty"`
	Route          string            `json:"route,omitempty"`
	Status         int               `json:"status,omitempty"`
	UpstreamStatus int               `json:"upstream_status,omitempty"`
	Outcome        string            `json:"outcome"`
	Fingerprint    string            `json:"fingerprint,omitempty"`
	Detail         map[string]string `json:"detail,omitempty"`
}

// AuditActorView is who acted: type api_key (id: the key's id), admin,
// user (id: the Spotify user), system or anonymous.
type AuditActorView struct {
	Type  string `json:"type"`
	ID    string `json:"id,omitempty"`
	Label string `json:"label,omitempty"`
}

// NewAuditRecordView returns r's view.
func NewAuditRecordView(r *spotoken.AuditRecord) AuditRecordView {
	return AuditRecordView{
		Version: r.Version, ID: r.ID, At: r.At.UTC(), Action: string(r.Action), AppID: r.AppID, ConnectionID: r.ConnectionID,
		Actor:    AuditActorView{Type: r.ActorType, ID: r.ActorID, Label: r.ActorLabel},
		ClientIP: r.ClientIP, UserAgent: r.UserAgent, RequestID: r.RequestID, Method: r.Method, Route: r.Route,
		Status: r.Status, UpstreamStatus: r.UpstreamStatus, Outcome: r.Outcome, Fingerprint: r.Fingerprint, Detail: r.Detail,
	}
}

// AuditList is a page of audit records; NextCursor, when set, is the
// cursor parameter for the next page.
type AuditList struct {
	Records    []AuditRecordView `json:"records"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

// FormatAuditCursor encodes a listing position as the opaque cursor the API
// hands out: the record's time in unix microseconds and its id.
func FormatAuditCursor(c spotoken.AuditCursor) string {
	return strconv.FormatInt(c.At.UnixMicro(), 10) + "." + strconv.FormatInt(c.ID, 10)
}

// ParseAuditCursor decodes a cursor made by FormatAuditCursor.
func ParseAuditCursor(s string) (spotoken.AuditCursor, error) {
	at, id, ok := strings.Cut(s, ".")
	us, err1 := strconv.ParseInt(at, 10, 64)
	n, err2 := strconv.ParseInt(id, 10, 64)
	if !ok || err1 != nil || err2 != nil || us < 0 || n < 0 || len(s) > 48 {
		return spotoken.AuditCursor{}, spotoken.Errorf(spotoken.EInvalid, "cursor is not a cursor this API returned")
	}
	return spotoken.AuditCursor{At: time.UnixMicro(us).UTC(), ID: n}, nil
}

// ParseAuditTime reads a time parameter: RFC 3339.
func ParseAuditTime(name, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, spotoken.Errorf(spotoken.EInvalid, "%s must be an RFC 3339 time such as 2026-07-01T12:00:00Z", name)
	}
	return t, nil
}

// handleAudit is GET /v1/audit: the key's app's audit records, oldest
// first, by connection and time range.
func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request, key *spotoken.APIKey) error {
	if s.cfg.Audit == nil {
		return spotoken.Errorf(spotoken.ENotFound, "the audit trail is not enabled on this server")
	}
	q := r.URL.Query()
	filter := spotoken.AuditFilter{AppID: key.AppID, Limit: 100}
	for name, v := range q {
		if len(v) > 1 {
			return spotoken.Errorf(spotoken.EInvalid, "parameter %s is repeated", name)
		}
		var err error
		switch name {
		case "connection_id":
			if err = checkConnectionID(v[0]); err == nil {
				filter.ConnectionID = v[0]
			}
		case "since":
			filter.Since, err = ParseAuditTime(name, v[0])
		case "until":
			filter.Until, err = ParseAuditTime(name, v[0])
		case "cursor":
			if v[0] != "" { // empty: the first page, as GET /v1/connections takes it
				filter.After, err = ParseAuditCursor(v[0])
			}
		case "limit":
			n, perr := strconv.Atoi(v[0])
			if perr != nil || n < 1 || n > 1000 {
				err = spotoken.Errorf(spotoken.EInvalid, "limit must be an integer from 1 to 1000")
			}
			filter.Limit = n
		default:
			err = spotoken.Errorf(spotoken.EInvalid, "unknown parameter %q; use connection_id, since, until, limit, cursor", truncate(name, 32))
		}
		if err != nil {
			return err
		}
	}
	want := filter.Limit
	filter.Limit++
	recs, err := s.cfg.Audit.Records(r.Context(), filter)
	if err != nil {
		return err
	}
	out := AuditList{Records: make([]AuditRecordView, 0, min(len(recs), want))}
	for i, rec := range recs {
		if i == want {
			last := recs[want-1]
			out.NextCursor = FormatAuditCursor(spotoken.AuditCursor{At: last.At, ID: last.ID})
			break
		}
		out.Records = append(out.Records, NewAuditRecordView(rec))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// adminAuditActor returns r carrying the admin credential by as the actor
// of the changes it makes (a deletion is recorded with the deletion).
func (s *Server) adminAuditActor(r *http.Request, by admin.Actor) *http.Request {
	if s.cfg.Audit == nil {
		return r
	}
	rec := s.auditActor(r, nil, ClientIP(r, s.cfg.TrustedProxies))
	rec.ActorType, rec.ActorID, rec.ActorLabel = spotoken.ActorAdmin, by.ID, by.Kind+":"+by.Name
	if rec.ActorID == "" {
		rec.ActorID = by.Name
	}
	return withNote(r, rec)
}

// keyLabel names a key for the audit trail and pages: its name and the
// start of its value, which the store keeps to tell keys apart.
func keyLabel(k *spotoken.APIKey) string {
	label := k.Prefix + "…"
	if k.Name != "" {
		label = k.Name + " (" + label + ")"
	}
	return label
}
