// Package rowseal is the one place where the stores seal and open secrets:
// client secrets, access and refresh tokens, PKCE verifiers. Each sealed
// value is bound by associated data to its table, column and row, so a
// ciphertext copied into another row, or another column, fails to open.
//
// Both store packages use it, so a secret sealed by one opens in the other
// and the binding is defined once.
package rowseal

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
)

// adVersion versions the associated-data layout.
const adVersion = "spotoken/v1"

// Field names one sealed column of one row.
type Field struct {
	Table, Column string
	Row           []string
}

// String names the field for error messages, without any secret.
func (f Field) String() string {
	return f.Table + "." + f.Column + " of " + strings.Join(f.Row, "/")
}

func (f Field) ad() []byte {
	return seal.AD(append([]string{adVersion, f.Table, f.Column}, f.Row...)...)
}

// AppSecret is an app's client secret.
func AppSecret(appID string) Field {
	return Field{Table: "apps", Column: "client_secret", Row: []string{appID}}
}

// AccessToken is a connection's access token.
func AccessToken(k spotoken.ConnectionKey) Field {
	return Field{Table: "connections", Column: "access_token", Row: []string{k.AppID, k.ID}}
}

// RefreshToken is a connection's refresh token.
func RefreshToken(k spotoken.ConnectionKey) Field {
	return Field{Table: "connections", Column: "refresh_token", Row: []string{k.AppID, k.ID}}
}

// Verifier is a pending authorization's PKCE verifier.
func Verifier(appID, connectionID string, stateHash [32]byte) Field {
	return Field{Table: "pending_authorizations", Column: "verifier", Row: []string{appID, connectionID, hex.EncodeToString(stateHash[:])}}
}

// Codec seals and opens fields with a key ring. It is safe for concurrent use.
type Codec struct {
	keys *seal.KeyRing
}

// New returns a codec for keys.
func New(keys *seal.KeyRing) *Codec { return &Codec{keys: keys} }

// Seal seals s for f. An empty secret seals to nil, stored as NULL.
func (c *Codec) Seal(f Field, s spotoken.Secret) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	ct, err := c.keys.Seal([]byte(s.Reveal()), f.ad())
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", f, err)
	}
	return ct, nil
}

// Open opens f's ciphertext. Nil or empty opens to the empty secret. Errors
// name the field and row and wrap seal's typed errors.
func (c *Codec) Open(f Field, ct []byte) (spotoken.Secret, error) {
	if len(ct) == 0 {
		return "", nil
	}
	pt, err := c.keys.Open(ct, f.ad())
	if err != nil {
		return "", fmt.Errorf("open %s: %w", f, err)
	}
	return spotoken.Secret(pt), nil
}

// Reseal re-seals ct under the primary key if it was sealed under another,
// reporting whether it did.
func (c *Codec) Reseal(f Field, ct []byte) ([]byte, bool, error) {
	if len(ct) == 0 || !c.keys.NeedsReseal(ct) {
		return ct, false, nil
	}
	s, err := c.Open(f, ct)
	if err != nil {
		return nil, false, err
	}
	out, err := c.Seal(f, s)
	return out, err == nil, err
}

// SealToken seals a connection's two tokens.
func (c *Codec) SealToken(k spotoken.ConnectionKey, t spotoken.Token) (access, refresh []byte, err error) {
	if access, err = c.Seal(AccessToken(k), t.AccessToken); err != nil {
		return nil, nil, err
	}
	if refresh, err = c.Seal(RefreshToken(k), t.RefreshToken); err != nil {
		return nil, nil, err
	}
	return access, refresh, nil
}

// OpenToken opens a connection's two tokens.
func (c *Codec) OpenToken(k spotoken.ConnectionKey, access, refresh []byte) (at, rt spotoken.Secret, err error) {
	if at, err = c.Open(AccessToken(k), access); err != nil {
		return "", "", fmt.Errorf("connection %s: %w", k, err)
	}
	if rt, err = c.Open(RefreshToken(k), refresh); err != nil {
		return "", "", fmt.Errorf("connection %s: %w", k, err)
	}
	return at, rt, nil
}
