#!/bin/sh
# docs/modules.sh [--write]: the module map of docs/design.md, one row per module of common/,
# taken from the comment that opens its .c file (its .h when it has no .c):
#   /* NAME.c: what this file is for … */
# Prints the table; --write puts it between the "modules" markers of docs/design.md.
cd "$(dirname "$0")/.." || exit 1
# the first sentence of the comment that opens file $1, without the "NAME.c: " in front
opening() {
	awk 'NR == 1 && !/^\/\*/ { exit }
		{ sub(/^\/\* */, ""); sub(/^ \* ?/, ""); done = sub(/ *\*\/.*$/, "")
		  if ($0 == "") exit; printf "%s%s", (NR > 1 ? " " : ""), $0; if (done) exit }' "$1" |
		sed 's/^[A-Za-z0-9_.]*\.[ch]: *//; s/\([.;]\) .*/\1/; s/ *(see [^)]*)//; s/ *(see [^)]*$//; s/[.;]$//'
}
table() {
	printf '| module | folder | what it is for |\n|---|---|---|\n'
	for h in common/*.[ch] common/*/*.[ch]; do
		[ -f "$h" ] || continue
		n=${h##*/}
		n=${n%.?}
		c=${h%.?}.c
		# one row per module: from its .c if there is one, else from its .h
		case $h in *.h) [ -f "$c" ] && continue ;; esac
		d=$(dirname "$h")
		d=${d#common}
		d=${d#/}
		# the opening comment's first sentence, up to the end of the comment or a blank line
		line=$(opening "$h")
		# a .c that only points at its header: the header says it
		case $line in see\ *|"") [ -f "${h%.?}.h" ] && line=$(opening "${h%.?}.h") ;; esac
		line=$(printf '%s' "$line" | sed 's/|/\\|/g')
		printf '| `%s` | %s | %s |\n' "$n" "${d:-(top)}" "$line"
	done
}
if [ "${1:-}" = --write ]; then
	t=$(mktemp)
	table > "$t"
	awk -v t="$t" '/<!-- modules: begin -->/ { print; while ((getline l < t) > 0) print l; skip = 1; next }
		/<!-- modules: end -->/ { skip = 0 } !skip' docs/design.md > docs/design.md.new &&
		mv docs/design.md.new docs/design.md
	rm -f "$t"
else
	table
fi
