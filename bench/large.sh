#!/usr/bin/env bash
# Whole-process benchmark of convbn-diag on large synthetic checkpoints: a
# PyTorch zip checkpoint and a safetensors file of SIZE_MB each, written by
# the project's own writers (bench/genckpt). On a warm page cache it times
# `cat FILE > /dev/null`, `analyze` and `analyze --per-channel` with
# hyperfine and reports each one's throughput relative to cat, then the
# peak resident set size of analyze, analyze --per-channel and fuse from
# GNU time. Every file it writes is deleted at exit.
#
# Needs hyperfine and GNU time (apt-get install hyperfine time), and about
# 2·SIZE_MB of free disk under TMPDIR (the fused output is written there
# too). Targets: analyze at least 1× cat's throughput, --per-channel at
# least 0.25×, peak RSS at most 256 MB.
#
# Usage: bench/large.sh [SIZE_MB] [RUNS]   (defaults 2000 and 10)
set -euo pipefail
cd "$(dirname "$0")/.."

size_mb=${1:-2000}
runs=${2:-10}
work=$(mktemp -d "${TMPDIR:-/tmp}/convbn-large.XXXXXX")
trap 'rm -rf "$work"' EXIT

go build -o "$work/convbn-diag" ./cmd/convbn-diag
go build -o "$work/genckpt" ./bench/genckpt

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "go: $(go version)"
echo "nproc: $(nproc), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
lscpu | head -n 15
echo

# peak_rss prints the maximum resident set size, in MB, of one run of
# convbn-diag with the given arguments.
peak_rss() {
	/usr/bin/time -v "$work/convbn-diag" "$@" 2>&1 >/dev/null |
		awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); printf "%.1f MB\n", $2 / 1024}'
}

for format in pt safetensors; do
	ckpt="$work/synthetic.$format"
	"$work/genckpt" -o "$ckpt" -size-mb "$size_mb" -format "$format"
	bytes=$(stat -c %s "$ckpt")
	echo "== $format: $bytes bytes"

	# Warm the page cache so every command reads from memory.
	cat "$ckpt" >/dev/null
	cat "$ckpt" >/dev/null

	hyperfine --style basic --warmup 2 --runs "$runs" --export-json "$work/$format.json" \
		--command-name "cat" "cat '$ckpt' > /dev/null" \
		--command-name "analyze" "'$work/convbn-diag' analyze '$ckpt' > /dev/null" \
		--command-name "analyze --per-channel" "'$work/convbn-diag' analyze --per-channel -f csv '$ckpt' > /dev/null"

	/usr/bin/python3 - "$work/$format.json" "$bytes" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
size = int(sys.argv[2])
cat = next(r for r in results if r["command"] == "cat")["mean"]
cat_min = next(r for r in results if r["command"] == "cat")["min"]
# The minimum is the run least disturbed by other work on the machine.
for r in results:
    print(f"{r['command']:<24} mean {r['mean']:.3f} s ± {r['stddev']:.3f}  "
          f"{size / r['mean'] / 1e6:8.0f} MB/s  {cat / r['mean']:.2f}× cat   "
          f"min {r['min']:.3f} s  {cat_min / r['min']:.2f}× cat's min")
PY

	echo "peak RSS, analyze:               $(peak_rss analyze "$ckpt")"
	echo "peak RSS, analyze --per-channel: $(peak_rss analyze --per-channel -f csv "$ckpt")"
	fused="$work/fused.$format"
	start=$(date +%s.%N)
	echo "peak RSS, fuse:                  $(peak_rss fuse -q "$ckpt" -o "$fused")"
	echo "fuse wall time (with its RSS measurement): $(echo "$(date +%s.%N) - $start" | bc) s"
	rm -f "$ckpt" "$fused" "${fused%.*}.json"
	echo
done
