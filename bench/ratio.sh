#!/bin/sh
# ratio.sh: summarize raw `go test -bench` output of this package as ratios to
# BenchmarkBaseline (emulator ns/op ÷ baseline ns/op; 1.00 = as cheap as a
# trivial handler over the same loopback stack).
#
#   for i in 1 2 3 4 5 6 7 8 9 10; do
#     go test -run '^$' -bench . -benchtime 3s -count 1 ./bench/
#   done | tee /tmp/bench.txt
#   sh bench/ratio.sh /tmp/bench.txt
#   UNIT=cpu-ns/op sh bench/ratio.sh /tmp/bench.txt
#
# UNIT (default ns/op) picks the metric: ns/op is wall time per request;
# cpu-ns/op, reported by the benchmarks on Unix, is the process's CPU time
# (client and server together) per request, which a busy shared machine
# disturbs much less. For each benchmark it prints the median of UNIT over all
# its samples, 1e9 over that median (req/s for ns/op, requests per CPU-second
# for cpu-ns/op), the ratio of its median to the baseline's median, and the paired
# ratio: the i-th sample divided by the baseline's i-th sample, as median
# [min..max] over the pairs. With the rounds above (-count 1 in a loop) the
# i-th samples come from the same round, seconds apart, so the paired ratio
# cancels the slow drifts of a shared machine; with -count N they come from
# the same file only. Reads standard input when no file is given; needs only a
# POSIX awk.
set -eu

awk -v unit="${UNIT:-ns/op}" '
function sort(a, n,   i, j, t) {          # insertion sort of a[1..n]: n is small
	for (i = 2; i <= n; i++) {
		t = a[i]
		for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
		a[j + 1] = t
	}
}
function med(a, n) {
	sort(a, n)
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function median(name,   n, i, a) {
	n = count[name]
	for (i = 1; i <= n; i++) a[i] = ns[name, i]
	return med(a, n)
}
/^Benchmark/ {
	name = $1
	sub(/-[0-9]+$/, "", name)             # drop the -GOMAXPROCS suffix
	for (i = 3; i <= NF; i++) if ($i == unit) {
		if (!(name in count)) order[++names] = name
		ns[name, ++count[name]] = $(i - 1)
	}
}
END {
	if (names == 0) { print "ratio.sh: no benchmark lines with " unit > "/dev/stderr"; exit 1 }
	b = "BenchmarkBaseline"
	base = (b in count) ? median(b) : 0
	printf "%-36s %4s %14s %10s %7s  %s\n", "benchmark", "runs", "median " unit, "1e9/median", "ratio", "paired ratio median [min..max]"
	for (k = 1; k <= names; k++) {
		name = order[k]
		m = median(name)
		r = "-"; p = "-"
		if (base > 0) {
			r = sprintf("%.2f", m / base)
			n = count[name] < count[b] ? count[name] : count[b]
			split("", q)
			for (i = 1; i <= n; i++) q[i] = ns[name, i] / ns[b, i]
			pm = med(q, n)                # sorts q
			p = sprintf("%.2f [%.2f..%.2f]", pm, q[1], q[n])
		}
		printf "%-36s %4d %14.0f %10.0f %7s  %s\n", name, count[name], m, 1e9 / m, r, p
	}
	if (base == 0) print "ratio.sh: no BenchmarkBaseline lines: ratios not computed" > "/dev/stderr"
}
' "$@"
