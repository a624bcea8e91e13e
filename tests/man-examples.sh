#!/bin/sh
# SPDX-License-Identifier: MIT
# Compile and run the EXAMPLES of the io_uring man pages against the
# library just built: man-examples.sh CC SRCDIR LIBDIR PAGE...
# Exit 77 (skip) when io_uring is unavailable here.
set -eu
cc=$1 srcdir=$2 libdir=$3
shift 3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
uring_cflags=$(pkg-config --cflags liburing 2>/dev/null || true)
uring_libs=$(pkg-config --libs liburing 2>/dev/null || echo -luring)
status=0
for page in "$@"; do
	name=$(basename "$page")
	# .EX ... .EE, with roff's escapes undone
	sed -n '/^\.EX$/,/^\.EE$/p' "$page" | sed -e '/^\.E[XE]$/d' \
		-e 's/\\e/\\/g' -e 's/\\-/-/g' -e "s/\\\\(aq/'/g" \
		>"$tmp/$name.c"
	[ -s "$tmp/$name.c" ] || { echo "$name: no example"; status=1; continue; }
	if ! $cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
		-I"$srcdir/include" $uring_cflags "$tmp/$name.c" \
		-o "$tmp/$name" -L"$libdir" -lcancelfd $uring_libs \
		-Wl,-rpath,"$libdir"; then
		echo "$name: example does not compile"
		status=1
		continue
	fi
	if out=$(timeout 20 "$tmp/$name" 2>&1); then
		echo "$name: ok: $(echo "$out" | tr '\n' ' ')"
	else
		rc=$?
		case "$out" in
		*"io_uring"*|"") echo "$name: exit $rc: $out" ;;
		esac
		echo "$name: example failed (exit $rc)"
		status=1
	fi
done
exit $status
