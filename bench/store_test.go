package bench_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotoken/spotoken"
)

// The store benchmarks: compare-and-swap updates and Due, on both stores,
// each against a baseline measured in the same run. See doc.go.

// storeKinds are the stores benchmarked, in this order.
var storeKinds = []string{"sqlite", "postgres"}

// storeNsPerOp records the ns/op of the last run of each store benchmark in this
// process, so that a later benchmark can report its ratio to an earlier one
// (its baseline) as a metric.
var storeNsPerOp = struct {
	sync.Mutex
	m map[string]float64
}{m: map[string]float64{}}

// storeRecord stores ns/op of the benchmark named name and, if the benchmark
// named base has run in this process, reports the ratio ns/op ÷ base's ns/op
// as the metric unit.
func storeRecord(b *testing.B, name string, ns float64, base, unit string) {
	storeNsPerOp.Lock()
	defer storeNsPerOp.Unlock()
	storeNsPerOp.m[name] = ns
	if base == "" {
		return
	}
	if d, ok := storeNsPerOp.m[base]; ok && d > 0 {
		b.ReportMetric(ns/d, unit)
	}
}

// storeFixture returns the database of n rows of kind (loaded the first
// time), or skips the PostgreSQL benchmarks when no database is configured.
func storeFixture(b *testing.B, kind string, n int) *storeDB {
	b.Helper()
	if kind == "postgres" {
		benchPostgresDSN(b)
	}
	return loadStoreDB(b, kind, n)
}

func benchRows(b *testing.B) int {
	b.Helper()
	n, err := benchConnections()
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// Rotated tokens are as long as the loaded ones; a counter makes each one new.
var (
	rotatedAccess  = string(fakeToken("BQ", accessTokenLen-20, 1))
	rotatedRefresh = string(fakeToken("AQ", refreshTokenLen-20, 2))
)

// rotateToken is one refresh's commit: UpdateConnection with a new access and
// refresh token and expiry (an hour from the store's clock), failures
// cleared. No event is stored.
func rotateToken(ctx context.Context, st spotoken.Store, k spotoken.ConnectionKey, seq uint64) error {
	s := fmt.Sprintf("%020d", seq)
	access, refresh := spotoken.Secret(rotatedAccess+s), spotoken.Secret(rotatedRefresh+s)
	c, err := st.UpdateConnection(ctx, k, func(c *spotoken.Connection) ([]spotoken.Event, error) {
		c.Token = spotoken.Token{AccessToken: access, RefreshToken: refresh, Expiry: refTime.Add(time.Hour)}
		c.LastRefreshAt = refTime
		c.ConsecutiveFailures = 0
		c.NextAttemptAt = time.Time{}
		c.LastErrorCode = ""
		return nil, nil
	})
	if err != nil {
		return err
	}
	if c.Token.AccessToken != access || c.Token.RefreshToken != refresh {
		return fmt.Errorf("UpdateConnection(%s) returned other tokens", k)
	}
	return nil
}

// BenchmarkStoreCAS measures UpdateConnection (a token rotation, as a
// refresh commits it) from b.RunParallel goroutines, on one connection
// (conn=one: every goroutine on the same row) and on distinct connections
// (conn=distinct: consecutive operations on consecutive rows of up to 4096
// spread over the table, so goroutines do not contend for a row), against
// op=raw: a bare UPDATE ... SET consecutive_failures = consecutive_failures
// + 1 of the same rows, same database, same parallelism, outside the
// store. The op=update lines report vs-raw: their ns/op ÷ op=raw's, from
// the same process, and vs-raw-cpu, the same ratio of cpu-ns/op (the test
// process's CPU time per operation: everything but the fsyncs for SQLite,
// the client's side only for PostgreSQL).
func BenchmarkStoreCAS(b *testing.B) {
	for _, kind := range storeKinds {
		b.Run("store="+kind, func(b *testing.B) {
			f := storeFixture(b, kind, benchRows(b))
			for _, conn := range []string{"one", "distinct"} {
				b.Run("conn="+conn, func(b *testing.B) {
					for _, op := range []string{"raw", "update"} {
						b.Run("op="+op, func(b *testing.B) { benchCAS(b, f, conn, op) })
					}
				})
			}
		})
	}
}

func benchCAS(b *testing.B, f *storeDB, conn, op string) {
	f.flushNotes(b)
	ctx := context.Background()
	keys := f.facts.cas
	if len(keys) == 0 {
		b.Skipf("no connection of the %d is eligible for updates", f.facts.n)
	}
	if conn == "one" {
		keys = keys[:1]
	}
	var next, seq atomic.Uint64
	seq.Store(uint64(time.Now().UnixNano())) // new tokens in every run, cached database or not
	var fail firstError
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	cpu0, cpuOK := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := keys[(next.Add(1)-1)%uint64(len(keys))]
			var err error
			if op == "raw" {
				err = f.rawUpdate(ctx, k)
			} else {
				err = rotateToken(ctx, f.store, k, seq.Add(1))
			}
			if err != nil {
				fail.set(err)
				return
			}
		}
	})
	b.StopTimer()
	if fail.err != nil {
		b.Fatal(fail.err)
	}
	s := b.Elapsed().Seconds()
	if s <= 0 {
		return
	}
	b.ReportMetric(float64(b.N)/s, "ops/s")
	name := f.kind + "/" + conn + "/"
	base := ""
	if op != "raw" {
		base = name + "raw"
	}
	storeRecord(b, name+op, s*1e9/float64(b.N), base, "vs-raw")
	if cpu1, ok := processCPU(); ok && cpuOK {
		// The test process's CPU time per operation: all of it for SQLite
		// (but the waits for fsync), the client's side only for PostgreSQL.
		// Other load on the machine disturbs it less than wall time.
		cpu := float64((cpu1 - cpu0).Nanoseconds()) / float64(b.N)
		b.ReportMetric(cpu, "cpu-ns/op")
		cpuBase := ""
		if base != "" {
			cpuBase = base + "/cpu"
		}
		storeRecord(b, name+op+"/cpu", cpu, cpuBase, "vs-raw-cpu")
	}
}

// BenchmarkStoreDue measures Due(now+5m, limit), one call at a time as the
// scheduler makes them, at limit 500 (the scheduler's) and 1, on a table of
// SPOTOKEN_BENCH_CONNECTIONS rows and on the baseline table of 10,000 rows
// in a separate database. A rows=N line reports vs-10k, its ns/op ÷ the
// rows=10000 line's at the same limit, and a limit=1 line vs-limit500, its
// ns/op ÷ the limit=500 line's at the same size. Each line also reports the
// process's memory: MB-rss-open before the loop (store open, earlier
// garbage returned to the system), MB-rss after it and MB-hwm, the peak
// during it (VmHWM, reset before the loop), from /proc/self/status.
func BenchmarkStoreDue(b *testing.B) {
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
			logPlan(b, fs[n])
			for _, limit := range []int{dueLimit, 1} {
				b.Run("limit="+strconv.Itoa(limit), func(b *testing.B) {
					for _, rows := range sizes {
						b.Run("rows="+strconv.Itoa(rows), func(b *testing.B) { benchDue(b, fs[rows], limit) })
					}
				})
			}
		})
	}
}

func benchDue(b *testing.B, f *storeDB, limit int) {
	f.flushNotes(b)
	if limit == 1 {
		f.mu.Lock()
		if f.plan != "" {
			b.Log(f.plan)
			f.plan = ""
		}
		f.mu.Unlock()
	}
	ctx := context.Background()
	before := refTime.Add(dueWindow)
	want := min(limit, f.facts.dueCount)
	if err := checkStoreDue(ctx, f, limit); err != nil {
		b.Fatal(err)
	}
	reset := resetPeakMemory()
	rssOpen, _, memOK := procMemory()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		due, err := f.store.Due(ctx, before, limit)
		if err != nil {
			b.Fatal(err)
		}
		if len(due) != want {
			b.Fatalf("Due returned %d connections, want %d", len(due), want)
		}
	}
	s := b.Elapsed().Seconds()
	if memOK {
		rss, hwm, _ := procMemory()
		// MB are 10⁶ bytes, as benchstat reads the unit.
		b.ReportMetric(float64(rssOpen)/1e6, "MB-rss-open")
		b.ReportMetric(float64(rss)/1e6, "MB-rss")
		if reset {
			b.ReportMetric(float64(hwm)/1e6, "MB-hwm")
		}
	}
	if s <= 0 {
		return
	}
	b.ReportMetric(float64(b.N)/s, "calls/s")
	ns := s * 1e9 / float64(b.N)
	name := fmt.Sprintf("%s/limit=%d/rows=%d", f.kind, limit, f.facts.n)
	base := ""
	if f.facts.n != smallRows {
		base = fmt.Sprintf("%s/limit=%d/rows=%d", f.kind, limit, smallRows)
	}
	storeRecord(b, name, ns, base, "vs-10k")
	if limit != dueLimit {
		storeRecord(b, name, ns, fmt.Sprintf("%s/limit=%d/rows=%d", f.kind, dueLimit, f.facts.n), "vs-limit500")
	}
}

// dueQueryPlan is the query of the stores' Due (sqlite/connection.go
// dueQuery, postgres/connections.go dueSQL), copied here only to show its
// plan in the log; the benchmarks call Due itself.
const dueQueryPlan = `SELECT app_id, id, access_expires_at, version FROM connections
	WHERE state = 'active' AND access_expires_at < $1 AND (next_attempt_at IS NULL OR next_attempt_at <= $2)
	ORDER BY access_expires_at, app_id, id LIMIT $3`

var planLogged sync.Map

// logPlan logs, once per database, the plan of Due's query on f's database:
// SQLite's EXPLAIN QUERY PLAN, or PostgreSQL's EXPLAIN (ANALYZE, BUFFERS) of
// the query prepared and run enough times for the server to settle on the
// plan it keeps for the store's prepared statement.
func logPlan(b *testing.B, f *storeDB) {
	if _, done := planLogged.LoadOrStore(f, true); done {
		return
	}
	ctx := context.Background()
	before, now := refTime.Add(dueWindow), refTime
	var lines []string
	var err error
	switch f.kind {
	case "sqlite":
		lines, err = sqlitePlan(ctx, f, before, now)
	case "postgres":
		lines, err = postgresPlan(ctx, f, before, now)
	}
	if err != nil {
		f.note("%s: plan of Due: %v", f.kind, err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plan = fmt.Sprintf("%s, %d rows: plan of Due(now+%v, %d):\n\t%s", f.kind, f.facts.n, dueWindow, dueLimit, strings.Join(lines, "\n\t"))
}

func sqlitePlan(ctx context.Context, f *storeDB, before, now time.Time) ([]string, error) {
	db, err := sql.Open("sqlite", sqliteDSN(f.path, "&_pragma=query_only(1)"))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	q := strings.NewReplacer("$1", "?1", "$2", "?2", "$3", "?3").Replace(dueQueryPlan)
	rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, before.UnixMicro(), now.UnixMicro(), dueLimit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, notUsed int
		var detail string
		if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
			return nil, err
		}
		lines = append(lines, detail)
	}
	return lines, rows.Err()
}

func postgresPlan(ctx context.Context, f *storeDB, before, now time.Time) ([]string, error) {
	conn, err := pgx.Connect(ctx, pgWithParams(f.dsn, "search_path", f.schema))
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	// The store runs Due as a prepared statement (pgx's statement cache):
	// after five runs the server may switch it to a generic plan.
	if _, err := conn.Exec(ctx, `PREPARE due_plan AS `+dueQueryPlan); err != nil {
		return nil, err
	}
	args := fmt.Sprintf("('%s', '%s', %d)", before.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano), dueLimit)
	for range 6 {
		if _, err := conn.Exec(ctx, `EXECUTE due_plan`+args); err != nil {
			return nil, err
		}
	}
	rows, err := conn.Query(ctx, `EXPLAIN (ANALYZE, BUFFERS) EXECUTE due_plan`+args)
	if err != nil {
		return nil, err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	// testing keeps 9 lines of a benchmark's log: drop the planning
	// figures and the Limit node's buffers (its scan's), the least telling.
	planning := false
	return slices.DeleteFunc(lines, func(l string) bool {
		if strings.HasPrefix(l, "Planning") {
			planning = true
		} else if strings.HasPrefix(l, "Execution") {
			planning = false
		}
		return planning || strings.HasPrefix(l, "  Buffers:")
	}), err
}
