package seal

import (
	"crypto/hmac"
	"crypto/sha256"
)

// deriveRoot is the key from which DeriveKey derives, itself derived from a
// key's material so that no derived key is the AES key or reveals it.
func deriveRoot(material [32]byte) [32]byte {
	m := hmac.New(sha256.New, material[:])
	m.Write([]byte("spotoken seal derive\x00"))
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// DeriveKey returns a 32-byte key for purpose, derived (HMAC-SHA256) from
// the key of version: the same for the same key and purpose in every
// process, different for every purpose, and of no use for opening what the
// key sealed. The audit trail's fingerprints use it.
func (r *KeyRing) DeriveKey(version uint32, purpose string) ([]byte, error) {
	root, ok := r.derive[version]
	if !ok {
		return nil, &KeyError{Version: version, Err: ErrUnknownKeyVersion}
	}
	m := hmac.New(sha256.New, root[:])
	m.Write([]byte(purpose))
	return m.Sum(nil), nil
}
