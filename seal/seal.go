package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
)

// Sizes of the parts of a ciphertext; see the package documentation.
const (
	formatV1   = 0x01
	headerSize = 1 + 4 // format byte, key version
	nonceSize  = 12
	tagSize    = 16
)

// Overhead is how many bytes longer than its plaintext a ciphertext is: the
// format byte (1), the key version (4), the nonce (12) and the authentication
// tag (16).
const Overhead = 33

// The sizes above must add up.
var _ [0]struct{} = [Overhead - (headerSize + nonceSize + tagSize)]struct{}{}

// ErrUnknownKeyVersion means a ciphertext names a key version that the key
// ring does not hold: it was sealed under a key since removed from the ring,
// or under a key added elsewhere and not yet loaded here. It comes wrapped in
// a [*KeyError] naming the version.
var ErrUnknownKeyVersion = errors.New("not in the key ring")

// ErrDecrypt means a ciphertext failed authentication under the key its
// version names: the key material for that version differs from the one that
// sealed it, the ciphertext was altered, or the associated data does not
// match (for example a ciphertext moved to another row). It comes wrapped in a
// [*KeyError] naming the version.
var ErrDecrypt = errors.New("decryption failed: wrong key, tampered ciphertext, or associated data of another row")

// ErrCorrupt means a ciphertext is not in the format Seal produces: it is too
// short or starts with an unknown format byte. The error wrapping it says
// which.
var ErrCorrupt = errors.New("corrupt ciphertext")

// KeyError is an error that concerns one key version, such as
// [ErrUnknownKeyVersion] or [ErrDecrypt] (its Err).
type KeyError struct {
	Version uint32
	Err     error
}

// Error returns a message like "seal: key version 3: not in the key ring".
func (e *KeyError) Error() string {
	return fmt.Sprintf("seal: key version %d: %v", e.Version, e.Err)
}

// Unwrap returns e.Err, so that errors.Is(err, ErrDecrypt) sees through it.
func (e *KeyError) Unwrap() error { return e.Err }

const redacted = "REDACTED"

// Key is one version of a key: 32 bytes of key material for AES-256.
//
// A Key never shows its material when formatted with fmt (any verb), logged
// with log/slog, or marshalled with encoding/json; all show the version only.
type Key struct {
	// Version identifies the key in ciphertexts. It must not be 0.
	Version uint32
	// Material is the AES-256 key: 32 bytes from a cryptographically secure
	// random source, such as crypto/rand.
	Material [32]byte
}

// String returns the key's version with its material redacted.
func (k Key) String() string {
	return fmt.Sprintf("seal.Key{Version: %d, Material: %s}", k.Version, redacted)
}

// GoString returns the key's version with its material redacted, for %#v.
func (k Key) GoString() string { return k.String() }

// Format makes every fmt verb (%v, %+v, %#v, %s, %x, %d, ...) print
// [Key.String], so that no verb can print the material.
func (k Key) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.String()) }

// LogValue returns the key's version with its material redacted, for log/slog.
func (k Key) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Uint64("version", uint64(k.Version)),
		slog.String("material", redacted),
	)
}

// MarshalJSON returns the key's version with its material redacted, so that a
// Key inside a logged or encoded value does not leak. Key files are written by
// [GenerateKeyFile] and [AddKey], not with this method.
func (k Key) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, `{"version":%d,"material":%q}`, k.Version, redacted), nil
}

// newKey returns a key with the given version and fresh random material.
func newKey(version uint32) (Key, error) {
	k := Key{Version: version}
	if _, err := rand.Read(k.Material[:]); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// KeyRing holds the versions of a key and seals under the primary one.
// Build it with [NewKeyRing], [ParseKeyRing], [LoadKeyFile] or [FromEnv]. It
// is immutable and safe for concurrent use. The zero KeyRing holds no keys:
// Seal fails and Open reports every version as unknown.
type KeyRing struct {
	aeads    map[uint32]cipher.AEAD // GCM with random nonces, by version
	derive   map[uint32][32]byte    // the root of DeriveKey, by version
	primary  uint32
	versions []uint32 // ascending
}

// NewKeyRing returns a key ring holding keys, which seals under the key whose
// version is primary. It returns an error if keys is empty, if a version is 0
// or appears twice, if a key's material is all zeros, or if primary is not
// among the versions.
func NewKeyRing(keys []Key, primary uint32) (*KeyRing, error) {
	r, err := newKeyRing(keys, primary)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return r, nil
}

// newKeyRing is NewKeyRing with errors not prefixed, for ParseKeyRing.
func newKeyRing(keys []Key, primary uint32) (*KeyRing, error) {
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	var zero [32]byte
	r := &KeyRing{aeads: make(map[uint32]cipher.AEAD, len(keys)), derive: make(map[uint32][32]byte, len(keys)), primary: primary}
	for _, k := range keys {
		if k.Version == 0 {
			return nil, errors.New("key version 0: versions start at 1")
		}
		if _, dup := r.aeads[k.Version]; dup {
			return nil, fmt.Errorf("key version %d: appears more than once", k.Version)
		}
		if subtle.ConstantTimeCompare(k.Material[:], zero[:]) == 1 {
			return nil, fmt.Errorf("key version %d: key material is all zeros", k.Version)
		}
		block, err := aes.NewCipher(k.Material[:])
		if err != nil {
			return nil, fmt.Errorf("key version %d: %w", k.Version, err)
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("key version %d: %w", k.Version, err)
		}
		r.aeads[k.Version] = aead
		r.derive[k.Version] = deriveRoot(k.Material)
		r.versions = append(r.versions, k.Version)
	}
	if _, ok := r.aeads[primary]; !ok {
		return nil, fmt.Errorf("primary key version %d is not among the keys (versions %v)", primary, r.versions)
	}
	slices.Sort(r.versions)
	return r, nil
}

// Primary returns the version of the key that Seal uses.
func (r *KeyRing) Primary() uint32 { return r.primary }

// Versions returns the versions of the keys in the ring, in ascending order.
func (r *KeyRing) Versions() []uint32 {
	if r.versions == nil {
		return []uint32{}
	}
	return slices.Clone(r.versions)
}

// Seal encrypts and authenticates plaintext under the primary key with a
// fresh random nonce, and authenticates associatedData (see [AD]), which must
// be given again to Open. Sealing the same plaintext twice gives different
// ciphertexts. The result is [Overhead] bytes longer than plaintext and
// records the primary key's version.
func (r *KeyRing) Seal(plaintext, associatedData []byte) ([]byte, error) {
	aead, ok := r.aeads[r.primary]
	if !ok {
		return nil, errors.New("seal: the key ring holds no keys; build it with NewKeyRing")
	}
	out := make([]byte, headerSize, headerSize+nonceSize+len(plaintext)+tagSize)
	out[0] = formatV1
	binary.BigEndian.PutUint32(out[1:headerSize], r.primary)
	ad := additionalData(out[:headerSize], associatedData)
	// The AEAD draws the 96-bit nonce from the operating system's CSPRNG (as
	// crypto/rand does) and writes it before the GCM ciphertext and tag.
	return aead.Seal(out, nil, plaintext, ad), nil
}

// Open authenticates and decrypts a ciphertext from Seal, with the key whose
// version the ciphertext records and the same associatedData given to Seal.
// Its errors match [ErrCorrupt], [ErrUnknownKeyVersion] or [ErrDecrypt]; the
// last two come in a [*KeyError] naming the version.
func (r *KeyRing) Open(ciphertext, associatedData []byte) ([]byte, error) {
	version, err := parseHeader(ciphertext)
	if err != nil {
		return nil, err
	}
	aead, ok := r.aeads[version]
	if !ok {
		return nil, &KeyError{Version: version, Err: ErrUnknownKeyVersion}
	}
	ad := additionalData(ciphertext[:headerSize], associatedData)
	plaintext, err := aead.Open(nil, nil, ciphertext[headerSize:], ad)
	if err != nil {
		return nil, &KeyError{Version: version, Err: ErrDecrypt}
	}
	return plaintext, nil
}

// Version returns the key version a ciphertext records, without decrypting
// it. Its error matches [ErrCorrupt] if the ciphertext is malformed. The ring
// need not hold the version.
func (r *KeyRing) Version(ciphertext []byte) (uint32, error) {
	return parseHeader(ciphertext)
}

// NeedsReseal reports whether a ciphertext records a key version other than
// the primary one, so that re-sealing it (Open, then Seal) moves it to the
// primary key. That includes versions the ring does not hold, for which Open
// fails; it reports false for a malformed ciphertext.
func (r *KeyRing) NeedsReseal(ciphertext []byte) bool {
	v, err := parseHeader(ciphertext)
	return err == nil && v != r.primary
}

// String returns the ring's versions and its primary version; never key
// material.
func (r *KeyRing) String() string {
	return fmt.Sprintf("seal.KeyRing{Primary: %d, Versions: %v}", r.primary, r.Versions())
}

// GoString is [KeyRing.String], for %#v.
func (r *KeyRing) GoString() string { return r.String() }

// Format makes every fmt verb print [KeyRing.String], so that no verb can
// print the ring's internals, which hold expanded keys.
func (r *KeyRing) Format(f fmt.State, _ rune) { fmt.Fprint(f, r.String()) }

// LogValue returns the ring's versions and its primary version, for log/slog.
func (r *KeyRing) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Uint64("primary", uint64(r.primary)),
		slog.Any("versions", r.Versions()),
	)
}

// parseHeader checks a ciphertext's length and format and returns its key
// version.
func parseHeader(ciphertext []byte) (uint32, error) {
	if len(ciphertext) > 0 && ciphertext[0] != formatV1 {
		return 0, fmt.Errorf("seal: %w: unknown format byte 0x%02x, want 0x%02x", ErrCorrupt, ciphertext[0], formatV1)
	}
	if len(ciphertext) < Overhead {
		return 0, fmt.Errorf("seal: %w: ciphertext truncated: %d bytes, want at least %d", ErrCorrupt, len(ciphertext), Overhead)
	}
	return binary.BigEndian.Uint32(ciphertext[1:headerSize]), nil
}

// additionalData returns the GCM additional data: the ciphertext's header,
// then the caller's associated data. The header has a fixed length, so the
// concatenation is unambiguous. It returns a new slice, which must not
// overlap the AEAD's output.
func additionalData(header, associatedData []byte) []byte {
	ad := make([]byte, 0, len(header)+len(associatedData))
	return append(append(ad, header...), associatedData...)
}

// AD builds associated data for [KeyRing.Seal] and [KeyRing.Open] from parts,
// such as an app ID, a connection ID and a field name. Each part is preceded
// by its length as an unsigned varint (encoding/binary), so that no two
// different lists of parts give the same bytes: AD("ab", "c") differs from
// AD("a", "bc"), and AD("") from AD().
func AD(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += binary.MaxVarintLen64 + len(p)
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}
