package postgres_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken/internal/pgtest"
	"github.com/spotoken/spotoken/internal/rowseal"

	"github.com/jackc/pgx/v5"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/postgres"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/storetest"
)

// withSmallPool returns dsn with a small pool unless dsn sizes it, so that
// many parallel tests stay under the server's connection limit. Only
// pgxpool understands the parameter: a single pgx.Conn refuses it.
func withSmallPool(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		if !q.Has("pool_max_conns") {
			q.Set("pool_max_conns", "4")
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	if strings.Contains(dsn, "pool_max_conns") {
		return dsn
	}
	return dsn + " pool_max_conns=4"
}

// connect opens a single connection, closed when the test ends.
func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// testKeys is a key ring with fixed keys, the same in every process.
func testKeys(t *testing.T) *seal.KeyRing {
	t.Helper()
	r, err := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{0x5e, 0xa1, 1}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func openStore(t *testing.T, dsn string, keys *seal.KeyRing, now func() time.Time) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), postgres.Config{DSN: withSmallPool(dsn), Keys: keys, Now: now})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// backend is a storetest.Backend on a fresh schema.
type backend struct {
	dsn string
}

func (b *backend) Open(t *testing.T, now func() time.Time, keys *seal.KeyRing) (spotoken.Store, error) {
	return postgres.Open(context.Background(), postgres.Config{DSN: withSmallPool(b.dsn), Keys: keys, Now: now})
}

// Dump returns every column of every row of every table in the schema,
// byte columns raw (as they are stored, not hex) so that a plaintext secret
// in one would show.
func (b *backend) Dump(t *testing.T) []byte {
	t.Helper()
	ctx := context.Background()
	conn := connect(t, b.dsn)
	rows, err := conn.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`)
	if err != nil {
		t.Fatalf("dump: list tables: %v", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("dump: list tables: %v", err)
	}
	if len(tables) == 0 {
		t.Fatal("dump: no tables in the schema")
	}
	var buf bytes.Buffer
	for _, table := range tables {
		fmt.Fprintf(&buf, "== %s\n", table)
		rows, err := conn.Query(ctx, "SELECT * FROM "+pgx.Identifier{table}.Sanitize())
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatalf("dump %s: %v", table, err)
			}
			for _, v := range vals {
				if b, ok := v.([]byte); ok {
					buf.Write(b)
				} else {
					fmt.Fprint(&buf, v)
				}
				buf.WriteByte('|')
			}
			buf.WriteByte('\n')
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
	}
	return buf.Bytes()
}

func (b *backend) CopyTokens(t *testing.T, from, to spotoken.ConnectionKey) {
	t.Helper()
	tag, err := connect(t, b.dsn).Exec(context.Background(), `UPDATE connections dst
		SET access_token = src.access_token, refresh_token = src.refresh_token
		FROM connections src WHERE src.app_id = $1 AND src.id = $2 AND dst.app_id = $3 AND dst.id = $4`,
		from.AppID, from.ID, to.AppID, to.ID)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("copy tokens: %v, %d rows", err, tag.RowsAffected())
	}
}

func (b *backend) CorruptTokens(t *testing.T, key spotoken.ConnectionKey) {
	t.Helper()
	ctx := context.Background()
	conn := connect(t, b.dsn)
	var rt []byte
	if err := conn.QueryRow(ctx, `SELECT refresh_token FROM connections WHERE app_id = $1 AND id = $2`,
		key.AppID, key.ID).Scan(&rt); err != nil || len(rt) == 0 {
		t.Fatalf("corrupt tokens: read: %v, %d bytes", err, len(rt))
	}
	rt[len(rt)/2] ^= 0x01
	if _, err := conn.Exec(ctx, `UPDATE connections SET refresh_token = $3 WHERE app_id = $1 AND id = $2`,
		key.AppID, key.ID, rt); err != nil {
		t.Fatalf("corrupt tokens: write: %v", err)
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
	if err := connect(t, b.dsn).QueryRow(context.Background(), `SELECT `+appSecretColumn(t, column)+` FROM apps WHERE id = $1`,
		id).Scan(&ct); err != nil {
		t.Fatalf("read apps.%s of %s: %v", column, id, err)
	}
	return ct
}

func (b *backend) SetAppCiphertext(t *testing.T, id, column string, ct []byte) {
	t.Helper()
	if len(ct) == 0 {
		ct = nil // NULL
	}
	tag, err := connect(t, b.dsn).Exec(context.Background(), `UPDATE apps SET `+appSecretColumn(t, column)+` = $2 WHERE id = $1`, id, ct)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("write apps.%s of %s: %v, %d rows", column, id, err, tag.RowsAffected())
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
	if err := connect(t, b.dsn).QueryRow(context.Background(), `SELECT `+webSessionColumn(t, column)+` FROM web_sessions WHERE id_hash = $1`,
		idHash[:]).Scan(&v); err != nil {
		t.Fatalf("read web_sessions.%s: %v", column, err)
	}
	return v
}

func (b *backend) SetWebSessionColumn(t *testing.T, idHash [32]byte, column string, value any) {
	t.Helper()
	tag, err := connect(t, b.dsn).Exec(context.Background(), `UPDATE web_sessions SET `+webSessionColumn(t, column)+` = $2 WHERE id_hash = $1`,
		idHash[:], value)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("write web_sessions.%s: %v, %d rows", column, err, tag.RowsAffected())
	}
}

func TestConformance(t *testing.T) {
	pgtest.DSN(t)
	storetest.Run(t, func(t *testing.T) storetest.Backend { return &backend{dsn: pgtest.FreshSchema(t, pgtest.DSN(t), "st")} })
}

// TestMigrateConcurrently opens one fresh schema from several goroutines at
// once, as replicas starting together do: every Open succeeds and each
// migration is applied once.
func TestMigrateConcurrently(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t), "st")
	keys := testKeys(t)
	const replicas = 5
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := postgres.Open(context.Background(), postgres.Config{DSN: withSmallPool(dsn), Keys: keys})
			if err == nil {
				err = db.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Open: %v", i, err)
		}
	}
	openStore(t, dsn, keys, nil) // and once more, with nothing left to do

	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migration files: %v, %v", files, err)
	}
	var want []int32
	for _, f := range files {
		v, err := strconv.Atoi(strings.SplitN(filepath.Base(f), "_", 2)[0])
		if err != nil {
			t.Fatalf("migration file %s: %v", f, err)
		}
		want = append(want, int32(v))
	}
	slices.Sort(want)
	rows, err := connect(t, dsn).Query(context.Background(), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("schema_migrations holds versions %v, want each of %v once", got, want)
	}
}

// TestDueUsesIndex checks that the query of Due reads the connections_due
// index and does not scan the table.
func TestDueUsesIndex(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t), "st")
	ctx := context.Background()
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	db := openStore(t, dsn, testKeys(t), func() time.Time { return now })
	for _, id := range []string{"a", "b"} {
		if err := db.CreateApp(ctx, &spotoken.App{ID: id, ClientID: "client-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	conn := connect(t, dsn)
	// 5000 connections expiring a minute apart over three and a half days;
	// some not active, some in backoff.
	if _, err := conn.Exec(ctx, `INSERT INTO connections (app_id, id, state, version, access_expires_at,
			next_attempt_at, created_at, updated_at)
		SELECT CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 'c' || g,
			CASE WHEN g % 10 = 0 THEN 'needs_reauth' WHEN g % 10 = 1 THEN 'revoked' ELSE 'active' END, 1,
			$1::timestamptz + g * interval '1 minute',
			CASE WHEN g % 7 = 0 THEN $1::timestamptz + interval '1 hour' END, $1, $1
		FROM generate_series(1, 5000) AS g`, now); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `ANALYZE connections`); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "EXPLAIN "+postgres.DueSQL, now.Add(30*time.Minute), now, 100)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, "connections_due") {
		t.Errorf("Due does not read the connections_due index:\n%s", plan)
	}
	t.Logf("plan:\n%s", plan)

	due, err := db.Due(ctx, now.Add(30*time.Minute), 100)
	if err != nil {
		t.Fatal(err)
	}
	// Minutes 1..29, less the inactive (g%10 in 0, 1) and those in backoff (g%7 == 0).
	want := 0
	for g := 1; g < 30; g++ {
		if g%10 > 1 && g%7 != 0 {
			want++
		}
	}
	if len(due) != want {
		t.Errorf("Due returned %d connections, want %d", len(due), want)
	}
}

// TestCountUsesIndex checks that, on a vacuumed table, CountConnections
// reads the connections_app_state index alone, in GROUP BY order: no scan of
// the table (whose rows carry the sealed tokens) and no sort.
func TestCountUsesIndex(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t), "st")
	ctx := context.Background()
	db := openStore(t, dsn, testKeys(t), nil)
	for i := range 20 {
		if err := db.CreateApp(ctx, &spotoken.App{ID: fmt.Sprintf("app%02d", i), ClientID: "client"}); err != nil {
			t.Fatal(err)
		}
	}
	conn := connect(t, dsn)
	// 10000 connections with token-sized ciphertexts, spread over the apps
	// and states; app19 has none.
	if _, err := conn.Exec(ctx, `INSERT INTO connections (app_id, id, state, version, access_token, refresh_token,
			created_at, updated_at)
		SELECT 'app' || to_char(g % 19, 'FM00'), 'c' || g, (ARRAY['active', 'active', 'needs_reauth', 'revoked'])[g % 4 + 1], 1,
			decode(repeat('ab', 350), 'hex'), decode(repeat('cd', 170), 'hex'), now(), now()
		FROM generate_series(1, 10000) AS g`); err != nil {
		t.Fatal(err)
	}
	vacuumAllVisible(t, conn, "connections")
	rows, err := conn.Query(ctx, "EXPLAIN "+postgres.CountSQL)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Sort") || !strings.Contains(plan, "Index Only Scan using connections_app_state") {
		t.Errorf("CountConnections does not read the connections_app_state index alone:\n%s", plan)
	}
	t.Logf("plan:\n%s", plan)

	counts, err := db.CountConnections(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The same counts, worked out here: apps then states in byte order.
	n := map[spotoken.ConnectionCount]int{}
	for g := 1; g <= 10000; g++ {
		n[spotoken.ConnectionCount{AppID: fmt.Sprintf("app%02d", g%19), State: []spotoken.State{"active", "active", "needs_reauth", "revoked"}[g%4]}]++
	}
	var want []spotoken.ConnectionCount
	for k, c := range n {
		k.Count = c
		want = append(want, k)
	}
	slices.SortFunc(want, func(a, b spotoken.ConnectionCount) int {
		return cmp.Or(strings.Compare(a.AppID, b.AppID), strings.Compare(string(a.State), string(b.State)))
	})
	if !slices.Equal(counts, want) {
		t.Errorf("CountConnections = %v\nwant %v", counts, want)
	}
}

// TestUpgrade opens a schema that a spotoken without migration 0003 wrote
// (made by the older migration files themselves, with data in it): Open
// upgrades it, everything stored reads back, apps have no webhook secret
// until one is set, and CountConnections counts the old rows.
func TestUpgrade(t *testing.T) {
	const before = 3 // the first migration the old schema lacks
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t), "st")
	ctx := context.Background()
	conn := connect(t, dsn)
	exec := func(query string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, query, args...); err != nil {
			t.Fatalf("%.60s: %v", query, err)
		}
	}
	exec(`CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migration files: %v, %v", files, err)
	}
	slices.Sort(files)
	for _, f := range files {
		name := filepath.Base(f)
		v, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil {
			t.Fatalf("migration file %s: %v", f, err)
		}
		if v >= before {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		exec(string(b))
		exec(`INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, v, name)
	}
	secret, err := rowseal.New(testKeys(t)).Seal(rowseal.AppSecret("a"), "client-secret-a")
	if err != nil {
		t.Fatal(err)
	}
	exec(`INSERT INTO apps (id, client_id, client_secret, created_at, updated_at) VALUES ('a', 'cid-a', $1, now(), now()),
		('b', 'cid-b', NULL, now(), now())`, secret)
	exec(`INSERT INTO connections (app_id, id, state, version, created_at, updated_at) VALUES
		('a', 'c1', 'active', 1, now(), now()), ('a', 'c2', 'revoked', 1, now(), now()),
		('a', 'c3', 'active', 1, now(), now()), ('b', 'c1', 'needs_reauth', 1, now(), now())`)

	db := openStore(t, dsn, testKeys(t), nil)
	rows, err := conn.Query(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil || len(versions) != len(files) || int(versions[len(versions)-1]) < before {
		t.Errorf("schema_migrations after the upgrade: %v, %v; want %d versions", versions, err, len(files))
	}
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
	if err != nil || !slices.Equal(counts, want) {
		t.Errorf("CountConnections after the upgrade = %v, %v; want %v", counts, err, want)
	}
	if _, err := db.UpdateApp(ctx, "a", func(a *spotoken.App) error { a.WebhookSecret = "whsec_upgraded"; return nil }); err != nil {
		t.Fatal(err)
	}
	if a, err := db.App(ctx, "a"); err != nil || a.WebhookSecret != "whsec_upgraded" || a.ClientSecret != "client-secret-a" {
		t.Errorf("app a with a webhook secret: %+v, %v", a, err)
	}
}

// TestResealKeepsVersions checks that Reseal re-seals under the primary key
// without changing what the connections read or their versions.
func TestResealKeepsVersions(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t), "st")
	ctx := context.Background()
	k1 := seal.Key{Version: 1, Material: [32]byte{1}}
	k2 := seal.Key{Version: 2, Material: [32]byte{2}}
	ring1, err := seal.NewKeyRing([]seal.Key{k1}, 1)
	if err != nil {
		t.Fatal(err)
	}
	ring12, err := seal.NewKeyRing([]seal.Key{k1, k2}, 2)
	if err != nil {
		t.Fatal(err)
	}
	ring2, err := seal.NewKeyRing([]seal.Key{k2}, 2)
	if err != nil {
		t.Fatal(err)
	}
	old := openStore(t, dsn, ring1, nil)
	if err := old.CreateApp(ctx, &spotoken.App{ID: "a", ClientID: "c", ClientSecret: "shh"}); err != nil {
		t.Fatal(err)
	}
	var before []*spotoken.Connection
	for i := range 5 {
		c := &spotoken.Connection{AppID: "a", ID: fmt.Sprint("c", i), State: spotoken.StateActive,
			Token: spotoken.Token{AccessToken: "at", RefreshToken: spotoken.Secret(fmt.Sprint("rt-", i)), Expiry: time.Now().Add(time.Hour)}}
		if i == 3 {
			c.Token = spotoken.Token{} // no secrets to re-seal
		}
		if err := old.CreateConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
		got, err := old.Connection(ctx, c.Key())
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, got)
	}
	n, err := openStore(t, dsn, ring12, nil).Reseal(ctx, 2)
	if err != nil || n != 1+4*2 {
		t.Fatalf("Reseal = %d, %v; want %d", n, err, 1+4*2)
	}
	s2 := openStore(t, dsn, ring2, nil)
	for _, b := range before {
		got, err := s2.Connection(ctx, b.Key())
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != b.Version || got.Token != b.Token || !got.UpdatedAt.Equal(b.UpdatedAt) {
			t.Errorf("%s after Reseal: version %d, updated %v; want %d, %v and the same tokens",
				b.Key(), got.Version, got.UpdatedAt, b.Version, b.UpdatedAt)
		}
	}
	if a, err := s2.App(ctx, "a"); err != nil || a.ClientSecret != "shh" {
		t.Errorf("app after Reseal: %v", err)
	}
}

// Environment of TestLeaseChild, set by TestLeaseAcrossProcesses.
const (
	envChildDSN   = "SPOTOKEN_LEASE_CHILD_DSN"
	envChildOwner = "SPOTOKEN_LEASE_CHILD_OWNER"
	envChildOut   = "SPOTOKEN_LEASE_CHILD_OUT"
)

// leaseKey is the connection the lease processes contend for.
var leaseKey = spotoken.ConnectionKey{AppID: "a", ID: "c1"}

// TestLeaseAcrossProcesses runs TestLeaseChild in three OS processes that
// contend for one connection's lease and update the connection while they
// hold it: no update is lost, and no process sees another owner's lease
// while it holds its own.
func TestLeaseAcrossProcesses(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t), "st")
	ctx := context.Background()
	db := openStore(t, dsn, testKeys(t), nil)
	if err := db.CreateApp(ctx, &spotoken.App{ID: leaseKey.AppID, ClientID: "client"}); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateConnection(ctx, &spotoken.Connection{AppID: leaseKey.AppID, ID: leaseKey.ID, State: spotoken.StateActive,
		Token: spotoken.Token{AccessToken: "at", RefreshToken: "rt", Expiry: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}

	const procs = 3
	dir := t.TempDir()
	type child struct {
		cmd *exec.Cmd
		out bytes.Buffer
	}
	children := make([]*child, procs)
	for i := range children {
		c := &child{cmd: exec.Command(os.Args[0], "-test.run=^TestLeaseChild$", "-test.count=1", "-test.v")}
		c.cmd.Env = append(os.Environ(),
			envChildDSN+"="+dsn,
			envChildOwner+"="+fmt.Sprintf("process-%d", i),
			envChildOut+"="+filepath.Join(dir, fmt.Sprint("child-", i)))
		c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
		if err := c.cmd.Start(); err != nil {
			t.Fatalf("start child %d: %v", i, err)
		}
		children[i] = c
	}
	total := 0
	for i, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("child %d: %v\n%s", i, err, c.out.String())
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprint("child-", i)))
		if err != nil {
			t.Errorf("child %d reported nothing: %v\n%s", i, err, c.out.String())
			continue
		}
		n, err := strconv.Atoi(string(b))
		if err != nil {
			t.Errorf("child %d: %v", i, err)
			continue
		}
		t.Logf("process-%d acquired the lease %d times", i, n)
		total += n
	}
	if t.Failed() {
		return
	}
	got, err := db.Connection(ctx, leaseKey)
	if err != nil {
		t.Fatal(err)
	}
	if total == 0 || got.ConsecutiveFailures != total || got.Version != int64(total)+1 {
		t.Errorf("%d acquisitions in all; connection has %d updates and version %d, want %d and %d",
			total, got.ConsecutiveFailures, got.Version, total, total+1)
	}
	if got.Lease.Owner != "" {
		t.Errorf("lease still held by %q after every release", got.Lease.Owner)
	}
}

// TestLeaseChild is one process of TestLeaseAcrossProcesses; it skips
// unless run by it.
func TestLeaseChild(t *testing.T) {
	dsn := os.Getenv(envChildDSN)
	if dsn == "" {
		t.Skip("runs as a child process of TestLeaseAcrossProcesses")
	}
	owner, out := os.Getenv(envChildOwner), os.Getenv(envChildOut)
	ctx := context.Background()
	db := openStore(t, dsn, testKeys(t), nil)
	const rounds = 200
	acquired := 0
	for range rounds {
		lease, err := db.AcquireLease(ctx, leaseKey, owner, time.Minute)
		if errors.Is(err, spotoken.ErrLeaseHeld) {
			continue
		}
		if err != nil {
			t.Fatalf("%s: AcquireLease: %v", owner, err)
		}
		if lease.Owner != owner {
			t.Fatalf("%s got a lease owned by %q", owner, lease.Owner)
		}
		acquired++
		if _, err := db.UpdateConnection(ctx, leaseKey, func(c *spotoken.Connection) ([]spotoken.Event, error) {
			if c.Lease.Owner != owner {
				return nil, fmt.Errorf("%s holds the lease, but the row says %q does", owner, c.Lease.Owner)
			}
			c.ConsecutiveFailures++
			return nil, nil
		}); err != nil {
			t.Fatalf("%s: update under lease: %v", owner, err)
		}
		if err := db.ReleaseLease(ctx, leaseKey, owner); err != nil {
			t.Fatalf("%s: ReleaseLease: %v", owner, err)
		}
	}
	if err := os.WriteFile(out, []byte(strconv.Itoa(acquired)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReady: ready once open; not when the schema is behind this build or
// the pool is closed.
func TestReady(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t), "st")
	db := openStore(t, dsn, testKeys(t), nil)
	if err := db.Ready(context.Background()); err != nil {
		t.Fatalf("Ready after Open: %v", err)
	}
	if _, err := connect(t, dsn).Exec(context.Background(), "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)"); err != nil {
		t.Fatal(err)
	}
	if err := db.Ready(context.Background()); err == nil {
		t.Fatal("Ready with the last migration missing = nil")
	}
	db.Close()
	if err := db.Ready(context.Background()); err == nil {
		t.Fatal("Ready after Close = nil")
	}
}

// vacuumAllVisible vacuums and analyzes table until the visibility map
// marks every page all-visible, which an index-only scan's cost depends
// on. Other tests' transactions open on the same server (go test runs
// packages in parallel) can keep one VACUUM from setting it, and then the
// planner rightly prefers a sequential scan: the plan tests would fail for
// a reason that has nothing to do with the store.
func vacuumAllVisible(t *testing.T, conn *pgx.Conn, table string) {
	t.Helper()
	ctx := context.Background()
	for attempt := 0; ; attempt++ {
		if _, err := conn.Exec(ctx, "VACUUM ANALYZE "+table); err != nil {
			t.Fatal(err)
		}
		var pages, visible int64
		if err := conn.QueryRow(ctx, `SELECT relpages, relallvisible FROM pg_class WHERE oid = $1::regclass`, table).Scan(&pages, &visible); err != nil {
			t.Fatal(err)
		}
		if visible >= pages || attempt == 50 {
			if visible < pages {
				t.Logf("%s: %d of %d pages all-visible after %d vacuums", table, visible, pages, attempt+1)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
