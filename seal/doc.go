// Package seal encrypts secrets at rest (refresh tokens, client secrets, PKCE
// verifiers) under versioned, rotatable keys: envelope encryption with
// AES-256 in Galois/Counter Mode (GCM), as specified in NIST SP 800-38D.
//
// A [KeyRing] holds 256-bit keys, each with a version number, one of which is
// the primary key. [KeyRing.Seal] encrypts under the primary key with a fresh
// random 96-bit nonce and records the key's version in the ciphertext;
// [KeyRing.Open] picks the key by that version, so ciphertexts sealed under
// older keys keep opening after a new key becomes primary. Every method of a
// KeyRing is safe for concurrent use.
//
// # Associated data
//
// Seal and Open take associated data: bytes that are authenticated but
// neither encrypted nor stored. Bind each ciphertext to the row and field it
// belongs to, for example AD(appID, connectionID, "refresh_token"); a
// ciphertext copied into another row or column then fails to open with
// [ErrDecrypt]. Build associated data with [AD], which length-prefixes each
// part so that ("ab", "c") and ("a", "bc") differ.
//
// # Ciphertext format
//
//	offset  length  field
//	0       1       format, 0x01
//	1       4       key version, big-endian
//	5       12      nonce, random
//	17      n+16    GCM ciphertext of the n-byte plaintext, then the 16-byte tag
//
// The format byte and the key version are authenticated too: the additional
// data given to GCM is those first 5 bytes followed by the caller's associated
// data. A ciphertext is therefore [Overhead] bytes longer than its plaintext.
//
// # Errors
//
// Open reports a malformed ciphertext (too short, unknown format) with
// [ErrCorrupt]; a key version that the ring does not hold with
// [ErrUnknownKeyVersion]; and a ciphertext that fails authentication (wrong
// key for its version, tampering, or associated data of another row) with
// [ErrDecrypt]. The last two come wrapped in a [*KeyError] naming the
// version. Test for them with [errors.Is] and [errors.As].
//
// # Key files
//
// A key file, and the value of the environment variable named by [EnvVar],
// is JSON:
//
//	{
//	  "primary": 2,
//	  "keys": [
//	    {"version": 1, "key": "<32 random bytes in standard base64>"},
//	    {"version": 2, "key": "<32 random bytes in standard base64>"}
//	  ]
//	}
//
// Versions run from 1 to 4294967295 and are unique; "primary" names one of
// them. Unknown fields are errors. A key file must be readable and writable
// by its owner only (chmod 600): [LoadKeyFile] refuses it otherwise.
// [GenerateKeyFile] creates a key file; [AddKey] adds a key to one and makes
// it primary. Errors never quote key material or the file's content.
//
// # Rotating keys
//
// With one process, or when a short window of errors is acceptable:
//
//  1. Add a key with [AddKey] (spotoken keys add); it becomes the primary.
//  2. Restart every process that uses the file. A process still running with
//     the old file cannot open what the others seal under the new key.
//  3. Re-seal stored ciphertexts (spotoken keys rotate): each one for which
//     [KeyRing.NeedsReseal] reports true is opened and sealed again.
//  4. Only then may an old key be removed from the file.
//
// With several replicas and no window of errors, stage the key first:
//
//  1. [StageKey] (spotoken keys add --staged) adds the key without making it
//     primary; roll the file out and restart every replica. Each can now open
//     what the new key will seal, while all still seal with the old one.
//  2. [PromoteKey] (spotoken keys promote --version N) makes it primary; roll
//     the file out and restart again. During the rollout, replicas on either
//     file open everything the others seal.
//  3. and 4. as above.
//
// NIST SP 800-38D (§8.3) limits a key used with random 96-bit nonces to 2^32
// encryptions; rotate long before any key seals that many secrets.
//
// Key material never appears in errors, nor in the output of fmt, log/slog or
// encoding/json for a [Key] or a [KeyRing].
package seal
