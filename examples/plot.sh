#!/bin/sh
# plot.sh NAME TSV PNG: the plot of a recipe's table with gnuplot; without gnuplot, one line
# on stderr and no plot (`make -C examples deps` installs it).
set -eu
[ $# -eq 3 ] || { echo "usage: plot.sh NAME TSV PNG" >&2; exit 2; }
name=$1 tsv=$2 png=$3
here=$(dirname "$0")
rm -f "$png"	# never a plot of an earlier table
if ! command -v gnuplot >/dev/null 2>&1; then
	echo "examples: gnuplot not found: no $png (make -C examples deps installs gnuplot-nox)" >&2
	exit 0
fi
case $name in
perp)
	# one cluster of bars per pruning, one bar per retraining (columns in grid order)
	dat=$png.dat
	awk -F "\t" -v densefile="$dat.dense" '
	NR > 1 && $1 != "dense" {
		p = $1 ($2 == "-" ? "" : " " $2)
		if (!(p in pi)) { pi[p] = ++np; pn[np] = p }
		if (!($3 in ri)) { ri[$3] = ++nr; rn[nr] = $3 }
		v[pi[p], ri[$3]] = $4
	}
	NR > 1 && $1 == "dense" && $3 == "none" { dense = $4 }
	END {
		printf "%s", "pruning"; for (r = 1; r <= nr; r++) printf "\t%s", rn[r]; print ""
		for (p = 1; p <= np; p++) {
			printf "\"%s\"", pn[p]
			for (r = 1; r <= nr; r++) printf "\t%s", ((p, r) in v) ? v[p, r] : "-"
			print ""
		}
		if (dense != "") print dense > densefile
	}' "$tsv" > "$dat"
	if [ "$(wc -l < "$dat")" -gt 1 ]; then
		gnuplot -c "$here/perp.gp" "$dat" "$png.tmp" "$(cat "$dat.dense" 2>/dev/null)"
		mv "$png.tmp" "$png"
	else
		echo "examples: no pruned model in $tsv: no $png" >&2
	fi
	rm -f "$dat" "$dat.dense"
	;;
quant)
	gnuplot -c "$here/quant.gp" "$tsv" "$png.tmp"
	mv "$png.tmp" "$png"
	;;
*)
	exit 0
	;;
esac
