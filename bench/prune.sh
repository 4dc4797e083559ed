#!/bin/sh
# bench/prune.sh: the pruning section of bench/RESULTS.md (issue #4): time and peak RSS of
# `lm-prune -m magnitude|wanda|sparsegpt` against bench/torch_prune.py (PyTorch following the
# reference code) on an OPT-125m-shaped model, same calibration ids, windows and threads, and
# the peak RSS of lm-prune's SparseGPT on an OPT-2.7b-wide f16 model with 16 windows of 2048.
# Prints a Markdown section on stdout, progress on stderr; runs alone:
#
#   sh bench/prune.sh > bench/prune.md
#
#   BENCH_REPS=N            repetitions of each OPT-125m run, interleaved (default 5)
#   BENCH_PRUNE_THREADS=L   thread counts of the OPT-125m runs (default "2")
#   BENCH_PRUNE_NSAMPLES=N  OPT-125m calibration windows of 512 tokens (default 16)
#   BENCH_PRUNE_METHODS=L   OPT-125m methods (default "magnitude wanda sparsegpt")
#   BENCH_PRUNE27_LAYERS=N  decoder layers of the 2.7b-wide model (default 1: ~4 min on 2
#                           cores; each layer adds as much, 32 is the real model, ~2 hours;
#                           BENCH_BIG=1 make bench runs all 32 through bench/big.sh; 0 skips it)
#   BENCH_KEEP=1, TMPDIR, BENCH_QUIET_MAX, BENCH_QUIET_BUDGET: see bench/lib.sh
#
# About 8 minutes on 2 idle cores with the defaults.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh

REPS=${BENCH_REPS:-5}
THREADS=${BENCH_PRUNE_THREADS:-2}
NS=${BENCH_PRUNE_NSAMPLES:-16}
L27=${BENCH_PRUNE27_LAYERS:-1}
METHODS=${BENCH_PRUNE_METHODS:-magnitude wanda sparsegpt}

bench_start prune
fact reps "$REPS"
fact nsamples "$NS"
fact layers27 "$L27"

say "prune: OPT-125m-shaped model (f32) and calibration ids"
bin/lm-init --like opt-125m --seed 1 > "$B/m125.lms"
# the ids both programs read: novels-calib.txt tokenized once (BOS first), as lm-prune -c would
bin/lm-eval --ppl data/novels-eval/novels-calib.txt --windows 1 --seqlen 512 -q --json \
	--save-ids "$B/calib.lms" "$B/m125.lms" > /dev/null

# --store dense: the output is compared with torch's by torch_prune.py, whose reader knows no
# sparse layout (and the writing costs the same as before the layouts, for the history)
LMP='bin/lm-prune -s 0.5 -m %s %s-j %s -q --store dense $B/m125.lms > $B/out-%s-j%s.lms'
# torch waits in its OpenMP barriers without spinning: libgomp's default spinning, with other
# work on the same 2 cores, made torch's small-op loops (SparseGPT's columns) ten times slower
# with AVX512_BF16, SparseGPT's calibration also runs with --compute bf16 (issue #19); its
# output is not compared with torch's (the f32 run's is), but it is written to a file all the
# same, so the two wall times pay for the same 500 MB write
LMB='bin/lm-prune --compute bf16 -s 0.5 -m %s %s-j %s -q --store dense $B/m125.lms > $B/out-bf16.lms'
BF16=
grep -q avx512_bf16 /proc/cpuinfo && BF16=1
TOR='GLIBC_TUNABLES=glibc.malloc.hugetlb=1 OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=%s OPENBLAS_NUM_THREADS=%s /usr/bin/python3 bench/torch_prune.py $B/m125.lms -m %s -s 0.5 %s--threads %s --json --save $B/torch-%s-j%s.f32'
rep=1
while [ "$rep" -le "$REPS" ]; do
	for j in $THREADS; do
		for m in $METHODS; do
			c=
			[ "$m" = magnitude ] || c="-c \$B/calib.lms --nsamples $NS --seqlen 512 "
			say "  $m, $j thread(s), repetition $rep/$REPS"
			measure "m125-$m-j$j.lmprune.r$rep" "$(printf "$LMP" "$m" "$c" "$j" "$m" "$j")"
			measure "m125-$m-j$j.torch.r$rep" "$(printf "$TOR" "$j" "$j" "$m" "$c" "$j" "$m" "$j")"
			[ -z "$BF16" ] || [ "$m" != sparsegpt ] ||
				measure "m125-$m-j$j.lmprune-bf16.r$rep" "$(printf "$LMB" "$m" "$c" "$j")"
			rm -f "$B/out-bf16.lms"
			# same work? masks and values of the two results (not timed)
			$PY bench/torch_prune.py --json --compare "$B/out-$m-j$j.lms" "$B/torch-$m-j$j.f32" \
				> "$R/m125-$m-j$j.compare.r$rep.json"
			rm -f "$B/out-$m-j$j.lms" "$B/torch-$m-j$j.f32"
		done
	done
	rep=$((rep + 1))
done
rm -f "$B/m125.lms"

# peak RSS is per layer: lm-prune holds the embeddings, one layer, the calibration activations
# and SparseGPT's Hessians, whatever the number of layers. novels-calib.txt is shorter than 16
# windows of 2048, so the calibration text is novels-retrain.txt (tokenized by lm-prune)
if [ "$L27" -gt 0 ]; then
	say "prune: OPT-2.7b-wide f16 model, $L27 layer(s), SparseGPT with 16 windows of 2048 (minutes)"
	measure "p27-sparsegpt-j2.lmprune.r1" "/usr/bin/time -v -o \$B/runs/p27-init.time bin/lm-init --like opt-2.7b -t f16 --layers $L27 | /usr/bin/time -v -o \$B/runs/p27-prune.time bin/lm-prune -s 0.5 -m sparsegpt -c data/novels-eval/novels-retrain.txt --nsamples 16 --seqlen 2048 -j 2 -q > /dev/null"
fi

bench_end
$PY bench/report.py --prune "$B"
