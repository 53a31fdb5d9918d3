package seal_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken/seal"
)

// newKey returns a key with the given version and random material.
func newKey(t testing.TB, version uint32) seal.Key {
	t.Helper()
	k := seal.Key{Version: version}
	rand.Read(k.Material[:])
	return k
}

// newRing returns a ring of the given keys with the given primary.
func newRing(t testing.TB, primary uint32, keys ...seal.Key) *seal.KeyRing {
	t.Helper()
	r, err := seal.NewKeyRing(keys, primary)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// wantKeyError checks that err is a *KeyError for version wrapping target.
func wantKeyError(t *testing.T, err error, version uint32, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v does not match %v", err, target)
	}
	var ke *seal.KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("error %v (%T) is not a *seal.KeyError", err, err)
	}
	if ke.Version != version {
		t.Errorf("KeyError.Version = %d, want %d", ke.Version, version)
	}
	if want := fmt.Sprintf("key version %d", version); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %q", err, want)
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	r := newRing(t, 2, newKey(t, 1), newKey(t, 2))
	tests := []struct {
		name      string
		plaintext []byte
		ad        []byte
	}{
		{"empty", nil, nil},
		{"empty with AD", []byte{}, seal.AD("app", "conn", "refresh_token")},
		{"token", []byte("AQD3x-refresh-token"), seal.AD("app", "conn", "refresh_token")},
		{"binary", []byte{0, 1, 2, 0xff, 0}, []byte{0}},
		{"large", bytes.Repeat([]byte("x"), 1<<16), seal.AD("a")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct, err := r.Seal(tt.plaintext, tt.ad)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(ct), len(tt.plaintext)+seal.Overhead; got != want {
				t.Errorf("len(ciphertext) = %d, want %d", got, want)
			}
			if ct[0] != 0x01 {
				t.Errorf("format byte = %#x, want 0x01", ct[0])
			}
			if len(tt.plaintext) >= 8 && bytes.Contains(ct, tt.plaintext[:8]) {
				t.Error("ciphertext contains the plaintext")
			}
			got, err := r.Open(ct, tt.ad)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(got), string(tt.plaintext)); diff != "" {
				t.Errorf("Open (-got +want):\n%s", diff)
			}
			v, err := r.Version(ct)
			if err != nil {
				t.Fatal(err)
			}
			if v != 2 {
				t.Errorf("Version = %d, want the primary, 2", v)
			}
		})
	}
}

func TestSealFormat(t *testing.T) {
	r := newRing(t, 0x01020304, newKey(t, 0x01020304))
	ct, err := r.Seal([]byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ct[:5], []byte{0x01, 0x01, 0x02, 0x03, 0x04}); diff != "" {
		t.Errorf("header (-got +want):\n%s", diff)
	}
}

func TestSealIsRandomized(t *testing.T) {
	r := newRing(t, 1, newKey(t, 1))
	seen := map[string]bool{}
	for range 100 {
		ct, err := r.Seal([]byte("same plaintext"), seal.AD("same", "row"))
		if err != nil {
			t.Fatal(err)
		}
		nonce := string(ct[5:17])
		if seen[nonce] {
			t.Fatal("two Seals used the same nonce")
		}
		seen[nonce] = true
	}
	a, _ := r.Seal([]byte("same plaintext"), nil)
	b, _ := r.Seal([]byte("same plaintext"), nil)
	if bytes.Equal(a, b) {
		t.Error("two Seals of the same plaintext gave the same ciphertext")
	}
}

func TestOpenWrongAssociatedData(t *testing.T) {
	r := newRing(t, 2, newKey(t, 1), newKey(t, 2))
	sealAD := seal.AD("app1", "conn1", "refresh_token")
	ct, err := r.Seal([]byte("refresh-token"), sealAD)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ad   []byte
	}{
		{"none", nil},
		{"another connection", seal.AD("app1", "conn2", "refresh_token")},
		{"another app", seal.AD("app2", "conn1", "refresh_token")},
		{"another field", seal.AD("app1", "conn1", "client_secret")},
		{"parts run together", []byte("app1conn1refresh_token")},
		{"one byte more", append(bytes.Clone(sealAD), 0)},
		{"one byte less", sealAD[:len(sealAD)-1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Open(ct, tt.ad)
			if got != nil {
				t.Errorf("Open returned plaintext %q", got)
			}
			wantKeyError(t, err, 2, seal.ErrDecrypt)
			if want := "seal: key version 2: decryption failed: wrong key, tampered ciphertext, or associated data of another row"; err.Error() != want {
				t.Errorf("error = %q, want %q", err, want)
			}
		})
	}
}

func TestOpenCiphertextMovedToAnotherRow(t *testing.T) {
	r := newRing(t, 1, newKey(t, 1))
	rows := map[string][]byte{}
	for _, conn := range []string{"alice", "bob"} {
		ct, err := r.Seal([]byte("token of "+conn), seal.AD("app", conn, "refresh_token"))
		if err != nil {
			t.Fatal(err)
		}
		rows[conn] = ct
	}
	// An attacker with write access to the store swaps the two rows.
	if _, err := r.Open(rows["alice"], seal.AD("app", "bob", "refresh_token")); !errors.Is(err, seal.ErrDecrypt) {
		t.Errorf("alice's ciphertext in bob's row: error %v, want ErrDecrypt", err)
	}
	got, err := r.Open(rows["bob"], seal.AD("app", "bob", "refresh_token"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(got), "token of bob"); diff != "" {
		t.Errorf("Open (-got +want):\n%s", diff)
	}
}

func TestOpenEveryBitFlipFails(t *testing.T) {
	r := newRing(t, 2, newKey(t, 1), newKey(t, 2))
	ad := seal.AD("app", "conn", "refresh_token")
	ct, err := r.Seal([]byte("refresh-token"), ad)
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(ct) * 8 {
		flipped := bytes.Clone(ct)
		flipped[i/8] ^= 1 << (i % 8)
		got, err := r.Open(flipped, ad)
		if err == nil {
			t.Fatalf("bit %d flipped: Open succeeded with %q", i, got)
		}
		switch byteIndex := i / 8; {
		case byteIndex == 0:
			if !errors.Is(err, seal.ErrCorrupt) {
				t.Errorf("bit %d (format byte) flipped: error %v, want ErrCorrupt", i, err)
			}
		case byteIndex < 5:
			// Version 2 becomes another version: 1 (held, wrong key) or one
			// the ring does not hold.
			if !errors.Is(err, seal.ErrUnknownKeyVersion) && !errors.Is(err, seal.ErrDecrypt) {
				t.Errorf("bit %d (version) flipped: error %v, want ErrUnknownKeyVersion or ErrDecrypt", i, err)
			}
		default:
			var ke *seal.KeyError
			if !errors.Is(err, seal.ErrDecrypt) || !errors.As(err, &ke) || ke.Version != 2 {
				t.Errorf("bit %d flipped: error %v, want ErrDecrypt for key version 2", i, err)
			}
		}
	}
}

func TestOpenTruncated(t *testing.T) {
	r := newRing(t, 1, newKey(t, 1))
	ct, err := r.Seal([]byte("a refresh token"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(ct) {
		got, err := r.Open(ct[:n], nil)
		if got != nil {
			t.Errorf("Open(%d bytes) returned plaintext", n)
		}
		// Below Overhead the format says it is truncated; beyond, only the
		// authentication tag can tell.
		if n < seal.Overhead {
			if !errors.Is(err, seal.ErrCorrupt) {
				t.Errorf("Open(%d bytes): error %v, want ErrCorrupt", n, err)
			}
			if _, err := r.Version(ct[:n]); !errors.Is(err, seal.ErrCorrupt) {
				t.Errorf("Version(%d bytes): error %v, want ErrCorrupt", n, err)
			}
			if r.NeedsReseal(ct[:n]) {
				t.Errorf("NeedsReseal(%d bytes) = true for a malformed ciphertext", n)
			}
		} else {
			wantKeyError(t, err, 1, seal.ErrDecrypt)
		}
	}
}

func TestOpenCorruptMessages(t *testing.T) {
	r := newRing(t, 1, newKey(t, 1))
	tests := []struct {
		name       string
		ciphertext []byte
		want       string
	}{
		{"empty", nil, "seal: corrupt ciphertext: ciphertext truncated: 0 bytes, want at least 33"},
		{"short", append([]byte{1}, make([]byte, 9)...), "seal: corrupt ciphertext: ciphertext truncated: 10 bytes, want at least 33"},
		{"unknown format", append([]byte{2}, make([]byte, 40)...), "seal: corrupt ciphertext: unknown format byte 0x02, want 0x01"},
		{"plaintext stored by mistake", []byte("AQD3x-refresh-token-stored-in-the-clear"), "seal: corrupt ciphertext: unknown format byte 0x41, want 0x01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Open(tt.ciphertext, nil)
			if !errors.Is(err, seal.ErrCorrupt) {
				t.Fatalf("error %v, want ErrCorrupt", err)
			}
			if diff := cmp.Diff(err.Error(), tt.want); diff != "" {
				t.Errorf("error (-got +want):\n%s", diff)
			}
		})
	}
}

func TestOpenUnknownKeyVersion(t *testing.T) {
	k1, k3 := newKey(t, 1), newKey(t, 3)
	ct, err := newRing(t, 3, k1, k3).Seal([]byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newRing(t, 1, k1)
	_, err = r.Open(ct, nil)
	wantKeyError(t, err, 3, seal.ErrUnknownKeyVersion)
	if diff := cmp.Diff(err.Error(), "seal: key version 3: not in the key ring"); diff != "" {
		t.Errorf("error (-got +want):\n%s", diff)
	}
	if !r.NeedsReseal(ct) {
		t.Error("NeedsReseal = false for a version the ring does not hold")
	}
}

func TestOpenWrongKeyMaterial(t *testing.T) {
	ct, err := newRing(t, 2, newKey(t, 2)).Seal([]byte("secret"), seal.AD("row"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = newRing(t, 2, newKey(t, 2)).Open(ct, seal.AD("row"))
	wantKeyError(t, err, 2, seal.ErrDecrypt)
}

func TestZeroKeyRing(t *testing.T) {
	var r seal.KeyRing
	if _, err := r.Seal([]byte("x"), nil); err == nil {
		t.Error("Seal on the zero KeyRing succeeded")
	}
	ct, err := newRing(t, 1, newKey(t, 1)).Seal([]byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Open(ct, nil)
	wantKeyError(t, err, 1, seal.ErrUnknownKeyVersion)
	if diff := cmp.Diff(r.Versions(), []uint32{}); diff != "" {
		t.Errorf("Versions (-got +want):\n%s", diff)
	}
}

func TestNewKeyRing(t *testing.T) {
	k1, k2 := newKey(t, 1), newKey(t, 2)
	tests := []struct {
		name    string
		keys    []seal.Key
		primary uint32
		wantErr string // empty: no error
	}{
		{"one key", []seal.Key{k1}, 1, ""},
		{"older primary", []seal.Key{k2, k1}, 1, ""},
		{"no keys", nil, 1, "seal: no keys"},
		{"version 0", []seal.Key{{Version: 0, Material: k1.Material}}, 0, "seal: key version 0: versions start at 1"},
		{"duplicate", []seal.Key{k1, {Version: 1, Material: k2.Material}}, 1, "seal: key version 1: appears more than once"},
		{"primary missing", []seal.Key{k1, k2}, 3, "seal: primary key version 3 is not among the keys (versions [1 2])"},
		{"all-zero material", []seal.Key{{Version: 1}}, 1, "seal: key version 1: key material is all zeros"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := seal.NewKeyRing(tt.keys, tt.primary)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("NewKeyRing succeeded, want error %q", tt.wantErr)
				}
				if diff := cmp.Diff(err.Error(), tt.wantErr); diff != "" {
					t.Errorf("error (-got +want):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Primary() != tt.primary {
				t.Errorf("Primary = %d, want %d", r.Primary(), tt.primary)
			}
			ct, err := r.Seal([]byte("x"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := r.Version(ct); v != tt.primary {
				t.Errorf("Seal used key version %d, want the primary, %d", v, tt.primary)
			}
		})
	}
}

func TestVersionsAndNeedsReseal(t *testing.T) {
	k1, k2, k5 := newKey(t, 1), newKey(t, 2), newKey(t, 5)
	old := newRing(t, 1, k1)
	r := newRing(t, 2, k5, k2, k1)
	if diff := cmp.Diff(r.Versions(), []uint32{1, 2, 5}); diff != "" {
		t.Errorf("Versions (-got +want):\n%s", diff)
	}
	r.Versions()[0] = 99 // a copy: must not change the ring
	if diff := cmp.Diff(r.Versions(), []uint32{1, 2, 5}); diff != "" {
		t.Errorf("Versions after changing a returned slice (-got +want):\n%s", diff)
	}
	ctOld, _ := old.Seal([]byte("x"), nil)
	ctNew, _ := r.Seal([]byte("x"), nil)
	if !r.NeedsReseal(ctOld) {
		t.Error("NeedsReseal(sealed under 1) = false with primary 2")
	}
	if r.NeedsReseal(ctNew) {
		t.Error("NeedsReseal(sealed under 2) = true with primary 2")
	}
}

func TestAD(t *testing.T) {
	distinct := [][]string{
		{},
		{""},
		{"", ""},
		{"ab", "c"},
		{"a", "bc"},
		{"abc"},
		{"a", "b", "c"},
		{"app", "conn", "refresh_token"},
		{"app", "conn", "client_secret"},
		{"appconn", "refresh_token"},
	}
	seen := map[string][]string{}
	for _, parts := range distinct {
		ad := string(seal.AD(parts...))
		if other, dup := seen[ad]; dup {
			t.Errorf("AD(%q) = AD(%q)", parts, other)
		}
		seen[ad] = parts
	}
	if diff := cmp.Diff(seal.AD("ab", "c"), []byte("\x02ab\x01c")); diff != "" {
		t.Errorf("AD(\"ab\", \"c\") (-got +want):\n%s", diff)
	}
}

func TestConcurrentUse(t *testing.T) {
	r := newRing(t, 2, newKey(t, 1), newKey(t, 2))
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 50 {
				ad := seal.AD(fmt.Sprint(i), fmt.Sprint(j))
				pt := fmt.Appendf(nil, "token %d/%d", i, j)
				ct, err := r.Seal(pt, ad)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := r.Open(ct, ad)
				if err != nil || !bytes.Equal(got, pt) {
					t.Errorf("Open = %q, %v; want %q", got, err, pt)
					return
				}
			}
		})
	}
	wg.Wait()
}

// materialForms returns the ways key material might show up in output.
func materialForms(material []byte) []string {
	return []string{
		base64.StdEncoding.EncodeToString(material),
		base64.RawStdEncoding.EncodeToString(material),
		base64.URLEncoding.EncodeToString(material),
		hex.EncodeToString(material),
		strings.ToUpper(hex.EncodeToString(material)),
		fmt.Sprint(material),            // [12 34 ...]
		fmt.Sprintf("%v", material[:4]), // a prefix in decimal
		fmt.Sprintf("%#v", material[:4]),
		hex.EncodeToString(material[:4]),
		string(material[:8]),
	}
}

func checkNoMaterial(t *testing.T, what, out string, keys ...seal.Key) {
	t.Helper()
	for _, k := range keys {
		for _, form := range materialForms(k.Material[:]) {
			if strings.Contains(out, strings.Trim(form, "[]")) {
				t.Errorf("%s shows key material (%q) of version %d:\n%s", what, form, k.Version, out)
			}
		}
	}
}

func TestKeyRedaction(t *testing.T) {
	k1, k2 := newKey(t, 1), newKey(t, 2)
	r := newRing(t, 2, k1, k2)
	type holder struct {
		Key  seal.Key
		Ring *seal.KeyRing
	}
	h := holder{k1, r}
	outputs := map[string]string{
		"%v %+v %#v":          fmt.Sprintf("%v %+v %#v", k1, k1, k1),
		"%s %x %X %d %q":      fmt.Sprintf("%s %x %X %d %q", k1, k1, k1, k1, k1),
		"pointer":             fmt.Sprintf("%v %+v %#v %x", &k1, &k1, &k1, &k1),
		"slice":               fmt.Sprintf("%v %+v %#v %x", []seal.Key{k1, k2}, []seal.Key{k1, k2}, []seal.Key{k1, k2}, []seal.Key{k1, k2}),
		"struct holding both": fmt.Sprintf("%v %+v %#v %x", h, h, h, h),
		"ring":                fmt.Sprintf("%v %+v %#v %s %x %d", r, r, r, r, r, r),
		"ring by value":       fmt.Sprintf("%v %+v %#v", *r, *r, *r),
		"Print":               fmt.Sprint(k1, r) + fmt.Sprintln(k1, r),
		"String":              k1.String() + k1.GoString() + r.String() + r.GoString(),
	}
	jsonOut, err := json.Marshal(map[string]any{"key": k1, "keys": []seal.Key{k1, k2}, "holder": h})
	if err != nil {
		t.Fatal(err)
	}
	outputs["encoding/json"] = string(jsonOut)
	for _, newHandler := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		var buf bytes.Buffer
		log := slog.New(newHandler(&buf))
		log.Info("keys", "key", k1, "ring", r, "keys", []seal.Key{k1, k2}, "holder", h, slog.Any("ptr", &k2))
		outputs[fmt.Sprintf("slog %T", log.Handler())] = buf.String()
	}
	for what, out := range outputs {
		checkNoMaterial(t, what, out, k1, k2)
		if !strings.Contains(out, "1") {
			t.Errorf("%s does not show the version: %s", what, out)
		}
	}

	if diff := cmp.Diff(fmt.Sprintf("%v", k1), "seal.Key{Version: 1, Material: REDACTED}"); diff != "" {
		t.Errorf("%%v of a Key (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(fmt.Sprintf("%v", r), "seal.KeyRing{Primary: 2, Versions: [1 2]}"); diff != "" {
		t.Errorf("%%v of a KeyRing (-got +want):\n%s", diff)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: dropTime})).Info("loaded", "ring", r, "key", k2)
	want := `{"level":"INFO","msg":"loaded","ring":{"primary":2,"versions":[1,2]},"key":{"version":2,"material":"REDACTED"}}` + "\n"
	if diff := cmp.Diff(buf.String(), want); diff != "" {
		t.Errorf("slog JSON (-got +want):\n%s", diff)
	}
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
