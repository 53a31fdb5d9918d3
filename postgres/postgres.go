// Package postgres implements the spotoken stores on PostgreSQL with
// github.com/jackc/pgx/v5, for several replicas sharing one database.
//
// Every secret (client and webhook secrets, access and refresh tokens, PKCE
// verifiers) is sealed by internal/rowseal before it reaches the database.
// Updates to a connection are compare-and-swap on its version inside one
// transaction; leases are taken by one conditional UPDATE, timed by the
// store's clock, so that replicas in different processes never refresh one
// connection at once.
//
// The schema is created and migrated by Open, inside a transaction holding an
// advisory lock, so replicas may start at the same time. All SQL uses
// unqualified table names: a search_path in the DSN selects the schema.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/listing"
	"github.com/spotoken/spotoken/internal/rowseal"
	"github.com/spotoken/spotoken/seal"
)

var _ spotoken.Store = (*DB)(nil)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLockClass is the first half of the advisory lock key that
// serializes migrations; the second half is a hash of the current schema, so
// that databases in different schemas migrate independently.
const migrationLockClass = 0x5370746b // "Sptk"

// PostgreSQL error codes the store reacts to
// (https://www.postgresql.org/docs/current/errcodes-appendix.html).
const (
	codeForeignKeyViolation  = "23503"
	codeUniqueViolation      = "23505"
	codeCheckViolation       = "23514"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

// maxAttempts bounds how often a read-modify-write transaction is retried
// after a serialization failure, a deadlock or a lost compare-and-swap.
const maxAttempts = 10

// Config configures a DB.
type Config struct {
	// DSN is the PostgreSQL connection string, as a URL
	// (postgres://user@host/db?sslmode=disable) or in keyword/value form.
	// It may set search_path to select the schema, and pgxpool's pool_*
	// parameters to size the connection pool.
	DSN string
	// Keys seals and opens the stored secrets; required.
	Keys *seal.KeyRing
	// Now is the store's clock, which stamps rows and times leases and
	// backoff; nil means time.Now.
	Now func() time.Time
	// ListTimeout bounds each listing (Connections, FindConnections,
	// BrowseConnections, Events, AuditRecords); past it the query is
	// cancelled and the listing fails with spotoken.EQueryTimeout. Zero
	// means listing.DefaultTimeout (2s).
	ListTimeout time.Duration
}

// DB is the PostgreSQL store: it implements spotoken.Store. It is safe for
// concurrent use by many goroutines and by many processes sharing the
// database.
type DB struct {
	pool        *pgxpool.Pool
	codec       *rowseal.Codec
	nowFunc     func() time.Time
	listTimeout time.Duration
}

// Open connects to the database of cfg.DSN, creates or migrates its schema,
// and returns the store. Call Close to release it.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if cfg.Keys == nil {
		return nil, errors.New("postgres: open: no key ring")
	}
	if cfg.ListTimeout < 0 {
		return nil, errors.New("postgres: open: negative list timeout")
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse dsn: %w", err)
	}
	// Every query is prepared once per connection and its statement kept
	// (pgx's statement cache, the default mode, named here because a
	// DSN's default_query_exec_mode could turn it off): a vend that misses
	// the engine's cache binds and executes instead of parsing and
	// planning its SELECT again.
	if pcfg.ConnConfig.DefaultQueryExecMode != pgx.QueryExecModeCacheStatement {
		return nil, fmt.Errorf("postgres: open: default_query_exec_mode %s: spotoken needs cache_statement, pgx's default", pcfg.ConnConfig.DefaultQueryExecMode)
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		// A database that accepts connections and never answers (a dead
		// host behind a live proxy) must not hold a connection attempt
		// forever; connect_timeout in the DSN overrides this.
		pcfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	db := &DB{pool: pool, codec: rowseal.New(cfg.Keys), nowFunc: cfg.Now, listTimeout: cfg.ListTimeout}
	if db.nowFunc == nil {
		db.nowFunc = time.Now
	}
	if db.listTimeout == 0 {
		db.listTimeout = listing.DefaultTimeout
	}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := db.checkKeys(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	return db, nil
}

// Close closes the store's connections.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// migration is one embedded migration file.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the embedded migrations, ordered by version. A file
// is named NNNN_description.sql; its version is NNNN.
func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive version and '_'", base)
		}
		b, err := migrations.ReadFile(name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", out[i-1].name, out[i].name, out[i].version)
		}
	}
	return out, nil
}

// migrate applies the migrations that the database lacks, in one
// transaction that holds an advisory lock for the current schema, so that
// replicas opening the store at once apply each migration exactly once.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))`, int32(migrationLockClass)); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return err
		}
		applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		for _, m := range ms {
			if slices.Contains(applied, int32(m.version)) {
				continue
			}
			// No arguments: the simple protocol runs every statement of the file.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("apply %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return fmt.Errorf("record %s: %w", m.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// now returns the store's clock in UTC, truncated to the microsecond that
// PostgreSQL keeps.
func (db *DB) now() time.Time { return norm(db.nowFunc()) }

// querier is what a pool and a transaction have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// scanner is a pgx.Row or pgx.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// pgCode returns the SQLSTATE of a PostgreSQL error in err's chain, or "".
func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// errVersionConflict reports a lost compare-and-swap; the transaction is retried.
var errVersionConflict = errors.New("version changed concurrently")

// retryable reports whether a transaction that failed with err may succeed
// if run again.
func retryable(err error) bool {
	switch pgCode(err) {
	case codeSerializationFailure, codeDeadlockDetected:
		return true
	}
	return errors.Is(err, errVersionConflict)
}

// retry runs fn until it succeeds, fails for good, or has run maxAttempts
// times, pausing briefly (with jitter) between attempts.
func retry(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || attempt == maxAttempts || !retryable(err) {
			return err
		}
		pause := time.Duration(rand.Int64N(int64(attempt) * int64(2*time.Millisecond)))
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// withTx runs fn in a transaction, committed if fn returns nil and rolled
// back otherwise. The audit records attached to ctx (spotoken.WithAudit)
// are stored in the same transaction, so the change commits with them or
// not at all.
func (db *DB) withTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if records := spotoken.AuditFromContext(ctx); len(records) > 0 {
			return db.insertAudit(ctx, tx, db.now(), records)
		}
		return nil
	})
}

// auditedWrite runs fn, one statement or a few that need no transaction of
// their own, on the pool; or, when ctx carries audit records
// (spotoken.WithAudit), in a transaction with them, so that fn's error
// rolls both back.
func (db *DB) auditedWrite(ctx context.Context, fn func(q querier) error) error {
	if len(spotoken.AuditFromContext(ctx)) == 0 {
		return fn(db.pool)
	}
	return db.withTx(ctx, func(tx pgx.Tx) error { return fn(tx) })
}

// norm returns t as the database keeps it: UTC, truncated to the
// microsecond, without a monotonic clock reading; the zero time stays zero.
func norm(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// tstz converts t for a timestamptz column: NULL for the zero time.
func tstz(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: norm(t), Valid: true}
}

// fromTstz converts a timestamptz column: the zero time for NULL, else UTC.
func fromTstz(ts pgtype.Timestamptz) time.Time {
	if !ts.Valid {
		return time.Time{}
	}
	return ts.Time.UTC()
}

// textArray converts s for a NOT NULL text[] column.
func textArray(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// fromTextArray converts a text[] column: nil when empty, as Go's zero value.
func fromTextArray(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// hash32 converts a 32-byte bytea column.
func hash32(b []byte) ([32]byte, error) {
	var h [32]byte
	if len(b) != len(h) {
		return h, fmt.Errorf("hash of %d bytes, want %d", len(b), len(h))
	}
	copy(h[:], b)
	return h, nil
}

// Ready reports whether the database answers and has every migration this
// build embeds applied: for a readiness probe.
func (db *DB) Ready(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	var v *int32
	if err := db.pool.QueryRow(ctx, "SELECT max(version) FROM schema_migrations").Scan(&v); err != nil {
		return fmt.Errorf("postgres: ready: %w", err)
	}
	if want := ms[len(ms)-1].version; v == nil || int(*v) < want {
		return fmt.Errorf("postgres: ready: schema behind this build (want version %d)", want)
	}
	return nil
}

// list runs a listing's query under the store's listing deadline (see
// listing.Within) and collects its rows with scan; what names it in errors.
func list[T any](ctx context.Context, db *DB, what string, scan pgx.RowToFunc[T], query string, args ...any) ([]T, error) {
	return listing.Within(ctx, db.listTimeout, func(ctx context.Context) ([]T, error) {
		rows, err := db.pool.Query(ctx, query, args...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out, err := pgx.CollectRows(rows, scan)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return out, nil
	})
}
