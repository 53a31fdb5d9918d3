package sqlite_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/sqlite"
)

// TestListStatementsReuse: a listing's statement is prepared once per
// text and reused, and a reused statement answers what a fresh one does
// (the rows of the page its arguments select).
func TestListStatementsReuse(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "db"))
	defer db.Close()
	if err := db.CreateApp(ctx, &spotoken.App{ID: "a", ClientID: "cid"}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		c := &spotoken.Connection{AppID: "a", ID: fmt.Sprint("c", i), State: spotoken.StateActive,
			Token: spotoken.Token{AccessToken: "at", RefreshToken: "rt"}}
		if i%3 == 0 {
			c.State = spotoken.StateNeedsReauth
		}
		if err := db.CreateConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(f spotoken.ConnectionFilter) string {
		t.Helper()
		cs, err := db.Connections(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var s string
		for _, c := range cs {
			s += c.ID + " "
		}
		return s
	}
	if n := db.ListStatements(); n != 0 {
		t.Fatalf("%d statements cached before a listing", n)
	}
	for _, want := range []struct {
		f    spotoken.ConnectionFilter
		ids  string
		stmt int
	}{
		{spotoken.ConnectionFilter{AppID: "a", Limit: 3}, "c0 c1 c2 ", 1},
		{spotoken.ConnectionFilter{AppID: "a", After: "c2", Limit: 3}, "c3 c4 c5 ", 1},
		{spotoken.ConnectionFilter{AppID: "a", After: "c8", Limit: 3}, "c9 ", 1},
		{spotoken.ConnectionFilter{AppID: "a", State: spotoken.StateNeedsReauth}, "c0 c3 c6 c9 ", 2},
		{spotoken.ConnectionFilter{AppID: "a", State: spotoken.StateNeedsReauth, After: "c3"}, "c6 c9 ", 2},
		{spotoken.ConnectionFilter{AppID: "a", After: "c9"}, "", 2},
		{spotoken.ConnectionFilter{AppID: "a", Limit: 2}, "c0 c1 ", 2},
	} {
		if got := ids(want.f); got != want.ids {
			t.Errorf("%+v: %q, want %q", want.f, got, want.ids)
		}
		if n := db.ListStatements(); n != want.stmt {
			t.Errorf("after %+v: %d statements cached, want %d", want.f, n, want.stmt)
		}
	}
}

// TestListStatementsBound: many concurrent listings of more texts than the
// cache holds each get their own answer, while the cache keeps no more
// than its bound and never hands out a statement it closed.
func TestListStatementsBound(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "db"))
	const max, texts = 4, 16
	db.SetListStatementsMax(max)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				k := (g*7 + i) % texts
				got, err := db.ListInts(ctx, fmt.Sprintf("SELECT ?1 + %d", k), int64(i))
				if err == nil && (len(got) != 1 || got[0] != int64(i+k)) {
					err = fmt.Errorf("SELECT %d + %d = %v", i, k, got)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := db.ListStatements(); n < 1 || n > max {
		t.Errorf("%d statements cached, want 1 to %d", n, max)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if n := db.ListStatements(); n != 0 {
		t.Errorf("%d statements cached after Close", n)
	}
	if _, err := db.ListInts(ctx, "SELECT ?1 + 0", 1); err == nil {
		t.Error("a listing on a closed store succeeded")
	}
}

// TestListStatementsInterrupt: the listing deadline interrupts a cached
// statement that is running (not only one that has not started: compare
// TestListTimeout), and the statement answers the next call right.
func TestListStatementsInterrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	openDB(t, path).Close()
	db, err := sqlite.Open(ctx, sqlite.Config{Path: path, Keys: testRing(t), ListTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Counts to ?1: 10^12 steps run for hours unless interrupted.
	const count = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1) SELECT count(*) FROM c`
	for _, n := range []int64{10, 1e12, 1000} {
		got, err := db.ListInts(ctx, count, n)
		if n == 1e12 {
			if spotoken.ErrorCode(err) != spotoken.EQueryTimeout {
				t.Fatalf("counting to %d: %v, %v; want %s", n, got, err, spotoken.EQueryTimeout)
			}
			continue
		}
		if err != nil || len(got) != 1 || got[0] != n {
			t.Fatalf("counting to %d: %v, %v", n, got, err)
		}
		if c := db.ListStatements(); c != 1 {
			t.Fatalf("%d statements cached, want 1", c)
		}
	}
}
