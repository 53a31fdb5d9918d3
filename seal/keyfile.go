package seal

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// EnvVar is the environment variable from which a server may take its keys
// instead of a key file: its value is the JSON of a key file (see the package
// documentation), to be passed to [FromEnv].
const EnvVar = "SPOTOKEN_KEYS"

// maxKeyFileSize bounds how much of a key file is read: a key takes about 70
// bytes, so this is room for thousands of keys.
const maxKeyFileSize = 1 << 20

// fileKey and keyFile are a key file's JSON, for writing it. Reading goes
// through parseKeyFile, which checks each field itself so that its errors can
// be precise without quoting the input.
type fileKey struct {
	Version uint32 `json:"version"`
	Key     string `json:"key"`
}

type keyFile struct {
	Primary uint32    `json:"primary"`
	Keys    []fileKey `json:"keys"`
}

// ParseKeyRing returns the key ring described by data, the JSON of a key
// file (see the package documentation). Parsing is strict: unknown fields,
// missing fields, keys that are not 32 bytes of standard base64, and
// duplicate versions are errors. An error names the entry at fault, for
// example "key version 2: key is 31 bytes, want 32", and never quotes key
// material or other content of data.
func ParseKeyRing(data []byte) (*KeyRing, error) {
	r, _, err := parseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("seal: parse keys: %w", err)
	}
	return r, nil
}

// FromEnv returns the key ring described by value, the content of the
// environment variable [EnvVar]; it is [ParseKeyRing] with errors that name
// the variable.
func FromEnv(value string) (*KeyRing, error) {
	if strings.TrimSpace(value) == "" {
		return nil, fmt.Errorf("seal: $%s is empty", EnvVar)
	}
	r, _, err := parseKeyFile([]byte(value))
	if err != nil {
		return nil, fmt.Errorf("seal: $%s: %w", EnvVar, err)
	}
	return r, nil
}

// LoadKeyFile reads the key file at path and returns its key ring. It
// refuses a file that group or others may read or write (mode & 0o077 != 0),
// and a file that is not a regular file. Errors name path and never quote the
// file's content.
func LoadKeyFile(path string) (*KeyRing, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	r, _, err := parseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("seal: key file %s: %w", path, err)
	}
	return r, nil
}

// GenerateKeyFile creates a key file at path holding one fresh random key,
// version 1, as the primary key, with mode 0600, and returns its key ring. It
// never overwrites: if path exists, it fails with an error matching
// [fs.ErrExist] and leaves the file alone. The file appears at path complete
// or not at all: it is written to a temporary file in the same directory,
// synced, then linked to path.
func GenerateKeyFile(path string) (*KeyRing, error) {
	k, err := newKey(1)
	if err != nil {
		return nil, fmt.Errorf("seal: key file %s: %w", path, err)
	}
	kf := keyFile{Primary: 1, Keys: []fileKey{{Version: 1, Key: base64.StdEncoding.EncodeToString(k.Material[:])}}}
	r, err := newKeyRing([]Key{k}, 1)
	if err != nil {
		return nil, fmt.Errorf("seal: key file %s: %w", path, err)
	}
	tmp, err := writeTemp(path, kf)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	// os.Link fails if path exists, unlike os.Rename, which would replace it.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("seal: key file %s already exists; refusing to overwrite it (add a key with AddKey, spotoken keys add): %w", path, fs.ErrExist)
		}
		return nil, fmt.Errorf("seal: key file %s: %w", path, err)
	}
	if err := os.Remove(tmp); err != nil {
		return nil, fmt.Errorf("seal: key file %s: remove temporary file: %w", path, err)
	}
	syncDir(filepath.Dir(path))
	return r, nil
}

// AddKey adds a fresh random key to the key file at path, with a version one
// higher than the highest there, makes it the primary key, and returns the
// new key ring. The file is replaced atomically (temporary file, sync,
// rename) with mode 0600; if path is a symbolic link, the file it points to is
// replaced. The file's checks are those of [LoadKeyFile].
//
// Processes that loaded the file before keep sealing under the old primary
// key and cannot open what is sealed under the new one until they reload it;
// see "Rotating keys" in the package documentation. AddKey must not run
// concurrently with itself on the same file; it fails, rather than lose a
// key, if it notices the file changed while it worked.
func AddKey(path string) (*KeyRing, error) {
	return updateKeyFile(path, func(kf *keyFile) error {
		v, err := addFileKey(kf)
		kf.Primary = v
		return err
	})
}

// StageKey adds a fresh random key to the key file at path, like [AddKey],
// but leaves the primary key as it is: processes that load the file can
// open what the new key will seal before any of them seals with it. Promote
// it with [PromoteKey] once every process has loaded the file.
func StageKey(path string) (*KeyRing, error) {
	return updateKeyFile(path, func(kf *keyFile) error {
		_, err := addFileKey(kf)
		return err
	})
}

// PromoteKey makes the key with version the primary key of the key file at
// path, which must hold it.
func PromoteKey(path string, version uint32) (*KeyRing, error) {
	return updateKeyFile(path, func(kf *keyFile) error {
		for _, k := range kf.Keys {
			if k.Version == version {
				kf.Primary = version
				return nil
			}
		}
		return &KeyError{Version: version, Err: ErrUnknownKeyVersion}
	})
}

// addFileKey appends a fresh key one version above the highest and returns
// its version.
func addFileKey(kf *keyFile) (uint32, error) {
	var highest uint32
	for _, k := range kf.Keys {
		highest = max(highest, k.Version)
	}
	if highest == math.MaxUint32 {
		return 0, fmt.Errorf("key version %d is the highest possible; no version is left for a new key", highest)
	}
	k, err := newKey(highest + 1)
	if err != nil {
		return 0, err
	}
	kf.Keys = append(kf.Keys, fileKey{Version: k.Version, Key: base64.StdEncoding.EncodeToString(k.Material[:])})
	return k.Version, nil
}

// updateKeyFile applies change to the key file at path and replaces the file
// atomically (temporary file, sync, rename) with mode 0600, following a
// symbolic link. It writes nothing if change fails or the file changed
// meanwhile.
func updateKeyFile(path string, change func(*keyFile) error) (*KeyRing, error) {
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	data, err := readKeyFile(target)
	if err != nil {
		return nil, err
	}
	_, kf, err := parseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("seal: key file %s: %w", path, err)
	}
	if err := change(&kf); err != nil {
		return nil, fmt.Errorf("seal: key file %s: %w", path, err)
	}
	r, err := keyFileRing(kf)
	if err != nil {
		return nil, fmt.Errorf("seal: key file %s: %w", path, err)
	}
	tmp, err := writeTemp(target, kf)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	// Narrow the window in which a concurrent writer's change could be lost.
	if now, err := os.ReadFile(target); err != nil || !bytes.Equal(now, data) {
		return nil, fmt.Errorf("seal: key file %s changed while it was being updated; nothing was written, try again", path)
	}
	if err := os.Rename(tmp, target); err != nil {
		return nil, fmt.Errorf("seal: key file %s: %w", path, err)
	}
	syncDir(filepath.Dir(target))
	return r, nil
}

// readKeyFile reads a key file after checking that it is a regular file that
// only its owner may read or write.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("seal: key file %s is not a regular file (mode %v)", path, fi.Mode())
	}
	// Windows has no such permission bits; its ACLs are out of our reach.
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("seal: key file %s has mode %#o, so group or others may read or write it; restrict it with: chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("seal: key file: read %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("seal: key file %s is larger than %d bytes", path, maxKeyFileSize)
	}
	return data, nil
}

// writeTemp writes kf to a new temporary file with mode 0600 in path's
// directory, syncs and closes it, and returns its name.
func writeTemp(path string, kf keyFile) (name string, err error) {
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return "", fmt.Errorf("seal: key file %s: %w", path, err)
	}
	data = append(data, '\n')
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("seal: key file %s: create temporary file: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// CreateTemp uses 0600 already; Chmod makes it so whatever the umask.
	if err := f.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		return "", fmt.Errorf("seal: key file %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("seal: key file %s: write temporary file: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("seal: key file %s: sync temporary file: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("seal: key file %s: close temporary file: %w", path, err)
	}
	return f.Name(), nil
}

// syncDir makes a new directory entry durable. It is best effort: some
// systems cannot sync a directory, and by then the file is complete at its
// path, so failing would only mislead.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	d.Close()
}

// parseKeyFile parses and checks the JSON of a key file. It decodes one level
// at a time, into raw messages, so that each error can name the field or
// entry at fault without quoting the input: errors from encoding/json may
// quote it, so only a syntax error's offset is kept from them.
func parseKeyFile(data []byte) (*KeyRing, keyFile, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, keyFile{}, errors.New("empty; want the JSON of a key file")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, keyFile{}, jsonError("", `a JSON object with "primary" and "keys"`, err)
	}
	if top == nil {
		return nil, keyFile{}, errors.New(`want a JSON object with "primary" and "keys"`)
	}
	if err := unknownFields(top, "primary", "keys"); err != nil {
		return nil, keyFile{}, err
	}
	var kf keyFile
	rawPrimary, ok := top["primary"]
	if !ok {
		return nil, keyFile{}, errors.New(`"primary" is missing`)
	}
	p, err := decodeVersion(`"primary"`, rawPrimary)
	if err != nil {
		return nil, keyFile{}, err
	}
	kf.Primary = p
	rawKeys, ok := top["keys"]
	if !ok {
		return nil, keyFile{}, errors.New(`"keys" is missing`)
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(rawKeys, &entries); err != nil || entries == nil {
		return nil, keyFile{}, jsonError(`"keys"`, "an array", err)
	}
	for i, raw := range entries {
		k, err := parseFileKey(raw)
		if err != nil {
			return nil, keyFile{}, fmt.Errorf("keys[%d]: %w", i, err)
		}
		kf.Keys = append(kf.Keys, k)
	}
	r, err := keyFileRing(kf)
	if err != nil {
		return nil, keyFile{}, err
	}
	return r, kf, nil
}

// parseFileKey parses one entry of "keys", checking its fields but not its
// key, which keyFileRing decodes.
func parseFileKey(raw json.RawMessage) (fileKey, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return fileKey{}, jsonError("", `a JSON object with "version" and "key"`, err)
	}
	var k fileKey
	rawVersion, ok := m["version"]
	if !ok {
		return fileKey{}, errors.New(`"version" is missing`)
	}
	v, err := decodeVersion(`"version"`, rawVersion)
	if err != nil {
		return fileKey{}, err
	}
	if v == 0 {
		return fileKey{}, errors.New("key version 0: versions start at 1")
	}
	k.Version = v
	if err := unknownFields(m, "version", "key"); err != nil {
		return fileKey{}, fmt.Errorf("key version %d: %w", v, err)
	}
	rawKey, ok := m["key"]
	if !ok {
		return fileKey{}, fmt.Errorf(`key version %d: "key" is missing`, v)
	}
	if err := json.Unmarshal(rawKey, &k.Key); err != nil || isNull(rawKey) {
		return fileKey{}, fmt.Errorf(`key version %d: %w`, v, jsonError(`"key"`, "a string of standard base64", err))
	}
	return k, nil
}

// keyFileRing decodes the keys of kf and builds their ring.
func keyFileRing(kf keyFile) (*KeyRing, error) {
	keys := make([]Key, 0, len(kf.Keys))
	for _, fk := range kf.Keys {
		k := Key{Version: fk.Version}
		material, err := base64.StdEncoding.DecodeString(fk.Key)
		if err != nil {
			var ce base64.CorruptInputError
			if errors.As(err, &ce) {
				return nil, fmt.Errorf("key version %d: key is not valid standard base64 (at byte %d of the key)", fk.Version, int64(ce))
			}
			return nil, fmt.Errorf("key version %d: key is not valid standard base64", fk.Version)
		}
		if len(material) != len(k.Material) {
			clear(material)
			return nil, fmt.Errorf("key version %d: key is %d bytes, want %d", fk.Version, len(material), len(k.Material))
		}
		copy(k.Material[:], material)
		clear(material)
		keys = append(keys, k)
	}
	r, err := newKeyRing(keys, kf.Primary)
	for i := range keys {
		clear(keys[i].Material[:])
	}
	return r, err
}

// decodeVersion decodes the key version in field what: a JSON integer from
// 0 to 2^32-1.
func decodeVersion(what string, raw json.RawMessage) (uint32, error) {
	var v uint32
	if err := json.Unmarshal(raw, &v); err != nil || isNull(raw) {
		return 0, jsonError(what, "a whole number from 1 to 4294967295", err)
	}
	return v, nil
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// unknownFields reports fields of m other than allowed. It names a field only
// if its name looks like a field name, not like (a piece of) a key.
func unknownFields(m map[string]json.RawMessage, allowed ...string) error {
	var names []string
	for name := range m {
		if !slices.Contains(allowed, name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	name := names[0]
	want := `"` + strings.Join(allowed, `", "`) + `"`
	if !printableFieldName(name) {
		return fmt.Errorf("unknown field (allowed: %s)", want)
	}
	return fmt.Errorf("unknown field %q (allowed: %s)", name, want)
}

// printableFieldName reports whether an unknown field's name may appear in an
// error: short, and made of lower-case letters, '_' and '-' only.
func printableFieldName(name string) bool {
	if name == "" || len(name) > 16 {
		return false
	}
	for _, c := range name {
		if (c < 'a' || c > 'z') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// jsonError describes a JSON decoding error about the field what (or the
// value at hand, if what is empty), which should be want, without quoting the
// input: only a syntax error's offset is kept.
func jsonError(what, want string, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// se.Error() may quote a character of the input; keep to the offset.
		if strings.HasPrefix(se.Error(), "unexpected end") {
			return fmt.Errorf("not valid JSON: unexpected end of input at byte offset %d", se.Offset)
		}
		return fmt.Errorf("not valid JSON: syntax error at byte offset %d", se.Offset)
	}
	if what == "" {
		return fmt.Errorf("want %s", want)
	}
	return fmt.Errorf("%s: want %s", what, want)
}
