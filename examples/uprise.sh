#!/bin/sh
# uprise.sh: UPRISE's comparison (Cheng et al., "UPRISE: Universal Prompt Retrieval for
# Improving Zero-Shot Evaluation") on an OPT model: multiple-choice accuracy with no
# demonstration, K random pool prompts, the K nearest under the frozen PromptEOL embedder,
# under the tuned linear projection (lm-embed --tune) and under the encoder trained on the
# frozen model's feedback (lm-embed --tune-encoder); on held-out items of the task the
# retrievers were trained on (its test split; training items come from its train split) and
# on another task (cross-task: that task's inputs retrieve from the training task's pool, as
# UPRISE tests on task types it did not train on). Each accuracy comes with its standard
# error, sqrt(p (1 - p) / n). The frozen model's feedback on the training items (one random
# prompt's accuracy, the best-scored prompt's = the oracle, how many inputs any prompt
# changes the answer of) is printed under the table: it bounds what a retriever can learn.
# Every stage is skipped when its output exists, so an interrupted run resumes; delete OUT
# to start again.
#
#   sh examples/uprise.sh                          # opt-micro, trained on SICK, cross: STS-B
#   TASK=stsb CROSS=sick OUT=results/uprise-stsb sh examples/uprise.sh
#
# Settings (environment): MODEL (a Hugging Face OPT folder), TASK and CROSS (sick or stsb,
# tests/data-tasks/make-tasks.py's tasks), TEST_N (test items per task, default 300), POOL_N
# (pool prompts, 1000), TRAIN_N (training inputs scored, 300), L (pool prompts scored per
# input, 16), NEG (hard negatives, 4), K (demonstrations, 3), PAIRS (encoder batch, 16:
# UPRISE's), SEED, THREADS, OUT. SICK is for non-commercial research (data/sick/SOURCE.md):
# this recipe reads it, no test does. From examples/Makefile: `make -C examples uprise`.
set -eu
cd "$(dirname "$0")/.."
PATH="${LM_BIN:-$PWD/bin}:$PATH"   # LM_BIN: other programs (as tests/helper.bash)
MODEL=${MODEL:-models/opt-micro}
TASK=${TASK:-sick} CROSS=${CROSS:-stsb}
TEST_N=${TEST_N:-300} POOL_N=${POOL_N:-1000} TRAIN_N=${TRAIN_N:-300}
L=${L:-16} NEG=${NEG:-4} K=${K:-3} PAIRS=${PAIRS:-16} SEED=${SEED:-1}
THREADS=${THREADS:-}
OUT=${OUT:-results/uprise}
J=${THREADS:+-j $THREADS}
mkdir -p "$OUT"
exec 3>&2   # the "+ command" lines reach the terminal when a stage's stderr goes to a file
run() { echo "+ $*" >&3; "$@"; }
# make OUT/NAME from the command's standard output, renamed into place when complete
make_to() {
	f=$1
	shift
	[ -s "$OUT/$f" ] && return 0
	run "$@" > "$OUT/$f.tmp"
	mv "$OUT/$f.tmp" "$OUT/$f"
}
# the training split and pool of a task come from its train file, the test items from its test file
train_file() { case $1 in stsb) echo data/stsb/sts-train.csv ;; sick) echo data/sick/SICK_train.txt ;; esac; }
test_file() { case $1 in stsb) echo data/stsb/sts-test.csv ;; sick) echo data/sick/SICK_test_annotated.txt ;; esac; }
kind() { case $1 in stsb) echo stsb-bin ;; sick) echo sick-nli ;; *) echo "uprise: TASK/CROSS: stsb or sick, not '$1'" >&2; exit 2 ;; esac; }
kind "$TASK" > /dev/null && kind "$CROSS" > /dev/null

# 1. the model; the tasks (test items seed 1, pool seed 2, training inputs seed 3, as bench/embed.sh)
make_to dense.lms lm-import "$MODEL"
make_to "$TASK-train.jsonl" python3 tests/data-tasks/make-tasks.py "$(kind "$TASK")" "$(train_file "$TASK")" "$TRAIN_N" 3
make_to "$TASK-pool.tsv" python3 tests/data-tasks/make-tasks.py "$TASK-pool" "$(train_file "$TASK")" "$POOL_N" 2
for t in "$TASK" "$CROSS"; do
	make_to "$t-test.jsonl" python3 tests/data-tasks/make-tasks.py "$(kind "$t")" "$(test_file "$t")" "$TEST_N" 1
done

# 2. the retrievers: the frozen embedder's index, the tuned projection, the trained encoder
# (its own index of the same pool); both trainings score the same draws of the pool
M="$OUT/dense.lms" POOL="$OUT/$TASK-pool.tsv" TUNE="-L $L --negatives $NEG --train-max $TRAIN_N --seed $SEED"
make_to index.lms lm-embed -q --pool $J -m "$M" "$POOL"
if [ ! -s "$OUT/proj.lms" ]; then
	run lm-embed --pool --tune "$OUT/$TASK-train.jsonl" $TUNE $J -m "$M" -o "$OUT/proj.lms" "$POOL" \
		2> "$OUT/proj.err" || { cat "$OUT/proj.err" >&2; exit 1; }
fi
if [ ! -s "$OUT/enc.lms" ]; then
	run lm-embed -v --pool --tune-encoder "$OUT/$TASK-train.jsonl" $TUNE --pairs "$PAIRS" $J \
		-m "$M" -o "$OUT/enc.lms" "$POOL" 2> "$OUT/enc.err" || { cat "$OUT/enc.err" >&2; exit 1; }
fi
make_to enc-index.lms lm-embed -q --pool $J -m "$OUT/enc.lms" "$POOL"

# 3. every row on both test sets: accuracy by the lowest mean NLL per token (UPRISE's rule)
score() { # ROW TASK [lm-eval options]: OUT/ROW.TASK holds "accuracy items"
	r=$1 t=$2
	shift 2
	[ -s "$OUT/$r.$t" ] && return 0
	echo "+ lm-eval -q --json --mc $OUT/$t-test.jsonl $* $J $M" >&3
	lm-eval -q --json --mc "$OUT/$t-test.jsonl" "$@" $J "$M" |
		python3 -c 'import json, sys; d = json.load(sys.stdin); print(d["acc_mean"], d["items"])' \
		> "$OUT/$r.$t.tmp"
	mv "$OUT/$r.$t.tmp" "$OUT/$r.$t"
}
for t in "$TASK" "$CROSS"; do
	score zero "$t"
	score random "$t" --retrieve "$OUT/index.lms" -k "$K" --random-demos --seed "$SEED"
	score frozen "$t" --retrieve "$OUT/index.lms" -k "$K"
	score proj "$t" --retrieve "$OUT/proj.lms" -k "$K"
	score enc "$t" --retrieve "$OUT/enc-index.lms" --retriever "$OUT/enc.lms" -k "$K"
done

cell() { awk '{ printf "%.1f ± %.1f", 100 * $1, 100 * sqrt($1 * (1 - $1) / $2) }' "$OUT/$1.$2"; }
{
	printf '| %s, retrievers trained on %s | %s test (in-task) | %s test (cross-task) |\n|---|---|---|\n' \
		"$(basename "$MODEL")" "$TASK" "$TASK" "$CROSS"
	for r in "zero:zero-shot" "random:$K random pool prompts" "frozen:$K nearest, frozen PromptEOL" \
		"proj:$K nearest, tuned projection (--tune)" "enc:$K nearest, trained encoder (--tune-encoder)"; do
		printf '| %s | %s | %s |\n' "${r#*:}" "$(cell "${r%%:*}" "$TASK")" "$(cell "${r%%:*}" "$CROSS")"
	done
	printf '\nAccuracy %% ± standard error, %s test items per task, pool of %s %s prompts (the cross-task\n' \
		"$TEST_N" "$POOL_N" "$TASK"
	printf 'inputs retrieve from it too); %s training inputs, %s prompts scored each, %s hard negatives.\n' \
		"$TRAIN_N" "$L" "$NEG"
	sed -n 's/^lm-embed: the model/Frozen model/p' "$OUT/enc.err"
	sed -n 's/^lm-embed: tuned on/Projection: tuned on/p' "$OUT/proj.err"
	tr '\r' '\n' < "$OUT/enc.err" | sed -n 's/^lm-embed: contrastive: /Encoder: /p; s/^lm-embed: encoder tuned on/Encoder: tuned on/p'
} > "$OUT/table.md"
cat "$OUT/table.md"
