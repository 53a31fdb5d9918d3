package client

import (
	"fmt"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
)

// Error codes of the broker's API (docs/api.md, "Errors") that callers
// branch on. Branch on Error.Code, never on Error.Description.
const (
	// CodeNeedsReauth: Spotify refused the connection's refresh token; show
	// the user Error.ConnectURL.
	CodeNeedsReauth = spotoken.ENeedsReauth
	// CodeInsufficientScope: the connection lacks a scope the request
	// needs (Error.RequiredScopes); show the user Error.ConnectURL.
	CodeInsufficientScope = "insufficient_scope"
	// CodeInvalidToken: the broker refused the API key.
	CodeInvalidToken = "invalid_token"
	// CodeNotFound: no such connection for this app.
	CodeNotFound = spotoken.ENotFound
	// CodeInvalidRequest: the broker refused the request as malformed (a
	// bad connection id, a min_ttl out of range, ...).
	CodeInvalidRequest = spotoken.EInvalid
	// CodeRateLimited: Spotify is rate limiting the app, or force_refresh
	// was asked too often; wait Error.RetryAfter.
	CodeRateLimited = spotoken.ERateLimited
	// CodeUnavailable: Spotify failed or could not be reached; wait
	// Error.RetryAfter.
	CodeUnavailable = spotoken.EUnavailable
	// CodeAppMisconfigured: Spotify refused the app's client credentials;
	// an operator must fix the app.
	CodeAppMisconfigured = spotoken.EAppMisconfigured
	// CodeUnauthorizedClient: the app may not have an app token: it has no
	// client secret (a public, PKCE-only app).
	CodeUnauthorizedClient = spotoken.EUnauthorizedClient
	// CodeUserNotAllowlisted: the app is in Spotify's development mode and
	// the connection's Spotify user is not on its allowlist; the app's
	// owner must add the user in Spotify's developer dashboard.
	CodeUserNotAllowlisted = "user_not_allowlisted"
	// CodeInternal: the broker failed.
	CodeInternal = spotoken.EInternal
)

// Sentinel errors for errors.Is: an *Error matches one of them when the
// codes are equal.
var (
	// ErrNeedsReauth matches a needs_reauth answer: the user must
	// authorize again.
	ErrNeedsReauth = &Error{Code: CodeNeedsReauth}
	// ErrInsufficientScope matches an insufficient_scope answer.
	ErrInsufficientScope = &Error{Code: CodeInsufficientScope}
	// ErrNotFound matches a not_found answer: no such connection.
	ErrNotFound = &Error{Code: CodeNotFound}
	// ErrRateLimited matches a rate_limited answer.
	ErrRateLimited = &Error{Code: CodeRateLimited}
)

// Error is an error answer of the broker (in local mode, of the refresh
// engine, with the status the broker would have answered).
//
// Error() holds the connection id, the status, the code and the broker's
// description; never the API key, a token or the connect link.
type Error struct {
	// ConnectionID is the connection the request was about; empty for the
	// app's own token.
	ConnectionID string
	// StatusCode is the HTTP status of the broker's answer.
	StatusCode int
	// Code is the API's error code, such as CodeNeedsReauth; empty when the
	// answer was not the broker's JSON error (a proxy's error page, say).
	Code string
	// Description is the broker's explanation, for people.
	Description string
	// RetryAfter, for CodeRateLimited and CodeUnavailable, is how long to
	// wait before asking again; zero when not given.
	RetryAfter time.Duration
	// ConnectURL, for CodeNeedsReauth and CodeInsufficientScope, is a
	// one-time link that lets the user authorize again (or grant the
	// missing scopes), valid until ConnectURLExpiresAt. It is a bearer
	// credential for that authorization: hand it only to the user. Empty in
	// local mode.
	ConnectURL          string
	ConnectURLExpiresAt time.Time
	// RequiredScopes, for CodeInsufficientScope, are the scopes the
	// request needs that the connection lacks.
	RequiredScopes []string
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("spotoken")
	if e.ConnectionID != "" {
		fmt.Fprintf(&b, ": connection %q", e.ConnectionID)
	}
	switch {
	case e.Code != "" && e.StatusCode != 0:
		fmt.Fprintf(&b, ": %s (HTTP %d)", e.Code, e.StatusCode)
	case e.Code != "":
		fmt.Fprintf(&b, ": %s", e.Code)
	default:
		fmt.Fprintf(&b, ": unexpected answer HTTP %d", e.StatusCode)
	}
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	}
	return b.String()
}

// Is reports whether target is an *Error or a *spotoken.Error with the same
// code, so that errors.Is(err, ErrNeedsReauth) and errors.Is(err,
// spotoken.ErrNeedsReauth) both hold for a needs_reauth answer.
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case *Error:
		return t.Code != "" && t.Code == e.Code
	case *spotoken.Error:
		return t.Code != "" && t.Code == e.Code
	}
	return false
}
