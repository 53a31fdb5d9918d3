package accounts

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Error is an error answer from the token endpoint: any non-2xx status, or
// a 2xx answer carrying an RFC 6749 §5.2 "error" parameter.
//
// Its message holds only the status, the code and the description, never a
// token, code, verifier or secret that was sent.
type Error struct {
	// Status is the HTTP status code. Spotify answers OAuth errors,
	// invalid_client included, with 400.
	Status int
	// Code is the RFC 6749 §5.2 "error" parameter (invalid_grant,
	// invalid_client, invalid_request, …), or "" when the body had none, as
	// with Spotify's 429s, which have an empty body.
	Code string
	// Description is the "error_description" parameter, for example
	// "Refresh token revoked"; "" when absent. Code and Description are
	// cut to 256 bytes and unprintable characters replaced by '?', so they
	// are safe to log.
	Description string
	// RetryAfter is how long the server asked the client to wait, from the
	// Retry-After header (RFC 9110 §10.2.3: delta-seconds or an HTTP-date,
	// measured against Config.Now); 0 when the header is absent or invalid.
	RetryAfter time.Duration
}

// Error implements error: "accounts: 400 Bad Request: invalid_grant: Refresh token revoked".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("accounts: ")
	b.WriteString(strconv.Itoa(e.Status))
	if text := http.StatusText(e.Status); text != "" {
		b.WriteString(" ")
		b.WriteString(text)
	}
	if e.Code != "" {
		b.WriteString(": ")
		b.WriteString(e.Code)
	}
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	}
	return b.String()
}

// Transient reports whether trying again later may succeed: the status is
// 408, 429 or 5xx, or the code is one that asks the client to back off
// (server_error, temporarily_unavailable, slow_down). Honour RetryAfter.
func (e *Error) Transient() bool {
	switch {
	case e.Status == http.StatusRequestTimeout, e.Status == http.StatusTooManyRequests, e.Status >= 500 && e.Status <= 599:
		return true
	}
	switch e.Code {
	case "server_error", "temporarily_unavailable", "slow_down":
		return true
	}
	return false
}

// InvalidGrant reports whether the grant is dead (RFC 6749 §5.2
// invalid_grant): the authorization code or refresh token is unknown, used,
// expired, revoked or rotated out, or the PKCE verifier or redirect URI did
// not match. Retrying does not help; the user must authorize again.
func (e *Error) InvalidGrant() bool { return e.Code == "invalid_grant" }

// InvalidClient reports whether Spotify refused the client itself (RFC 6749
// §5.2 invalid_client): an unknown client id or a wrong secret. The app is
// misconfigured; retrying does not help.
func (e *Error) InvalidClient() bool { return e.Code == "invalid_client" }

// ErrMalformedResponse is wrapped by the error for a successful (2xx) token
// response that could not be understood: not JSON, cut off by the size limit,
// or without an access token. IsTransient reports false for it; the caller
// decides whether a misbehaving server is worth another try.
var ErrMalformedResponse = errors.New("malformed token response")

// IsTransient reports whether err is worth retrying after a backoff: an
// *Error whose Transient method says so (429, 5xx, 408), a deadline or
// timeout (context.DeadlineExceeded, an http.Client timeout), or a network
// failure (connection refused or reset, DNS, a connection closed early).
// It reports false for nil, for context.Canceled (the caller gave up), for
// every other *Error (invalid_grant, invalid_client, …) and for
// ErrMalformedResponse.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Transient()
	}
	if errors.Is(err, ErrMalformedResponse) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var op *net.OpError
	var dns *net.DNSError
	if errors.As(err, &op) || errors.As(err, &dns) {
		return true
	}
	// The server closed the connection before a whole response arrived.
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// maxRetryAfter bounds RetryAfter. Like RFC 9111 §1.2.2 for delta-seconds
// too large to represent, it is 2^31 seconds.
const maxRetryAfter = (1 << 31) * time.Second

// parseRetryAfter reads a Retry-After value (RFC 9110 §10.2.3):
// delta-seconds, or an HTTP-date measured against now. It returns 0 for an
// absent or invalid value or a date in the past, and at most maxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if strings.Trim(v, "0123456789") == "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter // only overflow fails: v is all digits
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now)
	switch {
	case d <= 0:
		return 0
	case d > maxRetryAfter:
		return maxRetryAfter
	}
	return d
}

// maxField bounds Error.Code and Error.Description.
const maxField = 256

// sanitize makes a server-supplied string safe to log: unprintable runes and
// invalid UTF-8 become '?' (replaced, not dropped, so no new text is formed),
// and the result is cut to maxField bytes on a rune boundary.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
	if len(s) <= maxField {
		return s
	}
	i := maxField
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
