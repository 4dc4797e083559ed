#!/usr/bin/env bats
# lm-eval --task: zero-shot tasks as lm-evaluation-harness scores them, on the tiny files
# of tests/data-zeroshot (right by construction: the novel's own next words against
# random letters, an answer the passage repeats, idioms; see make-data.py there). The
# metrics are recomputed here from --log-samples, one continuation's log-likelihood from
# two --ppl runs, and every bad input is one line on stderr naming the file and line.

load helper

ZS="$BATS_TEST_DIRNAME/data-zeroshot"

setup_file() {
	lm-import "$MICRO" > "$BATS_FILE_TMPDIR/micro.lms"
}

bad() { # expected-status message-part command...
	local st=$1 msg=$2; shift 2
	run "-$st" --separate-stderr "$@"
	assert_one_line_error lm-eval
	[ -z "$output" ] || { echo "report printed: $output"; return 1; }
	output=$stderr
	assert_output --partial "$msg"
}

@test "lm-eval --task all: every task through a pipe from lm-import; the constructed answers win" {
	run -0 --separate-stderr bash -c "lm-import '$MICRO' | lm-eval -q --task all --data '$ZS' --json"
	echo "$output" > "$BATS_TEST_TMPDIR/all.json"
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/all.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
r = j["results"]
want = ["boolq", "rte", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa",
        "piqa", "lambada_openai"]
assert list(r) == want, list(r)
# BoolQ and RTE: pairs of items with the same text and opposite labels, one of each right
for t in ("boolq", "rte"):
    assert r[t]["acc"] == 0.5 and abs(r[t]["acc_stderr"] - (0.25 / 3) ** 0.5) < 1e-12, (t, r[t])
for t in want[2:-1]:
    assert r[t]["acc"] == 1.0, (t, r[t])
    assert ("acc_norm" in r[t]) == (t in ("hellaswag", "arc_easy", "arc_challenge", "openbookqa", "piqa")), t
    assert r[t].get("acc_norm", 1.0) == 1.0, (t, r[t])
    assert r[t]["acc_stderr"] == 0.0
# three idioms predicted greedily, one made-up last word that cannot be
assert r["lambada_openai"]["acc"] == 0.75, r["lambada_openai"]
assert r["lambada_openai"]["perplexity"] > 1
assert j["n-samples"]["hellaswag"] == 4 and j["config"]["num_fewshot"] == 0
assert j["config"]["bos"] is False  # as the harness feeds OPT, unless --bos
# the shared prefixes ran once: fewer tokens than one pass per choice
assert j["config"]["tokens_run"] < j["config"]["tokens_without_prefix_sharing"]
PY
}

@test "lm-eval --task all: every task through lm-import | lm-prune | lm-eval, the text report" {
	run -0 --separate-stderr bash -c "lm-import '$MICRO' | lm-prune -q -s 0.5 | \
		lm-eval -q --task all --data '$ZS' --limit 3"
	assert_line --index 0 "$(printf 'task\titems\tmetric\tvalue\tstderr')"
	assert_line --regexp $'^hellaswag\t3\tacc\t[01]\.[0-9]{4}\t'
	assert_line --regexp $'^hellaswag\t3\tacc_norm\t'
	assert_line --regexp $'^lambada_openai\t3\tperplexity\t[0-9.]+\t-$'
	# 9 tasks' acc, acc_norm for 5 of them, LAMBADA's perplexity, under the header
	[ "${#lines[@]}" -eq 16 ]
	for t in boolq rte hellaswag winogrande arc_easy arc_challenge openbookqa piqa lambada_openai; do
		assert_line --regexp "^$t"$'\t3\tacc\t'
	done
}

@test "lm-eval --task --log-samples: acc, acc_norm, stderr and perplexity recomputed from the items" {
	run -0 --separate-stderr lm-eval -q --task all --data "$ZS" --json --log-samples \
		"$BATS_FILE_TMPDIR/micro.lms"
	echo "$output" > "$BATS_TEST_TMPDIR/s.json"
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/s.json" <<'PY'
import json, math, sys
j = json.load(open(sys.argv[1]))
def se(v):
    n, p = len(v), sum(v) / len(v)
    return math.sqrt(sum((x - p) ** 2 for x in v) / (n - 1) / n)
for t, items in j["samples"].items():
    r = j["results"][t]
    if t == "lambada_openai":
        g = [float(s["greedy"]) for s in items]
        assert abs(r["acc"] - sum(g) / len(g)) < 1e-12
        ppl = math.exp(-sum(s["ll"][0] for s in items) / len(items))
        assert abs(r["perplexity"] - ppl) < 1e-9 * ppl, (r["perplexity"], ppl)
        assert abs(r["acc_stderr"] - se(g)) < 1e-12
        continue
    acc = [float(max(range(len(s["ll"])), key=lambda i: (s["ll"][i], -i)) == s["target"]) for s in items]
    norm = [float(max(range(len(s["ll"])), key=lambda i: (s["ll"][i] / s["nbytes"][i], -i)) == s["target"])
            for s in items]
    assert abs(r["acc"] - sum(acc) / len(acc)) < 1e-12, t
    assert all(s["pred"] == s["target"] for s in items) == (r["acc"] == 1.0)
    if "acc_norm" in r:
        assert abs(r["acc_norm"] - sum(norm) / len(norm)) < 1e-12, t
    assert all(min(s["tokens"]) >= 1 for s in items)
    # each request's tokens: the context, the continuation; no BOS (2 in opt-micro) without --bos
    assert all(x[0] != 2 and len(x) > k for s in items for x, k in zip(s["ids"], s["tokens"]))
    assert all(len(set(tuple(x[-k:]) for x, k in zip(s["ids"], s["tokens"]))) == 1 for s in items) == (t == "winogrande")
PY
}

# total NLL of a text file: one --ppl window over all of its tokens (BOS first)
total_nll() {
	local n
	n=$(lm-info --tokenize "$(cat "$1")" "$BATS_FILE_TMPDIR/micro.lms" | tail -1 | wc -w)
	lm-eval -q --ppl "$1" -s $((n + 1)) --json "$BATS_FILE_TMPDIR/micro.lms" |
		"$PYTHON" -c "import json,sys; j=json.load(sys.stdin); print(j['mean_nll'] * (j['tokens'] - 1))"
}

@test "lm-eval --task --bos: a continuation's log-likelihood equals --ppl of context + continuation minus --ppl of the context" {
	# --ppl puts BOS first: so does --bos
	run -0 --separate-stderr lm-eval -q --bos --task hellaswag,lambada_openai --data "$ZS" --json \
		--log-samples "$BATS_FILE_TMPDIR/micro.lms"
	echo "$output" > "$BATS_TEST_TMPDIR/s.json"
	# HellaSwag item 2 (WikiHow's [header] in it), its gold ending, cleaned here as the
	# harness's Python does; LAMBADA item 1: the text up to its last space, then the rest
	run -0 "$PYTHON" - "$ZS" "$BATS_TEST_TMPDIR" <<'PY'
import json, re, sys
zs, tmp = sys.argv[1:]
def pre(t):
    t = t.strip().replace(" [title]", ". ")
    return re.sub("\\[.*?\\]", "", t).replace("  ", " ")
d = [json.loads(l) for l in open(zs + "/hellaswag/hellaswag_val.jsonl")][1]
ctx = pre(d["activity_label"] + ": " + d["ctx_a"] + " " + d["ctx_b"].capitalize())
open(tmp + "/h-ctx.txt", "w").write(ctx)
open(tmp + "/h-all.txt", "w").write(ctx + " " + pre(d["endings"][d["label"]]))
t = json.loads(open(zs + "/lambada/lambada_test.jsonl").readline())["text"]
open(tmp + "/l-ctx.txt", "w").write(t.rsplit(" ", 1)[0])
open(tmp + "/l-all.txt", "w").write(t)
PY
	hc=$(total_nll "$BATS_TEST_TMPDIR/h-ctx.txt")
	ha=$(total_nll "$BATS_TEST_TMPDIR/h-all.txt")
	lc=$(total_nll "$BATS_TEST_TMPDIR/l-ctx.txt")
	la=$(total_nll "$BATS_TEST_TMPDIR/l-all.txt")
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/s.json" "$hc" "$ha" "$lc" "$la" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
hc, ha, lc, la = map(float, sys.argv[2:])
h = j["samples"]["hellaswag"][1]
got, want = h["ll"][h["target"]], -(ha - hc)
assert abs(got - want) < 1e-3 * max(1, abs(want)), ("hellaswag", got, want)
got, want = j["samples"]["lambada_openai"][0]["ll"][0], -(la - lc)
assert abs(got - want) < 1e-3 * max(1, abs(want)), ("lambada", got, want)
PY
}

@test "lm-eval --task --limit N: the first N items of each task" {
	run -0 --separate-stderr lm-eval -q --task boolq,piqa --data "$ZS" --limit 2 --json \
		"$BATS_FILE_TMPDIR/micro.lms"
	echo "$output" | "$PYTHON" -c '
import json, sys
j = json.load(sys.stdin)
assert j["n-samples"] == {"boolq": 2, "piqa": 2}, j["n-samples"]
assert j["config"]["limit"] == 2'
}

@test "lm-eval --task: usage errors exit 2 with one line" {
	local m="$BATS_FILE_TMPDIR/micro.lms"
	bad 2 "unknown task 'mmlu'" lm-eval --task boolq,mmlu --data "$ZS" "$m"
	bad 2 "--data DIR" lm-eval --task boolq "$m"
	bad 2 "--task LIST" lm-eval --ppl "$DATA/novels-eval/novels-test.txt" --limit 3 "$m"
	bad 2 "--json" lm-eval --task boolq --data "$ZS" --log-samples "$m"
	bad 2 "--bos are for --task LIST" lm-eval --mc "$ZS/../data-tasks/none.jsonl" --bos "$m"
	bad 2 "boolq twice" lm-eval --task boolq,boolq --data "$ZS" "$m"
}

@test "lm-eval --task: bad task files are one line naming the file and the line" {
	local m="$BATS_FILE_TMPDIR/micro.lms" d="$BATS_TEST_TMPDIR/d"
	mkdir -p "$d/boolq" "$d/hellaswag" "$d/winogrande" "$d/arc" "$d/piqa" "$d/rte"
	bad 1 "boolq: neither $d/boolq/val.jsonl nor $d/boolq/dev.jsonl exists" lm-eval --task boolq --data "$d" "$m"
	printf '{"question": "q", "passage": "p", "label": true}\n{"question": "q", "passage": "p"}\n' \
		> "$d/boolq/val.jsonl"
	bad 1 "$d/boolq/val.jsonl: line 2: \"label\" (or \"answer\") missing" lm-eval --task boolq --data "$d" "$m"
	printf '{"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["x", "y"], "label": 5}\n' \
		> "$d/hellaswag/hellaswag_val.jsonl"
	bad 1 "$d/hellaswag/hellaswag_val.jsonl: line 1: \"label\" must be an index into the 2 endings" \
		lm-eval --task hellaswag --data "$d" "$m"
	printf '{"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": [], "label": 0}\n' \
		> "$d/hellaswag/hellaswag_val.jsonl"
	bad 1 "line 1: \"endings\" must be an array of at least 2 strings" lm-eval --task hellaswag --data "$d" "$m"
	printf '{"sentence": "a b", "option1": "x", "option2": "y", "answer": "1"}\n' > "$d/winogrande/dev.jsonl"
	bad 1 "$d/winogrande/dev.jsonl: line 1: \"sentence\" has no '_'" lm-eval --task winogrande --data "$d" "$m"
	printf '{"question": {"stem": "s", "choices": [{"text": "a", "label": "A"}, {"text": "", "label": "B"}]}, "answerKey": "B"}\n' \
		> "$d/arc/ARC-Easy-Test.jsonl"
	bad 1 "$d/arc/ARC-Easy-Test.jsonl: line 1: choice 2 is empty" lm-eval --task arc_easy --data "$d" "$m"
	printf '{"goal": "g", "sol1": "a", "sol2": "b"}\n{"goal": "g", "sol1": "a", "sol2": "b"}\n' > "$d/piqa/valid.jsonl"
	printf '0\n' > "$d/piqa/valid-labels.lst"
	bad 1 "$d/piqa/valid-labels.lst: 1 labels for 2 items" lm-eval --task piqa --data "$d" "$m"
	rm "$d/piqa/valid-labels.lst"
	bad 1 "$d/piqa/valid.jsonl: line 1: no \"label\" and no valid-labels.lst beside the file" \
		lm-eval --task piqa --data "$d" "$m"
	printf 'index\tsentence1\tsentence2\tlabel\n0\ta\tb\n' > "$d/rte/dev.tsv"
	bad 1 "$d/rte/dev.tsv: line 2: 3 tab-separated fields" lm-eval --task rte --data "$d" "$m"
}

@test "examples: make zeroshot writes the 7-task table, its markdown and each row's pipeline; a pasted row gives its numbers" {
	unset MAKEFLAGS MAKELEVEL MFLAGS
	local out="$BATS_TEST_TMPDIR/out"
	run -0 --separate-stderr env -u DATA make --no-print-directory -C "$TOP/examples" \
		LMBIN="${LM_BIN:-$TOP/bin}" OUT="$out" TASKS_DIR=tests/data-zeroshot \
		ZS_GRID="dense/none magnitude-0.5/none" PROGRESS= zeroshot
	run -0 head -n 1 "$out/zeroshot.tsv"
	assert_output "$(printf 'method\tsparsity\tretrain\tboolq\trte\thellaswag\twinogrande\tarc_easy\tarc_challenge\topenbookqa\tmean\tcommand')"
	run -0 cut -f1-3 "$out/zeroshot.tsv"
	assert_line --index 1 "$(printf 'dense\t-\tnone')"
	assert_line --index 2 "$(printf 'magnitude\t0.5\tnone')"
	# the constructed items: BoolQ's and RTE's pairs half right, the others all right
	run -0 sed -n 2p "$out/zeroshot.tsv"
	[[ "$(cut -f4-11 <<< "$output")" == "$(printf '50\t50\t100\t100\t100\t100\t100\t85.71')" ]]
	grep -q '^| magnitude | 0.5 | none |' "$out/zeroshot.md"
	# the magnitude row's pipeline, pasted, gives the row's BoolQ accuracy
	cmd=$(sed -n 3p "$out/zeroshot.tsv" | cut -f12)
	[[ "$cmd" == "lm-import models/opt-micro | lm-prune -s 0.5 | lm-eval --task boolq,"* ]]
	acc=$(cd "$TOP" && eval "$cmd --json" | "$PYTHON" -c 'import json,sys; print(round(json.load(sys.stdin)["results"]["boolq"]["acc"] * 100, 2))')
	[ "$(sed -n 3p "$out/zeroshot.tsv" | cut -f4)" = "$(sed 's/\.0$//' <<< "$acc")" ]
}

@test "examples/fetch-tasks.sh: a download whose SHA-256 is not the published one is refused and not put in place" {
	# curl stands in: every URL gives the same few bytes
	mkdir -p "$BATS_TEST_TMPDIR/bin"
	cat > "$BATS_TEST_TMPDIR/bin/curl" <<'SH'
#!/bin/sh
while [ $# -gt 1 ]; do [ "$1" = -o ] && out=$2; shift; done
printf 'not the data set\n' > "$out"
SH
	chmod +x "$BATS_TEST_TMPDIR/bin/curl"
	local d="$BATS_TEST_TMPDIR/tasks"
	run -1 --separate-stderr env PATH="$BATS_TEST_TMPDIR/bin:$PATH" sh "$TOP/examples/fetch-tasks.sh" "$d"
	assert_equal "${stderr_lines[-1]}" "fetch-tasks: https://dl.fbaipublicfiles.com/glue/superglue/data/v2/BoolQ.zip: SHA-256 differs from the published one"
	[ ! -e "$d/boolq/val.jsonl" ] && [ ! -e "$d/.partial/zip/BoolQ.zip" ] && [ ! -e "$d/.partial/BoolQ.zip" ]
	run -2 --separate-stderr sh "$TOP/examples/fetch-tasks.sh"
	assert_equal "$stderr" "usage: fetch-tasks.sh DIR"
}
