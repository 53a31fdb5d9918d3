package audit_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/audit"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/sqlite"
)

// TestTrailKeepsRecordsWhileWriterBusy: on SQLite, while another writer
// holds the database's write lock for longer than a batch's deadline, the
// trail's batches fail and are kept, not dropped; once the lock is
// released the next pass writes every record, once, in order.
func TestTrailKeepsRecordsWhileWriterBusy(t *testing.T) {
	keys, err := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{7, 7, 7}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(memDir(t), "spotoken.db")
	store, err := sqlite.Open(ctx, sqlite.Config{Path: path, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	tr, err := audit.New(audit.Config{Store: store, BatchSize: 300})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	at := time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)
	record := func(i int) {
		tr.Record(spotoken.AuditRecord{Action: spotoken.AuditTokenVend, At: at.Add(time.Duration(i) * time.Microsecond),
			AppID: "a", ConnectionID: "c", ActorType: spotoken.ActorAPIKey, Status: 200, Outcome: "ok"})
	}
	for i := range n / 2 {
		record(i)
	}

	// Another writer (as a second process would) takes the write lock.
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	hold, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	for pass := range 3 {
		pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond) // the batch's deadline
		p, err := tr.RunOnce(pctx)
		cancel()
		if err == nil || p.Written != 0 || p.Dropped != 0 || p.Retained != n/2+pass*n/4 {
			t.Fatalf("pass %d with the writer held: %+v, %v", pass, p, err)
		}
		if pass < 2 {
			for i := range n / 4 {
				record(n/2 + pass*n/4 + i)
			}
		}
	}
	if _, err := hold.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	hold.Close()
	p, err := tr.RunOnce(ctx)
	if err != nil || p.Written != n || p.Retained != 0 {
		t.Fatalf("pass after the writer was released: %+v, %v", p, err)
	}
	if s := tr.Stats(); s.Written != n || s.DroppedQueueFull != 0 || s.DroppedWriteFailed != 0 || s.Queued != 0 {
		t.Errorf("stats: %+v", s)
	}
	recs, err := store.AuditRecords(ctx, spotoken.AuditFilter{AppID: "a", ConnectionID: "c", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n {
		t.Fatalf("%d records stored, want %d", len(recs), n)
	}
	for i, r := range recs {
		if want := at.Add(time.Duration(i) * time.Microsecond); !r.At.Equal(want) {
			t.Fatalf("record %d at %v, want %v (lost, repeated or out of order)", i, r.At, want)
		}
	}
}
