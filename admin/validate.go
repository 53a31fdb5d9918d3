package admin

import (
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/spotoken/spotoken"
)

// The checks of an app's settings. Errors are spotoken.EInvalid errors
// whose message starts with the setting's name as the admin API spells it
// (redirect_uris, webhook_url, ...), and never hold a secret.

// MaxAppID is the longest app id (name).
const MaxAppID = 64

// SpotifyScopes are the authorization scopes Spotify defines, sorted; its
// /authorize refuses any other ("Illegal scope"): spotoken.SpotifyScopes.
var SpotifyScopes = spotoken.SpotifyScopes

func invalid(format string, args ...any) error {
	return spotoken.Errorf(spotoken.EInvalid, format, args...)
}

// CheckAppID checks a new app's id (its name): 1 to MaxAppID ASCII
// letters, digits, '-', '_' and '.', not starting with '_', which is kept
// for spotoken's own apps (the profiles of 'spotoken login').
func CheckAppID(id string) error {
	switch {
	case id == "":
		return invalid("id: an app needs an id (its name): letters, digits, '-', '_', '.'")
	case strings.HasPrefix(id, "_"):
		return invalid("id %q: ids starting with '_' are kept for spotoken's own apps", id)
	case len(id) > MaxAppID:
		return invalid("id: at most %d characters, got %d", MaxAppID, len(id))
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return invalid("id %q: letters, digits, '-', '_' and '.' only", id)
		}
	}
	return nil
}

// CheckClientID checks a Spotify client id: present, at most 256
// characters, printable, without spaces.
func CheckClientID(id string) error {
	switch {
	case id == "":
		return invalid("client_id: the app's Spotify client ID is required")
	case len(id) > 256:
		return invalid("client_id: at most 256 characters, got %d", len(id))
	case strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		return invalid("client_id %q: a client ID has no spaces or control characters", id)
	}
	return nil
}

// MaxClientSecret bounds a client secret.
const MaxClientSecret = 4096

// CheckClientSecret checks a client secret without ever quoting it:
// present, at most MaxClientSecret bytes, printable, without spaces.
func CheckClientSecret(s spotoken.Secret) error {
	v := s.Reveal()
	switch {
	case v == "":
		return invalid("client_secret: empty")
	case len(v) > MaxClientSecret:
		return invalid("client_secret: at most %d bytes", MaxClientSecret)
	case strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		return invalid("client_secret: holds spaces, line breaks or control characters")
	}
	return nil
}

// maxURL bounds the URLs of an app's settings.
const maxURL = 2048

// CheckHTTPURL checks that raw is an absolute http or https URL with a
// host, without user information or fragment; field names it in errors.
func CheckHTTPURL(field, raw string) (*url.URL, error) {
	if len(raw) > maxURL {
		return nil, invalid("%s: a URL of at most %d bytes", field, maxURL)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, invalid("%s %q: not a URL", field, raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, invalid("%s %q: want an absolute http:// or https:// URL", field, raw)
	case u.Host == "" || u.Hostname() == "":
		return nil, invalid("%s %q: the URL has no host", field, raw)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, invalid("%s %q: the URL must not have a fragment (#...)", field, raw)
	case u.User != nil:
		return nil, invalid("%s %q: the URL must not hold a user name or password", field, u.Redacted())
	}
	return u, nil
}

// LoopbackHost reports whether host is a loopback IP literal, the only host
// Spotify accepts in a plain http redirect URI.
func LoopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// NormalizeOrigin checks and normalizes a web origin, scheme://host[:port]
// (spotoken.NormalizeOrigin), naming return_to_origins in its errors.
func NormalizeOrigin(raw string) (string, error) {
	origin, err := spotoken.NormalizeOrigin(raw)
	if err != nil {
		return "", invalid("return_to_origins%s", strings.TrimPrefix(spotoken.ErrorMessage(err), spotoken.OriginField))
	}
	return origin, nil
}

// CheckScopes checks that every scope is one Spotify defines.
func CheckScopes(scopes spotoken.Scopes) error {
	var unknown []string
	for _, sc := range scopes {
		if !spotoken.KnownScope(sc) {
			unknown = append(unknown, strconv.Quote(truncate(sc, 64)))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	word := "scope"
	if len(unknown) > 1 {
		word = "scopes"
	}
	return invalid("default_scopes: unknown Spotify %s %s; valid scopes are: %s", word, strings.Join(unknown, ", "), strings.Join(SpotifyScopes, " "))
}

// CheckApp checks every setting of app (not its id, checked at creation
// only) and normalizes it: redirect URIs and origins without duplicates,
// origins in their canonical form, scopes sorted.
func CheckApp(app *spotoken.App) error {
	if err := CheckClientID(app.ClientID); err != nil {
		return err
	}
	if app.ClientSecret != "" {
		if err := CheckClientSecret(app.ClientSecret); err != nil {
			return err
		}
	}
	var redirects []string
	for _, raw := range app.RedirectURIs {
		if _, err := CheckHTTPURL("redirect_uris", raw); err != nil {
			return err
		}
		if !slices.Contains(redirects, raw) {
			redirects = append(redirects, raw)
		}
	}
	app.RedirectURIs = redirects
	var origins []string
	for _, raw := range app.ReturnToOrigins {
		o, err := NormalizeOrigin(raw)
		if err != nil {
			return err
		}
		if !slices.Contains(origins, o) {
			origins = append(origins, o)
		}
	}
	app.ReturnToOrigins = origins
	app.DefaultScopes = app.DefaultScopes.Normalize()
	if len(app.DefaultScopes) == 0 {
		app.DefaultScopes = nil
	}
	if err := CheckScopes(app.DefaultScopes); err != nil {
		return err
	}
	if app.WebhookURL != "" {
		if _, err := CheckHTTPURL("webhook_url", app.WebhookURL); err != nil {
			return err
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
