// Package rowseal is the one place where the stores seal and open secrets:
// client secrets, webhook signing secrets, access and refresh tokens, PKCE
// verifiers. Each sealed value is bound by associated data to its table,
// column and row, so a ciphertext copied into another row, or another
// column, fails to open.
//
// Both store packages use it, so a secret sealed by one opens in the other
// and the binding is defined once.
package rowseal

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
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

// WebhookSecret is the secret that signs an app's webhook deliveries.
func WebhookSecret(appID string) Field {
	return Field{Table: "apps", Column: "webhook_secret", Row: []string{appID}}
}

// PreviousAppSecret is the client secret an app's current one replaced,
// kept while a rotation is under way.
func PreviousAppSecret(appID string) Field {
	return Field{Table: "apps", Column: "previous_client_secret", Row: []string{appID}}
}

// PreviousWebhookSecret is the webhook secret an app's current one
// replaced, kept while a rotation is under way.
func PreviousWebhookSecret(appID string) Field {
	return Field{Table: "apps", Column: "previous_webhook_secret", Row: []string{appID}}
}

// AppToken is an app's client-credentials access token.
func AppToken(appID string) Field {
	return Field{Table: "app_tokens", Column: "access_token", Row: []string{appID}}
}

// SealedApp is an app's secret ciphertexts as a store keeps them, nil for
// an empty secret.
type SealedApp struct{ Client, Webhook, PrevClient, PrevWebhook []byte }

// AppSecretField is one of an app's secrets, its field and its ciphertext.
type AppSecretField struct {
	Field  Field
	Secret *spotoken.Secret
	Sealed *[]byte
}

// AppSecrets pairs each of app's secrets with its field and its
// ciphertext in sa, so a store seals, opens or compares them in one loop.
func AppSecrets(app *spotoken.App, sa *SealedApp) []AppSecretField {
	return []AppSecretField{
		{AppSecret(app.ID), &app.ClientSecret, &sa.Client},
		{WebhookSecret(app.ID), &app.WebhookSecret, &sa.Webhook},
		{PreviousAppSecret(app.ID), &app.PreviousClientSecret, &sa.PrevClient},
		{PreviousWebhookSecret(app.ID), &app.PreviousWebhookSecret, &sa.PrevWebhook},
	}
}

// AppField names the sealed column of the apps table called column, for a
// store that walks the table's columns; ok is false for a column that holds
// no secret.
func AppField(appID, column string) (f Field, ok bool) {
	switch column {
	case "client_secret":
		return AppSecret(appID), true
	case "webhook_secret":
		return WebhookSecret(appID), true
	case "previous_client_secret":
		return PreviousAppSecret(appID), true
	case "previous_webhook_secret":
		return PreviousWebhookSecret(appID), true
	}
	return Field{}, false
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

// PendingGrantToken is one token (column access_token or refresh_token) of
// a grant waiting for its app's confirmation.
func PendingGrantToken(appID, connectionID string, codeHash [32]byte, column string) Field {
	return Field{Table: "pending_grants", Column: column, Row: []string{appID, connectionID, hex.EncodeToString(codeHash[:])}}
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

// SealPendingGrant seals the two tokens of a grant waiting for its app's
// confirmation, and checks it has an expiry.
func (c *Codec) SealPendingGrant(g *spotoken.PendingGrant) (access, refresh []byte, err error) {
	if g.ExpiresAt.IsZero() {
		return nil, nil, spotoken.Errorf(spotoken.EInvalid, "pending grant has no expiry")
	}
	if access, err = c.Seal(PendingGrantToken(g.AppID, g.ConnectionID, g.CodeHash, "access_token"), g.Token.AccessToken); err != nil {
		return nil, nil, err
	}
	if refresh, err = c.Seal(PendingGrantToken(g.AppID, g.ConnectionID, g.CodeHash, "refresh_token"), g.Token.RefreshToken); err != nil {
		return nil, nil, err
	}
	return access, refresh, nil
}

// OpenPendingGrant opens the two tokens of g (whose row fields are read)
// into g.Token.
func (c *Codec) OpenPendingGrant(g *spotoken.PendingGrant, access, refresh []byte) (err error) {
	if g.Token.AccessToken, err = c.Open(PendingGrantToken(g.AppID, g.ConnectionID, g.CodeHash, "access_token"), access); err != nil {
		return err
	}
	g.Token.RefreshToken, err = c.Open(PendingGrantToken(g.AppID, g.ConnectionID, g.CodeHash, "refresh_token"), refresh)
	return err
}

// keyCheckText is the known plaintext of a key-check row.
const keyCheckText = "spotoken key check"

// KeyCheck is the key-check row of a key version: a known plaintext sealed
// under that version, so a store can tell at open whether its key ring holds
// the keys its data was sealed with.
func KeyCheck(version uint32) Field {
	return Field{Table: "key_checks", Column: "sealed", Row: []string{strconv.FormatUint(uint64(version), 10)}}
}

// Primary returns the version of the key that seals new values.
func (c *Codec) Primary() uint32 { return c.keys.Primary() }

// VerifyKeyChecks checks a store's key-check rows (version → sealed) against
// the key ring: every version that sealed data must be in the ring, with
// the same key. The error names the version and says what to do. When the
// primary key has no check yet, it returns the row to record (sealed is nil
// when there is nothing to record).
func (c *Codec) VerifyKeyChecks(checks map[uint32][]byte) (version uint32, sealed []byte, err error) {
	if err := c.verifyKeyChecks(checks); err != nil {
		return 0, nil, err
	}
	version = c.keys.Primary()
	if _, ok := checks[version]; ok {
		return version, nil, nil
	}
	sealed, err = c.Seal(KeyCheck(version), keyCheckText)
	return version, sealed, err
}

func (c *Codec) verifyKeyChecks(checks map[uint32][]byte) error {
	versions := make([]uint32, 0, len(checks))
	for v := range checks {
		versions = append(versions, v)
	}
	slices.Sort(versions)
	for _, v := range versions {
		if !slices.Contains(c.keys.Versions(), v) {
			return fmt.Errorf("the database holds data sealed with key version %d, which the key ring lacks: "+
				"use the key file that has it, or keep it until 'spotoken keys rotate' has re-sealed everything: %w",
				v, &seal.KeyError{Version: v, Err: seal.ErrUnknownKeyVersion})
		}
		got, err := c.Open(KeyCheck(v), checks[v])
		if err != nil {
			return fmt.Errorf("key version %d of the key ring is not the key this database was sealed with (wrong key file?): %w", v, err)
		}
		if got != keyCheckText {
			return fmt.Errorf("key version %d: key check holds an unexpected value", v)
		}
	}
	return nil
}
