package spotoken

import (
	"errors"
	"fmt"
	"time"
)

// Error codes. Clients see them in API error bodies; callers branch on them
// with errors.Is against the sentinel errors below.
const (
	EConflict    = "conflict"
	EInternal    = "internal"
	EInvalid     = "invalid_request"
	ENotFound    = "not_found"
	EExpired     = "expired"
	EAlreadyUsed = "already_used"
	ELeaseHeld   = "lease_held"
	ELeaseLost   = "lease_lost"

	// ENeedsReauth: the connection's grant is gone (revoked, expired, or
	// refused by Spotify); the user must authorize again.
	ENeedsReauth = "needs_reauth"
	// ERateLimited: Spotify asked us to slow down; try again after RetryAfter.
	ERateLimited = "rate_limited"
	// EUnavailable: Spotify could not be reached or failed; try again after RetryAfter.
	EUnavailable = "temporarily_unavailable"
	// EAppMisconfigured: Spotify refused the app's credentials (invalid_client).
	EAppMisconfigured = "app_misconfigured"
	// EStoreUnavailable: spotoken's own database cannot be reached or did
	// not answer in time; try again after RetryAfter. Distinct from
	// EUnavailable, which is Spotify's side.
	EStoreUnavailable = "unavailable"
	// ELimitExceeded: an app reached one of its per-app caps (pending
	// connect links); try again later.
	ELimitExceeded = "limit_exceeded"
	// EQueryTimeout: a listing did not finish within the store's listing
	// deadline, so it was stopped before it held a database connection for
	// long; narrow it (a filter, a smaller limit) or try again.
	EQueryTimeout = "query_timeout"
	// EUnauthorizedClient: the app may not use this grant (RFC 6749 §5.2):
	// a public app, which has no client secret, asked for an app token
	// (the client-credentials grant).
	EUnauthorizedClient = "unauthorized_client"
)

// Error is an error with a code and a message that is safe to show a client.
// Two Errors match under errors.Is when their codes are equal, so
// errors.Is(err, ErrNotFound) holds for any not_found Error.
type Error struct {
	Code    string
	Message string
	// RetryAfter, for rate_limited and temporarily_unavailable, is how long
	// to wait before trying again; zero when unknown.
	RetryAfter time.Duration
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the client-safe message of the first *Error in err's
// chain, or "Internal error." for any other error, whose detail belongs in
// the log only.
func ErrorMessage(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Message
	}
	return "Internal error."
}

// Sentinel errors for errors.Is.
var (
	// ErrNotFound: no such app, key, connection or pending authorization.
	ErrNotFound = &Error{Code: ENotFound, Message: "not found"}
	// ErrConflict: the object already exists, or it changed under a
	// compare-and-swap.
	ErrConflict = &Error{Code: EConflict, Message: "conflict"}
	// ErrExpired: a pending authorization is past its expiry.
	ErrExpired = &Error{Code: EExpired, Message: "expired"}
	// ErrAlreadyUsed: a pending authorization was consumed already.
	ErrAlreadyUsed = &Error{Code: EAlreadyUsed, Message: "already used"}
	// ErrLeaseHeld: another owner holds the connection's lease.
	ErrLeaseHeld = &Error{Code: ELeaseHeld, Message: "lease held by another owner"}
	// ErrLeaseLost: the caller does not hold the lease it tried to renew or release.
	ErrLeaseLost = &Error{Code: ELeaseLost, Message: "lease not held by this owner"}
	// ErrNeedsReauth: the user must authorize the connection again.
	ErrNeedsReauth = &Error{Code: ENeedsReauth, Message: "the user must authorize again"}
	// ErrRateLimited: Spotify rate-limited the app; see Error.RetryAfter.
	ErrRateLimited = &Error{Code: ERateLimited, Message: "rate limited by Spotify"}
	// ErrUnavailable: Spotify failed or could not be reached; see Error.RetryAfter.
	ErrUnavailable = &Error{Code: EUnavailable, Message: "Spotify is unavailable"}
	// ErrAppMisconfigured: Spotify refused the app's client credentials.
	ErrAppMisconfigured = &Error{Code: EAppMisconfigured, Message: "Spotify refused the app's client credentials"}
	// ErrStoreUnavailable: the database cannot be reached or did not answer
	// within its deadline; see Error.RetryAfter.
	ErrStoreUnavailable = &Error{Code: EStoreUnavailable, Message: "the database is unavailable"}
	// ErrLimitExceeded: the app has as many of something pending as it may.
	ErrLimitExceeded = &Error{Code: ELimitExceeded, Message: "limit exceeded"}
	// ErrUnauthorizedClient: the app may not use the grant it asked for.
	ErrUnauthorizedClient = &Error{Code: EUnauthorizedClient, Message: "the app may not use this grant"}
)
