package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
)

// groupsKeys is the key ring of this file's stores.
func groupsKeys(t *testing.T) *seal.KeyRing {
	t.Helper()
	keys, err := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{0x9a}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// openGroupsTest opens a store on a new file, its clock at now.
func openGroupsTest(t *testing.T, now time.Time) *DB {
	t.Helper()
	keys := groupsKeys(t)
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
	// Record 1 repeats record 0 but for its time and request: a short
	// element (migration 0020). Record 3 repeats most of record 2: the
	// fields it shares are null.
	if !strings.Contains(body, `],[1000,"req-1"],[`) || !strings.Contains(body, `[null,null,null,null,null,"req-3",null,null,0,200,"",null,{"k":"v"}]`) {
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

// vendBatch is batch number b of app a: a vend record at at for each of
// connections c0, c1, ..., request ids b<b>c<c>.
func vendBatch(at time.Time, b, conns int) []spotoken.AuditRecord {
	var batch []spotoken.AuditRecord
	for c := range conns {
		batch = append(batch, spotoken.AuditRecord{At: at, Action: spotoken.AuditTokenVend,
			AppID: "a", ConnectionID: fmt.Sprint("c", c), RequestID: fmt.Sprint("b", b, "c", c)})
	}
	return batch
}

// TestAuditIndexTail: the trail's groups wait in the tail until indexed;
// a connection's listing, paged both ways, returns each of its records
// once and in order whether its groups are in the tail, in the index, or
// in both (an indexing cut short); a reopened store counts the tail left
// by the one before; an indexing that fails leaves the groups listed and
// the next one indexes them; retention takes index entries with their
// groups.
func TestAuditIndexTail(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "db")
	keys := groupsKeys(t)
	open := func() *DB {
		t.Helper()
		db, err := Open(ctx, Config{Path: path, Keys: keys, Now: func() time.Time { return t0 }, AuditIndexEvery: 30, manualIndex: true})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open()
	defer func() { db.Close() }()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	exec := func(q string) {
		t.Helper()
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	const conns = 20
	batches := 0
	appendBatch := func() { // a record of each connection, 10 s after the batch before
		t.Helper()
		if err := db.AppendAudit(ctx, vendBatch(t0.Add(time.Duration(batches)*10*time.Second), batches, conns)...); err != nil {
			t.Fatal(err)
		}
		batches++
	}
	index := func() {
		t.Helper()
		if err := db.indexAuditTail(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// expect checks the index's entries and the groups after indexed_id,
	// and that no entry outlives its group.
	expect := func(when string, indexed, tail int) {
		t.Helper()
		var i, tl, orphans int
		if err := db.r.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM audit_group_index),
			(SELECT count(*) FROM audit_groups WHERE id > (SELECT indexed_id FROM audit_index_state)),
			(SELECT count(*) FROM audit_group_index x WHERE NOT EXISTS (SELECT 1 FROM audit_groups g WHERE g.id = x.id))`).Scan(&i, &tl, &orphans); err != nil {
			t.Fatal(err)
		}
		if i != indexed || tl != tail || orphans != 0 {
			t.Fatalf("%s: %d index entries, %d groups after indexed_id, %d entries without a group; want %d, %d, 0", when, i, tl, orphans, indexed, tail)
		}
	}
	// listed checks each connection's listing, page by page both ways,
	// against the batches first..batches-1.
	listed := func(when string, first int) {
		t.Helper()
		for c := range conns {
			conn := fmt.Sprint("c", c)
			for _, newest := range []bool{false, true} {
				var want []string
				for b := first; b < batches; b++ {
					want = append(want, fmt.Sprint("b", b, conn))
				}
				if newest {
					slices.Reverse(want)
				}
				var got []string
				f := spotoken.AuditFilter{AppID: "a", ConnectionID: conn, Newest: newest, Limit: 2}
				for range batches + 1 {
					recs, err := db.AuditRecords(ctx, f)
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range recs {
						got = append(got, r.RequestID)
					}
					if len(recs) < f.Limit {
						break
					}
					f.After = spotoken.AuditCursor{At: recs[len(recs)-1].At, ID: recs[len(recs)-1].ID}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("%s, newest first %v: %s's records %v; want %v", when, newest, conn, got, want)
				}
			}
		}
	}

	appendBatch()
	expect("one batch", 0, 20)
	listed("one batch, all in the tail", 0)
	appendBatch()
	if n := db.auditTail.Load(); n != 40 {
		t.Fatalf("the store counts %d groups in the tail; want 40", n)
	}
	index()
	expect("indexed", 40, 0)
	listed("all indexed", 0)
	appendBatch()
	expect("three batches", 40, 20)
	listed("indexed and in the tail", 0)

	// A new process counts the tail the old one left.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open()
	if n := db.auditTail.Load(); n != 20 {
		t.Fatalf("reopened, the store counts %d groups in the tail; want 20", n)
	}

	// An indexing cut short: half the tail's entries (c0-c9's) are in the
	// index, indexed_id has not moved.
	appendBatch()
	exec(`INSERT INTO audit_group_index SELECT app_id, connection_id, first_at, id FROM audit_groups
		WHERE id > (SELECT indexed_id FROM audit_index_state) AND length(connection_id) = 2`)
	expect("half indexed", 60, 40)
	listed("half indexed", 0)
	index()
	expect("indexed again", 80, 0)
	listed("indexed again", 0)

	// Indexing refused (a trigger here): the batches are stored and
	// listed, and indexed once it works again.
	exec(`CREATE TRIGGER refuse_index BEFORE INSERT ON audit_group_index BEGIN SELECT RAISE(ABORT, 'refused'); END`)
	appendBatch()
	appendBatch()
	if err := db.indexAuditTail(ctx); err == nil {
		t.Fatal("indexing with every insert refused succeeded")
	}
	expect("indexing refused", 80, 40)
	listed("indexing refused", 0)
	exec(`DROP TRIGGER refuse_index`)
	index()
	expect("indexing works again", 120, 0)
	appendBatch()
	listed("indexing works again", 0)

	// Retention: the first two batches go, their index entries with them.
	n, err := db.DeleteAuditBefore(ctx, t0.Add(15*time.Second), 1000)
	if err != nil || n != 40 {
		t.Fatalf("retention: %d records deleted, %v; want 40", n, err)
	}
	expect("after retention", 80, 20)
	listed("after retention", 2)

	// An entry read from the tail whose group retention deleted since is
	// not inserted.
	if err := db.indexChunk(ctx, []indexKey{{app: "a", conn: "c1", firstAt: t0.UnixMicro(), id: 1}}); err != nil {
		t.Fatal(err)
	}
	expect("an entry of a deleted group", 80, 20)
}

// TestAuditIndexWhileListing: with the store's own indexing goroutine at
// work (a tail of 30 groups), batches written while other goroutines list
// connections: every listing returns each record once, in order, and no
// fewer than were written before it began; at the end all but the last
// tail is indexed.
func TestAuditIndexWhileListing(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	db, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "db"), Keys: groupsKeys(t), Now: func() time.Time { return t0 }, AuditIndexEvery: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const conns, batches = 8, 60
	var written atomic.Int64 // batches written
	stop := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for l := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				conn := fmt.Sprint("c", (i+l)%conns)
				before := int(written.Load())
				recs, err := db.AuditRecords(ctx, spotoken.AuditFilter{AppID: "a", ConnectionID: conn, Limit: spotoken.MaxPage})
				if err != nil {
					errs <- err
					return
				}
				if len(recs) < before {
					errs <- fmt.Errorf("%s: %d records listed after %d batches", conn, len(recs), before)
					return
				}
				for j, r := range recs {
					if want := fmt.Sprint("b", j, conn); r.RequestID != want {
						errs <- fmt.Errorf("%s: record %d is %s; want %s", conn, j, r.RequestID, want)
						return
					}
				}
			}
		}()
	}
	for b := range batches {
		if err := db.AppendAudit(ctx, vendBatch(t0.Add(time.Duration(b)*2*time.Second), b, conns)...); err != nil {
			t.Fatal(err)
		}
		written.Add(1)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The indexing goroutine catches up: at most the last 30 groups wait.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var tail int
		if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM audit_groups WHERE id > (SELECT indexed_id FROM audit_index_state)`).Scan(&tail); err != nil {
			t.Fatal(err)
		}
		if tail < 30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d groups still wait for the index", tail)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGroupAuditOrder: groupAudit cuts a batch into the same groups
// whether it comes clustered by connection (the trail's batches, not
// sorted again) or interleaved, or with a connection's records out of
// time order (sorted): each connection's records in time order, split at
// groupMaxRecords, nothing lost or repeated.
func TestGroupAuditOrder(t *testing.T) {
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	rec := func(conn string, ms int) spotoken.AuditRecord {
		return spotoken.AuditRecord{At: at.Add(time.Duration(ms) * time.Millisecond), Action: spotoken.AuditTokenVend,
			AppID: "a", ConnectionID: conn, RequestID: fmt.Sprint(conn, "-", ms)}
	}
	// want: for each connection, its groups' sizes and request ids in order.
	summary := func(groups []auditGroup) map[string][]string {
		out := map[string][]string{}
		for _, g := range groups {
			recs, err := readGroup(1, g.appID, g.connectionID, string(g.body))
			if err != nil {
				t.Fatal(err)
			}
			ids := []string{fmt.Sprint("n=", g.n)}
			for _, r := range recs {
				ids = append(ids, r.RequestID)
			}
			out[g.connectionID] = append(out[g.connectionID], strings.Join(ids, ","))
		}
		return out
	}
	var clusteredBatch, interleaved, outOfOrder []spotoken.AuditRecord
	for _, c := range []string{"z", "b", "m"} { // not in key order
		for i := range 300 { // more than a group holds
			clusteredBatch = append(clusteredBatch, rec(c, i))
		}
	}
	for i := range 300 {
		for _, c := range []string{"z", "b", "m"} {
			interleaved = append(interleaved, rec(c, i))
		}
	}
	outOfOrder = slices.Clone(clusteredBatch)
	outOfOrder[5], outOfOrder[6] = outOfOrder[6], outOfOrder[5]
	want := map[string][]string{}
	for _, c := range []string{"z", "b", "m"} {
		for _, r := range [][2]int{{0, groupMaxRecords}, {groupMaxRecords, 300}} {
			ids := []string{fmt.Sprint("n=", r[1]-r[0])}
			for i := r[0]; i < r[1]; i++ {
				ids = append(ids, fmt.Sprint(c, "-", i))
			}
			want[c] = append(want[c], strings.Join(ids, ","))
		}
	}
	for name, batch := range map[string][]spotoken.AuditRecord{"clustered": clusteredBatch, "interleaved": interleaved, "out of order": outOfOrder} {
		groups, err := groupAudit(at, batch)
		if err != nil {
			t.Fatal(err)
		}
		if got := summary(groups); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: groups differ from each connection's records in time order", name)
		}
	}
	if !clustered(mustStamp(clusteredBatch)) || clustered(mustStamp(interleaved)) || clustered(mustStamp(outOfOrder)) {
		t.Error("clustered misjudges a batch")
	}
}

// mustStamp is batch as groupAudit stamps it.
func mustStamp(batch []spotoken.AuditRecord) []stampedAudit {
	out := make([]stampedAudit, len(batch))
	for i := range batch {
		out[i] = stampedAudit{r: &batch[i], at: batch[i].At.UnixMicro()}
	}
	return out
}

// TestReadGroupShortElements: a short element needs a record before it,
// a time step that is not negative, and a request id; the records it
// stands for are its predecessor's, their detail maps not shared.
func TestReadGroupShortElements(t *testing.T) {
	full := `[1,1796637600000000,"token.vend",["api_key","key_1","svc","192.0.2.1","ua/1","req-0","POST","/v1/connections/{id}/token",200,0,"ok","fp",{"k":"v"}]]`
	for _, bad := range []string{
		`[[5,"req-1"]]`,                   // nothing before it
		`[` + full + `,[-5,"req-1"]]`,     // back in time
		`[` + full + `,[5]]`,              // no request id
		`[` + full + `,[5,7]]`,            // a request id that is not a string
		`[` + full + `,["5","req-1"]]`,    // a time step that is not a number
		`[` + full + `,[5,"req-1",null]]`, // three elements
	} {
		if recs, err := readGroup(10, "a", "c", bad); err == nil {
			t.Errorf("%s: read as %d records, want an error", bad, len(recs))
		}
	}
	recs, err := readGroup(10, "a", "c", `[`+full+`,[5,"req-1"],[0,"req-2"]]`)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	for i, r := range recs {
		w := *recs[0]
		w.ID, w.RequestID = 10+int64(i), fmt.Sprint("req-", i)
		w.At = recs[0].At.Add(time.Duration(min(i, 1)*5) * time.Microsecond)
		if !reflect.DeepEqual(*r, w) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, *r, w)
		}
	}
	recs[1].Detail["k"] = "changed"
	if recs[0].Detail["k"] != "v" || recs[2].Detail["k"] != "v" {
		t.Error("records of short elements share their detail map")
	}
}

// FuzzReadGroup: any body read without an error gives records numbered
// from the group's id, each with the group's connection; none panics.
// The corpus (testdata/fuzz/FuzzReadGroup) holds full and short elements.
func FuzzReadGroup(f *testing.F) {
	f.Add(`[[1,1796637600000000,"token.vend",["api_key","k","l","192.0.2.1","ua","r0","POST","/x",200,0,"ok","fp",{}]],[7,"r1"]]`)
	f.Add(`[[1,1,"a",[null,null,null,null,null,null,null,null,0,0,null,null,null]]]`)
	f.Fuzz(func(t *testing.T, body string) {
		recs, err := readGroup(100, "a", "c", body)
		if err != nil {
			return
		}
		for i, r := range recs {
			if r.ID != 100+int64(i) || r.AppID != "a" || r.ConnectionID != "c" {
				t.Fatalf("record %d: id %d, app %q, connection %q", i, r.ID, r.AppID, r.ConnectionID)
			}
		}
	})
}
