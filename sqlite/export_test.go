package sqlite

import (
	"context"
	"database/sql"
)

// DueQuery is Due's query, for the query-plan test.
const DueQuery = dueQuery

// DueUsedQuery is DueUsed's query with a UsedSince, for the query-plan
// test.
const DueUsedQuery = dueUsedQuery

// IndexInsertQuery is the audit index's chunk insert, for the query-plan
// test.
const IndexInsertQuery = indexInsertQuery

// CountQuery is CountConnections' query, for the query-plan test.
const CountQuery = countQuery

// ExpiringQuery is ExpiringGrants' query, for the query-plan test.
const ExpiringQuery = expiringQuery

// WriterSynchronous returns the writer connection's synchronous setting
// (2 is FULL), for the test that the trail's batches put it back.
func (db *DB) WriterSynchronous() (int, error) {
	var n int
	err := db.w.QueryRow("PRAGMA synchronous").Scan(&n)
	return n, err
}

// WriterTempStore returns the writer connection's temp_store setting (0
// is DEFAULT), for the test that the trail's batches put it back.
func (db *DB) WriterTempStore() (int, error) {
	var n int
	err := db.w.QueryRow("PRAGMA temp_store").Scan(&n)
	return n, err
}

// HoldWriter lets the caller in at the writer's gate as a foreground
// write, and returns what lets the next one in.
func (db *DB) HoldWriter() (release func(), err error) {
	if err := db.gate.enter(context.Background(), false); err != nil {
		return nil, err
	}
	return db.gate.leave, nil
}

// WritersWaiting returns how many writes wait at the writer's gate.
func (db *DB) WritersWaiting() (foreground, background int) { return db.gate.waiting() }

// OnWriterAdmitted has f told of each write the gate lets in from now on.
func (db *DB) OnWriterAdmitted(f func(background bool)) {
	db.gate.mu.Lock()
	db.gate.admitted = f
	db.gate.mu.Unlock()
}

// ListInts runs query on the readers as a listing does (under the listing
// deadline, through the listings' statement cache) and returns its one
// integer column, for the cache's tests.
func (db *DB) ListInts(ctx context.Context, query string, args ...any) ([]int64, error) {
	return list(ctx, db, "ints", func(r *sql.Rows) (n int64, err error) {
		err = r.Scan(&n)
		return n, err
	}, query, args...)
}

// SetListStatementsMax bounds the listings' statement cache to n.
func (db *DB) SetListStatementsMax(n int) {
	db.stmts.lists.mu.Lock()
	defer db.stmts.lists.mu.Unlock()
	db.stmts.lists.max = n
}

// ListStatements returns how many listing statements are cached.
func (db *DB) ListStatements() int {
	db.stmts.lists.mu.Lock()
	defer db.stmts.lists.mu.Unlock()
	return len(db.stmts.lists.m)
}
