package sqlite_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/sqlite"
	"github.com/spotoken/spotoken/storetest"
)

// TestListingQueryPlans: every filtered listing the API, the console and
// the CLI offer (Connections by state, FindConnections by state with and
// without an app, Events by status, AuditRecords by app, by connection and
// by time) searches an index in the order it lists, with no sort and no
// scan of a table, before and after ANALYZE (migration 0015). At a million
// connections a scan of one app's rows took 1.3-2.7 s.
func TestListingQueryPlans(t *testing.T) {
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
	var records []spotoken.AuditRecord
	for i := range 300 {
		app := []string{"a", "b"}[i%2]
		c := &spotoken.Connection{AppID: app, ID: fmt.Sprint("c", i), State: spotoken.StateActive, SpotifyUserID: fmt.Sprint("user", i%50),
			Token: spotoken.Token{AccessToken: "at", RefreshToken: "rt", Expiry: now.Add(time.Hour)}}
		if i%11 == 0 {
			c.State = spotoken.StateNeedsReauth
		}
		if err := db.CreateConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			events = append(events, spotoken.Event{Type: spotoken.EventConnectionRefreshed, AppID: app, ConnectionID: c.ID})
			records = append(records, spotoken.AuditRecord{Action: "token.vend", AppID: app, ConnectionID: c.ID, At: now.Add(time.Duration(i) * time.Second)})
		}
	}
	if err := db.AppendEvents(ctx, events...); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendAudit(ctx, records...); err != nil {
		t.Fatal(err)
	}
	raw := rawDB(t, path)
	type planned struct {
		name, want string
		query      string
		args       []any
	}
	var qs []planned
	add := func(name, want, query string, args []any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		qs = append(qs, planned{name, want, query, args})
	}
	add("connections of an app", "SEARCH connections USING INDEX sqlite_autoindex_connections_1 (app_id=? AND id>?)",
		sqlite.ConnectionsQuery, []any{"a", "", 101}, nil)
	add("connections of an app by state", "SEARCH connections USING INDEX connections_app_state (app_id=? AND state=? AND id>?)",
		sqlite.ConnectionsStateQuery, []any{"a", "", 101, "needs_reauth"}, nil)
	for _, q := range []spotoken.ConnectionQuery{
		{State: spotoken.StateNeedsReauth, Limit: 101},
		{AppID: "b", State: spotoken.StateRevoked, Limit: 101},
		{State: spotoken.StateNeedsReauth, After: spotoken.ConnectionKey{AppID: "a\x00"}, Limit: 101},
		// The first query of FindConnections by state after a cursor.
		{AppID: "a", State: spotoken.StateNeedsReauth, After: spotoken.ConnectionKey{AppID: "a", ID: "c22"}, Limit: 101},
	} {
		query, args, err := sqlite.FindQuery(q)
		want := "SEARCH connections USING INDEX connections_app_state (app_id=? AND state=?)"
		if q.AppID == "" {
			want += "\nLIST SUBQUERY 1\nSEARCH apps USING COVERING INDEX sqlite_autoindex_apps_1 (id>?)"
		}
		if q.After.ID != "" {
			want = "SEARCH connections USING INDEX connections_app_state (app_id=? AND state=? AND id>?)"
		}
		add(fmt.Sprintf("find %+v", q), want, query, args, err)
	}
	for _, status := range []spotoken.EventStatus{spotoken.EventPending, spotoken.EventFailed, spotoken.EventGaveUp} {
		query, args, err := sqlite.EventsQuery(spotoken.EventFilter{AppID: "a", Status: status, Limit: 101})
		add("events "+string(status), "SEARCH events USING INDEX events_undelivered_app (app_id=?)", query, args, err)
	}
	query, args, err := sqlite.EventsQuery(spotoken.EventFilter{AppID: "a", Status: spotoken.EventDelivered, Limit: 101})
	add("events delivered", "SEARCH events USING INDEX events_app (app_id=?)", query, args, err)
	for _, f := range []spotoken.AuditFilter{
		{AppID: "a", Limit: 101},
		{AppID: "a", Newest: true, Limit: 101},
		{AppID: "a", Since: now, Until: now.Add(time.Minute), Limit: 101},
		{AppID: "a", After: spotoken.AuditCursor{At: now, ID: 7}, Limit: 101},
	} {
		query, args, err := sqlite.AuditQuery(f)
		want := "SEARCH audit_records USING INDEX audit_app (app_id=?)"
		switch {
		case !f.Since.IsZero():
			want = "SEARCH audit_records USING INDEX audit_app (app_id=? AND at>? AND at<?)"
		case f.After != (spotoken.AuditCursor{}):
			want = "SEARCH audit_records USING INDEX audit_app (app_id=? AND at>?)"
		}
		add(fmt.Sprintf("audit %+v", f), want, query, args, err)
		gquery, gargs := sqlite.AuditGroupQuery(f)
		want = "SEARCH audit_groups USING INDEX audit_groups_app (app_id=?)"
		switch {
		case !f.Since.IsZero():
			want = "SEARCH audit_groups USING INDEX audit_groups_app (app_id=? AND first_at>? AND first_at<?)"
		case f.After != (spotoken.AuditCursor{}):
			want = "SEARCH audit_groups USING INDEX audit_groups_app (app_id=? AND first_at>?)"
		}
		add(fmt.Sprintf("audit groups %+v", f), want, gquery, gargs, nil)
	}
	gquery, gargs := sqlite.AuditGroupQuery(spotoken.AuditFilter{AppID: "a", ConnectionID: "c10", Newest: true, Limit: 101})
	// A connection's groups: the index by connection in key order (no
	// sort), merged with the tail's, which are sorted: they are the few
	// of the waiting groups (about Config.AuditIndexEvery) that are the
	// connection's and not in the index yet (a look-up each).
	// audit_index_state is one row.
	tailPlan := "MERGE (UNION ALL)\nLEFT\nSEARCH x USING PRIMARY KEY (app_id=? AND connection_id=?)\nSEARCH g USING INTEGER PRIMARY KEY (rowid=?)\n" +
		"RIGHT\nSEARCH g USING INDEX audit_groups_tail (id>?)\nSCALAR SUBQUERY 2\nSCAN audit_index_state\n" +
		"CORRELATED SCALAR SUBQUERY 3\nSEARCH i USING PRIMARY KEY (app_id=? AND connection_id=? AND first_at=? AND id=?)\nUSE TEMP B-TREE FOR ORDER BY"
	add("audit groups of a connection", tailPlan, gquery, gargs, nil)
	// The indexing's chunk: each entry's group looked up in the dense
	// tail index, not in the table (whose rows hold the bodies).
	indexPlan := "SCAN k VIRTUAL TABLE INDEX 1:\nSEARCH g EXISTS USING COVERING INDEX audit_groups_tail (id=?)"
	add("audit index chunk", indexPlan, sqlite.IndexInsertQuery, []any{`[["a","c10",1,1]]`}, nil)
	gquery, gargs = sqlite.AuditGroupQuery(spotoken.AuditFilter{Since: now, Limit: 101})
	add("audit groups since", "SEARCH audit_groups USING INDEX audit_groups_at (first_at>?)", gquery, gargs, nil)
	query, args, err = sqlite.AuditQuery(spotoken.AuditFilter{AppID: "a", ConnectionID: "c10", Newest: true, Limit: 101})
	add("audit of a connection", "SEARCH audit_records USING INDEX audit_connection (app_id=? AND connection_id=?)", query, args, err)
	query, args, err = sqlite.AuditQuery(spotoken.AuditFilter{Since: now, Limit: 101})
	add("audit since", "SEARCH audit_records USING INDEX audit_at (at>?)", query, args, err)

	for _, analyzed := range []bool{false, true} {
		if analyzed {
			if _, err := raw.ExecContext(ctx, `ANALYZE`); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range qs {
			plan := queryPlan(t, raw, q.query, q.args...)
			if plan != q.want {
				t.Errorf("%s, plan (analyzed: %v):\n%s\nwant:\n%s", q.name, analyzed, plan, q.want)
			}
			if plan != tailPlan && plan != indexPlan && (strings.Contains(plan, "TEMP B-TREE") || strings.Contains(plan, "SCAN ")) {
				t.Errorf("%s sorts or scans:\n%s", q.name, plan)
			}
		}
	}
}

// TestListTimeout: a listing that runs past Config.ListTimeout fails with
// EQueryTimeout (here a deadline of a nanosecond, always past), while reads
// that are not listings are not bounded by it; a caller that gave up is
// told its own context's error, not a timeout.
func TestListTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db := openDB(t, path)
	if err := db.CreateApp(ctx, &spotoken.App{ID: "a", ClientID: "cid"}); err != nil {
		t.Fatal(err)
	}
	c := &spotoken.Connection{AppID: "a", ID: "c1", State: spotoken.StateActive, Token: spotoken.Token{AccessToken: "at", RefreshToken: "rt"}}
	if err := db.CreateConnection(ctx, c); err != nil {
		t.Fatal(err)
	}
	db.Close()
	slow, err := sqlite.Open(ctx, sqlite.Config{Path: path, Keys: testRing(t), ListTimeout: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	storetest.CheckListTimeout(t, slow)
}

// TestConnectionAfterClose: reading a connection from a closed store fails
// at once instead of waiting for a connection that will never come back.
func TestConnectionAfterClose(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "db"))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Connection(ctx, spotoken.ConnectionKey{AppID: "a", ID: "c1"}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Connection after Close: %v; want an error saying the store is closed", err)
	}
}
