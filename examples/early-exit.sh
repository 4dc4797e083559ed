#!/bin/sh
# early-exit.sh: GREEN-CODE's recipe (docs/methods.md §9) on an OPT model: multi-exit
# fine-tuning, the PPO exit policy, then the energy/quality sweep of the policy and of the
# confidence rule, and a plot of layers saved against ROUGE-L. Every stage is skipped when
# its output exists, so an interrupted run resumes; delete OUT to start again.
#
#   sh examples/early-exit.sh                     # opt-micro on the novels (bench/earlyexit.md)
#   MODEL=opt-1.3b/ EXITS=4,8,12,16,20 TEST=data/humaneval/HumanEval.jsonl.gz \
#     TRAIN=code.txt OUT=results/ee-1.3b sh examples/early-exit.sh   # code, a real OPT
#
# Settings (environment): MODEL (a Hugging Face OPT folder), EXITS (1-based layers),
# TRAIN (fine-tuning and episode text), TEST (a text cut into windows, or JSON lines with
# prompt/canonical_solution such as HumanEval), STEPS, SEQLEN, BATCH (fine-tuning),
# EPISODES, PSTEPS (policy), WINDOWS (sweep windows; default all), POLICY_THR, CONF_THR (sweep
# thresholds), SEED, OUT. From examples/Makefile: `earlyexit: ; sh examples/early-exit.sh`.
set -eu
cd "$(dirname "$0")/.."
PATH="${LM_BIN:-$PWD/bin}:$PATH"   # LM_BIN: other programs (as tests/helper.bash)
MODEL=${MODEL:-models/opt-micro}
EXITS=${EXITS:-1,2,3}
TRAIN=${TRAIN:-data/novels-eval/novels-retrain.txt}
TEST=${TEST:-data/novels-eval/novels-test.txt}
STEPS=${STEPS:-80} SEQLEN=${SEQLEN:-128} BATCH=${BATCH:-4}
EPISODES=${EPISODES:-256} PSTEPS=${PSTEPS:-200000}
WINDOWS=${WINDOWS:-} SEED=${SEED:-1}
POLICY_THR=${POLICY_THR:-0.5,0.6,0.7,0.8,0.9,0.95,0.99,1}
CONF_THR=${CONF_THR:-0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1}
OUT=${OUT:-results/early-exit}
mkdir -p "$OUT"
run() { echo "+ $*" >&2; "$@"; }

# 1. the model, then every exit trained with the weighted sum of cross-entropies
if [ ! -s "$OUT/ee.lms" ]; then
	run lm-import "$MODEL" > "$OUT/dense.lms.tmp"
	mv "$OUT/dense.lms.tmp" "$OUT/dense.lms"
	run lm-retrain -v --early-exit --exits "$EXITS" -d "$TRAIN" -s "$SEQLEN" -b "$BATCH" \
		-n "$STEPS" --seed "$SEED" --log "$OUT/finetune.log" -o "$OUT/ee.lms" "$OUT/dense.lms"
fi
# 2. the exit policy by PPO on greedy decoding episodes (the model's tensors unchanged)
if [ ! -s "$OUT/eep.lms" ]; then
	run lm-retrain -v --exit-policy -d "$TRAIN" --episodes "$EPISODES" \
		--policy-steps "$PSTEPS" --seed "$SEED" --log "$OUT/policy.log" -o "$OUT/eep.lms" "$OUT/ee.lms"
fi
# 3. the sweeps: the full model, then each rule at each threshold, on the same prompts
for rule in policy confidence; do
	thr=$POLICY_THR
	[ "$rule" = confidence ] && thr=$CONF_THR
	if [ ! -s "$OUT/sweep-$rule.tsv" ]; then
		run lm-eval -q --exit-sweep "$TEST" ${WINDOWS:+-w "$WINDOWS"} --exit-rule "$rule" \
			--thresholds "$thr" "$OUT/eep.lms" > "$OUT/sweep-$rule.tsv.tmp"
		mv "$OUT/sweep-$rule.tsv.tmp" "$OUT/sweep-$rule.tsv"
	fi
done
# 4. the plot: layers saved per token against ROUGE-L, vs the full model's output and vs
# the text (relative to the full model's own ROUGE-L against it)
for rule in policy confidence; do
	grep -v '^#' "$OUT/sweep-$rule.tsv" | awk -F'\t' '
		NR == 2 { ref = $14 }
		NR >= 2 { printf "%.4f %.4f %.4f %s\n", 100 * $5, $11, (ref > 0 ? 100 * $14 / ref : 0), $2 }' | sort -g \
		> "$OUT/$rule.dat"
done
if command -v gnuplot > /dev/null; then
	gnuplot <<EOF
set terminal pngcairo size 1200,520 font "sans,11"
set output "$OUT/earlyexit.png"
set multiplot layout 1,2 title "Early exit on $(basename "$MODEL"), exits after layers $EXITS: layer computations saved vs quality (labels: thresholds)"
set grid
set key bottom left
set xlabel "decoder-layer computations saved per token (%)"
set ylabel "ROUGE-L vs the full model's greedy output"
set yrange [0:1.05]
plot "$OUT/policy.dat" using 1:2 with linespoints pt 7 lw 2 title "RL policy (PPO)", \
     "$OUT/confidence.dat" using 1:2 with linespoints pt 5 lw 2 title "confidence rule", \
     "$OUT/policy.dat" using 1:2:4 with labels offset 0,0.8 font ",8" notitle, \
     "$OUT/confidence.dat" using 1:2:4 with labels offset 0,-0.8 font ",8" tc rgb "#555555" notitle
set ylabel "ROUGE-L vs the text, % of the full model's"
set yrange [*:*]
plot "$OUT/policy.dat" using 1:3 with linespoints pt 7 lw 2 title "RL policy (PPO)", \
     "$OUT/confidence.dat" using 1:3 with linespoints pt 5 lw 2 title "confidence rule", \
     90 with lines lc rgb "gray" dt 2 title "10% drop", \
     "$OUT/policy.dat" using 1:3:4 with labels offset 0,0.8 font ",8" notitle
unset multiplot
EOF
	echo "plot: $OUT/earlyexit.png" >&2
else
	echo "no gnuplot: apt-get install gnuplot-nox for $OUT/earlyexit.png" >&2
fi
echo "tables: $OUT/sweep-policy.tsv $OUT/sweep-confidence.tsv" >&2
