package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/postgres"
)

// planFixture opens a store on a fresh schema named name with the apps a
// and b, runs fill (each statement given now as $1 when it has one), and
// returns the store and a plain connection for EXPLAIN.
func planFixture(t *testing.T, dsn string, now time.Time, fill ...string) (*postgres.DB, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	db := openStore(t, dsn, testKeys(t), func() time.Time { return now })
	for _, id := range []string{"a", "b"} {
		if err := db.CreateApp(ctx, &spotoken.App{ID: id, ClientID: "client-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	conn := connect(t, dsn)
	for _, q := range fill {
		var args []any
		if strings.Contains(q, "$1") {
			args = []any{now}
		}
		if _, err := conn.Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	return db, conn
}

// explain returns query's plan, and whether it reads one of the indexes
// named in indexes ("a|b").
func explain(t *testing.T, conn *pgx.Conn, name, query, indexes string, args []any) (plan string, reads bool) {
	t.Helper()
	rows, err := conn.Query(context.Background(), "EXPLAIN "+query, args...)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan = strings.Join(lines, "\n") + "\n"
	for _, index := range strings.Split(indexes, "|") {
		reads = reads || strings.Contains(plan, " using "+index+" ") || strings.Contains(plan, " on "+index+" ")
	}
	return plan, reads
}
