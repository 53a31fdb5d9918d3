package sqlite_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/spotoken/spotoken"
)

// TestAuditUpgradeConnKey opens a database written before migration 0019,
// with audit records in both forms (a column a field, and packed): Open
// gives them their connection key, so that a connection's listing, which
// searches by the key, finds them, in id order, and the trail's
// append-only trigger is back after the backfill.
func TestAuditUpgradeConnKey(t *testing.T) {
	const before = 19 // the first migration the old database lacks
	path := filepath.Join(t.TempDir(), "db")
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	exec := func(query string, args ...any) {
		t.Helper()
		if _, err := old.ExecContext(ctx, query, args...); err != nil {
			t.Fatalf("%.60s: %v", query, err)
		}
	}
	exec(`CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT`)
	for _, v := range embeddedVersions(t) {
		if v >= before {
			continue
		}
		files, err := filepath.Glob(fmt.Sprintf("migrations/%04d_*.sql", v))
		if err != nil || len(files) != 1 {
			t.Fatalf("migration %d: %v, %v", v, files, err)
		}
		b, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		exec(string(b))
		exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)`, v)
	}
	// Later in time but stored first: the listing goes by id.
	exec(`INSERT INTO audit_records (version, at, action, app_id, connection_id, request_id, outcome) VALUES
		(1, 2000, 'token.vend', 'a', 'c1', 'r1', 'ok'), (1, 1000, 'token.vend', 'a', 'c2', 'r2', 'ok')`)
	exec(`INSERT INTO audit_records (version, at, action, app_id, connection_id, rest) VALUES
		(1, 1500, 'token.vend', 'a', 'c1', '["api_key","k","l","192.0.2.1","ua","r3","POST","/v1/connections/{id}/token",200,0,"ok","",{}]')`)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	db := openDB(t, path)
	defer db.Close()
	checkMigrations(t, path)
	recs, err := db.AuditRecords(ctx, spotoken.AuditFilter{AppID: "a", ConnectionID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].RequestID != "r1" || recs[1].RequestID != "r3" || recs[1].ClientIP != "192.0.2.1" {
		t.Fatalf("a/c1 after the upgrade: %+v; want r1 then r3", recs)
	}
	if recs, err = db.AuditRecords(ctx, spotoken.AuditFilter{AppID: "a", ConnectionID: "c2"}); err != nil || len(recs) != 1 || recs[0].RequestID != "r2" {
		t.Fatalf("a/c2 after the upgrade: %+v, %v; want r2", recs, err)
	}
	// New records of the same connection join the old ones.
	if err := db.AppendAudit(ctx, spotoken.AuditRecord{Action: spotoken.AuditTokenVend, AppID: "a", ConnectionID: "c1", RequestID: "r4"}); err != nil {
		t.Fatal(err)
	}
	if recs, err = db.AuditRecords(ctx, spotoken.AuditFilter{AppID: "a", ConnectionID: "c1", Newest: true}); err != nil || len(recs) != 3 || recs[0].RequestID != "r4" {
		t.Fatalf("a/c1 newest first: %+v, %v; want r4 first of 3", recs, err)
	}

	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var zero int
	if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM audit_records WHERE conn_key = 0`).Scan(&zero); err != nil || zero != 0 {
		t.Errorf("records without a connection key after the upgrade: %d, %v", zero, err)
	}
	if _, err := raw.ExecContext(ctx, `UPDATE audit_records SET outcome = 'forged'`); err == nil {
		t.Error("audit records can be updated after migration 0019: the append-only trigger is gone")
	}
}
