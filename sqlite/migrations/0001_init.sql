-- 0001: the initial schema.
--
-- Conventions (see the package documentation):
--   * times are INTEGER unix microseconds in UTC; NULL is the zero time.Time;
--   * sealed secrets are BLOBs written by internal/rowseal, bound to their
--     table, column and row; NULL when the secret is empty;
--   * scopes are space-separated TEXT (as OAuth sends them); other lists are
--     JSON arrays of strings;
--   * every table is STRICT, so a value of the wrong type is an error.

-- apps: one Spotify app registration.
CREATE TABLE apps (
	id                TEXT    NOT NULL PRIMARY KEY CHECK (id <> ''),
	client_id         TEXT    NOT NULL,
	client_secret     BLOB,                         -- sealed; NULL for a public (PKCE) app
	redirect_uris     TEXT    NOT NULL DEFAULT '[]', -- JSON array
	default_scopes    TEXT    NOT NULL DEFAULT '',   -- space-separated
	return_to_origins TEXT    NOT NULL DEFAULT '[]', -- JSON array
	webhook_url       TEXT    NOT NULL DEFAULT '',
	created_at        INTEGER NOT NULL,
	updated_at        INTEGER NOT NULL
) STRICT;

-- api_keys: the SHA-256 of each API key, never the key.
CREATE TABLE api_keys (
	id           TEXT    NOT NULL PRIMARY KEY CHECK (id <> ''),
	app_id       TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
	name         TEXT    NOT NULL DEFAULT '',
	prefix       TEXT    NOT NULL DEFAULT '',
	hash         BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
	created_at   INTEGER NOT NULL,
	last_used_at INTEGER,                           -- NULL: never used
	revoked_at   INTEGER                            -- NULL: active
) STRICT;
CREATE INDEX api_keys_app ON api_keys (app_id, created_at);

-- pending_authorizations: between /connect and /callback, found by the
-- SHA-256 of the OAuth state parameter and consumed once (used_at).
CREATE TABLE pending_authorizations (
	state_hash    BLOB    NOT NULL PRIMARY KEY CHECK (length(state_hash) = 32),
	app_id        TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
	connection_id TEXT    NOT NULL,
	verifier      BLOB,                             -- sealed PKCE verifier; NULL when none
	scopes        TEXT    NOT NULL DEFAULT '',      -- space-separated
	redirect_uri  TEXT    NOT NULL DEFAULT '',
	return_to     TEXT    NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	expires_at    INTEGER NOT NULL,
	used_at       INTEGER                           -- NULL: not consumed
) STRICT;
CREATE INDEX pending_authorizations_app ON pending_authorizations (app_id);
CREATE INDEX pending_authorizations_expiry ON pending_authorizations (expires_at);

-- connections: one Spotify user's grant to one app, with its sealed tokens.
-- version is the compare-and-swap counter of UpdateConnection; the lease
-- columns change without touching it.
CREATE TABLE connections (
	app_id               TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
	id                   TEXT    NOT NULL CHECK (id <> ''),
	spotify_user_id      TEXT    NOT NULL DEFAULT '',
	display_name         TEXT    NOT NULL DEFAULT '',
	scopes               TEXT    NOT NULL DEFAULT '', -- space-separated
	state                TEXT    NOT NULL CHECK (state IN ('active', 'needs_reauth', 'revoked')),
	access_token         BLOB,                        -- sealed; NULL when empty
	refresh_token        BLOB,                        -- sealed; NULL when empty
	access_expires_at    INTEGER,
	version              INTEGER NOT NULL CHECK (version > 0),
	lease_owner          TEXT,                        -- NULL: no lease
	lease_expires_at     INTEGER,
	last_refresh_at      INTEGER,
	consecutive_failures INTEGER NOT NULL DEFAULT 0,
	next_attempt_at      INTEGER,                     -- NULL: not in backoff
	last_error_code      TEXT    NOT NULL DEFAULT '',
	consented_at         INTEGER,
	grant_expires_at     INTEGER,
	created_at           INTEGER NOT NULL,
	updated_at           INTEGER NOT NULL,
	PRIMARY KEY (app_id, id),
	CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
) STRICT;

-- connections_due serves Due alone: partial (active connections only) and
-- covering (every column Due reads or returns), in Due's sort order, so the
-- scheduler reads neither the table nor any token.
CREATE INDEX connections_due ON connections (access_expires_at, app_id, id, next_attempt_at, version)
	WHERE state = 'active';

-- events: the webhook outbox. AUTOINCREMENT keeps ids increasing even after
-- the newest rows are deleted (DeleteApp), so an id is never reused.
CREATE TABLE events (
	id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	type            TEXT    NOT NULL CHECK (type <> ''),
	app_id          TEXT    NOT NULL,               -- no foreign key: delivered events outlive their app
	connection_id   TEXT    NOT NULL DEFAULT '',
	data            BLOB,                           -- JSON payload, never a secret
	created_at      INTEGER NOT NULL,
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt_at INTEGER,                        -- NULL: deliver now
	delivered_at    INTEGER,                        -- NULL: not delivered
	last_error      TEXT    NOT NULL DEFAULT ''
) STRICT;
-- events_pending serves PendingEvents (oldest undelivered first) and
-- events_undelivered_app DeleteApp; delivered events leave both.
CREATE INDEX events_pending ON events (id, next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX events_undelivered_app ON events (app_id) WHERE delivered_at IS NULL;
