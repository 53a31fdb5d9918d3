// Package spotoken holds the domain of the spotoken token broker: apps,
// connections and their tokens, API keys, pending authorizations, events,
// and the store interfaces that the sqlite and postgres packages implement.
//
// It imports nothing from the rest of the module. Secrets (tokens, client
// secrets, PKCE verifiers) travel as Secret, which never prints itself; the
// stores seal them at rest with the seal package.
package spotoken

import (
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Secret is a credential held in memory: an access or refresh token, a
// client secret, a PKCE verifier. It prints, logs and marshals as
// "[REDACTED]"; call Reveal for the value.
type Secret string

const redacted = "[REDACTED]"

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer without revealing the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from revealing the value.
func (s Secret) GoString() string { return `spotoken.Secret("` + s.String() + `")` }

// LogValue implements slog.LogValuer without revealing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps encoders (JSON, text) from revealing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// State is a connection's life-cycle state.
type State string

// The connection states.
const (
	// StateActive: the connection holds a grant that spotoken refreshes.
	StateActive State = "active"
	// StateNeedsReauth: Spotify refused the refresh token (invalid_grant);
	// the user must authorize again. The sealed refresh token is kept until
	// the connection is deleted, so an explicit retry can undo a false alarm.
	StateNeedsReauth State = "needs_reauth"
	// StateRevoked: the connection was revoked; its tokens are erased.
	StateRevoked State = "revoked"
)

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool {
	return s == StateActive || s == StateNeedsReauth || s == StateRevoked
}

// Scopes is a set of Spotify scopes, kept sorted and without duplicates by
// ParseScopes and Normalize.
type Scopes []string

// ParseScopes splits a space-separated scope string, as OAuth sends it.
func ParseScopes(s string) Scopes { return Scopes(strings.Fields(s)).Normalize() }

// Normalize returns the scopes sorted and without duplicates or empties.
func (s Scopes) Normalize() Scopes {
	out := make(Scopes, 0, len(s))
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// String joins the scopes with spaces, as OAuth sends them.
func (s Scopes) String() string { return strings.Join(s, " ") }

// Has reports whether scope is in s.
func (s Scopes) Has(scope string) bool { return slices.Contains(s, scope) }

// Missing returns the scopes of required that s lacks.
func (s Scopes) Missing(required Scopes) Scopes {
	var out Scopes
	for _, r := range required {
		if !s.Has(r) {
			out = append(out, r)
		}
	}
	return out
}

// Token is a Spotify grant's tokens.
type Token struct {
	AccessToken  Secret
	RefreshToken Secret
	// Expiry is when the access token expires.
	Expiry time.Time
}

// Valid reports whether the access token is present and valid for at least
// minTTL after now.
func (t Token) Valid(now time.Time, minTTL time.Duration) bool {
	return t.AccessToken != "" && now.Add(minTTL).Before(t.Expiry)
}

// App is a Spotify app registration that spotoken brokers for.
type App struct {
	// ID names the app in spotoken (letters, digits, '-', '_', '.').
	ID string
	// ClientID is the Spotify client id.
	ClientID string
	// ClientSecret is the Spotify client secret; empty for a public app,
	// which uses PKCE.
	ClientSecret Secret
	// RedirectURIs are the redirect URIs registered with Spotify for this app.
	RedirectURIs []string
	// DefaultScopes are requested when a connect session names none.
	DefaultScopes Scopes
	// ReturnToOrigins are the origins a connect flow may return the user to.
	ReturnToOrigins []string
	// WebhookURL receives the app's events; empty for none.
	WebhookURL string
	// WebhookSecret signs webhook deliveries (Standard Webhooks: "whsec_"
	// and the base64 of the key); sealed at rest.
	WebhookSecret Secret
	// PreviousClientSecret is, while a client-secret rotation is under
	// way, the secret ClientSecret replaced: spotoken presents it when
	// Spotify refuses ClientSecret (invalid_client), until an operator
	// retires it. Sealed at rest; empty when no rotation is under way.
	PreviousClientSecret Secret
	// PreviousWebhookSecret is, while a webhook-secret rotation is under
	// way, the secret WebhookSecret replaced: every delivery carries a
	// signature under each, until an operator retires it. Sealed at rest.
	PreviousWebhookSecret Secret
	CreatedAt             time.Time
	UpdatedAt             time.Time
}

// ClientSecrets returns the client secrets to present to Spotify, in the
// order to try them: ClientSecret, then PreviousClientSecret while a
// rotation is under way. It is empty for a public client.
func (a *App) ClientSecrets() []Secret {
	var out []Secret
	for _, s := range []Secret{a.ClientSecret, a.PreviousClientSecret} {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// APIKey authenticates a service to spotoken's API on behalf of one app.
// Only the SHA-256 hash of the key is stored.
type APIKey struct {
	// ID identifies the key in lists and for revocation.
	ID    string
	AppID string
	// Name is the operator's label for the key.
	Name string
	// Prefix is the start of the key, shown so people can tell keys apart.
	Prefix string
	// Hash is the SHA-256 of the whole key.
	Hash       [32]byte
	CreatedAt  time.Time
	LastUsedAt time.Time // zero: never used
	RevokedAt  time.Time // zero: active
}

// Revoked reports whether the key has been revoked.
func (k *APIKey) Revoked() bool { return !k.RevokedAt.IsZero() }

// PendingAuthorization is an authorization started at /connect and not yet
// completed at /callback. It is found by the hash of its state parameter and
// can be consumed once.
type PendingAuthorization struct {
	// StateHash is the SHA-256 of the OAuth state parameter.
	StateHash    [32]byte
	AppID        string
	ConnectionID string
	// Verifier is the PKCE code verifier (sealed at rest).
	Verifier Secret
	Scopes   Scopes
	// Login, when not empty, makes this a browser sign-in of that kind
	// ("bff"): its handler names the connection once the exchange has told
	// who the Spotify user is, and answers the browser at the end.
	// ConnectionID is empty then.
	Login string
	// RedirectURI is the redirect URI sent to /authorize, needed again at the exchange.
	RedirectURI string
	// ReturnTo is where to send the user afterwards; empty for spotoken's own page.
	ReturnTo string
	// RequireConfirmation holds the grant apart until the app confirms it
	// (see PendingGrant); it needs a ReturnTo.
	RequireConfirmation bool
	// SkipDialog leaves show_dialog out of the authorize request, so
	// Spotify may skip its consent page for a user who approved before.
	SkipDialog bool
	CreatedAt  time.Time
	ExpiresAt  time.Time
	UsedAt     time.Time // zero: not consumed
}

// ConnectionKey identifies a connection: the app and the app's own id for
// the connected user.
type ConnectionKey struct {
	AppID string
	ID    string
}

// String formats the key as app/connection, safe to log.
func (k ConnectionKey) String() string { return k.AppID + "/" + k.ID }

// Lease is a replica's claim to refresh a connection until ExpiresAt.
type Lease struct {
	Owner     string
	ExpiresAt time.Time
}

// Held reports whether the lease is held by anyone at now.
func (l Lease) Held(now time.Time) bool { return l.Owner != "" && now.Before(l.ExpiresAt) }

// Connection is one Spotify user's grant to one app.
type Connection struct {
	AppID string
	ID    string
	// SpotifyUserID and DisplayName identify the Spotify account.
	SpotifyUserID string
	DisplayName   string
	// Scopes are the scopes Spotify granted (which may be fewer than requested).
	Scopes Scopes
	State  State
	// Token holds the sealed tokens; empty once revoked.
	Token Token
	// Version increases with every update; updates are compare-and-swap on it.
	Version int64
	// Lease is read-only here: change it with the lease methods.
	Lease Lease
	// LastRefreshAt is when a refresh last succeeded.
	LastRefreshAt time.Time
	// ConsecutiveFailures counts transient refresh failures since the last success.
	ConsecutiveFailures int
	// NextAttemptAt holds refreshes back while in backoff; zero for none.
	NextAttemptAt time.Time
	// LastErrorCode is the last refresh error's code (e.g. invalid_grant); empty after success.
	LastErrorCode string
	// ConsentedAt is when the user last authorized; GrantExpiresAt is when
	// Spotify's refresh token will expire regardless of use.
	ConsentedAt    time.Time
	GrantExpiresAt time.Time
	// ExpiryWarnedAt is when the connection.expiring event of the current
	// grant was recorded; zero until then. A new consent clears it, so each
	// grant is warned about once.
	ExpiryWarnedAt time.Time
	CreatedAt      time.Time
	UpdatedAt      time.Time
	// RefreshUnknownAt is when a refresh was sent to Spotify and no answer
	// came (a timeout, a connection cut): Spotify may have rotated the
	// refresh token. Zero after a refresh with a known outcome, or a new
	// consent.
	RefreshUnknownAt time.Time
}

// Key returns the connection's key.
func (c *Connection) Key() ConnectionKey { return ConnectionKey{AppID: c.AppID, ID: c.ID} }

// DueConnection is what the scheduler needs to know of a connection whose
// access token expires soon: no token plaintext.
type DueConnection struct {
	Key     ConnectionKey
	Expiry  time.Time
	Version int64
}

// ConnectionUse says that a caller asked for a connection's token at At
// (see ConnectionStore.MarkUsed).
type ConnectionUse struct {
	Key ConnectionKey
	At  time.Time
}

// DueQuery selects connections for ConnectionStore.DueUsed.
type DueQuery struct {
	// Before: only connections whose access token expires before it.
	Before time.Time
	// UsedSince: only connections last used at or after it (MarkUsed, or
	// their creation); zero selects every connection, used or not.
	UsedSince time.Time
	// After is a cursor in Due's order (expiry, then key): only connections
	// after it. A zero After.Expiry starts at the beginning.
	After DueConnection
	// Limit caps the result; nothing if it is not positive.
	Limit int
}

// EventType names an event.
type EventType string

// The event types.
const (
	EventConnectionCreated EventType = "connection.created"
	// EventConnectionReauthorized: the user authorized an existing
	// connection again; its grant (and perhaps its scopes) was replaced.
	EventConnectionReauthorized EventType = "connection.reauthorized"
	EventConnectionRefreshed    EventType = "connection.refreshed"
	EventConnectionRotated      EventType = "connection.rotated"
	EventConnectionNeedsReauth  EventType = "connection.needs_reauth"
	EventConnectionRevoked      EventType = "connection.revoked"
	// EventConnectionExpiring: the grant expires soon (Spotify's
	// six-month limit); the user must authorize again before
	// GrantExpiresAt. Sent once per grant.
	EventConnectionExpiring EventType = "connection.expiring"
	EventAppError           EventType = "app.error"
	// EventConnectFailed: a user came back from Spotify's consent page but
	// no grant was stored; its data's reason says why (for example
	// user_not_allowlisted: the app is in development mode and the user is
	// not on its allowlist).
	EventConnectFailed EventType = "connect.failed"
)

// Event is an entry in the outbox, delivered to the app's webhook at least once.
type Event struct {
	// ID is assigned by the store, increasing.
	ID           int64
	Type         EventType
	AppID        string
	ConnectionID string
	// Data is the event's JSON payload; it never holds a secret.
	Data          []byte
	CreatedAt     time.Time
	Attempts      int
	NextAttemptAt time.Time
	DeliveredAt   time.Time // zero: not delivered
	LastError     string
}

// ConnectionCount is how many of an app's connections are in a state.
type ConnectionCount struct {
	AppID string
	State State
	Count int
}
