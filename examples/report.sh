#!/bin/sh
# report.sh NAME TSV SETTINGS EVAL: the Markdown report of a recipe's table, to stdout: the
# table (numbers rounded; the TSV keeps them whole), the plot if there is one, and each
# row's pipeline, pasteable from the repository root with bin/ on PATH.
set -eu
[ $# -eq 4 ] || { echo "usage: report.sh NAME TSV SETTINGS EVAL" >&2; exit 2; }
name=$1 tsv=$2 settings=$3 eval=$4
case $name in
perp) title="Pruning, then retraining (PERP and friends): perplexity" ;;
quant) title="Quantization (RTN, GPTQ, CPTQuant mixed precision): perplexity against bits per weight" ;;
*) title="$name" ;;
esac
version=$(lm-eval --version 2>/dev/null || echo "lm-eval, version unknown")

echo "# $name: $title"
echo
echo "Made by \`make -C examples $name\` on $(date -u '+%Y-%m-%d %H:%M UTC') with $version."
echo "One row per setting; \`$name.tsv\` has the same rows with the numbers unrounded."
[ -z "$eval" ] || echo "Every perplexity is \`$eval\`."
echo "Settings the streams were made with:"
echo
sed 's/^\([^=]*\)=\(.*\)$/- `\1`: `\2`/' "$settings"
echo
awk -F '\t' '
NR == 1 {
	n = NF - 1	# the last column, the command, goes below the table
	line = "| # |"; rule = "|---|"
	for (i = 1; i <= n; i++) { col[i] = $i; line = line " " $i " |"; rule = rule "---|" }
	print line; print rule; next
}
{
	line = "| " NR - 1 " |"
	for (i = 1; i <= n; i++) {
		v = $i
		if (col[i] == "perplexity" && v ~ /^[0-9.eE+-]+$/) v = sprintf("%.4f", v)
		else if (col[i] ~ /bits_per_weight$/ && v ~ /^[0-9.eE+-]+$/) v = sprintf("%.2f", v)
		gsub(/\|/, "\\|", v)
		line = line " " v " |"
	}
	print line
}' "$tsv"
png=${tsv%.tsv}.png
if [ -s "$png" ]; then
	echo
	echo "![$name]($(basename "$png"))"
fi
echo
echo "Pipelines, one per row (from the repository root, with bin/ on PATH; the thread count,"
echo "\`-j\`, does not change the numbers):"
echo
case $name in perp) nlabel=3 ;; *) nlabel=1 ;; esac
awk -F '\t' -v nlabel="$nlabel" 'NR > 1 {
	label = $1; for (i = 2; i <= nlabel; i++) label = label " " $i
	print "    # " NR - 1 ": " label; print "    " $NF
}' "$tsv"
