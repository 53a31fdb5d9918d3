package sqlite

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
