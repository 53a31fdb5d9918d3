package spotoken

import (
	"context"
	"time"
)

// PendingGrant is a grant a user completed at /callback for a connect
// session that requires the app's confirmation. It is held apart from the
// connection, which it does not change, until the app posts back the
// one-time confirm code that the return_to redirect carried; then it
// becomes the connection's grant. Unconfirmed, it expires and is erased.
type PendingGrant struct {
	// CodeHash is the SHA-256 of the confirm code; the code itself is
	// never stored.
	CodeHash      [32]byte
	AppID         string
	ConnectionID  string
	SpotifyUserID string
	DisplayName   string
	// Scopes are the scopes Spotify granted.
	Scopes Scopes
	// Token holds the grant's tokens (sealed at rest).
	Token     Token
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Key returns the key of the connection the grant is for.
func (g *PendingGrant) Key() ConnectionKey { return ConnectionKey{AppID: g.AppID, ID: g.ConnectionID} }

// PendingGrantStore keeps grants waiting for the app's confirmation.
type PendingGrantStore interface {
	// CreatePendingGrant stores g, setting CreatedAt from the store's
	// clock; ErrConflict if its code hash exists, ErrNotFound if its app
	// does not, EInvalid without an expiry.
	CreatePendingGrant(ctx context.Context, g *PendingGrant) error
	// TakePendingGrant deletes and returns, atomically, the pending grant
	// of connection key whose code hash is codeHash, so it can be taken
	// once: ErrNotFound if there is none (or it is another connection's,
	// which is left as it is), ErrExpired (and no grant, erased all the
	// same) if the store's clock is at or past its expiry.
	TakePendingGrant(ctx context.Context, key ConnectionKey, codeHash [32]byte) (*PendingGrant, error)
	// DeleteExpiredPendingGrants erases the pending grants that expired
	// before before, with their tokens, and returns how many.
	DeleteExpiredPendingGrants(ctx context.Context, before time.Time) (int, error)
	// CreatePendingWithin stores p as CreatePending does, unless p's app
	// already has max or more pending authorizations that are neither
	// used nor expired, and pending grants not expired, by the store's
	// clock: then ErrLimitExceeded, and nothing is stored. Counting and
	// storing are one transaction, serialized per app, so the cap holds
	// exactly however many callers, on however many replicas, create at
	// once, while other apps go on in parallel. Browser sign-ins (a Login
	// kind) are not counted: the backend-for-frontend limits its own.
	CreatePendingWithin(ctx context.Context, p *PendingAuthorization, max int) error
}
