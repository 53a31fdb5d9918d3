package sqlite_test

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/sqlite"
)

// TestConsoleQueryPlans: every query behind the console's searches,
// listings, timelines and health counts searches an index of migration
// 0013 (or the primary key), never scans the table of connections or of
// events, and never sorts, before and after ANALYZE: at a million
// connections a scan takes seconds.
func TestConsoleQueryPlans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openDB(t, path)
	defer db.Close()
	now := time.Now()
	for _, app := range []string{"a", "b"} {
		if err := db.CreateApp(ctx, &spotoken.App{ID: app, ClientID: "cid"}); err != nil {
			t.Fatal(err)
		}
	}
	var events []spotoken.Event
	for i := range 300 {
		app := []string{"a", "b"}[i%2]
		c := &spotoken.Connection{AppID: app, ID: fmt.Sprint("c", i), State: spotoken.StateActive, SpotifyUserID: fmt.Sprint("user", i%50),
			GrantExpiresAt: now.Add(time.Duration(i) * time.Hour),
			Token:          spotoken.Token{AccessToken: "at", RefreshToken: "rt", Expiry: now.Add(time.Hour)}}
		if i%7 == 0 {
			c.NextAttemptAt, c.ConsecutiveFailures = now.Add(time.Duration(i)*time.Second), 1
		}
		if i%11 == 0 {
			c.State = spotoken.StateNeedsReauth
		}
		if err := db.CreateConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			events = append(events, spotoken.Event{Type: spotoken.EventConnectionRefreshed, AppID: app, ConnectionID: c.ID})
		}
	}
	if err := db.AppendEvents(ctx, events...); err != nil {
		t.Fatal(err)
	}
	raw := rawDB(t, path)
	findByID, findByIDArgs, err := sqlite.FindQuery(spotoken.ConnectionQuery{ID: "c10", Limit: 51})
	if err != nil {
		t.Fatal(err)
	}
	findByUser, findByUserArgs, err := sqlite.FindQuery(spotoken.ConnectionQuery{SpotifyUserID: "user7", Limit: 51})
	if err != nil {
		t.Fatal(err)
	}
	timeline, timelineArgs, err := sqlite.EventsQuery(spotoken.EventFilter{AppID: "a", ConnectionID: "c10", Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	for _, analyzed := range []bool{false, true} {
		if analyzed {
			if _, err := raw.ExecContext(ctx, `ANALYZE`); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range []struct {
			name, query, want string
			args              []any
		}{
			{"find by connection id", findByID, "SEARCH connections USING INDEX connections_id (id=?)", findByIDArgs},
			{"find by Spotify user", findByUser, "SEARCH connections USING INDEX connections_spotify_user (spotify_user_id=?)", findByUserArgs},
			{"timeline", timeline, "SEARCH events USING INDEX events_connection (app_id=? AND connection_id=?)", timelineArgs},
			{"by grant expiry", sqlite.BrowseGrantQuery,
				"SEARCH connections USING INDEX connections_app_grant (app_id=? AND (grant_expires_at,id)>(?,?) AND grant_expires_at<?)",
				[]any{"a", int64(math.MinInt64), "", now.Add(24 * time.Hour).UnixMicro(), 51}},
			{"by next attempt", sqlite.BrowseBackoffQuery,
				"SEARCH connections USING INDEX connections_app_backoff (app_id=? AND (next_attempt_at,id)>(?,?))",
				[]any{"a", now.UnixMicro(), "", 0, 51}},
			{"count backing off", sqlite.CountBackoffQuery, "SCAN connections USING COVERING INDEX connections_app_backoff", []any{now.UnixMicro()}},
			{"count undelivered", sqlite.CountUndeliveredQuery, "SCAN events USING INDEX events_undelivered_app\nUSE TEMP B-TREE FOR GROUP BY", nil},
		} {
			plan := queryPlan(t, raw, q.query, q.args...)
			if plan != q.want {
				t.Errorf("%s, plan (analyzed: %v):\n%s\nwant:\n%s", q.name, analyzed, plan, q.want)
			}
			if strings.Contains(plan, "SCAN connections\n") || plan == "SCAN connections" || strings.HasPrefix(plan, "SCAN events\n") || plan == "SCAN events" {
				t.Errorf("%s scans a whole table:\n%s", q.name, plan)
			}
		}
	}
}
