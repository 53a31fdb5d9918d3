-- 0013: the operator's console (issue 15): the indexes its searches,
-- listings and timelines read, so that each stays a search at a million
-- connections, and the hourly refresh tallies behind its charts.

-- connections_id serves FindConnections by connection id across apps (the
-- primary key starts with the app).
CREATE INDEX connections_id ON connections (id, app_id);

-- connections_app_grant serves BrowseConnections in grant-expiry order
-- (and "grant expires within N days"): one app's active connections, the
-- grant that ends first first. grant_expires_at changes only with a new
-- consent, so refreshes never touch it. state = 'active' must stay a
-- literal in the query for SQLite to use the partial index.
CREATE INDEX connections_app_grant ON connections (app_id, grant_expires_at, id) WHERE state = 'active';

-- connections_app_backoff serves BrowseConnections in next-attempt order
-- and CountBackingOff: the active connections that failed a refresh and
-- have not refreshed since (a success empties next_attempt_at, which takes
-- the row out of this partial index), usually few.
CREATE INDEX connections_app_backoff ON connections (app_id, next_attempt_at, id)
	WHERE state = 'active' AND next_attempt_at IS NOT NULL;

-- events_connection serves Events of one connection (its timeline), newest
-- first: the rowid is the event's id, so the index is in id order within a
-- connection.
CREATE INDEX events_connection ON events (app_id, connection_id);

-- refresh_tallies: per app and hour (unix microseconds of its start, UTC),
-- what the refresh requests to Spotify came to. Each replica adds its
-- in-memory counts every few seconds. No foreign key: counts that arrive
-- for an app deleted meanwhile are kept until the retention sweep.
CREATE TABLE refresh_tallies (
	app_id       TEXT    NOT NULL,
	hour         INTEGER NOT NULL,
	refreshed    INTEGER NOT NULL DEFAULT 0 CHECK (refreshed >= 0),
	failed       INTEGER NOT NULL DEFAULT 0 CHECK (failed >= 0),
	rate_limited INTEGER NOT NULL DEFAULT 0 CHECK (rate_limited >= 0),
	PRIMARY KEY (app_id, hour)
) STRICT, WITHOUT ROWID;
CREATE INDEX refresh_tallies_hour ON refresh_tallies (hour);
