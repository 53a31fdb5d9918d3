package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// statements are the statements of a refresh, prepared once on the writer
// when the store opens, so a call binds and steps them instead of parsing
// and planning their SQL again (which was a fifth of the CPU of a vend
// that missed the engine's cache, when Connection still read through
// database/sql; it has a prepared statement of its own now, see
// pointReader); and the listings' statements, prepared on the readers as
// they are first used (listStatements).
type statements struct {
	// UpdateConnection's read and compare-and-swap, and the three lease
	// updates.
	wConnection, update, acquire, renew, release *sql.Stmt
	// lists are the listings' statements, prepared on the readers on
	// first use (they are built from each listing's filter).
	lists listStatements
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
	errs := []error{s.lists.close()}
	for _, st := range []*sql.Stmt{s.wConnection, s.update, s.acquire, s.renew, s.release} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// listStatementsMax bounds the listings' statement cache. The listings'
// filters make a few dozen texts at most (the connections listing two,
// the console's two, FindConnections', Events' and AuditRecords' shapes).
const listStatementsMax = 64

// listStatements caches the listings' statements (see list), prepared on
// the readers and keyed by their SQL text, which a listing builds from
// its filter (values are bound, never in the text), so a page binds and
// steps a prepared statement instead of parsing and planning its SELECT
// again (about a tenth of a page's CPU at a million connections, see
// docs/BENCHMARKS.md). database/sql prepares a *sql.Stmt on each
// reader connection the first time it runs there, and SQLite prepares it
// again by itself if the schema changes. A statement runs under the
// caller's context as an unprepared query does: a deadline interrupts it.
//
// At most max statements are kept; past that the one used least recently
// is closed, once no query is starting on it (refs), so a caller holding
// it never finds it closed.
type listStatements struct {
	mu     sync.Mutex
	max    int // zero: listStatementsMax (a test sets fewer)
	closed bool
	tick   uint64
	m      map[string]*listStatement
}

// listStatement is one statement of listStatements.
type listStatement struct {
	stmt    *sql.Stmt
	refs    int    // queries starting on stmt
	used    uint64 // listStatements.tick when last taken
	evicted bool   // out of the map: closed when refs reaches 0
}

// query runs the listing query on pool with args, through the cached
// statement for its text, prepared on a miss. Once the cache is closed
// (DB.Close) it runs the text unprepared, so it fails as a query on a
// closed pool does.
func (c *listStatements) query(ctx context.Context, pool *sql.DB, query string, args ...any) (*sql.Rows, error) {
	s, err := c.take(ctx, pool, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return pool.QueryContext(ctx, query, args...)
	}
	// Once QueryContext returns, rows keep what they read from even if
	// the statement is closed (database/sql closes it after them).
	rows, err := s.stmt.QueryContext(ctx, args...)
	c.release(s)
	return rows, err
}

// take returns the statement for query with a reference held (see
// release), preparing it on a miss; nil once the cache is closed.
func (c *listStatements) take(ctx context.Context, pool *sql.DB, query string) (*listStatement, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, nil
	}
	if s := c.m[query]; s != nil {
		c.holdLocked(s)
		c.mu.Unlock()
		return s, nil
	}
	c.mu.Unlock()

	// Prepared without the lock: it takes a reader, which can wait.
	stmt, err := pool.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		stmt.Close()
		return nil, nil
	}
	if s := c.m[query]; s != nil { // another caller prepared it meanwhile
		c.holdLocked(s)
		c.mu.Unlock()
		stmt.Close()
		return s, nil
	}
	if c.m == nil {
		c.m = make(map[string]*listStatement)
	}
	limit := c.max
	if limit <= 0 {
		limit = listStatementsMax
	}
	var evicted *sql.Stmt
	if len(c.m) >= limit {
		var oldest *listStatement
		var key string
		for q, s := range c.m {
			if oldest == nil || s.used < oldest.used {
				oldest, key = s, q
			}
		}
		evicted = c.evictLocked(key)
	}
	s := &listStatement{stmt: stmt}
	c.holdLocked(s)
	c.m[query] = s
	c.mu.Unlock()
	if evicted != nil {
		evicted.Close() // a finalize error changes nothing for the caller
	}
	return s, nil
}

// holdLocked takes a reference on s and marks it used. c.mu is held.
func (c *listStatements) holdLocked(s *listStatement) {
	c.tick++
	s.refs, s.used = s.refs+1, c.tick
}

// release drops the reference take returned s with, closing s if it was
// evicted meanwhile and this was the last.
func (c *listStatements) release(s *listStatement) {
	c.mu.Lock()
	s.refs--
	last := s.evicted && s.refs == 0
	c.mu.Unlock()
	if last {
		s.stmt.Close()
	}
}

// evictLocked takes query's statement out of the cache and returns it for
// the caller to close after unlocking c.mu, or nil when a query is
// starting on it (release closes it then). c.mu is held.
func (c *listStatements) evictLocked(query string) *sql.Stmt {
	s := c.m[query]
	delete(c.m, query)
	s.evicted = true
	if s.refs == 0 {
		return s.stmt
	}
	return nil
}

// close closes the cached statements; queries from then on run
// unprepared.
func (c *listStatements) close() error {
	c.mu.Lock()
	c.closed = true
	var idle []*sql.Stmt
	for q := range c.m {
		if s := c.evictLocked(q); s != nil {
			idle = append(idle, s)
		}
	}
	c.mu.Unlock()
	var errs []error
	for _, s := range idle {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
