package seal_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/spotoken/spotoken/seal"
)

// fuzzRing returns a fixed ring of versions 1 and 2 with the given primary,
// so that inputs found by the fuzzer (testdata/fuzz) stay meaningful.
func fuzzRing(t testing.TB, primary uint32) *seal.KeyRing {
	t.Helper()
	k1 := seal.Key{Version: 1, Material: [32]byte(bytes.Repeat([]byte{0x11}, 32))}
	k2 := seal.Key{Version: 2, Material: [32]byte(bytes.Repeat([]byte{0x22}, 32))}
	return newRing(t, primary, k1, k2)
}

func FuzzOpen(f *testing.F) {
	r := fuzzRing(f, 2)
	ad := seal.AD("app", "conn", "refresh_token")
	for _, sealer := range []*seal.KeyRing{r, fuzzRing(f, 1)} {
		for _, pt := range []string{"", "refresh-token", strings.Repeat("x", 100)} {
			ct, err := sealer.Seal([]byte(pt), ad)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(ct, ad)
			f.Add(ct, []byte{})
			f.Add(ct[:len(ct)-1], ad)
			f.Add(ct[:seal.Overhead-1], ad)
		}
	}
	f.Add([]byte{}, []byte{})
	f.Add([]byte{1, 0, 0, 0, 3}, []byte{})
	f.Add(append([]byte{1, 0, 0, 0, 9}, make([]byte, 40)...), []byte("x"))
	f.Add(append([]byte{2, 0, 0, 0, 1}, make([]byte, 40)...), []byte("x"))

	f.Fuzz(func(t *testing.T, ciphertext, associatedData []byte) {
		pt, err := r.Open(ciphertext, associatedData)
		v, verr := r.Version(ciphertext)
		reseal := r.NeedsReseal(ciphertext)
		if err == nil {
			// Only a genuine ciphertext opens: one of the seeds.
			if verr != nil || (v != 1 && v != 2) {
				t.Fatalf("Open succeeded but Version = %d, %v", v, verr)
			}
			if reseal != (v != 2) {
				t.Errorf("NeedsReseal = %t for version %d", reseal, v)
			}
			again, err := r.Seal(pt, associatedData)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := r.Open(again, associatedData); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("re-sealed plaintext did not round-trip: %v", err)
			}
			return
		}
		if pt != nil {
			t.Errorf("Open failed (%v) but returned plaintext", err)
		}
		switch {
		case errors.Is(err, seal.ErrCorrupt):
			if !errors.Is(verr, seal.ErrCorrupt) || reseal {
				t.Errorf("Open: %v, but Version: %d, %v and NeedsReseal: %t", err, v, verr, reseal)
			}
		case errors.Is(err, seal.ErrUnknownKeyVersion), errors.Is(err, seal.ErrDecrypt):
			var ke *seal.KeyError
			if !errors.As(err, &ke) {
				t.Fatalf("Open: %v (%T) is not a *KeyError", err, err)
			}
			if verr != nil || ke.Version != v {
				t.Errorf("Open: %v names version %d, Version says %d, %v", err, ke.Version, v, verr)
			}
			if reseal != (v != 2) {
				t.Errorf("NeedsReseal = %t for version %d", reseal, v)
			}
			if errors.Is(err, seal.ErrDecrypt) != (v == 1 || v == 2) {
				t.Errorf("Open: %v for version %d", err, v)
			}
		default:
			t.Fatalf("Open: unexpected error %v (%T)", err, err)
		}
	})
}

func FuzzParseKeyRing(f *testing.F) {
	k1 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x11}, 32))
	k2 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x22}, 32))
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x33}, 31))
	for _, s := range []string{
		`{"primary": 2, "keys": [{"version": 1, "key": "` + k1 + `"}, {"version": 2, "key": "` + k2 + `"}]}`,
		`{"primary": 1, "keys": [{"version": 1, "key": "` + short + `"}]}`,
		`{"primary": 1, "keys": [{"version": 1, "key": "` + k1 + `", "` + k2 + `": 1}]}`,
		`{"primary": 1, "keys": [{"version": 1, "key": "` + k1 + `"}], "` + k2 + `": "` + k1 + `"}`,
		`{"primary": "` + k1 + `", "keys": []}`,
		`{"primary": 1, "keys": [{"version": "` + k1 + `", "key": 1}]}`,
		`{"primary": 1, "keys": [{"version": 1, "key": "` + k1[:20] + `"}]}`,
		`{"primary": 1, "keys": ["` + k1 + `"]}`,
		`{"primary": 1, "keys": [{"version": 1, "key": "` + k1 + `"`,
		`"` + k1 + `"`,
		`{"primary": 1, "keys": [{"version": 1, "key": "` + k1 + `"}]} trailing ` + k2,
		`{"primary": 12345678901234567890123456789012345678901234567890, "keys": []}`,
		``,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := seal.ParseKeyRing(data)
		if err != nil {
			if r != nil {
				t.Error("ParseKeyRing failed but returned a ring")
			}
			if s := leakedBase64(err.Error(), data); s != "" {
				t.Fatalf("error %q quotes %q from the input", err, s)
			}
			return
		}
		if !containsVersion(r.Versions(), r.Primary()) {
			t.Fatalf("primary %d not among versions %v", r.Primary(), r.Versions())
		}
		if s := leakedBase64(r.String(), data); s != "" {
			t.Fatalf("String %q quotes %q from the input", r.String(), s)
		}
		ad := seal.AD("fuzz")
		ct, err := r.Seal(data, ad)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.Open(ct, ad)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round trip through the parsed ring failed: %v", err)
		}
	})
}

// leakedBase64 returns a 44-character run of base64 characters (the length of
// an encoded 32-byte key) that appears both in text and in input, or "".
func leakedBase64(text string, input []byte) string {
	const n = 44
	for i := 0; i+n <= len(text); i++ {
		s := text[i : i+n]
		if strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") == "" && bytes.Contains(input, []byte(s)) {
			return s
		}
	}
	return ""
}

func containsVersion(versions []uint32, v uint32) bool {
	for _, x := range versions {
		if x == v {
			return true
		}
	}
	return false
}
