#!/bin/sh
# Render an HTML report headless with Chromium to a PNG screenshot.
#
#   scripts/render-report.sh REPORT.html OUT.png [WIDTH,HEIGHT]
#
# WIDTH,HEIGHT is the window size in pixels (default 1280,2000). The
# browser runs with a throwaway profile and with networking features off;
# the page itself must load nothing from outside (see reports.WriteHTML).
# CHROMIUM overrides the browser binary (default /usr/bin/chromium).
set -eu

if [ $# -lt 2 ]; then
	echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]" >&2
	exit 2
fi
html=$1
out=$2
size=${3:-1280,2000}
browser=${CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$browser" ]; then
	echo "$0: $browser not found; install Debian's chromium package" >&2
	exit 3
fi
case $html in
/*) ;;
*) html=$(pwd)/$html ;;
esac
case $out in
/*) ;;
*) out=$(pwd)/$out ;;
esac

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
rm -f "$out"
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
	--disable-component-update --no-first-run --disable-sync \
	--user-data-dir="$profile" --hide-scrollbars \
	--screenshot="$out" --window-size="$size" "file://$html" >/dev/null 2>"$profile/stderr" || {
	cat "$profile/stderr" >&2
	exit 1
}
if [ ! -s "$out" ]; then
	cat "$profile/stderr" >&2
	echo "$0: chromium wrote no screenshot" >&2
	exit 1
fi
