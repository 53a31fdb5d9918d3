package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/listing"
	"github.com/spotoken/spotoken/postgres"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/sqlite"
)

// storeOptions are the flags that choose the database and its keys, shared
// by every command that opens the store.
type storeOptions struct {
	DB      string
	KeyFile string
	// now is the store's clock; nil for time.Now. serve --emulator gives
	// it the emulator's, the engine's clock, so that times the store
	// compares (backoff, leases, expiry) are on the same clock.
	now func() time.Time
	// The store's sizing and listing deadline (addTuningFlags, serve's):
	// zero means the store's defaults.
	SQLiteCacheMiB, SQLiteMmapMiB int64
	ListTimeout                   time.Duration
}

// addTuningFlags registers the flags that size the store for a large
// database: the long-running serve's, not every command's.
func (o *storeOptions) addTuningFlags(f *pflag.FlagSet) {
	f.Int64Var(&o.SQLiteCacheMiB, "sqlite-cache-mib", sqlite.DefaultCacheSize>>20, "SQLite: page cache of each database connection, in MiB (the process's memory, up to this times 5 or more connections)")
	f.Int64Var(&o.SQLiteMmapMiB, "sqlite-mmap-mib", 0, "SQLite: read up to this many MiB of the database file through a memory map (shared page cache; counts in RSS as it is read; 0: none)")
	f.DurationVar(&o.ListTimeout, "list-timeout", listing.DefaultTimeout, "deadline of each listing query (connections, events, audit records); past it the API answers 503 query_timeout")
}

// validateTuning checks the flags of addTuningFlags.
func (o *storeOptions) validateTuning() error {
	if o.SQLiteCacheMiB < 0 || o.SQLiteMmapMiB < 0 || o.ListTimeout < 0 {
		return usageError{errors.New("--sqlite-cache-mib, --sqlite-mmap-mib and --list-timeout must not be negative")}
	}
	return nil
}

// addFlags registers --db and --key-file.
func (o *storeOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.DB, "db", "", "database: a SQLite file path, or a postgres:// URL (default: "+defaultDBPath()+")")
	f.StringVar(&o.KeyFile, "key-file", "", "key file sealing tokens at rest (default: beside a SQLite database; or set "+seal.EnvVar+" to the file's content)")
}

// defaultDBPath is the embedded database under the XDG data directory.
func defaultDBPath() string {
	dir := os.Getenv("XDG_DATA_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "."
		}
		dir = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(dir, "spotoken", "spotoken.db")
}

func isPostgres(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// keyRing loads the keys: --key-file, else $SPOTOKEN_KEYS, else (SQLite
// only) the key file beside the database, which create makes on first start.
func (o *storeOptions) keyRing(log *slog.Logger, db string, create bool) (*seal.KeyRing, error) {
	if o.KeyFile != "" {
		return seal.LoadKeyFile(o.KeyFile)
	}
	if v, ok := os.LookupEnv(seal.EnvVar); ok {
		ring, err := seal.FromEnv(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", seal.EnvVar, err)
		}
		return ring, nil
	}
	if isPostgres(db) {
		return nil, usageError{fmt.Errorf("a PostgreSQL database needs --key-file or %s: every replica must share the same keys", seal.EnvVar)}
	}
	path := filepath.Join(filepath.Dir(db), "spotoken.keys")
	ring, err := seal.LoadKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !create {
		if err != nil && errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no key file at %s: pass --key-file, or start 'spotoken serve' once to create one", path)
		}
		return ring, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key file directory: %w", err)
	}
	if ring, err = seal.GenerateKeyFile(path); err != nil {
		return nil, err
	}
	log.Warn("created a new key file for sealing tokens at rest; back it up, as stored tokens cannot be opened without it", "path", path)
	return ring, nil
}

// openStore opens the database named by o with its keys. create makes the
// embedded database's directory and key file when they do not exist yet.
func (o *storeOptions) openStore(ctx context.Context, log *slog.Logger, create bool) (spotoken.Store, error) {
	db := o.DB
	if db == "" {
		db = defaultDBPath()
	}
	// A missing database is found before its keys, whose advice would be
	// about a key file beside a database that is not there either.
	if !isPostgres(db) && !create {
		if err := o.checkExists(db); err != nil {
			return nil, err
		}
	}
	ring, err := o.keyRing(log, db, create)
	if err != nil {
		return nil, err
	}
	if isPostgres(db) {
		return postgres.Open(ctx, postgres.Config{DSN: db, Keys: ring, Now: o.now, ListTimeout: o.ListTimeout})
	}
	if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
		return nil, fmt.Errorf("create database directory: %w", err)
	}
	return sqlite.Open(ctx, sqlite.Config{Path: db, Keys: ring, Now: o.now, ListTimeout: o.ListTimeout,
		CacheSize: o.SQLiteCacheMiB << 20, MmapSize: o.SQLiteMmapMiB << 20})
}

// checkExists fails unless the SQLite database db exists. Its advice never
// leads to a new, empty database at a mistyped path: a path given with
// --db is to be checked; only the default location gets the advice to
// create it (there a new database is what the user wants).
func (o *storeOptions) checkExists(db string) error {
	_, err := os.Stat(db)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("database %s: %w", db, err)
	}
	if o.DB != "" {
		why := ""
		if _, derr := os.Stat(filepath.Dir(db)); errors.Is(derr, fs.ErrNotExist) {
			why = fmt.Sprintf(" (there is no directory %s)", filepath.Dir(db))
		}
		return fmt.Errorf("no database at %s%s: check --db, which names an existing SQLite file or a postgres:// URL; nothing was created", db, why)
	}
	return fmt.Errorf("no database yet at %s, the default: register an app with 'spotoken apps create' or start 'spotoken serve' to create it, or pass --db", db)
}

// flagsHint returns the --db and --key-file flags that a follow-up command
// needs to reach the same store: those given on the command line (not from
// the environment, which the follow-up reads too). A password in a
// PostgreSQL URL is replaced by "xxxxx", for the user to fill in.
func (o *storeOptions) flagsHint() string {
	var b strings.Builder
	if o.DB != "" && os.Getenv("SPOTOKEN_DB") != o.DB {
		b.WriteString(" --db " + shellQuote(redactDSN(o.DB)))
	}
	if o.KeyFile != "" && os.Getenv("SPOTOKEN_KEY_FILE") != o.KeyFile {
		b.WriteString(" --key-file " + shellQuote(o.KeyFile))
	}
	return b.String()
}

// redactDSN hides the password of a postgres:// URL, in its user info or
// its query (password=...); other values are returned as they are.
func redactDSN(db string) string {
	if !isPostgres(db) {
		return db
	}
	u, err := url.Parse(db)
	if err != nil {
		return "postgres://(unparsable URL, not shown)"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@,+=%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
