package postgres

import "github.com/spotoken/spotoken"

// The console's queries, for the EXPLAIN tests.
var (
	BrowseGrantSQL      = browseGrantSQL
	BrowseBackoffSQL    = browseBackoffSQL
	CountBackoffSQL     = countBackoffSQL
	CountUndeliveredSQL = countUndeliveredSQL
)

// FindSQL is FindConnections' query for q, for the EXPLAIN tests.
func FindSQL(q spotoken.ConnectionQuery) (string, []any, error) { return findSQL(q) }

// AuditSQL is AuditRecords' query for filter, for the EXPLAIN tests.
func AuditSQL(filter spotoken.AuditFilter) (string, []any, error) { return auditSQL(filter) }

// The queries of Connections, for the EXPLAIN tests.
const (
	ConnectionsSQL      = connectionsSQL
	ConnectionsStateSQL = connectionsStateSQL
)

// EventsSQL is Events' query for filter, for the EXPLAIN tests.
func EventsSQL(filter spotoken.EventFilter) (string, []any, error) { return eventsSQL(filter) }
