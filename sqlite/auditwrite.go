package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// auditWriter writes the trail's batches (AppendAudit) on a connection of
// its own, through SQLite's C API as pointReader reads, with every
// statement prepared once when the store opens.
//
// Through database/sql each batch parsed its statements anew: the pragmas
// around it, BEGIN and COMMIT, the ID reservation and, above all, the
// INSERT of up to a hundred groups (700 parameters), which was a fifth of
// the batch's CPU with a thousand connections vending (docs/BENCHMARKS.md,
// issue 16). Here a group is one bind, step and reset of a one-row INSERT.
//
// The connection keeps synchronous=NORMAL and temp_store=MEMORY for good
// (see AppendAudit for what NORMAL risks), so no pragma runs per batch. It
// is a second writer connection to the file: it writes only through the
// gate (writer.go), as the pool's does, so the two never wait for each
// other's lock; another process's lock is waited for up to busy_timeout,
// as everywhere, but in steps that heed the caller's context (begin1).
type auditWriter struct {
	cconn
	begin, commit, rollback, seqInit, seqReserve, insert uintptr
	// buf is C memory for the strings a group binds.
	buf    uintptr
	bufCap int
	// broken: a ROLLBACK failed, so the connection may be inside a
	// transaction; it is closed and opened again before the next batch.
	broken bool
	closed bool
	path   string
	pragma string
}

// beginStep is the audit writer's busy_timeout, in milliseconds (see
// begin1).
const beginStep = 50

// The auditWriter's statements.
const (
	auditSeqInit = `INSERT INTO sqlite_sequence (name, seq) SELECT 'audit_records', coalesce((SELECT max(id) FROM audit_records), 0)
		WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'audit_records')`
	auditSeqReserve  = `UPDATE sqlite_sequence SET seq = seq + ? WHERE name = 'audit_records' RETURNING seq`
	auditGroupInsert = `INSERT INTO audit_groups (id, app_id, connection_id, first_at, last_at, n, body) VALUES (?, ?, ?, ?, ?, ?, ?)`
)

// openAuditWriter opens the audit writer's connection to the file at path
// with the writer's settings (pragmas) and prepares its statements.
func openAuditWriter(path, pragmas string) (*auditWriter, error) {
	w := &auditWriter{path: path, pragma: fmt.Sprintf("%s PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY; PRAGMA busy_timeout = %d;", pragmas, beginStep)}
	if err := w.connect(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *auditWriter) connect() (err error) {
	w.cconn = cconn{tls: libc.NewTLS()}
	defer func() {
		if err != nil {
			w.closeConn()
		}
	}()
	if err := w.cconn.open(w.path, w.pragma); err != nil {
		return err
	}
	for _, s := range []struct {
		p *uintptr
		q string
	}{{&w.begin, "BEGIN IMMEDIATE"}, {&w.commit, "COMMIT"}, {&w.rollback, "ROLLBACK"},
		{&w.seqInit, auditSeqInit}, {&w.seqReserve, auditSeqReserve}, {&w.insert, auditGroupInsert}} {
		if *s.p, err = w.prepare(s.q); err != nil {
			return err
		}
	}
	w.broken = false
	return nil
}

// closeConn finalizes the statements and closes the connection, if open.
func (w *auditWriter) closeConn() error {
	if w.tls == nil {
		return nil
	}
	if w.buf != 0 {
		libc.Xfree(w.tls, w.buf)
	}
	err := w.cconn.close(w.begin, w.commit, w.rollback, w.seqInit, w.seqReserve, w.insert)
	w.cconn = cconn{}
	w.begin, w.commit, w.rollback, w.seqInit, w.seqReserve, w.insert, w.buf, w.bufCap = 0, 0, 0, 0, 0, 0, 0, 0
	return err
}

// close closes the writer; writes fail from then on. The caller holds the
// gate.
func (w *auditWriter) close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	return w.closeConn()
}

// step runs stmt, which returns no row, to its end and resets it.
func (w *auditWriter) step(op string, stmt uintptr) error {
	defer sqlite3.Xsqlite3_reset(w.tls, stmt)
	if rc := sqlite3.Xsqlite3_step(w.tls, stmt); rc != sqlite3.SQLITE_DONE {
		return w.errorf(op, rc)
	}
	return nil
}

// write stores groups, their IDs reserved and set, in one immediate
// transaction. The caller holds the gate. ctx is checked between groups,
// and its end interrupts a statement under way (a wait for another
// process's lock included), as the driver's ExecContext does: a write cut
// short rolls back.
func (w *auditWriter) write(ctx context.Context, groups []auditGroup) (err error) {
	if w.closed {
		return errClosed
	}
	if w.broken {
		w.closeConn()
		if err := w.connect(); err != nil {
			w.broken = true
			return fmt.Errorf("reopen: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	db, fired := w.db, make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		tls := libc.NewTLS() // w.tls is the writing goroutine's
		defer tls.Close()
		sqlite3.Xsqlite3_interrupt(tls, db)
	})
	defer func() {
		if !stop() {
			<-fired // the connection is not touched after write returns
		}
		if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w: %w", ctx.Err(), err)
		}
	}()
	if err := w.begin1(ctx); err != nil {
		return err
	}
	defer func() {
		if err == nil {
			return
		}
		if sqlite3.Xsqlite3_get_autocommit(w.tls, w.db) != 0 {
			return // SQLite rolled the transaction back itself
		}
		if rerr := w.step("rollback", w.rollback); rerr != nil {
			w.broken = true
			err = errors.Join(err, rerr)
		}
	}()
	total := 0
	for _, g := range groups {
		total += g.n
	}
	id, err := w.reserve(total)
	if err != nil {
		return err
	}
	for i := range groups {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		groups[i].id = id
		id += int64(groups[i].n)
		if err := w.insertGroup(&groups[i]); err != nil {
			return fmt.Errorf("insert audit groups: %w", err)
		}
	}
	return w.step("commit", w.commit)
}

// begin1 begins the transaction. Another process's lock is waited for
// up to busyTimeout, as by every connection, but in steps of beginStep
// (the connection's own busy_timeout), ctx checked between them: SQLite's
// wait for a lock does not heed sqlite3_interrupt.
func (w *auditWriter) begin1(ctx context.Context) error {
	deadline := time.Now().Add(busyTimeout * time.Millisecond)
	for {
		err := w.step("begin", w.begin)
		var ce *cError
		if err == nil || !errors.As(err, &ce) || ce.code&0xff != sqlite3.SQLITE_BUSY || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
	}
}

// reserve reserves n record IDs from audit_records' AUTOINCREMENT
// sequence, which the lifecycle records' rows draw from too, and returns
// the first. SQLite documents sqlite_sequence as writable by ordinary
// statements; the row is made first if the table has none yet.
func (w *auditWriter) reserve(n int) (int64, error) {
	if err := w.step("audit id sequence", w.seqInit); err != nil {
		return 0, err
	}
	tls, stmt := w.tls, w.seqReserve
	defer sqlite3.Xsqlite3_reset(tls, stmt)
	if rc := sqlite3.Xsqlite3_bind_int64(tls, stmt, 1, int64(n)); rc != sqlite3.SQLITE_OK {
		return 0, w.errorf("reserve audit ids", rc)
	}
	if rc := sqlite3.Xsqlite3_step(tls, stmt); rc != sqlite3.SQLITE_ROW {
		return 0, w.errorf("reserve audit ids", rc)
	}
	last := sqlite3.Xsqlite3_column_int64(tls, stmt, 0)
	if rc := sqlite3.Xsqlite3_step(tls, stmt); rc != sqlite3.SQLITE_DONE {
		return 0, w.errorf("reserve audit ids", rc)
	}
	return last - int64(n) + 1, nil
}

// insertGroup inserts g, its strings copied into w.buf and bound from
// there (SQLITE_STATIC: the buffer is not touched until the reset).
func (w *auditWriter) insertGroup(g *auditGroup) error {
	tls, stmt := w.tls, w.insert
	need := len(g.appID) + len(g.connectionID) + len(g.body)
	if need > w.bufCap || w.buf == 0 {
		if w.buf != 0 {
			libc.Xfree(tls, w.buf)
		}
		w.bufCap = max(4096, 2*need)
		if w.buf = libc.Xmalloc(tls, libc.Tsize_t(w.bufCap)); w.buf == 0 {
			w.bufCap = 0
			return errors.New("sqlite: out of memory")
		}
	}
	b := libc.GoBytes(w.buf, need)
	copy(b, g.appID)
	copy(b[len(g.appID):], g.connectionID)
	copy(b[len(g.appID)+len(g.connectionID):], g.body)
	defer sqlite3.Xsqlite3_reset(tls, stmt)
	app, conn := w.buf, w.buf+uintptr(len(g.appID))
	body := conn + uintptr(len(g.connectionID))
	for _, rc := range [...]int32{
		sqlite3.Xsqlite3_bind_int64(tls, stmt, 1, g.id),
		sqlite3.Xsqlite3_bind_text(tls, stmt, 2, app, int32(len(g.appID)), 0),
		sqlite3.Xsqlite3_bind_text(tls, stmt, 3, conn, int32(len(g.connectionID)), 0),
		sqlite3.Xsqlite3_bind_int64(tls, stmt, 4, g.firstAt),
		sqlite3.Xsqlite3_bind_int64(tls, stmt, 5, g.lastAt),
		sqlite3.Xsqlite3_bind_int64(tls, stmt, 6, int64(g.n)),
		sqlite3.Xsqlite3_bind_text(tls, stmt, 7, body, int32(len(g.body)), 0),
	} {
		if rc != sqlite3.SQLITE_OK {
			return w.errorf("bind", rc)
		}
	}
	if rc := sqlite3.Xsqlite3_step(tls, stmt); rc != sqlite3.SQLITE_DONE {
		return w.errorf("insert", rc)
	}
	return nil
}
