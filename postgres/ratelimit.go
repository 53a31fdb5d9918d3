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

// RateLimitedUntil returns when appID's rate-limit window ends; the zero
// time if none was recorded.
func (db *DB) RateLimitedUntil(ctx context.Context, appID string) (time.Time, error) {
	var until pgtype.Timestamptz
	err := db.pool.QueryRow(ctx, `SELECT rate_limited_until FROM app_rate_limits WHERE app_id = $1`, appID).Scan(&until)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("rate limit of app %s: %w", appID, err)
	}
	return fromTstz(until), nil
}

// ExtendRateLimit moves the end of appID's window to until unless it ends
// later already, in one statement (concurrent callers serialize on the
// row), and returns when it ends.
func (db *DB) ExtendRateLimit(ctx context.Context, appID string, until time.Time) (time.Time, error) {
	var end pgtype.Timestamptz
	err := db.pool.QueryRow(ctx, `INSERT INTO app_rate_limits AS l (app_id, rate_limited_until) VALUES ($1, $2)
		ON CONFLICT (app_id) DO UPDATE SET rate_limited_until = GREATEST(l.rate_limited_until, EXCLUDED.rate_limited_until)
		RETURNING rate_limited_until`, appID, tstz(until)).Scan(&end)
	if pgCode(err) == codeForeignKeyViolation {
		return time.Time{}, spotoken.Errorf(spotoken.ENotFound, "app %q not found", appID)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("extend the rate limit of app %s: %w", appID, err)
	}
	return fromTstz(end), nil
}

// RateLimits returns the windows that end after after, ordered by app.
func (db *DB) RateLimits(ctx context.Context, after time.Time) ([]spotoken.AppRateLimit, error) {
	rows, err := db.pool.Query(ctx, `SELECT app_id, rate_limited_until FROM app_rate_limits
		WHERE rate_limited_until > $1 ORDER BY app_id`, pgtype.Timestamptz{Time: norm(after), Valid: true})
	if err != nil {
		return nil, fmt.Errorf("rate limits: %w", err)
	}
	limits, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (spotoken.AppRateLimit, error) {
		var l spotoken.AppRateLimit
		var until pgtype.Timestamptz
		err := row.Scan(&l.AppID, &until)
		l.Until = fromTstz(until)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("rate limits: %w", err)
	}
	return limits, nil
}
