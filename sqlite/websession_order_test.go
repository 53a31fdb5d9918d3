package sqlite_test

import (
	"crypto/sha256"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/sqlite"
)

// TestWebSessionStampedWhenStored: a session that waits for the write lock
// is stamped when it is stored, not when it began to wait, so the cap's
// eviction (which keeps the sessions that end last) keeps the latest
// sign-ins. Stamped before the wait, a sign-in held up behind others (the
// single writer connection goes to a random waiter) would look older than
// sessions stored before it and be evicted first: the cause of
// cmd/spotoken's TestBinaryDashboardSessionCapPerApp failing now and then.
func TestWebSessionStampedWhenStored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	keys, _ := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{7}}}, 1)
	var mu sync.Mutex
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	store, err := sqlite.Open(ctx, sqlite.Config{Path: path, Keys: keys, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	// Another process holds the write lock.
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	conn, err := raw.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	s := &spotoken.WebSession{IDHash: sha256.Sum256([]byte("waiting")), Scope: "admin", Subject: "adm_1",
		CSRF: "csrf", IdleTimeout: time.Hour, ExpiresAt: now.Add(12 * time.Hour)}
	done := make(chan error)
	go func() {
		_, err := store.CreateWebSession(ctx, s, spotoken.WebSessionLimits{PerScope: 2})
		done <- err
	}()
	// Let the sign-in begin and wait for the lock (were it stamped before
	// the wait, it would be now), then move the clock on and let it in.
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	now = now.Add(time.Minute)
	stored := now
	mu.Unlock()
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !s.CreatedAt.Equal(stored) {
		t.Errorf("CreatedAt %v, want %v: the time it was stored, after waiting for the lock", s.CreatedAt, stored)
	}
	got, err := store.WebSession(ctx, s.IDHash)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(stored) || !got.EndsAt().Equal(stored.Add(time.Hour)) {
		t.Errorf("stored session created %v, ends %v; want %v and an hour later", got.CreatedAt, got.EndsAt(), stored)
	}
}

// TestAuditBatchKeepsWritesDurable: the trail's batches commit without
// waiting for the disk, and every other write still waits: the writer
// connection is back to synchronous=FULL after a batch, stored or refused,
// and to temp_store=DEFAULT (a batch keeps its statement journal in
// memory; other writes, some of which change many pages, do not).
func TestAuditBatchKeepsWritesDurable(t *testing.T) {
	keys, _ := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{7}}}, 1)
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "db"), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	check := func(when string) {
		t.Helper()
		if n, err := store.WriterSynchronous(); err != nil || n != 2 {
			t.Fatalf("%s: the writer's synchronous is %d (%v), want 2 (FULL)", when, n, err)
		}
		if n, err := store.WriterTempStore(); err != nil || n != 0 {
			t.Fatalf("%s: the writer's temp_store is %d (%v), want 0 (DEFAULT)", when, n, err)
		}
	}
	check("when opened")
	rec := spotoken.AuditRecord{Action: spotoken.AuditTokenVend, AppID: "a", ConnectionID: "c"}
	if err := store.AppendAudit(ctx, rec, rec); err != nil {
		t.Fatal(err)
	}
	check("after a batch")
	if err := store.AppendAudit(ctx, rec, spotoken.AuditRecord{AppID: "a"}); err == nil {
		t.Fatal("a record without action was stored")
	}
	check("after a refused batch")
}
