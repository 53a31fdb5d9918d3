-- 0004: the grant-expiry warning (connection.expiring) and the metrics of
-- grants expiring soon.

-- expiry_warned_at is when the connection.expiring event of the current grant
-- was recorded (unix microseconds); NULL until then, and again after a new
-- consent.
ALTER TABLE connections ADD COLUMN expiry_warned_at INTEGER;

-- connections_unwarned serves ExpiringGrants from the index alone: only
-- active, not yet warned grants, soonest expiry first. expiry_warned_at is a
-- column too, as SQLite does not take IS NULL as implied by the index's
-- WHERE; state = 'active' must stay a literal in the query for SQLite to use
-- the partial index.
CREATE INDEX connections_unwarned ON connections (grant_expires_at, app_id, id, version, expiry_warned_at)
	WHERE state = 'active' AND expiry_warned_at IS NULL;

-- connections_grant_expiry serves CountExpiringGrants from the index alone.
CREATE INDEX connections_grant_expiry ON connections (grant_expires_at, app_id) WHERE state = 'active';
