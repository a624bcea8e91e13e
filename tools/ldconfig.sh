#!/bin/sh
# Run by `meson install` (meson.add_install_script): refresh the dynamic
# linker's cache, so that a program linked with `pkg-config --libs
# cancelfd` finds libcancelfd.so.1 in the libdir at once.  Only for a real
# install into the system: not under DESTDIR (packaging, the install test),
# and only as root, where ldconfig can write its cache.
[ -z "${DESTDIR:-}" ] || exit 0
[ "$(id -u)" = 0 ] || exit 0
command -v ldconfig >/dev/null 2>&1 || exit 0
exec ldconfig
