package sqlite

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
)

// openGroupsTest opens a store on a new file, its clock at now.
func openGroupsTest(t *testing.T, now time.Time) *DB {
	t.Helper()
	keys, err := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{0x9a}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(context.Background(), Config{Path: filepath.Join(t.TempDir(), "db"), Keys: keys, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// groupRows returns (records, rows) of audit_groups.
func groupRows(t *testing.T, db *DB) (records, rows int) {
	t.Helper()
	if err := db.r.QueryRow(`SELECT coalesce(sum(n), 0), count(*) FROM audit_groups`).Scan(&records, &rows); err != nil {
		t.Fatal(err)
	}
	return records, rows
}

// TestAuditGroupsLayout: a batch is stored a row per run of one
// connection's records, cut at 256 records and at a second's span, and
// the IDs of records and of lifecycle rows written after stay unique and
// increasing.
func TestAuditGroupsLayout(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	db := openGroupsTest(t, t0)
	var batch []spotoken.AuditRecord
	for i := range 1000 { // ten connections, a hundred each, within 100 ms
		batch = append(batch, spotoken.AuditRecord{At: t0.Add(time.Duration(i) * 100 * time.Microsecond), Action: spotoken.AuditTokenVend,
			AppID: "a", ConnectionID: fmt.Sprint("c", i%10), RequestID: fmt.Sprint(i)})
	}
	for i := range 300 { // one connection: 256 and 44
		batch = append(batch, spotoken.AuditRecord{At: t0.Add(time.Duration(i) * time.Microsecond), Action: spotoken.AuditTokenVend,
			AppID: "a", ConnectionID: "big", RequestID: fmt.Sprint("big", i)})
	}
	for i := range 3 { // two seconds apart: a row each
		batch = append(batch, spotoken.AuditRecord{At: t0.Add(time.Duration(2*i) * time.Second), Action: spotoken.AuditTokenVend,
			AppID: "a", ConnectionID: "slow", RequestID: fmt.Sprint("slow", i)})
	}
	if err := db.AppendAudit(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	if recs, rows := groupRows(t, db); recs != 1303 || rows != 10+2+3 {
		t.Fatalf("audit_groups holds %d records in %d rows; want 1303 in %d", recs, rows, 10+2+3)
	}
	life := spotoken.AuditRecord{At: t0, Action: spotoken.AuditAppCreate, AppID: "a", RequestID: "life"}
	if err := db.CreateApp(spotoken.WithAudit(ctx, life), &spotoken.App{ID: "a", ClientID: "cid"}); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendAudit(ctx, spotoken.AuditRecord{At: t0, Action: spotoken.AuditTokenVend, AppID: "a", ConnectionID: "c1", RequestID: "after"}); err != nil {
		t.Fatal(err)
	}
	ids := map[int64]string{}
	var byTag = map[string]int64{}
	for f := (spotoken.AuditFilter{AppID: "a", Limit: spotoken.MaxPage}); ; {
		recs, err := db.AuditRecords(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if other, dup := ids[r.ID]; dup {
				t.Fatalf("ID %d is both %s's and %s's", r.ID, other, r.RequestID)
			}
			ids[r.ID], byTag[r.RequestID] = r.RequestID, r.ID
		}
		if len(recs) < f.Limit {
			break
		}
		f.After = spotoken.AuditCursor{At: recs[len(recs)-1].At, ID: recs[len(recs)-1].ID}
	}
	if len(ids) != 1305 {
		t.Fatalf("%d records listed, want 1305", len(ids))
	}
	if !(byTag["life"] > byTag["big299"] && byTag["after"] > byTag["life"]) {
		t.Fatalf("IDs: last of the batch %d, lifecycle row %d, next batch %d; want increasing", byTag["big299"], byTag["life"], byTag["after"])
	}
}

// TestAuditGroupsRetention: retention deletes a group whole, once its
// last record is past the cutoff, counts its records, and when a group
// is bigger than the limit deletes it anyway rather than never.
func TestAuditGroupsRetention(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	db := openGroupsTest(t, t0)
	var batch []spotoken.AuditRecord
	for i := range 40 { // one group of 40 over 400 ms, then one of 10 at +5 s
		batch = append(batch, spotoken.AuditRecord{At: t0.Add(time.Duration(i) * 10 * time.Millisecond), Action: spotoken.AuditTokenVend, AppID: "a", ConnectionID: "c"})
	}
	for i := range 10 {
		batch = append(batch, spotoken.AuditRecord{At: t0.Add(5*time.Second + time.Duration(i)), Action: spotoken.AuditTokenVend, AppID: "a", ConnectionID: "c"})
	}
	if err := db.AppendAudit(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	// The cutoff inside the first group: it is kept whole.
	if n, err := db.DeleteAuditBefore(ctx, t0.Add(200*time.Millisecond), 100); err != nil || n != 0 {
		t.Fatalf("cutoff inside a group: deleted %d, %v; want 0", n, err)
	}
	// Past it, with a limit under its size: deleted anyway, all 40.
	if n, err := db.DeleteAuditBefore(ctx, t0.Add(time.Second), 5); err != nil || n != 40 {
		t.Fatalf("limit 5, a group of 40 due: deleted %d, %v; want 40", n, err)
	}
	if recs, rows := groupRows(t, db); recs != 10 || rows != 1 {
		t.Fatalf("left: %d records in %d rows; want 10 in 1", recs, rows)
	}
	if n, err := db.DeleteAuditBefore(ctx, t0.Add(time.Hour), 0); err != nil || n != 0 {
		t.Fatalf("limit 0: deleted %d, %v", n, err)
	}
}

// TestAuditGroupsRepeatFields: in a group, a field equal to the record
// before's is stored null and read back as that record's, detail maps
// included (and not shared between the records read), whatever changes
// from one record to the next.
func TestAuditGroupsRepeatFields(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	db := openGroupsTest(t, t0)
	base := spotoken.AuditRecord{Version: spotoken.AuditVersion, Action: spotoken.AuditProxyCall, AppID: "a", ConnectionID: "c",
		ActorType: spotoken.ActorAPIKey, ActorID: "key_1", ActorLabel: "svc", ClientIP: "192.0.2.1", UserAgent: "ua/1",
		Method: "GET", Route: "/v1/me", Status: 200, UpstreamStatus: 200, Outcome: "ok", Fingerprint: "hmac-sha256:1:aa",
		Detail: map[string]string{"k": "v"}}
	var want []spotoken.AuditRecord
	for i, change := range []func(r *spotoken.AuditRecord){
		func(r *spotoken.AuditRecord) {},
		func(r *spotoken.AuditRecord) {}, // all the same but time and request
		func(r *spotoken.AuditRecord) {
			r.UserAgent, r.Detail, r.Status, r.Outcome = "ua/2", nil, 502, "upstream_503"
		},
		func(r *spotoken.AuditRecord) {
			r.UserAgent, r.Detail, r.Status, r.Outcome = "ua/2", map[string]string{"k": "v"}, 0, ""
		},
		func(r *spotoken.AuditRecord) { r.ClientIP, r.Fingerprint, r.ActorLabel, r.Method = "", "", "", "" },
	} {
		r := base
		r.Detail = maps.Clone(base.Detail)
		r.At, r.RequestID = t0.Add(time.Duration(i)*time.Millisecond), fmt.Sprint("req-", i)
		change(&r)
		want = append(want, r)
	}
	if err := db.AppendAudit(ctx, want...); err != nil {
		t.Fatal(err)
	}
	var body string
	if err := db.r.QueryRow(`SELECT body FROM audit_groups`).Scan(&body); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, `[null,null,null,null,null,"req-1",null,null,200,200,null,null,null]`) {
		t.Errorf("the group's body repeats fields: %s", body)
	}
	got, err := db.AuditRecords(ctx, spotoken.AuditFilter{AppID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d records read, want %d", len(got), len(want))
	}
	for i, g := range got {
		w := want[i]
		w.ID = g.ID
		if len(w.Detail) == 0 {
			w.Detail = nil
		}
		if !reflect.DeepEqual(*g, w) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, *g, w)
		}
	}
	got[0].Detail["k"] = "changed"
	if got[1].Detail["k"] != "v" {
		t.Error("records read share their detail map")
	}
}
