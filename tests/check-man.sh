#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Description: keep the man pages honest.
#
#   check-man.sh MANDIR INCLUDEDIR LIBS SANITIZE ENTRY...
#
# LIBS is the shared libraries, separated by colons: libcancelfd.so, and
# libcancelfd-uring.so when it is built.
#
# ENTRY is "page.N" for a page and "alias.N=page.N" for a link, as
# man/meson.build installs them.  CC names the compiler (default cc).
#
# Fails when
#   - a symbol exported by a library has no page or alias, or a man3 name
#     is not an exported symbol (a page for a function that does not exist);
#   - the table in man/meson.build, the files in man/ and the NAME sections
#     disagree (a page not installed, an alias its page does not name);
#   - a page draws any warning from mandoc -Tlint -Wwarning (or, when groff
#     is installed, from groff -man -ww -z);
#   - a SYNOPSIS prototype disagrees with <cancelfd.h> (the prototypes are
#     compiled after the header: a conflicting declaration is an error), or
#     does not declare a name the page's NAME section lists;
#   - a page has no EXAMPLES section, or an example in it (each .EX/.EE
#     block there is a complete program) does not compile with
#     -std=c11 -Wall -Wextra -Werror against the built library, or does not
#     run to exit status 0.
# Exits 77 (skip) when mandoc or nm is missing.

set -u

if [ $# -lt 4 ]; then
	echo "usage: $0 MANDIR INCLUDEDIR LIBS SANITIZE ENTRY..." >&2
	exit 2
fi
mandir=$1 incdir=$2 sanitize=$4
IFS=: read -r -a libs <<<"$3"
shift 4

for tool in mandoc nm; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: $tool is not installed"
		exit 77
	fi
done
read -r -a cc <<<"${CC:-cc}"

failed=0
fail() {
	echo "FAIL: $*"
	failed=1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/check-man.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

# ---- the table of pages and aliases ----

declare -A page_of=() # name.N -> page.N for every page and alias
pages=()
for e in "$@"; do
	case $e in
	*=*)
		page_of[${e%%=*}]=${e#*=}
		;;
	*)
		page_of[$e]=$e
		pages+=("$e")
		;;
	esac
done
if [ ${#pages[@]} -eq 0 ]; then
	echo "no pages given" >&2
	exit 2
fi

for p in "${pages[@]}"; do
	[ -f "$mandir/$p" ] || fail "$p is listed in man/meson.build but missing"
done
for name in "${!page_of[@]}"; do
	target=${page_of[$name]}
	[ -n "${page_of[$target]+x}" ] && [ "${page_of[$target]}" = "$target" ] ||
		fail "alias $name points to $target, which is not a page"
done
for f in "$mandir"/*.[1-8]; do
	[ -e "$f" ] || continue
	b=${f##*/}
	[ "${page_of[$b]:-}" = "$b" ] ||
		fail "$b is in man/ but not installed by man/meson.build"
done

# The names a page's NAME section lists: "a, b, c \- what they do".
name_section() {
	awk '/^\.SH / { in_name = ($0 ~ /^\.SH "?NAME"?$/); next }
	     in_name { printf "%s ", $0 }' "$1" |
		sed -e 's/ *\\-.*//' -e 's/,/ /g' | tr -s ' ' '\n' | sed '/^$/d'
}

for p in "${pages[@]}"; do
	[ -f "$mandir/$p" ] || continue
	sec=${p##*.}
	names=$(name_section "$mandir/$p")
	if [ -z "$names" ]; then
		fail "$p: no NAME section"
		continue
	fi
	grep -qx "${p%.*}" <<<"$names" ||
		fail "$p: its NAME section does not list ${p%.*}"
	for n in $names; do
		[ "${page_of[$n.$sec]:-}" = "$p" ] ||
			fail "$p: NAME lists $n, but $n.$sec is not installed as a link to $p"
	done
	for a in "${!page_of[@]}"; do
		[ "${page_of[$a]}" = "$p" ] && [ "$a" != "$p" ] || continue
		grep -qx "${a%.*}" <<<"$names" ||
			fail "$p: alias $a is not listed in its NAME section"
	done
done

# ---- (a) every exported symbol has a page, every man3 name a symbol ----

symbols=
for lib in "${libs[@]}"; do
	if [ ! -f "$lib" ]; then
		fail "no library at $lib"
		continue
	fi
	exported=$(nm -D --defined-only "$lib" |
		awk '$2 ~ /^[TtDdBbRrWwVvi]$/ { sub(/@.*/, "", $3); print $3 }')
	[ -n "$exported" ] || fail "$lib exports no symbols"
	symbols+="$exported"$'\n'
done
symbols=$(sort -u <<<"$symbols" | sed '/^$/d')
for s in $symbols; do
	[ -n "${page_of[$s.3]+x}" ] ||
		fail "exported symbol $s has no man page (add $s.3 or an alias in man/meson.build)"
done
for name in "${!page_of[@]}"; do
	case $name in
	*.3) ;;
	*) continue ;;
	esac
	grep -qx "${name%.3}" <<<"$symbols" ||
		fail "man page name ${name%.3} is not a symbol the libraries export"
done

# ---- (b) lint ----

have_groff=0
command -v groff >/dev/null 2>&1 && have_groff=1
for p in "${pages[@]}"; do
	[ -f "$mandir/$p" ] || continue
	out=$(mandoc -Tlint -Wwarning "$mandir/$p" 2>&1)
	[ -z "$out" ] || fail "mandoc -Tlint -Wwarning $p:"$'\n'"$out"
	if [ $have_groff = 1 ]; then
		out=$(groff -man -ww -z "$mandir/$p" 2>&1)
		[ -z "$out" ] || fail "groff -man -ww -z $p:"$'\n'"$out"
	fi
done

# ---- (c) SYNOPSIS against the header, and the examples ----

# roff escapes used in code: \e \- \& \(aq \(dq \\
unescape() {
	sed -e 's/\\e/\x01/g' -e 's/\\\\/\x01/g' -e 's/\\-/-/g' -e 's/\\&//g' \
		-e "s/\\\\(aq/'/g" -e 's/\\(dq/"/g' -e 's/\x01/\\/g'
}

# The declarations of a SYNOPSIS: the .B/.BI/.BR lines of its .nf/.fi
# block without the macro and the quotes (the spaces left over are harmless
# in C).  #include lines are dropped, and so are function-like macros,
# which a SYNOPSIS shows by their use, not their definition; an object-like
# macro must match the header's definition exactly.
synopsis_decls() {
	awk '/^\.SH / { in_syn = ($0 ~ /^\.SH "?SYNOPSIS"?$/); nf = 0; next }
	     in_syn && /^\.nf/ { nf = 1; next }
	     in_syn && /^\.fi/ { nf = 0; next }
	     in_syn && nf && /^\.(B|BI|BR|I|IR|RB|RI) / { sub(/^\.[A-Z]+ /, ""); print }' "$1" |
		sed -e 's/"//g' | unescape |
		grep -v -e '^#include' -e '^#define [A-Za-z0-9_]*(' |
		# A struct layout shown in a SYNOPSIS cannot be declared again
		# after the header (C11): its fields are checked by the
		# examples that use them.
		awk '/^ *struct [a-z_0-9]+ *\{ *$/ { skip = 1 } !skip { print } skip && /^ *\}; *$/ { skip = 0 }'
}

ccflags=(-std=c11 -Wall -Wextra -Werror -pthread -I"$incdir")
ldflags=()
for lib in "${libs[@]}"; do
	ldflags+=("$lib" -Wl,-rpath,"$(cd "$(dirname "$lib")" && pwd)")
	case $lib in
	*uring*) ldflags+=(-luring) ;;
	esac
done
if [ -n "$sanitize" ] && [ "$sanitize" != none ]; then
	ccflags+=(-fsanitize="$sanitize")
fi

nexamples=0
for p in "${pages[@]}"; do
	[ -f "$mandir/$p" ] || continue
	base=${p//./_}

	if [ "${p##*.}" = 3 ]; then
		decls=$(synopsis_decls "$mandir/$p")
		src=$work/$base-synopsis.c
		{
			# Against the header the page names.
			if grep -q 'cancelfd-uring\.h' "$mandir/$p"; then
				echo '#include <cancelfd-uring.h>'
			else
				echo '#include <cancelfd.h>'
			fi
			echo "$decls"
		} >"$src"
		if ! out=$("${cc[@]}" "${ccflags[@]}" -c -o /dev/null "$src" 2>&1); then
			fail "$p: SYNOPSIS does not match its header:"$'\n'"$out"
		fi
		for n in $(name_section "$mandir/$p"); do
			grep -qE "(^|[^A-Za-z0-9_])$n *\(" <<<"$decls" ||
				fail "$p: SYNOPSIS does not declare $n()"
		done
	fi

	# Each .EX/.EE block of the EXAMPLES section into its own file.
	rm -f "$work/$base"-ex*.c
	awk -v out="$work/$base-ex" '
		/^\.SH / { in_ex = ($0 ~ /^\.SH "?EXAMPLES?"?$/); next }
		in_ex && /^\.EX/ { n++; f = out n ".c"; printf "" > f; inblk = 1; next }
		in_ex && /^\.EE/ { inblk = 0; close(f); next }
		inblk { print > f }' "$mandir/$p"
	shopt -s nullglob
	examples=("$work/$base"-ex*.c)
	shopt -u nullglob
	if [ ${#examples[@]} -eq 0 ]; then
		fail "$p: no example (an EXAMPLES section with a .EX/.EE block)"
		continue
	fi
	for ex in "${examples[@]}"; do
		unescape <"$ex" >"$ex.tmp" && mv "$ex.tmp" "$ex"
		bin=${ex%.c}
		if ! out=$("${cc[@]}" "${ccflags[@]}" -o "$bin" "$ex" "${ldflags[@]}" 2>&1); then
			fail "$p: example ${ex##*-} does not compile:"$'\n'"$out"$'\n'"--- the code:"$'\n'"$(cat -n "$ex")"
			continue
		fi
		out=$(timeout 60 "$bin" </dev/null 2>&1)
		rc=$?
		if [ $rc -ne 0 ]; then
			fail "$p: example ${ex##*-} exited with status $rc:"$'\n'"$out"
			continue
		fi
		nexamples=$((nexamples + 1))
		echo "ok: $p example ${ex##*-}"
		[ -z "$out" ] || sed 's/^/    | /' <<<"$out"
	done
done

if [ $failed -ne 0 ]; then
	exit 1
fi
echo "${#pages[@]} pages, ${#page_of[@]} names, $nexamples examples: all good"
