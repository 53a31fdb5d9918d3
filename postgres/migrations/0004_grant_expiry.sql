-- 0004: the grant-expiry warning (connection.expiring) and the metrics of
-- grants expiring soon.

-- expiry_warned_at is when the connection.expiring event of the current grant
-- was recorded; NULL until then, and again after a new consent. Adding a
-- nullable column without a default rewrites no row.
ALTER TABLE connections ADD COLUMN expiry_warned_at timestamptz;

-- connections_unwarned serves ExpiringGrants: only active, not yet warned
-- grants, soonest expiry first.
CREATE INDEX connections_unwarned ON connections (grant_expires_at, app_id, id) INCLUDE (version)
	WHERE state = 'active' AND expiry_warned_at IS NULL;

-- connections_grant_expiry serves CountExpiringGrants.
CREATE INDEX connections_grant_expiry ON connections (grant_expires_at) INCLUDE (app_id) WHERE state = 'active';
