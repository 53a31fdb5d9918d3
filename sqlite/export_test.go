package sqlite

import "context"

// DueQuery is Due's query, for the query-plan test.
const DueQuery = dueQuery

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
