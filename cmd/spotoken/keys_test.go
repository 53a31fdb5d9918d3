package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken/seal"
)

// runKeys runs `keys args...` through newKeysCmd and returns its stdout and
// error.
func runKeys(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newKeysCmd(&IOStreams{In: strings.NewReader(""), Out: &out, Err: &errOut})
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	err := cmd.Execute()
	return out.String(), err
}

// keyMaterial returns the keys of the key file at path in the forms they
// could leak in: base64 as stored, and hex.
func keyMaterial(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Keys []struct{ Key string } `json:"keys"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	var forms []string
	for _, k := range f.Keys {
		raw, err := base64.StdEncoding.DecodeString(k.Key)
		if err != nil {
			t.Fatal(err)
		}
		forms = append(forms, k.Key, hex.EncodeToString(raw), k.Key[:12])
	}
	return forms
}

func TestKeysGenerateAndAdd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")

	out, err := runKeys(t, "generate", "--key-file", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{path, "key version 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("generate output does not contain %q:\n%s", want, out)
		}
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("key file mode = %#o, want 0600", fi.Mode().Perm())
		}
	}
	ring, err := seal.LoadKeyFile(path)
	if err != nil {
		t.Fatalf("generated key file does not load: %v", err)
	}
	if diff := cmp.Diff(ring.Versions(), []uint32{1}); diff != "" {
		t.Errorf("versions (-got +want):\n%s", diff)
	}
	for _, m := range keyMaterial(t, path) {
		if strings.Contains(out, m) {
			t.Fatalf("generate output shows the key:\n%s", out)
		}
	}

	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err = runKeys(t, "generate", "--key-file", path)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second generate: error %v, want a refusal to overwrite", err)
	}
	// The advice names the command to run, not the Go function behind it.
	if err != nil && (strings.Contains(err.Error(), "AddKey") || !strings.Contains(err.Error(), "spotoken keys add --key-file "+path)) {
		t.Errorf("second generate: error %q, want advice to run 'spotoken keys add --key-file %s' and no Go name", err, path)
	}
	if out != "" {
		t.Errorf("failed generate printed %q", out)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, before) {
		t.Error("second generate changed the key file")
	}

	out, err = runKeys(t, "add", "--key-file", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"key version 2", "primary", "spotoken keys rotate"} {
		if !strings.Contains(out, want) {
			t.Errorf("add output does not contain %q:\n%s", want, out)
		}
	}
	for _, m := range keyMaterial(t, path) {
		if strings.Contains(out, m) {
			t.Fatalf("add output shows a key:\n%s", out)
		}
	}
	ring, err = seal.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if ring.Primary() != 2 {
		t.Errorf("primary after add = %d, want 2", ring.Primary())
	}
	if diff := cmp.Diff(ring.Versions(), []uint32{1, 2}); diff != "" {
		t.Errorf("versions after add (-got +want):\n%s", diff)
	}
}

func TestKeysUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"generate without --key-file", []string{"generate"}},
		{"add without --key-file", []string{"add"}},
		{"generate with an argument", []string{"generate", "--key-file", "k.json", "extra"}},
		{"keys with an argument", []string{"bogus"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runKeys(t, tt.args...)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Errorf("error %v (%T), want a usage error", err, err)
			}
		})
	}
}

func TestKeysAddMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	_, err := runKeys(t, "add", "--key-file", path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("error %v, want one naming %s", err, path)
	}
	if _, statErr := os.Stat(path); !errors.Is(statErr, os.ErrNotExist) {
		t.Error("add created a key file")
	}
}
