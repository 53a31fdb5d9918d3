-- 0011: the backend-for-frontend for browser apps (issue 17).

-- browser_apps: an app's BFF settings; an app without a row has the BFF off.
-- A non-empty token_scopes turns the token-mediating mode on.
CREATE TABLE browser_apps (
	app_id       text PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
	origins      text[] NOT NULL CHECK (cardinality(origins) > 0),
	scopes       text[] NOT NULL DEFAULT '{}',
	token_scopes text[] NOT NULL DEFAULT '{}',
	created_at   timestamptz NOT NULL,
	updated_at   timestamptz NOT NULL
);

-- login: the kind of browser sign-in ('bff') whose handler completes a
-- pending authorization and names its connection after the exchange; ''
-- for a connect link, whose connection_id names it up front.
ALTER TABLE pending_authorizations ADD COLUMN login text NOT NULL DEFAULT '';
