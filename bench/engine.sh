#!/usr/bin/env bash
# Benchmarks of the ConvBN block engine: one training step per mode for
# the three block shapes, the paired Tune/Deploy and conv/GEMM runs, and
# the recorder overhead, each COUNT times, then benchstat comparisons of
# Eval against Tune and Tune against Deploy. Needs benchstat
# (go install golang.org/x/perf/cmd/benchstat@latest).
#
# Usage: bench/engine.sh [COUNT] [OUTDIR]   (default 10 and a temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."

count=${1:-10}
out=${2:-$(mktemp -d)}
mkdir -p "$out"
benchstat=${BENCHSTAT:-$(go env GOPATH)/bin/benchstat}

go test -c -o "$out/convbn.test" ./convbn/
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"

(cd convbn && "$out/convbn.test" -test.run '^$' -test.bench 'BlockStep' -test.count "$count" -test.benchtime 3x) >"$out/step.txt"
(cd convbn && "$out/convbn.test" -test.run '^$' -test.bench 'Paired|RecorderOverhead' -test.count "$count" -test.benchtime 6x) >"$out/paired.txt"

# One file per mode with the mode removed from the names, so that benchstat
# sets the modes side by side.
for mode in train eval tune deploy; do
	grep "/$mode-" "$out/step.txt" | sed "s|/$mode-|-|" >"$out/$mode.txt"
done
echo "== Eval against Tune (one training step)"
"$benchstat" eval="$out/eval.txt" tune="$out/tune.txt"
echo "== Tune against Deploy (one training step)"
"$benchstat" tune="$out/tune.txt" deploy="$out/deploy.txt"
echo "== Paired runs and recorder overhead"
"$benchstat" "$out/paired.txt"
echo "raw output in $out"
