package seal_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken/seal"
)

// fileJSON is a key file as the tests read it.
type fileJSON struct {
	Primary uint32 `json:"primary"`
	Keys    []struct {
		Version uint32 `json:"version"`
		Key     string `json:"key"`
	} `json:"keys"`
}

func readKeyFile(t *testing.T, path string) fileJSON {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func skipOnWindows(t *testing.T) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no Unix permission bits")
	}
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	if runtime.GOOS == "windows" {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %#o, want %#o", path, got, want)
	}
}

// checkDirHolds checks that dir holds exactly names: no temporary files are
// left behind.
func checkDirHolds(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if diff := cmp.Diff(got, names); diff != "" {
		t.Errorf("files in %s (-got +want):\n%s", dir, diff)
	}
}

func TestGenerateKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	r, err := seal.GenerateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Primary() != 1 {
		t.Errorf("Primary = %d, want 1", r.Primary())
	}
	checkMode(t, path, 0o600)
	checkDirHolds(t, dir, "keys.json")

	f := readKeyFile(t, path)
	if f.Primary != 1 || len(f.Keys) != 1 || f.Keys[0].Version != 1 {
		t.Fatalf("key file = %+v, want one key, version 1, primary", f)
	}
	material, err := base64.StdEncoding.DecodeString(f.Keys[0].Key)
	if err != nil || len(material) != 32 {
		t.Fatalf("key is %d bytes (%v), want 32 bytes of standard base64", len(material), err)
	}

	loaded, err := seal.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := r.Seal([]byte("secret"), seal.AD("row"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := loaded.Open(ct, seal.AD("row"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(got), "secret"); diff != "" {
		t.Errorf("Open with the loaded ring (-got +want):\n%s", diff)
	}

	// Two generated files hold different keys.
	other := filepath.Join(dir, "other.json")
	if _, err := seal.GenerateKeyFile(other); err != nil {
		t.Fatal(err)
	}
	if readKeyFile(t, other).Keys[0].Key == f.Keys[0].Key {
		t.Error("two generated key files hold the same key")
	}
}

func TestGenerateKeyFileRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	tests := []struct {
		name    string
		content string // of the existing file
	}{
		{"a key file", ""}, // filled in by GenerateKeyFile
		{"anything else", "precious data\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(path)
			if tt.content == "" {
				if _, err := seal.GenerateKeyFile(path); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			r, err := seal.GenerateKeyFile(path)
			if err == nil {
				t.Fatalf("GenerateKeyFile over an existing file succeeded: %v", r)
			}
			if !errors.Is(err, fs.ErrExist) {
				t.Errorf("error %v does not match fs.ErrExist", err)
			}
			for _, want := range []string{path, "already exists"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(after), string(before)); diff != "" {
				t.Errorf("existing file changed (-got +want):\n%s", diff)
			}
			checkDirHolds(t, dir, "keys.json")
		})
	}
}

func TestGenerateKeyFileMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "keys.json")
	_, err := seal.GenerateKeyFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v, want fs.ErrNotExist", err)
	}
}

func TestLoadKeyFilePermissions(t *testing.T) {
	skipOnWindows(t)
	path := filepath.Join(t.TempDir(), "keys.json")
	if _, err := seal.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		mode fs.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o644, false},
		{0o640, false},
		{0o604, false},
		{0o620, false},
		{0o602, false},
		{0o660, false},
		{0o666, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%#o", tt.mode), func(t *testing.T) {
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			r, err := seal.LoadKeyFile(path)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				if r.Primary() != 1 {
					t.Errorf("Primary = %d, want 1", r.Primary())
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadKeyFile accepted mode %#o", tt.mode)
			}
			for _, want := range []string{path, "chmod 600", fmt.Sprintf("%#o", tt.mode)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if _, err := seal.AddKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
				t.Errorf("AddKey on mode %#o: error %v, want a refusal", tt.mode, err)
			}
		})
	}
}

func TestLoadKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.json")
	if _, err := seal.LoadKeyFile(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("LoadKeyFile(missing): error %v, want fs.ErrNotExist naming the path", err)
	}
	if _, err := seal.LoadKeyFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("LoadKeyFile(directory): error %v, want one saying it is not a regular file", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"primary": 1, "keys": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := seal.LoadKeyFile(bad)
	if want := "seal: key file " + bad + ": no keys"; err == nil || err.Error() != want {
		t.Errorf("LoadKeyFile(no keys): error %v, want %q", err, want)
	}
}

func TestAddKeyRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	r1, err := seal.GenerateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ad := seal.AD("app", "conn", "refresh_token")
	ctOld, err := r1.Seal([]byte("old token"), ad)
	if err != nil {
		t.Fatal(err)
	}
	before := readKeyFile(t, path)

	r2, err := seal.AddKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Primary() != 2 {
		t.Errorf("Primary after AddKey = %d, want 2", r2.Primary())
	}
	if diff := cmp.Diff(r2.Versions(), []uint32{1, 2}); diff != "" {
		t.Errorf("Versions after AddKey (-got +want):\n%s", diff)
	}
	checkMode(t, path, 0o600)
	checkDirHolds(t, dir, "keys.json")
	after := readKeyFile(t, path)
	if after.Primary != 2 || len(after.Keys) != 2 || after.Keys[0] != before.Keys[0] || after.Keys[1].Version != 2 {
		t.Errorf("key file after AddKey = %+v, want the old key kept and version 2 added as primary", after)
	}

	// The old ciphertext still opens, and needs resealing.
	for name, r := range map[string]*seal.KeyRing{"AddKey's ring": r2, "reloaded ring": mustLoad(t, path)} {
		got, err := r.Open(ctOld, ad)
		if err != nil {
			t.Fatalf("%s: Open(sealed under 1): %v", name, err)
		}
		if diff := cmp.Diff(string(got), "old token"); diff != "" {
			t.Errorf("%s: Open (-got +want):\n%s", name, diff)
		}
		if !r.NeedsReseal(ctOld) {
			t.Errorf("%s: NeedsReseal(sealed under 1) = false", name)
		}
	}

	// New ciphertexts carry version 2 and do not need resealing.
	ctNew, err := r2.Seal([]byte("new token"), ad)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r2.Version(ctNew); err != nil || v != 2 {
		t.Errorf("Version(new ciphertext) = %d, %v; want 2", v, err)
	}
	if r2.NeedsReseal(ctNew) {
		t.Error("NeedsReseal(sealed under 2) = true")
	}
	// Resealing an old ciphertext moves it to version 2.
	pt, err := r2.Open(ctOld, ad)
	if err != nil {
		t.Fatal(err)
	}
	resealed, err := r2.Seal(pt, ad)
	if err != nil {
		t.Fatal(err)
	}
	if r2.NeedsReseal(resealed) {
		t.Error("NeedsReseal(resealed) = true")
	}
	// A process still on the old ring cannot open what the new one seals.
	_, err = r1.Open(ctNew, ad)
	wantKeyError(t, err, 2, seal.ErrUnknownKeyVersion)

	r3, err := seal.AddKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r3.Versions(), []uint32{1, 2, 3}); diff != "" {
		t.Errorf("Versions after a second AddKey (-got +want):\n%s", diff)
	}
	if r3.Primary() != 3 {
		t.Errorf("Primary after a second AddKey = %d, want 3", r3.Primary())
	}
}

func TestAddKeyFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "keys.json")
	link := filepath.Join(dir, "link.json")
	if _, err := seal.GenerateKeyFile(target); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Skip("cannot create a symbolic link:", err)
	}
	if _, err := seal.AddKey(link); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("link replaced by a file (%v)", err)
	}
	if got := mustLoad(t, target).Primary(); got != 2 {
		t.Errorf("target's primary = %d, want 2", got)
	}
}

func TestAddKeyMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	_, err := seal.AddKey(path)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("error %v, want fs.ErrNotExist naming the path", err)
	}
}

func mustLoad(t *testing.T, path string) *seal.KeyRing {
	t.Helper()
	r, err := seal.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseKeyRing(t *testing.T) {
	k1 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	k2 := base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	short := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcde"))
	zero := base64.StdEncoding.EncodeToString(make([]byte, 32))
	tests := []struct {
		name    string
		in      string
		primary uint32
		wantErr string // empty: no error
	}{
		{"one key", `{"primary": 1, "keys": [{"version": 1, "key": "` + k1 + `"}]}`, 1, ""},
		{"two keys", `{"primary": 2, "keys": [{"version": 1, "key": "` + k1 + `"}, {"version": 2, "key": "` + k2 + `"}]}`, 2, ""},
		{"older primary", `{"keys": [{"key": "` + k2 + `", "version": 7}, {"version": 3, "key": "` + k1 + `"}], "primary": 3}`, 3, ""},
		{"surrounding space", "\n\t" + `{"primary": 1, "keys": [{"version": 1, "key": "` + k1 + `"}]}` + "\n\n", 1, ""},

		{"empty", ``, 0, "seal: parse keys: empty; want the JSON of a key file"},
		{"not JSON", `primary = 1`, 0, "seal: parse keys: not valid JSON: syntax error at byte offset 1"},
		{"truncated", `{"primary": 1, "keys": [{"version": 1, "key": "` + k1, 0, "seal: parse keys: not valid JSON: unexpected end of input at byte offset 91"},
		{"trailing data", `{"primary": 1, "keys": []} {}`, 0, "seal: parse keys: not valid JSON: syntax error at byte offset 28"},
		{"array", `[1, 2]`, 0, `seal: parse keys: want a JSON object with "primary" and "keys"`},
		{"null", `null`, 0, `seal: parse keys: want a JSON object with "primary" and "keys"`},
		{"unknown field", `{"primary": 1, "keys": [], "comment": "x"}`, 0, `seal: parse keys: unknown field "comment" (allowed: "primary", "keys")`},
		{"field in the wrong case", `{"Primary": 1, "keys": []}`, 0, `seal: parse keys: unknown field (allowed: "primary", "keys")`},
		{"key material as a field name", `{"primary": 1, "keys": [], "` + k1 + `": 1}`, 0, `seal: parse keys: unknown field (allowed: "primary", "keys")`},
		{"no primary", `{"keys": [{"version": 1, "key": "` + k1 + `"}]}`, 0, `seal: parse keys: "primary" is missing`},
		{"primary null", `{"primary": null, "keys": []}`, 0, `seal: parse keys: "primary": want a whole number from 1 to 4294967295`},
		{"primary string", `{"primary": "` + k1 + `", "keys": []}`, 0, `seal: parse keys: "primary": want a whole number from 1 to 4294967295`},
		{"primary negative", `{"primary": -1, "keys": []}`, 0, `seal: parse keys: "primary": want a whole number from 1 to 4294967295`},
		{"primary too large", `{"primary": 4294967296, "keys": []}`, 0, `seal: parse keys: "primary": want a whole number from 1 to 4294967295`},
		{"primary fraction", `{"primary": 1.5, "keys": []}`, 0, `seal: parse keys: "primary": want a whole number from 1 to 4294967295`},
		{"no keys field", `{"primary": 1}`, 0, `seal: parse keys: "keys" is missing`},
		{"keys null", `{"primary": 1, "keys": null}`, 0, `seal: parse keys: "keys": want an array`},
		{"keys object", `{"primary": 1, "keys": {}}`, 0, `seal: parse keys: "keys": want an array`},
		{"no keys", `{"primary": 1, "keys": []}`, 0, `seal: parse keys: no keys`},
		{"entry not an object", `{"primary": 1, "keys": ["` + k1 + `"]}`, 0, `seal: parse keys: keys[0]: want a JSON object with "version" and "key"`},
		{"entry without version", `{"primary": 1, "keys": [{"key": "` + k1 + `"}]}`, 0, `seal: parse keys: keys[0]: "version" is missing`},
		{"version 0", `{"primary": 0, "keys": [{"version": 0, "key": "` + k1 + `"}]}`, 0, `seal: parse keys: keys[0]: key version 0: versions start at 1`},
		{"version string", `{"primary": 1, "keys": [{"version": "1", "key": "` + k1 + `"}]}`, 0, `seal: parse keys: keys[0]: "version": want a whole number from 1 to 4294967295`},
		{"entry without key", `{"primary": 1, "keys": [{"version": 1, "key": "` + k1 + `"}, {"version": 2}]}`, 0, `seal: parse keys: keys[1]: key version 2: "key" is missing`},
		{"key null", `{"primary": 1, "keys": [{"version": 1, "key": null}]}`, 0, `seal: parse keys: keys[0]: key version 1: "key": want a string of standard base64`},
		{"key number", `{"primary": 1, "keys": [{"version": 1, "key": 12345}]}`, 0, `seal: parse keys: keys[0]: key version 1: "key": want a string of standard base64`},
		{"unknown field in entry", `{"primary": 1, "keys": [{"version": 1, "key": "` + k1 + `", "created": "2025-01-01"}]}`, 0, `seal: parse keys: keys[0]: key version 1: unknown field "created" (allowed: "version", "key")`},
		{"short key", `{"primary": 2, "keys": [{"version": 1, "key": "` + k1 + `"}, {"version": 2, "key": "` + short + `"}]}`, 0, `seal: parse keys: key version 2: key is 31 bytes, want 32`},
		{"empty key", `{"primary": 1, "keys": [{"version": 1, "key": ""}]}`, 0, `seal: parse keys: key version 1: key is 0 bytes, want 32`},
		{"URL base64", `{"primary": 1, "keys": [{"version": 1, "key": "` + strings.NewReplacer("+", "-", "/", "_").Replace(base64.StdEncoding.EncodeToString([]byte("\xfb\xff0123456789abcdef0123456789ab"))) + `"}]}`, 0, `seal: parse keys: key version 1: key is not valid standard base64 (at byte 0 of the key)`},
		{"hex", `{"primary": 1, "keys": [{"version": 1, "key": "` + strings.Repeat("ab", 32) + `"}]}`, 0, `seal: parse keys: key version 1: key is 48 bytes, want 32`},
		{"all zeros", `{"primary": 1, "keys": [{"version": 1, "key": "` + zero + `"}]}`, 0, `seal: parse keys: key version 1: key material is all zeros`},
		{"duplicate version", `{"primary": 1, "keys": [{"version": 1, "key": "` + k1 + `"}, {"version": 1, "key": "` + k2 + `"}]}`, 0, `seal: parse keys: key version 1: appears more than once`},
		{"primary not present", `{"primary": 3, "keys": [{"version": 1, "key": "` + k1 + `"}, {"version": 2, "key": "` + k2 + `"}]}`, 0, `seal: parse keys: primary key version 3 is not among the keys (versions [1 2])`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := seal.ParseKeyRing([]byte(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if r.Primary() != tt.primary {
					t.Errorf("Primary = %d, want %d", r.Primary(), tt.primary)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseKeyRing succeeded, want error %q", tt.wantErr)
			}
			if diff := cmp.Diff(err.Error(), tt.wantErr); diff != "" {
				t.Errorf("error (-got +want):\n%s", diff)
			}
			for _, k := range []string{k1, k2, short} {
				if strings.Contains(err.Error(), k[:16]) {
					t.Errorf("error %q shows key material", err)
				}
			}
		})
	}
}

func TestParseErrorsNeverShowKeyMaterial(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	if _, err := seal.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := seal.AddKey(path); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := readKeyFile(t, path)
	var secrets []string
	for _, k := range f.Keys {
		secrets = append(secrets, k.Key)
	}
	// Cut key version 2 to 31 bytes.
	material, err := base64.StdEncoding.DecodeString(f.Keys[1].Key)
	if err != nil {
		t.Fatal(err)
	}
	cut := base64.StdEncoding.EncodeToString(material[:31])
	secrets = append(secrets, cut)
	corrupt := strings.Replace(string(data), f.Keys[1].Key, cut, 1)
	if err := os.WriteFile(path, []byte(corrupt), 0o600); err != nil {
		t.Fatal(err)
	}

	_, parseErr := seal.ParseKeyRing([]byte(corrupt))
	_, envErr := seal.FromEnv(corrupt)
	_, loadErr := seal.LoadKeyFile(path)
	_, addErr := seal.AddKey(path)
	for name, err := range map[string]error{"ParseKeyRing": parseErr, "FromEnv": envErr, "LoadKeyFile": loadErr, "AddKey": addErr} {
		if err == nil {
			t.Errorf("%s accepted a 31-byte key", name)
			continue
		}
		if !strings.Contains(err.Error(), "key version 2: key is 31 bytes, want 32") {
			t.Errorf("%s: error %q does not say which key is wrong and how", name, err)
		}
		for _, s := range secrets {
			// Any 12-character piece of a key would be too much.
			for i := 0; i+12 <= len(s); i++ {
				if strings.Contains(err.Error(), s[i:i+12]) {
					t.Fatalf("%s: error %q contains key material", name, err)
				}
			}
		}
	}
	if !strings.Contains(loadErr.Error(), path) {
		t.Errorf("LoadKeyFile: error %q does not name the file", loadErr)
	}
	if !strings.Contains(envErr.Error(), "$"+seal.EnvVar) {
		t.Errorf("FromEnv: error %q does not name the variable", envErr)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != corrupt {
		t.Error("AddKey changed a key file it could not parse")
	}
}

func TestFromEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	want, err := seal.GenerateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := seal.FromEnv(string(data))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := want.Seal([]byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Open(ct, nil); err != nil {
		t.Errorf("the ring from the environment cannot open what the file's ring sealed: %v", err)
	}
	for _, empty := range []string{"", "  \n"} {
		_, err := seal.FromEnv(empty)
		if want := "seal: $SPOTOKEN_KEYS is empty"; err == nil || err.Error() != want {
			t.Errorf("FromEnv(%q): error %v, want %q", empty, err, want)
		}
	}
}
