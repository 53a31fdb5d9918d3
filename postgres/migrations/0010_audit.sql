-- 0010: the audit trail (issue 16) and the detectors' shared marks.

-- audit_records: one append-only row per audited action; never a secret
-- (a secret involved is a keyed fingerprint). The trigger below refuses
-- UPDATE; rows leave only by retention (DeleteAuditBefore).
CREATE TABLE audit_records (
	id              bigserial PRIMARY KEY,
	version         integer NOT NULL,
	at              timestamptz NOT NULL,
	action          text NOT NULL CHECK (action <> ''),
	app_id          text NOT NULL DEFAULT '',      -- no foreign key: the trail outlives its app
	connection_id   text NOT NULL DEFAULT '',
	actor_type      text NOT NULL DEFAULT '',
	actor_id        text NOT NULL DEFAULT '',
	actor_label     text NOT NULL DEFAULT '',
	client_ip       text NOT NULL DEFAULT '',
	user_agent      text NOT NULL DEFAULT '',
	request_id      text NOT NULL DEFAULT '',
	method          text NOT NULL DEFAULT '',
	route           text NOT NULL DEFAULT '',
	status          integer NOT NULL DEFAULT 0,
	upstream_status integer NOT NULL DEFAULT 0,
	outcome         text NOT NULL DEFAULT '',
	fingerprint     text NOT NULL DEFAULT '',
	detail          jsonb NOT NULL DEFAULT '{}'
);
-- audit_connection serves a connection's (or an app's) records by time;
-- audit_at a listing of every app by time, and retention.
CREATE INDEX audit_connection ON audit_records (app_id, connection_id, at, id);
CREATE INDEX audit_at ON audit_records (at, id);

CREATE FUNCTION audit_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'audit records are append-only';
END;
$$;
CREATE TRIGGER audit_records_append_only BEFORE UPDATE ON audit_records
	FOR EACH ROW EXECUTE FUNCTION audit_records_append_only();

-- audit_marks: facts the detectors share across replicas (a key's networks,
-- a connection's last rotation, when an alert last fired).
CREATE TABLE audit_marks (
	kind     text NOT NULL CHECK (kind <> ''),
	app_id   text NOT NULL DEFAULT '',
	subject  text NOT NULL DEFAULT '',
	first_at timestamptz NOT NULL,
	last_at  timestamptz NOT NULL,
	PRIMARY KEY (kind, app_id, subject)
);
CREATE INDEX audit_marks_last ON audit_marks (kind, last_at, app_id);
