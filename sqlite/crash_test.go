//go:build unix

package sqlite_test

import (
	"bufio"
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/sqlite"
)

// crashEnv names the database file to TestCrashChild, run by TestCrash in a
// child process.
const crashEnv = "SPOTOKEN_SQLITE_CRASH_CHILD_DB"

var crashKey = spotoken.ConnectionKey{AppID: "app", ID: "conn"}

// crashTokens are the tokens of rotation n, which the connection holds at
// version n+1.
func crashTokens(n int64) (access, refresh spotoken.Secret) {
	return spotoken.Secret(fmt.Sprint("at-", n)), spotoken.Secret(fmt.Sprint("rt-", n))
}

// TestCrashChild is the child of TestCrash: it rotates the connection's
// tokens in a loop and prints "committed <n>" after each commit of rotation
// n, until it is killed.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("the child process of TestCrash")
	}
	db, err := sqlite.Open(ctx, sqlite.Config{Path: path, Keys: testRing(t)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	for range 1_000_000 { // a bound, should the parent never kill us
		c, err := db.UpdateConnection(ctx, crashKey, func(c *spotoken.Connection) ([]spotoken.Event, error) {
			n := c.Version // the new version is n+1: rotation n
			c.Token.AccessToken, c.Token.RefreshToken = crashTokens(n)
			c.Token.Expiry = time.Now().Add(time.Hour)
			c.LastRefreshAt = time.Now()
			return []spotoken.Event{{Type: spotoken.EventConnectionRotated, AppID: c.AppID, ConnectionID: c.ID,
				Data: []byte(fmt.Sprintf(`{"n":%d}`, n))}}, nil
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "update:", err)
			os.Exit(3)
		}
		// Written straight to the pipe, unbuffered, after the commit.
		fmt.Printf("committed %d\n", c.Version-1)
	}
	os.Exit(4)
}

// TestCrash kills a process with SIGKILL in the middle of a stream of
// token rotations, 25 times, on one database file, and checks each time
// that the database opens cleanly, passes integrity_check, and holds every
// rotation the process reported committed.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 25 processes")
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	db := openDB(t, path)
	if err := db.CreateApp(ctx, &spotoken.App{ID: crashKey.AppID, ClientID: "cid"}); err != nil {
		t.Fatal(err)
	}
	at, rt := crashTokens(0)
	if err := db.CreateConnection(ctx, &spotoken.Connection{AppID: crashKey.AppID, ID: crashKey.ID, State: spotoken.StateActive,
		Token: spotoken.Token{AccessToken: at, RefreshToken: rt, Expiry: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	var stored int64 // the rotation the database held after the previous crash
	for run := range 25 {
		killAfter := 1 + rng.IntN(200)
		reported := crashChild(t, "TestCrashChild", path, killAfter)
		if reported < stored+int64(killAfter) {
			t.Fatalf("run %d: child reported rotation %d, want at least %d", run, reported, stored+int64(killAfter))
		}

		db := openDB(t, path)
		if check := integrityCheck(t, path); check != "ok" {
			t.Fatalf("run %d: integrity_check = %q", run, check)
		}
		c, err := db.Connection(ctx, crashKey)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		stored = c.Version - 1
		// The child commits, then reports: at most one commit is unreported.
		if stored < reported || stored > reported+1 {
			t.Fatalf("run %d: killed after reporting rotation %d, the database holds rotation %d", run, reported, stored)
		}
		if wantAT, wantRT := crashTokens(stored); c.Token.AccessToken != wantAT || c.Token.RefreshToken != wantRT {
			t.Fatalf("run %d: version %d holds tokens of another rotation", run, c.Version)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("run %d: killed after %d lines, reported %d, stored %d", run, killAfter, reported, stored)
	}
}

// integrityCheck returns PRAGMA integrity_check's verdict on path.
func integrityCheck(t *testing.T, path string) string {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var lines []string
	rows, err := raw.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// crashChild runs the test child (TestCrashChild, TestAuditIndexCrashChild)
// on path, kills it with SIGKILL once it has reported killAfter commits,
// and returns the last commit it reported.
func crashChild(t *testing.T, child, path string, killAfter int) int64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+child+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var last int64 = -1
	var lines, other []string
	killed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() { // to EOF: lines written before the kill landed count too
		line := sc.Text()
		s, ok := strings.CutPrefix(line, "committed ")
		n, err := strconv.ParseInt(s, 10, 64)
		if !ok || err != nil {
			other = append(other, line)
			continue
		}
		if last >= 0 && n != last+1 {
			t.Errorf("child reported rotation %d after %d", n, last)
		}
		last = n
		lines = append(lines, line)
		if len(lines) == killAfter && !killed {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			killed = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !killed || !errors.As(err, &exit) {
		t.Fatalf("child ended by itself after %d commits (%v)\nstdout: %q\nstderr: %s", len(lines), err, other, stderr.Bytes())
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, not by SIGKILL\nstderr: %s", err, stderr.Bytes())
	}
	return last
}

// auditCrashConns is how many connections each of TestAuditIndexCrashChild's
// batches holds a record of.
const auditCrashConns = 20

// openAuditCrash opens the store of TestAuditIndexCrash: a tail of 40
// groups, two batches, so that the store's goroutine indexes all along.
func openAuditCrash(t *testing.T, path string) (*sqlite.DB, error) {
	return sqlite.Open(ctx, sqlite.Config{Path: path, Keys: testRing(t), AuditIndexEvery: 40})
}

// auditCrashListing returns connection conn's request ids, oldest first.
func auditCrashListing(db *sqlite.DB, conn string) ([]string, error) {
	var ids []string
	f := spotoken.AuditFilter{AppID: "app", ConnectionID: conn, Limit: spotoken.MaxPage}
	for {
		recs, err := db.AuditRecords(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			ids = append(ids, r.RequestID)
		}
		if len(recs) < f.Limit {
			return ids, nil
		}
		f.After = spotoken.AuditCursor{At: recs[len(recs)-1].At, ID: recs[len(recs)-1].ID}
	}
}

// TestAuditIndexCrashChild is the child of TestAuditIndexCrash: it goes on
// from the batches already stored, appending batch n (a record for each
// connection, request ids b<n>c<c>) and printing "committed <n>" after
// each, while the store indexes in the background, until it is killed.
func TestAuditIndexCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" || os.Getenv(auditCrashEnv) == "" {
		t.Skip("the child process of TestAuditIndexCrash")
	}
	db, err := openAuditCrash(t, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	stored, err := auditCrashListing(db, "c0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "list:", err)
		os.Exit(3)
	}
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for n := len(stored); n < 1_000_000; n++ { // a bound, should the parent never kill us
		batch := make([]spotoken.AuditRecord, auditCrashConns)
		for c := range batch {
			batch[c] = spotoken.AuditRecord{At: t0.Add(time.Duration(n) * 2 * time.Second), Action: spotoken.AuditTokenVend,
				AppID: "app", ConnectionID: fmt.Sprint("c", c), RequestID: fmt.Sprint("b", n, "c", c)}
		}
		if err := db.AppendAudit(ctx, batch...); err != nil {
			fmt.Fprintln(os.Stderr, "append:", err)
			os.Exit(3)
		}
		fmt.Printf("committed %d\n", n)
	}
	os.Exit(4)
}

// auditCrashEnv tells a child to be TestAuditIndexCrashChild.
const auditCrashEnv = "SPOTOKEN_SQLITE_AUDIT_CRASH_CHILD"

// TestAuditIndexCrash kills a process with SIGKILL while it writes audit
// batches and its store indexes them (an indexing may be cut short at any
// point), 8 times, on one file; each time the file passes
// integrity_check, every connection's listing holds each batch reported
// committed exactly once and in order (and the same batches for every
// connection: a batch is one transaction), and no index entry outlives
// its group.
func TestAuditIndexCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes")
	}
	path := filepath.Join(t.TempDir(), "audit-crash.db")
	t.Setenv(auditCrashEnv, "1")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for run := range 8 {
		killAfter := 5 + rng.IntN(60)
		reported := crashChild(t, "TestAuditIndexCrashChild", path, killAfter)
		if check := integrityCheck(t, path); check != "ok" {
			t.Fatalf("run %d: integrity_check = %q", run, check)
		}
		db, err := openAuditCrash(t, path)
		if err != nil {
			t.Fatal(err)
		}
		var batches int
		for c := range auditCrashConns {
			conn := fmt.Sprint("c", c)
			ids, err := auditCrashListing(db, conn)
			if err != nil {
				t.Fatal(err)
			}
			if c == 0 {
				batches = len(ids)
				// The child commits, then reports: at most one commit is
				// unreported.
				if int64(batches) < reported+1 || int64(batches) > reported+2 {
					t.Fatalf("run %d: killed after reporting batch %d, %s lists %d batches", run, reported, conn, batches)
				}
			}
			want := make([]string, batches)
			for n := range want {
				want[n] = fmt.Sprint("b", n, conn)
			}
			if !slices.Equal(ids, want) {
				t.Fatalf("run %d: %s lists %v; want b0..b%d, each once", run, conn, ids, batches-1)
			}
		}
		var orphans int
		if err := rawDB(t, path).QueryRowContext(ctx, `SELECT count(*) FROM audit_group_index x
			WHERE NOT EXISTS (SELECT 1 FROM audit_groups g WHERE g.id = x.id)`).Scan(&orphans); err != nil || orphans != 0 {
			t.Fatalf("run %d: %d index entries without their group, %v", run, orphans, err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("run %d: killed after %d lines, reported batch %d, %d stored", run, killAfter, reported, batches)
	}
}
