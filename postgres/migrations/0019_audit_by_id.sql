-- 0019: the audit trail's indexes cost the batch write more than the
-- records themselves (issue 16: 8.2-8.9 us a record with three indexes,
-- 3.5-3.7 us for the table alone). Listings and retention now go by id,
-- which is the table's own order (rowid), instead of by time:
-- - audit_at (at, id) and audit_app (app_id, at, id) are dropped: the
--   all-apps listing and the export read the table by id, an app's
--   listing reads it by id and filters; retention deletes from the start
--   of the table by id (records are appended in time order, give or take
--   the trail's flush interval and retries), looking at most at its limit
--   of rows a pass;
-- - audit_connection becomes (app_id, connection_id, id): a connection's
--   records by id, without the time column.
-- Time bounds (since, until) filter; they no longer choose the rows read.
DROP INDEX audit_at;
DROP INDEX audit_app;
DROP INDEX audit_connection;
CREATE INDEX audit_connection ON audit_records (app_id, connection_id, id);
