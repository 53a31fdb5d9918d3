package spotoken

import (
	"context"
	"time"
)

// The store interfaces. Implementations (packages sqlite and postgres) seal
// every Secret before it reaches the database and open it on the way out;
// they are safe for concurrent use by many goroutines and, for postgres, many
// processes. Errors wrap the sentinel errors of this package (ErrNotFound,
// ErrConflict, ...) so callers branch with errors.Is.
//
// Each interface is small so that a consumer can ask for only what it uses;
// Store gathers them for wiring.

// AppStore keeps apps.
type AppStore interface {
	// CreateApp stores a new app; ErrConflict if its ID exists.
	CreateApp(ctx context.Context, app *App) error
	// App returns the app with id; ErrNotFound if none.
	App(ctx context.Context, id string) (*App, error)
	// Apps returns every app, ordered by ID.
	Apps(ctx context.Context) ([]*App, error)
	// UpdateApp applies fn to the stored app and saves the result atomically.
	// fn must not change the ID.
	UpdateApp(ctx context.Context, id string, fn func(*App) error) (*App, error)
	// DeleteApp deletes the app with its API keys, pending authorizations,
	// connections (sealed tokens erased) and undelivered events; delivered
	// events stay as history. ErrNotFound if none.
	DeleteApp(ctx context.Context, id string) error
}

// APIKeyStore keeps API keys (their SHA-256 hashes, never the keys).
type APIKeyStore interface {
	// CreateAPIKey stores a new key; ErrConflict if its ID or hash exists;
	// ErrNotFound if its app does not exist.
	CreateAPIKey(ctx context.Context, key *APIKey) error
	// APIKeyByHash finds a key, revoked or not, by the SHA-256 of its value;
	// ErrNotFound if none.
	APIKeyByHash(ctx context.Context, hash [32]byte) (*APIKey, error)
	// APIKeys lists an app's keys, oldest first.
	APIKeys(ctx context.Context, appID string) ([]*APIKey, error)
	// RevokeAPIKey marks an app's key revoked at at; ErrNotFound if the app
	// has no key with id. Revoking twice keeps the first time.
	RevokeAPIKey(ctx context.Context, appID, id string, at time.Time) error
	// TouchAPIKey records that the key was used at at; the recorded time
	// never moves backwards. ErrNotFound if no key has id.
	TouchAPIKey(ctx context.Context, id string, at time.Time) error
}

// PendingStore keeps authorizations between /connect and /callback.
type PendingStore interface {
	// CreatePending stores a pending authorization; ErrConflict if its state
	// hash exists.
	CreatePending(ctx context.Context, p *PendingAuthorization) error
	// ConsumePending marks the pending authorization with stateHash used and
	// returns it, atomically, so it can be consumed once: ErrNotFound if
	// unknown, ErrAlreadyUsed if consumed before, ErrExpired (and no
	// authorization) if now is at or past its expiry; an expired one is
	// consumed too.
	ConsumePending(ctx context.Context, stateHash [32]byte) (*PendingAuthorization, error)
	// DeleteExpiredPending deletes pending authorizations that expired
	// before before and returns how many.
	DeleteExpiredPending(ctx context.Context, before time.Time) (int, error)
}

// ConnectionFilter selects connections for Connections.
type ConnectionFilter struct {
	AppID string // required
	State State  // empty: any state
	// After is a pagination cursor: only connections with an ID greater than it.
	After string
	// Limit caps the result; zero or negative means 100 (see PageLimit).
	Limit int
}

// Page sizes of the stores' listings (Connections, FindConnections,
// BrowseConnections, Events, AuditRecords). A client asks for at most
// MaxPage items a page (the API's, console's and CLI's limit), and a caller
// asks the store for one more to learn whether another page follows; so a
// listing returns at most MaxPage+1 rows, and a larger Limit is refused:
// one call never reads an unbounded number of rows.
const (
	// DefaultPage is a listing's page when its Limit is not positive.
	DefaultPage = 100
	// MaxPage is the largest page a client may ask for.
	MaxPage = 1000
)

// PageLimit returns how many rows a listing asked for limit returns:
// DefaultPage when limit is not positive, else limit; an EInvalid error
// when limit is over MaxPage+1.
func PageLimit(limit int) (int, error) {
	switch {
	case limit <= 0:
		return DefaultPage, nil
	case limit > MaxPage+1:
		return 0, Errorf(EInvalid, "a page holds at most %d items, not %d", MaxPage, limit)
	}
	return limit, nil
}

// ConnectionStore keeps connections and their sealed tokens.
type ConnectionStore interface {
	// CreateConnection stores a new connection with Version 1 and its
	// events, in one transaction; ErrConflict if the key exists,
	// ErrNotFound if the app does not.
	CreateConnection(ctx context.Context, c *Connection, events ...Event) error
	// Connection returns the connection with key; ErrNotFound if none.
	Connection(ctx context.Context, key ConnectionKey) (*Connection, error)
	// UpdateConnection reads the connection, calls fn with a copy, and
	// writes fn's result with the events fn returns, in one transaction,
	// guarded by compare-and-swap on Version, which it increments. fn may
	// run more than once if another writer gets in first, so it must only
	// compute. An error from fn aborts the update and is returned as is.
	// fn cannot change the key, Version or Lease. Emptying Token erases the
	// sealed tokens. Under a context from ReleasingLease(ctx, owner) the
	// same transaction also clears owner's lease, if owner holds it; the
	// returned connection then has no lease.
	UpdateConnection(ctx context.Context, key ConnectionKey, fn func(c *Connection) ([]Event, error)) (*Connection, error)
	// DeleteConnection deletes the connection, erasing its sealed tokens, and
	// stores events in the same transaction; ErrNotFound if none.
	DeleteConnection(ctx context.Context, key ConnectionKey, events ...Event) error
	// Connections lists an app's connections by ID, after filter.After.
	Connections(ctx context.Context, filter ConnectionFilter) ([]*Connection, error)
	// CountConnections counts connections by app and state, ordered by app
	// then state; pairs with no connection are left out. It opens no token.
	CountConnections(ctx context.Context) ([]ConnectionCount, error)
	// Due returns up to limit (nothing if limit <= 0) active connections whose access token expires
	// before before and that are not in backoff (NextAttemptAt not after
	// the store's clock), soonest expiry first. It reads an index, not the
	// whole table, and opens no token.
	Due(ctx context.Context, before time.Time, limit int) ([]DueConnection, error)

	// DueUsed is Due for the scheduler: up to q.Limit active connections
	// not in backoff whose access token expires before q.Before, used at
	// or after q.UsedSince, strictly after the cursor q.After, in Due's
	// order (soonest expiry, then app and id). It reads an index, not the
	// whole table, starting at the cursor, and opens no token.
	DueUsed(ctx context.Context, q DueQuery) ([]DueConnection, error)
	// CountDue counts what DueUsed(q) would return without q.Limit (and
	// without q.After when its Expiry is zero), from the same index.
	CountDue(ctx context.Context, q DueQuery) (int, error)
	// MarkUsed records that callers used connections: each one's last use
	// becomes the later of the stored one and its At. Connections that do
	// not exist (deleted meanwhile) are skipped. It changes neither Version
	// nor UpdatedAt, and takes few round trips however many uses it gets.
	// A new connection counts as used when it is created.
	MarkUsed(ctx context.Context, uses []ConnectionUse) error

	// ExpiringGrants returns up to limit (nothing if limit <= 0) active
	// connections whose grant expires before before and whose
	// ExpiryWarnedAt is zero, soonest GrantExpiresAt first, with Expiry set
	// to GrantExpiresAt. It reads an index and opens no token.
	ExpiringGrants(ctx context.Context, before time.Time, limit int) ([]DueConnection, error)
	// CountExpiringGrants counts, by app, the active connections whose
	// grant expires before before (warned or not), ordered by app, with
	// State StateActive; apps with none are left out. It opens no token.
	CountExpiringGrants(ctx context.Context, before time.Time) ([]ConnectionCount, error)

	// AcquireLease gives owner the connection's lease for ttl if nobody else
	// holds it (or the holder's lease expired); ErrLeaseHeld otherwise. An
	// owner that already holds it gets it extended. ErrNotFound if the
	// connection does not exist.
	AcquireLease(ctx context.Context, key ConnectionKey, owner string, ttl time.Duration) (Lease, error)
	// RenewLease extends owner's unexpired lease to ttl from now; ErrLeaseLost
	// if owner does not hold it, or its lease expired. ErrNotFound if the
	// connection does not exist.
	RenewLease(ctx context.Context, key ConnectionKey, owner string, ttl time.Duration) (Lease, error)
	// ReleaseLease gives up owner's lease; ErrLeaseLost if owner does not
	// hold it, or its lease expired. ErrNotFound if the connection does not exist.
	ReleaseLease(ctx context.Context, key ConnectionKey, owner string) error
}

// EventStore is the outbox of events for webhooks.
type EventStore interface {
	// AppendEvents stores events outside a connection change.
	AppendEvents(ctx context.Context, events ...Event) error
	// PendingEvents returns up to limit (nothing if limit <= 0) undelivered events whose
	// NextAttemptAt is not after now, oldest first.
	PendingEvents(ctx context.Context, now time.Time, limit int) ([]*Event, error)
	// MarkEventDelivered records a successful delivery (the first one's
	// time is kept); ErrNotFound if no event has id.
	MarkEventDelivered(ctx context.Context, id int64, at time.Time) error
	// MarkEventFailed records a failed attempt and when to try again;
	// ErrNotFound if no event has id.
	MarkEventFailed(ctx context.Context, id int64, next time.Time, lastError string) error
}

// AdminKeyStore keeps operators' admin credentials (their SHA-256 hashes,
// never the keys).
type AdminKeyStore interface {
	// CreateAdminKey stores a new admin key; ErrConflict if its ID or hash
	// exists.
	CreateAdminKey(ctx context.Context, key *AdminKey) error
	// AdminKeyByHash finds an admin key, revoked or not, by the SHA-256 of
	// its value; ErrNotFound if none.
	AdminKeyByHash(ctx context.Context, hash [32]byte) (*AdminKey, error)
	// AdminKeys lists every admin key, oldest first.
	AdminKeys(ctx context.Context) ([]*AdminKey, error)
	// RevokeAdminKey marks the admin key revoked at at; ErrNotFound if no
	// admin key has id. Revoking twice keeps the first time.
	RevokeAdminKey(ctx context.Context, id string, at time.Time) error
	// TouchAdminKey records that the key was used at at; the recorded time
	// never moves backwards. ErrNotFound if no admin key has id.
	TouchAdminKey(ctx context.Context, id string, at time.Time) error
}

// AppTokenStore keeps each app's client-credentials token, sealed, with a
// lease so that one replica at a time asks Spotify for a new one.
type AppTokenStore interface {
	// AppToken returns the app's token row; ErrNotFound if the app has
	// none yet (or does not exist).
	AppToken(ctx context.Context, appID string) (*AppToken, error)
	// AcquireAppTokenLease gives owner the app token's lease for ttl if
	// nobody else holds it (or the holder's lease expired), creating the
	// app's row if it has none; ErrLeaseHeld otherwise. An owner that
	// already holds it gets it extended. ErrNotFound if the app does not
	// exist.
	AcquireAppTokenLease(ctx context.Context, appID, owner string, ttl time.Duration) (Lease, error)
	// SaveAppToken stores t (ClientID, AccessToken, Expiry) as its app's
	// token and increments Version, if owner holds the app token's
	// unexpired lease; ErrLeaseLost otherwise. It keeps the lease.
	SaveAppToken(ctx context.Context, owner string, t *AppToken) error
	// ReleaseAppTokenLease gives up owner's lease; ErrLeaseLost if owner
	// does not hold it, or it expired; ErrNotFound if the app has no row.
	ReleaseAppTokenLease(ctx context.Context, appID, owner string) error
}

// EventLog is the outbox seen by operators: the deliveries of an app's
// events and their redelivery.
type EventLog interface {
	// Events lists events as filter selects, newest (highest ID) first.
	Events(ctx context.Context, filter EventFilter) ([]*Event, error)
	// RedeliverEvent makes an app's event due again now, as if it were new
	// (no attempts, no last error, not delivered), whatever its status;
	// ErrNotFound if the app has no event id.
	RedeliverEvent(ctx context.Context, appID string, id int64) error
	// RedeliverEvents makes every event of the app with status (EventFailed
	// or EventGaveUp; EInvalid otherwise) due again now, as RedeliverEvent
	// does, and returns how many.
	RedeliverEvents(ctx context.Context, appID string, status EventStatus) (int, error)
}

// ConnectionFinder searches connections across apps, for operators.
type ConnectionFinder interface {
	// FindConnections returns up to q.Limit connections that q selects,
	// ordered by app then id, with no token: their Token holds only the
	// access token's Expiry.
	FindConnections(ctx context.Context, q ConnectionQuery) ([]*Connection, error)
}

// Resealer re-seals stored secrets under the key ring's primary key.
type Resealer interface {
	// Reseal re-seals, batch rows per transaction, every secret sealed under
	// an older key, while the store stays in use, and returns how many
	// secrets it re-sealed. It changes no plaintext, so it leaves versions
	// and UpdatedAt as they were, and it never overwrites a secret that
	// changed since it read it.
	Reseal(ctx context.Context, batch int) (int, error)
}

// Store is every store interface, as the stores implement them.
type Store interface {
	AppStore
	APIKeyStore
	PendingStore
	PendingGrantStore
	ConnectionStore
	EventStore
	AuditStore
	AdminKeyStore
	AppTokenStore
	EventLog
	ConnectionFinder
	EndpointStore
	RateLimitStore
	SessionStore
	BrowserAppStore
	ConnectionBrowser
	TallyStore
	Resealer
	// Close releases the store's resources.
	Close() error
}

// Writes made for no waiting caller
//
// A store whose writes queue for one writer (SQLite's single write
// connection) serves first the writes a caller is waiting for (an
// on-demand refresh, a connect, a re-consent link) and then the rest: the
// scheduler's refreshes, batched last-use and audit writes. The work
// itself is the same either way; only its place in that queue changes.

type backgroundKey struct{}

// Background returns ctx marked as background work: the store calls made
// under it are not made for a caller who is waiting for their answer, so a
// store may let other writes go first (see IsBackground). Contexts derived
// from it keep the mark.
func Background(ctx context.Context) context.Context {
	return context.WithValue(ctx, backgroundKey{}, true)
}

// IsBackground reports whether ctx was marked by Background.
func IsBackground(ctx context.Context) bool {
	b, _ := ctx.Value(backgroundKey{}).(bool)
	return b
}

type leaseReleaseKey struct{}

// ReleasingLease returns ctx for an UpdateConnection that also gives up
// owner's lease on the connection, in the same transaction as the update:
// the lease is cleared if owner holds it (expired or not), and left as it
// is otherwise; the update is made either way. A refresh's commit uses it
// so that it costs one write, not two. Other store calls ignore it.
func ReleasingLease(ctx context.Context, owner string) context.Context {
	return context.WithValue(ctx, leaseReleaseKey{}, owner)
}

// LeaseToRelease returns the lease owner that ReleasingLease attached to
// ctx, or "" if none.
func LeaseToRelease(ctx context.Context) string {
	o, _ := ctx.Value(leaseReleaseKey{}).(string)
	return o
}
