-- 0005: browser sessions (the dashboard's now; the console's and the
-- backend-for-frontend's next), kept here so that they survive a restart and
-- every replica sees them.

-- web_sessions: found by the SHA-256 of the cookie's value, never the value.
-- csrf and data are sealed by internal/rowseal, bound to the row's id hash,
-- scope, app and subject. ends_at is least(last_seen_at + idle_timeout,
-- expires_at), kept by the store: the order of eviction and of sweeping.
CREATE TABLE web_sessions (
	id_hash      bytea PRIMARY KEY CHECK (length(id_hash) = 32),
	scope        text NOT NULL CHECK (scope <> ''),
	app_id       text REFERENCES apps (id) ON DELETE CASCADE, -- NULL: no one app's (an operator's)
	subject      text NOT NULL DEFAULT '',
	csrf         bytea NOT NULL,                    -- sealed
	data         bytea,                             -- sealed; NULL when empty
	created_at   timestamptz NOT NULL,
	last_seen_at timestamptz NOT NULL,
	idle_timeout bigint NOT NULL DEFAULT 0 CHECK (idle_timeout >= 0), -- microseconds; 0: none
	expires_at   timestamptz NOT NULL,
	ends_at      timestamptz NOT NULL
);
-- web_sessions_scope and web_sessions_subject serve the caps of
-- CreateWebSession (count, then evict the soonest-ending) and
-- DeleteWebSessions; web_sessions_ends the sweep; web_sessions_app the
-- cascade when an app is deleted.
CREATE INDEX web_sessions_scope ON web_sessions (scope, ends_at);
CREATE INDEX web_sessions_subject ON web_sessions (scope, subject, ends_at);
CREATE INDEX web_sessions_ends ON web_sessions (ends_at);
CREATE INDEX web_sessions_app ON web_sessions (app_id);
