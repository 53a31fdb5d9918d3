package seal_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/spotoken/spotoken/seal"
)

// TestStagedRotation: a staged key opens for every holder of the file before
// anyone seals with it, so replicas on the old and new file interoperate.
func TestStagedRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	v1, err := seal.GenerateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	staged, err := seal.StageKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if staged.Primary() != 1 || len(staged.Versions()) != 2 {
		t.Fatalf("after StageKey: primary %d, versions %v; want 1, [1 2]", staged.Primary(), staged.Versions())
	}
	promoted, err := seal.PromoteKey(path, 2)
	if err != nil || promoted.Primary() != 2 {
		t.Fatalf("PromoteKey: %v, primary %d", err, promoted.Primary())
	}
	ad := seal.AD("row")
	// A replica already promoted seals under v2; one still on the staged file opens it.
	ct, err := promoted.Seal([]byte("refresh token"), ad)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := staged.Open(ct, ad); err != nil || string(pt) != "refresh token" {
		t.Errorf("staged ring opening a v2 ciphertext: %q, %v", pt, err)
	}
	// Only the original file's ring, never staged, cannot: that is why staging exists.
	if _, err := v1.Open(ct, ad); !errors.Is(err, seal.ErrUnknownKeyVersion) {
		t.Errorf("v1-only ring: %v, want ErrUnknownKeyVersion", err)
	}
	if _, err := seal.PromoteKey(path, 7); !errors.Is(err, seal.ErrUnknownKeyVersion) {
		t.Errorf("promoting a missing version: %v", err)
	}
	if r, err := seal.LoadKeyFile(path); err != nil || r.Primary() != 2 {
		t.Errorf("file after a failed promote: %v, primary %v", err, r)
	}
}
