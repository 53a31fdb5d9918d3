-- 0017: the trail's batches are stored a row per run of one connection's
-- records (issue 16's cost). A row per record put an entry per record in
-- audit_connection, and with many connections vending those entries land
-- on as many different pages of that index: at a thousand connections the
-- batch write cost five times what it did with one (docs/BENCHMARKS.md).
-- A group holds up to 256 records of one (app, connection), all within one
-- second, in body: a JSON array of [version, at, action, rest], rest being
-- packAudit's array (migration 0016). Its records' IDs are id, id+1, ...,
-- reserved from audit_records' AUTOINCREMENT sequence, so that IDs stay
-- unique and increasing across both tables. Lifecycle records, written
-- with their change, stay a row each in audit_records; AuditRecords reads
-- both. Groups are append-only too, and leave only by retention, whole.
CREATE TABLE audit_groups (
	id            INTEGER NOT NULL PRIMARY KEY,   -- the ID of its first record
	app_id        TEXT    NOT NULL,
	connection_id TEXT    NOT NULL,
	first_at      INTEGER NOT NULL,               -- unix microseconds
	last_at       INTEGER NOT NULL CHECK (last_at >= first_at AND last_at - first_at <= 1000000),
	n             INTEGER NOT NULL CHECK (n BETWEEN 1 AND 256),
	body          TEXT    NOT NULL
) STRICT;
CREATE INDEX audit_groups_connection ON audit_groups (app_id, connection_id, first_at);
CREATE INDEX audit_groups_app ON audit_groups (app_id, first_at);
CREATE INDEX audit_groups_at ON audit_groups (first_at);
CREATE TRIGGER audit_groups_append_only BEFORE UPDATE ON audit_groups
BEGIN
	SELECT RAISE(ABORT, 'audit records are append-only');
END;
