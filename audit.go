package spotoken

import (
	"context"
	"time"
)

// AuditVersion is the version of the AuditRecord format, written into every
// record (and every exported line) so that a reader can tell formats apart
// when fields are added. docs/audit.md describes each version.
const AuditVersion = 1

// AuditAction names what an audit record records.
type AuditAction string

// The audit actions. Vends and proxied calls are the high-volume ones,
// written in batches that fail open; lifecycle and admin changes are
// written in the same transaction as the change (see WithAudit).
const (
	AuditTokenVend     AuditAction = "token.vend"             // POST /v1/connections/{id}/token
	AuditProxyCall     AuditAction = "proxy.call"             // ANY /v1/proxy/{id}/...
	AuditConnectLink   AuditAction = "connect_session.create" // a connect link minted
	AuditConnectionGet AuditAction = "connection.read"        // GET /v1/connections[/{id}]
	AuditAuditRead     AuditAction = "audit.read"             // GET /v1/audit
	AuditAPICall       AuditAction = "api.call"               // any other API route
	AuditAuthFailed    AuditAction = "auth.failed"            // a request whose credentials were refused
	AuditAuthLimited   AuditAction = "auth.limited"           // an address put under the failed-authentication limit

	AuditConnect          AuditAction = "connection.connect"      // a user authorized a new connection
	AuditReconsent        AuditAction = "connection.reconsent"    // a user authorized an existing connection again
	AuditConnectionDelete AuditAction = "connection.delete"       // a connection deleted (tokens erased)
	AuditNeedsReauth      AuditAction = "connection.needs_reauth" // Spotify refused the refresh token

	AuditAppCreate    AuditAction = "app.create"
	AuditAppUpdate    AuditAction = "app.update"
	AuditAppDelete    AuditAction = "app.delete"
	AuditAPIKeyCreate AuditAction = "api_key.create"
	AuditAPIKeyRevoke AuditAction = "api_key.revoke"
	AuditKeysRotate   AuditAction = "keys.rotate"

	AuditAlert AuditAction = "alert" // a detector fired; Detail["detector"] names it
)

// Who acted: AuditRecord.ActorType.
const (
	ActorAPIKey    = "api_key"   // an app's service, by its API key (ActorID is the key's id)
	ActorAdmin     = "admin"     // an operator, through the CLI or the admin API
	ActorUser      = "user"      // a Spotify user's browser, in the connect flow
	ActorSystem    = "system"    // spotoken itself: refreshes, detectors
	ActorAnonymous = "anonymous" // credentials missing or refused
)

// AuditRecord is one entry of the audit trail: who did what to which app
// and connection, from where, and how it ended. It never holds a secret:
// identifiers in clear, and a secret involved (the access token vended, say)
// only as Fingerprint, a keyed hash that can be matched against a known
// value but not reversed. Records are append-only.
type AuditRecord struct {
	// ID is assigned by the store, increasing.
	ID int64
	// Version is the format version, AuditVersion when written.
	Version int
	At      time.Time
	Action  AuditAction
	AppID   string
	// ConnectionID is empty for actions on no connection.
	ConnectionID string
	// ActorType is one of the Actor* constants; ActorID the API key's id
	// (or the admin's name); ActorLabel a human label (the key's name and
	// the start of its value, which spotoken shows to tell keys apart).
	ActorType, ActorID, ActorLabel string
	// ClientIP is the caller's address: the connection's peer, or the
	// X-Forwarded-For address a trusted proxy vouches for.
	ClientIP  string
	UserAgent string
	RequestID string
	// Method and Route describe an HTTP request: the route is a template
	// (/v1/connections/{id}/token; for the proxy, the Web API endpoint
	// /v1/playlists/{id}), never a path with its values.
	Method, Route string
	// Status is the HTTP status spotoken answered; UpstreamStatus is
	// Spotify's, when the proxy called it (zero otherwise).
	Status, UpstreamStatus int
	// Outcome is "ok" or an error code (needs_reauth, invalid_token, ...).
	Outcome string
	// Fingerprint is "hmac-sha256:V:HEX" of the secret the action handed
	// out or used, under the deployment's fingerprint key version V; empty
	// when none.
	Fingerprint string
	// Detail holds further facts, never a secret (a reason, a detector's
	// figures).
	Detail map[string]string
}

// AuditCursor is a position in a time-ordered listing of records: the
// records after it have a later At, or the same At and a greater ID.
type AuditCursor struct {
	At time.Time
	ID int64
}

// AuditFilter selects audit records for AuditRecords.
type AuditFilter struct {
	// AppID, when set, selects one app's records; ConnectionID (which
	// needs AppID) one connection's.
	AppID, ConnectionID string
	// Since and Until bound At: Since <= At < Until; zero for no bound.
	Since, Until time.Time
	// After continues a listing after a record; zero from the start.
	After AuditCursor
	// Newest lists newest first (After then means before).
	Newest bool
	// Limit caps the result; zero or negative means 100.
	Limit int
}

// AuditMark is a fact a detector keeps in the store so that every replica
// shares it: that (Kind, AppID, Subject) was first and last seen at
// FirstAt and LastAt. Kinds are the detectors' own ("network", "rotated",
// "alert:usage_spike", ...).
type AuditMark struct {
	Kind, AppID, Subject string
	FirstAt, LastAt      time.Time
}

// AuditMarkCount is how many marks of a kind an app has.
type AuditMarkCount struct {
	AppID string
	Count int
}

// AuditStore keeps the audit trail and the detectors' shared marks.
type AuditStore interface {
	// AppendAudit stores records in one transaction, the store assigning
	// their IDs. It is for the batched, high-volume records; lifecycle
	// changes attach theirs to the change with WithAudit instead.
	AppendAudit(ctx context.Context, records ...AuditRecord) error
	// AuditRecords lists records selected by filter, ordered by (At, ID),
	// oldest first unless filter.Newest.
	AuditRecords(ctx context.Context, filter AuditFilter) ([]*AuditRecord, error)
	// DeleteAuditBefore deletes up to limit records with At before before,
	// oldest first, and marks whose LastAt is before before; it returns
	// how many records it deleted.
	DeleteAuditBefore(ctx context.Context, before time.Time, limit int) (int, error)
	// MarkAudit records that the mark's (Kind, AppID, Subject) was seen at
	// m.LastAt: a new mark gets FirstAt = LastAt = m.LastAt; an existing
	// one keeps FirstAt and moves LastAt forward (never back). It returns
	// the mark as it was before, the zero AuditMark if there was none, so
	// that of concurrent callers (in any process) exactly one sees none.
	MarkAudit(ctx context.Context, m AuditMark) (AuditMark, error)
	// AuditMark returns a mark; ErrNotFound if none.
	AuditMark(ctx context.Context, kind, appID, subject string) (AuditMark, error)
	// CountAuditMarks counts the marks of kind whose LastAt is at or after
	// since, by app, ordered by app.
	CountAuditMarks(ctx context.Context, kind string, since time.Time) ([]AuditMarkCount, error)
}

type auditKey struct{}

// WithAudit returns a context carrying records for a store write: a store
// method that creates, updates or deletes an app, an API key, an admin
// key, a connection or an app's browser-app settings, or redelivers
// events, called with this context, stores the records in the same
// transaction as its change, so the change and its record are committed
// together or not at all (fail closed). Attach records to the one call
// they describe, not to a context that reaches other writes.
func WithAudit(ctx context.Context, records ...AuditRecord) context.Context {
	if len(records) == 0 {
		return ctx
	}
	return WithAuditFunc(ctx, func() []AuditRecord { return records })
}

// WithAuditFunc is WithAudit with the records made by records when the
// store writes them: after the change is made, inside its transaction, so
// that they can say what it changed (the settings an update touched). It
// may be called more than once (a retried transaction) and must not block;
// an empty result stores no record (and the change is made all the same).
func WithAuditFunc(ctx context.Context, records func() []AuditRecord) context.Context {
	return context.WithValue(ctx, auditKey{}, records)
}

// AuditFromContext returns the records WithAudit or WithAuditFunc
// attached to ctx.
func AuditFromContext(ctx context.Context) []AuditRecord {
	if f, _ := ctx.Value(auditKey{}).(func() []AuditRecord); f != nil {
		return f()
	}
	return nil
}

// The events the detectors send to an app's webhook. Their data never holds
// a secret; see docs/audit.md for each detector's rule.
const (
	// EventAlertNewNetwork: one of the app's API keys was used from a
	// network (/24 or /48) it had not used before.
	EventAlertNewNetwork EventType = "alert.new_network"
	// EventAlertUsageSpike: a connection's vend or proxy rate is far above
	// its own recent peak.
	EventAlertUsageSpike EventType = "alert.usage_spike"
	// EventAlertReauthSurge: many of the app's connections moved to
	// needs_reauth in a short window.
	EventAlertReauthSurge EventType = "alert.reauth_surge"
	// EventAlertRefreshReuse: Spotify refused a refresh token that
	// spotoken held as current, under rotation: someone else may have used
	// it (or the user revoked the app; see docs/audit.md).
	EventAlertRefreshReuse EventType = "alert.refresh_token_reuse"
)

// AuditStats are the audit trail's counters since the process started, for
// the metrics.
type AuditStats struct {
	// Written counts records stored; Dropped records lost, by cause: the
	// queue was full, or writing a batch failed.
	Written, DroppedQueueFull, DroppedWriteFailed int64
	// Queued is how many records wait to be written.
	Queued int
	// Anomalies counts detector firings by detector and app.
	Anomalies []AnomalyCount
	// AuthFailures counts refused credentials; AuthLimited requests refused
	// by the per-address limit; LimitedAddresses is how many addresses are
	// limited now; TrackedAddresses how many the limiter remembers.
	AuthFailures, AuthLimited          int64
	LimitedAddresses, TrackedAddresses int
}

// AnomalyCount is how often a detector fired for an app ("" for the
// failed-authentication limit, which has no app).
type AnomalyCount struct {
	Detector, AppID string
	Count           int64
}
