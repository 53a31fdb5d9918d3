-- 0001: the initial schema. Every secret column holds a ciphertext sealed by
-- internal/rowseal, bound to its table, column and row; NULL means empty.
-- Times are timestamptz; NULL stands for Go's zero time.Time.

CREATE TABLE apps (
	id                text PRIMARY KEY,
	client_id         text NOT NULL,
	client_secret     bytea,                       -- sealed; NULL for a public app
	redirect_uris     text[] NOT NULL DEFAULT '{}',
	default_scopes    text[] NOT NULL DEFAULT '{}',
	return_to_origins text[] NOT NULL DEFAULT '{}',
	webhook_url       text NOT NULL DEFAULT '',
	created_at        timestamptz NOT NULL,
	updated_at        timestamptz NOT NULL
);

CREATE TABLE api_keys (
	id           text PRIMARY KEY,
	app_id       text NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
	name         text NOT NULL DEFAULT '',
	prefix       text NOT NULL DEFAULT '',
	hash         bytea NOT NULL UNIQUE CHECK (length(hash) = 32), -- SHA-256 of the key
	created_at   timestamptz NOT NULL,
	last_used_at timestamptz,
	revoked_at   timestamptz
);

CREATE INDEX api_keys_app ON api_keys (app_id, created_at, id);

CREATE TABLE pending_authorizations (
	state_hash    bytea PRIMARY KEY CHECK (length(state_hash) = 32), -- SHA-256 of the OAuth state
	app_id        text NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
	connection_id text NOT NULL,
	verifier      bytea,                           -- sealed PKCE verifier
	scopes        text[] NOT NULL DEFAULT '{}',
	redirect_uri  text NOT NULL DEFAULT '',
	return_to     text NOT NULL DEFAULT '',
	created_at    timestamptz NOT NULL,
	expires_at    timestamptz NOT NULL,
	used_at       timestamptz
);

CREATE INDEX pending_authorizations_app ON pending_authorizations (app_id);
CREATE INDEX pending_authorizations_expires ON pending_authorizations (expires_at);

CREATE TABLE connections (
	app_id               text NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
	id                   text NOT NULL,
	spotify_user_id      text NOT NULL DEFAULT '',
	display_name         text NOT NULL DEFAULT '',
	scopes               text[] NOT NULL DEFAULT '{}',
	state                text NOT NULL CHECK (state IN ('active', 'needs_reauth', 'revoked')),
	access_token         bytea,                    -- sealed; NULL when empty
	refresh_token        bytea,                    -- sealed; NULL when empty
	access_expires_at    timestamptz,
	version              bigint NOT NULL CHECK (version > 0),
	lease_owner          text,
	lease_expires_at     timestamptz,
	last_refresh_at      timestamptz,
	consecutive_failures integer NOT NULL DEFAULT 0,
	next_attempt_at      timestamptz,
	last_error_code      text NOT NULL DEFAULT '',
	consented_at         timestamptz,
	grant_expires_at     timestamptz,
	created_at           timestamptz NOT NULL,
	updated_at           timestamptz NOT NULL,
	PRIMARY KEY (app_id, id)
);

-- Due reads this index alone: it holds the sort key and every column the
-- query filters on or returns, and only active connections.
CREATE INDEX connections_due ON connections (access_expires_at, app_id, id)
	INCLUDE (version, next_attempt_at)
	WHERE state = 'active';

-- The outbox. Events have no foreign key to apps: DeleteApp deletes the
-- undelivered ones and the delivered ones stay as history.
CREATE TABLE events (
	id              bigserial PRIMARY KEY,
	type            text NOT NULL,
	app_id          text NOT NULL,
	connection_id   text NOT NULL DEFAULT '',
	data            bytea,
	created_at      timestamptz NOT NULL,
	attempts        integer NOT NULL DEFAULT 0,
	next_attempt_at timestamptz,
	delivered_at    timestamptz,
	last_error      text NOT NULL DEFAULT ''
);

CREATE INDEX events_pending ON events (id) INCLUDE (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX events_app_pending ON events (app_id) WHERE delivered_at IS NULL;
