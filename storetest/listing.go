package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
)

// The listings at scale (issue 14): listings filtered by state page
// correctly across and within apps, whichever index serves them, and no
// listing returns more than spotoken.MaxPage+1 rows.

// testListingsByState: Connections and FindConnections filtered by state,
// paged with every page size, return exactly the connections in that state,
// in (app, id) order, each once: across apps (FindConnections by state
// alone, including after a cursor whose app has no more of them, or that
// names no app), and within an app.
func testListingsByState(t *testing.T, h *harness) {
	states := []spotoken.State{spotoken.StateActive, spotoken.StateNeedsReauth, spotoken.StateRevoked}
	want := map[spotoken.State][]string{}
	wantApp := map[string]map[spotoken.State][]string{}
	// App b has no revoked connection; app c none at all; app d's are all
	// needs_reauth.
	for _, app := range []string{"a", "b", "c", "d"} {
		h.newApp(t, app)
		wantApp[app] = map[spotoken.State][]string{}
	}
	for i := range 40 {
		app := []string{"a", "b", "d"}[i%3]
		st := states[i%5%3]
		if app == "b" && st == spotoken.StateRevoked {
			st = spotoken.StateActive
		}
		if app == "d" {
			st = spotoken.StateNeedsReauth
		}
		id := fmt.Sprintf("c%02d", i)
		h.newConn(t, app, id, func(c *spotoken.Connection) { c.State = st })
		wantApp[app][st] = append(wantApp[app][st], id)
	}
	for _, app := range []string{"a", "b", "c", "d"} {
		for _, st := range states {
			for _, id := range wantApp[app][st] {
				want[st] = append(want[st], app+"/"+id)
			}
		}
	}
	for _, st := range states {
		for _, limit := range []int{1, 2, 3, 7, 100} {
			var got []string
			var after spotoken.ConnectionKey
			for page := 0; ; page++ {
				if page > 50 {
					t.Fatalf("FindConnections(state %s, limit %d) does not end", st, limit)
				}
				cs, err := h.store.FindConnections(ctx, spotoken.ConnectionQuery{State: st, After: after, Limit: limit})
				if err != nil {
					t.Fatalf("FindConnections(state %s, after %s): %v", st, after, err)
				}
				if len(cs) > limit {
					t.Fatalf("FindConnections(limit %d) returned %d", limit, len(cs))
				}
				for _, c := range cs {
					if c.State != st {
						t.Errorf("FindConnections(state %s) returned %s in %s", st, c.Key(), c.State)
					}
					got = append(got, c.Key().String())
				}
				if len(cs) < limit {
					break
				}
				after = cs[len(cs)-1].Key()
			}
			if d := diff(got, want[st]); d != "" {
				t.Errorf("FindConnections(state %s) in pages of %d (-got +want):\n%s", st, limit, d)
			}
		}
		for _, app := range []string{"a", "b", "c", "d"} {
			for _, limit := range []int{1, 4, 100} {
				var got, gotFind []string
				for after := ""; ; {
					cs, err := h.store.Connections(ctx, spotoken.ConnectionFilter{AppID: app, State: st, After: after, Limit: limit})
					if err != nil {
						t.Fatal(err)
					}
					found, err := h.store.FindConnections(ctx, spotoken.ConnectionQuery{AppID: app, State: st,
						After: spotoken.ConnectionKey{AppID: app, ID: after}, Limit: limit})
					if err != nil {
						t.Fatal(err)
					}
					for _, c := range cs {
						got = append(got, c.ID)
					}
					for _, c := range found {
						gotFind = append(gotFind, c.ID)
					}
					if len(cs) < limit {
						break
					}
					after = cs[len(cs)-1].ID
				}
				if d := diff(got, wantApp[app][st]); d != "" {
					t.Errorf("Connections(%s, state %s) in pages of %d (-got +want):\n%s", app, st, limit, d)
				}
				if d := diff(gotFind, wantApp[app][st]); d != "" {
					t.Errorf("FindConnections(%s, state %s) in pages of %d (-got +want):\n%s", app, st, limit, d)
				}
			}
		}
	}
	// A cursor that names no app: the listing goes on from the next one.
	cs, err := h.store.FindConnections(ctx, spotoken.ConnectionQuery{State: spotoken.StateNeedsReauth,
		After: spotoken.ConnectionKey{AppID: "aa", ID: "zz"}, Limit: 1})
	if err != nil || len(cs) != 1 || cs[0].Key().String() != want[spotoken.StateNeedsReauth][len(wantApp["a"][spotoken.StateNeedsReauth])] {
		t.Errorf("FindConnections(needs_reauth after aa/zz) = %v, %v; want b's first", cs, err)
	}
}

// testPageLimits: each listing returns up to spotoken.MaxPage+1 rows (a
// page and the one that tells another follows) and refuses a larger limit
// with EInvalid rather than reading an unbounded number of rows.
func testPageLimits(t *testing.T, h *harness) {
	h.newApp(t, "a")
	now := h.clock.Now()
	for i := range spotoken.MaxPage + 5 {
		h.newConn(t, "a", fmt.Sprintf("c%04d", i), func(c *spotoken.Connection) {
			c.GrantExpiresAt = now.Add(time.Duration(i) * time.Minute)
		})
	}
	listings := []struct {
		name string
		list func(limit int) (int, error)
	}{
		{"Connections", func(limit int) (int, error) {
			cs, err := h.store.Connections(ctx, spotoken.ConnectionFilter{AppID: "a", Limit: limit})
			return len(cs), err
		}},
		{"Connections by state", func(limit int) (int, error) {
			cs, err := h.store.Connections(ctx, spotoken.ConnectionFilter{AppID: "a", State: spotoken.StateActive, Limit: limit})
			return len(cs), err
		}},
		{"FindConnections", func(limit int) (int, error) {
			cs, err := h.store.FindConnections(ctx, spotoken.ConnectionQuery{State: spotoken.StateActive, Limit: limit})
			return len(cs), err
		}},
		{"BrowseConnections", func(limit int) (int, error) {
			cs, err := h.store.BrowseConnections(ctx, spotoken.BrowseQuery{AppID: "a", Order: spotoken.OrderGrantExpiry, Limit: limit})
			return len(cs), err
		}},
		{"Events", func(limit int) (int, error) {
			es, err := h.store.Events(ctx, spotoken.EventFilter{AppID: "a", Limit: limit})
			return len(es), err
		}},
		{"AuditRecords", func(limit int) (int, error) {
			rs, err := h.store.AuditRecords(ctx, spotoken.AuditFilter{AppID: "a", Limit: limit})
			return len(rs), err
		}},
	}
	var events []spotoken.Event
	var records []spotoken.AuditRecord
	for range spotoken.MaxPage + 5 {
		events = append(events, spotoken.Event{Type: spotoken.EventConnectionRefreshed, AppID: "a", ConnectionID: "c0000"})
		records = append(records, spotoken.AuditRecord{Action: "token.vend", AppID: "a", ConnectionID: "c0000"})
	}
	if err := h.store.AppendEvents(ctx, events...); err != nil {
		t.Fatal(err)
	}
	if err := h.store.AppendAudit(ctx, records...); err != nil {
		t.Fatal(err)
	}
	for _, l := range listings {
		for _, tt := range []struct{ limit, want int }{{0, spotoken.DefaultPage}, {-1, spotoken.DefaultPage}, {7, 7}, {spotoken.MaxPage + 1, spotoken.MaxPage + 1}} {
			if n, err := l.list(tt.limit); err != nil || n != tt.want {
				t.Errorf("%s(limit %d) = %d rows, %v; want %d", l.name, tt.limit, n, err, tt.want)
			}
		}
		n, err := l.list(spotoken.MaxPage + 2)
		wantErr(t, fmt.Sprintf("%s(limit %d) (%d rows)", l.name, spotoken.MaxPage+2, n), err, &spotoken.Error{Code: spotoken.EInvalid})
	}
}

// CheckListTimeout checks a store opened with a listing deadline that is
// always past (a nanosecond): every listing (Connections, FindConnections,
// BrowseConnections, Events, AuditRecords) fails with EQueryTimeout, which
// is a spotoken.Error (so dbguard does not take it for a database that is
// away), while reads that are not listings answer as usual, and a caller
// whose own context ended gets its context's error, not a timeout.
func CheckListTimeout(t *testing.T, s spotoken.Store) {
	t.Helper()
	listings := map[string]func(context.Context) error{
		"Connections": func(ctx context.Context) error {
			_, err := s.Connections(ctx, spotoken.ConnectionFilter{AppID: "a"})
			return err
		},
		"Connections by state": func(ctx context.Context) error {
			_, err := s.Connections(ctx, spotoken.ConnectionFilter{AppID: "a", State: spotoken.StateActive})
			return err
		},
		"FindConnections": func(ctx context.Context) error {
			_, err := s.FindConnections(ctx, spotoken.ConnectionQuery{State: spotoken.StateActive})
			return err
		},
		"BrowseConnections": func(ctx context.Context) error {
			_, err := s.BrowseConnections(ctx, spotoken.BrowseQuery{AppID: "a", Order: spotoken.OrderGrantExpiry})
			return err
		},
		"Events": func(ctx context.Context) error {
			_, err := s.Events(ctx, spotoken.EventFilter{AppID: "a"})
			return err
		},
		"AuditRecords": func(ctx context.Context) error {
			_, err := s.AuditRecords(ctx, spotoken.AuditFilter{AppID: "a"})
			return err
		},
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	for name, list := range listings {
		err := list(ctx)
		var se *spotoken.Error
		if spotoken.ErrorCode(err) != spotoken.EQueryTimeout || !errors.As(err, &se) || se.RetryAfter <= 0 {
			t.Errorf("%s past the listing deadline: %v; want a query_timeout error with a Retry-After", name, err)
		}
		if err := list(gone); !errors.Is(err, context.Canceled) || spotoken.ErrorCode(err) == spotoken.EQueryTimeout {
			t.Errorf("%s with the caller's context ended: %v; want context.Canceled", name, err)
		}
	}
	if _, err := s.Apps(ctx); err != nil {
		t.Errorf("Apps (not a listing): %v", err)
	}
	if _, err := s.Connection(ctx, spotoken.ConnectionKey{AppID: "a", ID: "c1"}); err != nil && !errors.Is(err, spotoken.ErrNotFound) {
		t.Errorf("Connection (not a listing): %v", err)
	}
}
