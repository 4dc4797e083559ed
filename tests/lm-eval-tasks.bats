#!/usr/bin/env bats
# lm-eval --sts and --mc (with --retrieve): the STS score is the Spearman correlation of
# lm-embed's own cosines (recomputed here in Python), multiple choice reads both task
# formats, retrieval refuses an index from another model and a k beyond the pool, and
# every bad input is one line on stderr with no report. No test needs the SICK data
# (non-commercial licence): its layout is exercised with STS-B rows.

load helper

TASKS="$BATS_TEST_DIRNAME/data-tasks"

setup_file() {
	lm-import "$MICRO" > "$BATS_FILE_TMPDIR/micro.lms"
	lm-embed -q --pool "$BATS_TEST_DIRNAME/data-tasks/stsb-pool.tsv" < "$BATS_FILE_TMPDIR/micro.lms" \
		> "$BATS_FILE_TMPDIR/idx.lms"
}

json_field() { "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }

bad() { # expected-status message-part command...
	local st=$1 msg=$2; shift 2
	run "-$st" --separate-stderr "$@"
	assert_one_line_error lm-eval
	[ -z "$output" ] || { echo "report printed: $output"; return 1; }
	output=$stderr
	assert_output --partial "$msg"
}

@test "lm-eval --sts: Spearman x100 of the cosines of lm-embed's embeddings" {
	run -0 --separate-stderr lm-eval --sts "$TASKS/sts-mini.csv" --json "$BATS_FILE_TMPDIR/micro.lms"
	echo "$output" > "$BATS_TEST_TMPDIR/sts.json"
	# the same sentences through lm-embed, scored in Python (ties get average ranks)
	cut -f6 "$TASKS/sts-mini.csv" > "$BATS_TEST_TMPDIR/a.txt"
	cut -f7 "$TASKS/sts-mini.csv" > "$BATS_TEST_TMPDIR/b.txt"
	lm-embed -q --tsv "$BATS_TEST_TMPDIR/a.txt" < "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/a.tsv"
	lm-embed -q --tsv "$BATS_TEST_TMPDIR/b.txt" < "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/b.tsv"
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR"/{sts.json,a.tsv,b.tsv} "$TASKS/sts-mini.csv" <<'PY'
import json, math, sys
got = json.load(open(sys.argv[1]))
vec = lambda p: [list(map(float, l.split("\t")[1].split())) for l in open(p)]
A, B = vec(sys.argv[2]), vec(sys.argv[3])
gold = [float(l.split("\t")[4]) for l in open(sys.argv[4])]
cos = [sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
       for a, b in zip(A, B)]
def ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i]); r = [0.0] * len(v); i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]: j += 1
        for k in range(i, j + 1): r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r
def pearson(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return sxy / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
rho = 100 * pearson(ranks(cos), ranks(gold))
print(got, rho)
assert got["pairs"] == len(gold) == 48 and got["layout"] == "sts-b" and got["method"] == "prompteol"
assert abs(got["spearman"] - rho) < 0.05, (got["spearman"], rho)
assert abs(got["pearson"] - 100 * pearson(cos, gold)) < 0.05
PY
	run -0 lm-eval --sts "$TASKS/sts-mini.csv" --avg --demo 'A man is smoking.=Smoking' "$BATS_FILE_TMPDIR/micro.lms"
	assert_line "pairs: 48"
	assert_line "embedding: avg, demo A man is smoking.=Smoking"
	assert_line --regexp "^spearman x100: -?[0-9]+\.[0-9]{2}$"
}

@test "lm-eval --sts: the SICK layout (header, CR LF) is read" {
	{ printf 'pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\r\n'
	  awk -F'\t' '{ printf "%d\t%s\t%s\t%s\tNEUTRAL\r\n", NR, $6, $7, 1 + $5 * 0.8 }' "$TASKS/sts-mini.csv"; } \
		> "$BATS_TEST_TMPDIR/sick.txt"
	a=$(lm-eval --sts "$TASKS/sts-mini.csv" --json "$BATS_FILE_TMPDIR/micro.lms" | json_field spearman)
	b=$(lm-eval --sts "$BATS_TEST_TMPDIR/sick.txt" --json "$BATS_FILE_TMPDIR/micro.lms" | json_field spearman)
	# a monotone map of the gold scores leaves Spearman's rho unchanged
	run -0 "$PYTHON" -c "assert abs($a - $b) < 1e-9, ($a, $b)"
}

@test "lm-eval --sts: a missing column, a bad score, no pairs: one line naming the line" {
	{ head -3 "$TASKS/sts-mini.csv"; printf 'genre\tfile\t2012\t0001\t3.0\tonly one sentence\n'; } > "$BATS_TEST_TMPDIR/cut.csv"
	bad 1 "line 4: 6 fields" lm-eval --sts "$BATS_TEST_TMPDIR/cut.csv" "$BATS_FILE_TMPDIR/micro.lms"
	printf 'g\tf\t2012\t1\tthree\tA.\tB.\n' > "$BATS_TEST_TMPDIR/score.csv"
	bad 1 "line 1: score 'three'" lm-eval --sts "$BATS_TEST_TMPDIR/score.csv" "$BATS_FILE_TMPDIR/micro.lms"
	printf '\n\n' > "$BATS_TEST_TMPDIR/empty.csv"
	bad 1 "no sentence pairs" lm-eval --sts "$BATS_TEST_TMPDIR/empty.csv" "$BATS_FILE_TMPDIR/micro.lms"
	bad 2 "--avg" lm-eval --ppl x --avg "$BATS_FILE_TMPDIR/micro.lms"
	bad 2 "give --mc" lm-eval --sts "$TASKS/sts-mini.csv" --retrieve "$BATS_FILE_TMPDIR/idx.lms" "$BATS_FILE_TMPDIR/micro.lms"
}

@test "lm-eval --mc: JSON lines, accuracy by three rules; TruthfulQA MC1/MC2" {
	run -0 --separate-stderr lm-eval --mc "$TASKS/stsb-bin-test.jsonl" --json "$BATS_FILE_TMPDIR/micro.lms"
	echo "$output" | "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
assert d["items"] == 24 and d["format"] == "jsonl" and d["demonstrations"] == "none", d
for k in ("acc_mean", "acc_sum", "acc_norm"):
    assert 0 <= d[k] <= 1 and abs(d[k] * 24 - round(d[k] * 24)) < 1e-9, d
assert "mc2" not in d'
	run -0 --separate-stderr lm-eval --mc "$TASKS/truthfulqa-mini.json" "$BATS_FILE_TMPDIR/micro.lms"
	assert_line "items: 6"
	assert_line --regexp "^mc1 \(sum NLL\): 0\.[0-9]{4}$"
	assert_line --regexp "^mc2: 0\.[0-9]{4}$"
}

@test "lm-eval --mc --retrieve: retrieved, random (seeded) and tuned demonstrations" {
	r() { lm-eval --mc "$TASKS/stsb-bin-test.jsonl" --retrieve "$BATS_FILE_TMPDIR/idx.lms" --json "$@" \
		"$BATS_FILE_TMPDIR/micro.lms"; }
	run -0 r -k 2
	assert_output --partial '"demonstrations": "retrieved"'
	assert_output --partial '"k": 2'
	a=$(r -k 2 --random-demos --seed 4)
	b=$(r -k 2 --random-demos --seed 4)
	assert_equal "$a" "$b"
	[[ "$a" == *'"demonstrations": "random"'* ]]
	lm-embed -q --pool --tune "$TASKS/stsb-bin-train.jsonl" --train-max 8 -L 4 --negatives 1 --epochs 2 \
		"$TASKS/stsb-pool.tsv" < "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/tuned.lms"
	run -0 lm-eval --mc "$TASKS/stsb-bin-test.jsonl" --retrieve "$BATS_TEST_TMPDIR/tuned.lms" -k 1 \
		"$BATS_FILE_TMPDIR/micro.lms"
	assert_line "demonstrations: retrieved (tuned), k = 1"
	run -0 lm-eval --mc "$TASKS/stsb-bin-test.jsonl" --retrieve "$BATS_TEST_TMPDIR/tuned.lms" -k 1 \
		--no-projection "$BATS_FILE_TMPDIR/micro.lms"
	assert_line "demonstrations: retrieved, k = 1"
}

@test "lm-eval --retrieve: a pruned model's index fits it in every layout (kept sparse or dense)" {
	# lm-eval keeps bitmap and N:M weights sparse; the fingerprint is of the dense bytes
	lm-prune -s 0.5 < "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/sparse.lms"
	lm-prune -s 0.5 --store dense < "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/dense.lms"
	run -0 lm-info "$BATS_TEST_TMPDIR/sparse.lms"
	assert_output --partial bitmap
	lm-embed -q --pool "$TASKS/stsb-pool.tsv" < "$BATS_TEST_TMPDIR/sparse.lms" > "$BATS_TEST_TMPDIR/idx.lms"
	for m in sparse dense; do
		run -0 lm-eval --mc "$TASKS/stsb-bin-test.jsonl" --retrieve "$BATS_TEST_TMPDIR/idx.lms" -k 1 \
			"$BATS_TEST_TMPDIR/$m.lms"
		assert_line "demonstrations: retrieved, k = 1"
	done
	bad 1 "embedded by another model" lm-eval --mc "$TASKS/stsb-bin-test.jsonl" \
		--retrieve "$BATS_TEST_TMPDIR/idx.lms" "$BATS_FILE_TMPDIR/micro.lms"
}

@test "lm-eval --retrieve: an index from another model, k beyond the pool, not an index" {
	# the same shapes, one weight changed by pruning: another fingerprint
	lm-prune -s 0.1 < "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/pruned.lms"
	bad 1 "embedded by another model" lm-eval --mc "$TASKS/stsb-bin-test.jsonl" \
		--retrieve "$BATS_FILE_TMPDIR/idx.lms" "$BATS_TEST_TMPDIR/pruned.lms"
	bad 1 "-k 61: the pool has only 60 prompts" lm-eval --mc "$TASKS/stsb-bin-test.jsonl" \
		--retrieve "$BATS_FILE_TMPDIR/idx.lms" -k 61 "$BATS_FILE_TMPDIR/micro.lms"
	bad 1 "not an embedding stream" lm-eval --mc "$TASKS/stsb-bin-test.jsonl" \
		--retrieve "$BATS_FILE_TMPDIR/micro.lms" "$BATS_FILE_TMPDIR/micro.lms"
	bad 2 "give --retrieve" lm-eval --mc "$TASKS/stsb-bin-test.jsonl" --random-demos "$BATS_FILE_TMPDIR/micro.lms"
}

@test "lm-eval --mc: bad task files name the line" {
	{ head -1 "$TASKS/stsb-bin-test.jsonl"; echo '{"input": "x", "choices": ["a", "b"], "gold": 2}'; } > "$BATS_TEST_TMPDIR/t.jsonl"
	bad 1 "line 2: \"gold\" must be an index" lm-eval --mc "$BATS_TEST_TMPDIR/t.jsonl" "$BATS_FILE_TMPDIR/micro.lms"
	{ head -1 "$TASKS/stsb-bin-test.jsonl"; echo '{"input": "x", '; } > "$BATS_TEST_TMPDIR/t.jsonl"
	bad 1 "line 2:" lm-eval --mc "$BATS_TEST_TMPDIR/t.jsonl" "$BATS_FILE_TMPDIR/micro.lms"
	echo 'plain text' > "$BATS_TEST_TMPDIR/t.txt"
	bad 1 "neither JSON lines" lm-eval --mc "$BATS_TEST_TMPDIR/t.txt" "$BATS_FILE_TMPDIR/micro.lms"
	bad 1 "No such file" lm-eval --mc "$BATS_TEST_TMPDIR/absent.jsonl" "$BATS_FILE_TMPDIR/micro.lms"
}

@test "lm-eval --sts and lm-embed: white space collapsed as the reference does; --verbatim keeps it" {
	# the same pairs with double, tab and trailing spaces score exactly as the clean ones
	"$PYTHON" - "$TASKS/sts-mini.csv" "$BATS_TEST_TMPDIR/messy.csv" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
with open(sys.argv[2], "w") as f:
    for r in rows:
        r[5] = r[5].replace(" ", "  ", 1) + " "
        r[6] = " " + r[6].replace(" ", " \v ", 1)
        f.write("\t".join(r) + "\n")
PY
	run ! cmp -s "$TASKS/sts-mini.csv" "$BATS_TEST_TMPDIR/messy.csv"
	clean=$(lm-eval -q --json --sts "$TASKS/sts-mini.csv" "$BATS_FILE_TMPDIR/micro.lms" | json_field spearman)
	messy=$(lm-eval -q --json --sts "$BATS_TEST_TMPDIR/messy.csv" "$BATS_FILE_TMPDIR/micro.lms" | json_field spearman)
	verb=$(lm-eval -q --json --sts "$BATS_TEST_TMPDIR/messy.csv" --verbatim "$BATS_FILE_TMPDIR/micro.lms" | json_field spearman)
	[ "$clean" = "$messy" ] || { echo "clean $clean, messy $messy"; return 1; }
	[ "$verb" != "$clean" ] || { echo "--verbatim scored like the clean file: $verb"; return 1; }
	# lm-embed: one line with its white space messed up embeds as the clean line
	printf 'A man is  playing a guitar. \n' > "$BATS_TEST_TMPDIR/m.txt"
	printf 'A man is playing a guitar.\n' > "$BATS_TEST_TMPDIR/c.txt"
	lm-embed -q --tsv "$BATS_TEST_TMPDIR/m.txt" < "$BATS_FILE_TMPDIR/micro.lms" | cut -f2 > "$BATS_TEST_TMPDIR/m.tsv"
	lm-embed -q --tsv "$BATS_TEST_TMPDIR/c.txt" < "$BATS_FILE_TMPDIR/micro.lms" | cut -f2 > "$BATS_TEST_TMPDIR/c.tsv"
	lm-embed -q --tsv --verbatim "$BATS_TEST_TMPDIR/m.txt" < "$BATS_FILE_TMPDIR/micro.lms" | cut -f2 > "$BATS_TEST_TMPDIR/v.tsv"
	cmp "$BATS_TEST_TMPDIR/m.tsv" "$BATS_TEST_TMPDIR/c.tsv"
	run ! cmp -s "$BATS_TEST_TMPDIR/v.tsv" "$BATS_TEST_TMPDIR/c.tsv"
	# the index records --verbatim so queries are prepared the same way
	printf 'a  b\tyes\n' > "$BATS_TEST_TMPDIR/pool.tsv"
	lm-embed -q --pool --verbatim "$BATS_TEST_TMPDIR/pool.tsv" < "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/vi.lms"
	lm-info --json "$BATS_TEST_TMPDIR/vi.lms" | grep -q '"verbatim": *true'
}
