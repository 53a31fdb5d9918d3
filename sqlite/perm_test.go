package sqlite_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/spotoken/spotoken"
)

// TestNewFilesOwnerOnly: a database file Open creates, and its -wal and
// -shm files, are readable and writable by their owner alone, whatever the
// umask.
func TestNewFilesOwnerOnly(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "new.db")
	db := openDB(t, path)
	if err := db.CreateApp(ctx, &spotoken.App{ID: "a", ClientID: "c"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(name), err)
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %o, want 600", filepath.Base(name), mode)
		}
	}
}
