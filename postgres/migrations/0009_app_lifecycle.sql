-- 0009: the app's life cycle (issue 15): client- and webhook-secret
-- rotation, operators' admin credentials, each app's client-credentials
-- token, and the indexes of the operator's views (an app's deliveries, a
-- Spotify user's connections).

-- previous_client_secret and previous_webhook_secret hold, while a rotation
-- is under way, the secret the current one replaced, sealed by
-- internal/rowseal; NULL when no rotation is under way. Adding nullable
-- columns without a default rewrites no row.
ALTER TABLE apps ADD COLUMN previous_client_secret bytea;
ALTER TABLE apps ADD COLUMN previous_webhook_secret bytea;

-- admin_keys: the SHA-256 of each operator's admin credential, never the key.
CREATE TABLE admin_keys (
	id           text PRIMARY KEY,
	name         text NOT NULL DEFAULT '',
	prefix       text NOT NULL DEFAULT '',
	hash         bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
	created_at   timestamptz NOT NULL,
	last_used_at timestamptz,
	revoked_at   timestamptz
);

-- app_tokens: one app's client-credentials access token, sealed, and the
-- lease under which one replica at a time asks Spotify for a new one. The
-- row is made by the first lease; version counts the tokens saved.
CREATE TABLE app_tokens (
	app_id           text PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
	client_id        text NOT NULL DEFAULT '',
	access_token     bytea,                        -- sealed; NULL until the first token
	expires_at       timestamptz,
	version          bigint NOT NULL DEFAULT 0 CHECK (version >= 0),
	lease_owner      text,
	lease_expires_at timestamptz,
	updated_at       timestamptz NOT NULL,
	CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);

-- events_app serves Events: an app's deliveries, newest first.
CREATE INDEX events_app ON events (app_id, id);

-- connections_spotify_user serves FindConnections by Spotify user.
CREATE INDEX connections_spotify_user ON connections (spotify_user_id, app_id, id);
