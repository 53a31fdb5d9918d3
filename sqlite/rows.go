package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/listing"
)

// queryAll runs a read query and scans every row with scan; what names the
// query in errors.
func queryAll[T any](ctx context.Context, db *sql.DB, what string, scan func(*sql.Rows) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// list is queryAll on the readers for a listing: under the store's
// listing deadline (see listing.Within).
func list[T any](ctx context.Context, db *DB, what string, scan func(*sql.Rows) (T, error), query string, args ...any) ([]T, error) {
	return listing.Within(ctx, db.listTimeout, func(ctx context.Context) ([]T, error) {
		return queryAll(ctx, db.r, what, scan, query, args...)
	})
}

// updateLease runs a conditional lease UPDATE on key, the prepared stmt,
// in a write transaction that does not wait for the disk (writeLease).
// If it changes no row it answers ErrNotFound when the connection does
// not exist, else an error with code and message.
func (db *DB) updateLease(ctx context.Context, key spotoken.ConnectionKey, code, message string, stmt *sql.Stmt, args ...any) error {
	return db.writeLease(ctx, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, args...)
		if err != nil {
			return err
		}
		if n, err := affected(res); err != nil || n == 1 {
			return err
		}
		if err := db.exists(ctx, tx, key); err != nil {
			return err
		}
		return spotoken.Errorf(code, "lease on connection %s %s", key, message)
	})
}
