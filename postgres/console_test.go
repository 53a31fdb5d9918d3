package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/pgtest"
	"github.com/spotoken/spotoken/postgres"
)

// TestConsoleUsesIndexes: every query behind the console's searches,
// listings, timelines and health counts reads an index of migration 0013
// (or another index), never a sequential scan of connections or events, on
// 20,000 connections and 60,000 events after ANALYZE.
func TestConsoleUsesIndexes(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t), "console")
	ctx := context.Background()
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	// Grants a minute apart, one in 50 in backoff, one in 20 needing
	// re-authorization, 500 Spotify users; three events each.
	db, conn := planFixture(t, dsn, now,
		`INSERT INTO connections (app_id, id, spotify_user_id, state, version, access_expires_at, grant_expires_at,
				next_attempt_at, created_at, updated_at)
			SELECT CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 'c' || g, 'user' || (g % 500),
				CASE WHEN g % 20 = 0 THEN 'needs_reauth' ELSE 'active' END, 1, $1::timestamptz + interval '1 hour',
				$1::timestamptz + g * interval '1 minute',
				CASE WHEN g % 50 = 0 THEN $1::timestamptz + g * interval '1 second' END, $1, $1
			FROM generate_series(1, 20000) AS g`,
		`INSERT INTO events (type, app_id, connection_id, created_at, delivered_at, attempts, next_attempt_at)
			SELECT 'connection.refreshed', CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 'c' || (g % 20000), $1,
				CASE WHEN g % 100 <> 0 THEN $1::timestamptz END, CASE WHEN g % 100 = 0 THEN 1 ELSE 0 END,
				CASE WHEN g % 100 = 0 THEN $1::timestamptz + interval '1 minute' END
			FROM generate_series(1, 60000) AS g`,
		`ANALYZE connections`, `ANALYZE events`,
	)
	findByID, findByIDArgs, err := postgres.FindSQL(spotoken.ConnectionQuery{ID: "c10", Limit: 51})
	if err != nil {
		t.Fatal(err)
	}
	findByUser, findByUserArgs, err := postgres.FindSQL(spotoken.ConnectionQuery{SpotifyUserID: "user7", Limit: 51})
	if err != nil {
		t.Fatal(err)
	}
	timeline, timelineArgs, err := postgres.EventsSQL(spotoken.EventFilter{AppID: "a", ConnectionID: "c10", Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	minusInf := pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	plusInf := pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
	for _, q := range []struct {
		name, query, index string
		args               []any
	}{
		{"find by connection id", findByID, "connections_id", findByIDArgs},
		{"find by Spotify user", findByUser, "connections_spotify_user", findByUserArgs},
		{"timeline", timeline, "events_connection", timelineArgs},
		{"by grant expiry", postgres.BrowseGrantSQL, "connections_app_grant", []any{"a", minusInf, "", plusInf, 51}},
		// With a bound, the planner may take the grants expiring soon of every
		// app (0004's connections_grant_expiry) instead: a search too.
		{"expiring within a week", postgres.BrowseGrantSQL, "connections_app_grant|connections_grant_expiry", []any{"a", minusInf, "", now.Add(7 * 24 * time.Hour), 51}},
		{"by next attempt", postgres.BrowseBackoffSQL, "connections_app_backoff", []any{"a", now, "", plusInf, 51}},
		{"count backing off", postgres.CountBackoffSQL, "connections_app_backoff", []any{now}},
		// Either partial index of the undelivered events.
		{"count undelivered", postgres.CountUndeliveredSQL, "events_app_undelivered|events_pending", []any{spotoken.EventGaveUpAt}},
	} {
		plan, uses := explain(t, conn, q.name, q.query, q.index, q.args)
		if strings.Contains(plan, "Seq Scan") || !uses {
			t.Errorf("%s does not read %s:\n%s", q.name, q.index, plan)
		}
	}

	// The queries answer as the plans promise.
	got, err := db.BrowseConnections(ctx, spotoken.BrowseQuery{AppID: "a", Order: spotoken.OrderNextAttempt, BackingOffAt: now, Limit: 3})
	var ids []string
	for _, c := range got {
		ids = append(ids, c.ID)
	}
	if err != nil || strings.Join(ids, " ") != "c50 c150 c250" { // c100 needs re-authorization
		t.Errorf("the first three of a in backoff: %v, %v; want c50 c150 c250", ids, err)
	}
	counts, err := db.CountUndelivered(ctx)
	if err != nil || len(counts) != 1 || counts[0] != (spotoken.AppEventCount{AppID: "a", Status: spotoken.EventFailed, Count: 600}) {
		t.Errorf("CountUndelivered = %v, %v; want a's 600 failed events", counts, err)
	}
}
