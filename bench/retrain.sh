#!/bin/sh
# bench/retrain.sh: the retraining section of bench/RESULTS.md (issue #5): training tokens/s and
# peak RSS of `lm-retrain --perp` and `--full` against bench/torch_train.py (AdamW in PyTorch,
# same trainable subset, same windows in the same order, same steps, batch, seqlen and
# threads), on opt-micro and on an OPT-125m-shaped model, both magnitude-pruned to 50 % first;
# and whether the two programs' losses agree step by step (the check that they did the same work).
# Prints a Markdown section on stdout, progress on stderr; runs alone:
#
#   sh bench/retrain.sh > bench/retrain.md
#
#   BENCH_REPS=N              repetitions of each run, interleaved (default 5)
#   BENCH_RETRAIN_THREADS=L   thread counts (default "1 2")
#   BENCH_RETRAIN_SHAPES=S    MODEL:BATCH:SEQLEN:STEPS list (default below; a tiny one to try it)
#   BENCH_KEEP=1, TMPDIR, BENCH_QUIET_MAX, BENCH_QUIET_BUDGET: see bench/lib.sh
#
# About 6 minutes on 2 idle cores with the defaults.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh

REPS=${BENCH_REPS:-5}
THREADS=${BENCH_RETRAIN_THREADS:-1 2}
DATA=data/novels-eval/novels-retrain.txt
# MODEL:BATCH:SEQLEN:STEPS: lm-retrain's default batch for opt-micro; a smaller one for the
# OPT-125m shape, where a step of 8 x 512 takes about a minute on 2 cores
SHAPES=${BENCH_RETRAIN_SHAPES:-micro:8:512:4 m125:2:512:3}

bench_start retrain
fact reps "$REPS"
fact data "$DATA"

say "retrain: magnitude-pruned models and the ids of $DATA"
# dense streams: torch_train.py reads the same files, and its reader knows no sparse layout
bin/lm-import models/opt-micro | bin/lm-prune -s 0.5 -q --store dense > "$B/micro.lms"
bin/lm-init --like opt-125m -t f16 --seed 1 | bin/lm-prune -s 0.5 -q --store dense > "$B/m125.lms"
# torch_train.py reads the ids that lm-retrain makes of the text (BOS first, as lm-eval)
bin/lm-eval --ppl "$DATA" --windows 1 --seqlen 512 -q --json --save-ids "$B/ids.lms" "$B/micro.lms" > /dev/null

# dropout 0 on both sides: the two programs cannot draw the same dropout masks, and without
# dropout their losses must agree step for step
LMR='bin/lm-retrain --%s -d %s -b %s -s %s -n %s --dropout 0 -j %s -q --log $B/runs/%s.log $B/%s.lms > /dev/null'
# torch waits in its OpenMP barriers without spinning, as in bench/prune.sh
# with AVX512_BF16, --perp also runs with --compute bf16 beside f32 (issue #19)
LMB="$(printf '%s' "$LMR" | sed 's/^bin\/lm-retrain /bin\/lm-retrain --compute bf16 /')"
BF16=
grep -q avx512_bf16 /proc/cpuinfo && BF16=1
TOR='GLIBC_TUNABLES=glibc.malloc.hugetlb=1 OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=%s OPENBLAS_NUM_THREADS=%s /usr/bin/python3 bench/torch_train.py $B/%s.lms $B/ids.lms --%s -b %s -s %s -n %s --dropout 0 --threads %s --json'
rep=1
while [ "$rep" -le "$REPS" ]; do
	for shape in $SHAPES; do
		m=${shape%%:*} r=${shape#*:} # MODEL:BATCH:SEQLEN:STEPS
		b=${r%%:*} r=${r#*:}
		t=${r%%:*} n=${r#*:}
		for j in $THREADS; do
			for mode in perp full; do
				g="$m-$mode-j$j"
				say "  $m --$mode, $b x $t, $n steps, $j thread(s), repetition $rep/$REPS"
				measure "$g.lmretrain.r$rep" "$(printf "$LMR" "$mode" "$DATA" "$b" "$t" "$n" "$j" "$g.lmretrain.r$rep" "$m")"
				measure "$g.torch.r$rep" "$(printf "$TOR" "$j" "$j" "$m" "$mode" "$b" "$t" "$n" "$j")"
				[ -z "$BF16" ] || [ "$mode" != perp ] ||
					measure "$g.lmretrain-bf16.r$rep" "$(printf "$LMB" "$mode" "$DATA" "$b" "$t" "$n" "$j" "$g.lmretrain-bf16.r$rep" "$m")"
			done
		done
	done
	rep=$((rep + 1))
done

bench_end
$PY bench/report.py --retrain "$B"
