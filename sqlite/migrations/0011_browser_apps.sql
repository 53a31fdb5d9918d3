-- 0011: the backend-for-frontend for browser apps (issue 17).

-- browser_apps: an app's BFF settings; an app without a row has the BFF off.
-- origins is a JSON array, as apps.return_to_origins; scopes and
-- token_scopes are space-separated. A non-empty token_scopes turns the
-- token-mediating mode on.
CREATE TABLE browser_apps (
	app_id       TEXT    NOT NULL PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
	origins      TEXT    NOT NULL CHECK (origins <> '[]'),
	scopes       TEXT    NOT NULL DEFAULT '',
	token_scopes TEXT    NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL
) STRICT;

-- login: the kind of browser sign-in ('bff') whose handler completes a
-- pending authorization and names its connection after the exchange; ''
-- for a connect link, whose connection_id names it up front.
ALTER TABLE pending_authorizations ADD COLUMN login TEXT NOT NULL DEFAULT '';
