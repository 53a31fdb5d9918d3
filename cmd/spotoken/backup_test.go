package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/sqlite"
)

// TestBinaryBackupUnderWriteLoad: 'spotoken backup', run as its own process
// while writers in this one rotate the tokens of 200 connections as fast as
// the database takes them, writes a copy that, restored as docs/deploy.md
// says (stop the writers, delete -wal and -shm, copy the backup into place),
// passes PRAGMA integrity_check and holds every rotation committed before
// the backup started, each token still opening with the key file.
func TestBinaryBackupUnderWriteLoad(t *testing.T) {
	spotokenBinary(t)
	dir := t.TempDir()
	dbPath, keyPath := filepath.Join(dir, "spotoken.db"), filepath.Join(dir, "spotoken.keys")
	ring, err := seal.GenerateKeyFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: dbPath, Keys: ring})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.CreateApp(ctx, &spotoken.App{ID: "a", ClientID: "c", RedirectURIs: []string{"https://b.example/callback"}}); err != nil {
		t.Fatal(err)
	}
	const writers, perWriter = 4, 50
	key := func(w, i int) spotoken.ConnectionKey {
		return spotoken.ConnectionKey{AppID: "a", ID: fmt.Sprintf("c%d-%d", w, i)}
	}
	refreshToken := func(w, i int, seq int64) spotoken.Secret {
		return spotoken.Secret(fmt.Sprintf("rt-%d-%d-%d", w, i, seq))
	}
	for w := range writers {
		for i := range perWriter {
			c := &spotoken.Connection{AppID: "a", ID: key(w, i).ID, State: spotoken.StateActive, CreatedAt: time.Now(),
				Token: spotoken.Token{AccessToken: "at", RefreshToken: refreshToken(w, i, 0), Expiry: time.Now().Add(time.Hour)}}
			if err := store.CreateConnection(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
	}

	// committed[w][i] is the last rotation of connection (w, i) whose commit
	// has returned: a lower bound of what the database holds.
	committed := make([][]atomic.Int64, writers)
	for w := range committed {
		committed[w] = make([]atomic.Int64, perWriter)
	}
	var total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				i := n % perWriter
				seq := committed[w][i].Load() + 1
				_, err := store.UpdateConnection(ctx, key(w, i), func(c *spotoken.Connection) ([]spotoken.Event, error) {
					c.Token.RefreshToken = refreshToken(w, i, seq)
					c.Token.AccessToken = spotoken.Secret(fmt.Sprintf("at-%d", seq))
					return nil, nil
				})
				if err != nil {
					t.Errorf("rotate %s: %v", key(w, i), err)
					return
				}
				committed[w][i].Store(seq)
				total.Add(1)
			}
		}()
	}
	snapshot := func() [][]int64 {
		out := make([][]int64, writers)
		for w := range out {
			out[w] = make([]int64, perWriter)
			for i := range out[w] {
				out[w][i] = committed[w][i].Load()
			}
		}
		return out
	}

	// Back up until one backup overlapped commits (most do; a backup of a
	// small file can be quicker than one commit).
	backup := filepath.Join(dir, "backup.db")
	var before [][]int64
	for attempt := 0; ; attempt++ {
		os.Remove(backup)
		before = snapshot()
		n := total.Load()
		stdout, stderr, code := runSpotoken(t, nil, "", "backup", "--db", dbPath, "--to", backup)
		if code != 0 {
			t.Fatalf("backup: exit %d\n%s%s", code, stdout, stderr)
		}
		if during := total.Load() - n; during > 0 {
			t.Logf("backup attempt %d: %d rotations committed while it ran; %s", attempt, during, strings.TrimSpace(stdout))
			break
		}
		if attempt == 20 {
			t.Fatal("no rotation was committed during any of 20 backups: the writers are not writing")
		}
	}
	// The writers go on a little after the backup, then stop: the server is
	// stopped for the restore.
	for n := total.Load(); total.Load() < n+100; {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	final := snapshot()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	// Refused without --force; replaced with it.
	if _, stderr, code := runSpotoken(t, nil, "", "backup", "--db", dbPath, "--to", backup); code != exitFailure || !strings.Contains(stderr, "already exists") {
		t.Errorf("backup onto an existing file: exit %d, stderr %s", code, stderr)
	}

	// Restore, as docs/deploy.md says: stopped; -wal and -shm deleted; the
	// backup copied into place.
	for _, f := range []string{dbPath, dbPath + "-wal", dbPath + "-shm"} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	copyFile(t, backup, dbPath)

	raw, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var check string
	if err := raw.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check of the restored database: %q, %v", check, err)
	}
	raw.Close()

	restored, err := sqlite.Open(ctx, sqlite.Config{Path: dbPath, Keys: ring})
	if err != nil {
		t.Fatalf("open the restored database: %v", err)
	}
	defer restored.Close()
	newer := 0
	for w := range writers {
		for i := range perWriter {
			c, err := restored.Connection(ctx, key(w, i))
			if err != nil {
				t.Fatalf("restored %s: %v", key(w, i), err)
			}
			var gw, gi int
			var seq int64
			if _, err := fmt.Sscanf(c.Token.RefreshToken.Reveal(), "rt-%d-%d-%d", &gw, &gi, &seq); err != nil || gw != w || gi != i {
				t.Fatalf("restored %s holds refresh token %q", key(w, i), c.Token.RefreshToken.Reveal())
			}
			if seq < before[w][i] || seq > final[w][i] {
				t.Errorf("restored %s at rotation %d; committed before the backup: %d, at the end: %d", key(w, i), seq, before[w][i], final[w][i])
			}
			if seq > before[w][i] {
				newer++
			}
		}
	}
	t.Logf("%d rotations in all; %d connections restored at a rotation committed while the backup started", total.Load(), newer)

	// The CLI works on the restored database.
	if out, stderr, code := runSpotoken(t, nil, "", "connections", "list", "--app", "a", "--db", dbPath, "--key-file", keyPath, "--limit", "500"); code != 0 ||
		strings.Count(out, "\n") != writers*perWriter+1 {
		t.Errorf("connections list on the restored database: exit %d, %d lines\n%s", code, strings.Count(out, "\n"), stderr)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
