#!/bin/sh
# Execute the notebooks with /usr/bin/python3's Jupyter kernel.
#
# Usage: notebooks/run.sh [--check] [NOTEBOOK.ipynb...]   (default: every notebook)
#
# Without --check each notebook is re-executed in place, so its committed
# outputs match the current tool. With --check (what CI runs) each one is
# executed from scratch into a temporary folder, the repository is left
# untouched, and the script fails when a cell fails or when executing the
# notebooks changed a file in the repository.
#
# Set CONVBN_DIAG to use a built binary; otherwise the script builds one into
# a temporary folder once and shares it between the notebooks.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

check=false
if [ "${1:-}" = "--check" ]; then
	check=true
	shift
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -z "${CONVBN_DIAG:-}" ]; then
	(cd "$repo" && go build -o "$tmp/convbn-diag" ./cmd/convbn-diag)
	CONVBN_DIAG="$tmp/convbn-diag"
	export CONVBN_DIAG
fi

if [ "$#" -eq 0 ]; then
	set -- "$here"/[0-9][0-9]-*.ipynb
fi

if $check; then
	where="--output-dir $tmp/executed"
	touch "$tmp/stamp"
	sleep 1 # file times have one-second resolution on some file systems
else
	where="--inplace"
fi

for notebook in "$@"; do
	start=$(date +%s)
	# $where is one or two words and must be split.
	# shellcheck disable=SC2086
	/usr/bin/python3 -m nbconvert --to notebook --execute $where \
		--ExecutePreprocessor.kernel_name=python3 \
		--ExecutePreprocessor.timeout=300 \
		"$notebook"
	echo "$(basename "$notebook"): executed in $(($(date +%s) - start)) s"
done

if $check; then
	changed=$(find "$repo" -path "$repo/.git" -prune -o -type f -newer "$tmp/stamp" -print)
	if [ -n "$changed" ]; then
		echo "notebooks/run.sh: executing the notebooks wrote into the repository:" >&2
		echo "$changed" >&2
		exit 1
	fi
fi
