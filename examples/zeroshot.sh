#!/bin/sh
# zeroshot.sh: the zero-shot table of the pruning papers (Wanda, SparseGPT: BoolQ, RTE,
# HellaSwag, WinoGrande, ARC-e, ARC-c, OBQA) from lm-eval --task --json reports; used by
# examples/Makefile's zeroshot recipe, which builds the models and runs the reports:
#
#   zeroshot.sh row JSON METHOD SPARSITY RETRAIN COMMAND > ROW.tsv
#       one table row: the setting, each task's accuracy x100, their mean, the pipeline
#   zeroshot.sh table TSV ROW.tsv...
#       TSV with a header, the markdown table beside it (.md) and a plot (.png, gnuplot)
#
# The accuracy reported per task is acc, or acc_norm for the tasks in ZS_NORM (default
# hellaswag arc_challenge openbookqa, as the papers' tables usually take them).
set -eu
prog=zeroshot
ZS_NORM=${ZS_NORM:-hellaswag arc_challenge openbookqa}
command -v jq >/dev/null 2>&1 || { echo "$prog: jq is not installed (make -C examples deps)" >&2; exit 1; }

case ${1:-} in
row)
	[ $# -eq 6 ] || { echo "usage: zeroshot.sh row JSON METHOD SPARSITY RETRAIN COMMAND" >&2; exit 2; }
	# the header's task names travel in the row's first field, so that the table needs no
	# second look at the reports: "#boolq,rte,..." then the values
	jq -r --arg norm "$ZS_NORM" --arg cmd "$6" '
		($norm | split(" ")) as $n | .results | to_entries as $t |
		[$t[] | (if (.key | IN($n[])) and .value.acc_norm != null then .value.acc_norm else .value.acc end) * 100] as $v |
		["#" + ([$t[].key] | join(",")), $ARGS.positional[], ($v[] | . * 100 | round / 100),
		 (($v | add) / ($v | length) | . * 100 | round / 100), $cmd] | @tsv' --args "$3" "$4" "$5" < "$2"
	;;
table)
	[ $# -ge 3 ] || { echo "usage: zeroshot.sh table TSV ROW..." >&2; exit 2; }
	tsv=$2
	shift 2
	tasks=$(head -n 1 "$1" | cut -f1 | tr -d '#')
	for r in "$@"; do
		[ "$(head -n 1 "$r" | cut -f1 | tr -d '#')" = "$tasks" ] ||
			{ echo "$prog: $r: other tasks than $1's ($tasks)" >&2; exit 1; }
	done
	{
		printf 'method\tsparsity\tretrain\t%s\tmean\tcommand\n' "$(echo "$tasks" | tr ',' '\t')"
		cat "$@" | cut -f2-
	} > "$tsv.tmp"
	mv "$tsv.tmp" "$tsv"
	md=${tsv%.tsv}.md png=${tsv%.tsv}.png
	awk -F '\t' -v norm="$ZS_NORM" '
	NR == 1 {
		printf "# Zero-shot accuracy (%%)\n\nlm-eval --task, prompts and metrics as lm-evaluation-harness; "
		printf "acc_norm for %s, acc for the others.\n\n|", norm
		for (i = 1; i < NF; i++) printf " %s |", $i
		printf "\n|"
		for (i = 1; i < NF; i++) printf "%s|", (i <= 3 ? "---" : "---:")
		print ""
		next
	}
	{
		for (i = 1; i < NF; i++) printf "| %s ", $i
		print "|"
		cmd[NR] = $NF
	}
	END {
		print "\nEach row'\''s pipeline:\n"
		for (r = 2; r <= NR; r++) printf "    %s\n", cmd[r]
	}' "$tsv" > "$md.tmp"
	mv "$md.tmp" "$md"
	rm -f "$png"
	if ! command -v gnuplot >/dev/null 2>&1; then
		echo "examples: gnuplot not found: no $png (make -C examples deps installs gnuplot-nox)" >&2
		exit 0
	fi
	# one cluster per task (and the mean), one bar per model
	dat=$png.dat
	awk -F '\t' '
	NR == 1 { nt = NF - 4; for (i = 4; i < NF; i++) t[i - 3] = $i; next }
	{ m[NR - 1] = $1 ($2 == "-" ? "" : " " $2) ($3 == "none" ? "" : " + " $3); for (i = 4; i < NF; i++) v[NR - 1, i - 3] = $i; nm = NR - 1 }
	END {
		printf "task"; for (r = 1; r <= nm; r++) printf "\t%s", m[r]; print ""
		for (k = 1; k <= nt; k++) { printf "%s", t[k]; for (r = 1; r <= nm; r++) printf "\t%s", v[r, k]; print "" }
	}' "$tsv" > "$dat"
	gnuplot <<EOF
set terminal pngcairo noenhanced size 1250,520 font "sans,11"
set output "$png.tmp"
set datafile separator "\t"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:100]
set ylabel "accuracy (%)"
set title "Zero-shot accuracy: dense, pruned, pruned and retrained"
set key outside right top
set grid ytics
ncol = system("awk -F '\t' 'NR == 1 { print NF; exit }' '$dat'") + 0
plot for [i=2:ncol] "$dat" using i:xtic(1) title columnheader(i)
EOF
	mv "$png.tmp" "$png"
	rm -f "$dat"
	;;
*)
	echo "usage: zeroshot.sh row JSON METHOD SPARSITY RETRAIN COMMAND | table TSV ROW..." >&2
	exit 2
	;;
esac
