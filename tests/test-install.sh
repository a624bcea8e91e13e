#!/usr/bin/env bash
# Description: after `meson install`, a program outside the tree builds with
# `cc app.c $(pkg-config --cflags --libs cancelfd)` and runs; the shared
# library exports exactly the symbols of the version script, no more.
set -euo pipefail
build=$1 src=$2 meson=$3 sanitize=${4:-none}
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT

"$meson" install -C "$build" --destdir "$dest" --no-rebuild --quiet >/dev/null
pc=$(find "$dest" -name cancelfd.pc | head -n 1)
[ -n "$pc" ] || { echo "FAIL: cancelfd.pc not installed"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$dest
for h in cancelfd.h cancelfd-uring.h; do
	find "$dest" -name "$h" | grep -q . || { echo "FAIL: $h not installed"; exit 1; }
done

cat >"$dest/app.c" <<'APP'
#include <cancelfd.h>
#include <poll.h>
#include <stdio.h>
int main(void)
{
	struct cfd_token *root, *child;
	struct pollfd p;

	if (cfd_token_new(&root, "root") < 0 ||
	    cfd_token_child(&child, root, "child") < 0)
		return 1;
	p.fd = cfd_token_fd(child);
	p.events = POLLIN;
	cfd_token_trigger(root);
	if (poll(&p, 1, 0) != 1 || cfd_token_reason(child) != CFD_REASON_PARENT)
		return 1;
	printf("consumer ok: %s triggered by %s\n", cfd_token_name(child),
	       cfd_token_name(cfd_token_origin(child)));
	cfd_token_unref(child);
	cfd_token_unref(root);
	return 0;
}
APP
cc=${CC:-cc}
# A library built with a sanitizer needs its runtime first in the program.
[ "$sanitize" = none ] || cc="$cc -fsanitize=$sanitize"
# shellcheck disable=SC2046
# cancelfd.h needs nothing beyond strict C11.
$cc -std=c11 -Wall -Wextra -Werror "$dest/app.c" -o "$dest/app" \
	$(pkg-config --cflags --libs cancelfd)
# cancelfd-uring.h includes liburing.h, which needs _GNU_SOURCE.
printf '#define _GNU_SOURCE\n#include <cancelfd-uring.h>\nint main(void) { return 0; }\n' >"$dest/app-uring.c"
$cc -std=c11 -Wall -Wextra -Werror "$dest/app-uring.c" -o "$dest/app-uring" \
	$(pkg-config --cflags --libs cancelfd)
libdir=$(dirname "$(find "$dest" -name 'libcancelfd.so.0' | head -n 1)")
LD_LIBRARY_PATH=$libdir "$dest/app"
readelf -d "$libdir/libcancelfd.so.0" | grep -q 'SONAME.*libcancelfd.so.0' ||
	{ echo "FAIL: SONAME"; exit 1; }

# Exported symbols == the version script's list.
exported=$(nm -D --defined-only "$libdir/libcancelfd.so.0" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | sed 's/@.*//' | sort -u)
listed=$(sed -n '/global:/,/local:/p' "$src/lib/libcancelfd.map" | grep -o 'cfd_[a-z0-9_]*' | sort -u)
if [ "$exported" != "$listed" ]; then
	echo "FAIL: exported symbols differ from lib/libcancelfd.map:"
	diff <(echo "$listed") <(echo "$exported") || true
	exit 1
fi
echo "exports: $(echo "$exported" | wc -l) cfd_* symbols, all listed"

# The Python package, when it was built: installed with its extension in
# the interpreter's site directory, and importable from there.
pyinit=$(find "$dest" -path '*/cancelfd/__init__.py' | head -n 1)
if [ -n "$pyinit" ] && [ "$sanitize" = none ]; then
	site=$(dirname "$(dirname "$pyinit")")
	ls "$site"/cancelfd/_cancelfd.*.so >/dev/null ||
		{ echo "FAIL: the Python extension is not installed"; exit 1; }
	(cd "$dest" && LD_LIBRARY_PATH=$libdir PYTHONPATH=$site \
		"${PYTHON:-python3}" -c '
import cancelfd, sys
assert cancelfd.__file__.startswith(sys.argv[1]), cancelfd.__file__
t = cancelfd.CancelToken("installed")
t.child("c").trigger()
print("python package ok:", cancelfd.__file__)' "$site") ||
		{ echo "FAIL: the installed Python package does not import"; exit 1; }
fi
echo "install test passed"
