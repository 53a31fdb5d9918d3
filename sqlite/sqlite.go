// Package sqlite implements spotoken's stores on SQLite through
// modernc.org/sqlite (pure Go, no cgo): the embedded default store, one file
// on one machine.
//
// # Connections
//
// A DB holds two pools on one database file. Every write goes through a
// writer pool of exactly one connection whose transactions begin with BEGIN
// IMMEDIATE, so writers in this process queue in database/sql and writers in
// other processes wait on SQLite's write lock (busy_timeout) instead of
// failing with SQLITE_BUSY halfway through a transaction. Reads go through a
// separate pool of query_only connections; in WAL mode they read a committed
// snapshot and never block the writer, nor it them. Connection, the read of
// every vend the refresh engine's memory does not answer, has query_only
// connections of its own, used through SQLite's C API (see pointReader).
//
// # Pragmas
//
//   - journal_mode=WAL: readers and the writer do not block each other, and
//     a commit is one append to the log. The file keeps the setting; Open
//     sets it (see DB.enableWAL).
//   - synchronous=FULL: the log is synced on every commit. NORMAL is
//     durable against a crashed process but may lose the last commits on a
//     power cut, and a lost commit here can be a rotated refresh token
//     whose predecessor Spotify has already invalidated: the user would
//     have to consent again. A refresh's commit (which also gives up its
//     lease) is one fsync. Two kinds of write set NORMAL for their own
//     transaction and put FULL back: the lease writes (take, renew,
//     release; see DB.writeLease: a lease lost in a power cut belonged to
//     a process that died with it) and the audit trail's batches.
//
// # One writer, callers first
//
// Writes wait for the one writer connection at a gate (writerGate) that
// lets those a caller waits for go first, and the background's
// (spotoken.Background: the scheduler's refreshes, batched last uses, the
// audit trail) after them, never more than eight callers' writes in a row
// ahead of a waiting background one. See writer.go.
//   - foreign_keys=ON: deleting an app cascades to its API keys, pending
//     authorizations and connections.
//   - secure_delete=ON: SQLite overwrites deleted and replaced content with
//     zeros, so the ciphertext of a deleted connection or a rotated token
//     does not linger in free pages of the file (crypto-shredding). The
//     write-ahead log still holds older copies of changed pages until a
//     checkpoint, so deleting a connection or an app, emptying a
//     connection's tokens, and Reseal also checkpoint and truncate the log
//     (best effort: see DB.shred); a token replaced by a refresh leaves the
//     log at the next automatic checkpoint, and every copy leaves it when
//     the last connection closes.
//   - busy_timeout=10s: how long to wait for another process's write lock.
//   - cache_size: each connection's page cache (Config.CacheSize, default
//     2 MiB, about SQLite's own). The cache fills as pages are read or
//     written and is the process's own memory: up to CacheSize per
//     connection, two writers (the pool's, and the audit trail's batches'),
//     the readers and the point readers (4 or more of each). 16 MiB held more of a million connections' pages but
//     showed no gain a vend could measure, and cost 116 MB more RSS
//     (docs/BENCHMARKS.md), so the default stays small.
//   - mmap_size: how much of the file is read through a memory map instead
//     of read system calls (Config.MmapSize, default 0: none). Mapped pages
//     are the kernel's page cache, shared by every connection and process
//     and reclaimable, but they count in the process's RSS as they are
//     touched, up to the smaller of the file and MmapSize, and each
//     connection maps the file on its own; see docs/storage.md.
//
// # Schema
//
// The schema lives in migrations/NNNN_name.sql, embedded in the binary and
// applied in version order by Open, each once, recorded in schema_migrations.
// Tables: apps, api_keys, pending_authorizations, connections and events; see
// migrations/0001_init.sql. Times are INTEGER unix microseconds in UTC, NULL
// for the zero time.Time, so the stores keep microseconds. Secrets are sealed
// by internal/rowseal, bound to their table, column and row, and stored as
// BLOBs, NULL when empty. Scopes are stored space-separated; other lists as
// JSON arrays.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/listing"
	"github.com/spotoken/spotoken/internal/rowseal"
	"github.com/spotoken/spotoken/seal"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

var _ spotoken.Store = (*DB)(nil)

// Config configures Open.
type Config struct {
	// Path is the database file; it is created if missing. Its -wal and
	// -shm companions live beside it.
	Path string
	// Keys seals and opens the secrets.
	Keys *seal.KeyRing
	// Now is the store's clock (CreatedAt, UpdatedAt, lease and backoff
	// checks); nil means time.Now.
	Now func() time.Time
	// CacheSize is each connection's page cache in bytes (PRAGMA
	// cache_size); zero means DefaultCacheSize. See the package
	// documentation for what it costs.
	CacheSize int64
	// MmapSize is how many bytes of the file are read through a memory
	// map (PRAGMA mmap_size); zero means none, the default.
	MmapSize int64
	// ListTimeout bounds each listing (Connections, FindConnections,
	// BrowseConnections, Events, AuditRecords); past it the listing fails
	// with spotoken.EQueryTimeout. Zero means listing.DefaultTimeout (2s).
	ListTimeout time.Duration
	// AuditIndexEvery is how many of the audit trail's groups (a group is
	// a run of one connection's records within a second) wait, indexed by
	// id only, before a goroutine of the store copies them into the index
	// by connection in key order (migration 0019). More makes the trail
	// cheaper to write with many connections, and a connection's audit
	// listing read more: it looks through the waiting groups' ids. Zero
	// means DefaultAuditIndexEvery.
	AuditIndexEvery int

	// manualIndex leaves the indexing to the package's tests, which call
	// indexAuditTail themselves.
	manualIndex bool
}

// DefaultAuditIndexEvery is Config.AuditIndexEvery when it is zero: a
// connection's listing then looks through at most about 4 MB of the
// waiting groups' index, and a sweep of a million connections writes each
// leaf of the index by connection a few times an hour rather than once a
// record (docs/BENCHMARKS.md).
const DefaultAuditIndexEvery = 65536

// DefaultCacheSize is each connection's page cache when Config.CacheSize
// is zero: 2 MiB.
const DefaultCacheSize = 2 << 20

// DB is spotoken's store on one SQLite database file. It implements
// spotoken.Store and is safe for concurrent use by many goroutines, and by
// several processes on one machine.
type DB struct {
	w     *sql.DB    // exactly one connection: every write
	gate  writerGate // in front of w: callers' writes first (see writer.go)
	r     *sql.DB    // query_only connections: every read
	codec *rowseal.Codec
	clock func() time.Time
	// auditInsert is fullAuditInsert prepared on w's one connection, so a
	// write transaction reuses it.
	auditInsert *sql.Stmt
	// auditW writes the trail's batches on a connection of its own
	// (auditwrite.go), through the gate.
	auditW *auditWriter
	// stmts are the hot statements, prepared once (see prepare).
	stmts statements
	// point reads one connection by key (Connection) on connections of
	// its own, outside database/sql.
	point       *pointReader
	listTimeout time.Duration
	// auditTail counts the trail's groups not yet in the index by
	// connection, as this process knows them (auditgroups.go); at
	// auditIndexEvery, AppendAudit indexes them.
	auditTail       atomic.Int64
	auditIndexEvery int64
	// The indexing goroutine (auditindex.go): AppendAudit wakes it.
	indexWake chan struct{}
	indexStop context.CancelFunc
	indexDone chan struct{}
}

// busyTimeout is how long, in milliseconds, a connection waits for another
// process's lock before failing with SQLITE_BUSY.
const busyTimeout = 10000

// Open opens (creating if needed) the database at cfg.Path, brings its
// schema up to date and returns the store. Close it when done.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if cfg.Path == "" {
		return nil, errors.New("sqlite: open: no database path")
	}
	if cfg.Keys == nil {
		return nil, errors.New("sqlite: open: no key ring")
	}
	// A new database file is readable by its owner alone; SQLite gives
	// the -wal and -shm files it makes the database file's permissions.
	if f, err := os.OpenFile(cfg.Path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("sqlite: create %s: %w", cfg.Path, err)
	}
	if cfg.CacheSize < 0 || cfg.MmapSize < 0 || cfg.ListTimeout < 0 || cfg.AuditIndexEvery < 0 {
		return nil, errors.New("sqlite: open: negative cache size, mmap size, list timeout or audit index batch")
	}
	db := &DB{codec: rowseal.New(cfg.Keys), clock: cfg.Now, listTimeout: cfg.ListTimeout, auditIndexEvery: int64(cfg.AuditIndexEvery)}
	if db.auditIndexEvery == 0 {
		db.auditIndexEvery = DefaultAuditIndexEvery
	}
	if db.clock == nil {
		db.clock = time.Now
	}
	if db.listTimeout == 0 {
		db.listTimeout = listing.DefaultTimeout
	}
	cacheSize := cfg.CacheSize
	if cacheSize == 0 {
		cacheSize = DefaultCacheSize
	}

	// SQLite decodes a file: URI's path, so escape it (a '?' or '%' in a
	// file name must not start the query or an escape).
	name := "file:" + (&url.URL{Path: cfg.Path}).EscapedPath()
	// A negative cache_size is in KiB.
	// The settings of every connection, as the driver's DSN and as
	// statements (the audit writer's connection, auditwrite.go).
	var common, pragmas string
	for i, p := range [][2]string{{"busy_timeout", strconv.Itoa(busyTimeout)}, {"foreign_keys", "1"}, {"secure_delete", "1"},
		{"cache_size", "-" + strconv.FormatInt(max(1, cacheSize>>10), 10)}, {"mmap_size", strconv.FormatInt(cfg.MmapSize, 10)}} {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		common += sep + "_pragma=" + p[0] + "(" + p[1] + ")"
		pragmas += "PRAGMA " + p[0] + " = " + p[1] + "; "
	}
	var err error
	if db.w, err = sql.Open("sqlite", name+common+"&_pragma=synchronous(FULL)&_txlock=immediate"); err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	db.w.SetMaxOpenConns(1)
	db.w.SetMaxIdleConns(1)

	if err := db.enableWAL(ctx); err != nil {
		db.w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", cfg.Path, err)
	}
	if err := db.migrate(ctx); err != nil {
		db.w.Close()
		return nil, fmt.Errorf("sqlite: migrate %s: %w", cfg.Path, err)
	}
	if err := db.checkKeys(ctx); err != nil {
		db.w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", cfg.Path, err)
	}
	if err := db.countAuditTail(ctx); err != nil {
		db.w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", cfg.Path, err)
	}
	if db.auditInsert, err = db.w.PrepareContext(ctx, fullAuditInsert); err != nil {
		db.w.Close()
		return nil, fmt.Errorf("sqlite: open %s: prepare: %w", cfg.Path, err)
	}
	if db.auditW, err = openAuditWriter(cfg.Path, pragmas); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: audit writer: %w", cfg.Path, err)
	}

	// Readers open after the writer has made the file WAL and migrated it.
	if db.r, err = sql.Open("sqlite", name+common+"&_pragma=query_only(1)"); err != nil {
		db.w.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	db.r.SetMaxOpenConns(n)
	db.r.SetMaxIdleConns(n)
	if err := db.r.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", cfg.Path, err)
	}
	if err := db.prepare(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: prepare: %w", cfg.Path, err)
	}
	if db.point, err = openPointReader(cfg.Path, n, cacheSize, cfg.MmapSize); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", cfg.Path, err)
	}
	if !cfg.manualIndex {
		db.startIndexer()
		db.askIndex(0) // a tail an earlier process left
	}
	return db, nil
}

// Close closes the database. The last connection to close checkpoints the
// write-ahead log into the file and removes it.
func (db *DB) Close() error {
	db.stopIndexer()
	var errs []error
	if db.auditW != nil {
		db.gate.enter(context.Background(), false) // not while a batch is written
		errs = append(errs, db.auditW.close())
		db.gate.leave()
	}
	if db.auditInsert != nil {
		errs = append(errs, db.auditInsert.Close())
	}
	errs = append(errs, db.stmts.close())
	if db.point != nil {
		errs = append(errs, db.point.close())
	}
	if db.r != nil {
		errs = append(errs, db.r.Close())
	}
	if db.w != nil {
		errs = append(errs, db.w.Close())
	}
	return errors.Join(errs...)
}

// enableWAL puts the database file in WAL mode, a setting the file keeps,
// and checks that it took (a file system without shared memory support
// would keep the rollback journal). This is done once here rather than in
// the DSN of every connection because the switch needs an exclusive lock
// and SQLite answers SQLITE_BUSY at once, without waiting out busy_timeout,
// when another connection holds any lock, as when two processes create the
// file together. So it retries, for as long as the busy timeout, with a
// short backoff.
func (db *DB) enableWAL(ctx context.Context) error {
	deadline := time.Now().Add(busyTimeout * time.Millisecond)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		var mode string
		err := db.w.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		if err == nil {
			if !strings.EqualFold(mode, "wal") {
				return fmt.Errorf("journal mode is %q, want wal", mode)
			}
			return nil
		}
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return fmt.Errorf("set journal mode: %w", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// migration is one embedded schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order. A file is
// named NNNN_description.sql; versions are unique.
func migrations() ([]migration, error) {
	files, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, f := range files {
		base := path.Base(f)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive version and '_'", base)
		}
		b, err := migrationFS.ReadFile(f)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s have one version", ms[i-1].name, ms[i].name)
		}
	}
	return ms, nil
}

// migrate applies the migrations not yet applied, in one immediate
// transaction: a second process opening the same file at once waits for the
// first, then finds the versions applied and applies nothing.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	return db.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER NOT NULL PRIMARY KEY,
			applied_at INTEGER NOT NULL
		) STRICT`); err != nil {
			return err
		}
		applied := map[int]bool{}
		rows, err := tx.QueryContext(ctx, "SELECT version FROM schema_migrations")
		if err != nil {
			return err
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return err
			}
			applied[v] = true
		}
		if err := rows.Close(); err != nil {
			return err
		}
		known := map[int]bool{}
		for _, m := range ms {
			known[m.version] = true
		}
		for v := range applied {
			if !known[v] {
				return fmt.Errorf("the database has schema version %d, which this program does not know: it is newer", v)
			}
		}
		for _, m := range ms {
			if applied[m.version] {
				continue
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
				m.version, db.now().UnixMicro()); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
		}
		return nil
	})
}

// now returns the store's clock in UTC at the precision the store keeps.
func (db *DB) now() time.Time { return stored(db.clock()) }

// shred checkpoints the write-ahead log into the database file and
// truncates it, so that the log's copies of pages that held erased
// ciphertexts go too (secure_delete has zeroed them in the current pages).
// Callers run it after a commit that erased a secret. It is best effort: a
// reader still on an older snapshot can hold the truncation off for up to
// the busy timeout, after which the erasure stands committed all the same
// and a later checkpoint finishes the job.
func (db *DB) shred(ctx context.Context) {
	if db.gate.enter(ctx, spotoken.IsBackground(ctx)) != nil {
		return
	}
	defer db.gate.leave()
	var busy, log, done int
	_ = db.w.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &log, &done)
}

// queryer is what reads need of a *sql.DB or a *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// execer is what writes need of a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// translate maps a constraint violation, by its extended result code, to
// the domain error it means: a duplicate key to ErrConflict with the message
// conflict, a dangling reference to ErrNotFound with the message missing, a
// failed CHECK or NOT NULL to EInvalid. Empty messages get generic ones. The
// driver's error stays in the chain for the log. Other errors are returned
// unchanged.
func translate(err error, conflict, missing string) error {
	var se interface{ Code() int } // *sqlite.Error, or cError of the C API
	if !errors.As(err, &se) {
		return err
	}
	if conflict == "" {
		conflict = "already exists"
	}
	if missing == "" {
		missing = "not found"
	}
	var domain *spotoken.Error
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		domain = &spotoken.Error{Code: spotoken.EConflict, Message: conflict}
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		domain = &spotoken.Error{Code: spotoken.ENotFound, Message: missing}
	case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_NOTNULL:
		domain = &spotoken.Error{Code: spotoken.EInvalid, Message: "invalid value"}
	default:
		return err
	}
	return fmt.Errorf("%w: %w", domain, err)
}

// affected returns how many rows res changed.
func affected(res sql.Result) (int64, error) {
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("rows affected: %w", err)
	}
	return n, nil
}

// timeArg is t as stored: unix microseconds, NULL for the zero time.
func timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// stored returns t as the store gives it back: the same instant to the
// microsecond, in UTC; the zero time stays zero.
func stored(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMicro(t.UnixMicro()).UTC()
}

// timeCol scans a stored time into t: NULL gives the zero time.
type timeCol struct{ t *time.Time }

// Scan implements sql.Scanner.
func (c timeCol) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*c.t = time.Time{}
	case int64:
		*c.t = time.UnixMicro(v).UTC()
	default:
		return fmt.Errorf("time column holds %T, want an integer", v)
	}
	return nil
}

// blobArg is b as stored: NULL when empty.
func blobArg(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// scopesArg is s as stored: space-separated.
func scopesArg(s spotoken.Scopes) string { return s.String() }

// scopesCol scans stored scopes into s: nil when none.
type scopesCol struct{ s *spotoken.Scopes }

// Scan implements sql.Scanner.
func (c scopesCol) Scan(v any) error {
	str, ok := v.(string)
	if !ok {
		return fmt.Errorf("scopes column holds %T, want text", v)
	}
	if f := strings.Fields(str); len(f) > 0 {
		*c.s = f
	} else {
		*c.s = nil
	}
	return nil
}

// listArg is l as stored: a JSON array.
func listArg(l []string) (string, error) {
	if len(l) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(l)
	return string(b), err
}

// listCol scans a stored JSON array into l: nil when empty.
type listCol struct{ l *[]string }

// Scan implements sql.Scanner.
func (c listCol) Scan(v any) error {
	str, ok := v.(string)
	if !ok {
		return fmt.Errorf("list column holds %T, want text", v)
	}
	var l []string
	if err := json.Unmarshal([]byte(str), &l); err != nil {
		return fmt.Errorf("list column: %w", err)
	}
	if len(l) == 0 {
		l = nil
	}
	*c.l = l
	return nil
}

// nullString scans a nullable text column into s: NULL gives "".
type nullString struct{ s *string }

// Scan implements sql.Scanner.
func (c nullString) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*c.s = ""
	case string:
		*c.s = v
	default:
		return fmt.Errorf("text column holds %T", v)
	}
	return nil
}

// hashCol scans a 32-byte hash.
type hashCol struct{ h *[32]byte }

// Scan implements sql.Scanner.
func (c hashCol) Scan(v any) error {
	b, ok := v.([]byte)
	if !ok || len(b) != len(c.h) {
		return fmt.Errorf("hash column holds %T of %d bytes, want 32 bytes", v, len(b))
	}
	copy(c.h[:], b)
	return nil
}

// Ready reports whether the database answers and has every migration this
// build embeds applied: for a readiness probe.
func (db *DB) Ready(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	var v sql.NullInt64
	if err := db.r.QueryRowContext(ctx, "SELECT max(version) FROM schema_migrations").Scan(&v); err != nil {
		return fmt.Errorf("sqlite: ready: %w", err)
	}
	if want := ms[len(ms)-1].version; int(v.Int64) < want {
		return fmt.Errorf("sqlite: ready: schema version %d, want %d", v.Int64, want)
	}
	return nil
}
