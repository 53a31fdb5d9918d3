package spotoken

import (
	"context"
	"time"
)

// What the operator's console reads beyond the other stores: one app's
// connections in the orders it offers (each read from an index, so a page
// stays fast at a million connections), the health figures of its apps
// list, and the hourly tallies of refreshes behind its charts.

// EventConnectionRefreshFailed: a refresh failed for a reason that does
// not need the user (Spotify answered 429 or 5xx, or could not be
// reached); spotoken backs off and tries again, serving the access token
// while it is valid. Its data has error (rate_limited or server_error),
// attempt (the consecutive failures so far) and retry_at.
const EventConnectionRefreshFailed EventType = "connection.refresh_failed"

// ConnectionOrder is the order of a BrowseConnections listing.
type ConnectionOrder string

// The orders of BrowseConnections.
const (
	// OrderGrantExpiry lists active connections, the grant that expires
	// first first.
	OrderGrantExpiry ConnectionOrder = "grant_expiry"
	// OrderNextAttempt lists active connections held back by backoff (see
	// BrowseQuery.BackingOffAt), the one retried first first.
	OrderNextAttempt ConnectionOrder = "next_attempt"
)

// Valid reports whether o is one of the defined orders.
func (o ConnectionOrder) Valid() bool { return o == OrderGrantExpiry || o == OrderNextAttempt }

// BrowseQuery selects one app's connections for BrowseConnections.
type BrowseQuery struct {
	// AppID is required.
	AppID string
	// Order is required: OrderGrantExpiry or OrderNextAttempt. Both list
	// active connections only.
	Order ConnectionOrder
	// GrantExpiresBefore, when set, keeps the connections whose grant
	// expires before it.
	GrantExpiresBefore time.Time
	// BackingOffAt is required with OrderNextAttempt and keeps the
	// connections whose NextAttemptAt is after it: those that backoff
	// holds back at that time. With OrderGrantExpiry it is ignored.
	BackingOffAt time.Time
	// After is a pagination cursor: the connections after it in the order.
	After BrowseCursor
	// Limit caps the result; zero or negative means 100.
	Limit int
}

// Validate reports, as an EInvalid error, a query that names no app or no
// valid order, or that orders by next attempt without BackingOffAt.
func (q BrowseQuery) Validate() error {
	switch {
	case q.AppID == "":
		return Errorf(EInvalid, "browse query has no app id")
	case !q.Order.Valid():
		return Errorf(EInvalid, "browse order %q is not %s or %s", q.Order, OrderGrantExpiry, OrderNextAttempt)
	case q.Order == OrderNextAttempt && q.BackingOffAt.IsZero():
		return Errorf(EInvalid, "browsing by next attempt needs the time backoff is judged at")
	}
	return nil
}

// From is the position the listing starts after: After, and for
// OrderNextAttempt no earlier than BackingOffAt (times are kept to the
// microsecond, so one microsecond later with the empty id sorts after every
// connection retried at BackingOffAt and before every one retried later).
// A zero At sorts before every time.
func (q BrowseQuery) From() BrowseCursor {
	if q.Order != OrderNextAttempt {
		return q.After
	}
	start := BrowseCursor{At: q.BackingOffAt.Truncate(time.Microsecond).Add(time.Microsecond)}
	if q.After.At.Before(start.At) {
		return start
	}
	return q.After
}

// BrowseCursor is a position in a BrowseConnections listing: the sort key
// (the grant's expiry, or the next attempt) and the connection id of the
// last connection seen. The zero cursor is the start.
type BrowseCursor struct {
	At time.Time
	ID string
}

// AppEventCount is how many of an app's events are in a delivery status.
type AppEventCount struct {
	AppID  string
	Status EventStatus
	Count  int
}

// ConnectionBrowser is what the console reads of connections and events
// beyond the other stores, each from an index.
type ConnectionBrowser interface {
	// BrowseConnections returns up to q.Limit of q.AppID's active
	// connections in q.Order, after q.After, with no token: their Token
	// holds only the access token's Expiry. EInvalid without an app id or
	// a valid order, or with OrderNextAttempt and no BackingOffAt.
	BrowseConnections(ctx context.Context, q BrowseQuery) ([]*Connection, error)
	// CountBackingOff counts, by app, the active connections whose
	// NextAttemptAt is after at, ordered by app, with State StateActive;
	// apps with none are left out.
	CountBackingOff(ctx context.Context, at time.Time) ([]ConnectionCount, error)
	// CountUndelivered counts, by app, the events that failed a delivery
	// and wait for a retry (EventFailed) or were given up on
	// (EventGaveUp), ordered by app then status; pairs with none are left
	// out. It reads the undelivered events only.
	CountUndelivered(ctx context.Context) ([]AppEventCount, error)
}

// RefreshTally counts what an app's refresh requests to Spotify's token
// endpoint came to in one hour.
type RefreshTally struct {
	AppID string
	// Hour is the start of the hour, UTC.
	Hour time.Time
	// Refreshed counts refreshes Spotify answered with a token;
	// RateLimited those it answered 429; Failed every other failure
	// (invalid_grant, invalid_client, 5xx, no answer).
	Refreshed, Failed, RateLimited int64
}

// Validate reports, as an EInvalid error, a tally a store cannot add: one
// of no app, or with a negative count.
func (t RefreshTally) Validate() error {
	if t.AppID == "" || t.Refreshed < 0 || t.Failed < 0 || t.RateLimited < 0 {
		return Errorf(EInvalid, "a refresh tally needs an app and counts of zero or more")
	}
	return nil
}

// TallyStore keeps the hourly refresh tallies behind the console's charts.
// Each replica counts in memory and adds its counts every few seconds, so
// no refresh pays a write for them.
type TallyStore interface {
	// AddRefreshTallies adds each tally's counts to the stored ones of its
	// app and hour (truncated to the hour), in one transaction.
	AddRefreshTallies(ctx context.Context, tallies ...RefreshTally) error
	// RefreshTallies returns appID's tallies of the hours starting at or
	// after since, oldest first; hours with nothing counted are left out.
	RefreshTallies(ctx context.Context, appID string, since time.Time) ([]RefreshTally, error)
	// DeleteRefreshTalliesBefore deletes the tallies of the hours that
	// start before before and returns how many.
	DeleteRefreshTalliesBefore(ctx context.Context, before time.Time) (int, error)
}
