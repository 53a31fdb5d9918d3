#!/bin/sh
# callgrind.sh: instructions per call of a cached token, Engine.Token against
# its floors (BenchmarkTokenFloors in floors_test.go: oauth2.ReuseTokenSource
# and a map[string] under a sync.RWMutex), with one key and with 100,000.
#
#   sh bench/callgrind.sh            # every case
#   CASES='keys=1/engine' sh bench/callgrind.sh
#
# Instruction counts do not depend on what else the machine is doing, which
# wall time on a shared machine does. Each case runs twice under valgrind's
# callgrind, with -test.benchtime N1x and N2x, collecting only inside the
# benchmark's timed loop (runFloor); the difference of the two counts divided
# by N2-N1 is the instructions of one call plus the loop's own few (the same
# in every case), with everything done once (setup, the b.N=1 run, the first
# calls' page faults) cancelled out. It runs in bench/, as go test does
# (the engine cases' SQLite table is loaded once and cached under $TMPDIR). The test binary is built without cgo
# and run with asynchronous preemption off: callgrind aborts on the signals
# Go's runtime sends itself otherwise; with GOGC=off, so that no garbage
# collection left over from the setup lands in one run's loop and not the
# other's. One goroutine (-test.cpu 1).
set -eu
N1=${N1:-20000}
N2=${N2:-40000}
CASES=${CASES:-'keys=1/reuse keys=1/rwmap keys=1/engine keys=100000/reuse keys=100000/rwmap keys=100000/engine'}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$(dirname "$0")/.."
CGO_ENABLED=0 go test -c -o "$dir/bench.test" ./bench/
ir() { # ir CASE N: instructions collected in runFloor
	keys=${1%/*} what=${1#*/}
	(cd bench && GOGC=off GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file="$dir/out" \
		--toggle-collect='*runFloor*' "$dir/bench.test" -test.run '^$' \
		-test.bench "^BenchmarkTokenFloors\$/^$keys\$/^$what\$" -test.benchtime "$2x" -test.cpu 1) >"$dir/log" 2>&1 ||
		{ cat "$dir/log" >&2; exit 1; }
	sed -n 's/^summary: *//p' "$dir/out"
}
printf '%-20s %12s\n' case 'Ir/call'
for c in $CASES; do
	a=$(ir "$c" "$N1")
	b=$(ir "$c" "$N2")
	awk -v c="$c" -v a="$a" -v b="$b" -v n=$((N2 - N1)) 'BEGIN { printf "%-20s %12.1f\n", c, (b - a) / n }'
done
