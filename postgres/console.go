package postgres

// What the operator's console reads: one app's connections by grant expiry
// or by next attempt, the health counts of its apps list, and the hourly
// refresh tallies behind its charts. Each query reads an index of
// migration 0013 (see the EXPLAIN tests).

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/spotoken/spotoken"
)

// listCols are connCols without the tokens, which a listing never reads.
var listCols = strings.Replace(connCols, "access_token, refresh_token", "NULL::bytea, NULL::bytea", 1)

// browseGrantSQL lists an app's active connections by grant expiry, after
// a cursor, from connections_app_grant; $4 bounds the expiry.
var browseGrantSQL = `SELECT ` + listCols + ` FROM connections
	WHERE state = 'active' AND app_id = $1 AND (grant_expires_at, id) > ($2, $3) AND grant_expires_at < $4
	ORDER BY grant_expires_at, id LIMIT $5`

// browseBackoffSQL lists an app's active connections in backoff by next
// attempt, after a cursor (BrowseQuery.From), from connections_app_backoff;
// $4, when not infinity, bounds the grant's expiry. Without a bound, a
// connection whose grant expiry is not known (NULL) is listed too: it is
// backing off all the same.
var browseBackoffSQL = `SELECT ` + listCols + ` FROM connections
	WHERE state = 'active' AND app_id = $1 AND next_attempt_at IS NOT NULL
		AND (next_attempt_at, id) > ($2, $3) AND ($4 = 'infinity'::timestamptz OR grant_expires_at < $4)
	ORDER BY next_attempt_at, id LIMIT $5`

// Infinite bounds of a browse: before every time, after every time.
var (
	minusInfinity = pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	plusInfinity  = pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
)

// BrowseConnections returns up to q.Limit of an app's active connections in
// q.Order after q.After, without reading a token.
func (db *DB) BrowseConnections(ctx context.Context, q spotoken.BrowseQuery) ([]*spotoken.Connection, error) {
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("browse connections: %w", err)
	}
	limit, err := spotoken.PageLimit(q.Limit)
	if err != nil {
		return nil, fmt.Errorf("browse connections: %w", err)
	}
	from := q.From()
	after := minusInfinity
	if !from.At.IsZero() {
		after = tstz(from.At)
	}
	grantBefore := plusInfinity
	if !q.GrantExpiresBefore.IsZero() {
		grantBefore = tstz(q.GrantExpiresBefore)
	}
	query := browseBackoffSQL
	if q.Order == spotoken.OrderGrantExpiry {
		query = browseGrantSQL
	}
	return list(ctx, db, "browse connections", func(row pgx.CollectableRow) (*spotoken.Connection, error) {
		sc, err := scanConnection(row)
		return sc.c, err
	}, query, q.AppID, after, from.ID, grantBefore, limit)
}

// countBackoffSQL counts the connections in backoff by app, from the
// partial index connections_app_backoff.
const countBackoffSQL = `SELECT app_id, count(*) FROM connections
	WHERE state = 'active' AND next_attempt_at > $1 AND next_attempt_at IS NOT NULL
	GROUP BY app_id ORDER BY app_id`

// CountBackingOff counts, by app, the active connections whose next attempt
// is after at.
func (db *DB) CountBackingOff(ctx context.Context, at time.Time) ([]spotoken.ConnectionCount, error) {
	return db.countActive(ctx, "count backing off", countBackoffSQL, tstz(at))
}

// countUndeliveredSQL counts the failed and given-up events by app, from the
// undelivered events (a partial index of them: events_app_undelivered).
const countUndeliveredSQL = `SELECT app_id,
		CASE WHEN next_attempt_at >= $1 THEN 'gave_up' ELSE 'failed' END AS status,
		count(*)
	FROM events WHERE delivered_at IS NULL AND attempts > 0
	GROUP BY 1, 2 ORDER BY 1, 2`

// CountUndelivered counts, by app, the events waiting for a retry and the
// events given up on.
func (db *DB) CountUndelivered(ctx context.Context) ([]spotoken.AppEventCount, error) {
	rows, err := db.pool.Query(ctx, countUndeliveredSQL, tstz(spotoken.EventGaveUpAt))
	if err != nil {
		return nil, fmt.Errorf("count undelivered events: %w", err)
	}
	counts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (spotoken.AppEventCount, error) {
		var n spotoken.AppEventCount
		var status string
		var count int64
		err := row.Scan(&n.AppID, &status, &count)
		n.Status, n.Count = spotoken.EventStatus(status), int(count)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("count undelivered events: %w", err)
	}
	return counts, nil
}

// AddRefreshTallies adds the tallies to the stored ones, in one transaction.
func (db *DB) AddRefreshTallies(ctx context.Context, tallies ...spotoken.RefreshTally) error {
	if len(tallies) == 0 {
		return nil
	}
	for _, t := range tallies {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("add refresh tallies: %w", err)
		}
	}
	err := retry(ctx, func() error {
		return db.withTx(ctx, func(tx pgx.Tx) error {
			for _, t := range tallies {
				_, err := tx.Exec(ctx, `INSERT INTO refresh_tallies (app_id, hour, refreshed, failed, rate_limited)
					VALUES ($1, $2, $3, $4, $5)
					ON CONFLICT (app_id, hour) DO UPDATE SET refreshed = refresh_tallies.refreshed + $3,
						failed = refresh_tallies.failed + $4, rate_limited = refresh_tallies.rate_limited + $5`,
					t.AppID, tstz(t.Hour.Truncate(time.Hour)), t.Refreshed, t.Failed, t.RateLimited)
				if err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("add refresh tallies: %w", err)
	}
	return nil
}

// RefreshTallies returns the app's tallies from since on, oldest first.
func (db *DB) RefreshTallies(ctx context.Context, appID string, since time.Time) ([]spotoken.RefreshTally, error) {
	from := minusInfinity
	if !since.IsZero() {
		from = tstz(since)
	}
	rows, err := db.pool.Query(ctx, `SELECT app_id, hour, refreshed, failed, rate_limited FROM refresh_tallies
		WHERE app_id = $1 AND hour >= $2 ORDER BY hour`, appID, from)
	if err != nil {
		return nil, fmt.Errorf("refresh tallies: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (spotoken.RefreshTally, error) {
		var t spotoken.RefreshTally
		var hour pgtype.Timestamptz
		err := row.Scan(&t.AppID, &hour, &t.Refreshed, &t.Failed, &t.RateLimited)
		t.Hour = fromTstz(hour)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("refresh tallies: %w", err)
	}
	return out, nil
}

// DeleteRefreshTalliesBefore deletes the tallies of the hours that start
// before before.
func (db *DB) DeleteRefreshTalliesBefore(ctx context.Context, before time.Time) (int, error) {
	tag, err := db.pool.Exec(ctx, `DELETE FROM refresh_tallies WHERE hour < $1`, tstz(before))
	if err != nil {
		return 0, fmt.Errorf("delete refresh tallies: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
