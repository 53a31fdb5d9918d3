package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/rowseal"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/sqlite"
	"github.com/spotoken/spotoken/storetest"
)

var ctx = context.Background()

// backend is one database file for the conformance suite.
type backend struct{ path string }

func newBackend(t *testing.T) storetest.Backend {
	return &backend{path: filepath.Join(t.TempDir(), "spotoken.db")}
}

// conformanceIndexEvery is the conformance suite's AuditIndexEvery: small,
// so that the suite's audit listings find groups both in the index by
// connection and in the tail waiting for it.
const conformanceIndexEvery = 50

func (b *backend) Open(t *testing.T, now func() time.Time, keys *seal.KeyRing) (spotoken.Store, error) {
	return sqlite.Open(ctx, sqlite.Config{Path: b.path, Keys: keys, Now: now, AuditIndexEvery: conformanceIndexEvery})
}

// Dump reads the database file and its write-ahead log and shared-memory
// index, byte for byte.
func (b *backend) Dump(t *testing.T) []byte {
	return readFiles(t, b.path)
}

func (b *backend) CopyTokens(t *testing.T, from, to spotoken.ConnectionKey) {
	t.Helper()
	res, err := rawDB(t, b.path).ExecContext(ctx, `UPDATE connections SET (access_token, refresh_token) =
		(SELECT access_token, refresh_token FROM connections WHERE app_id = ? AND id = ?) WHERE app_id = ? AND id = ?`,
		from.AppID, from.ID, to.AppID, to.ID)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("copy tokens: %d rows, %v", n, err)
	}
}

func (b *backend) CorruptTokens(t *testing.T, key spotoken.ConnectionKey) {
	t.Helper()
	db := rawDB(t, b.path)
	var rt []byte
	if err := db.QueryRowContext(ctx, `SELECT refresh_token FROM connections WHERE app_id = ? AND id = ?`, key.AppID, key.ID).Scan(&rt); err != nil || len(rt) == 0 {
		t.Fatalf("read refresh token: %d bytes, %v", len(rt), err)
	}
	rt[len(rt)-1] ^= 1 // a bit of the GCM tag
	if _, err := db.ExecContext(ctx, `UPDATE connections SET refresh_token = ? WHERE app_id = ? AND id = ?`, rt, key.AppID, key.ID); err != nil {
		t.Fatalf("corrupt refresh token: %v", err)
	}
}

// appSecretColumn checks that column is a sealed column of apps.
func appSecretColumn(t *testing.T, column string) string {
	t.Helper()
	switch column {
	case "client_secret", "webhook_secret", "previous_client_secret", "previous_webhook_secret":
	default:
		t.Fatalf("apps has no sealed column %q", column)
	}
	return column
}

func (b *backend) AppCiphertext(t *testing.T, id, column string) []byte {
	t.Helper()
	var ct []byte
	if err := rawDB(t, b.path).QueryRowContext(ctx, `SELECT `+appSecretColumn(t, column)+` FROM apps WHERE id = ?`, id).Scan(&ct); err != nil {
		t.Fatalf("read apps.%s of %s: %v", column, id, err)
	}
	return ct
}

func (b *backend) SetAppCiphertext(t *testing.T, id, column string, ct []byte) {
	t.Helper()
	var arg any
	if len(ct) > 0 {
		arg = ct
	}
	res, err := rawDB(t, b.path).ExecContext(ctx, `UPDATE apps SET `+appSecretColumn(t, column)+` = ? WHERE id = ?`, arg, id)
	if err != nil {
		t.Fatalf("write apps.%s of %s: %v", column, id, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("write apps.%s of %s: %d rows", column, id, n)
	}
}

// webSessionColumn checks that column is a column of web_sessions.
func webSessionColumn(t *testing.T, column string) string {
	t.Helper()
	switch column {
	case "csrf", "data", "scope", "app_id", "subject":
		return column
	}
	t.Fatalf("web_sessions has no column %q to tamper with", column)
	return ""
}

func (b *backend) WebSessionColumn(t *testing.T, idHash [32]byte, column string) any {
	t.Helper()
	var v any
	if err := rawDB(t, b.path).QueryRowContext(ctx, `SELECT `+webSessionColumn(t, column)+` FROM web_sessions WHERE id_hash = ?`,
		idHash[:]).Scan(&v); err != nil {
		t.Fatalf("read web_sessions.%s: %v", column, err)
	}
	return v
}

func (b *backend) SetWebSessionColumn(t *testing.T, idHash [32]byte, column string, value any) {
	t.Helper()
	res, err := rawDB(t, b.path).ExecContext(ctx, `UPDATE web_sessions SET `+webSessionColumn(t, column)+` = ? WHERE id_hash = ?`,
		value, idHash[:])
	if err != nil {
		t.Fatalf("write web_sessions.%s: %v", column, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("write web_sessions.%s: %d rows", column, n)
	}
}

// rawDB opens the database file bypassing the store, closed at the test's end.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// readFiles returns the bytes of the database file, its -wal and its -shm.
func readFiles(t *testing.T, path string) []byte {
	t.Helper()
	var all []byte
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

func TestConformance(t *testing.T) {
	storetest.Run(t, newBackend)
}

func testRing(t testing.TB) *seal.KeyRing {
	t.Helper()
	r, err := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{0x5a, 0x11, 0x7e}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func openDB(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(ctx, sqlite.Config{Path: path, Keys: testRing(t)})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return db
}

// embeddedVersions returns the versions of the migration files.
func embeddedVersions(t *testing.T) []int {
	t.Helper()
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migration files: %v, %v", files, err)
	}
	var vs []int
	for _, f := range files {
		num, _, _ := strings.Cut(filepath.Base(f), "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			t.Fatalf("migration %s: %v", f, err)
		}
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs
}

// checkMigrations checks that schema_migrations holds each version once.
func checkMigrations(t *testing.T, path string) {
	t.Helper()
	rows, err := rawDB(t, path).QueryContext(ctx, `SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []int
	for rows.Next() {
		var v, n int
		if err := rows.Scan(&v, &n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("version %d recorded %d times", v, n)
		}
		got = append(got, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(got, embeddedVersions(t)); d != "" {
		t.Errorf("schema_migrations versions (-got +want):\n%s", d)
	}
}

func TestMigrations(t *testing.T) {
	t.Run("reopen", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		for i := 0; i < 2; i++ {
			if err := openDB(t, path).Close(); err != nil {
				t.Fatal(err)
			}
		}
		checkMigrations(t, path)
	})
	// Each Open has its own connections, so to SQLite these openers are as
	// separate as processes: they race to create the file, switch it to
	// WAL and migrate it.
	t.Run("concurrent", func(t *testing.T) {
		for round := range 10 {
			path := filepath.Join(t.TempDir(), "db")
			const openers = 8
			var wg sync.WaitGroup
			errs := make([]error, openers)
			for i := range openers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					db, err := sqlite.Open(ctx, sqlite.Config{Path: path, Keys: testRing(t)})
					if err == nil {
						err = db.Close()
					}
					errs[i] = err
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("round %d, opener %d: %v", round, i, err)
				}
			}
			checkMigrations(t, path)
		}
	})
	t.Run("newer schema", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		if err := openDB(t, path).Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := rawDB(t, path).ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (999999, 0)`); err != nil {
			t.Fatal(err)
		}
		if db, err := sqlite.Open(ctx, sqlite.Config{Path: path, Keys: testRing(t)}); err == nil {
			db.Close()
			t.Error("Open accepted a database migrated by a newer program")
		}
	})
}

// upgrade closes old, the database oldDatabase made at path, and opens it
// with the store, which migrates it; it checks the migrations recorded.
func upgrade(t *testing.T, old *sql.DB, path string) *sqlite.DB {
	t.Helper()
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, path)
	t.Cleanup(func() { db.Close() })
	checkMigrations(t, path)
	return db
}

// oldDatabase makes at path the database of a spotoken whose newest
// migration is the one before version before, with the older migration
// files themselves; exec runs a statement on it or fails the test.
func oldDatabase(t *testing.T, path string, before int) (old *sql.DB, exec func(query string, args ...any)) {
	t.Helper()
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	exec = func(query string, args ...any) {
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
	return old, exec
}

// TestUpgradeKeepsLastUse upgrades a database from before migration 0018,
// whose connections held last_used_at: each connection's last use moves to
// connection_uses (none for a connection never used), DueUsed answers as
// it did, and deleting a connection or an app takes its use along.
func TestUpgradeKeepsLastUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	old, exec := oldDatabase(t, path, 18)
	exec(`INSERT INTO apps (id, client_id, created_at, updated_at) VALUES ('a', 'cid-a', 1, 1), ('b', 'cid-b', 1, 1)`)
	now := time.Now()
	exp := now.Add(time.Minute).UnixMicro()
	recent, long := now.Add(-time.Minute).UnixMicro(), now.Add(-48*time.Hour).UnixMicro()
	exec(`INSERT INTO connections (app_id, id, state, version, access_expires_at, created_at, updated_at, last_used_at) VALUES
		('a', 'recent', 'active', 1, ?1, 1, 1, ?2), ('a', 'long', 'active', 1, ?1, 1, 1, ?3),
		('a', 'never', 'active', 1, ?1, 1, 1, NULL), ('b', 'recent', 'active', 1, ?1, 1, 1, ?2)`, exp, recent, long)
	db := upgrade(t, old, path)
	raw := rawDB(t, path)
	uses := map[string]int64{}
	rows, err := raw.QueryContext(ctx, `SELECT app_id || '/' || id, last_used_at FROM connection_uses`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var at int64
		if err := rows.Scan(&k, &at); err != nil {
			t.Fatal(err)
		}
		uses[k] = at
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]int64{"a/recent": recent, "a/long": long, "b/recent": recent}, uses); d != "" {
		t.Errorf("connection_uses after the upgrade (-want +got):\n%s", d)
	}
	due := func() []string {
		t.Helper()
		got, err := db.DueUsed(ctx, spotoken.DueQuery{Before: now.Add(time.Hour), UsedSince: now.Add(-time.Hour), Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, d := range got {
			keys = append(keys, d.Key.String())
		}
		return keys
	}
	if d := cmp.Diff([]string{"a/recent", "b/recent"}, due()); d != "" {
		t.Errorf("DueUsed after the upgrade (-want +got):\n%s", d)
	}
	if err := db.DeleteConnection(ctx, spotoken.ConnectionKey{AppID: "a", ID: "recent"}); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteApp(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM connection_uses`).Scan(&n); err != nil || n != 1 {
		t.Errorf("connection_uses after deleting a connection and an app: %d rows, %v; want 1 (a/long)", n, err)
	}
}

// TestUpgrade opens a database that a spotoken without migration 0003 wrote
// (its schema made by the older migration files themselves, with data in
// it): Open upgrades it, everything stored reads back, apps have no webhook
// secret until one is set, and CountConnections counts the old rows.
func TestUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	old, exec := oldDatabase(t, path, 3) // 3: the first migration the old database lacks
	defer old.Close()
	secret, err := rowseal.New(testRing(t)).Seal(rowseal.AppSecret("a"), "client-secret-a")
	if err != nil {
		t.Fatal(err)
	}
	exec(`INSERT INTO apps (id, client_id, client_secret, created_at, updated_at) VALUES ('a', 'cid-a', ?, 1, 1), ('b', 'cid-b', NULL, 1, 1)`, secret)
	exec(`INSERT INTO connections (app_id, id, state, version, created_at, updated_at) VALUES
		('a', 'c1', 'active', 1, 1, 1), ('a', 'c2', 'revoked', 1, 1, 1), ('a', 'c3', 'active', 1, 1, 1), ('b', 'c1', 'needs_reauth', 1, 1, 1)`)
	db := upgrade(t, old, path)
	apps, err := db.Apps(ctx)
	if err != nil || len(apps) != 2 {
		t.Fatalf("Apps after the upgrade: %v, %v", apps, err)
	}
	if apps[0].ClientSecret != "client-secret-a" || apps[0].WebhookSecret != "" || apps[1].ClientSecret != "" || apps[1].WebhookSecret != "" {
		t.Errorf("apps after the upgrade: %+v, %+v", apps[0], apps[1])
	}
	counts, err := db.CountConnections(ctx)
	want := []spotoken.ConnectionCount{{AppID: "a", State: spotoken.StateActive, Count: 2}, {AppID: "a", State: spotoken.StateRevoked, Count: 1},
		{AppID: "b", State: spotoken.StateNeedsReauth, Count: 1}}
	if d := cmp.Diff(counts, want); err != nil || d != "" {
		t.Errorf("CountConnections after the upgrade: %v (-got +want):\n%s", err, d)
	}
	if _, err := db.UpdateApp(ctx, "a", func(a *spotoken.App) error { a.WebhookSecret = "whsec_upgraded"; return nil }); err != nil {
		t.Fatal(err)
	}
	if a, err := db.App(ctx, "a"); err != nil || a.WebhookSecret != "whsec_upgraded" || a.ClientSecret != "client-secret-a" {
		t.Errorf("app a with a webhook secret: %+v, %v", a, err)
	}
}

func TestOpenConfig(t *testing.T) {
	if _, err := sqlite.Open(ctx, sqlite.Config{Keys: testRing(t)}); err == nil {
		t.Error("Open without a path succeeded")
	}
	if _, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "db")}); err == nil {
		t.Error("Open without keys succeeded")
	}
	// A file name with characters that mean something in a URI.
	path := filepath.Join(t.TempDir(), "a dir?x=1#frag%20", "spotoken.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, path)
	defer db.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not created at its path: %v", err)
	}
}

// TestPragmas checks the settings every connection relies on.
func TestPragmas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openDB(t, path)
	defer db.Close()
	var mode string
	if err := rawDB(t, path).QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func seedConnections(t *testing.T, db *sqlite.DB, n int) {
	t.Helper()
	if err := db.CreateApp(ctx, &spotoken.App{ID: "a", ClientID: "cid"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range n {
		state := spotoken.StateActive
		if i%3 == 0 {
			state = spotoken.StateNeedsReauth
		}
		c := &spotoken.Connection{AppID: "a", ID: fmt.Sprint("c", i), State: state,
			Token: spotoken.Token{AccessToken: "at", RefreshToken: "rt", Expiry: now.Add(time.Duration(i) * time.Minute)}}
		if err := db.CreateConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
}

// queryPlan returns SQLite's plan for query, one step a line.
func queryPlan(t *testing.T, db *sql.DB, query string, args ...any) string {
	t.Helper()
	rows, err := db.QueryContext(ctx, `EXPLAIN QUERY PLAN `+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notUsed int
		var detail string
		if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}

// TestCountQueryPlan checks that CountConnections scans the covering index
// connections_app_state, already in GROUP BY order: no table read (so no
// token), no sort.
func TestCountQueryPlan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openDB(t, path)
	defer db.Close()
	seedConnections(t, db, 50)
	raw := rawDB(t, path)
	for _, analyzed := range []bool{false, true} {
		if analyzed {
			if _, err := raw.ExecContext(ctx, `ANALYZE`); err != nil {
				t.Fatal(err)
			}
		}
		plan := queryPlan(t, raw, sqlite.CountQuery)
		if plan != "SCAN connections USING COVERING INDEX connections_app_state" {
			t.Errorf("CountConnections' plan (analyzed: %v):\n%s\nwant only a scan of the covering index connections_app_state", analyzed, plan)
		}
	}
	counts, err := db.CountConnections(ctx)
	want := []spotoken.ConnectionCount{{AppID: "a", State: spotoken.StateActive, Count: 33}, {AppID: "a", State: spotoken.StateNeedsReauth, Count: 17}}
	if d := cmp.Diff(counts, want); err != nil || d != "" {
		t.Errorf("CountConnections: %v (-got +want):\n%s", err, d)
	}
}

// TestQueryPlans: the scheduler's and the janitor's queries read their
// covering index (no token column), with no scan and no sort, before and
// after ANALYZE; DueUsed's looks each candidate up in connection_uses by
// its primary key.
func TestQueryPlans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openDB(t, path)
	defer db.Close()
	seedConnections(t, db, 50)
	raw := rawDB(t, path)
	now := time.Now()
	for _, analyzed := range []bool{false, true} {
		if analyzed {
			if _, err := raw.ExecContext(ctx, `ANALYZE`); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range []struct {
			name, query string
			want        []string // steps the plan must have
			args        []any
		}{
			{"Due", sqlite.DueQuery, []string{"SEARCH connections USING COVERING INDEX connections_due"},
				[]any{now.Add(time.Hour).UnixMicro(), now.UnixMicro(), 10}},
			{"DueUsed", sqlite.DueUsedQuery, []string{"SEARCH c USING COVERING INDEX connections_due", "SEARCH u USING PRIMARY KEY (app_id=? AND id=?)"},
				[]any{int64(math.MinInt64), "", "", now.Add(time.Hour).UnixMicro(), now.UnixMicro(), now.Add(-time.Hour).UnixMicro(), 10}},
			{"ExpiringGrants", sqlite.ExpiringQuery, []string{"SEARCH connections USING COVERING INDEX connections_unwarned"},
				[]any{now.Add(200 * 24 * time.Hour).UnixMicro(), 10}},
		} {
			joined := queryPlan(t, raw, q.query, q.args...)
			ok := !strings.Contains(joined, "SCAN") && !strings.Contains(joined, "TEMP B-TREE")
			for _, w := range q.want {
				ok = ok && strings.Contains(joined, w)
			}
			if !ok {
				t.Errorf("%s's plan (analyzed: %v):\n%s\nwant %q, no scan, no sort", q.name, analyzed, joined, q.want)
			}
		}
	}
	due, err := db.Due(ctx, time.Now().Add(time.Hour), 100)
	if err != nil || len(due) == 0 {
		t.Fatalf("Due = %v, %v", due, err)
	}
}

// sealed reads a connection's ciphertexts straight from the file.
func sealed(t *testing.T, path string, key spotoken.ConnectionKey) (access, refresh []byte) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close() // now, so that the store's Close is the last and checkpoints
	if err := db.QueryRowContext(ctx, `SELECT access_token, refresh_token FROM connections WHERE app_id = ? AND id = ?`,
		key.AppID, key.ID).Scan(&access, &refresh); err != nil || len(access) == 0 || len(refresh) == 0 {
		t.Fatalf("read ciphertexts of %s: %v", key, err)
	}
	return access, refresh
}

// TestSecureDelete checks crypto-shredding: the ciphertexts of a deleted
// connection and of a revoked one's tokens are nowhere in the files right
// after the call, while the store and another connection are still open; a
// rotated token's old ciphertexts are gone once the store is closed.
func TestSecureDelete(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openDB(t, path)
	defer db.Close()
	if err := db.CreateApp(ctx, &spotoken.App{ID: "a", ClientID: "cid"}); err != nil {
		t.Fatal(err)
	}
	keys := map[string]spotoken.ConnectionKey{}
	cts := map[string][][]byte{}
	for _, id := range []string{"deleted", "revoked", "rotated", "kept"} {
		c := &spotoken.Connection{AppID: "a", ID: id, State: spotoken.StateActive,
			Token: spotoken.Token{AccessToken: spotoken.Secret("at-" + id), RefreshToken: spotoken.Secret("rt-" + id), Expiry: time.Now()}}
		if err := db.CreateConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
		keys[id] = c.Key()
		a, r := sealed(t, path, c.Key())
		cts[id] = [][]byte{a, r}
	}
	other := rawDB(t, path) // another connection, idle
	if err := other.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(when string, gone ...string) {
		t.Helper()
		raw := readFiles(t, path)
		for _, ct := range cts["kept"] {
			if !bytes.Contains(raw, ct) {
				t.Fatalf("%s: the kept connection's ciphertexts are not in the files: the search proves nothing", when)
			}
		}
		for _, id := range gone {
			for i, ct := range cts[id] {
				if bytes.Contains(raw, ct) {
					t.Errorf("%s: ciphertext %d of %s is still in the database files", when, i, id)
				}
			}
		}
	}

	if err := db.DeleteConnection(ctx, keys["deleted"]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpdateConnection(ctx, keys["revoked"], func(c *spotoken.Connection) ([]spotoken.Event, error) {
		c.State, c.Token = spotoken.StateRevoked, spotoken.Token{}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpdateConnection(ctx, keys["rotated"], func(c *spotoken.Connection) ([]spotoken.Event, error) {
		c.Token.AccessToken, c.Token.RefreshToken = "at-rotated-2", "rt-rotated-2"
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	check("store open", "deleted", "revoked")
	other.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	check("store closed", "deleted", "revoked", "rotated")
}

// TestUpdateKeepsUnchangedCiphertext: a token that fn leaves alone is not
// re-sealed.
func TestUpdateKeepsUnchangedCiphertext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openDB(t, path)
	defer db.Close()
	seedConnections(t, db, 2)
	key := spotoken.ConnectionKey{AppID: "a", ID: "c1"}
	a1, r1 := sealed(t, path, key)
	if _, err := db.UpdateConnection(ctx, key, func(c *spotoken.Connection) ([]spotoken.Event, error) {
		c.Token.AccessToken = "at-2"
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	a2, r2 := sealed(t, path, key)
	if bytes.Equal(a1, a2) || !bytes.Equal(r1, r2) {
		t.Errorf("access changed: %v (want true), refresh changed: %v (want false)", !bytes.Equal(a1, a2), !bytes.Equal(r1, r2))
	}
}

func TestErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openDB(t, path)
	defer db.Close()
	seedConnections(t, db, 1)
	err := db.CreateApp(ctx, &spotoken.App{ID: "a", ClientID: "x"})
	if !errors.Is(err, spotoken.ErrConflict) || spotoken.ErrorMessage(err) != `app "a" already exists` {
		t.Errorf("duplicate app: %v (message %q)", err, spotoken.ErrorMessage(err))
	}
	err = db.CreateConnection(ctx, &spotoken.Connection{AppID: "a", ID: "x", State: "bogus"})
	if spotoken.ErrorCode(err) != spotoken.EInvalid {
		t.Errorf("bogus state: %v", err)
	}
	_, err = db.Connections(ctx, spotoken.ConnectionFilter{})
	if spotoken.ErrorCode(err) != spotoken.EInvalid {
		t.Errorf("filter without app: %v", err)
	}
	err = db.CreatePending(ctx, &spotoken.PendingAuthorization{AppID: "a", ConnectionID: "c"})
	if spotoken.ErrorCode(err) != spotoken.EInvalid {
		t.Errorf("pending without expiry: %v", err)
	}
	_, err = db.RenewLease(ctx, spotoken.ConnectionKey{AppID: "a", ID: "nope"}, "o", time.Minute)
	if !errors.Is(err, spotoken.ErrNotFound) {
		t.Errorf("renew on unknown connection: %v", err)
	}
	if err := db.TouchAPIKey(ctx, "nope", time.Now()); !errors.Is(err, spotoken.ErrNotFound) {
		t.Errorf("touch unknown key: %v", err)
	}
}

// TestReady: ready once open; not when the schema is behind this build or
// the database is closed.
func TestReady(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openDB(t, path)
	if err := db.Ready(ctx); err != nil {
		t.Fatalf("Ready after Open: %v", err)
	}
	if _, err := rawDB(t, path).ExecContext(ctx, "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)"); err != nil {
		t.Fatal(err)
	}
	if err := db.Ready(ctx); err == nil {
		t.Fatal("Ready with the last migration missing = nil")
	}
	db.Close()
	if err := db.Ready(ctx); err == nil {
		t.Fatal("Ready after Close = nil")
	}
}

// TestUpgradeIndexesAudit opens a database written before migration 0019:
// the groups already stored are copied into the index by connection and
// none waits in the tail, and a connection's listing finds them with those
// written after the upgrade, which wait in the tail.
func TestUpgradeIndexesAudit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	old, exec := oldDatabase(t, path, 19)
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	body := func(at time.Time, req string) string {
		return fmt.Sprintf(`[[1,%d,"token.vend",["api_key","key_1","svc","192.0.2.7","ua","%s","POST","/v1/token",200,0,"ok","fp",{}]]]`, at.UnixMicro(), req)
	}
	for _, g := range []struct {
		id        int64
		conn, req string
		at        time.Time
	}{{1, "c1", "r1", t0}, {2, "c2", "r2", t0.Add(time.Second)}, {4, "c1", "r3", t0.Add(2 * time.Second)}} {
		exec(`INSERT INTO audit_groups (id, app_id, connection_id, first_at, last_at, n, body) VALUES (?, 'a', ?, ?, ?, 1, ?)`,
			g.id, g.conn, g.at.UnixMicro(), g.at.UnixMicro(), body(g.at, g.req))
	}
	exec(`INSERT INTO sqlite_sequence (name, seq) VALUES ('audit_records', 4)`)
	db := upgrade(t, old, path)
	raw := rawDB(t, path)
	var entries, indexed int64
	if err := raw.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM audit_group_index), (SELECT indexed_id FROM audit_index_state)`).Scan(&entries, &indexed); err != nil {
		t.Fatal(err)
	}
	if entries != 3 || indexed != 4 {
		t.Errorf("after the upgrade: %d index entries, indexed_id %d; want 3 and 4", entries, indexed)
	}
	if err := db.AppendAudit(ctx, spotoken.AuditRecord{At: t0.Add(3 * time.Second), Action: spotoken.AuditTokenVend, AppID: "a", ConnectionID: "c1", RequestID: "r4"}); err != nil {
		t.Fatal(err)
	}
	for _, newest := range []bool{false, true} {
		recs, err := db.AuditRecords(ctx, spotoken.AuditFilter{AppID: "a", ConnectionID: "c1", Newest: newest, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range recs {
			got = append(got, fmt.Sprint(r.RequestID, "@", r.ID))
		}
		want := []string{"r1@1", "r3@4", "r4@5"}
		if newest {
			slices.Reverse(want)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("c1's records after the upgrade, newest first %v (-want +got):\n%s", newest, d)
		}
	}
}
