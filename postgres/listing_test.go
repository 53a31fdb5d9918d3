package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/pgtest"
	"github.com/spotoken/spotoken/postgres"
	"github.com/spotoken/spotoken/storetest"
)

// TestListingUsesIndexes: every filtered listing the API, the console and
// the CLI offer (Connections by state, FindConnections by state with and
// without an app, Events by status, AuditRecords by app, by connection and
// by time) reads an index of migration 0015 (or an older one) in the order
// it lists: no sequential scan and no sort, on 20,000 connections, 60,000
// events and 60,000 audit records after ANALYZE.
func TestListingUsesIndexes(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t), "listing")
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	// One in 50 needing re-authorization, one in 500 revoked; events and
	// audit records (a second apart) of app a one in 40, the rest b's, one
	// event in 100 failed. So a's are few among all, and an index of all
	// apps filtered by app would not do.
	_, conn := planFixture(t, dsn, now,
		`INSERT INTO connections (app_id, id, spotify_user_id, state, version, access_expires_at, created_at, updated_at)
			SELECT CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 'c' || g, 'user' || (g % 500),
				CASE WHEN g % 500 = 0 THEN 'revoked' WHEN g % 50 = 0 THEN 'needs_reauth' ELSE 'active' END, 1,
				$1::timestamptz + interval '1 hour', $1, $1
			FROM generate_series(1, 20000) AS g`,
		`INSERT INTO events (type, app_id, connection_id, created_at, delivered_at, attempts, next_attempt_at)
			SELECT 'connection.refreshed', CASE WHEN g % 40 = 0 THEN 'a' ELSE 'b' END, 'c' || (g % 20000), $1,
				CASE WHEN g % 100 <> 0 THEN $1::timestamptz END, CASE WHEN g % 100 = 0 THEN 1 ELSE 0 END,
				CASE WHEN g % 100 = 0 THEN $1::timestamptz + interval '1 minute' END
			FROM generate_series(1, 60000) AS g`,
		`INSERT INTO audit_records (version, at, action, app_id, connection_id)
			SELECT 1, $1::timestamptz + g * interval '1 second', 'token.vend', CASE WHEN g % 40 = 0 THEN 'a' ELSE 'b' END, 'c' || (g % 20000)
			FROM generate_series(1, 60000) AS g`,
		`ANALYZE connections`, `ANALYZE events`, `ANALYZE audit_records`,
	)
	type planned struct {
		name, index, query string
		args               []any
	}
	var qs []planned
	add := func(name, index, query string, args []any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		qs = append(qs, planned{name, index, query, args})
	}
	add("connections of an app", "connections_pkey", postgres.ConnectionsSQL, []any{"a", "", 101}, nil)
	for _, state := range []string{"needs_reauth", "revoked", "active"} {
		add("connections of an app, "+state, "connections_state|connections_pkey", postgres.ConnectionsStateSQL, []any{"a", "", 101, state}, nil)
	}
	for _, q := range []spotoken.ConnectionQuery{
		{State: spotoken.StateRevoked, Limit: 101},
		{State: spotoken.StateNeedsReauth, After: spotoken.ConnectionKey{AppID: "a", ID: "c500"}, Limit: 101},
		{AppID: "b", State: spotoken.StateRevoked, Limit: 101},
		{AppID: "b", State: spotoken.StateRevoked, After: spotoken.ConnectionKey{AppID: "b", ID: "c499"}, Limit: 101},
	} {
		query, args, err := postgres.FindSQL(q)
		add(fmt.Sprintf("find %+v", q), "connections_state", query, args, err)
	}
	for _, status := range []spotoken.EventStatus{spotoken.EventPending, spotoken.EventFailed, spotoken.EventGaveUp} {
		query, args, err := postgres.EventsSQL(spotoken.EventFilter{AppID: "a", Status: status, Limit: 101})
		add("events "+string(status), "events_app_undelivered", query, args, err)
	}
	for _, f := range []spotoken.AuditFilter{
		{AppID: "a", Limit: 101},
		{AppID: "a", Newest: true, Limit: 101},
		{AppID: "a", Since: now.Add(time.Hour), Until: now.Add(2 * time.Hour), Limit: 101},
		{AppID: "a", After: spotoken.AuditCursor{At: now.Add(time.Hour), ID: 3600}, Limit: 101},
	} {
		query, args, err := postgres.AuditSQL(f)
		add(fmt.Sprintf("audit %+v", f), "audit_app", query, args, err)
	}
	query, args, err := postgres.AuditSQL(spotoken.AuditFilter{AppID: "a", ConnectionID: "c10", Newest: true, Limit: 101})
	add("audit of a connection", "audit_connection", query, args, err)
	query, args, err = postgres.AuditSQL(spotoken.AuditFilter{Since: now.Add(time.Hour), Limit: 101})
	add("audit since", "audit_at", query, args, err)

	for _, q := range qs {
		plan, uses := explain(t, conn, q.name, q.query, q.index, q.args)
		if strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Sort") || !uses {
			t.Errorf("%s does not read %s in order:\n%s", q.name, q.index, plan)
		}
	}
}

// TestListTimeout: a listing past Config.ListTimeout fails with
// EQueryTimeout; other reads are not bounded by it (storetest.CheckListTimeout).
func TestListTimeout(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t), "listtimeout")
	openStore(t, dsn, testKeys(t), nil) // migrated
	db, err := postgres.Open(context.Background(), postgres.Config{DSN: dsn, Keys: testKeys(t), ListTimeout: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	storetest.CheckListTimeout(t, db)
}

// TestStatementCacheRequired: the store refuses a DSN that turns pgx's
// statement cache off, which would parse and plan every query again.
func TestStatementCacheRequired(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t), "stmtcache")
	opt := " default_query_exec_mode=exec" // keyword/value form
	if strings.Contains(dsn, "://") {
		opt = "?default_query_exec_mode=exec"
		if strings.Contains(dsn, "?") {
			opt = "&default_query_exec_mode=exec"
		}
	}
	db, err := postgres.Open(context.Background(), postgres.Config{DSN: dsn + opt, Keys: testKeys(t)})
	if err == nil {
		db.Close()
		t.Fatal("Open accepted default_query_exec_mode=exec")
	}
	if !strings.Contains(err.Error(), "cache_statement") {
		t.Errorf("Open: %v; want it to name cache_statement", err)
	}
}
