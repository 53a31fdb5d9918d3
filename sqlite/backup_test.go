package sqlite_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/sqlite"
)

// TestBackup: a backup is a database that opens with the same keys and
// holds the data; it is 0600, never replaces a file unless asked, never
// replaces the database's own files, never creates a missing database, and
// refuses a file that is not a spotoken database. (The backup under write
// load is cmd/spotoken's TestBinaryBackupUnderWriteLoad.)
func TestBackup(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "spotoken.db")
	db := openDB(t, src)
	if err := db.CreateApp(ctx, &spotoken.App{ID: "a", ClientID: "c", ClientSecret: "s3cret"}); err != nil {
		t.Fatal(err)
	}

	dst := filepath.Join(dir, "backup.db")
	res, err := sqlite.Backup(ctx, src, dst, false)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != res.Bytes || res.SchemaVersion < 12 {
		t.Fatalf("backup file %v (mode %v), result %+v", err, fi.Mode().Perm(), res)
	}
	copyDB := openDB(t, dst)
	if app, err := copyDB.App(ctx, "a"); err != nil || app.ClientSecret != "s3cret" {
		t.Errorf("the backup's app: %+v, %v", app, err)
	}

	// No overwrite unless asked; the file stays as it was.
	if err := os.WriteFile(filepath.Join(dir, "other"), []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Backup(ctx, src, filepath.Join(dir, "other"), false); !errors.Is(err, fs.ErrExist) {
		t.Errorf("backup onto an existing file: %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "other")); string(b) != "keep me" {
		t.Errorf("the existing file changed: %q", b)
	}
	if _, err := sqlite.Backup(ctx, src, filepath.Join(dir, "other"), true); err != nil {
		t.Errorf("backup with overwrite: %v", err)
	}

	// Never onto the database or its companions, even with overwrite.
	for _, own := range []string{src, src + "-wal", src + "-shm", src + "-journal", filepath.Join(dir, ".", "spotoken.db")} {
		if _, err := sqlite.Backup(ctx, src, own, true); err == nil || !strings.Contains(err.Error(), "would replace the database's own file") {
			t.Errorf("backup onto %s: %v", own, err)
		}
	}
	if err := os.Link(src, filepath.Join(dir, "hardlink.db")); err == nil {
		if _, err := sqlite.Backup(ctx, src, filepath.Join(dir, "hardlink.db"), true); err == nil || !strings.Contains(err.Error(), "is the database") {
			t.Errorf("backup onto a hard link of the database: %v", err)
		}
	}

	// A missing database is not created; a file that is not one is refused.
	missing := filepath.Join(dir, "missing.db")
	if _, err := sqlite.Backup(ctx, missing, filepath.Join(dir, "m.bak"), false); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("backup of a missing database: %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("backup created the missing database: %v", err)
	}
	junk := filepath.Join(dir, "junk.db")
	os.WriteFile(junk, []byte("not a database"), 0o600)
	if _, err := sqlite.Backup(ctx, junk, filepath.Join(dir, "j.bak"), false); err == nil || !strings.Contains(err.Error(), "not a spotoken database") {
		t.Errorf("backup of a file that is not a database: %v", err)
	}
	// Nothing is left behind by the failures: no temporary files.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") || strings.HasSuffix(e.Name(), ".bak") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}
