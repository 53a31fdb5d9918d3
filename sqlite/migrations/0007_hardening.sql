-- 0007: hardening (issue 13).

-- refresh_unknown_at is when a refresh was sent to Spotify and no answer came
-- (unix microseconds); NULL when the last refresh's outcome is known. A later
-- invalid_grant within the rotation-loss window is reported as rotation_lost.
ALTER TABLE connections ADD COLUMN refresh_unknown_at INTEGER;

-- A connect session may require the app's confirmation of the grant, and may
-- let Spotify skip its consent page (show_dialog is sent unless skip_dialog).
ALTER TABLE pending_authorizations ADD COLUMN require_confirmation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pending_authorizations ADD COLUMN skip_dialog INTEGER NOT NULL DEFAULT 0;

-- pending_authorizations_app_expiry counts an app's live pending
-- authorizations for the per-app cap.
CREATE INDEX pending_authorizations_app_expiry ON pending_authorizations (app_id, expires_at);

-- pending_grants: grants completed at /callback that wait for the app's
-- confirmation, found by the SHA-256 of the one-time confirm code. They do
-- not touch the connection until confirmed; expired ones are erased.
CREATE TABLE pending_grants (
	code_hash         BLOB    NOT NULL PRIMARY KEY CHECK (length(code_hash) = 32),
	app_id            TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
	connection_id     TEXT    NOT NULL,
	spotify_user_id   TEXT    NOT NULL DEFAULT '',
	display_name      TEXT    NOT NULL DEFAULT '',
	scopes            TEXT    NOT NULL DEFAULT '',  -- space-separated
	access_token      BLOB,                         -- sealed
	refresh_token     BLOB,                         -- sealed
	access_expires_at INTEGER,
	created_at        INTEGER NOT NULL,
	expires_at        INTEGER NOT NULL
) STRICT;
CREATE INDEX pending_grants_app_expiry ON pending_grants (app_id, expires_at);
CREATE INDEX pending_grants_expiry ON pending_grants (expires_at);
