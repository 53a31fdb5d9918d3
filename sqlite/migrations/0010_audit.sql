-- 0010: the audit trail (issue 16) and the detectors' shared marks.

-- audit_records: one append-only row per audited action; never a secret
-- (a secret involved is a keyed fingerprint). AUTOINCREMENT keeps ids
-- increasing even after the newest rows are deleted. The triggers below
-- refuse UPDATE; rows leave only by retention (DeleteAuditBefore).
CREATE TABLE audit_records (
	id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	version         INTEGER NOT NULL,
	at              INTEGER NOT NULL,              -- unix microseconds
	action          TEXT    NOT NULL CHECK (action <> ''),
	app_id          TEXT    NOT NULL DEFAULT '',   -- no foreign key: the trail outlives its app
	connection_id   TEXT    NOT NULL DEFAULT '',
	actor_type      TEXT    NOT NULL DEFAULT '',
	actor_id        TEXT    NOT NULL DEFAULT '',
	actor_label     TEXT    NOT NULL DEFAULT '',
	client_ip       TEXT    NOT NULL DEFAULT '',
	user_agent      TEXT    NOT NULL DEFAULT '',
	request_id      TEXT    NOT NULL DEFAULT '',
	method          TEXT    NOT NULL DEFAULT '',
	route           TEXT    NOT NULL DEFAULT '',
	status          INTEGER NOT NULL DEFAULT 0,
	upstream_status INTEGER NOT NULL DEFAULT 0,
	outcome         TEXT    NOT NULL DEFAULT '',
	fingerprint     TEXT    NOT NULL DEFAULT '',
	detail          TEXT    NOT NULL DEFAULT '{}'  -- JSON object of strings
) STRICT;
-- audit_connection serves a connection's (or an app's) records by time;
-- audit_at a listing of every app by time, and retention.
CREATE INDEX audit_connection ON audit_records (app_id, connection_id, at, id);
CREATE INDEX audit_at ON audit_records (at, id);
CREATE TRIGGER audit_records_append_only BEFORE UPDATE ON audit_records
BEGIN
	SELECT RAISE(ABORT, 'audit records are append-only');
END;

-- audit_marks: facts the detectors share across replicas (a key's networks,
-- a connection's last rotation, when an alert last fired).
CREATE TABLE audit_marks (
	kind     TEXT    NOT NULL CHECK (kind <> ''),
	app_id   TEXT    NOT NULL DEFAULT '',
	subject  TEXT    NOT NULL DEFAULT '',
	first_at INTEGER NOT NULL,
	last_at  INTEGER NOT NULL,
	PRIMARY KEY (kind, app_id, subject)
) STRICT;
CREATE INDEX audit_marks_last ON audit_marks (kind, last_at, app_id);
