package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/spotoken/spotoken"
)

const pendingGrantColumns = `code_hash, app_id, connection_id, spotify_user_id, display_name, scopes,
	access_token, refresh_token, access_expires_at, created_at, expires_at`

// CreatePendingGrant stores g, setting CreatedAt from the store's clock;
// ErrConflict if its code hash exists, ErrNotFound if its app does not,
// EInvalid without an expiry.
func (db *DB) CreatePendingGrant(ctx context.Context, g *spotoken.PendingGrant) error {
	now := db.now()
	access, refresh, err := db.codec.SealPendingGrant(g)
	if err != nil {
		return fmt.Errorf("create pending grant: %w", err)
	}
	err = db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO pending_grants (`+pendingGrantColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			g.CodeHash[:], g.AppID, g.ConnectionID, g.SpotifyUserID, g.DisplayName, scopesArg(g.Scopes),
			blobArg(access), blobArg(refresh), timeArg(g.Token.Expiry), now.UnixMicro(), g.ExpiresAt.UnixMicro())
		return translate(err, "pending grant already exists", fmt.Sprintf("app %q not found", g.AppID))
	})
	if err != nil {
		return fmt.Errorf("create pending grant: %w", err)
	}
	g.CreatedAt = now
	return nil
}

// TakePendingGrant deletes and returns the pending grant of key with
// codeHash, in one DELETE ... RETURNING, so it is taken once.
func (db *DB) TakePendingGrant(ctx context.Context, key spotoken.ConnectionKey, codeHash [32]byte) (*spotoken.PendingGrant, error) {
	now := db.now()
	var g *spotoken.PendingGrant
	err := db.write(ctx, func(tx *sql.Tx) error {
		var err error
		g, err = db.scanPendingGrant(tx.QueryRowContext(ctx, `DELETE FROM pending_grants
			WHERE code_hash = ? AND app_id = ? AND connection_id = ? RETURNING `+pendingGrantColumns, codeHash[:], key.AppID, key.ID))
		if errors.Is(err, sql.ErrNoRows) {
			return spotoken.Errorf(spotoken.ENotFound, "no pending grant with this code for connection %s", key)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("take pending grant: %w", err)
	}
	db.shred(ctx)
	if !now.Before(g.ExpiresAt) {
		return nil, fmt.Errorf("take pending grant: %w", spotoken.Errorf(spotoken.EExpired, "the pending grant of connection %s expired", key))
	}
	return g, nil
}

// DeleteExpiredPendingGrants erases pending grants that expired before
// before and returns how many.
func (db *DB) DeleteExpiredPendingGrants(ctx context.Context, before time.Time) (int, error) {
	n, err := db.deleteExpired(ctx, "pending_grants", before)
	if err != nil {
		return 0, fmt.Errorf("delete expired pending grants: %w", err)
	}
	if n > 0 {
		db.shred(ctx)
	}
	return int(n), nil
}

// CreatePendingWithin stores p unless its app has max or more pending
// authorizations and grants live; see spotoken.PendingGrantStore.
func (db *DB) CreatePendingWithin(ctx context.Context, p *spotoken.PendingAuthorization, max int) error {
	if max <= 0 {
		return fmt.Errorf("create pending: %w", spotoken.Errorf(spotoken.EInvalid, "the cap must be positive"))
	}
	return db.createPending(ctx, p, max)
}

// countPending counts app's pending authorizations neither used nor
// expired at now, and its pending grants not expired at now.
func countPending(ctx context.Context, q queryer, appID string, now time.Time) (int, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM pending_authorizations WHERE app_id = ?1 AND expires_at > ?2 AND used_at IS NULL AND login = '') +
		(SELECT count(*) FROM pending_grants WHERE app_id = ?1 AND expires_at > ?2)`, appID, now.UnixMicro()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count pending: %w", err)
	}
	return n, nil
}

func (db *DB) scanPendingGrant(row interface{ Scan(...any) error }) (*spotoken.PendingGrant, error) {
	var g spotoken.PendingGrant
	var access, refresh []byte
	if err := row.Scan(hashCol{&g.CodeHash}, &g.AppID, &g.ConnectionID, &g.SpotifyUserID, &g.DisplayName, scopesCol{&g.Scopes},
		&access, &refresh, timeCol{&g.Token.Expiry}, timeCol{&g.CreatedAt}, timeCol{&g.ExpiresAt}); err != nil {
		return nil, err
	}
	if err := db.codec.OpenPendingGrant(&g, access, refresh); err != nil {
		return nil, err
	}
	return &g, nil
}
