#!/bin/sh
# bench/embed.sh: the lm-embed section of the results, on opt-micro: PromptEOL STS-B and
# SICK-R (with and without a demonstration, mean pooling), TruthfulQA MC1/MC2, UPRISE-style
# retrieval (zero-shot / random / retrieved / tuned retriever, in-task and cross-task), and
# embeddings per second for opt-micro and an opt-125m shape at batch sizes 1 and 32.
# Prints a Markdown section on stdout, progress on stderr; runs alone:
#
#   sh bench/embed.sh > bench/embed.md
#
#   EMBED_TEST_N=N   items per multiple-choice test set (default 300)
#   EMBED_POOL_N=N   prompts per pool (default 1000)
#   EMBED_TRAIN_N=N  training inputs scored to tune a retriever (default 200)
#   EMBED_SAMPLE=L   pool prompts scored per training input (default 12)
#   EMBED_KEEP=1     keep the scratch folder; TMPDIR: where it goes
#
# Needs bin/ built (make all) and python3 (for tests/data-tasks/make-tasks.py). SICK is
# CC BY-NC-SA: its figures are for this report only, no test depends on it.
set -eu
cd "$(dirname "$0")/.."
PATH="$PWD/bin:$PATH"
TEST_N=${EMBED_TEST_N:-300}
POOL_N=${EMBED_POOL_N:-1000}
TRAIN_N=${EMBED_TRAIN_N:-200}
L=${EMBED_SAMPLE:-12}
DEMO='A man is smoking.=Smoking'
T0=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

say() { printf 'embed: %s\n' "$*" >&2; }
[ -x bin/lm-embed ] && [ -x bin/lm-eval ] || { say "bin/lm-embed missing: run make all"; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/lmpipe-embed.XXXXXX")
cleanup() { [ "${EMBED_KEEP:-0}" = 1 ] && say "scratch kept in $W" || rm -rf "$W"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

jget() { python3 -c "import json,sys; d=json.load(sys.stdin); print(' '.join('%.4f' % d[k] if isinstance(d[k], float) else str(d[k]) for k in sys.argv[1:]))" "$@"; }
pct() { awk -v x="$1" 'BEGIN { printf "%.1f", 100 * x }'; }

say "importing opt-micro"
lm-import models/opt-micro > "$W/m.lms"

# ---------------------------------------------------------------- STS
say "STS-B and SICK-R"
sts() { # label args...: one table row, STS-B test and SICK-R test
	label=$1; shift
	a=$(lm-eval -q --json --sts data/stsb/sts-test.csv "$@" "$W/m.lms" | jget spearman)
	b=$(lm-eval -q --json --sts data/sick/SICK_test_annotated.txt "$@" "$W/m.lms" | jget spearman)
	printf '| %s | %.2f | %.2f | `lm-eval --sts FILE %sm.lms` |\n' "$label" "$a" "$b" "${*:+$* }"
}
STS_ROWS=$(
	sts "PromptEOL" 
	sts "PromptEOL + demonstration" --demo "$DEMO"
	sts "mean pooling of the PromptEOL prompt" --avg
	sts "mean pooling of the sentence alone" --avg --template '<sentence>'
)
# the commands need the demo quoted
STS_ROWS=$(printf '%s\n' "$STS_ROWS" | sed "s/--demo $DEMO/--demo '$DEMO'/; s/--template <sentence>/--template '<sentence>'/")

# ---------------------------------------------------------------- tasks and pools
say "tasks: $TEST_N test items, pools of $POOL_N, $TRAIN_N training inputs"
mk() { python3 tests/data-tasks/make-tasks.py "$@"; }
mk stsb-bin data/stsb/sts-test.csv "$TEST_N" 1 > "$W/stsb-test.jsonl"
mk stsb-pool data/stsb/sts-train.csv "$POOL_N" 2 > "$W/stsb-pool.tsv"
mk stsb-bin data/stsb/sts-train.csv "$TRAIN_N" 3 > "$W/stsb-train.jsonl"
mk sick-nli data/sick/SICK_test_annotated.txt "$TEST_N" 1 > "$W/sick-test.jsonl"
mk sick-pool data/sick/SICK_train.txt "$POOL_N" 2 > "$W/sick-pool.tsv"
mk sick-nli data/sick/SICK_train.txt "$TRAIN_N" 3 > "$W/sick-train.jsonl"

say "embedding the pools and tuning the retrievers (the slow part)"
for t in stsb sick; do
	lm-embed -q --pool "$W/$t-pool.tsv" < "$W/m.lms" > "$W/$t-index.lms"
	lm-embed --pool --tune "$W/$t-train.jsonl" -L "$L" --seed 1 "$W/$t-pool.tsv" < "$W/m.lms" \
		> "$W/$t-tuned.lms" 2> "$W/$t-tune.log" || { cat "$W/$t-tune.log" >&2; exit 1; }
	grep 'tuned on' "$W/$t-tune.log" >&2
done
# cross-task: each pool with the projection tuned on the other task
lm-embed -q --pool --projection "$W/sick-tuned.lms" "$W/stsb-pool.tsv" < "$W/m.lms" > "$W/stsb-x.lms"
lm-embed -q --pool --projection "$W/stsb-tuned.lms" "$W/sick-pool.tsv" < "$W/m.lms" > "$W/sick-x.lms"

mc() { # label task index-args...: accuracy (mean NLL rule) and (sum rule)
	label=$1 task=$2; shift 2
	r=$(lm-eval -q --json --mc "$W/$task-test.jsonl" "$@" "$W/m.lms" | jget acc_mean acc_sum)
	printf '| %s | %s | %s | %s | `lm-eval --mc %s-test.jsonl %sm.lms` |\n' "$task" "$label" \
		"$(pct "${r% *}")" "$(pct "${r#* }")" "$task" "$(echo "${*:+$* }" | sed "s|$W/||g")"
}
say "multiple choice with and without demonstrations"
MC_ROWS=$(
	for t in stsb sick; do
		o=$([ $t = stsb ] && echo sick || echo stsb)
		mc "zero-shot" $t
		mc "3 random pool prompts (seed 1)" $t --retrieve "$W/$t-index.lms" -k 3 --random-demos --seed 1
		mc "3 retrieved, frozen PromptEOL retriever" $t --retrieve "$W/$t-index.lms" -k 3
		mc "3 retrieved, retriever tuned on $o (cross-task)" $t --retrieve "$W/$t-x.lms" -k 3
		mc "3 retrieved, retriever tuned on $t (in-task)" $t --retrieve "$W/$t-tuned.lms" -k 3
	done
)

say "TruthfulQA"
TQA=$(lm-eval -q --json --mc data/truthfulqa/mc_task.json "$W/m.lms" | jget items acc_sum mc2)
set -- $TQA
TQA_ROW="| $1 | $(pct "$2") | $(pct "$3") | \`lm-eval --mc data/truthfulqa/mc_task.json m.lms\` |"

# ---------------------------------------------------------------- speed
say "speed: opt-micro and opt-125m shape, batch 1 and 32"
head -128 data/stsb/sts-test.csv > "$W/speed.csv"
lm-init --like opt-125m --seed 1 -t f16 > "$W/125m.lms"
SPEED_ROWS=$(
	for model in m 125m; do
		for b in 1 32; do
			s=$(lm-eval -q --json --sts "$W/speed.csv" -b $b "$W/$model.lms" | jget sentences_per_second)
			name=$([ $model = m ] && echo "opt-micro (f16)" || echo "opt-125m shape, random (f16)")
			printf '| %s | %s | %.1f | `lm-eval --sts speed.csv -b %s %s.lms` |\n' "$name" "$b" "$s" "$b" "$model"
		done
	done
)

el=$(($(date +%s) - T0))
cat <<EOF
## Sentence embeddings, STS and retrieval (lm-embed, lm-eval --sts/--mc)

opt-micro (4 layers, d = 256, trained on novels only), $(nproc) cores, $(date -u '+%Y-%m-%d'),
commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); \`m.lms\` is
\`lm-import models/opt-micro\`. Produced by \`sh bench/embed.sh\` in $((el / 60)) min $((el % 60)) s;
load average $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (the speed
figures are only as good as the machine was quiet).

### STS: Spearman x100 of cosine similarities

Test splits: \`data/stsb/sts-test.csv\` (1379 pairs, untokenized original release, not SentEval's
Moses-tokenized copy) and \`data/sick/SICK_test_annotated.txt\` (4927 pairs). The demonstration is
the one the PromptEOL authors chose for opt-125m. For scale: their opt-125m reaches 67.80 / 64.10
with the demonstration; opt-micro is a 16 M-parameter model that has read only novels.

| embedding | STS-B test | SICK-R test | command (FILE = either test file) |
|---|---|---|---|
$STS_ROWS

### Multiple choice with retrieved demonstrations (UPRISE-style)

Tasks from \`tests/data-tasks/make-tasks.py\`: STS-B binarised (score >= 3 -> "yes", 2-way) and SICK
entailment (true / neither / false, 3-way); $TEST_N test items each (seed 1), pools of $POOL_N
"input answer" demonstrations from the training splits (seed 2). Retrievers tuned on $TRAIN_N
training inputs (seed 3), $L pool prompts scored per input, 4 hard negatives, InfoNCE on a
projection of the frozen PromptEOL embeddings (\`lm-embed --pool --tune TASK-train.jsonl -L $L
--seed 1 TASK-pool.tsv\`; the cross-task rows copy the other task's projection with
\`--projection\`). Accuracy in %, by the lowest mean NLL per token (UPRISE's rule) and by the
lowest summed NLL (the same here: every option is one token).

| task | demonstrations | acc (mean NLL) | acc (sum NLL) | command |
|---|---|---|---|---|
$MC_ROWS

Tuning (stderr of \`lm-embed --tune\`): $(sed 's/^lm-embed: //' "$W/stsb-tune.log" | tr -d '\r' | tail -1) (STS-B);
$(sed 's/^lm-embed: //' "$W/sick-tune.log" | tr -d '\r' | tail -1) (SICK).

### TruthfulQA (zero-shot, context "Q: question\nA:")

| items | MC1 % | MC2 % | command |
|---|---|---|---|
$TQA_ROW

### Embeddings per second

128 STS-B test pairs (256 sentences, PromptEOL prompts of about 20-60 tokens), sorted by length,
all cores; reading the model excluded (\`sentences_per_second\` of \`lm-eval --sts --json\`);
\`125m.lms\` is \`lm-init --like opt-125m --seed 1 -t f16\`.

| model | batch | embeddings/s | command |
|---|---|---|---|
$SPEED_ROWS
EOF
