#!/usr/bin/env bash
# Description: after `meson install`, programs outside the tree build with
# pkg-config and run: `cc app.c $(pkg-config --cflags --libs cancelfd)`,
# which links no liburing, and with cancelfd-uring when it is built.  Each
# shared library exports exactly the symbols of its version script, and
# libcancelfd needs nothing but the C library.
set -euo pipefail
build=$1 src=$2 meson=$3 sanitize=${4:-none} uring=${5:-uring}
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT

fail() {
	echo "FAIL: $*"
	exit 1
}

"$meson" install -C "$build" --destdir "$dest" --no-rebuild --quiet >/dev/null
pc=$(find "$dest" -name cancelfd.pc | head -n 1)
[ -n "$pc" ] || fail "cancelfd.pc not installed"
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$dest
find "$dest" -name cancelfd.h | grep -q . || fail "cancelfd.h not installed"
pkg-config --print-requires cancelfd | grep -q . &&
	fail "cancelfd.pc requires something: $(pkg-config --print-requires cancelfd)"

cat >"$dest/app.c" <<'APP'
#include <cancelfd.h>
#include <poll.h>
#include <stdio.h>
int main(void)
{
	struct cfd_token *root, *child;
	struct pollfd p;

	if (cfd_version() < CFD_VERSION_NUMBER)
		return 1;
	if (cfd_token_new(&root, "root") < 0 ||
	    cfd_token_child(&child, root, "child") < 0)
		return 1;
	p.fd = cfd_token_fd(child);
	p.events = POLLIN;
	cfd_token_trigger(root);
	if (poll(&p, 1, 0) != 1 || cfd_token_reason(child) != CFD_REASON_PARENT)
		return 1;
	printf("consumer ok (cancelfd %s): %s triggered by %s\n",
	       cfd_version_string(), cfd_token_name(child),
	       cfd_token_name(cfd_token_origin(child)));
	cfd_token_unref(child);
	cfd_token_unref(root);
	return 0;
}
APP
cc=${CC:-cc}
# A library built with a sanitizer needs its runtime first in the program.
[ "$sanitize" = none ] || cc="$cc -fsanitize=$sanitize"
# cancelfd.h needs nothing beyond strict C11.
# shellcheck disable=SC2046
$cc -std=c11 -Wall -Wextra -Werror "$dest/app.c" -o "$dest/app" \
	$(pkg-config --cflags --libs cancelfd)
libdir=$(dirname "$(find "$dest" -name 'libcancelfd.so.1' | head -n 1)")
LD_LIBRARY_PATH=$libdir "$dest/app"
readelf -d "$dest/app" | grep -q 'NEEDED.*liburing' &&
	fail "a program of <cancelfd.h> alone links liburing"

# Each library: its SONAME, what it needs, and exactly its version
# script's symbols.
check_lib() {
	local so=$1 map=$2
	readelf -d "$libdir/$so" | grep -q "SONAME.*$so" || fail "SONAME of $so"
	exported=$(nm -D --defined-only "$libdir/$so" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | sed 's/@.*//' | sort -u)
	listed=$(sed -n '/global:/,/local:/p' "$src/lib/$map" | grep -o 'cfd_[a-z0-9_]*' | sort -u)
	if [ "$exported" != "$listed" ]; then
		echo "FAIL: symbols of $so differ from lib/$map:"
		diff <(echo "$listed") <(echo "$exported") || true
		exit 1
	fi
	echo "$so: $(echo "$exported" | wc -l) cfd_* symbols, all listed"
}
check_lib libcancelfd.so.1 libcancelfd.map
needed=$(readelf -d "$libdir/libcancelfd.so.1" | awk '/NEEDED/ {print $NF}' | tr -d '[]' | tr '\n' ' ')
echo "libcancelfd.so.1 needs: $needed"
case $needed in
*uring*) fail "libcancelfd needs liburing" ;;
esac

if [ "$uring" = uring ]; then
	pkg-config --exists cancelfd-uring || fail "cancelfd-uring.pc not installed"
	find "$dest" -name cancelfd-uring.h | grep -q . ||
		fail "cancelfd-uring.h not installed"
	# <cancelfd-uring.h> includes <liburing.h>, which needs _GNU_SOURCE.
	cat >"$dest/app-uring.c" <<'APP'
#define _GNU_SOURCE
#include <cancelfd-uring.h>
int main(void)
{
	struct io_uring ring;
	struct cfd_uring *cu;

	if (io_uring_queue_init(4, &ring, 0) < 0)
		return 0; /* io_uring refused here: nothing to run */
	if (cfd_uring_new(&cu, &ring) < 0)
		return 1;
	cfd_uring_unref(cu);
	io_uring_queue_exit(&ring);
	return 0;
}
APP
	# shellcheck disable=SC2046
	$cc -std=c11 -Wall -Wextra -Werror "$dest/app-uring.c" \
		-o "$dest/app-uring" $(pkg-config --cflags --libs cancelfd-uring)
	LD_LIBRARY_PATH=$libdir "$dest/app-uring"
	check_lib libcancelfd-uring.so.1 libcancelfd-uring.map
else
	find "$dest" -name cancelfd-uring.h | grep -q . &&
		fail "cancelfd-uring.h installed without the library"
fi

# The Python package, when it was built: installed with its extension in
# the interpreter's site directory, and importable from there.
pyinit=$(find "$dest" -path '*/cancelfd/__init__.py' | head -n 1)
if [ -n "$pyinit" ] && [ "$sanitize" = none ]; then
	site=$(dirname "$(dirname "$pyinit")")
	ls "$site"/cancelfd/_cancelfd.*.so >/dev/null ||
		fail "the Python extension is not installed"
	(cd "$dest" && LD_LIBRARY_PATH=$libdir PYTHONPATH=$site \
		"${PYTHON:-python3}" -c '
import cancelfd, sys
assert cancelfd.__file__.startswith(sys.argv[1]), cancelfd.__file__
t = cancelfd.CancelToken("installed")
t.child("c").trigger()
print("python package ok:", cancelfd.__file__)' "$site") ||
		fail "the installed Python package does not import"
fi
echo "install test passed"
