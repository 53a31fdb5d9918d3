-- 0018: last use moves out of connections into a narrow table of its own
-- (issue 14's cache-miss vend). MarkUsed wrote last_used_at into the
-- connection's row: SQLite rewrote the whole row (its sealed tokens
-- included) and moved its connections_due entry, whose key held the time,
-- so every first use of a connection dirtied a page of a table of a few
-- hundred bytes a row and one of the index. At a million connections those
-- pages are all different: a quarter of serve's CPU went to writing,
-- journalling and checkpointing them (docs/BENCHMARKS.md). A row here is
-- the key and a time; a batch of uses lands on a few thousand pages of a
-- table about a twentieth of the size, and connections is not written.
--
-- A connection without a row was never used (as last_used_at IS NULL
-- was). Rows go with their connection (ON DELETE CASCADE, with an app's
-- deletion too). DueUsed walks connections_due as before and looks each
-- candidate up here by key.
CREATE TABLE connection_uses (
	app_id       TEXT    NOT NULL,
	id           TEXT    NOT NULL,
	last_used_at INTEGER NOT NULL, -- unix microseconds
	PRIMARY KEY (app_id, id),
	FOREIGN KEY (app_id, id) REFERENCES connections (app_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

INSERT INTO connection_uses (app_id, id, last_used_at)
	SELECT app_id, id, last_used_at FROM connections WHERE last_used_at IS NOT NULL;

DROP INDEX connections_due;
CREATE INDEX connections_due ON connections (access_expires_at, app_id, id, next_attempt_at, version)
	WHERE state = 'active';
ALTER TABLE connections DROP COLUMN last_used_at;
