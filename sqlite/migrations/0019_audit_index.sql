-- 0019: the trail's index by connection is filled in sorted batches
-- (issues 14 and 16). audit_groups_connection took an entry per group, and
-- a batch's groups are of as many connections: each entry went to the end
-- of its connection's entries, a leaf of its own once the index had more
-- leaves than the batch had connections. At a thousand connections that
-- was half of what the trail cost a vend; in a sweep of a million, a
-- random leaf per record (docs/BENCHMARKS.md).
--
-- Now a group is written with append-only entries only (the table, and
-- audit_groups_app, audit_groups_at and audit_groups_tail, whose keys
-- grow), and joins the index by connection later: when enough groups wait
-- (sqlite.Config.AuditIndexEvery), one transaction copies them all into
-- audit_group_index in key order, where a connection's new entries are
-- neighbours on one leaf, and moves indexed_id past them. A connection's
-- listing reads both: audit_group_index for the groups up to indexed_id,
-- audit_groups_tail for those after it (the tail, bounded by
-- AuditIndexEvery). Both are in one snapshot, so a group is in exactly one
-- of the two.
--
-- Entries leave with their group (audit_groups_unindex): retention deletes
-- groups whole.
CREATE TABLE audit_group_index (
	app_id        TEXT    NOT NULL,
	connection_id TEXT    NOT NULL,
	first_at      INTEGER NOT NULL, -- the group's, unix microseconds
	id            INTEGER NOT NULL, -- the group's
	PRIMARY KEY (app_id, connection_id, first_at, id)
) STRICT, WITHOUT ROWID;

-- indexed_id: every group with an id up to it is in audit_group_index, and
-- none after it.
CREATE TABLE audit_index_state (
	one        INTEGER NOT NULL PRIMARY KEY CHECK (one = 1),
	indexed_id INTEGER NOT NULL
) STRICT;

INSERT INTO audit_group_index (app_id, connection_id, first_at, id)
	SELECT app_id, connection_id, first_at, id FROM audit_groups ORDER BY app_id, connection_id, first_at, id;
INSERT INTO audit_index_state (one, indexed_id) VALUES (1, coalesce((SELECT max(id) FROM audit_groups), 0));

DROP INDEX audit_groups_connection;
-- The tail's groups by id, with what a connection's listing filters on.
CREATE INDEX audit_groups_tail ON audit_groups (id, app_id, connection_id, first_at);

CREATE TRIGGER audit_groups_unindex AFTER DELETE ON audit_groups
BEGIN
	DELETE FROM audit_group_index
	 WHERE app_id = old.app_id AND connection_id = old.connection_id AND first_at = old.first_at AND id = old.id;
END;
