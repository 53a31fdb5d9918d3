package sqlite

// DueQuery is Due's query, for the query-plan test.
const DueQuery = dueQuery

// CountQuery is CountConnections' query, for the query-plan test.
const CountQuery = countQuery

// ExpiringQuery is ExpiringGrants' query, for the query-plan test.
const ExpiringQuery = expiringQuery
