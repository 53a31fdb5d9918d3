package bench_test

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/rowseal"
	"github.com/spotoken/spotoken/postgres"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/sqlite"
)

// The databases of the store benchmarks: loading them in bulk, checking
// them through the stores, caching the large ones between runs.

// envPostgres holds the DSN of a PostgreSQL database for the postgres
// benchmarks, as for the postgres package's tests.
const envPostgres = "SPOTOKEN_TEST_POSTGRES"

// cacheMin is the smallest table that is cached between runs (a SQLite file
// under os.TempDir, a PostgreSQL schema); smaller ones are loaded afresh in
// every process and removed when it ends.
const cacheMin = 100_000

// sqliteTxRows is how many rows the SQLite loader inserts per transaction.
const sqliteTxRows = 20_000

// pgPoolConns sizes every PostgreSQL pool of the benchmarks, the store's
// and the raw baseline's alike.
const pgPoolConns = 4

// storeClock is the store's clock in every benchmark: fixed at refTime.
func storeClock() time.Time { return refTime }

// storeDB is one loaded database of one store, open.
type storeDB struct {
	kind  string // "sqlite" or "postgres"
	facts *tableFacts
	store spotoken.Store
	// rawUpdate is the baseline of the CAS benchmarks: one
	// UPDATE connections SET consecutive_failures = consecutive_failures + 1
	// of the row, on the same database, outside the store.
	rawUpdate func(ctx context.Context, k spotoken.ConnectionKey) error
	// path is the SQLite file; schema and dsn the PostgreSQL schema and
	// the DSN of its database (without search_path).
	path, schema, dsn string
	// where describes the database for the log.
	where  string
	closes []func() error

	// notes are log lines for the first leaf benchmark that uses the
	// fixture: the benchmark that loads it has sub-benchmarks, and testing
	// prints the log of those only with -v.
	// plan is the plan of Due's query, logged by the first limit=1 Due
	// benchmark (testing keeps only 10 lines of a benchmark's log).
	mu    sync.Mutex
	notes []string
	plan  string
}

// note keeps a log line for the next leaf benchmark that calls flushNotes.
func (f *storeDB) note(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notes = append(f.notes, fmt.Sprintf(format, args...))
}

// flushNotes logs the notes kept so far, once.
func (f *storeDB) flushNotes(b *testing.B) {
	b.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.notes {
		b.Log(n)
	}
	f.notes = nil
}

func (f *storeDB) close() error {
	var errs []error
	for _, c := range slices.Backward(f.closes) {
		errs = append(errs, c())
	}
	f.closes = nil
	return errors.Join(errs...)
}

type storeDBSlot struct {
	once sync.Once
	f    *storeDB
	err  error
}

var storeDBs = struct {
	sync.Mutex
	m map[string]*storeDBSlot
}{m: map[string]*storeDBSlot{}}

// TestMain closes the store benchmarks' databases when the benchmarks are
// done, and removes those that are not cached.
func TestMain(m *testing.M) {
	code := m.Run()
	storeDBs.Lock()
	for name, s := range storeDBs.m {
		if s.f != nil {
			if err := s.f.close(); err != nil {
				fmt.Fprintf(os.Stderr, "closing %s: %v\n", name, err)
				code = 1
			}
		}
	}
	storeDBs.Unlock()
	os.Exit(code)
}

// loadStoreDB returns the database of n rows of store kind, loading (or
// finding in the cache) and checking it the first time in this process.
func loadStoreDB(b *testing.B, kind string, n int) *storeDB {
	b.Helper()
	name := fmt.Sprintf("%s/%d", kind, n)
	storeDBs.Lock()
	s := storeDBs.m[name]
	if s == nil {
		s = &storeDBSlot{}
		storeDBs.m[name] = s
	}
	storeDBs.Unlock()
	s.once.Do(func() {
		start := time.Now()
		switch kind {
		case "sqlite":
			s.f, s.err = openSQLite(b, n)
		case "postgres":
			s.f, s.err = openPostgres(b, n)
		default:
			s.err = fmt.Errorf("unknown store %q", kind)
		}
		if s.err == nil {
			s.f.note("%s: %d connections ready in %v (%s)", name, n, time.Since(start).Round(time.Millisecond), s.f.where)
			s.f.notes = append(loadNotes, s.f.notes...)
		}
		loadNotes = nil
	})
	if s.err != nil {
		b.Fatalf("%s: %v", name, s.err)
	}
	return s.f
}

// schemaHash identifies a store's schema (its migration files) and the
// generator, for the names of cached databases.
func schemaHash(kind string, n int) (string, error) {
	files, err := filepath.Glob(filepath.Join("..", kind, "migrations", "*.sql"))
	if err != nil || len(files) == 0 {
		return "", fmt.Errorf("reading %s's migrations (run from the bench directory, as go test does): %v", kind, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "data %d, rows %d\n", dataVersion, n)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// benchApp is the app a connection block belongs to.
func benchApp(a int) *spotoken.App {
	return &spotoken.App{
		ID:            benchAppID(a),
		ClientID:      fmt.Sprintf("%032x", a+1),
		ClientSecret:  spotoken.Secret(fmt.Sprintf("bench-secret-%d", a)),
		RedirectURIs:  []string{"https://bench.example/callback"},
		DefaultScopes: benchScopeSets[0],
	}
}

// createBenchApps stores the apps through the store.
func createBenchApps(ctx context.Context, st spotoken.Store, n int) error {
	for a := range min(benchApps, n) {
		if err := st.CreateApp(ctx, benchApp(a)); err != nil {
			return err
		}
	}
	return nil
}

// sealedRow is a generated connection with its tokens sealed as the stores
// seal them (rowseal.Codec.SealToken, bound to the row).
type sealedRow struct {
	c               *spotoken.Connection
	access, refresh []byte
}

type rowChunk struct {
	rows []sealedRow
	err  error
}

// genChunkRows is how many rows a generating worker makes at a time.
const genChunkRows = 5000

// sealedRows generates and seals rows 0..n-1 with GOMAXPROCS workers and
// delivers them in order, a few chunks ahead of the consumer. Cancel ctx to
// stop it early.
func sealedRows(ctx context.Context, n int, codec *rowseal.Codec) <-chan rowChunk {
	workers := runtime.GOMAXPROCS(0)
	chunks := (n + genChunkRows - 1) / genChunkRows
	outs := make([]chan rowChunk, workers)
	for w := range outs {
		outs[w] = make(chan rowChunk, 1)
		go func() {
			defer close(outs[w])
			for k := w; k < chunks; k += workers {
				var ch rowChunk
				for i := k * genChunkRows; i < min(n, (k+1)*genChunkRows); i++ {
					c := genConnection(i, n)
					access, refresh, err := codec.SealToken(c.Key(), c.Token)
					if err != nil {
						ch.err = err
						break
					}
					ch.rows = append(ch.rows, sealedRow{c: c, access: access, refresh: refresh})
				}
				select {
				case outs[w] <- ch:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	out := make(chan rowChunk)
	go func() {
		defer close(out)
		for k := range chunks {
			ch, ok := <-outs[k%workers]
			if !ok {
				return
			}
			select {
			case out <- ch:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// sqliteTime is t for a nullable time column: unix µs, NULL for the zero time.
func sqliteTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func blobOrNil(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// connectionColumns are the columns of connections in migration 0001, in
// order; both stores have the same.
const connectionColumns = `app_id, id, spotify_user_id, display_name, scopes, state, access_token, refresh_token,
	access_expires_at, version, lease_owner, lease_expires_at, last_refresh_at, consecutive_failures,
	next_attempt_at, last_error_code, consented_at, grant_expires_at, created_at, updated_at`

var connectionColumnList = strings.Fields(strings.ReplaceAll(connectionColumns, ",", " "))

// sqliteDSN is a database/sql DSN for the SQLite file at path with the given
// pragmas and options ("&"-joined).
func sqliteDSN(path, options string) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)" + options
}

// openSQLite returns the SQLite database of n rows, from the cache when
// n >= cacheMin and it holds one, else loaded now.
func openSQLite(b *testing.B, n int) (*storeDB, error) {
	ctx := context.Background()
	facts := tableFactsFor(n)
	keys, err := benchKeys()
	if err != nil {
		return nil, err
	}
	cached := n >= cacheMin
	var path string
	var cleanup func() error
	if cached {
		h, err := schemaHash("sqlite", n)
		if err != nil {
			return nil, err
		}
		path = filepath.Join(os.TempDir(), fmt.Sprintf("spotoken-bench-sqlite-%d-%s.db", n, h))
	} else {
		dir, err := os.MkdirTemp("", "spotoken-bench-sqlite-")
		if err != nil {
			return nil, err
		}
		path = filepath.Join(dir, "bench.db")
		cleanup = func() error { return os.RemoveAll(dir) }
	}
	for attempt := 1; ; attempt++ {
		loaded := false
		if _, err := os.Stat(path); err != nil {
			if err := loadSQLite(ctx, path, n, keys); err != nil {
				if cleanup != nil {
					cleanup()
				}
				return nil, err
			}
			loaded = true
		}
		f, err := openSQLiteFixture(ctx, path, keys, facts)
		if err == nil {
			if cleanup != nil {
				f.closes = append([]func() error{cleanup}, f.closes...)
			}
			if !loaded {
				f.where += " (cached: rm " + path + " to reload)"
			}
			return f, nil
		}
		if loaded || attempt > 1 {
			if cleanup != nil {
				cleanup()
			}
			return nil, err
		}
		loadNotes = append(loadNotes, fmt.Sprintf("cached %s fails its check, reloading: %v", path, err))
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			os.Remove(p)
		}
	}
}

// openSQLiteFixture opens the store and the raw baseline on the database at
// path and checks the rows against the generator.
func openSQLiteFixture(ctx context.Context, path string, keys *seal.KeyRing, facts *tableFacts) (*storeDB, error) {
	cfg := sqlite.Config{Path: path, Keys: keys, Now: storeClock}
	var err error
	if cfg.CacheSize, cfg.MmapSize, err = sqliteSizes(); err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	f := &storeDB{kind: "sqlite", facts: facts, store: st, path: path, where: path, closes: []func() error{st.Close}}
	f.where += fmt.Sprintf(" (cache %d MiB a connection, mmap %d MiB)", cmp.Or(cfg.CacheSize, sqlite.DefaultCacheSize)>>20, cfg.MmapSize>>20)
	// The raw baseline writes as the store's writer does: one connection,
	// the store's pragmas (synchronous=FULL, secure_delete) in WAL mode.
	raw, err := sql.Open("sqlite", sqliteDSN(path, "&_pragma=secure_delete(1)&_pragma=synchronous(FULL)&_txlock=immediate"))
	if err != nil {
		f.close()
		return nil, err
	}
	raw.SetMaxOpenConns(1)
	raw.SetMaxIdleConns(1)
	f.closes = append(f.closes, raw.Close)
	f.rawUpdate = func(ctx context.Context, k spotoken.ConnectionKey) error {
		res, err := raw.ExecContext(ctx, `UPDATE connections SET consecutive_failures = consecutive_failures + 1 WHERE app_id = ? AND id = ?`, k.AppID, k.ID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("raw update of %s: %d rows, %v", k, n, err)
		}
		return nil
	}
	if err := checkStoreRows(ctx, f); err != nil {
		f.close()
		return nil, fmt.Errorf("check %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil {
		f.where += fmt.Sprintf(", %d MB", fi.Size()>>20)
	}
	return f, nil
}

// loadSQLite creates the database at path: the schema and the apps through
// the store, then n connections with one prepared INSERT in transactions of
// sqliteTxRows rows, into a temporary file renamed to path when complete.
func loadSQLite(ctx context.Context, path string, n int, keys *seal.KeyRing) error {
	start := time.Now()
	tmp := path + ".loading-" + randomSuffix()
	defer func() {
		for _, p := range []string{tmp, tmp + "-wal", tmp + "-shm"} {
			os.Remove(p)
		}
	}()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: tmp, Keys: keys, Now: storeClock})
	if err != nil {
		return err
	}
	if err := createBenchApps(ctx, st, n); err != nil {
		st.Close()
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	// Durability does not matter while loading: the file is renamed into
	// place only once complete.
	raw, err := sql.Open("sqlite", sqliteDSN(tmp, "&_pragma=synchronous(OFF)&_pragma=cache_size(-65536)"))
	if err != nil {
		return err
	}
	raw.SetMaxOpenConns(1)
	defer raw.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	insert := `INSERT INTO connections (` + connectionColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?, ?, ?, ?)`
	var tx *sql.Tx
	var stmt *sql.Stmt
	inTx := 0
	defer func() {
		if tx != nil {
			tx.Rollback()
		}
	}()
	for ch := range sealedRows(ctx, n, keysCodec(keys)) {
		if ch.err != nil {
			return ch.err
		}
		for _, r := range ch.rows {
			c := r.c
			if tx == nil {
				if tx, err = raw.BeginTx(ctx, nil); err != nil {
					return err
				}
				if stmt, err = tx.PrepareContext(ctx, insert); err != nil {
					return err
				}
			}
			if _, err := stmt.ExecContext(ctx, c.AppID, c.ID, c.SpotifyUserID, c.DisplayName, c.Scopes.String(), string(c.State),
				blobOrNil(r.access), blobOrNil(r.refresh), sqliteTime(c.Token.Expiry), c.Version,
				sqliteTime(c.LastRefreshAt), c.ConsecutiveFailures, sqliteTime(c.NextAttemptAt), c.LastErrorCode,
				sqliteTime(c.ConsentedAt), sqliteTime(c.GrantExpiresAt), c.CreatedAt.UnixMicro(), c.UpdatedAt.UnixMicro()); err != nil {
				return fmt.Errorf("insert %s: %w", c.Key(), err)
			}
			if inTx++; inTx == sqliteTxRows {
				stmt.Close()
				err := tx.Commit()
				tx, inTx = nil, 0
				if err != nil {
					return err
				}
			}
		}
	}
	if tx != nil {
		stmt.Close()
		err := tx.Commit()
		tx = nil
		if err != nil {
			return err
		}
	}
	if err := raw.Close(); err != nil { // the last connection: checkpoints and removes the log
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	logLoad("sqlite", n, start)
	return nil
}

func keysCodec(keys *seal.KeyRing) *rowseal.Codec { return rowseal.New(keys) }

// loadNotes are the notes of the load under way, for its fixture.
var loadNotes []string

// logLoad notes how long a load took and the process's memory right after it.
func logLoad(kind string, n int, start time.Time) {
	rss, hwm, _ := procMemory()
	loadNotes = append(loadNotes, fmt.Sprintf("%s: loaded %d connections in %v (VmRSS %d MB, VmHWM %d MB after loading)",
		kind, n, time.Since(start).Round(time.Millisecond), rss/1e6, hwm/1e6))
}

// pgWithParams returns a PostgreSQL DSN (URL or keyword/value) with the
// parameters kv (key, value, key, value...) set.
func pgWithParams(dsn string, kv ...string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		for i := 0; i+1 < len(kv); i += 2 {
			q.Set(kv[i], kv[i+1])
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	for i := 0; i+1 < len(kv); i += 2 {
		dsn += " " + kv[i] + "=" + kv[i+1]
	}
	return dsn
}

var skipNoted sync.Once

// benchPostgresDSN returns envPostgres, or skips the benchmark.
func benchPostgresDSN(b *testing.B) string {
	b.Helper()
	dsn := os.Getenv(envPostgres)
	if dsn == "" {
		msg := envPostgres + " is not set: skipping the PostgreSQL store benchmarks; set it to a DSN such as " +
			"postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run them"
		// testing shows why a benchmark was skipped only with -v: say it once anyway.
		skipNoted.Do(func() { fmt.Fprintln(os.Stderr, "bench: "+msg) })
		b.Skip(msg)
	}
	return dsn
}

func schemaExists(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, name).Scan(&ok)
	return ok, err
}

// openPostgres returns the PostgreSQL database of n rows in its own schema:
// spotoken_bench_<n>_<hash>, kept as a cache, when n >= cacheMin, else a
// schema dropped when the process ends.
func openPostgres(b *testing.B, n int) (*storeDB, error) {
	base := benchPostgresDSN(b)
	ctx := context.Background()
	facts := tableFactsFor(n)
	keys, err := benchKeys()
	if err != nil {
		return nil, err
	}
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		return nil, err
	}
	defer admin.Close(ctx)
	cached := n >= cacheMin
	var schema string
	if cached {
		h, err := schemaHash("postgres", n)
		if err != nil {
			return nil, err
		}
		schema = fmt.Sprintf("spotoken_bench_%d_%s", n, h)
	} else {
		schema = "spotoken_bench_tmp_" + randomSuffix()
	}
	drop := func() error {
		conn, err := pgx.Connect(context.Background(), base)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
		return err
	}
	for attempt := 1; ; attempt++ {
		exists, err := schemaExists(ctx, admin, schema)
		if err != nil {
			return nil, err
		}
		loaded := false
		if !exists {
			if err := loadPostgres(ctx, admin, base, schema, n, keys, cached); err != nil {
				return nil, err
			}
			loaded = true
		}
		f, err := openPostgresFixture(ctx, base, schema, keys, facts)
		if err == nil {
			if cached {
				if !loaded {
					f.where += " (cached: DROP SCHEMA " + schema + " CASCADE to reload)"
				}
			} else {
				f.closes = append([]func() error{drop}, f.closes...)
			}
			return f, nil
		}
		if loaded || attempt > 1 {
			if !cached {
				drop()
			}
			return nil, err
		}
		loadNotes = append(loadNotes, fmt.Sprintf("cached schema %s fails its check, reloading: %v", schema, err))
		if err := drop(); err != nil {
			return nil, err
		}
	}
}

// openPostgresFixture opens the store and the raw baseline on schema and
// checks the rows against the generator.
func openPostgresFixture(ctx context.Context, base, schema string, keys *seal.KeyRing, facts *tableFacts) (*storeDB, error) {
	poolDSN := pgWithParams(base, "search_path", schema, "pool_max_conns", fmt.Sprint(pgPoolConns))
	st, err := postgres.Open(ctx, postgres.Config{DSN: poolDSN, Keys: keys, Now: storeClock})
	if err != nil {
		return nil, err
	}
	f := &storeDB{kind: "postgres", facts: facts, store: st, schema: schema, dsn: base, where: "schema " + schema, closes: []func() error{st.Close}}
	raw, err := pgxpool.New(ctx, poolDSN)
	if err != nil {
		f.close()
		return nil, err
	}
	f.closes = append(f.closes, func() error { raw.Close(); return nil })
	f.rawUpdate = func(ctx context.Context, k spotoken.ConnectionKey) error {
		tag, err := raw.Exec(ctx, `UPDATE connections SET consecutive_failures = consecutive_failures + 1 WHERE app_id = $1 AND id = $2`, k.AppID, k.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("raw update of %s: %d rows", k, tag.RowsAffected())
		}
		return nil
	}
	if err := checkStoreRows(ctx, f); err != nil {
		f.close()
		return nil, fmt.Errorf("check schema %s: %w", schema, err)
	}
	var size int64
	if err := raw.QueryRow(ctx, `SELECT pg_total_relation_size('connections')`).Scan(&size); err == nil {
		f.where += fmt.Sprintf(", connections %d MB with indexes", size>>20)
	}
	return f, nil
}

// pgTime is t for a nullable timestamptz column: NULL for the zero time.
func pgTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// copySource feeds sealed rows to CopyFrom.
type copySource struct {
	chunks <-chan rowChunk
	rows   []sealedRow
	cur    sealedRow
	err    error
}

func (s *copySource) Next() bool {
	for len(s.rows) == 0 {
		ch, ok := <-s.chunks
		if !ok {
			return false
		}
		if ch.err != nil {
			s.err = ch.err
			return false
		}
		s.rows = ch.rows
	}
	s.cur, s.rows = s.rows[0], s.rows[1:]
	return true
}

func (s *copySource) Values() ([]any, error) {
	c := s.cur.c
	scopes := []string(c.Scopes)
	if scopes == nil {
		scopes = []string{}
	}
	return []any{c.AppID, c.ID, c.SpotifyUserID, c.DisplayName, scopes, string(c.State),
		blobOrNil(s.cur.access), blobOrNil(s.cur.refresh), pgTime(c.Token.Expiry), c.Version, nil, nil,
		pgTime(c.LastRefreshAt), int32(c.ConsecutiveFailures), pgTime(c.NextAttemptAt), c.LastErrorCode,
		pgTime(c.ConsentedAt), pgTime(c.GrantExpiresAt), c.CreatedAt, c.UpdatedAt}, nil
}

func (s *copySource) Err() error { return s.err }

// loadPostgres creates schema with n connections: the schema's tables and
// the apps through the store, then the connections with one COPY, then
// VACUUM ANALYZE, as autovacuum would soon do. A cached schema is loaded
// under another name and renamed when complete.
func loadPostgres(ctx context.Context, admin *pgx.Conn, base, schema string, n int, keys *seal.KeyRing, cached bool) error {
	start := time.Now()
	target := schema
	if cached {
		// A load interrupted earlier leaves its schema: drop it.
		rows, err := admin.Query(ctx, `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`, schema+"_load")
		if err != nil {
			return err
		}
		stale, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, s := range stale {
			if _, err := admin.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{s}.Sanitize()+` CASCADE`); err != nil {
				return err
			}
		}
		schema += "_load"
	}
	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := admin.Exec(ctx, `CREATE SCHEMA `+ident); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			admin.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+ident+` CASCADE`)
		}
	}()
	st, err := postgres.Open(ctx, postgres.Config{DSN: pgWithParams(base, "search_path", schema, "pool_max_conns", "1"), Keys: keys, Now: storeClock})
	if err != nil {
		return err
	}
	err = createBenchApps(ctx, st, n)
	st.Close()
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, pgWithParams(base, "search_path", schema))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	src := &copySource{chunks: sealedRows(ctx, n, keysCodec(keys))}
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"connections"}, connectionColumnList, src)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if copied != int64(n) {
		return fmt.Errorf("copy: %d rows copied, want %d", copied, n)
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE connections`); err != nil {
		return err
	}
	if cached {
		_, err := admin.Exec(ctx, `ALTER SCHEMA `+ident+` RENAME TO `+pgx.Identifier{target}.Sanitize())
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P06" {
			// Another process cached it first: use that one.
			err = nil
		} else if err == nil {
			ok = true
		}
		if err != nil {
			return err
		}
	} else {
		ok = true
	}
	logLoad("postgres", n, start)
	return nil
}

// checkStoreRows reads a sample of rows back through the store's own API and
// compares them with the generator, so that a loader that wrote rows the
// store cannot read (a wrong binding, a wrong column) fails here rather
// than making the benchmarks measure nothing; it checks the CAS rows open
// too, and Due's first answer.
func checkStoreRows(ctx context.Context, f *storeDB) error {
	n := f.facts.n
	for _, i := range f.facts.sample {
		want := genConnection(i, n)
		got, err := f.store.Connection(ctx, want.Key())
		if err != nil {
			return fmt.Errorf("row %d: %w", i, err)
		}
		if diff := gocmp.Diff(got, want); diff != "" {
			return fmt.Errorf("row %d (-got +want):\n%s", i, diff)
		}
	}
	for _, k := range f.facts.cas[:min(len(f.facts.cas), 64)] {
		c, err := f.store.Connection(ctx, k)
		if err != nil {
			return fmt.Errorf("cas row %s: %w", k, err)
		}
		if c.State != spotoken.StateActive || c.Token.AccessToken == "" || c.Token.RefreshToken == "" {
			return fmt.Errorf("cas row %s: state %s, tokens present: %v, %v", k, c.State, c.Token.AccessToken != "", c.Token.RefreshToken != "")
		}
	}
	return checkStoreDue(ctx, f, dueLimit)
}

// checkStoreDue checks Due(refTime+dueWindow, limit) against the generator.
func checkStoreDue(ctx context.Context, f *storeDB, limit int) error {
	due, err := f.store.Due(ctx, refTime.Add(dueWindow), limit)
	if err != nil {
		return err
	}
	want := f.facts.firstDue[:min(limit, len(f.facts.firstDue))]
	if diff := gocmp.Diff(due, want); diff != "" {
		return fmt.Errorf("Due(now+%v, %d) (-got +want):\n%s", dueWindow, limit, diff)
	}
	return nil
}

// procMemory returns the process's resident set size and its peak (VmRSS
// and VmHWM of /proc/self/status), in bytes; ok is false where there is no
// such file.
func procMemory() (rss, hwm int64, ok bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, false
	}
	var gotRSS, gotHWM bool
	for line := range strings.Lines(string(b)) {
		var kb int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			_, err := fmt.Sscanf(line, "VmRSS: %d kB", &kb)
			rss, gotRSS = kb<<10, err == nil
		case strings.HasPrefix(line, "VmHWM:"):
			_, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb)
			hwm, gotHWM = kb<<10, err == nil
		}
	}
	return rss, hwm, gotRSS && gotHWM
}

// resetPeakMemory returns the garbage of earlier work (a load, earlier
// benchmarks) to the system and resets VmHWM to the current VmRSS (Linux
// 4.0+), so that the peak read afterwards is the peak of what follows. It
// reports whether the reset took.
func resetPeakMemory() bool {
	runtime.GC()
	debug.FreeOSMemory()
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// The SQLite store's sizes in the benchmarks: SPOTOKEN_BENCH_SQLITE_CACHE_MIB
// and SPOTOKEN_BENCH_SQLITE_MMAP_MIB, as serve's --sqlite-cache-mib and
// --sqlite-mmap-mib; the store's defaults when unset.
const (
	envSQLiteCache = "SPOTOKEN_BENCH_SQLITE_CACHE_MIB"
	envSQLiteMmap  = "SPOTOKEN_BENCH_SQLITE_MMAP_MIB"
)

// sqliteSizes returns the page cache and mmap sizes, in bytes, that the
// environment asks for (zero: the store's default).
func sqliteSizes() (cache, mmap int64, err error) {
	for _, v := range []struct {
		env string
		n   *int64
	}{{envSQLiteCache, &cache}, {envSQLiteMmap, &mmap}} {
		s := os.Getenv(v.env)
		if s == "" {
			continue
		}
		mib, err := strconv.ParseInt(s, 10, 64)
		if err != nil || mib < 0 || mib > 1<<20 {
			return 0, 0, fmt.Errorf("%s=%q: want MiB from 0 to %d", v.env, s, 1<<20)
		}
		*v.n = mib << 20
	}
	return cache, mmap, nil
}
