package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/spotoken/spotoken"
)

// TestAuditWriterFaults: the trail's batch writer (auditwrite.go) leaves
// nothing behind when a batch is cut short, writes the next one whole,
// opens its connection again when it may be left inside a transaction,
// answers a batch after Close with an error, and keeps the connection's
// settings (synchronous=NORMAL, temp_store=MEMORY, secure_delete,
// foreign_keys) without touching the pool's writer.
func TestAuditWriterFaults(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	db := openGroupsTest(t, at)

	// Cut short between groups: a context that ends after the first 64.
	cctx, cancel := context.WithCancel(ctx)
	batch := vendBatch(at, 0, 200) // 200 connections, a group each
	groups, err := groupAudit(at, batch)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.gate.enter(ctx, true); err != nil {
		t.Fatal(err)
	}
	cancel()
	err = db.auditW.write(cctx, groups)
	db.gate.leave()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("write with its context cancelled: %v, want context.Canceled", err)
	}
	if recs, rows := groupRows(t, db); recs != 0 || rows != 0 {
		t.Fatalf("after a batch cut short: %d records in %d rows, want none", recs, rows)
	}
	if sqlite3.Xsqlite3_get_autocommit(db.auditW.tls, db.auditW.db) == 0 {
		t.Fatal("the writer's connection was left inside a transaction")
	}

	// The next batch is written whole, its IDs after the lifecycle rows'.
	if err := db.AppendAudit(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	if recs, rows := groupRows(t, db); recs != 200 || rows != 200 {
		t.Fatalf("%d records in %d rows, want 200 in 200", recs, rows)
	}

	// A connection that may be inside a transaction is opened again.
	if err := db.gate.enter(ctx, true); err != nil {
		t.Fatal(err)
	}
	old := db.auditW.db
	if err := db.auditW.step("begin", db.auditW.begin); err != nil { // left open, as a failed ROLLBACK would
		t.Fatal(err)
	}
	db.auditW.broken = true
	db.gate.leave()
	if err := db.AppendAudit(ctx, vendBatch(at.Add(time.Second), 1, 10)...); err != nil {
		t.Fatalf("batch after a broken connection: %v", err)
	}
	if db.auditW.db == old {
		t.Error("the broken connection was kept")
	}
	if recs, _ := groupRows(t, db); recs != 210 {
		t.Fatalf("%d records, want 210", recs)
	}

	// Its settings, and the pool's writer's, which it does not touch.
	for pragma, want := range map[string]int64{"synchronous": 1, "temp_store": 2, "secure_delete": 1, "foreign_keys": 1} {
		if got := db.auditW.pragma1(t, pragma); got != want {
			t.Errorf("audit writer's %s = %d, want %d", pragma, got, want)
		}
	}
	if n, err := db.WriterSynchronous(); err != nil || n != 2 {
		t.Errorf("pool writer's synchronous = %d (%v), want 2 (FULL)", n, err)
	}

	// A batch after Close is refused; Close again is harmless.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendAudit(ctx, batch...); !errors.Is(err, errClosed) {
		t.Fatalf("batch after Close: %v, want errClosed", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestAuditWriterBusy: a batch waits for another process's write lock
// (busy_timeout) rather than failing at once, until its context's end
// interrupts the wait, and writes when the lock is released.
func TestAuditWriterBusy(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "db")
	db, err := Open(ctx, Config{Path: path, Keys: groupsKeys(t), Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	other := &cconn{tls: libc.NewTLS()}
	if err := other.open(path, "PRAGMA busy_timeout = 0;"); err != nil {
		other.close()
		t.Fatal(err)
	}
	defer other.close()
	if err := other.exec("BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	// A deadline ends the wait, long before SQLite's own busy_timeout (10
	// s), which does not heed an interrupt.
	dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	began := time.Now()
	err = db.AppendAudit(dctx, vendBatch(at, 0, 5)...)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("batch past its deadline under another connection's lock: %v, want the deadline", err)
	}
	if waited := time.Since(began); waited > busyTimeout*time.Millisecond/2 {
		t.Fatalf("the batch waited %v for the lock, past its deadline", waited)
	}
	done := make(chan error, 1)
	go func() { done <- db.AppendAudit(ctx, vendBatch(at, 0, 5)...) }()
	select {
	case err := <-done:
		t.Fatalf("batch under another connection's write lock returned at once: %v", err)
	case <-time.After(200 * time.Millisecond): // waiting, as it should
	}
	if err := other.exec("COMMIT"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("batch after the lock was released: %v", err)
	}
	if recs, _ := groupRows(t, db); recs != 5 {
		t.Fatalf("%d records, want 5", recs)
	}
}

// TestTranslateCError: the C API's constraint errors map to the domain's
// codes as the driver's do.
func TestTranslateCError(t *testing.T) {
	for code, want := range map[int]string{
		sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY: spotoken.EConflict,
		sqlite3.SQLITE_CONSTRAINT_CHECK:      spotoken.EInvalid,
		sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY: spotoken.ENotFound,
		sqlite3.SQLITE_BUSY:                  "",
	} {
		err := translate(&cError{op: "insert", msg: "x", code: code}, "", "")
		if got := spotoken.ErrorCode(err); want != "" && got != want {
			t.Errorf("code %d: %q, want %q", code, got, want)
		}
		var ce *cError
		if !errors.As(err, &ce) {
			t.Errorf("code %d: the C error left the chain: %v", code, err)
		}
	}
}

// pragma1 returns the connection's setting name, a number.
func (r *cconn) pragma1(t *testing.T, name string) int64 {
	t.Helper()
	stmt, err := r.prepare("PRAGMA " + name)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlite3.Xsqlite3_finalize(r.tls, stmt)
	if rc := sqlite3.Xsqlite3_step(r.tls, stmt); rc != sqlite3.SQLITE_ROW {
		t.Fatal(r.errorf("pragma "+name, rc))
	}
	return sqlite3.Xsqlite3_column_int64(r.tls, stmt, 0)
}
