package sqlite

import (
	"context"
	"database/sql"
	"errors"
)

// statements are the statements of a refresh, prepared once on the writer
// when the store opens, so a call binds and steps them instead of parsing
// and planning their SQL again (which was a fifth of the CPU of a vend
// that missed the engine's cache, when Connection still read through
// database/sql; it has a prepared statement of its own now, see
// pointReader).
type statements struct {
	// UpdateConnection's read and compare-and-swap, and the three lease
	// updates.
	wConnection, update, acquire, renew, release *sql.Stmt
}

// connectionQuery reads one connection by key.
const connectionQuery = `SELECT ` + connectionColumns + ` FROM connections WHERE app_id = ? AND id = ?`

// prepare prepares db.stmts.
func (db *DB) prepare(ctx context.Context) error {
	for _, p := range []struct {
		stmt  **sql.Stmt
		pool  *sql.DB
		query string
	}{
		{&db.stmts.wConnection, db.w, connectionQuery},
		{&db.stmts.update, db.w, updateQuery},
		{&db.stmts.acquire, db.w, acquireQuery},
		{&db.stmts.renew, db.w, renewQuery},
		{&db.stmts.release, db.w, releaseQuery},
	} {
		s, err := p.pool.PrepareContext(ctx, p.query)
		if err != nil {
			return err
		}
		*p.stmt = s
	}
	return nil
}

// close closes the statements that were prepared.
func (s *statements) close() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.wConnection, s.update, s.acquire, s.renew, s.release} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}
