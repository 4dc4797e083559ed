#!/bin/sh
# bench/quant_plot.sh: perplexity against stored bits per weight on the bundled opt-micro, for
# RTN and GPTQ (2, 3, 4, 8 bits) and the three CPTQuant allocations PMPQ, CMPQ and TDMPQ
# (levels 8,4,2 with --target-bits 3 ... 7), all with groups of 128; writes
# bench/quant-ppl-vs-bits.tsv (one row per point, with its command) and
# bench/quant-ppl-vs-bits.png (gnuplot). Progress on stderr; runs alone:
#
#   sh bench/quant_plot.sh
#
#   QPLOT_OUT=PATH       output name without .tsv/.png (default bench/quant-ppl-vs-bits)
#   QPLOT_WINDOWS=K      evaluation windows of 512 tokens of novels-test.txt (default all 138,
#                        the protocol of models/opt-micro/reference.json)
#   QPLOT_TARGETS=LIST   --target-bits of the mixed runs (default "3 4 5 6 7")
#   QPLOT_NSAMPLES=N     calibration windows (default 32)
#   QPLOT_THREADS=N      threads (default: all cores)
#
# Needs gnuplot (Debian: apt-get install -y gnuplot-nox). Calibration: the first 32 windows of
# 512 tokens of novels-calib.txt, as reference.json. About 15 minutes on 2 idle cores.
set -eu
cd "$(dirname "$0")/.."

OUT=${QPLOT_OUT:-bench/quant-ppl-vs-bits}
WIN=${QPLOT_WINDOWS:-138}
TARGETS=${QPLOT_TARGETS:-3 4 5 6 7}
J=${QPLOT_THREADS:-0}
PY=/usr/bin/python3
CAL="-c data/novels-eval/novels-calib.txt --nsamples ${QPLOT_NSAMPLES:-32} --seqlen 512"

say() { printf 'quant_plot: %s\n' "$*" >&2; }
fail() { printf 'quant_plot: %s\n' "$*" >&2; exit 1; }

[ -x bin/lm-quant ] || fail "bin/lm-quant missing: run 'make' first"
command -v gnuplot > /dev/null || fail "gnuplot missing: apt-get install -y gnuplot-nox"
T=$(mktemp -d "${TMPDIR:-/tmp}/lmpipe-qplot.XXXXXX")
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM

bin/lm-import models/opt-micro > "$T/dense.lms"
printf 'method\tconfig\tbits_per_weight\tperplexity\tcommand\n' > "$T/out.tsv"

# point METHOD CONFIG LM-QUANT-FLAGS...: quantize (none for "dense"), then the stored bits per
# weight of the six linear matrices of every layer (lm-info: codes plus each group's scale and
# zero point) and the perplexity on novels-test.txt
point() {
	method=$1 config=$2
	shift 2
	s="$T/dense.lms"
	cmd="lm-import models/opt-micro"
	if [ "$method" != dense ]; then
		s="$T/q.lms"
		bin/lm-quant -q -j "$J" "$@" -o "$s" "$T/dense.lms"
		cmd="$cmd | lm-quant $*"
	fi
	bpw=$(bin/lm-info --json "$s" | $PY -c '
import json, re, sys
t = [x for x in json.load(sys.stdin)["tensors"]
     if re.search(r"layers\.\d+\..*(q_proj|k_proj|v_proj|out_proj|fc1|fc2)\.weight$", x["name"])]
print("%.4f" % (8 * sum(x["bytes"] for x in t) / sum(x["params"] for x in t)))')
	ppl=$(bin/lm-eval -q -j "$J" --ppl data/novels-eval/novels-test.txt --seqlen 512 --windows "$WIN" \
		--json "$s" | $PY -c 'import json, sys; print("%.4f" % json.load(sys.stdin)["perplexity"])')
	cmd="$cmd | lm-eval --ppl data/novels-eval/novels-test.txt --seqlen 512 --windows $WIN"
	printf '%s\t%s\t%s\t%s\t%s\n' "$method" "$config" "$bpw" "$ppl" "$cmd" >> "$T/out.tsv"
	say "$method $config: $bpw bits per weight, perplexity $ppl"
}

point dense f16
for b in 2 3 4 8; do
	point rtn "$b-bit" -b "$b" -g 128
done
for b in 2 3 4 8; do
	point gptq "$b-bit" -b "$b" -g 128 -m gptq $CAL
done
for mx in pmpq cmpq tdmpq; do
	for t in $TARGETS; do
		point "$mx" "8,4,2 target $t" --mixed "$mx" --bits 8,4,2 --target-bits "$t" -g 128 $CAL
	done
done
mv "$T/out.tsv" "$OUT.tsv"

# one series per method (each method's rows are consecutive in the file); markers of
# different sizes, since two allocations that pick the same bits give the same point; dense as
# a horizontal line
gnuplot <<EOF
set terminal pngcairo size 960,640 font "sans,11"
set output "$OUT.png"
set datafile separator "\t"
set title "opt-micro: perplexity of novels-test.txt ($WIN windows of 512) against stored bits per weight"
set xlabel "stored bits per weight of the quantized matrices (codes + f16 scale and zero point per group of 128)"
set ylabel "perplexity (log scale)"
set logscale y
set autoscale yfix
set offsets 0, 0, graph 0.05, graph 0.05
set grid
set key top right box opaque
set xrange [2:9]
set ytics (50, 60, 70, 80, 90, 100, 120, 150, 200, 300, 500, 700, 1000, 2000, 5000)
dense = real(system("awk -F'\t' '\$1 == \"dense\" { print \$4 }' $OUT.tsv"))
set label 1 sprintf("f16 (dense): %.2f", dense) at graph 0.5, first dense*0.97 center
sel(m) = strcol(1) eq m ? \$3 : 1/0
plot "$OUT.tsv" using (sel("rtn")):4 with linespoints pt 1 ps 1.5 lw 2 lc rgb "#7b2cbf" title "RTN", \
     "$OUT.tsv" using (sel("gptq")):4 with linespoints pt 2 ps 1.5 lw 2 lc rgb "#009e73" title "GPTQ", \
     "$OUT.tsv" using (sel("pmpq")):4 with linespoints pt 6 ps 2.6 lc rgb "#0072b2" title "PMPQ (RTN, levels 8,4,2)", \
     "$OUT.tsv" using (sel("cmpq")):4 with linespoints pt 4 ps 1.9 lc rgb "#e69f00" title "CMPQ (RTN, levels 8,4,2)", \
     "$OUT.tsv" using (sel("tdmpq")):4 with linespoints pt 7 ps 1.0 lc rgb "#d55e00" title "TDMPQ (RTN, levels 8,4,2)", \
     dense with lines dashtype 2 lc rgb "gray40" notitle
EOF
say "wrote $OUT.tsv and $OUT.png"
