package storetest

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
)

// auditRecord is a record of the kind the server writes, at at.
func auditRecord(at time.Time, app, conn string, n int) spotoken.AuditRecord {
	return spotoken.AuditRecord{
		At: at, Action: spotoken.AuditTokenVend, AppID: app, ConnectionID: conn,
		ActorType: spotoken.ActorAPIKey, ActorID: "key_" + app, ActorLabel: "svc (sk_abc…)",
		ClientIP: "192.0.2.7", UserAgent: "svc/1.0", RequestID: fmt.Sprintf("req-%d", n),
		Method: "POST", Route: "/v1/connections/{id}/token", Status: 200, Outcome: "ok",
		Fingerprint: "hmac-sha256:1:" + fmt.Sprint(n),
	}
}

// testAuditRecords: a batch round-trips every field; listings filter by
// app, connection and time, page in both directions without loss or
// repetition, and a zero At or Version is filled in.
func testAuditRecords(t *testing.T, h *harness) {
	t0 := h.clock.Now()
	var batch []spotoken.AuditRecord
	for i := range 250 { // more than one multi-row insert
		conn := "c1"
		if i%5 == 0 {
			conn = "c2"
		}
		app := "a1"
		if i%7 == 0 {
			app, conn = "a2", "c1"
		}
		batch = append(batch, auditRecord(t0.Add(time.Duration(i/2)*time.Second), app, conn, i))
	}
	batch[3].Detail = map[string]string{"reason": "revoked", "scopes": "a b"}
	batch[3].UpstreamStatus = 429
	if err := h.store.AppendAudit(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	stamped := auditRecord(time.Time{}, "a3", "", 999)
	if err := h.store.AppendAudit(ctx, stamped); err != nil {
		t.Fatal(err)
	}
	if err := h.store.AppendAudit(ctx); err != nil {
		t.Fatalf("AppendAudit of nothing: %v", err)
	}

	// Every record of a1/c1, page by page, in (At, ID) order.
	var want []spotoken.AuditRecord
	for _, r := range batch {
		if r.AppID == "a1" && r.ConnectionID == "c1" {
			want = append(want, r)
		}
	}
	var got []*spotoken.AuditRecord
	var after spotoken.AuditCursor
	for page := 0; ; page++ {
		recs, err := h.store.AuditRecords(ctx, spotoken.AuditFilter{AppID: "a1", ConnectionID: "c1", After: after, Limit: 37})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, recs...)
		if len(recs) < 37 {
			break
		}
		last := recs[len(recs)-1]
		after = spotoken.AuditCursor{At: last.At, ID: last.ID}
		if page > 20 {
			t.Fatal("paging does not end")
		}
	}
	if len(got) != len(want) {
		t.Fatalf("a1/c1: got %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.ID == 0 || (i > 0 && !(r.At.After(got[i-1].At) || r.At.Equal(got[i-1].At) && r.ID > got[i-1].ID)) {
			t.Fatalf("record %d (id %d, %v) is out of order after id %d, %v", i, r.ID, r.At, got[i-1].ID, got[i-1].At)
		}
		w := want[i]
		w.ID, w.Version = r.ID, spotoken.AuditVersion
		if d := diff(*r, w); d != "" {
			t.Fatalf("record %d (-got +want):\n%s", i, d)
		}
	}

	// Newest first, with a time range: [t0+10s, t0+20s) of app a1.
	recs, err := h.store.AuditRecords(ctx, spotoken.AuditFilter{AppID: "a1", Since: t0.Add(10 * time.Second),
		Until: t0.Add(20 * time.Second), Newest: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range batch {
		if r.AppID == "a1" && !r.At.Before(t0.Add(10*time.Second)) && r.At.Before(t0.Add(20*time.Second)) {
			n++
		}
	}
	if len(recs) != n || n == 0 {
		t.Fatalf("a1 in [10s, 20s): got %d records, want %d", len(recs), n)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].At.After(recs[i-1].At) {
			t.Fatalf("Newest listing is not newest first at %d", i)
		}
	}
	// Newest with a cursor continues backwards.
	older, err := h.store.AuditRecords(ctx, spotoken.AuditFilter{AppID: "a1", Newest: true, Limit: 5,
		After: spotoken.AuditCursor{At: recs[0].At, ID: recs[0].ID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(older) != 5 || !(older[0].At.Before(recs[0].At) || older[0].ID < recs[0].ID) {
		t.Fatalf("Newest after a cursor: got %d records starting %v", len(older), older)
	}

	// Every app, default limit 100.
	all, err := h.store.AuditRecords(ctx, spotoken.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 100 {
		t.Fatalf("unfiltered listing: got %d records, want the default limit 100", len(all))
	}
	// The record with no At got the store's clock, and the current version.
	a3, err := h.store.AuditRecords(ctx, spotoken.AuditFilter{AppID: "a3"})
	if err != nil {
		t.Fatal(err)
	}
	if len(a3) != 1 || !a3[0].At.Equal(t0) || a3[0].Version != spotoken.AuditVersion {
		t.Fatalf("a record without At or Version: got %+v, want At %v, version %d", a3, t0, spotoken.AuditVersion)
	}
	_, err = h.store.AuditRecords(ctx, spotoken.AuditFilter{ConnectionID: "c1"})
	wantErr(t, "a connection filter without an app", err, &spotoken.Error{Code: spotoken.EInvalid})
}

// testAuditInTransaction: every write method that changes an app, a key or
// a connection stores the records attached to its context with the change,
// and none when the change fails.
func testAuditInTransaction(t *testing.T, h *harness) {
	h.newApp(t, "tx-app")
	c := h.newConn(t, "tx-app", "c1", nil)
	key := &spotoken.APIKey{ID: "key_tx", AppID: "tx-app", Hash: sha256.Sum256([]byte("tx key"))}
	fnErr := errors.New("fn refused")
	ev := h.newEvent(t, "tx-app")
	steps := []struct {
		name string
		ok   bool
		do   func(ctx2 context.Context) error
	}{
		{"CreateApp", true, func(c2 context.Context) error {
			return h.store.CreateApp(c2, &spotoken.App{ID: "tx-app-2", ClientID: "x"})
		}},
		{"CreateApp conflict", false, func(c2 context.Context) error {
			return h.store.CreateApp(c2, &spotoken.App{ID: "tx-app", ClientID: "x"})
		}},
		{"UpdateApp", true, func(c2 context.Context) error {
			_, err := h.store.UpdateApp(c2, "tx-app-2", func(a *spotoken.App) error { a.WebhookURL = "https://x.example/h"; return nil })
			return err
		}},
		{"UpdateApp refused", false, func(c2 context.Context) error {
			_, err := h.store.UpdateApp(c2, "tx-app-2", func(a *spotoken.App) error { return fnErr })
			return err
		}},
		{"CreateAPIKey", true, func(c2 context.Context) error { return h.store.CreateAPIKey(c2, key) }},
		{"CreateAPIKey of no app", false, func(c2 context.Context) error {
			return h.store.CreateAPIKey(c2, &spotoken.APIKey{ID: "key_none", AppID: "nope", Hash: sha256.Sum256([]byte("k2"))})
		}},
		{"RevokeAPIKey", true, func(c2 context.Context) error { return h.store.RevokeAPIKey(c2, "tx-app", key.ID, h.clock.Now()) }},
		{"RevokeAPIKey unknown", false, func(c2 context.Context) error { return h.store.RevokeAPIKey(c2, "tx-app", "key_nope", h.clock.Now()) }},
		{"CreateConnection", true, func(c2 context.Context) error {
			return h.store.CreateConnection(c2, &spotoken.Connection{AppID: "tx-app", ID: "c2", State: spotoken.StateActive})
		}},
		{"CreateConnection conflict", false, func(c2 context.Context) error {
			return h.store.CreateConnection(c2, &spotoken.Connection{AppID: "tx-app", ID: "c1", State: spotoken.StateActive})
		}},
		{"UpdateConnection", true, func(c2 context.Context) error {
			_, err := h.store.UpdateConnection(c2, c.Key(), func(c *spotoken.Connection) ([]spotoken.Event, error) {
				c.State = spotoken.StateNeedsReauth
				return nil, nil
			})
			return err
		}},
		{"UpdateConnection refused", false, func(c2 context.Context) error {
			_, err := h.store.UpdateConnection(c2, c.Key(), func(c *spotoken.Connection) ([]spotoken.Event, error) { return nil, fnErr })
			return err
		}},
		{"DeleteConnection", true, func(c2 context.Context) error { return h.store.DeleteConnection(c2, c.Key()) }},
		{"DeleteConnection unknown", false, func(c2 context.Context) error { return h.store.DeleteConnection(c2, c.Key()) }},
		{"DeleteApp", true, func(c2 context.Context) error { return h.store.DeleteApp(c2, "tx-app-2") }},
		{"DeleteApp unknown", false, func(c2 context.Context) error { return h.store.DeleteApp(c2, "tx-app-2") }},
		{"CreateAdminKey", true, func(c2 context.Context) error {
			return h.store.CreateAdminKey(c2, &spotoken.AdminKey{ID: "adm_tx", Name: "tx", Hash: sha256.Sum256([]byte("adm tx"))})
		}},
		{"CreateAdminKey conflict", false, func(c2 context.Context) error {
			return h.store.CreateAdminKey(c2, &spotoken.AdminKey{ID: "adm_tx", Name: "tx", Hash: sha256.Sum256([]byte("adm tx 2"))})
		}},
		{"RevokeAdminKey", true, func(c2 context.Context) error { return h.store.RevokeAdminKey(c2, "adm_tx", h.clock.Now()) }},
		{"RevokeAdminKey unknown", false, func(c2 context.Context) error { return h.store.RevokeAdminKey(c2, "adm_nope", h.clock.Now()) }},
		{"PutBrowserApp", true, func(c2 context.Context) error {
			return h.store.PutBrowserApp(c2, &spotoken.BrowserApp{AppID: "tx-app", Origins: []string{"https://spa.example"}})
		}},
		{"PutBrowserApp of no app", false, func(c2 context.Context) error {
			return h.store.PutBrowserApp(c2, &spotoken.BrowserApp{AppID: "nope", Origins: []string{"https://spa.example"}})
		}},
		{"DeleteBrowserApp", true, func(c2 context.Context) error { return h.store.DeleteBrowserApp(c2, "tx-app") }},
		{"DeleteBrowserApp none", false, func(c2 context.Context) error { return h.store.DeleteBrowserApp(c2, "tx-app") }},
		{"RedeliverEvent", true, func(c2 context.Context) error { return h.store.RedeliverEvent(c2, "tx-app", ev.ID) }},
		{"RedeliverEvent unknown", false, func(c2 context.Context) error { return h.store.RedeliverEvent(c2, "tx-app", ev.ID+1000) }},
		{"RedeliverEvents", true, func(c2 context.Context) error {
			_, err := h.store.RedeliverEvents(c2, "tx-app", spotoken.EventFailed)
			return err
		}},
		{"RedeliverEvents of pending", false, func(c2 context.Context) error {
			_, err := h.store.RedeliverEvents(c2, "tx-app", spotoken.EventPending)
			return err
		}},
	}
	for i, s := range steps {
		rec := spotoken.AuditRecord{Action: spotoken.AuditAppUpdate, AppID: "tx-audit", ConnectionID: fmt.Sprint(i),
			ActorType: spotoken.ActorAdmin, ActorID: s.name}
		err := s.do(spotoken.WithAudit(ctx, rec))
		if (err == nil) != s.ok {
			t.Fatalf("%s: error %v", s.name, err)
		}
		recs, err := h.store.AuditRecords(ctx, spotoken.AuditFilter{AppID: "tx-audit", ConnectionID: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case s.ok && (len(recs) != 1 || recs[0].ActorID != s.name):
			t.Errorf("%s succeeded and stored %d records, want its one", s.name, len(recs))
		case !s.ok && len(recs) != 0:
			t.Errorf("%s failed and still stored %d records, want none: the record must commit with the change", s.name, len(recs))
		}
	}
	// A plain context stores no record.
	if _, err := h.store.UpdateApp(ctx, "tx-app", func(a *spotoken.App) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if recs, _ := h.store.AuditRecords(ctx, spotoken.AuditFilter{AppID: "tx-audit"}); len(recs) != len(steps)/2 {
		t.Errorf("%d records in all, want %d", len(recs), len(steps)/2)
	}
}

// testAuditBatchAtomic: a batch with a record the store refuses (no
// action) stores none of its records, across the store's chunks, and the
// store goes on working.
func testAuditBatchAtomic(t *testing.T, h *harness) {
	t0 := h.clock.Now()
	var batch []spotoken.AuditRecord
	for i := range 450 {
		batch = append(batch, auditRecord(t0.Add(time.Duration(i)*time.Millisecond), "atomic", "c", i))
	}
	batch[420].Action = ""
	if err := h.store.AppendAudit(ctx, batch...); err == nil {
		t.Fatal("a batch with a record without action was stored")
	}
	if recs, err := h.store.AuditRecords(ctx, spotoken.AuditFilter{AppID: "atomic", Limit: 1000}); err != nil || len(recs) != 0 {
		t.Fatalf("after the refused batch: %d records, %v; want none", len(recs), err)
	}
	batch[420].Action = spotoken.AuditTokenVend
	if err := h.store.AppendAudit(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	h.newApp(t, "atomic-after")
	if recs, err := h.store.AuditRecords(ctx, spotoken.AuditFilter{AppID: "atomic", Limit: 1000}); err != nil || len(recs) != 450 {
		t.Fatalf("after the batch again: %d records, %v; want 450", len(recs), err)
	}
}

// testAuditListingsMatch: many connections' records, interleaved within
// and across batches, many in the same second and some at the same
// microsecond, a batch not in time order, and lifecycle records among
// them: every listing (all apps, an app, a connection; oldest or newest
// first; with and without time bounds), read page by page, returns
// exactly the records it selects, each once, in (At, ID) order. A store
// may keep a batch in any layout (SQLite groups a connection's records);
// this is what every layout must answer.
func testAuditListingsMatch(t *testing.T, h *harness) {
	t0 := h.clock.Now().Add(-time.Hour).Truncate(time.Second)
	apps := []string{"lm-a", "lm-b"}
	type rec struct {
		app, conn, tag string
		at             time.Time
	}
	var all []rec
	n := 0
	for b := range 6 {
		var batch []spotoken.AuditRecord
		for i := range 400 {
			app := apps[(i/3)%2]
			conn := fmt.Sprintf("c%d", (i*7+b)%13)
			// Within a few seconds of each other: many per second, and
			// runs of the same microsecond.
			at := t0.Add(time.Duration(b)*1500*time.Millisecond + time.Duration((i*7919)%3000)*time.Millisecond/4)
			if i%10 == 0 {
				at = t0.Add(time.Duration(b) * 1500 * time.Millisecond)
			}
			r := auditRecord(at, app, conn, n)
			batch = append(batch, r)
			all = append(all, rec{app, conn, r.RequestID, at})
			n++
		}
		if err := h.store.AppendAudit(ctx, batch...); err != nil {
			t.Fatal(err)
		}
		// A lifecycle record between batches, in a row of its own.
		life := auditRecord(t0.Add(time.Duration(b)*time.Second+time.Millisecond), apps[b%2], "", n)
		life.Action = spotoken.AuditAppUpdate
		id := h.newApp(t, fmt.Sprintf("lm-app-%d", b)).ID
		if _, err := h.store.UpdateApp(spotoken.WithAudit(ctx, life), id, func(a *spotoken.App) error {
			a.WebhookURL = "https://app.example/other-hooks"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		all = append(all, rec{life.AppID, "", life.RequestID, life.At})
		n++
	}
	mid, late := t0.Add(2*time.Second), t0.Add(6*time.Second)
	filters := []spotoken.AuditFilter{
		{AppID: "lm-a"}, {AppID: "lm-b", ConnectionID: "c4"}, {AppID: "lm-a", ConnectionID: "c0", Newest: true},
		{AppID: "lm-b", Since: mid, Until: late}, {AppID: "lm-a", Since: mid, Newest: true}, {AppID: "lm-b", Until: mid, Newest: true},
		{AppID: "lm-a", ConnectionID: "c7", Since: mid, Until: late, Newest: true},
	}
	for _, base := range filters {
		var want []string
		for _, r := range all {
			if r.app == base.AppID && (base.ConnectionID == "" || r.conn == base.ConnectionID) &&
				(base.Since.IsZero() || !r.at.Before(base.Since)) && (base.Until.IsZero() || r.at.Before(base.Until)) {
				want = append(want, r.tag)
			}
		}
		for _, limit := range []int{1, 7, 100, 1000} {
			f := base
			f.Limit = limit
			var got []*spotoken.AuditRecord
			for page := 0; ; page++ {
				recs, err := h.store.AuditRecords(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, recs...)
				if len(recs) < limit {
					break
				}
				last := recs[len(recs)-1]
				f.After = spotoken.AuditCursor{At: last.At, ID: last.ID}
				if page > len(want)+1 {
					t.Fatalf("%+v: paging does not end", base)
				}
			}
			seen := map[string]bool{}
			for i, r := range got {
				if seen[r.RequestID] {
					t.Fatalf("%+v, limit %d: record %s listed twice", base, limit, r.RequestID)
				}
				seen[r.RequestID] = true
				if i > 0 {
					p := got[i-1]
					c := r.At.Compare(p.At)
					if c == 0 {
						c = cmp.Compare(r.ID, p.ID)
					}
					if base.Newest {
						c = -c
					}
					if c <= 0 {
						t.Fatalf("%+v, limit %d: record %d (%v, id %d) out of order after (%v, id %d)", base, limit, i, r.At, r.ID, p.At, p.ID)
					}
				}
			}
			slices.Sort(want)
			tags := slices.Sorted(maps.Keys(seen))
			if !slices.Equal(tags, want) {
				t.Fatalf("%+v, limit %d: %d records listed, want %d", base, limit, len(tags), len(want))
			}
		}
	}
}

// newEvent appends an event of app and returns it as stored.
func (h *harness) newEvent(t *testing.T, app string) *spotoken.Event {
	t.Helper()
	if err := h.store.AppendEvents(ctx, spotoken.NewEvent(spotoken.EventConnectionRevoked, spotoken.ConnectionKey{AppID: app, ID: "ev"}, h.clock.Now(), nil)); err != nil {
		t.Fatal(err)
	}
	evs, err := h.store.Events(ctx, spotoken.EventFilter{AppID: app, Limit: 1})
	if err != nil || len(evs) != 1 {
		t.Fatalf("events of %s: %v, %v", app, evs, err)
	}
	return evs[0]
}

// testAuditFailClosed: a change whose audit record cannot be written (here
// a record the store refuses: it has no action) fails, and is not made.
func testAuditFailClosed(t *testing.T, h *harness) {
	app := h.newApp(t, "fc-app")
	c := h.newConn(t, "fc-app", "c1", nil)
	key := &spotoken.APIKey{ID: "key_fc", AppID: "fc-app", Hash: sha256.Sum256([]byte("fc key"))}
	if err := h.store.CreateAPIKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	adm := &spotoken.AdminKey{ID: "adm_fc", Name: "fc", Hash: sha256.Sum256([]byte("adm fc"))}
	if err := h.store.CreateAdminKey(ctx, adm); err != nil {
		t.Fatal(err)
	}
	if err := h.store.PutBrowserApp(ctx, &spotoken.BrowserApp{AppID: "fc-app", Origins: []string{"https://spa.example"}}); err != nil {
		t.Fatal(err)
	}
	ev := h.newEvent(t, "fc-app")
	if err := h.store.MarkEventFailed(ctx, ev.ID, h.clock.Now().Add(time.Hour), "refused"); err != nil {
		t.Fatal(err)
	}
	bad := spotoken.WithAudit(ctx, spotoken.AuditRecord{AppID: "fc-app", ActorType: spotoken.ActorAdmin}) // no action
	now := h.clock.Now()
	for _, tt := range []struct {
		name string
		do   func() error
		// unchanged reports what is wrong if the change was made.
		unchanged func() string
	}{
		{"CreateApp", func() error { return h.store.CreateApp(bad, &spotoken.App{ID: "fc-new", ClientID: "x"}) }, func() string {
			if _, err := h.store.App(ctx, "fc-new"); !errors.Is(err, spotoken.ErrNotFound) {
				return fmt.Sprintf("the app was created (%v)", err)
			}
			return ""
		}},
		{"UpdateApp", func() error {
			_, err := h.store.UpdateApp(bad, "fc-app", func(a *spotoken.App) error { a.ClientID = "changed"; return nil })
			return err
		}, func() string {
			if a, err := h.store.App(ctx, "fc-app"); err != nil || a.ClientID != app.ClientID {
				return fmt.Sprintf("the app was changed: %+v, %v", a, err)
			}
			return ""
		}},
		{"DeleteApp", func() error { return h.store.DeleteApp(bad, "fc-app") }, func() string {
			if _, err := h.store.App(ctx, "fc-app"); err != nil {
				return fmt.Sprintf("the app was deleted (%v)", err)
			}
			return ""
		}},
		{"CreateAPIKey", func() error {
			return h.store.CreateAPIKey(bad, &spotoken.APIKey{ID: "key_fc2", AppID: "fc-app", Hash: sha256.Sum256([]byte("fc key 2"))})
		}, func() string {
			if _, err := h.store.APIKeyByHash(ctx, sha256.Sum256([]byte("fc key 2"))); !errors.Is(err, spotoken.ErrNotFound) {
				return fmt.Sprintf("the key was created (%v)", err)
			}
			return ""
		}},
		{"RevokeAPIKey", func() error { return h.store.RevokeAPIKey(bad, "fc-app", key.ID, now) }, func() string {
			if k, err := h.store.APIKeyByHash(ctx, key.Hash); err != nil || !k.RevokedAt.IsZero() {
				return fmt.Sprintf("the key was revoked: %+v, %v", k, err)
			}
			return ""
		}},
		{"CreateAdminKey", func() error {
			return h.store.CreateAdminKey(bad, &spotoken.AdminKey{ID: "adm_fc2", Name: "fc2", Hash: sha256.Sum256([]byte("adm fc 2"))})
		}, func() string {
			if _, err := h.store.AdminKeyByHash(ctx, sha256.Sum256([]byte("adm fc 2"))); !errors.Is(err, spotoken.ErrNotFound) {
				return fmt.Sprintf("the admin key was created (%v)", err)
			}
			return ""
		}},
		{"RevokeAdminKey", func() error { return h.store.RevokeAdminKey(bad, adm.ID, now) }, func() string {
			if k, err := h.store.AdminKeyByHash(ctx, adm.Hash); err != nil || k.Revoked() {
				return fmt.Sprintf("the admin key was revoked: %+v, %v", k, err)
			}
			return ""
		}},
		{"PutBrowserApp", func() error {
			return h.store.PutBrowserApp(bad, &spotoken.BrowserApp{AppID: "fc-app", Origins: []string{"https://other.example"}})
		}, func() string {
			if b, err := h.store.BrowserApp(ctx, "fc-app"); err != nil || !slices.Equal(b.Origins, []string{"https://spa.example"}) {
				return fmt.Sprintf("the browser app was changed: %+v, %v", b, err)
			}
			return ""
		}},
		{"DeleteBrowserApp", func() error { return h.store.DeleteBrowserApp(bad, "fc-app") }, func() string {
			if _, err := h.store.BrowserApp(ctx, "fc-app"); err != nil {
				return fmt.Sprintf("the browser app was deleted (%v)", err)
			}
			return ""
		}},
		{"RedeliverEvent", func() error { return h.store.RedeliverEvent(bad, "fc-app", ev.ID) }, func() string {
			if evs, err := h.store.Events(ctx, spotoken.EventFilter{AppID: "fc-app", Status: spotoken.EventFailed}); err != nil || len(evs) != 1 {
				return fmt.Sprintf("the event was redelivered: failed events %v, %v", evs, err)
			}
			return ""
		}},
		{"RedeliverEvents", func() error {
			_, err := h.store.RedeliverEvents(bad, "fc-app", spotoken.EventFailed)
			return err
		}, func() string {
			if evs, err := h.store.Events(ctx, spotoken.EventFilter{AppID: "fc-app", Status: spotoken.EventFailed}); err != nil || len(evs) != 1 {
				return fmt.Sprintf("the events were redelivered: failed events %v, %v", evs, err)
			}
			return ""
		}},
		{"DeleteConnection", func() error { return h.store.DeleteConnection(bad, c.Key()) }, func() string {
			if _, err := h.store.Connection(ctx, c.Key()); err != nil {
				return fmt.Sprintf("the connection was deleted (%v)", err)
			}
			return ""
		}},
	} {
		if err := tt.do(); err == nil {
			t.Errorf("%s with a record the store refuses: no error", tt.name)
		}
		if what := tt.unchanged(); what != "" {
			t.Errorf("%s with a record the store refuses: %s; want no change without its record", tt.name, what)
		}
	}
	if recs, err := h.store.AuditRecords(ctx, spotoken.AuditFilter{AppID: "fc-app"}); err != nil || len(recs) != 0 {
		t.Errorf("records of fc-app: %d, %v; want none", len(recs), err)
	}
}

// testAuditRetention: DeleteAuditBefore deletes the oldest records first,
// at most limit at a time, and the marks last seen before the cutoff.
func testAuditRetention(t *testing.T, h *harness) {
	t0 := h.clock.Now()
	var batch []spotoken.AuditRecord
	for i := range 30 {
		batch = append(batch, auditRecord(t0.Add(time.Duration(i)*time.Minute), "r", "c", i))
	}
	if err := h.store.AppendAudit(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	for _, m := range []spotoken.AuditMark{{Kind: "k", Subject: "old", LastAt: t0}, {Kind: "k", Subject: "new", LastAt: t0.Add(time.Hour)}} {
		if _, err := h.store.MarkAudit(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := t0.Add(20 * time.Minute)
	n, err := h.store.DeleteAuditBefore(ctx, cutoff, 15)
	if err != nil || n != 15 {
		t.Fatalf("DeleteAuditBefore(limit 15) = %d, %v; want 15", n, err)
	}
	if n, err = h.store.DeleteAuditBefore(ctx, cutoff, 15); err != nil || n != 5 {
		t.Fatalf("second DeleteAuditBefore = %d, %v; want the 5 left before the cutoff", n, err)
	}
	if n, _ = h.store.DeleteAuditBefore(ctx, cutoff, 0); n != 0 {
		t.Fatalf("DeleteAuditBefore(limit 0) deleted %d", n)
	}
	recs, err := h.store.AuditRecords(ctx, spotoken.AuditFilter{AppID: "r", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 10 || recs[0].At.Before(cutoff) {
		t.Fatalf("after retention: %d records, the first at %v; want 10 from %v", len(recs), recs[0].At, cutoff)
	}
	_, err = h.store.AuditMark(ctx, "k", "", "old")
	wantErr(t, "a mark last seen before the cutoff", err, spotoken.ErrNotFound)
	if _, err := h.store.AuditMark(ctx, "k", "", "new"); err != nil {
		t.Errorf("a mark seen after the cutoff: %v", err)
	}
}

// testAuditMarks: MarkAudit returns the mark as it was, keeps FirstAt,
// never moves LastAt back, and of many concurrent first marks exactly one
// sees none before it.
func testAuditMarks(t *testing.T, h *harness) {
	t0 := h.clock.Now()
	m := spotoken.AuditMark{Kind: "network", AppID: "a", Subject: "key_1|192.0.2.0/24", LastAt: t0}
	prev, err := h.store.MarkAudit(ctx, m)
	if err != nil || prev != (spotoken.AuditMark{}) {
		t.Fatalf("first MarkAudit = %+v, %v; want the zero mark", prev, err)
	}
	m.LastAt = t0.Add(time.Hour)
	prev, err = h.store.MarkAudit(ctx, m)
	want := spotoken.AuditMark{Kind: "network", AppID: "a", Subject: "key_1|192.0.2.0/24", FirstAt: t0, LastAt: t0}
	if err != nil || diff(prev, want) != "" {
		t.Fatalf("second MarkAudit = %+v, %v; want %+v", prev, err, want)
	}
	m.LastAt = t0.Add(time.Minute) // out of order: LastAt stays
	if _, err := h.store.MarkAudit(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, err := h.store.AuditMark(ctx, "network", "a", "key_1|192.0.2.0/24")
	want.LastAt = t0.Add(time.Hour)
	if err != nil || diff(got, want) != "" {
		t.Fatalf("AuditMark = %+v, %v; want %+v", got, err, want)
	}
	_, err = h.store.AuditMark(ctx, "network", "a", "nope")
	wantErr(t, "an unknown mark", err, spotoken.ErrNotFound)
	_, err = h.store.MarkAudit(ctx, spotoken.AuditMark{})
	wantErr(t, "a mark without a kind", err, &spotoken.Error{Code: spotoken.EInvalid})

	// 16 callers mark one new subject at once: exactly one is first.
	var first atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := h.store.MarkAudit(ctx, spotoken.AuditMark{Kind: "alert:x", AppID: "a", Subject: "race", LastAt: t0.Add(time.Duration(i) * time.Second)})
			if err != nil {
				t.Error(err)
			} else if p.LastAt.IsZero() {
				first.Add(1)
			}
		}()
	}
	wg.Wait()
	if first.Load() != 1 {
		t.Fatalf("%d concurrent callers saw no mark before them, want exactly 1", first.Load())
	}

	for i, app := range []string{"b", "b", "a", "c"} {
		if _, err := h.store.MarkAudit(ctx, spotoken.AuditMark{Kind: "reauth", AppID: app, Subject: fmt.Sprint(i), LastAt: t0.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	counts, err := h.store.CountAuditMarks(ctx, "reauth", t0.Add(time.Minute))
	wantCounts := []spotoken.AuditMarkCount{{AppID: "a", Count: 1}, {AppID: "b", Count: 1}, {AppID: "c", Count: 1}}
	if err != nil || diff(counts, wantCounts) != "" {
		t.Fatalf("CountAuditMarks = %+v, %v; want %+v", counts, err, wantCounts)
	}
}

// auditFingerprint stands for the fingerprint the audit trail stores of a
// secret: what the dump must hold instead of the secret.
func auditFingerprint(s spotoken.Secret) string {
	sum := sha256.Sum256([]byte("key\x00" + s.Reveal()))
	return "hmac-sha256:1:" + hex.EncodeToString(sum[:])
}
