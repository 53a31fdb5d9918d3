package postgres

import (
	"context"
	"fmt"
)

// checkKeys verifies the key ring against the database's key checks and
// records one for the primary key if it has none.
func (db *DB) checkKeys(ctx context.Context) error {
	rows, err := db.pool.Query(ctx, `SELECT version, sealed FROM key_checks`)
	if err != nil {
		return fmt.Errorf("read key checks: %w", err)
	}
	checks := map[uint32][]byte{}
	for rows.Next() {
		var v int64
		var sealed []byte
		if err := rows.Scan(&v, &sealed); err != nil {
			rows.Close()
			return fmt.Errorf("read key checks: %w", err)
		}
		checks[uint32(v)] = sealed
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read key checks: %w", err)
	}
	v, sealed, err := db.codec.VerifyKeyChecks(checks)
	if err != nil || sealed == nil {
		return err
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO key_checks (version, sealed) VALUES ($1, $2) ON CONFLICT DO NOTHING`, int64(v), sealed); err != nil {
		return fmt.Errorf("record key check: %w", err)
	}
	return nil
}

// dropOldKeyChecks forgets the key checks of every version but the primary,
// once Reseal has moved all data to the primary key.
func (db *DB) dropOldKeyChecks(ctx context.Context) error {
	if _, err := db.pool.Exec(ctx, `DELETE FROM key_checks WHERE version <> $1`, int64(db.codec.Primary())); err != nil {
		return fmt.Errorf("drop old key checks: %w", err)
	}
	return nil
}
