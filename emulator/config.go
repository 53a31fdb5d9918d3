package emulator

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Defaults applied by New when the corresponding Config field is zero.
const (
	DefaultTokenTTL        = time.Hour
	DefaultCodeTTL         = 10 * time.Minute
	DefaultRefreshLifetime = 4380 * time.Hour // six months, Spotify's absolute refresh-token lifetime
	DefaultClientID        = "spotoken-demo"
	DefaultRedirectURI     = "http://127.0.0.1:8080/callback"

	// RateWindow is the rolling window over which Config.RateLimit is counted,
	// as Spotify computes its rate limit.
	RateWindow = 30 * time.Second

	// DefaultExpiredGrantDescription is the error_description of the
	// invalid_grant for a refresh token past its RefreshLifetime.
	DefaultExpiredGrantDescription = "Refresh token expired"

	// MaxAllowlist is how many users a development-mode app may have on
	// its allowlist (Spotify, since 2026-02/03).
	MaxAllowlist = 5
)

// Config describes one emulator. The zero value is usable: it registers the
// public demo client and uses Spotify's default lifetimes.
type Config struct {
	// Clients are the registered apps. Empty means one public client,
	// DefaultClientID, with redirect URI DefaultRedirectURI.
	Clients []Client

	// AutoApprove, when set, approves every valid /authorize request as this
	// user without showing the consent page (for scripts and tests). The user
	// is created on first use.
	AutoApprove string

	// Rotation says what a refresh does to the refresh token.
	Rotation Rotation

	// TokenTTL is the access-token lifetime (expires_in). Default one hour.
	TokenTTL time.Duration

	// CodeTTL is how long an authorization code can be exchanged. Default 10 minutes.
	CodeTTL time.Duration

	// RefreshLifetime is the absolute lifetime of a grant's refresh tokens,
	// counted from the user's consent; refreshing does not extend it.
	// Default six months (4380h). Negative disables the limit.
	RefreshLifetime time.Duration

	// RateLimit is the number of Web API requests one client may make in any
	// RateWindow before it gets 429 with Retry-After. Zero means no limit.
	RateLimit int

	// DevelopmentMode models apps in Spotify's development mode since
	// 2026-02/03: /v1/me omits country, email, explicit_content, followers
	// and product; tracks and artists have no popularity, artists no
	// followers; a playlist's tracks are under "items"; and
	// POST /v1/users/{user_id}/playlists answers 403 Forbidden (use
	// POST /v1/me/playlists).
	DevelopmentMode bool

	// Legacy401 makes the Web API refuse a missing, unknown or expired
	// access token as Spotify did before 2026-07: "No token provided",
	// "Invalid access token" or "The access token expired", each with its
	// WWW-Authenticate challenge. By default it answers all three with
	// today's "Missing/invalid/expired access token".
	Legacy401 bool

	// ExpiredGrantDescription is the error_description of the invalid_grant
	// that refreshing a grant past its RefreshLifetime answers. Default
	// DefaultExpiredGrantDescription; Spotify has also been seen answering
	// "Refresh token revoked" (felix-hilden/tekore#349), so a client must
	// tell an expired grant by its own clock, not by this text.
	ExpiredGrantDescription string

	// Now is the base clock; the emulator's virtual clock is Now plus every
	// Advance. Default time.Now.
	Now func() time.Time

	// Logger receives one line per request (method, path, status; never a
	// token or a query string). Default: discard.
	Logger *slog.Logger
}

// Client is a registered app.
type Client struct {
	// ID is the client id.
	ID string
	// Secret is the client secret. Empty makes a public client, which must use
	// PKCE and cannot use the client-credentials grant.
	Secret string
	// RedirectURIs are the registered redirect URIs, matched exactly, except that
	// a loopback URI registered without a port matches any port (RFC 8252).
	RedirectURIs []string
	// Allowlist, when not empty, models a development-mode app's user
	// list: users not on it can log in and get tokens, but the Web API
	// answers them 403 with the plain text "User not registered in the
	// Developer Dashboard". At most MaxAllowlist users.
	Allowlist []string
}

// ErrUnknownClient is returned for a client id the emulator does not have.
var ErrUnknownClient = errors.New("emulator: unknown client")

// SetAllowlist replaces clientID's allowlist, as the app's owner does in
// Spotify's dashboard; an empty list takes the client out of development
// mode's user limit. Issued tokens are judged by the new list at once.
func (e *Emulator) SetAllowlist(clientID string, users []string) error {
	c := e.clients[clientID]
	if c == nil {
		return fmt.Errorf("%w: %q", ErrUnknownClient, clientID)
	}
	check := *c
	check.Allowlist = users
	if err := check.validate(); err != nil {
		return err
	}
	e.mu.Lock()
	c.Allowlist = append([]string(nil), users...)
	e.mu.Unlock()
	return nil
}

// ParseAllowlist parses the --allowlist flag syntax [CLIENT_ID=]USER[,USER…]:
// the users a development-mode client serves; without CLIENT_ID, every
// registered client.
func ParseAllowlist(s string) (clientID string, users []string, err error) {
	list := s
	if id, rest, ok := strings.Cut(s, "="); ok {
		clientID, list = id, rest
		if clientID == "" {
			return "", nil, fmt.Errorf("allowlist %q: empty client id before '='", s)
		}
	}
	for _, u := range strings.Split(list, ",") {
		u = strings.TrimSpace(u)
		if !userIDPattern.MatchString(u) {
			return "", nil, fmt.Errorf("allowlist %q: user %q: want 1 to 64 of A-Z a-z 0-9 . _ -", s, u)
		}
		users = append(users, u)
	}
	return clientID, users, nil
}

// ParseClient parses the --client flag syntax ID[:SECRET]=REDIRECT_URI[,REDIRECT_URI…].
func ParseClient(s string) (Client, error) {
	idPart, uris, ok := strings.Cut(s, "=")
	if !ok {
		return Client{}, fmt.Errorf("client %q: want ID[:SECRET]=REDIRECT_URI[,REDIRECT_URI...]", redactClientSpec(s))
	}
	id, secret, _ := strings.Cut(idPart, ":")
	c := Client{ID: id, Secret: secret}
	for _, u := range strings.Split(uris, ",") {
		c.RedirectURIs = append(c.RedirectURIs, strings.TrimSpace(u))
	}
	if err := c.validate(); err != nil {
		return Client{}, err
	}
	return c, nil
}

// redactClientSpec keeps a secret out of error messages about a malformed flag.
func redactClientSpec(s string) string {
	head, tail, hasEq := strings.Cut(s, "=")
	if id, _, hasSecret := strings.Cut(head, ":"); hasSecret {
		head = id + ":REDACTED"
	}
	if hasEq {
		return head + "=" + tail
	}
	return head
}

func (c Client) validate() error {
	if c.ID == "" {
		return errors.New("client: empty client id")
	}
	if strings.ContainsAny(c.ID, " \t\r\n:=,") {
		return fmt.Errorf("client %q: client id contains a space or one of :=,", c.ID)
	}
	if len(c.RedirectURIs) == 0 {
		return fmt.Errorf("client %q: no redirect URI", c.ID)
	}
	for _, u := range c.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return fmt.Errorf("client %q: %w", c.ID, err)
		}
	}
	if len(c.Allowlist) > MaxAllowlist {
		return fmt.Errorf("client %q: %d users on the allowlist; a development-mode app serves at most %d", c.ID, len(c.Allowlist), MaxAllowlist)
	}
	for _, u := range c.Allowlist {
		if !userIDPattern.MatchString(u) {
			return fmt.Errorf("client %q: allowlist user %q: want 1 to 64 of A-Z a-z 0-9 . _ -", c.ID, u)
		}
	}
	return nil
}

// checkRedirectURI applies Spotify's registration rules: an absolute URI
// without a fragment; HTTPS, or HTTP only on the loopback IP literals
// 127.0.0.1 and [::1] ("localhost" is refused); other schemes are app links.
func checkRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || raw == "" {
		return fmt.Errorf("redirect URI %q is not an absolute URI", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("redirect URI %q has a fragment", raw)
	}
	if insecureRedirect(u) {
		return fmt.Errorf("redirect URI %q is insecure: use https, or http://127.0.0.1 or http://[::1] (localhost is not allowed)", raw)
	}
	return nil
}

func insecureRedirect(u *url.URL) bool {
	switch strings.ToLower(u.Scheme) {
	case "http":
		return !isLoopbackLiteral(u.Hostname())
	case "https":
		return u.Host == ""
	}
	return false
}

func isLoopbackLiteral(host string) bool {
	return host == "127.0.0.1" || host == "::1"
}

// matchRedirect reports whether requested matches the registered URI: exactly,
// or, for a loopback URI registered without a port, with any port.
func matchRedirect(registered, requested string) bool {
	if registered == requested {
		return true
	}
	ru, err1 := url.Parse(registered)
	qu, err2 := url.Parse(requested)
	if err1 != nil || err2 != nil {
		return false
	}
	if ru.Scheme != "http" || !isLoopbackLiteral(ru.Hostname()) || ru.Port() != "" {
		return false
	}
	if qu.Scheme != "http" || qu.Hostname() != ru.Hostname() || qu.User != nil {
		return false
	}
	return qu.EscapedPath() == ru.EscapedPath() && qu.RawQuery == ru.RawQuery && qu.Fragment == "" && !qu.ForceQuery
}

// RotationMode names what a refresh does to the refresh token presented.
type RotationMode string

// The rotation modes.
const (
	// RotateNever returns no refresh token on refresh; the old one keeps
	// working (Spotify's observed behaviour since 2026, the default).
	RotateNever RotationMode = "never"
	// RotateAlways returns a new refresh token on every refresh; the old one
	// dies at once.
	RotateAlways RotationMode = "always"
	// RotateGrace returns a new refresh token; the old one keeps working for
	// Rotation.Grace after it was rotated out.
	RotateGrace RotationMode = "grace"
	// RotateReuseDetection is RotateAlways, and presenting a rotated-out token
	// also revokes every refresh token of that grant (RFC 9700 §4.14.2).
	RotateReuseDetection RotationMode = "reuse-detection"
)

// Rotation is a rotation mode with its grace period.
type Rotation struct {
	Mode  RotationMode
	Grace time.Duration // only for RotateGrace
}

// String formats r in the --rotation flag syntax.
func (r Rotation) String() string {
	if r.Mode == RotateGrace {
		return "grace=" + r.Grace.String()
	}
	if r.Mode == "" {
		return string(RotateNever)
	}
	return string(r.Mode)
}

// ParseRotation parses never, always, grace=DURATION or reuse-detection.
func ParseRotation(s string) (Rotation, error) {
	switch RotationMode(s) {
	case RotateNever, RotateAlways, RotateReuseDetection:
		return Rotation{Mode: RotationMode(s)}, nil
	}
	if d, ok := strings.CutPrefix(s, "grace="); ok {
		grace, err := time.ParseDuration(d)
		if err != nil {
			return Rotation{}, fmt.Errorf("rotation %q: grace period: %w", s, err)
		}
		if grace <= 0 {
			return Rotation{}, fmt.Errorf("rotation %q: grace period must be positive", s)
		}
		return Rotation{Mode: RotateGrace, Grace: grace}, nil
	}
	return Rotation{}, fmt.Errorf("rotation %q: want never, always, grace=DURATION or reuse-detection", s)
}

// Scopes lists every scope Spotify knows; /authorize refuses any other.
var Scopes = []string{
	"ugc-image-upload",
	"user-read-playback-state", "user-modify-playback-state", "user-read-currently-playing",
	"app-remote-control", "streaming",
	"playlist-read-private", "playlist-read-collaborative", "playlist-modify-private", "playlist-modify-public",
	"user-follow-modify", "user-follow-read",
	"user-read-playback-position", "user-top-read", "user-read-recently-played",
	"user-library-modify", "user-library-read",
	"user-read-email", "user-read-private",
	"user-soa-link", "user-soa-unlink", "soa-manage-entitlements", "soa-manage-partner", "soa-create-partner",
}

var knownScope = func() map[string]bool {
	m := make(map[string]bool, len(Scopes))
	for _, s := range Scopes {
		m[s] = true
	}
	return m
}()
