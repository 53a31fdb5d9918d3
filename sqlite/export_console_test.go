package sqlite

import "github.com/spotoken/spotoken"

// The console's queries, for the query-plan tests.
var (
	BrowseGrantQuery      = browseGrantQuery
	BrowseBackoffQuery    = browseBackoffQuery
	CountBackoffQuery     = countBackoffQuery
	CountUndeliveredQuery = countUndeliveredQuery
)

// FindQuery is FindConnections' query for q, for the query-plan tests.
func FindQuery(q spotoken.ConnectionQuery) (string, []any, error) { return findQuery(q) }

// AuditQuery is AuditRecords' query for filter, for the query-plan tests.
func AuditQuery(filter spotoken.AuditFilter) (string, []any, error) { return auditQuery(filter) }

// AuditGroupQuery is auditGroupQuery, for the query-plan tests.
func AuditGroupQuery(filter spotoken.AuditFilter) (string, []any) { return auditGroupQuery(filter) }

// The queries of Connections, for the query-plan tests.
const (
	ConnectionsQuery      = connectionsQuery
	ConnectionsStateQuery = connectionsStateQuery
)

// EventsQuery is Events' query for filter, for the query-plan tests.
func EventsQuery(filter spotoken.EventFilter) (string, []any, error) { return eventsQuery(filter) }
