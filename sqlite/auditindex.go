package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spotoken/spotoken"
)

// The trail's index by connection is filled in sorted batches (migration
// 0019): a group is written with append-only index entries and waits in
// the tail; once Config.AuditIndexEvery groups wait, a goroutine of the
// store copies their entries into audit_group_index in key order, a chunk
// of indexChunkSize entries per transaction, and then moves indexed_id past
// them.
//
// In key order a connection's new entries follow each other onto the leaf
// that holds its last ones: the indexing touches a leaf per connection
// (or per few dozen entries), where an entry per group as it was written
// touched one per group. The chunks are key ranges, so that each touches
// its own share of the leaves, and each is a transaction of its own, so
// that the trail's batches and every other write get the writer between
// them: at a million connections, indexing a whole tail at once held the
// writer for about a second, and the trail's queue filled meanwhile.
//
// An indexing cut short (an error, a crash, Close) leaves some of the
// tail's entries in the index and indexed_id where it was. Listings read a
// group of the tail from the index when its entry is there (the NOT
// EXISTS of auditGroupQuery), so each is listed once whatever the state;
// the next indexing inserts the same entries again, OR IGNORE.

// indexChunkSize is how many entries one indexing transaction inserts: the
// tail's entries in key order, so a chunk touches only its share of the
// index's leaves, and the trail's batch that waits behind it waits for
// that share.
const indexChunkSize = 1024

// indexKey is a group's entry in audit_group_index.
type indexKey struct {
	app, conn string
	firstAt   int64
	id        int64
}

// startIndexer starts the goroutine that indexes the tail when AppendAudit
// asks (db.indexWake); Close stops it.
func (db *DB) startIndexer() {
	ctx, cancel := context.WithCancel(context.Background())
	db.indexWake = make(chan struct{}, 1)
	db.indexStop = cancel
	db.indexDone = make(chan struct{})
	go func() {
		defer close(db.indexDone)
		for {
			select {
			case <-ctx.Done():
				return
			case <-db.indexWake:
			}
			// An error leaves the groups in the tail, where listings find
			// them; the next batch asks again.
			_ = db.indexAuditTail(ctx)
		}
	}()
}

// stopIndexer stops the indexing goroutine and waits for it: an indexing
// under way stops between two chunks, or rolls its chunk back.
func (db *DB) stopIndexer() {
	if db.indexStop != nil {
		db.indexStop()
		<-db.indexDone
	}
}

// askIndex counts n new groups in the tail and, once AuditIndexEvery wait,
// wakes the indexing goroutine (if it is not at work already).
func (db *DB) askIndex(n int) {
	if db.auditTail.Add(int64(n)) >= db.auditIndexEvery && db.indexWake != nil {
		select {
		case db.indexWake <- struct{}{}:
		default:
		}
	}
}

// indexAuditTail copies the entries of the tail's groups into the index
// by connection, in key order, a chunk a transaction, and then moves
// indexed_id past them. It reads the tail on a reader, so the writer is
// held only for each chunk's inserts.
func (db *DB) indexAuditTail(ctx context.Context) error {
	var from, upto int64
	if err := db.r.QueryRowContext(ctx, `SELECT indexed_id, coalesce((SELECT max(id) FROM audit_groups), 0) FROM audit_index_state`).Scan(&from, &upto); err != nil {
		return fmt.Errorf("index audit groups: %w", err)
	}
	if upto <= from {
		db.auditTail.Store(0)
		return nil
	}
	rows, err := db.r.QueryContext(ctx, `SELECT app_id, connection_id, first_at, id FROM audit_groups INDEXED BY audit_groups_tail
		WHERE id > ? AND id <= ?`, from, upto)
	if err != nil {
		return fmt.Errorf("index audit groups: %w", err)
	}
	var keys []indexKey
	for rows.Next() {
		var k indexKey
		if err := rows.Scan(&k.app, &k.conn, &k.firstAt, &k.id); err != nil {
			rows.Close()
			return fmt.Errorf("index audit groups: %w", err)
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("index audit groups: %w", err)
	}
	slices.SortFunc(keys, func(a, b indexKey) int {
		return cmp.Or(strings.Compare(a.app, b.app), strings.Compare(a.conn, b.conn), cmp.Compare(a.firstAt, b.firstAt), cmp.Compare(a.id, b.id))
	})
	for chunk := range slices.Chunk(keys, indexChunkSize) {
		if err := db.indexChunk(ctx, chunk); err != nil {
			return err
		}
	}
	// Moved only by the indexing that read it: another process's may have
	// moved it meanwhile, past these groups too.
	if err := db.write(spotoken.Background(ctx), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE audit_index_state SET indexed_id = ? WHERE indexed_id = ?`, upto, from)
		return err
	}); err != nil {
		return fmt.Errorf("index audit groups: %w", err)
	}
	db.auditTail.Add(-int64(len(keys)))
	return nil
}

// indexInsertQuery inserts a chunk of entries, given as a JSON array.
const indexInsertQuery = `INSERT OR IGNORE INTO audit_group_index (app_id, connection_id, first_at, id)
	SELECT k.value->>0, k.value->>1, k.value->>2, k.value->>3 FROM json_each(?) k
	 WHERE EXISTS (SELECT 1 FROM audit_groups g INDEXED BY audit_groups_tail WHERE g.id = k.value->>3)`

// indexChunk inserts keys, in order, on the writer, behind callers'
// writes (a background write). An entry whose group is gone (retention,
// since the tail was read) is not inserted, nor one already there.
//
// The chunk is one statement, and so its own transaction: SQLite keeps a
// statement journal (a copy of each page a statement changes, to undo the
// statement alone) only for a statement inside a longer transaction, and
// here it would hold as many pages as the chunk touches leaves. The keys
// go in as one JSON array ([[app, connection, first_at, id], ...]), so
// that the statement is short to prepare whatever the chunk's size. It
// commits with synchronous=NORMAL: an indexing lost in a power cut is done
// again. Whether a group is still there is asked of audit_groups_tail, a
// dense index, rather than of the table, whose rows (with their bodies)
// spread the groups over a page or two each: the table cost a page read
// an entry.
func (db *DB) indexChunk(ctx context.Context, keys []indexKey) error {
	b := []byte{'['}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = appendJSONString(b, k.app)
		b = append(b, ',')
		b = appendJSONString(b, k.conn)
		b = append(b, ',')
		b = strconv.AppendInt(b, k.firstAt, 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, k.id, 10)
		b = append(b, ']')
	}
	b = append(b, ']')
	err := db.backgroundNormalWrite(ctx, func(c rawConn) error {
		_, err := c.ExecContext(ctx, indexInsertQuery, []driver.NamedValue{{Ordinal: 1, Value: string(b)}})
		return err
	})
	if err != nil {
		return fmt.Errorf("index audit groups: %w", translate(err, "", ""))
	}
	return nil
}

// countAuditTail sets db.auditTail to the number of groups waiting for
// the index by connection, left by an earlier process.
func (db *DB) countAuditTail(ctx context.Context) error {
	var n int64
	if err := db.w.QueryRowContext(ctx, `SELECT count(*) FROM audit_groups INDEXED BY audit_groups_tail
		WHERE id > (SELECT indexed_id FROM audit_index_state)`).Scan(&n); err != nil {
		return fmt.Errorf("audit groups to index: %w", err)
	}
	db.auditTail.Store(n)
	return nil
}
