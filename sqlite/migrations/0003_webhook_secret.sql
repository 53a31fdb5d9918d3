-- 0003: apps get a sealed webhook signing secret, and connections an index
-- for CountConnections.

-- webhook_secret signs the app's webhook deliveries: sealed by
-- internal/rowseal (apps.webhook_secret of the app's id); NULL when the app
-- has none, as every app written before this migration.
ALTER TABLE apps ADD COLUMN webhook_secret BLOB;

-- connections_app_state serves CountConnections alone: a scan of this
-- covering index in GROUP BY order, with no sort and no token read.
CREATE INDEX connections_app_state ON connections (app_id, state);
