-- 0020: no change to the schema. From this version on, an audit group's
-- body may hold short elements, [Δat, request_id], for a record that
-- repeats the one before it but for its time and request id (groupBody in
-- auditgroups.go): a service vending the same token again and again. The
-- bodies are a third of their size, and so are the trail's writes
-- (issue 16). A program from before this migration cannot read such a
-- body; it refuses a file with a schema version it does not know, which
-- this migration makes this file.
SELECT 1;
