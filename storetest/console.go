package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
)

// The operator's console's reads: BrowseConnections, CountBackingOff,
// CountUndelivered and the refresh tallies.

// testBrowseConnections: an app's active connections by grant expiry and
// by next attempt, with their bounds, cursors and refusals.
func testBrowseConnections(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	now := h.clock.Now()
	day := 24 * time.Hour
	for _, c := range []struct {
		app, id string
		state   spotoken.State
		grant   time.Duration // from now; zero: not known (a grant older than the column)
		next    time.Duration // from now; zero: none
	}{
		{"a", "c1", spotoken.StateActive, 10 * day, 5 * time.Minute},
		{"a", "c2", spotoken.StateActive, 3 * day, 0},
		{"a", "c3", spotoken.StateActive, 3 * day, -time.Minute}, // backoff over
		{"a", "c4", spotoken.StateNeedsReauth, day, 10 * time.Minute},
		{"a", "c5", spotoken.StateActive, 100 * day, time.Minute},
		{"a", "c6", spotoken.StateRevoked, 2 * day, 0},
		{"b", "c1", spotoken.StateActive, day, 2 * time.Minute},
		{"a", "c7", spotoken.StateActive, 0, 3 * time.Minute}, // backing off, grant expiry unknown
	} {
		h.newConn(t, c.app, c.id, func(conn *spotoken.Connection) {
			conn.State, conn.GrantExpiresAt = c.state, time.Time{}
			if c.grant != 0 {
				conn.GrantExpiresAt = now.Add(c.grant)
			}
			if c.next != 0 {
				conn.NextAttemptAt, conn.ConsecutiveFailures, conn.LastErrorCode = now.Add(c.next), 2, "server_error"
			}
			if c.state == spotoken.StateRevoked {
				conn.Token = spotoken.Token{}
			}
		})
	}
	ids := func(cs []*spotoken.Connection) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Key().String())
			if c.Token.AccessToken != "" || c.Token.RefreshToken != "" {
				t.Errorf("BrowseConnections opened the tokens of %s", c.Key())
			}
			if c.Token.Expiry.IsZero() {
				t.Errorf("BrowseConnections lost the access token's expiry of %s", c.Key())
			}
		}
		return out
	}
	grant := spotoken.OrderGrantExpiry
	next := spotoken.OrderNextAttempt
	for _, tt := range []struct {
		name string
		q    spotoken.BrowseQuery
		want []string
	}{
		{"by grant expiry", spotoken.BrowseQuery{AppID: "a", Order: grant}, []string{"a/c2", "a/c3", "a/c1", "a/c5"}},
		{"expiring within 20 days", spotoken.BrowseQuery{AppID: "a", Order: grant, GrantExpiresBefore: now.Add(20 * day)}, []string{"a/c2", "a/c3", "a/c1"}},
		{"expiring within a day", spotoken.BrowseQuery{AppID: "a", Order: grant, GrantExpiresBefore: now.Add(day)}, nil},
		{"grant page 1", spotoken.BrowseQuery{AppID: "a", Order: grant, Limit: 2}, []string{"a/c2", "a/c3"}},
		{"grant page 2 (a tie on the expiry)", spotoken.BrowseQuery{AppID: "a", Order: grant, Limit: 2,
			After: spotoken.BrowseCursor{At: now.Add(3 * day), ID: "c2"}}, []string{"a/c3", "a/c1"}},
		{"grant page 3", spotoken.BrowseQuery{AppID: "a", Order: grant, Limit: 2,
			After: spotoken.BrowseCursor{At: now.Add(10 * day), ID: "c1"}}, []string{"a/c5"}},
		{"other app by grant", spotoken.BrowseQuery{AppID: "b", Order: grant}, []string{"b/c1"}},
		{"backing off", spotoken.BrowseQuery{AppID: "a", Order: next, BackingOffAt: now}, []string{"a/c5", "a/c7", "a/c1"}},
		{"backing off later", spotoken.BrowseQuery{AppID: "a", Order: next, BackingOffAt: now.Add(2 * time.Minute)}, []string{"a/c7", "a/c1"}},
		{"backing off, expiring within 20 days", spotoken.BrowseQuery{AppID: "a", Order: next, BackingOffAt: now,
			GrantExpiresBefore: now.Add(20 * day)}, []string{"a/c1"}},
		{"backoff page 2", spotoken.BrowseQuery{AppID: "a", Order: next, BackingOffAt: now, Limit: 1,
			After: spotoken.BrowseCursor{At: now.Add(time.Minute), ID: "c5"}}, []string{"a/c7"}},
		{"no app has it", spotoken.BrowseQuery{AppID: "nope", Order: grant}, nil},
	} {
		got, err := h.store.BrowseConnections(ctx, tt.q)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if d := diff(ids(got), tt.want); d != "" {
			t.Errorf("%s (-got +want):\n%s", tt.name, d)
		}
	}
	got, err := h.store.BrowseConnections(ctx, spotoken.BrowseQuery{AppID: "a", Order: next, BackingOffAt: now, Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("browse a/c5: %v %v", got, err)
	}
	full := h.get(t, spotoken.ConnectionKey{AppID: "a", ID: "c5"})
	full.Token = spotoken.Token{Expiry: full.Token.Expiry}
	if d := diff(got[0], full); d != "" {
		t.Errorf("BrowseConnections a/c5 (-got +want):\n%s", d)
	}
	for _, q := range []spotoken.BrowseQuery{
		{Order: grant},
		{AppID: "a"},
		{AppID: "a", Order: "id"},
		{AppID: "a", Order: next},
	} {
		_, err := h.store.BrowseConnections(ctx, q)
		wantErr(t, fmt.Sprintf("BrowseConnections(%+v)", q), err, &spotoken.Error{Code: spotoken.EInvalid})
	}

	counts, err := h.store.CountBackingOff(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []spotoken.ConnectionCount{{AppID: "a", State: spotoken.StateActive, Count: 3}, {AppID: "b", State: spotoken.StateActive, Count: 1}}
	if d := diff(counts, want); d != "" {
		t.Errorf("CountBackingOff (-got +want):\n%s", d)
	}
	// A refresh that succeeds ends the backoff.
	if _, err := h.store.UpdateConnection(ctx, spotoken.ConnectionKey{AppID: "a", ID: "c1"}, func(c *spotoken.Connection) ([]spotoken.Event, error) {
		c.NextAttemptAt, c.ConsecutiveFailures, c.LastErrorCode = time.Time{}, 0, ""
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if counts, err = h.store.CountBackingOff(ctx, now.Add(90*time.Second)); err != nil {
		t.Fatal(err)
	}
	if d := diff(counts, []spotoken.ConnectionCount{{AppID: "a", State: spotoken.StateActive, Count: 1}, {AppID: "b", State: spotoken.StateActive, Count: 1}}); d != "" {
		t.Errorf("CountBackingOff after a/c1 refreshed, 90s on (-got +want):\n%s", d)
	}
}

// testCountUndelivered: the failed and given-up events by app.
func testCountUndelivered(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	now := h.clock.Now()
	var in []spotoken.Event
	for i := range 8 {
		app := "a"
		if i >= 6 {
			app = "b"
		}
		in = append(in, spotoken.Event{Type: spotoken.EventConnectionRefreshed, AppID: app, ConnectionID: fmt.Sprint("c", i)})
	}
	if err := h.store.AppendEvents(ctx, in...); err != nil {
		t.Fatal(err)
	}
	evs, err := h.store.PendingEvents(ctx, now, 10)
	if err != nil || len(evs) != 8 {
		t.Fatalf("PendingEvents = %v, %v", evs, err)
	}
	// a: 0 pending, 1 delivered, 2 and 3 failed, 4 and 5 gave up; b: 6
	// failed then delivered, 7 gave up.
	for _, step := range []error{
		h.store.MarkEventDelivered(ctx, evs[1].ID, now),
		h.store.MarkEventFailed(ctx, evs[2].ID, now.Add(time.Minute), "status 500"),
		h.store.MarkEventFailed(ctx, evs[3].ID, now.Add(time.Hour), "held back behind evt_3"),
		h.store.MarkEventFailed(ctx, evs[4].ID, spotoken.EventGaveUpAt, "gave up"),
		h.store.MarkEventFailed(ctx, evs[5].ID, spotoken.EventGaveUpAt, "gave up"),
		h.store.MarkEventFailed(ctx, evs[6].ID, now.Add(time.Minute), "status 500"),
		h.store.MarkEventDelivered(ctx, evs[6].ID, now),
		h.store.MarkEventFailed(ctx, evs[7].ID, spotoken.EventGaveUpAt, "gave up"),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	got, err := h.store.CountUndelivered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []spotoken.AppEventCount{
		{AppID: "a", Status: spotoken.EventFailed, Count: 2},
		{AppID: "a", Status: spotoken.EventGaveUp, Count: 2},
		{AppID: "b", Status: spotoken.EventGaveUp, Count: 1},
	}
	if d := diff(got, want); d != "" {
		t.Errorf("CountUndelivered (-got +want):\n%s", d)
	}
	// Redelivered, the given-up events count no more.
	if _, err := h.store.RedeliverEvents(ctx, "a", spotoken.EventGaveUp); err != nil {
		t.Fatal(err)
	}
	if got, err = h.store.CountUndelivered(ctx); err != nil {
		t.Fatal(err)
	}
	if d := diff(got, []spotoken.AppEventCount{want[0], want[2]}); d != "" {
		t.Errorf("CountUndelivered after redelivery (-got +want):\n%s", d)
	}
}

// testRefreshTallies: tallies add up by app and hour, also from many
// concurrent writers (replicas flushing at once), and are swept by age.
func testRefreshTallies(t *testing.T, h *harness) {
	h0 := time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC)
	h1 := h0.Add(time.Hour)
	if err := h.store.AddRefreshTallies(ctx,
		spotoken.RefreshTally{AppID: "a", Hour: h0.Add(10 * time.Minute), Refreshed: 3, Failed: 1},
		spotoken.RefreshTally{AppID: "a", Hour: h0.Add(50 * time.Minute), Refreshed: 1, RateLimited: 2},
		spotoken.RefreshTally{AppID: "b", Hour: h0, Refreshed: 7},
	); err != nil {
		t.Fatal(err)
	}
	if err := h.store.AddRefreshTallies(ctx); err != nil {
		t.Fatalf("AddRefreshTallies of nothing: %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- h.store.AddRefreshTallies(ctx, spotoken.RefreshTally{AppID: "a", Hour: h1, Refreshed: 1},
				spotoken.RefreshTally{AppID: "a", Hour: h0, Failed: 1})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent AddRefreshTallies: %v", err)
		}
	}
	got, err := h.store.RefreshTallies(ctx, "a", h0)
	if err != nil {
		t.Fatal(err)
	}
	want := []spotoken.RefreshTally{
		{AppID: "a", Hour: h0, Refreshed: 4, Failed: 21, RateLimited: 2},
		{AppID: "a", Hour: h1, Refreshed: 20},
	}
	if d := diff(got, want); d != "" {
		t.Errorf("RefreshTallies(a) (-got +want):\n%s", d)
	}
	if got, err = h.store.RefreshTallies(ctx, "a", h0.Add(time.Minute)); err != nil || diff(got, want[1:]) != "" {
		t.Errorf("RefreshTallies(a) from within h0 = %v, %v; want only h1", got, err)
	}
	for _, bad := range []spotoken.RefreshTally{{Hour: h0, Refreshed: 1}, {AppID: "a", Hour: h0, Failed: -1}} {
		err := h.store.AddRefreshTallies(ctx, spotoken.RefreshTally{AppID: "a", Hour: h1, Refreshed: 100}, bad)
		wantErr(t, fmt.Sprintf("AddRefreshTallies(%+v)", bad), err, &spotoken.Error{Code: spotoken.EInvalid})
	}
	if got, _ = h.store.RefreshTallies(ctx, "a", h1); len(got) != 1 || got[0].Refreshed != 20 {
		t.Errorf("a refused batch added some of its tallies: %v", got)
	}
	n, err := h.store.DeleteRefreshTalliesBefore(ctx, h1)
	if err != nil || n != 2 {
		t.Errorf("DeleteRefreshTalliesBefore(h1) = %d, %v; want 2", n, err)
	}
	if got, _ = h.store.RefreshTallies(ctx, "a", time.Time{}); diff(got, want[1:]) != "" {
		t.Errorf("after the sweep, a's tallies are %v; want only h1", got)
	}
	if got, _ = h.store.RefreshTallies(ctx, "b", time.Time{}); len(got) != 0 {
		t.Errorf("after the sweep, b's tallies are %v; want none", got)
	}
}
