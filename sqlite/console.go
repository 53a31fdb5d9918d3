package sqlite

// What the operator's console reads: one app's connections by grant expiry
// or by next attempt, the health counts of its apps list, and the hourly
// refresh tallies behind its charts. Each query reads an index of
// migration 0013 (see the query-plan tests).

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/spotoken/spotoken"
)

// browseGrantQuery lists an app's active connections by grant expiry,
// after a cursor, from connections_app_grant. ?4 bounds the expiry.
var browseGrantQuery = `SELECT ` + connectionListColumns + ` FROM connections
	WHERE state = 'active' AND app_id = ?1 AND (grant_expires_at, id) > (?2, ?3) AND grant_expires_at < ?4
	ORDER BY grant_expires_at, id LIMIT ?5`

// browseBackoffQuery lists an app's active connections in backoff by next
// attempt, after a cursor (BrowseQuery.From), from connections_app_backoff;
// ?4 (when not zero) bounds the grant's expiry.
var browseBackoffQuery = `SELECT ` + connectionListColumns + ` FROM connections
	WHERE state = 'active' AND app_id = ?1 AND next_attempt_at IS NOT NULL
		AND (next_attempt_at, id) > (?2, ?3) AND (?4 = 0 OR grant_expires_at < ?4)
	ORDER BY next_attempt_at, id LIMIT ?5`

// BrowseConnections returns up to q.Limit of an app's active connections in
// q.Order after q.After, without opening a token.
func (db *DB) BrowseConnections(ctx context.Context, q spotoken.BrowseQuery) ([]*spotoken.Connection, error) {
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("browse connections: %w", err)
	}
	limit, err := spotoken.PageLimit(q.Limit)
	if err != nil {
		return nil, fmt.Errorf("browse connections: %w", err)
	}
	scan := func(r *sql.Rows) (*spotoken.Connection, error) {
		c, _, err := db.scanConnection(r)
		return c, err
	}
	from := q.From()
	after := int64(math.MinInt64) // the start: before every time
	if !from.At.IsZero() {
		after = from.At.UnixMicro()
	}
	if q.Order == spotoken.OrderGrantExpiry {
		before := int64(math.MaxInt64)
		if !q.GrantExpiresBefore.IsZero() {
			before = q.GrantExpiresBefore.UnixMicro()
		}
		return list(ctx, db, "browse connections", scan, browseGrantQuery, q.AppID, after, from.ID, before, limit)
	}
	var grantBefore int64
	if !q.GrantExpiresBefore.IsZero() {
		grantBefore = q.GrantExpiresBefore.UnixMicro()
	}
	return list(ctx, db, "browse connections", scan, browseBackoffQuery, q.AppID, after, from.ID, grantBefore, limit)
}

// countBackoffQuery counts the connections in backoff by app, from the
// partial index connections_app_backoff alone.
const countBackoffQuery = `SELECT app_id, count(*) FROM connections
	WHERE state = 'active' AND next_attempt_at > ?1 AND next_attempt_at IS NOT NULL
	GROUP BY app_id ORDER BY app_id`

// CountBackingOff counts, by app, the active connections whose next attempt
// is after at.
func (db *DB) CountBackingOff(ctx context.Context, at time.Time) ([]spotoken.ConnectionCount, error) {
	return queryAll(ctx, db.r, "count backing off", func(r *sql.Rows) (n spotoken.ConnectionCount, err error) {
		err = r.Scan(&n.AppID, &n.Count)
		n.State = spotoken.StateActive
		return n, err
	}, countBackoffQuery, at.UnixMicro())
}

// countUndeliveredQuery counts the failed and given-up events by app, from
// the undelivered events (the partial index events_undelivered_app).
var countUndeliveredQuery = `SELECT app_id,
		CASE WHEN next_attempt_at >= ` + strconv.FormatInt(spotoken.EventGaveUpAt.UnixMicro(), 10) + ` THEN 'gave_up' ELSE 'failed' END AS status,
		count(*)
	FROM events WHERE delivered_at IS NULL AND attempts > 0
	GROUP BY app_id, status ORDER BY app_id, status`

// CountUndelivered counts, by app, the events waiting for a retry and the
// events given up on.
func (db *DB) CountUndelivered(ctx context.Context) ([]spotoken.AppEventCount, error) {
	return queryAll(ctx, db.r, "count undelivered events", func(r *sql.Rows) (n spotoken.AppEventCount, err error) {
		var status string
		err = r.Scan(&n.AppID, &status, &n.Count)
		n.Status = spotoken.EventStatus(status)
		return n, err
	}, countUndeliveredQuery)
}

// AddRefreshTallies adds the tallies to the stored ones, in one transaction.
func (db *DB) AddRefreshTallies(ctx context.Context, tallies ...spotoken.RefreshTally) error {
	if len(tallies) == 0 {
		return nil
	}
	err := db.write(ctx, func(tx *sql.Tx) error {
		for _, t := range tallies {
			if err := t.Validate(); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO refresh_tallies (app_id, hour, refreshed, failed, rate_limited)
				VALUES (?1, ?2, ?3, ?4, ?5)
				ON CONFLICT (app_id, hour) DO UPDATE SET refreshed = refreshed + ?3, failed = failed + ?4, rate_limited = rate_limited + ?5`,
				t.AppID, t.Hour.Truncate(time.Hour).UnixMicro(), t.Refreshed, t.Failed, t.RateLimited)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add refresh tallies: %w", err)
	}
	return nil
}

// RefreshTallies returns the app's tallies from since on, oldest first.
func (db *DB) RefreshTallies(ctx context.Context, appID string, since time.Time) ([]spotoken.RefreshTally, error) {
	return queryAll(ctx, db.r, "refresh tallies", func(r *sql.Rows) (t spotoken.RefreshTally, err error) {
		err = r.Scan(&t.AppID, timeCol{&t.Hour}, &t.Refreshed, &t.Failed, &t.RateLimited)
		return t, err
	}, `SELECT app_id, hour, refreshed, failed, rate_limited FROM refresh_tallies
		WHERE app_id = ? AND hour >= ? ORDER BY hour`, appID, since.UnixMicro())
}

// DeleteRefreshTalliesBefore deletes the tallies of the hours that start
// before before.
func (db *DB) DeleteRefreshTalliesBefore(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM refresh_tallies WHERE hour < ?`, before.UnixMicro())
		if err != nil {
			return err
		}
		n, err = affected(res)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete refresh tallies: %w", err)
	}
	return int(n), nil
}
