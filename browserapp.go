package spotoken

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// BrowserApp is an app's backend-for-frontend settings: the single-page
// app (SPA) that signs its users in through spotoken and calls Spotify
// through it, holding only an HttpOnly session cookie (see package bff and
// docs/browser-apps.md). An app without a BrowserApp has the BFF off.
type BrowserApp struct {
	AppID string
	// Origins are the SPA's exact origins (scheme://host[:port], lower case,
	// no default port): the BFF answers cross-origin requests from these
	// only, and sends the browser back only to them after sign-in. At
	// least one.
	Origins []string
	// Scopes are asked at sign-in; empty for the app's DefaultScopes.
	Scopes Scopes
	// TokenScopes, when not empty, turns on the token-mediating mode: POST
	// /bff/{app}/token hands the session's access token (never the refresh
	// token) to JavaScript, and only while every scope the grant carries is
	// among these, so a token wider than the operator meant never reaches
	// a page.
	TokenScopes Scopes
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// TokenMediating reports whether the app's SPA may receive access tokens.
func (b *BrowserApp) TokenMediating() bool { return len(b.TokenScopes) > 0 }

// AllowsOrigin reports whether origin is exactly one of the SPA's origins.
func (b *BrowserApp) AllowsOrigin(origin string) bool {
	for _, o := range b.Origins {
		if o == origin {
			return true
		}
	}
	return false
}

// maxBrowserOrigins bounds the origins of one browser app.
const maxBrowserOrigins = 32

// Validate reports, as an EInvalid error, settings a store cannot keep: no
// origin, too many, or one that is not an origin in its normal form
// (NormalizeOrigin).
func (b *BrowserApp) Validate() error {
	if len(b.Origins) == 0 {
		return Errorf(EInvalid, "a browser app needs at least one origin")
	}
	if len(b.Origins) > maxBrowserOrigins {
		return Errorf(EInvalid, "a browser app has at most %d origins, got %d", maxBrowserOrigins, len(b.Origins))
	}
	for _, o := range b.Origins {
		n, err := NormalizeOrigin(o)
		if err != nil {
			return err
		}
		if n != o {
			return Errorf(EInvalid, "origin %q is not in normal form (%q)", o, n)
		}
	}
	return nil
}

// OriginField starts the message of NormalizeOrigin's errors: "origin
// \"x\": why". Callers naming the setting otherwise replace it.
const OriginField = "origin"

// NormalizeOrigin checks a web origin, scheme://host[:port] with an http or
// https scheme, and returns it as browsers send it in the Origin header:
// scheme and host in lower case, without the scheme's default port. One
// trailing "/" is accepted; a path, query, fragment or user is not.
func NormalizeOrigin(raw string) (string, error) {
	bad := func(why string) error {
		if len(raw) > 80 {
			raw = raw[:80] + "…"
		}
		return Errorf(EInvalid, "%s %q: %s", OriginField, raw, why)
	}
	if len(raw) > 512 {
		return "", bad("longer than 512 bytes")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", bad("not a URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" {
		return "", bad("want an origin, http(s)://host[:port]")
	}
	if u.Hostname() == "" {
		return "", bad("the origin has no host")
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		return "", bad("an origin is scheme://host[:port] only, without user, path, query or fragment")
	}
	if strings.HasSuffix(u.Host, ":") {
		return "", bad("empty port")
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	for _, c := range port {
		if c < '0' || c > '9' {
			return "", bad("the port is not a number")
		}
	}
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	origin := u.Scheme + "://" + host
	if port != "" {
		origin += ":" + port
	}
	return origin, nil
}

// NormalizeOrigins normalizes each origin, dropping repeats, and returns
// the first error.
func NormalizeOrigins(raw []string) ([]string, error) {
	var out []string
	for _, r := range raw {
		o, err := NormalizeOrigin(r)
		if err != nil {
			return nil, err
		}
		if !contains(out, o) {
			out = append(out, o)
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// String describes the settings, safe to log.
func (b *BrowserApp) String() string {
	return fmt.Sprintf("browser app %s (origins %s)", b.AppID, strings.Join(b.Origins, " "))
}

// BrowserAppStore keeps apps' backend-for-frontend settings. Its methods
// are safe for concurrent use.
type BrowserAppStore interface {
	// PutBrowserApp stores b, creating the app's settings or replacing
	// them, and sets CreatedAt (kept on a replacement) and UpdatedAt from
	// the store's clock. ErrNotFound if the app does not exist; EInvalid
	// if b does not Validate.
	PutBrowserApp(ctx context.Context, b *BrowserApp) error
	// BrowserApp returns the app's settings; ErrNotFound if it has none
	// (its BFF is off) or the app does not exist.
	BrowserApp(ctx context.Context, appID string) (*BrowserApp, error)
	// DeleteBrowserApp turns the app's BFF off; ErrNotFound if it was off.
	// Deleting the app deletes its settings too.
	DeleteBrowserApp(ctx context.Context, appID string) error
}
