#!/bin/sh
# Re-execute every notebook in place with /usr/bin/python3's kernel, so the
# committed outputs match the current tool. Set CONVBN_DIAG to use a built
# binary; otherwise this script builds one into a temporary folder once and
# shares it between the notebooks.
#
# Usage: notebooks/run.sh [NOTEBOOK.ipynb...]   (default: every notebook)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

if [ -z "${CONVBN_DIAG:-}" ]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$repo" && go build -o "$tmp/convbn-diag" ./cmd/convbn-diag)
	CONVBN_DIAG="$tmp/convbn-diag"
	export CONVBN_DIAG
fi

if [ "$#" -eq 0 ]; then
	set -- "$here"/[0-9][0-9]-*.ipynb
fi

for notebook in "$@"; do
	start=$(date +%s)
	jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.kernel_name=python3 \
		--ExecutePreprocessor.timeout=300 \
		"$notebook"
	echo "$(basename "$notebook"): $(($(date +%s) - start)) s"
done
