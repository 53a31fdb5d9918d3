package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/spotoken/spotoken"
)

const webSessionCols = `id_hash, scope, app_id, subject, csrf, data, created_at, last_seen_at, idle_timeout, expires_at`

// webSessionLockClass is the first half of the advisory lock key that
// serializes the creation of sessions in one scope (the second half hashes
// the schema and the scope), so that the caps hold exactly across replicas
// while other scopes go on in parallel.
const webSessionLockClass = 0x57536573 // "WSes"

// CreateWebSession stores s, setting its CreatedAt and LastSeenAt from the
// store's clock, and enforces limits in the same transaction: the
// subject's, then the scope's, soonest-ending sessions other than s are
// deleted until each is within its cap. It returns how many were deleted.
// A transaction-scoped advisory lock on the scope makes the caps exact
// however many replicas create sessions in it at once.
func (db *DB) CreateWebSession(ctx context.Context, s *spotoken.WebSession, limits spotoken.WebSessionLimits) (int, error) {
	if err := s.Validate(); err != nil {
		return 0, fmt.Errorf("create web session: %w", err)
	}
	c := *s
	c.ExpiresAt = norm(s.ExpiresAt)
	c.IdleTimeout = s.IdleTimeout.Truncate(time.Microsecond)
	csrf, data, err := db.codec.SealWebSession(&c)
	if err != nil {
		return 0, fmt.Errorf("create web session: %w", err)
	}
	var evicted int
	err = retry(ctx, func() error {
		evicted = 0
		return db.withTx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '') || '/' || $2))`,
				int32(webSessionLockClass), c.Scope); err != nil {
				return fmt.Errorf("lock scope: %w", err)
			}
			// The time is read once the scope's lock is held, not before
			// waiting for it: the scope's sessions are stamped in the
			// order they are stored, so the eviction below, which keeps
			// those that end last, keeps the latest sign-ins.
			now := db.now()
			c.CreatedAt, c.LastSeenAt = now, now
			_, err := tx.Exec(ctx, `INSERT INTO web_sessions (`+webSessionCols+`, ends_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
				c.IDHash[:], c.Scope, pgtype.Text{String: c.AppID, Valid: c.AppID != ""}, c.Subject, csrf, data,
				now, now, c.IdleTimeout.Microseconds(), c.ExpiresAt, c.EndsAt())
			switch pgCode(err) {
			case codeUniqueViolation:
				return spotoken.Errorf(spotoken.EConflict, "web session already exists")
			case codeForeignKeyViolation:
				return appNotFound(c.AppID)
			}
			if err != nil {
				return err
			}
			// Keep the cap-1 others that end last, besides the new one.
			evict := func(cap int, where string, args ...any) error {
				if cap <= 0 {
					return nil
				}
				n := len(args)
				tag, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM web_sessions WHERE id_hash IN (SELECT id_hash FROM web_sessions
					WHERE %s AND id_hash <> $%d ORDER BY ends_at DESC, created_at DESC, id_hash DESC OFFSET $%d)`, where, n+1, n+2),
					append(args, c.IDHash[:], cap-1)...)
				evicted += int(tag.RowsAffected())
				return err
			}
			if err := evict(limits.PerSubject, `scope = $1 AND subject = $2`, c.Scope, c.Subject); err != nil {
				return err
			}
			return evict(limits.PerScope, `scope = $1`, c.Scope)
		})
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
	s, err := db.scanWebSession(db.pool.QueryRow(ctx, `SELECT `+webSessionCols+` FROM web_sessions WHERE id_hash = $1`, idHash[:]))
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
	tag, err := db.pool.Exec(ctx, `UPDATE web_sessions SET last_seen_at = greatest(last_seen_at, $2),
		ends_at = CASE WHEN idle_timeout = 0 THEN expires_at
			ELSE least(greatest(last_seen_at, $2) + idle_timeout * interval '1 microsecond', expires_at) END
		WHERE id_hash = $1 AND ends_at > $2`, idHash[:], norm(at))
	if err == nil && tag.RowsAffected() == 0 {
		err = db.webSessionMissing(ctx, idHash)
	}
	if err != nil {
		return fmt.Errorf("touch web session: %w", err)
	}
	return nil
}

// UpdateWebSession reads the session, calls fn with it and saves the CSRF
// token and Data fn leaves, in one transaction holding the row's lock.
// ErrNotFound if none; ErrExpired if it has ended by the store's clock. An
// error from fn is returned as is.
func (db *DB) UpdateWebSession(ctx context.Context, idHash [32]byte, fn func(s *spotoken.WebSession) error) (*spotoken.WebSession, error) {
	var out *spotoken.WebSession
	var fnErr error
	err := retry(ctx, func() error {
		fnErr = nil
		return db.withTx(ctx, func(tx pgx.Tx) error {
			s, err := db.scanWebSession(tx.QueryRow(ctx, `SELECT `+webSessionCols+` FROM web_sessions WHERE id_hash = $1 FOR UPDATE`, idHash[:]))
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
			if _, err := tx.Exec(ctx, `UPDATE web_sessions SET csrf = $2, data = $3 WHERE id_hash = $1`, idHash[:], csrf, data); err != nil {
				return err
			}
			out = s
			return nil
		})
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
	tag, err := db.pool.Exec(ctx, `DELETE FROM web_sessions WHERE id_hash = $1`, idHash[:])
	if err == nil && tag.RowsAffected() == 0 {
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
	tag, err := db.pool.Exec(ctx, `DELETE FROM web_sessions WHERE scope = $1 AND subject = $2`, scope, subject)
	if err != nil {
		return 0, fmt.Errorf("delete web sessions of a subject: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// DeleteExpiredWebSessions deletes the sessions that ended at or before
// before and returns how many.
func (db *DB) DeleteExpiredWebSessions(ctx context.Context, before time.Time) (int, error) {
	tag, err := db.pool.Exec(ctx, `DELETE FROM web_sessions WHERE ends_at <= $1`, norm(before))
	if err != nil {
		return 0, fmt.Errorf("delete expired web sessions: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// errWebSessionEnded: the session is past its idle or absolute end.
var errWebSessionEnded = spotoken.Errorf(spotoken.EExpired, "web session ended")

// webSessionMissing tells why a conditional update of a session changed
// nothing: ErrNotFound when there is no such session, else ErrExpired.
func (db *DB) webSessionMissing(ctx context.Context, idHash [32]byte) error {
	var one int
	switch err := db.pool.QueryRow(ctx, `SELECT 1 FROM web_sessions WHERE id_hash = $1`, idHash[:]).Scan(&one); {
	case errors.Is(err, pgx.ErrNoRows):
		return spotoken.Errorf(spotoken.ENotFound, "web session not found")
	case err != nil:
		return err
	}
	return errWebSessionEnded
}

// scanWebSession reads a row selected with webSessionCols and opens its
// secrets; ErrNotFound for no row.
func (db *DB) scanWebSession(row scanner) (*spotoken.WebSession, error) {
	var (
		s                      spotoken.WebSession
		hash, csrf, data       []byte
		app                    pgtype.Text
		idle                   int64
		created, seen, expires pgtype.Timestamptz
	)
	err := row.Scan(&hash, &s.Scope, &app, &s.Subject, &csrf, &data, &created, &seen, &idle, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, spotoken.Errorf(spotoken.ENotFound, "web session not found")
	}
	if err != nil {
		return nil, err
	}
	if s.IDHash, err = hash32(hash); err != nil {
		return nil, fmt.Errorf("web session: %w", err)
	}
	s.AppID = app.String
	s.IdleTimeout = time.Duration(idle) * time.Microsecond
	s.CreatedAt, s.LastSeenAt, s.ExpiresAt = fromTstz(created), fromTstz(seen), fromTstz(expires)
	if err := db.codec.OpenWebSession(&s, csrf, data); err != nil {
		return nil, err
	}
	return &s, nil
}
