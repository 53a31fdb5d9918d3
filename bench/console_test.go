package bench_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/spotoken/spotoken"
)

// BenchmarkStoreConsole measures the store reads behind the operator's
// console (package console) on the large table and on the 10,000-row
// baseline, and reports each large-table figure as vs-10k: its ns/op ÷ the
// same read's on 10,000 rows, from the same process, and cpu-ns/op, the
// process's CPU time per read. A read that searches
// an index stays near 1 however large the table; one that scans it grows
// with the table (100 at a million rows).
//
//   - read=find-id: FindConnections by connection id, across apps (the
//     search box);
//   - read=find-user: FindConnections by Spotify user id;
//   - read=page: one app's first page of 51 connections by id;
//   - read=state: one app's first page of 51 connections needing
//     re-authorization (3% of the rows; GET /v1/connections?state=);
//   - read=find-state: FindConnections of revoked connections (1% of the
//     rows) across apps, a page of 101 after a cursor in the middle of the
//     second app (GET /v1/admin/connections?state=revoked&cursor=);
//   - read=backoff: one app's first page of connections backing off, by
//     next retry (BrowseConnections; 1% of the active rows);
//   - read=count-backoff: CountBackingOff (the apps list's figure);
//   - read=count: CountConnections (the apps list's counts; a scan of a
//     covering index, which grows with the table by design).
func BenchmarkStoreConsole(b *testing.B) {
	for _, kind := range storeKinds {
		b.Run("store="+kind, func(b *testing.B) {
			n := benchRows(b)
			sizes := []int{smallRows}
			if n != smallRows {
				sizes = append(sizes, n)
			}
			fs := map[int]*storeDB{}
			for _, rows := range sizes {
				fs[rows] = storeFixture(b, kind, rows)
			}
			for _, read := range []string{"find-id", "find-user", "page", "state", "find-state", "backoff", "count-backoff", "count"} {
				b.Run("read="+read, func(b *testing.B) {
					for _, rows := range sizes {
						b.Run("rows="+strconv.Itoa(rows), func(b *testing.B) { benchConsole(b, fs[rows], read) })
					}
				})
			}
		})
	}
}

// consoleRead returns the read named read on f's table, and the least it
// must find.
func consoleRead(f *storeDB, read string) (func(ctx context.Context, i int) (int, error), int) {
	n := f.facts.n
	app := benchAppID(0)
	switch read {
	case "find-id", "find-user":
		return func(ctx context.Context, i int) (int, error) {
			c := genConnection(i*7919%n, n)
			q := spotoken.ConnectionQuery{ID: c.ID, Limit: 101}
			if read == "find-user" {
				q = spotoken.ConnectionQuery{SpotifyUserID: c.SpotifyUserID, Limit: 101}
			}
			cs, err := f.store.FindConnections(ctx, q)
			return len(cs), err
		}, 1
	case "page", "state":
		filter := spotoken.ConnectionFilter{AppID: app, Limit: 51}
		if read == "state" {
			filter.State = spotoken.StateNeedsReauth
		}
		return func(ctx context.Context, _ int) (int, error) {
			cs, err := f.store.Connections(ctx, filter)
			return len(cs), err
		}, 51
	case "find-state":
		after := rowKey(n*3/(2*benchApps), n) // halfway through app 1
		return func(ctx context.Context, _ int) (int, error) {
			cs, err := f.store.FindConnections(ctx, spotoken.ConnectionQuery{State: spotoken.StateRevoked, After: after, Limit: 101})
			for _, c := range cs {
				if c.State != spotoken.StateRevoked || c.AppID < after.AppID {
					return 0, fmt.Errorf("find-state returned %s in %s", c.Key(), c.State)
				}
			}
			return len(cs), err
		}, 1
	case "backoff":
		return func(ctx context.Context, _ int) (int, error) {
			cs, err := f.store.BrowseConnections(ctx, spotoken.BrowseQuery{AppID: app, Order: spotoken.OrderNextAttempt,
				BackingOffAt: refTime, Limit: 51})
			return len(cs), err
		}, 1
	case "count-backoff":
		return func(ctx context.Context, _ int) (int, error) {
			cs, err := f.store.CountBackingOff(ctx, refTime)
			return len(cs), err
		}, benchApps
	}
	return func(ctx context.Context, _ int) (int, error) {
		cs, err := f.store.CountConnections(ctx)
		return len(cs), err
	}, benchApps
}

func benchConsole(b *testing.B, f *storeDB, read string) {
	f.flushNotes(b)
	ctx := context.Background()
	fn, least := consoleRead(f, read)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, cpuOK := processCPU()
	i := 0
	for b.Loop() {
		got, err := fn(ctx, i)
		if err != nil {
			b.Fatal(err)
		}
		if got < least {
			b.Fatalf("%s found %d, want at least %d", read, got, least)
		}
		i++
	}
	s := b.Elapsed().Seconds()
	if s <= 0 {
		return
	}
	ns := s * 1e9 / float64(b.N)
	b.ReportMetric(float64(b.N)/s, "calls/s")
	if cpu1, ok := processCPU(); ok && cpuOK {
		// Less sensitive than ns/op to how much of a shared machine the
		// process got.
		b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
	name := fmt.Sprintf("console/%s/%s/rows=%d", f.kind, read, f.facts.n)
	base := ""
	if f.facts.n != smallRows {
		base = fmt.Sprintf("console/%s/%s/rows=%d", f.kind, read, smallRows)
	}
	storeRecord(b, name, ns, base, "vs-10k")
}
