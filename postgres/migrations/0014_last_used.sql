-- 0014: refresh what will be used (issue 14). last_used_at is when a
-- caller last asked for the connection's token (vend, proxy, SDK through
-- the refresh engine), written coalesced by MarkUsed (at most once per
-- connection every few minutes, in batches), never by UpdateConnection. The
-- scheduler refreshes ahead of expiry only the connections used within its
-- active window (DueUsed); the others are refreshed when a caller asks.
--
-- Existing rows count as used when they were last updated, so a replica
-- that upgrades keeps refreshing what it refreshed until the window ends.
ALTER TABLE connections ADD COLUMN last_used_at timestamptz;
UPDATE connections SET last_used_at = updated_at;

-- connections_due gains last_used_at so that DueUsed, like Due, reads the
-- index alone, walking expiries from the start of the active window:
-- connections idle for longer, whose tokens expired before it, are never
-- visited.
DROP INDEX connections_due;
CREATE INDEX connections_due ON connections (access_expires_at, app_id, id)
	INCLUDE (version, next_attempt_at, last_used_at)
	WHERE state = 'active';
