-- 0003: apps get a sealed webhook signing secret, and connections an index
-- for CountConnections.

-- webhook_secret signs the app's webhook deliveries: sealed by
-- internal/rowseal (apps.webhook_secret of the app's id); NULL when the app
-- has none, as every app written before this migration. Adding a nullable
-- column without a default rewrites no row.
ALTER TABLE apps ADD COLUMN webhook_secret bytea;

-- connections_app_state lets CountConnections read an index in GROUP BY
-- order (an index-only scan once the table is vacuumed) instead of the
-- table, whose rows carry the sealed tokens.
CREATE INDEX connections_app_state ON connections (app_id, state);
