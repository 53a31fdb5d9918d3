package sqlite

import (
	"context"
	"database/sql"
	"errors"
)

// statements are the statements of a vend and of a refresh, prepared once
// when the store opens. database/sql keeps a prepared statement on each
// connection it has run on, so a call binds and steps it instead of
// parsing and planning its SQL again, which was a fifth of the CPU of a
// vend that misses the engine's cache.
type statements struct {
	// connection reads a connection by key on the readers (Connection).
	connection *sql.Stmt
	// The writer's: UpdateConnection's read and compare-and-swap, and the
	// three lease updates.
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
		{&db.stmts.connection, db.r, connectionQuery},
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
	for _, st := range []*sql.Stmt{s.connection, s.wConnection, s.update, s.acquire, s.renew, s.release} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}
