-- 0006: each app's rate-limit window at Spotify's token endpoint (issue 12).

-- app_rate_limits holds, per app, when the window that Spotify's last 429
-- (Retry-After) opened ends: no replica sends a token request for the app
-- before rate_limited_until. A window only grows. The row goes with its app.
CREATE TABLE app_rate_limits (
	app_id             text PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
	rate_limited_until timestamptz NOT NULL
);
