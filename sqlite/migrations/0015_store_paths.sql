-- 0015: store paths for a million connections (issue 14). Every filtered
-- listing the API, the console and the CLI offer reads an index in the
-- order it lists, so a page costs the same at a million rows as at ten.

-- connections_app_state, which was (app_id, state), gains the id, so it
-- serves listings filtered by state in id order: one app's (Connections
-- with a state, GET /v1/connections?state=; FindConnections with an app)
-- and every app's (FindConnections by state alone, app by app, see
-- findQuery), besides CountConnections as before. Without the id a rare
-- state was found by reading every row of the app in id order. An index
-- led by the state instead would tempt SQLite's planner, before ANALYZE,
-- away from the partial indexes of Due and ExpiringGrants (state = 'active'
-- looks selective to it).
DROP INDEX connections_app_state;
CREATE INDEX connections_app_state ON connections (app_id, state, id);

-- audit_app serves one app's records by time (GET /v1/audit, `audit list
-- --app`); audit_connection (app, connection, time) would have to sort
-- every record of the app first.
CREATE INDEX audit_app ON audit_records (app_id, at, id);
