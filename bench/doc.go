// Package bench holds throughput benchmarks of spotoken's Spotify emulator
// (package emulator) served over real loopback HTTP by net/http/httptest.
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
// The package has no non-test code. CI runs every benchmark once
// (-benchtime 1x) so that they keep compiling and their status checks keep
// passing; there are no timing thresholds anywhere.
package bench
