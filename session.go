package spotoken

import (
	"context"
	"time"
)

// WebSession is a browser signed in to one of spotoken's pages (the
// dashboard, the operator's console, a backend-for-frontend): a row found by
// the SHA-256 of the random value in the browser's cookie. The cookie value
// itself is never stored, so a copy of the database signs nobody in.
//
// A session belongs to a Scope, which bounds how many sessions may exist
// together (see WebSessionLimits): creating one past the cap evicts the
// scope's own soonest-ending sessions, never another scope's. Scopes are
// written kind or kind:app (see WebSessionScope), so that each app's
// sessions are capped on their own: "dashboard:demo", "bff:demo", "admin".
//
// CSRF and Data are sealed at rest, bound to the row (its id hash, scope,
// app and subject), so a ciphertext moved to another row, or a row whose
// scope, app or subject was changed behind the store's back, fails to open.
type WebSession struct {
	// IDHash is the SHA-256 of the cookie's value (see internal/websession
	// for the exact domain-separated input).
	IDHash [32]byte
	// Scope is the session's capacity scope: kind or kind:app.
	Scope string
	// AppID is the app the session is for; empty when it is for no one app
	// (an operator). Deleting the app deletes its sessions.
	AppID string
	// Subject is who is signed in, within the scope: an API key id, an
	// admin credential id, a Spotify user of a browser app.
	Subject string
	// CSRF is the session's anti-CSRF token, sealed at rest; required.
	CSRF Secret
	// Data is what the handler keeps with the session (often JSON), sealed
	// at rest; empty for none.
	Data Secret
	// CreatedAt is set by the store.
	CreatedAt time.Time
	// LastSeenAt is when the session was last used (TouchWebSession); set to
	// CreatedAt by the store at creation.
	LastSeenAt time.Time
	// IdleTimeout ends the session that long after LastSeenAt; zero for no
	// idle timeout.
	IdleTimeout time.Duration
	// ExpiresAt is the absolute end: no use extends the session past it.
	ExpiresAt time.Time
}

// EndsAt is when the session ends unless it is used again first: its
// absolute expiry, or IdleTimeout after it was last seen if that is sooner.
func (s *WebSession) EndsAt() time.Time {
	if s.IdleTimeout > 0 {
		if idle := s.LastSeenAt.Add(s.IdleTimeout); idle.Before(s.ExpiresAt) {
			return idle
		}
	}
	return s.ExpiresAt
}

// Validate reports, as an EInvalid error, what a store cannot keep: a
// session without a scope, a CSRF token or an expiry, or with a negative
// idle timeout.
func (s *WebSession) Validate() error {
	switch {
	case s.Scope == "":
		return Errorf(EInvalid, "web session needs a scope")
	case s.CSRF == "":
		return Errorf(EInvalid, "web session needs a CSRF token")
	case s.ExpiresAt.IsZero():
		return Errorf(EInvalid, "web session needs an expiry")
	case s.IdleTimeout < 0:
		return Errorf(EInvalid, "web session idle timeout is negative")
	}
	return nil
}

// Live reports whether the session has not ended at now.
func (s *WebSession) Live(now time.Time) bool { return now.Before(s.EndsAt()) }

// WebSessionScope returns the scope of a session of kind ("dashboard",
// "bff", "admin") for app: "kind:app", or just kind when app is empty.
func WebSessionScope(kind, app string) string {
	if app == "" {
		return kind
	}
	return kind + ":" + app
}

// WebSessionLimits caps the sessions CreateWebSession keeps. Zero means no
// cap.
type WebSessionLimits struct {
	// PerScope is the most sessions one scope keeps.
	PerScope int
	// PerSubject is the most sessions one subject keeps within one scope,
	// so that one person (or one leaked API key) signing in again and
	// again evicts their own sessions before anyone else's.
	PerSubject int
}

// SessionStore keeps web sessions. Its methods are safe for concurrent use,
// by several processes sharing one database too; the caps are exact under
// concurrent creation.
type SessionStore interface {
	// CreateWebSession stores s, setting CreatedAt and LastSeenAt from the
	// store's clock, then enforces limits in the same transaction: while
	// s's subject has more than PerSubject sessions in s's scope, the
	// subject's soonest-ending one is deleted; then while the scope has
	// more than PerScope, the scope's soonest-ending one. s itself is never
	// evicted and no other scope is touched. It returns how many sessions
	// were evicted. ErrConflict if s.IDHash exists; ErrNotFound if s.AppID
	// names no app; EInvalid without a scope, a CSRF token or an expiry.
	CreateWebSession(ctx context.Context, s *WebSession, limits WebSessionLimits) (evicted int, err error)
	// WebSession returns the session whose cookie hashes to idHash, its
	// secrets opened; ErrNotFound if none, ErrExpired if it has ended by the
	// store's clock.
	WebSession(ctx context.Context, idHash [32]byte) (*WebSession, error)
	// TouchWebSession records a use of the session at at, which moves its
	// idle end (never past ExpiresAt); LastSeenAt never moves backwards.
	// ErrNotFound if none; ErrExpired, and nothing changes, if it had ended
	// by at.
	TouchWebSession(ctx context.Context, idHash [32]byte, at time.Time) error
	// UpdateWebSession calls fn with the session and saves the CSRF token
	// and Data fn leaves (changes to other fields are not saved), in one
	// transaction; an error from fn aborts and is returned as is.
	// ErrNotFound if none; ErrExpired if it has ended by the store's clock.
	UpdateWebSession(ctx context.Context, idHash [32]byte, fn func(s *WebSession) error) (*WebSession, error)
	// DeleteWebSession deletes one session; ErrNotFound if none.
	DeleteWebSession(ctx context.Context, idHash [32]byte) error
	// DeleteWebSessions deletes every session of subject in scope (sign out
	// everywhere; an API key revoked) and returns how many.
	DeleteWebSessions(ctx context.Context, scope, subject string) (int, error)
	// DeleteExpiredWebSessions deletes the sessions that ended at or before
	// before and returns how many.
	DeleteExpiredWebSessions(ctx context.Context, before time.Time) (int, error)
}
