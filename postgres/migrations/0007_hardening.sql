-- 0007: hardening (issue 13).

-- refresh_unknown_at is when a refresh was sent to Spotify and no answer came;
-- NULL when the last refresh's outcome is known. A later invalid_grant within
-- the rotation-loss window is reported as rotation_lost.
ALTER TABLE connections ADD COLUMN refresh_unknown_at timestamptz;

-- A connect session may require the app's confirmation of the grant, and may
-- let Spotify skip its consent page (show_dialog is sent unless skip_dialog).
ALTER TABLE pending_authorizations ADD COLUMN require_confirmation boolean NOT NULL DEFAULT false;
ALTER TABLE pending_authorizations ADD COLUMN skip_dialog boolean NOT NULL DEFAULT false;

-- pending_authorizations_app_expiry counts an app's live pending
-- authorizations for the per-app cap.
CREATE INDEX pending_authorizations_app_expiry ON pending_authorizations (app_id, expires_at);

-- pending_grants: grants completed at /callback that wait for the app's
-- confirmation, found by the SHA-256 of the one-time confirm code. They do
-- not touch the connection until confirmed; expired ones are erased.
CREATE TABLE pending_grants (
	code_hash         bytea PRIMARY KEY CHECK (length(code_hash) = 32),
	app_id            text NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
	connection_id     text NOT NULL,
	spotify_user_id   text NOT NULL DEFAULT '',
	display_name      text NOT NULL DEFAULT '',
	scopes            text[] NOT NULL DEFAULT '{}',
	access_token      bytea,                        -- sealed
	refresh_token     bytea,                        -- sealed
	access_expires_at timestamptz,
	created_at        timestamptz NOT NULL,
	expires_at        timestamptz NOT NULL
);
CREATE INDEX pending_grants_app_expiry ON pending_grants (app_id, expires_at);
CREATE INDEX pending_grants_expiry ON pending_grants (expires_at);
