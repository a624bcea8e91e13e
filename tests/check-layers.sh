#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Description: the library's files call one way.  From the bottom:
#   core     token.o graph.o callback.o cause.o version.o
#   engine   watcher*.o                      (the watcher: epoll, timers, ...)
#   sources  source*.o                       (source.c and one file per kind)
#   processes export.o import.o wire.o       (an import is a kind of source)
#   uring    the objects of libcancelfd-uring: only the public API of
#            libcancelfd (cfd_* symbols it exports) and liburing.
# A file may use the symbols of its own layer and of the layers below it,
# never above: the engine knows the sources only through an entry's ops
# table, the core nothing of the watcher.  Fails naming each symbol that
# goes the wrong way.
#
#   check-layers.sh LIBCANCELFD.a LIBCANCELFD-URING.a|-
set -u
core_a=$1 uring_a=${2:--}
command -v nm >/dev/null 2>&1 || { echo "SKIP: no nm"; exit 77; }

layer_of() {
	case $1 in
	token.c.o | graph.c.o | callback.c.o | cause.c.o | version.c.o) echo 0 ;;
	watcher*.o) echo 1 ;;
	source*.o) echo 2 ;;
	export.c.o | import.c.o | wire.c.o) echo 3 ;;
	*) echo "?" ;;
	esac
}

# member:symbol lines of what each object defines and needs.
nm -A --defined-only "$core_a" 2>/dev/null |
	awk '$(NF-1) ~ /^[TDBR]$/ { split($1, a, ":"); print a[2] ":" $NF }' >"${TMPDIR:-/tmp}/layers.def.$$"
trap 'rm -f "${TMPDIR:-/tmp}"/layers.*.$$' EXIT
declare -A defined_in=()
while IFS=: read -r obj sym; do
	defined_in[$sym]=$obj
done <"${TMPDIR:-/tmp}/layers.def.$$"

failed=0
while read -r obj sym; do
	def=${defined_in[$sym]:-}
	[ -n "$def" ] || continue
	lo=$(layer_of "$obj") ld=$(layer_of "$def")
	if [ "$lo" = "?" ] || [ "$ld" = "?" ]; then
		echo "FAIL: $obj or $def has no layer in tests/check-layers.sh"
		failed=1
	elif [ "$ld" -gt "$lo" ]; then
		echo "FAIL: $obj (layer $lo) uses $sym of $def (layer $ld)"
		failed=1
	fi
done < <(nm -A --undefined-only "$core_a" |
	awk '{ n = split($1, a, ":"); print a[n - 1], $NF }')

if [ "$uring_a" != - ]; then
	public=$(nm -D --defined-only "$(dirname "$core_a")/libcancelfd.so" |
		awk '{ sub(/@.*/, "", $NF); print $NF }' | sort -u)
	while read -r obj sym; do
		[ -n "${defined_in[$sym]:-}" ] || continue
		grep -qx "$sym" <<<"$public" && continue
		echo "FAIL: $obj of libcancelfd-uring uses $sym, internal to libcancelfd"
		failed=1
	done < <(nm -A --undefined-only "$uring_a" |
		awk '{ n = split($1, a, ":"); print a[n - 1], $NF }')
fi

[ $failed = 0 ] && echo "layers: every call goes down, and libcancelfd-uring uses the public API only"
exit $failed
