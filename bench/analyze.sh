#!/usr/bin/env bash
# Whole-process benchmark of convbn-diag analyze on a synthetic PyTorch zip
# checkpoint written by the project's own writer, against reading the same
# file with cat on a warm page cache. Needs hyperfine and GNU time
# (apt-get install hyperfine time).
#
# Usage: bench/analyze.sh [SIZE_MB]   (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."

size_mb=${1:-100}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

go build -o "$work/convbn-diag" ./cmd/convbn-diag
go build -o "$work/genckpt" ./bench/genckpt
ckpt="$work/synthetic.pt"
"$work/genckpt" -o "$ckpt" -size-mb "$size_mb"
echo "checkpoint: $(stat -c %s "$ckpt") bytes, $(nproc) cores, $(date -u +%Y-%m-%d)"

# Warm the page cache so every command reads from memory.
cat "$ckpt" >/dev/null
cat "$ckpt" >/dev/null

hyperfine --style basic --warmup 3 --min-runs 20 \
	--command-name "cat" "cat '$ckpt' > /dev/null" \
	--command-name "analyze" "'$work/convbn-diag' analyze '$ckpt' > /dev/null" \
	--command-name "analyze --per-channel" "'$work/convbn-diag' analyze --per-channel -f csv '$ckpt' > /dev/null"

for args in "analyze" "analyze --per-channel -f csv"; do
	rss=$(/usr/bin/time -v "$work/convbn-diag" $args "$ckpt" 2>&1 >/dev/null |
		awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}')
	echo "peak RSS of convbn-diag $args: $rss KB"
done
