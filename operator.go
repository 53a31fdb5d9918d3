package spotoken

import (
	"crypto/sha256"
	"time"
)

// The operator's side of the domain: admin credentials, an app's own
// (client-credentials) token, the outbox seen as a delivery log, and the
// search of connections across apps.

// AdminKeyPrefix starts every admin credential, so that one is told from an
// app's API key (APIKeyPrefix) at a glance and by secret scanners.
const AdminKeyPrefix = "sa_"

// AdminKey authenticates an operator to the admin API, across every app.
// It is not an API key: it belongs to no app, and the app API refuses it
// as the admin API refuses API keys. Only the SHA-256 hash of the key is
// stored.
type AdminKey struct {
	// ID identifies the key in lists and for revocation.
	ID string
	// Name is the operator's label for the key (whose it is).
	Name string
	// Prefix is the start of the key, shown so people can tell keys apart.
	Prefix string
	// Hash is the SHA-256 of the whole key.
	Hash       [32]byte
	CreatedAt  time.Time
	LastUsedAt time.Time // zero: never used
	RevokedAt  time.Time // zero: active
}

// Revoked reports whether the key has been revoked.
func (k *AdminKey) Revoked() bool { return !k.RevokedAt.IsZero() }

// NewAdminKey mints a new admin credential named name: the key to hand the
// operator once, and the record to store, which holds only its SHA-256 hash
// and its first characters.
func NewAdminKey(name string, now time.Time) (key Secret, rec *AdminKey) {
	k := AdminKeyPrefix + randomString(32)
	return Secret(k), &AdminKey{
		ID: "adm_" + randomString(9), Name: name, Prefix: k[:len(AdminKeyPrefix)+6],
		Hash: HashAdminKey(Secret(k)), CreatedAt: now,
	}
}

// HashAdminKey is the SHA-256 of an admin credential, as stored and looked up.
func HashAdminKey(key Secret) [32]byte { return sha256.Sum256([]byte(key.Reveal())) }

// AppToken is an app's own access token, from the client-credentials grant
// (RFC 6749 §4.4): no user, no refresh token, for catalog calls. One is
// kept per app, sealed, and refreshed by one replica at a time under its
// lease, as a connection's is.
type AppToken struct {
	AppID string
	// ClientID is the Spotify client id the token was issued to; a token
	// of another client id than the app's (the app was changed) is unused.
	ClientID string
	// AccessToken is sealed at rest; empty until the first token is saved.
	AccessToken Secret
	// Expiry is when the access token expires.
	Expiry time.Time
	// Version increases with every saved token.
	Version int64
	// Lease is read-only here: change it with the lease methods.
	Lease     Lease
	UpdatedAt time.Time
}

// Valid reports whether the token is present and valid for at least minTTL
// after now.
func (t *AppToken) Valid(now time.Time, minTTL time.Duration) bool {
	return t.AccessToken != "" && now.Add(minTTL).Before(t.Expiry)
}

// EventStatus is where an event stands in its delivery to the app's webhook.
type EventStatus string

// The event statuses.
const (
	// EventPending: not sent yet.
	EventPending EventStatus = "pending"
	// EventFailed: sent and refused (or held back behind a failed event),
	// to be tried again at NextAttemptAt.
	EventFailed EventStatus = "failed"
	// EventGaveUp: failed its last attempt; it stays in the outbox for the
	// record and is sent again only when an operator redelivers it.
	EventGaveUp EventStatus = "gave_up"
	// EventDelivered: acknowledged by the receiver (or skipped: the app had
	// no webhook URL).
	EventDelivered EventStatus = "delivered"
)

// Valid reports whether s is one of the defined statuses.
func (s EventStatus) Valid() bool {
	return s == EventPending || s == EventFailed || s == EventGaveUp || s == EventDelivered
}

// EventGaveUpAt is the NextAttemptAt of an event the deliverer gave up on:
// never due.
var EventGaveUpAt = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// Status returns the event's delivery status.
func (e *Event) Status() EventStatus {
	switch {
	case !e.DeliveredAt.IsZero():
		return EventDelivered
	case !e.NextAttemptAt.Before(EventGaveUpAt):
		return EventGaveUp
	case e.Attempts > 0:
		return EventFailed
	}
	return EventPending
}

// EventFilter selects events of one app for Events, newest first.
type EventFilter struct {
	AppID string // required
	// ConnectionID, when set, selects the events of one connection.
	ConnectionID string
	// Status, when set, selects the events with that status.
	Status EventStatus
	// Before is a pagination cursor: only events with an ID lower than it;
	// zero for the newest.
	Before int64
	// Limit caps the result; zero or negative means 100.
	Limit int
}

// ConnectionQuery selects connections across apps for operators.
type ConnectionQuery struct {
	// AppID, when set, selects one app's connections.
	AppID string
	// ID, when set, selects the connections with this id (one per app).
	ID string
	// SpotifyUserID, when set, selects the connections of this Spotify user.
	SpotifyUserID string
	// State, when set, selects the connections in that state.
	State State
	// After is a pagination cursor: only connections whose (AppID, ID) sort
	// after it.
	After ConnectionKey
	// Limit caps the result; zero or negative means 100.
	Limit int
}
