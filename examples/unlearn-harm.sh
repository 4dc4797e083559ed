#!/bin/sh
# unlearn-harm.sh: the harmful-answer experiment of the unlearning paper (docs/methods.md
# §8) on opt-micro. The model first learns all of AdvBench's answers (lm-unlearn --learn:
# descent on the answers given the questions, full fine-tuning), then unlearns them by
# gradient ascent with TruthfulQA as the retain set. Both AdvBench and TruthfulQA are split
# by a fixed seed (SPLIT_SEED) into a part used for unlearning and a held-out part
# (HOLDOUT, a fifth by default): the ascent sees only the forget part of AdvBench, the
# retain term only the retain part of TruthfulQA. Both models are measured on the
# harmful-answer rate and the answers' perplexity of each AdvBench part (the held-out
# rows were learned but never unlearned: does unlearning carry over to questions it did not
# see?), on TruthfulQA's answer perplexity of each part and MC1 on the held-out questions
# (and on all 817), and on novels-test.txt, which no stage trains on; the table goes to
# $OUT/table.md (bench/unlearn.md). Stages are skipped when their output exists, so an
# interrupted run resumes; delete OUT to start again.
#
#   sh examples/unlearn-harm.sh
#   MODEL=opt-1.3b/ LR=2e-6 STEPS=1000 K=5 OUT=results/harm-1.3b sh examples/unlearn-harm.sh
#
# Settings (environment): MODEL, FORGET (CSV), RETAIN (CSV), MC (TruthfulQA mc_task.json),
# TEST (held-out text), LEARN_STEPS, LEARN_LR, LEARN_BATCH (the learning phase), STEPS,
# LR, K (random answers per question), BATCH, MAXLOSS, WINDOW (the unlearning), LEARN_RETAIN
# (text whose distribution the learning phase keeps; empty: none), SEED, SPLIT_SEED and
# HOLDOUT (the split), OUT.
# From examples/Makefile: `unlearn-harm: ; sh examples/unlearn-harm.sh`.
set -eu
cd "$(dirname "$0")/.."
PATH="${LM_BIN:-$PWD/bin}:$PATH"   # LM_BIN: other programs (as tests/helper.bash)
MODEL=${MODEL:-models/opt-micro}
FORGET=${FORGET:-data/advbench/harmful_behaviors.csv}
RETAIN=${RETAIN:-data/truthfulqa/TruthfulQA.csv}
MC=${MC:-data/truthfulqa/mc_task.json}
TEST=${TEST:-data/novels-eval/novels-test.txt}
LEARN_RETAIN=${LEARN_RETAIN:-data/novels-eval/novels-retrain.txt}
LEARN_STEPS=${LEARN_STEPS:-400} LEARN_LR=${LEARN_LR:-2e-4} LEARN_BATCH=${LEARN_BATCH:-8}
STEPS=${STEPS:-150} LR=${LR:-5e-5} K=${K:-1} BATCH=${BATCH:-2} MAXLOSS=${MAXLOSS:-3} WINDOW=${WINDOW:-5}
SEED=${SEED:-1} SPLIT_SEED=${SPLIT_SEED:-1} HOLDOUT=${HOLDOUT:-0.2}
OUT=${OUT:-results/unlearn-harm}
mkdir -p "$OUT"
run() { echo "+ $*" >&2; "$@"; }
# seconds a stage took, kept beside its output
timed() { t=$1; shift; s=$(date +%s); "$@"; echo $(( $(date +%s) - s )) > "$OUT/$t.seconds"; }

# 1. a model that gives the harmful answers (and still writes novels: the original's
# distribution held on LEARN_RETAIN while it learns)
if [ ! -s "$OUT/learned.lms" ]; then
	run lm-import "$MODEL" > "$OUT/base.lms.tmp"
	mv "$OUT/base.lms.tmp" "$OUT/base.lms"
	timed learn run lm-unlearn -v --learn --forget "$FORGET" ${LEARN_RETAIN:+--retain-text "$LEARN_RETAIN"} \
		-b "$LEARN_BATCH" -n "$LEARN_STEPS" -l "$LEARN_LR" --seed "$SEED" --log "$OUT/learn.log" \
		-o "$OUT/learned.lms" "$OUT/base.lms"
fi
# 2. the split: each CSV's rows (the header kept) into the part the unlearning uses and a
# held-out part, HOLDOUT of the rows drawn with Python's Mersenne Twister seeded SPLIT_SEED
# (each row a random() key, the smallest held out; the rows keep their order); MC items are
# held out when their question is in TruthfulQA's held-out part. A new split (or an old OUT
# without one) makes the unlearning and its measures again.
split="$SPLIT_SEED $HOLDOUT $FORGET $RETAIN $MC"
if [ "$(cat "$OUT/split.done" 2>/dev/null)" != "$split" ]; then
	rm -f "$OUT/unlearned.lms" "$OUT"/unlearned.*.json "$OUT"/learned.*.json "$OUT/unlearn.seconds" \
		"$OUT/eval.seconds"
	run python3 - "$SPLIT_SEED" "$HOLDOUT" "$FORGET" "$RETAIN" "$MC" "$OUT" <<'PY'
import csv, json, random, sys
seed, frac, forget, retain, mc, out = int(sys.argv[1]), float(sys.argv[2]), *sys.argv[3:]

def split(path, a, b):
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    head, rows = rows[0], rows[1:]
    rng = random.Random(seed)
    keys = [rng.random() for _ in rows]
    held = set(sorted(range(len(rows)), key=lambda i: keys[i])[:round(frac * len(rows))])
    for name, keep in ((a, lambda i: i not in held), (b, lambda i: i in held)):
        with open(f"{out}/{name}", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(head)
            w.writerows(r for i, r in enumerate(rows) if keep(i))
    return head, [r for i, r in enumerate(rows) if i in held], len(rows)

_, fh, fn = split(forget, "forget.csv", "forget-held.csv")
head, rh, rn = split(retain, "retain.csv", "retain-held.csv")
q = head.index("Question")
held_q = {r[q] for r in rh}
items = json.load(open(mc, encoding="utf-8"))
mh = [it for it in items if it["question"] in held_q]
json.dump(mh, open(f"{out}/mc-held.json", "w", encoding="utf-8"), ensure_ascii=False)
print(f"split: {len(fh)} of {fn} AdvBench rows and {len(rh)} of {rn} TruthfulQA rows held out"
      f" ({len(mh)} of {len(items)} MC items)", file=sys.stderr)
PY
	echo "$split" > "$OUT/split.done"
fi
# 3. unlearn the forget part, TruthfulQA's retain part held in place; stop once the
# answers' loss (mean of the last WINDOW steps) passes MAXLOSS: ascent far beyond it only
# costs the rest of the model
if [ ! -s "$OUT/unlearned.lms" ]; then
	timed unlearn run lm-unlearn -v --forget "$OUT/forget.csv" --retain "$OUT/retain.csv" --random-answers "$K" \
		-b "$BATCH" -n "$STEPS" -l "$LR" --max-forget-loss "$MAXLOSS" --stop-window "$WINDOW" \
		--seed "$SEED" --log "$OUT/unlearn.log" -o "$OUT/unlearned.lms" "$OUT/learned.lms"
fi
# 4. the measures of each model (JSON, one file per measure)
measure() { # name command...: $OUT/$m.$name.json
	[ -s "$OUT/$m.$1.json" ] && return
	n=$1; shift
	run "$@" --json "$OUT/$m.lms" > "$OUT/$m.$n.json.tmp"
	mv "$OUT/$m.$n.json.tmp" "$OUT/$m.$n.json"
}
s0=$(date +%s)
for m in learned unlearned; do
	for part in forget forget-held; do
		measure harm8.$part lm-eval -q --qa "$OUT/$part.csv" --harm-rate --words 8
		measure harm4.$part lm-eval -q --qa "$OUT/$part.csv" --harm-rate --words 4
	done
	measure retain lm-eval -q --qa "$OUT/retain.csv"
	measure retain-held lm-eval -q --qa "$OUT/retain-held.csv"
	measure test lm-eval -q --ppl "$TEST" --seqlen 512
	measure mc-held lm-eval -q --mc "$OUT/mc-held.json"
	measure mc lm-eval -q --mc "$MC"
done
[ -s "$OUT/eval.seconds" ] || echo $(( $(date +%s) - s0 )) > "$OUT/eval.seconds"
# 5. the table
get() { sed -n "s/.*\"$2\": \([-0-9.e+]*\).*/\1/p" "$OUT/$1.json"; }
row() { # label file key scale: the change relative, or in points for a percentage
	a=$(get "learned.$2" "$3") b=$(get "unlearned.$2" "$3")
	awk -v l="$1" -v a="$a" -v b="$b" -v s="$4" 'BEGIN {
		r = a != 0 ? sprintf("%+.1f%%", 100 * (b - a) / a) : "-"
		d = s == 100 ? sprintf("%+.1f points (%s)", 100 * (b - a), r) : r
		printf "| %s | %.4g | %.4g | %s |\n", l, s * a, s * b, d }'
}
rows() { sed -n 's/.*"rows": \([0-9]*\).*/\1/p' "$OUT/learned.$1.json"; }
items() { sed -n 's/.*"items": \([0-9]*\).*/\1/p' "$OUT/learned.$1.json"; }
nf=$(rows harm8.forget) nh=$(rows harm8.forget-held) nr=$(rows retain) nrh=$(rows retain-held)
{
	echo "| measure | learned | unlearned | change |"
	echo "|---|---:|---:|---:|"
	row "harmful-answer rate, 8 words, the $nf rows unlearned (%)" harm8.forget harmful_rate 100
	row "harmful-answer rate, 8 words, $nh rows held out (%)" harm8.forget-held harmful_rate 100
	row "harmful-answer rate, 4 words, the $nf rows unlearned (%)" harm4.forget harmful_rate 100
	row "harmful-answer rate, 4 words, $nh rows held out (%)" harm4.forget-held harmful_rate 100
	row "AdvBench answers' perplexity, rows unlearned" harm8.forget answer_perplexity 1
	row "AdvBench answers' perplexity, rows held out" harm8.forget-held answer_perplexity 1
	row "TruthfulQA best answers' perplexity, the $nr retain rows (trained on)" retain answer_perplexity 1
	row "TruthfulQA best answers' perplexity, $nrh rows held out" retain-held answer_perplexity 1
	row "TruthfulQA MC1, the $(items mc-held) held-out questions (%)" mc-held acc_sum 100
	row "TruthfulQA MC1, all $(items mc) questions (%)" mc acc_sum 100
	row "novels-test.txt perplexity (not trained on)" test perplexity 1
	echo
	echo "Seconds: learning $(cat "$OUT/learn.seconds" 2>/dev/null || echo ?)," \
		"unlearning $(cat "$OUT/unlearn.seconds" 2>/dev/null || echo ?) ($(grep -c '^step [0-9]* loss' \
		"$OUT/unlearn.log") steps), measuring both $(cat "$OUT/eval.seconds" 2>/dev/null || echo ?)."
} > "$OUT/table.md"
cat "$OUT/table.md"
