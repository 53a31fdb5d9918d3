-- 0005: browser sessions (the dashboard's now; the console's and the
-- backend-for-frontend's next), kept here so that they survive a restart and
-- every replica sees them.

-- web_sessions: found by the SHA-256 of the cookie's value, never the value.
-- csrf and data are sealed by internal/rowseal, bound to the row's id hash,
-- scope, app and subject. ends_at is min(last_seen_at + idle_timeout,
-- expires_at), kept by the store: the order of eviction and of sweeping.
CREATE TABLE web_sessions (
	id_hash      BLOB    NOT NULL PRIMARY KEY CHECK (length(id_hash) = 32),
	scope        TEXT    NOT NULL CHECK (scope <> ''),
	app_id       TEXT    REFERENCES apps (id) ON DELETE CASCADE, -- NULL: no one app's (an operator's)
	subject      TEXT    NOT NULL DEFAULT '',
	csrf         BLOB    NOT NULL,                  -- sealed
	data         BLOB,                              -- sealed; NULL when empty
	created_at   INTEGER NOT NULL,
	last_seen_at INTEGER NOT NULL,
	idle_timeout INTEGER NOT NULL DEFAULT 0 CHECK (idle_timeout >= 0), -- microseconds; 0: none
	expires_at   INTEGER NOT NULL,
	ends_at      INTEGER NOT NULL
) STRICT;
-- web_sessions_scope and web_sessions_subject serve the caps of
-- CreateWebSession (count, then evict the soonest-ending) and
-- DeleteWebSessions; web_sessions_ends the sweep; web_sessions_app the
-- cascade when an app is deleted.
CREATE INDEX web_sessions_scope ON web_sessions (scope, ends_at);
CREATE INDEX web_sessions_subject ON web_sessions (scope, subject, ends_at);
CREATE INDEX web_sessions_ends ON web_sessions (ends_at);
CREATE INDEX web_sessions_app ON web_sessions (app_id);
