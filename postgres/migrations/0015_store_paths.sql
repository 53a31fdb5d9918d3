-- 0015: store paths for a million connections (issue 14). Every filtered
-- listing the API, the console and the CLI offer reads an index in the
-- order it lists, so a page costs the same at a million rows as at ten.

-- connections_state serves listings filtered by state: one app's
-- (Connections with a state, GET /v1/connections?state=; FindConnections
-- with an app and a state) and every app's (FindConnections by state
-- alone, GET /v1/admin/connections?state=), in (app, id) order, with no
-- sort of the matching rows. (SQLite's migration extends
-- connections_app_state instead: there an index led by the state tempts
-- the planner away from Due's partial index before ANALYZE; PostgreSQL
-- plans on statistics and keeps connections_app_state for the counts.)
CREATE INDEX connections_state ON connections (state, app_id, id);

-- audit_app serves one app's records by time (GET /v1/audit, `audit list
-- --app`); audit_connection (app, connection, time) would have to sort
-- every record of the app first.
CREATE INDEX audit_app ON audit_records (app_id, at, id);

-- events_app_undelivered replaces events_app_pending (app_id): the same
-- rows in id order, so an app's pending, failed or given-up events (Events
-- with a status) are read newest first from the undelivered ones alone,
-- not by walking every delivered event of the app. DeleteApp and
-- CountUndelivered read it as they read its predecessor.
DROP INDEX events_app_pending;
CREATE INDEX events_app_undelivered ON events (app_id, id) WHERE delivered_at IS NULL;
