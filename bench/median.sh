#!/bin/sh
# median.sh: the median [min..max] of one reported metric per benchmark, over
# the lines of raw `go test -bench` output (several runs of the same
# benchmarks, e.g. -count 1 in a loop). For metrics that are already ratios,
# such as BenchmarkLoadVendAudit's ratio and cpu-ratio, which ratio.sh (made
# for ns/op against a baseline) rounds away.
#
#   sh bench/median.sh ratio /tmp/vendaudit.txt
#   sh bench/median.sh cpu-ratio /tmp/vendaudit.txt
set -eu
[ $# -ge 1 ] || { echo "usage: median.sh METRIC [FILE...]" >&2; exit 2; }
metric=$1
shift
awk -v unit="$metric" '
/^Benchmark/ {
	name = $1
	sub(/-[0-9]+$/, "", name)
	for (i = 3; i <= NF; i++) if ($i == unit) {
		if (!(name in n)) order[++k] = name
		v[name, ++n[name]] = $(i - 1)
	}
}
END {
	if (k == 0) { print "median.sh: no benchmark lines with " unit > "/dev/stderr"; exit 1 }
	for (j = 1; j <= k; j++) {
		name = order[j]; c = n[name]
		for (a = 1; a <= c; a++) x[a] = v[name, a]
		for (a = 2; a <= c; a++) { t = x[a]; for (b = a - 1; b >= 1 && x[b] > t; b--) x[b + 1] = x[b]; x[b + 1] = t }
		m = (c % 2) ? x[(c + 1) / 2] : (x[c / 2] + x[c / 2 + 1]) / 2
		printf "%-36s %s median %.3f [%.3f..%.3f] over %d runs\n", name, unit, m, x[1], x[c], c
	}
}' "$@"
