// Package bench holds throughput benchmarks of spotoken's Spotify emulator
// (package emulator) served over real loopback HTTP by net/http/httptest,
// and benchmarks of the stores (packages sqlite and postgres); see "Store
// benchmarks" below for those.
//
// The machines these run on are small and shared, so no benchmark is read on
// its own: every run also measures BenchmarkBaseline, a trivial handler that
// writes a small fixed JSON body behind the same httptest server and the same
// client (one shared http.Client whose Transport keeps an idle connection for
// every goroutine of b.RunParallel, bodies drained and closed). The figure
// that matters is the ratio
//
//	emulator ns/op ÷ baseline ns/op
//
// taken from the same run: how many times more a request to the emulator
// costs than the cheapest possible request over the same loopback stack.
//
// The benchmarks:
//
//   - BenchmarkBaseline: GET of the trivial handler (the denominator).
//   - BenchmarkBaselinePost: the trivial handler behind a form POST shaped
//     like a refresh, to separate what a request body costs net/http from
//     what the emulator costs.
//   - BenchmarkEmulatorTokenRefresh: POST /api/token grant_type=refresh_token
//     for a public PKCE client, with a refresh token from a real
//     authorization-code flow (rotation never, so it is reused).
//   - BenchmarkEmulatorMe: GET /v1/me with a bearer token.
//   - BenchmarkEmulatorClientCredentials: client-credentials grant of a
//     confidential client with HTTP Basic.
//
// Each checks every response's status and reports, besides ns/op, req/s,
// cpu-ns/op (on Unix: the process's user+system CPU time per request, client
// and server together, which other load on a shared machine disturbs far
// less than wall time) and, through b.ReportAllocs, the allocations of client
// and server together (the runtime counts both).
//
// Run them in interleaved rounds, so that the baseline and the emulator are
// measured seconds apart and share the machine's mood:
//
//	for i in 1 2 3 4 5 6 7 8 9 10; do
//	  go test -run '^$' -bench . -benchtime 3s -count 1 ./bench/
//	done | tee /tmp/bench.txt
//
// (go test -bench . -count N runs each benchmark N times back to back
// instead, which also works but lets a slow minute fall on one benchmark
// only.) Then read the ratios with either
//
//	benchstat -col .name /tmp/bench.txt      # "vs base" column = ratio − 1
//	sh bench/ratio.sh /tmp/bench.txt         # ratios of medians and paired ratios
//	UNIT=cpu-ns/op sh bench/ratio.sh /tmp/bench.txt
//
// docs/BENCHMARKS.md records a run and its reading.
//
// # Store benchmarks
//
// store_test.go measures both stores, each against a baseline from the same
// process, and reports the ratio as a metric of its own, so a line reads on
// its own:
//
//   - BenchmarkStoreCAS/store=S/conn=C/op=O: UpdateConnection rotating a
//     token (new access and refresh token, new expiry, failures cleared; no
//     event), from b.RunParallel goroutines (the same parallelism as the
//     emulator benchmarks), on one connection (conn=one) or on distinct
//     connections (conn=distinct: up to 4096 rows spread over the table,
//     taken in turn), op=update. Its baseline, op=raw, is a bare
//     UPDATE connections SET consecutive_failures = consecutive_failures + 1
//     WHERE app_id = ? AND id = ? of the same rows of the same database,
//     with the same parallelism, outside the store: through database/sql
//     with the store's writer settings (one connection, synchronous=FULL,
//     secure_delete) for SQLite, through a pgxpool of the store's size for
//     PostgreSQL. Every line reports ops/s and cpu-ns/op (the test
//     process's CPU time per operation: all of the work but the fsyncs for
//     SQLite, the client's side only for PostgreSQL); op=update also
//     reports vs-raw, its ns/op ÷ op=raw's, and vs-raw-cpu, the same for
//     cpu-ns/op.
//
//   - BenchmarkStoreDue/store=S/limit=L/rows=R: Due(now+5m, L), what the
//     scheduler calls, one call at a time, at L = 500 and 1, on the table of
//     SPOTOKEN_BENCH_CONNECTIONS rows and on a baseline table of 10,000 rows
//     in a separate database. rows=N reports vs-10k (ns/op ÷ rows=10000's at
//     the same limit: near 1 when Due reads an index, near N/10,000 when it
//     scans), limit=1 reports vs-limit500. Each line also reports the test
//     process's memory from /proc/self/status: MB-rss-open (VmRSS before the
//     loop, with earlier garbage returned to the system), MB-rss (after the
//     loop) and MB-hwm (VmHWM, the peak, reset before the loop through
//     /proc/self/clear_refs); they stay flat whatever the table's size when
//     neither Due nor the store holds the table in memory. The first
//     limit=1 line at the large size logs the plan of Due's query.
//
//   - BenchmarkVendHit, BenchmarkVendMiss (vendmiss_test.go):
//     refresh.Engine.Token on the large table, for connections in the
//     engine's memory against connections never vended before (one store
//     read each); BenchmarkVendHTTPHit and BenchmarkVendHTTPMiss the same
//     through POST /v1/connections/{id}/token. The misses report vs-hit,
//     hit/miss and hit/miss-cpu against the hit of the same process; see
//     vendmiss_test.go and docs/BENCHMARKS.md.
//
// SPOTOKEN_BENCH_SQLITE_CACHE_MIB and SPOTOKEN_BENCH_SQLITE_MMAP_MIB size
// the SQLite store's page cache and memory map, as serve's
// --sqlite-cache-mib and --sqlite-mmap-mib (the store's defaults when
// unset).
//
// SPOTOKEN_BENCH_CONNECTIONS (default 10000) sizes the large table. The
// PostgreSQL benchmarks run when SPOTOKEN_TEST_POSTGRES holds a DSN (they
// are skipped, saying so, when it is unset), in schemas of their own, with
// pools of 4 connections.
//
// The rows are generated: row i is a pure function of i and the table's
// size, spread over 4 apps. The store's clock is fixed (2030-01-01 UTC, for
// every store and every run). 3% of the connections are needs_reauth
// (tokens kept, expired up to 30 days ago), 1% revoked (no tokens); of the
// active ones, 1% are in backoff (next attempt in the next 15 minutes,
// token expired up to 30 minutes ago or expiring within 5), 0.5% just out
// of backoff (due), and the rest expire evenly over the next hour, so that
// about 8.4% of all rows are due within 5 minutes. Tokens are as long as
// Spotify's (200 and 131 characters) and sealed as the stores seal them
// (internal/rowseal's SealToken, bound to the row, under a fixed test key).
// The CAS benchmarks rewrite only active rows outside Due's window, to
// another expiry outside it, so Due's answer never changes.
//
// Loading a million rows through CreateConnection, one synchronous commit
// (and fsync) per row, would take minutes at the few thousand commits per
// second these machines manage, so a bulk loader writes them: the schema and
// the apps through the store's Open and CreateApp, then the connections
// with raw SQL: for SQLite one prepared INSERT in transactions of 20,000
// rows (synchronous=OFF while loading, into a temporary file renamed into
// place when complete), for PostgreSQL one COPY, then VACUUM ANALYZE (what
// autovacuum does soon after such a load). Sealing runs on every CPU
// beside the writer. Every time a database is opened, a sample of 150 to
// 260 rows (every kind) is read back through the store's Connection and
// compared field by field with the generator, and Due's first 500 answers
// are compared with the generator's, so a loader that wrote rows the store
// cannot read fails instead of being measured. A million rows take 20 to
// 23 s to load into SQLite (a 730 MB file) and 16 to 20 s into PostgreSQL
// (840 MB with indexes) on the machine of docs/BENCHMARKS.md, about twice
// that when the machine is busy; opening and checking a cached table takes
// 0.1 to 0.2 s.
//
// Tables of 100,000 rows or more are cached between runs, keyed by size
// and by a hash of the store's migrations and of the generator's version
// (dataVersion): SQLite files $TMPDIR/spotoken-bench-sqlite-<N>-<hash>.db,
// PostgreSQL schemas spotoken_bench_<N>_<hash> in the SPOTOKEN_TEST_POSTGRES
// database. A cached database that fails the check above is reloaded.
// Remove them with
//
//	rm -f ${TMPDIR:-/tmp}/spotoken-bench-sqlite-*.db
//	psql "$SPOTOKEN_TEST_POSTGRES" -Atc "SELECT format('DROP SCHEMA %I CASCADE;', nspname)
//	    FROM pg_namespace WHERE nspname LIKE 'spotoken\_bench\_%'" | psql "$SPOTOKEN_TEST_POSTGRES"
//
// Smaller tables (the default, and the 10,000-row baselines) are loaded in
// every process, in a temporary directory or a schema
// spotoken_bench_tmp_<random>, removed when the benchmarks end.
//
// Run them as the others, in interleaved rounds:
//
//	export SPOTOKEN_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//	for i in 1 2 3 4 5 6 7 8; do
//	  SPOTOKEN_BENCH_CONNECTIONS=1000000 go test -run '^$' -bench Store -benchtime 2s -count 1 ./bench/
//	done | tee /tmp/store.txt
//	benchstat /tmp/store.txt                # medians of every metric, vs-* included
//	benchstat -col /op -filter .name:StoreCAS /tmp/store.txt     # update vs raw
//	benchstat -col /rows -filter .name:StoreDue /tmp/store.txt   # Due at N rows vs 10,000
//
// # Load benchmarks
//
// BenchmarkLoadVend and BenchmarkLoadProxy (load_test.go, with the load
// generator in loadgen_test.go) put the whole broker, built as spotoken
// serve builds it, under wrk-style load over loopback TCP, beside a floor in
// the same run: for vending (POST /v1/connections/{id}/token) a minimal
// net/http handler answering the same bytes, for the proxy (GET
// /v1/proxy/{id}/v1/me) direct calls to the emulator. Closed-loop at
// concurrencies 1, 16 and 64 (SPOTOKEN_BENCH_LOAD_C), and for the proxy also
// open-loop at 200 and 500 requests per second (rate=N, latency counted from
// when each request was due). They report req/s, p50/p99, the ratio to the
// floor, the added latency and CPU per request. docs/BENCHMARKS.md has the
// method, the commands and the results.
//
// BenchmarkLoadVendAudit compares vending with the audit trail on and off,
// in rounds of 10,000 vends a side. The trail's passes run beside the
// audited side's requests, a second apart as in serve, and only in its
// rounds (trailPacer); what is queued at the end is written inside the
// measured time. BenchmarkLoadVendAA measures two brokers without the
// trail the same way: how far its ratio strays from 1 is how finely the
// audit ratio can be read on the machine at hand.
//
// # Scale harness
//
// BenchmarkScale (scale_test.go, scaleproc_test.go) runs the real
// spotoken binary, built from the checkout, over SPOTOKEN_SCALE bulk-loaded
// connections (the store benchmarks' table) in either store, against a
// standalone `spotoken emulator` process, and drives it from outside:
// refreshes ahead of expiry with callers meanwhile, cache-miss against
// cache-hit vends, filtered listings and their effect on vends, serve's
// memory after vending every connection, start-up. Figures are ratios to
// floors of the same run; CPU and memory are serve's own, read from
// /proc/<pid>. It runs only when SPOTOKEN_SCALE is set (it takes tens of
// minutes at a million); docs/BENCHMARKS.md, "A million connections",
// has the commands and the results.
//
// The package has no non-test code. CI runs every benchmark once
// (-benchtime 1x) so that they keep compiling and their status checks keep
// passing; there are no timing thresholds anywhere.
package bench
