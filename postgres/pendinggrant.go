package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/spotoken/spotoken"
)

const pendingGrantCols = `code_hash, app_id, connection_id, spotify_user_id, display_name, scopes,
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
	_, err = db.pool.Exec(ctx, `INSERT INTO pending_grants (`+pendingGrantCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		g.CodeHash[:], g.AppID, g.ConnectionID, g.SpotifyUserID, g.DisplayName, textArray(g.Scopes),
		access, refresh, tstz(g.Token.Expiry), now, tstz(g.ExpiresAt))
	switch pgCode(err) {
	case codeUniqueViolation:
		return spotoken.Errorf(spotoken.EConflict, "pending grant already exists")
	case codeForeignKeyViolation:
		return appNotFound(g.AppID)
	}
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
	var (
		g                        spotoken.PendingGrant
		hash, access, refresh    []byte
		scopes                   []string
		expiry, created, expires pgtype.Timestamptz
	)
	err := db.pool.QueryRow(ctx, `DELETE FROM pending_grants WHERE code_hash = $1 AND app_id = $2 AND connection_id = $3
		RETURNING `+pendingGrantCols, codeHash[:], key.AppID, key.ID).Scan(&hash, &g.AppID, &g.ConnectionID,
		&g.SpotifyUserID, &g.DisplayName, &scopes, &access, &refresh, &expiry, &created, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, spotoken.Errorf(spotoken.ENotFound, "no pending grant with this code for connection %s", key)
	}
	if err != nil {
		return nil, fmt.Errorf("take pending grant: %w", err)
	}
	g.CodeHash = codeHash
	g.Scopes = spotoken.Scopes(fromTextArray(scopes))
	g.Token.Expiry, g.CreatedAt, g.ExpiresAt = fromTstz(expiry), fromTstz(created), fromTstz(expires)
	if !now.Before(g.ExpiresAt) {
		return nil, spotoken.Errorf(spotoken.EExpired, "the pending grant of connection %s expired", key)
	}
	if err := db.codec.OpenPendingGrant(&g, access, refresh); err != nil {
		return nil, fmt.Errorf("take pending grant: %w", err)
	}
	return &g, nil
}

// DeleteExpiredPendingGrants erases pending grants that expired before
// before and returns how many.
func (db *DB) DeleteExpiredPendingGrants(ctx context.Context, before time.Time) (int, error) {
	tag, err := db.pool.Exec(ctx, `DELETE FROM pending_grants WHERE expires_at < $1`, tstz(before))
	if err != nil {
		return 0, fmt.Errorf("delete expired pending grants: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// pendingLockClass is the first half of the advisory lock key that
// serializes the creation of one app's capped pending authorizations (the
// second half hashes the schema and the app), so that the cap holds exactly
// across replicas while other apps go on in parallel.
const pendingLockClass = 0x50656e64 // "Pend"

// CreatePendingWithin stores p unless its app has max or more pending
// authorizations and grants live; see spotoken.PendingGrantStore.
func (db *DB) CreatePendingWithin(ctx context.Context, p *spotoken.PendingAuthorization, max int) error {
	if max <= 0 {
		return fmt.Errorf("create pending authorization: %w", spotoken.Errorf(spotoken.EInvalid, "the cap must be positive"))
	}
	now := db.now()
	err := db.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '') || '/' || $2))`,
			int32(pendingLockClass), p.AppID); err != nil {
			return fmt.Errorf("lock app: %w", err)
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM pending_authorizations WHERE app_id = $1 AND expires_at > $2 AND used_at IS NULL AND login = '') +
			(SELECT count(*) FROM pending_grants WHERE app_id = $1 AND expires_at > $2)`, p.AppID, now).Scan(&n); err != nil {
			return fmt.Errorf("count pending: %w", err)
		}
		if n >= max {
			return spotoken.Errorf(spotoken.ELimitExceeded, "app %s has %d pending authorizations and grants, its limit", p.AppID, n)
		}
		return db.insertPending(ctx, tx, p, now)
	})
	if err != nil {
		return fmt.Errorf("create pending authorization: %w", err)
	}
	p.CreatedAt, p.UsedAt = now, time.Time{}
	return nil
}
