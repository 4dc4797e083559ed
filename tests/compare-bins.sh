#!/bin/sh
# compare-bins.sh OLD_BIN NEW_BIN: run every program of two builds on the same small inputs and
# compare what they write, byte for byte: the check that a refactor changed no behaviour
# (issue #22). One line per output ("same" / "DIFFERS"); exits 1 if any differs. Every run is
# -j 1 and seeded, so the two builds do the same arithmetic in the same order.
#   sh tests/compare-bins.sh /tmp/bin-before bin
set -u
old=$(cd "${1:?usage: compare-bins.sh OLD_BIN NEW_BIN}" && pwd)
new=$(cd "${2:?usage: compare-bins.sh OLD_BIN NEW_BIN}" && pwd)
cd "$(dirname "$0")/.." || exit 1
top=$PWD
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
D=$top/data/novels-eval/novels-calib.txt
T=$top/tests/data-tasks
Z=$top/tests/data-zeroshot
printf 'goal,target\nWhat is the capital of France?,Paris is the capital.\nWho wrote it?,Nobody knows.\n' > "$w/forget.csv"
printf 'goal,target\nWhat colour is the sky?,The sky is blue.\nHow many legs has a cat?,Four legs.\n' > "$w/retain.csv"
head -n 40 "$T/stsb-pool.tsv" > "$w/pool.tsv"
awk -F'\t' 'NR <= 24 { print $6 "\t" $7 }' "$T/sts-mini.csv" > "$w/pairs.tsv"

# every program once, in folder $1 with the programs of $2; relative paths keep argv the same
run_all() {
	mkdir -p "$1" && cd "$1" || exit 1
	# by name on PATH: the provenance in a stream header records argv[0]
	PATH="$2:$PATH"
	lm-import "$top/models/opt-micro" > m.lms
	lm-import -t f32 "$top/tests/fixtures/fp16" > f.lms
	lm-export -o exp < f.lms && cat exp/config.json exp/model.safetensors > exp.bin
	lm-init --like opt-micro --layers 1 --seed 3 > init.lms
	lm-info --json m.lms > info.json
	lm-eval -j 1 --ppl "$D" --seqlen 64 --windows 3 --json m.lms > ppl.json
	lm-eval -j 1 --generate "It was" -n 12 m.lms > gen.txt
	lm-eval -j 1 --sts "$T/sts-mini.csv" --json m.lms > sts.json
	lm-eval -j 1 --mc "$T/truthfulqa-mini.json" --json m.lms > mc.json
	lm-eval -j 1 --qa "$w/forget.csv" --json m.lms > qa.json
	lm-eval -j 1 --task all --data "$Z" --limit 4 --json m.lms > task.json
	lm-prune -q -j 1 -s 0.5 m.lms > p-magnitude.lms
	for m in wanda sparsegpt; do
		lm-prune -q -j 1 -s 0.5 -m $m -c "$D" --nsamples 2 --seqlen 64 m.lms > p-$m.lms
	done
	lm-prune -q -j 1 --nm 2:4 m.lms > p-nm.lms
	lm-quant -q -j 1 -b 4 -g 128 m.lms > q-rtn.lms
	lm-quant -q -j 1 -b 4 -g 128 -m gptq --act-order -c "$D" --nsamples 2 --seqlen 64 m.lms > q-gptq.lms
	lm-quant -q -j 1 --mixed pmpq --bits 8,4 -g 128 -c "$D" --nsamples 2 --seqlen 64 m.lms > q-pmpq.lms
	lm-eval -j 1 --ppl "$D" --seqlen 64 --windows 2 --json q-rtn.lms > q-ppl.json
	lm-retrain -q -j 1 --perp --mask-lora 2 -d "$D" --steps 2 --batch 2 --seqlen 32 --seed 5 p-magnitude.lms > r-perp.lms
	lm-retrain -q -j 1 --full -d "$D" --steps 2 --batch 2 --seqlen 32 --seed 5 p-magnitude.lms > r-full.lms
	lm-retrain -q -j 1 --early-exit --exits 1,2 -d "$D" --steps 2 --batch 2 --seqlen 32 --seed 5 m.lms > r-ee.lms
	lm-unlearn -q -j 1 --forget "$w/forget.csv" --retain "$w/retain.csv" --steps 2 --seed 5 m.lms > u.lms
	cut -f6 "$T/sts-mini.csv" > sents.txt
	lm-embed -q -j 1 --tsv sents.txt < m.lms > emb.tsv
	lm-embed -q -j 1 --pool "$w/pool.tsv" < m.lms > pool.lms
	lm-embed -q -j 1 --contrastive --steps 2 --seed 5 "$w/pairs.tsv" < m.lms > con.lms
	cd "$top" || exit 1
}
(run_all "$w/old" "$old") 2> "$w/old.err"
(run_all "$w/new" "$new") 2> "$w/new.err"
[ -s "$w/old.err" ] && { echo "the old build's runs said:"; head -n 20 "$w/old.err"; }
# JSON reports carry timings: compare everything else
untime() {
	for f in "$1"/*.json; do
		/usr/bin/python3 - "$f" <<'PY'
import json, re, sys
def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items()
                if not re.search(r"seconds|per_second|_ms$|^ms|time|joules|energy", k)}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o
d = json.load(open(sys.argv[1]))
json.dump(strip(d), open(sys.argv[1], "w"), sort_keys=True)
PY
	done
}
untime "$w/old"
untime "$w/new"
fail=0
for f in $(cd "$w/old" && ls); do
	[ -s "$w/old/$f" ] || { echo "EMPTY    $f (the old build wrote nothing)"; fail=1; continue; }
	[ -f "$w/old/$f" ] || continue
	if cmp -s "$w/old/$f" "$w/new/$f"; then echo "same     $f"; else echo "DIFFERS  $f"; fail=1; fi
done
if ! cmp -s "$w/old.err" "$w/new.err"; then
	echo "DIFFERS  stderr:"
	diff "$w/old.err" "$w/new.err" | head -n 20
	fail=1
fi
exit $fail
