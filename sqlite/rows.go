package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/spotoken/spotoken"
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

// updateLease runs a conditional lease UPDATE on key in a write
// transaction. If it changes no row it answers ErrNotFound when the
// connection does not exist, else an error with code and message.
func (db *DB) updateLease(ctx context.Context, key spotoken.ConnectionKey, code, message, query string, args ...any) error {
	return db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
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
