package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/spotoken/spotoken"
)

const webSessionColumns = `id_hash, scope, app_id, subject, csrf, data, created_at, last_seen_at, idle_timeout, expires_at`

// CreateWebSession stores s, setting its CreatedAt and LastSeenAt from the
// store's clock, and enforces limits in the same write transaction: the
// subject's, then the scope's, soonest-ending sessions other than s are
// deleted until each is within its cap. It returns how many were deleted.
// As every write goes through one connection, the caps are exact however
// many callers create sessions at once.
func (db *DB) CreateWebSession(ctx context.Context, s *spotoken.WebSession, limits spotoken.WebSessionLimits) (int, error) {
	if err := s.Validate(); err != nil {
		return 0, fmt.Errorf("create web session: %w", err)
	}
	c := *s
	c.ExpiresAt = stored(s.ExpiresAt)
	c.IdleTimeout = s.IdleTimeout.Truncate(time.Microsecond)
	csrf, data, err := db.codec.SealWebSession(&c)
	if err != nil {
		return 0, fmt.Errorf("create web session: %w", err)
	}
	var evicted int
	err = db.write(ctx, func(tx *sql.Tx) error {
		// The time is read once the write lock is held, not before
		// waiting for it: sessions are stamped in the order they are
		// stored, so the eviction below, which keeps those that end
		// last, keeps the latest sign-ins, however long one waited.
		now := db.now()
		c.CreatedAt, c.LastSeenAt = now, now
		evicted = 0
		_, err := tx.ExecContext(ctx, `INSERT INTO web_sessions (`+webSessionColumns+`, ends_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.IDHash[:], c.Scope, nullIfEmpty(c.AppID), c.Subject, csrf, blobArg(data), now.UnixMicro(), now.UnixMicro(),
			c.IdleTimeout.Microseconds(), c.ExpiresAt.UnixMicro(), c.EndsAt().UnixMicro())
		if err := translate(err, "web session already exists", fmt.Sprintf("app %q not found", c.AppID)); err != nil {
			return err
		}
		// Keep the cap-1 others that end last, besides the new one.
		evict := func(cap int, where string, args ...any) error {
			if cap <= 0 {
				return nil
			}
			res, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE id_hash IN (SELECT id_hash FROM web_sessions
				WHERE `+where+` AND id_hash <> ? ORDER BY ends_at DESC, created_at DESC, id_hash DESC LIMIT -1 OFFSET ?)`,
				append(args, c.IDHash[:], cap-1)...)
			if err != nil {
				return err
			}
			n, err := affected(res)
			evicted += int(n)
			return err
		}
		if err := evict(limits.PerSubject, `scope = ? AND subject = ?`, c.Scope, c.Subject); err != nil {
			return err
		}
		return evict(limits.PerScope, `scope = ?`, c.Scope)
	})
	if err != nil {
		return 0, fmt.Errorf("create web session: %w", err)
	}
	s.CreatedAt, s.LastSeenAt, s.ExpiresAt, s.IdleTimeout = c.CreatedAt, c.LastSeenAt, c.ExpiresAt, c.IdleTimeout
	return evicted, nil
}

// WebSession returns the session whose cookie hashes to idHash; ErrNotFound
// if none, ErrExpired if it has ended by the store's clock.
func (db *DB) WebSession(ctx context.Context, idHash [32]byte) (*spotoken.WebSession, error) {
	s, err := db.scanWebSession(db.r.QueryRowContext(ctx, `SELECT `+webSessionColumns+` FROM web_sessions WHERE id_hash = ?`, idHash[:]))
	if err == nil && !s.Live(db.now()) {
		err = errWebSessionEnded
	}
	if err != nil {
		return nil, fmt.Errorf("web session: %w", err)
	}
	return s, nil
}

// TouchWebSession records a use at at: LastSeenAt moves forward (never
// back), and the idle end with it, up to ExpiresAt. ErrNotFound if none;
// ErrExpired, and nothing changes, if the session had ended by at.
func (db *DB) TouchWebSession(ctx context.Context, idHash [32]byte, at time.Time) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE web_sessions SET last_seen_at = max(last_seen_at, ?1),
			ends_at = CASE WHEN idle_timeout = 0 THEN expires_at ELSE min(max(last_seen_at, ?1) + idle_timeout, expires_at) END
			WHERE id_hash = ?2 AND ends_at > ?1`, at.UnixMicro(), idHash[:])
		if err != nil {
			return err
		}
		if n, err := affected(res); err != nil || n == 1 {
			return err
		}
		return webSessionMissing(ctx, tx, idHash)
	})
	if err != nil {
		return fmt.Errorf("touch web session: %w", err)
	}
	return nil
}

// UpdateWebSession reads the session, calls fn with it and saves the CSRF
// token and Data fn leaves, in one write transaction. ErrNotFound if none;
// ErrExpired if it has ended by the store's clock. An error from fn is
// returned as is.
func (db *DB) UpdateWebSession(ctx context.Context, idHash [32]byte, fn func(s *spotoken.WebSession) error) (*spotoken.WebSession, error) {
	var out *spotoken.WebSession
	var fnErr error
	err := db.write(ctx, func(tx *sql.Tx) error {
		s, err := db.scanWebSession(tx.QueryRowContext(ctx, `SELECT `+webSessionColumns+` FROM web_sessions WHERE id_hash = ?`, idHash[:]))
		if err != nil {
			return err
		}
		if !s.Live(db.now()) {
			return errWebSessionEnded
		}
		c := *s
		if fnErr = fn(&c); fnErr != nil {
			return fnErr
		}
		s.CSRF, s.Data = c.CSRF, c.Data // nothing else may change
		if s.CSRF == "" {
			return spotoken.Errorf(spotoken.EInvalid, "web session needs a CSRF token")
		}
		csrf, data, err := db.codec.SealWebSession(s)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE web_sessions SET csrf = ?, data = ? WHERE id_hash = ?`, csrf, blobArg(data), idHash[:]); err != nil {
			return err
		}
		out = s
		return nil
	})
	if fnErr != nil {
		return nil, fnErr
	}
	if err != nil {
		return nil, fmt.Errorf("update web session: %w", err)
	}
	return out, nil
}

// DeleteWebSession deletes one session; ErrNotFound if none.
func (db *DB) DeleteWebSession(ctx context.Context, idHash [32]byte) error {
	n, err := db.deleteWebSessions(ctx, `id_hash = ?`, idHash[:])
	if err == nil && n == 0 {
		err = spotoken.Errorf(spotoken.ENotFound, "web session not found")
	}
	if err != nil {
		return fmt.Errorf("delete web session: %w", err)
	}
	return nil
}

// DeleteWebSessions deletes every session of subject in scope and returns
// how many.
func (db *DB) DeleteWebSessions(ctx context.Context, scope, subject string) (int, error) {
	n, err := db.deleteWebSessions(ctx, `scope = ? AND subject = ?`, scope, subject)
	if err != nil {
		return 0, fmt.Errorf("delete web sessions of a subject: %w", err)
	}
	return n, nil
}

// DeleteExpiredWebSessions deletes the sessions that ended at or before
// before and returns how many.
func (db *DB) DeleteExpiredWebSessions(ctx context.Context, before time.Time) (int, error) {
	n, err := db.deleteWebSessions(ctx, `ends_at <= ?`, before.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("delete expired web sessions: %w", err)
	}
	return n, nil
}

func (db *DB) deleteWebSessions(ctx context.Context, where string, args ...any) (int, error) {
	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE `+where, args...)
		if err != nil {
			return err
		}
		n, err = affected(res)
		return err
	})
	return int(n), err
}

// errWebSessionEnded: the session is past its idle or absolute end.
var errWebSessionEnded = spotoken.Errorf(spotoken.EExpired, "web session ended")

// webSessionMissing tells why a conditional update of a session changed
// nothing: ErrNotFound when there is no such session, else ErrExpired.
func webSessionMissing(ctx context.Context, tx *sql.Tx, idHash [32]byte) error {
	var one int
	switch err := tx.QueryRowContext(ctx, `SELECT 1 FROM web_sessions WHERE id_hash = ?`, idHash[:]).Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return spotoken.Errorf(spotoken.ENotFound, "web session not found")
	case err != nil:
		return err
	}
	return errWebSessionEnded
}

// scanWebSession scans one row of webSessionColumns and opens its secrets;
// ErrNotFound for no row.
func (db *DB) scanWebSession(row *sql.Row) (*spotoken.WebSession, error) {
	var s spotoken.WebSession
	var csrf, data []byte
	var idle int64
	err := row.Scan(hashCol{&s.IDHash}, &s.Scope, nullString{&s.AppID}, &s.Subject, &csrf, &data,
		timeCol{&s.CreatedAt}, timeCol{&s.LastSeenAt}, &idle, timeCol{&s.ExpiresAt})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, spotoken.Errorf(spotoken.ENotFound, "web session not found")
	}
	if err != nil {
		return nil, err
	}
	s.IdleTimeout = time.Duration(idle) * time.Microsecond
	if err := db.codec.OpenWebSession(&s, csrf, data); err != nil {
		return nil, err
	}
	return &s, nil
}

// nullIfEmpty is s as stored in a nullable column: NULL when empty.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
