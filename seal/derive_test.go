package seal_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/spotoken/spotoken/seal"
)

func TestDeriveKey(t *testing.T) {
	k1 := seal.Key{Version: 1, Material: [32]byte{1}}
	k2 := seal.Key{Version: 2, Material: [32]byte{2}}
	a, err := seal.NewKeyRing([]seal.Key{k1, k2}, 2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := seal.NewKeyRing([]seal.Key{k1}, 1) // another process, another ring
	if err != nil {
		t.Fatal(err)
	}
	a1, err := a.DeriveKey(1, "audit")
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := b.DeriveKey(1, "audit")
	a2, _ := a.DeriveKey(2, "audit")
	other, _ := a.DeriveKey(1, "other")
	if len(a1) != 32 || !bytes.Equal(a1, b1) {
		t.Errorf("the same key and purpose derive different keys in two rings: %x, %x", a1, b1)
	}
	if bytes.Equal(a1, a2) || bytes.Equal(a1, other) {
		t.Error("another version or another purpose derives the same key")
	}
	if bytes.Equal(a1, k1.Material[:]) {
		t.Error("the derived key is the key's material")
	}
	if _, err := a.DeriveKey(3, "audit"); !errors.Is(err, seal.ErrUnknownKeyVersion) {
		t.Errorf("DeriveKey of an unknown version: %v, want ErrUnknownKeyVersion", err)
	}
}
