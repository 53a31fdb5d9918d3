-- 0009: the app's life cycle (issue 15): client- and webhook-secret
-- rotation, operators' admin credentials, each app's client-credentials
-- token, and the indexes of the operator's views (an app's deliveries, a
-- Spotify user's connections).

-- previous_client_secret and previous_webhook_secret hold, while a rotation
-- is under way, the secret the current one replaced, sealed by
-- internal/rowseal (apps.previous_client_secret / previous_webhook_secret of
-- the app's id); NULL when no rotation is under way.
ALTER TABLE apps ADD COLUMN previous_client_secret BLOB;
ALTER TABLE apps ADD COLUMN previous_webhook_secret BLOB;

-- admin_keys: the SHA-256 of each operator's admin credential, never the key.
CREATE TABLE admin_keys (
	id           TEXT    NOT NULL PRIMARY KEY CHECK (id <> ''),
	name         TEXT    NOT NULL DEFAULT '',
	prefix       TEXT    NOT NULL DEFAULT '',
	hash         BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
	created_at   INTEGER NOT NULL,
	last_used_at INTEGER,                           -- NULL: never used
	revoked_at   INTEGER                            -- NULL: active
) STRICT;

-- app_tokens: one app's client-credentials access token, sealed
-- (app_tokens.access_token of the app's id), and the lease under which one
-- replica at a time asks Spotify for a new one. The row is made by the
-- first lease; version counts the tokens saved.
CREATE TABLE app_tokens (
	app_id           TEXT    NOT NULL PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
	client_id        TEXT    NOT NULL DEFAULT '',
	access_token     BLOB,                          -- sealed; NULL until the first token
	expires_at       INTEGER,
	version          INTEGER NOT NULL DEFAULT 0 CHECK (version >= 0),
	lease_owner      TEXT,                          -- NULL: no lease
	lease_expires_at INTEGER,
	updated_at       INTEGER NOT NULL,
	CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
) STRICT;

-- events_app serves Events: an app's deliveries, newest first.
CREATE INDEX events_app ON events (app_id, id);

-- connections_spotify_user serves FindConnections by Spotify user.
CREATE INDEX connections_spotify_user ON connections (spotify_user_id, app_id, id);
