package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/rowseal"
)

const pendingColumns = `state_hash, app_id, connection_id, verifier, scopes, redirect_uri, return_to, created_at, expires_at, used_at,
	require_confirmation, skip_dialog, login`

// CreatePending stores a pending authorization, unused, setting its
// CreatedAt from the store's clock; ErrConflict if its state hash exists,
// ErrNotFound if its app does not, EInvalid without an expiry.
func (db *DB) CreatePending(ctx context.Context, p *spotoken.PendingAuthorization) error {
	return db.createPending(ctx, p, 0)
}

// createPending is CreatePending and, with max > 0, CreatePendingWithin:
// SQLite's one writer makes the count and the insert exact.
func (db *DB) createPending(ctx context.Context, p *spotoken.PendingAuthorization, max int) error {
	if p.ExpiresAt.IsZero() {
		return fmt.Errorf("create pending: %w", spotoken.Errorf(spotoken.EInvalid, "pending authorization has no expiry"))
	}
	now := db.now()
	verifier, err := db.codec.Seal(rowseal.Verifier(p.AppID, p.ConnectionID, p.StateHash), p.Verifier)
	if err != nil {
		return fmt.Errorf("create pending: %w", err)
	}
	err = db.write(ctx, func(tx *sql.Tx) error {
		if max > 0 {
			if n, err := countPending(ctx, tx, p.AppID, now); err != nil {
				return err
			} else if n >= max {
				return spotoken.Errorf(spotoken.ELimitExceeded, "app %s has %d pending authorizations and grants, its limit", p.AppID, n)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO pending_authorizations (`+pendingColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)`,
			p.StateHash[:], p.AppID, p.ConnectionID, blobArg(verifier), scopesArg(p.Scopes), p.RedirectURI, p.ReturnTo,
			now.UnixMicro(), p.ExpiresAt.UnixMicro(), p.RequireConfirmation, p.SkipDialog, p.Login)
		return translate(err, "pending authorization already exists", fmt.Sprintf("app %q not found", p.AppID))
	})
	if err != nil {
		return fmt.Errorf("create pending: %w", err)
	}
	p.CreatedAt, p.UsedAt = now, time.Time{}
	return nil
}

// ConsumePending marks the pending authorization with stateHash used and
// returns it, atomically: one conditional UPDATE ... RETURNING claims it, so
// of many concurrent callers exactly one wins. ErrNotFound if unknown,
// ErrAlreadyUsed if consumed before, ErrExpired if past its expiry (it is
// consumed all the same).
func (db *DB) ConsumePending(ctx context.Context, stateHash [32]byte) (*spotoken.PendingAuthorization, error) {
	now := db.now()
	var p *spotoken.PendingAuthorization
	err := db.write(ctx, func(tx *sql.Tx) error {
		var err error
		p, err = db.scanPending(tx.QueryRowContext(ctx, `UPDATE pending_authorizations SET used_at = ?
			WHERE state_hash = ? AND used_at IS NULL RETURNING `+pendingColumns, now.UnixMicro(), stateHash[:]))
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var one int
		switch err := tx.QueryRowContext(ctx, `SELECT 1 FROM pending_authorizations WHERE state_hash = ?`, stateHash[:]).Scan(&one); {
		case errors.Is(err, sql.ErrNoRows):
			return spotoken.Errorf(spotoken.ENotFound, "pending authorization not found")
		case err != nil:
			return err
		}
		return spotoken.Errorf(spotoken.EAlreadyUsed, "pending authorization already used")
	})
	if err != nil {
		return nil, fmt.Errorf("consume pending: %w", err)
	}
	if !now.Before(p.ExpiresAt) {
		return nil, fmt.Errorf("consume pending: %w", spotoken.Errorf(spotoken.EExpired, "pending authorization expired"))
	}
	return p, nil
}

// DeleteExpiredPending deletes pending authorizations that expired before
// before, used or not, and returns how many.
func (db *DB) DeleteExpiredPending(ctx context.Context, before time.Time) (int, error) {
	n, err := db.deleteExpired(ctx, "pending_authorizations", before)
	if err != nil {
		return 0, fmt.Errorf("delete expired pending: %w", err)
	}
	return int(n), nil
}

// deleteExpired deletes the rows of table (a constant) whose expires_at is
// before before, and returns how many.
func (db *DB) deleteExpired(ctx context.Context, table string, before time.Time) (n int64, err error) {
	err = db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE expires_at < ?`, before.UnixMicro())
		if err != nil {
			return err
		}
		n, err = affected(res)
		return err
	})
	return n, err
}

// scanPending scans one row of pendingColumns and opens the verifier.
func (db *DB) scanPending(row interface{ Scan(...any) error }) (*spotoken.PendingAuthorization, error) {
	var p spotoken.PendingAuthorization
	var verifier []byte
	if err := row.Scan(hashCol{&p.StateHash}, &p.AppID, &p.ConnectionID, &verifier, scopesCol{&p.Scopes},
		&p.RedirectURI, &p.ReturnTo, timeCol{&p.CreatedAt}, timeCol{&p.ExpiresAt}, timeCol{&p.UsedAt},
		&p.RequireConfirmation, &p.SkipDialog, &p.Login); err != nil {
		return nil, err
	}
	v, err := db.codec.Open(rowseal.Verifier(p.AppID, p.ConnectionID, p.StateHash), verifier)
	if err != nil {
		return nil, err
	}
	p.Verifier = v
	return &p, nil
}
