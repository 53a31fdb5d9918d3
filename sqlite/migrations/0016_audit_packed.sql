-- 0016: the audit trail's batched records are written packed (issue 16's
-- cost): app_id, connection_id, at, action and version stay columns (the
-- listings search and order by them: audit_connection, audit_app,
-- audit_at), and everything else goes into rest, one JSON array
-- [actor_type, actor_id, actor_label, client_ip, user_agent, request_id,
--  method, route, status, upstream_status, outcome, fingerprint, detail],
-- with the other columns left at their defaults. Binding eighteen values a
-- row was a third of the batch write. Rows with rest '' (written before,
-- or with a lifecycle change) keep a column each; readers take both.
ALTER TABLE audit_records ADD COLUMN rest TEXT NOT NULL DEFAULT '';
