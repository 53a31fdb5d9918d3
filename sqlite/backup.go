package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// BackupResult describes a backup Backup wrote.
type BackupResult struct {
	// Bytes is the size of the backup file.
	Bytes int64
	// SchemaVersion is the newest migration applied to the database.
	SchemaVersion int
}

// Backup writes a consistent copy of the database file src to dst while
// other connections and processes go on using it: SQLite's VACUUM INTO reads
// one snapshot (a read transaction, which in WAL mode blocks no writer), so
// the copy holds exactly the transactions committed before it started,
// whatever is committed meanwhile. The copy needs no key: it holds the same
// sealed secrets as the database, which open only with the key file the
// database uses.
//
// The copy is written to a temporary file beside dst, created with mode
// 0600, checked with PRAGMA integrity_check and synced, then put in place in
// one step, so dst never holds a partial copy. Backup refuses to replace an
// existing dst unless overwrite is set (an error matching fs.ErrExist), and
// refuses a dst that is src itself or one of its -wal, -shm or -journal
// companions. It never creates src: an error matching fs.ErrNotExist if it
// is missing, and one saying so if it is not a spotoken database.
//
// Restore by stopping every process that uses the database, deleting its
// -wal and -shm files, and copying the backup into its place (see
// docs/deploy.md).
func Backup(ctx context.Context, src, dst string, overwrite bool) (BackupResult, error) {
	if _, err := os.Stat(src); err != nil {
		return BackupResult{}, fmt.Errorf("sqlite: backup: %w", err)
	}
	if err := distinctFromDatabase(src, dst); err != nil {
		return BackupResult{}, err
	}
	if !overwrite {
		if _, err := os.Lstat(dst); err == nil {
			return BackupResult{}, fmt.Errorf("sqlite: backup: %s already exists: %w", dst, fs.ErrExist)
		}
	}

	// mode=rw: the database must exist (rwc would create an empty one). The
	// connection only reads it (query_only would refuse VACUUM INTO, which
	// writes the copy).
	name := "file:" + (&url.URL{Path: src}).EscapedPath() + "?mode=rw&_pragma=busy_timeout(" + strconv.Itoa(busyTimeout) + ")"
	db, err := sql.Open("sqlite", name)
	if err != nil {
		return BackupResult{}, fmt.Errorf("sqlite: backup: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var res BackupResult
	var version sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT max(version) FROM schema_migrations").Scan(&version); err != nil || !version.Valid {
		return BackupResult{}, fmt.Errorf("sqlite: backup: %s is not a spotoken database (no schema_migrations): %v", src, err)
	}
	res.SchemaVersion = int(version.Int64)

	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*.tmp") // mode 0600
	if err != nil {
		return BackupResult{}, fmt.Errorf("sqlite: backup: %w", err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	done := false
	defer func() {
		if !done {
			os.Remove(tmpName)
			os.Remove(tmpName + "-journal")
		}
	}()
	// VACUUM INTO writes into an existing file only when it is empty, as
	// the one just created is; so it keeps the file's mode.
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", tmpName); err != nil {
		return BackupResult{}, fmt.Errorf("sqlite: backup: vacuum into a copy: %w", err)
	}
	if err := checkIntegrity(ctx, tmpName); err != nil {
		return BackupResult{}, err
	}
	if err := syncFile(tmpName); err != nil {
		return BackupResult{}, fmt.Errorf("sqlite: backup: %w", err)
	}
	if overwrite {
		err = os.Rename(tmpName, dst)
	} else {
		// A link fails if dst appeared meanwhile; a rename would replace it.
		if err = os.Link(tmpName, dst); err == nil {
			os.Remove(tmpName)
		}
	}
	if errors.Is(err, fs.ErrExist) {
		return BackupResult{}, fmt.Errorf("sqlite: backup: %s already exists: %w", dst, fs.ErrExist)
	}
	if err != nil {
		return BackupResult{}, fmt.Errorf("sqlite: backup: %w", err)
	}
	done = true
	syncDir(filepath.Dir(dst))
	fi, err := os.Stat(dst)
	if err != nil {
		return BackupResult{}, fmt.Errorf("sqlite: backup: %w", err)
	}
	res.Bytes = fi.Size()
	return res, nil
}

// distinctFromDatabase refuses a backup destination that is the database
// file or one of its companions: replacing any of them under a running
// server would corrupt the database.
func distinctFromDatabase(src, dst string) error {
	srcAbs, err1 := filepath.Abs(src)
	dstAbs, err2 := filepath.Abs(dst)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		if dstAbs == srcAbs+suffix {
			return fmt.Errorf("sqlite: backup: the backup %s would replace the database's own file %s", dst, src+suffix)
		}
	}
	if si, err := os.Stat(src); err == nil {
		if di, err := os.Stat(dst); err == nil && os.SameFile(si, di) {
			return fmt.Errorf("sqlite: backup: the backup %s is the database %s itself", dst, src)
		}
	}
	return nil
}

// checkIntegrity runs PRAGMA integrity_check on the database file path.
func checkIntegrity(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?mode=ro")
	if err != nil {
		return fmt.Errorf("sqlite: backup: check the copy: %w", err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("sqlite: backup: check the copy: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("sqlite: backup: check the copy: %w", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: backup: check the copy: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("sqlite: backup: the copy fails its integrity check: %s", strings.Join(problems, "; "))
	}
	return nil
}

// syncFile flushes path's content to stable storage.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir flushes a directory's entries, so a file just linked or renamed
// into it survives a power cut; best effort.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
