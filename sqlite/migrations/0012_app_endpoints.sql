-- 0012: the Spotify endpoints an app's grants were issued by, when they are
-- not Spotify's own (the personal profiles of 'spotoken login' record the
-- emulator's URL, so 'spotoken token' refreshes there without being told).

CREATE TABLE app_endpoints (
	app_id       TEXT NOT NULL PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
	accounts_url TEXT NOT NULL,
	api_url      TEXT NOT NULL
) STRICT;
