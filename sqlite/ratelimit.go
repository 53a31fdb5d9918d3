package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/spotoken/spotoken"
)

// RateLimitedUntil returns when appID's rate-limit window ends; the zero
// time if none was recorded.
func (db *DB) RateLimitedUntil(ctx context.Context, appID string) (time.Time, error) {
	var until time.Time
	err := db.r.QueryRowContext(ctx, `SELECT rate_limited_until FROM app_rate_limits WHERE app_id = ?`, appID).Scan(timeCol{&until})
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("rate limit of app %s: %w", appID, err)
	}
	return until, nil
}

// ExtendRateLimit moves the end of appID's window to until unless it ends
// later already, in one statement, and returns when it ends.
func (db *DB) ExtendRateLimit(ctx context.Context, appID string, until time.Time) (time.Time, error) {
	var end time.Time
	err := db.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO app_rate_limits (app_id, rate_limited_until) VALUES (?, ?)
			ON CONFLICT (app_id) DO UPDATE SET rate_limited_until = max(rate_limited_until, excluded.rate_limited_until)
			RETURNING rate_limited_until`, appID, stored(until).UnixMicro()).Scan(timeCol{&end})
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("extend the rate limit of app %s: %w", appID, translate(err, "", fmt.Sprintf("app %q not found", appID)))
	}
	return end, nil
}

// RateLimits returns the windows that end after after, ordered by app.
func (db *DB) RateLimits(ctx context.Context, after time.Time) ([]spotoken.AppRateLimit, error) {
	return queryAll(ctx, db.r, "rate limits", func(r *sql.Rows) (spotoken.AppRateLimit, error) {
		var l spotoken.AppRateLimit
		err := r.Scan(&l.AppID, timeCol{&l.Until})
		return l, err
	}, `SELECT app_id, rate_limited_until FROM app_rate_limits WHERE rate_limited_until > ? ORDER BY app_id`, stored(after).UnixMicro())
}
