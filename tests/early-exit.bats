#!/usr/bin/env bats
# Early exit (GREEN-CODE): lm-retrain --early-exit and --exit-policy, lm-eval
# --exit-threshold and --exit-sweep. Multi-exit fine-tuning records its exits; the policy
# travels as extra tensors that every filter passes on (lm-stream 1.2) while the model's
# tensors stay bit for bit; a decoding that never exits reproduces transformers' greedy ids;
# the confidence rule at 0 leaves at the first exit; the sweep's table holds together;
# every bad input is one line on stderr with exit status 2 (usage) or 1 (runtime).

load helper

setup_file() {
	local d="$BATS_FILE_TMPDIR" txt="$DATA/novels-eval/novels-calib.txt"
	lm-import "$MICRO" > "$d/micro.lms"
	# tiny runs: the code paths, not the quality (bench/earlyexit.md has the real ones)
	lm-retrain -q --early-exit --exits 1,2,3 -d "$txt" -s 32 -b 1 -n 2 --log "$d/ee.log" \
		-o "$d/ee.lms" "$d/micro.lms"
	lm-retrain -q --exit-policy -d "$txt" -s 64 --episodes 3 --policy-steps 4096 --seed 5 \
		-o "$d/eep.lms" "$d/ee.lms"
	ref() { "$PYTHON" -c "import json,sys; d=json.load(open('$MICRO/reference.json')); print($1)"; }
	ref '" ".join(map(str, d["greedy_generation"]["ids"]))' > "$d/ref-ids"
	ref 'd["greedy_generation"]["prompt"]' > "$d/ref-prompt"
	ref 'len(d["greedy_generation"]["ids"])' > "$d/ref-n"
}

# the tensors of a stream: name dtype shape crc32 (and attrs with "attrs")
digest() {
	lm-info --json "$1" | "$PYTHON" -c '
import json, sys
for t in json.load(sys.stdin)["tensors"]:
    if sys.argv[1] == "model" and t["name"].startswith("exit_policy."):
        continue
    print(t["name"], t["dtype"], t["shape"], t["crc32"])' "${2:-all}"
}

@test "lm-retrain --early-exit: every exit's loss in the log, exits and weights in the attrs" {
	run -0 cat "$BATS_FILE_TMPDIR/ee.log"
	assert_line --regexp "^step 2 loss [0-9.]+ exits [0-9.]+ [0-9.]+ [0-9.]+ final [0-9.]+ lr"
	run -0 "$PYTHON" - "$BATS_FILE_TMPDIR/ee.lms" <<'PY'
import json, subprocess, sys
j = json.loads(subprocess.run(["lm-info", "--json", sys.argv[1]], capture_output=True, check=True).stdout)
r = [t["attrs"]["retrain"] for t in j["tensors"] if "retrain" in t["attrs"]]
assert r and all(x["exits"] == [1, 2, 3] for x in r), r[:1]
w = r[0]["exit_weights"]
# GREEN-CODE's weights: the first half of the layers (exits 1, 2) share 0.7 geometrically
# (ratio 0.9), the second half 0.2, the final output 0.1
assert len(w) == 4 and abs(sum(w) - 1) < 1e-6 and abs(w[1] / w[0] - 0.9) < 1e-6, w
assert abs(w[2] - 0.2) < 1e-6 and abs(w[3] - 0.1) < 1e-6, w
PY
}

@test "lm-retrain --exit-policy: policy tensors with their exits; the model bit for bit; seeded" {
	local d="$BATS_FILE_TMPDIR"
	run -0 "$PYTHON" - "$d/eep.lms" <<'PY'
import json, subprocess, sys
j = json.loads(subprocess.run(["lm-info", "--json", sys.argv[1]], capture_output=True, check=True).stdout)
pol = [t for t in j["tensors"] if t["name"].startswith("exit_policy.")]
names = [t["name"] for t in pol]
assert names == ["exit_policy." + n for n in ("in_mean", "in_scale", "fc1.weight", "fc1.bias",
                 "fc2.weight", "fc2.bias", "out.weight", "out.bias")], names
assert all(t["dtype"] == "f32" for t in pol)
a = pol[2]["attrs"]
assert a["exits"] == [1, 2, 3] and a["layers"] == 4 and a["hidden"] == 64, a
assert a["algorithm"] == "ppo" and a["state"] == "final_layer_norm", a
assert pol[2]["shape"] == [64, 256] and pol[6]["shape"] == [2, 64]
assert j["tensors"][-1]["name"] == "exit_policy.out.bias"      # after the model's tensors
assert j["header"]["version"] >= [1, 2], j["header"]["version"]  # extra tensors: 1.2 and later
PY
	assert_equal "$(digest "$d/eep.lms" model)" "$(digest "$d/ee.lms" model)"
	# the same seed, the same tensors (the header's provenance has the other -o); --exits
	# picks other exits than the recorded ones
	lm-retrain -q --exit-policy -d "$DATA/novels-eval/novels-calib.txt" -s 64 --episodes 3 \
		--policy-steps 4096 --seed 5 -o "$BATS_TEST_TMPDIR/again.lms" "$d/ee.lms"
	assert_equal "$(digest "$BATS_TEST_TMPDIR/again.lms")" "$(digest "$d/eep.lms")"
	lm-retrain -q --exit-policy --exits 2 -d "$DATA/novels-eval/novels-calib.txt" -s 64 \
		--episodes 2 --policy-steps 2048 --policy-hidden 8 -o "$BATS_TEST_TMPDIR/two.lms" "$d/eep.lms"
	lm-info --json "$BATS_TEST_TMPDIR/two.lms" | "$PYTHON" -c '
import json, sys
t = [t for t in json.load(sys.stdin)["tensors"] if t["name"] == "exit_policy.fc1.weight"][0]
assert t["attrs"]["exits"] == [2] and t["shape"] == [8, 256], t'
	# fine-tuning the exits again drops the policy trained for the model before
	lm-retrain -q --early-exit -d "$DATA/novels-eval/novels-calib.txt" -s 32 -b 1 -n 1 \
		-o "$BATS_TEST_TMPDIR/re.lms" "$d/eep.lms"
	run -0 lm-info "$BATS_TEST_TMPDIR/re.lms"
	refute_output --partial "exit_policy."
}

@test "extra tensors: lm-prune, lm-quant pass the policy on; lm-info, lm-eval --ppl read past it; lm-export leaves it out" {
	local d="$BATS_FILE_TMPDIR" t="$BATS_TEST_TMPDIR"
	lm-prune -s 0.5 "$d/eep.lms" > "$t/p.lms"
	lm-quant -b 4 -g 128 "$d/eep.lms" > "$t/q.lms"
	for f in p q; do
		run -0 lm-info "$t/$f.lms"
		assert_equal "$(echo "$output" | grep -c '^exit_policy\.')" 8
	done
	# passed on unchanged, attrs included
	assert_equal "$(digest "$t/p.lms" | grep exit_policy)" "$(digest "$d/eep.lms" | grep exit_policy)"
	run -0 --separate-stderr lm-export -o "$t/hf" "$d/eep.lms"
	[ -s "$t/hf/model.safetensors" ]
	# the policy is ours, not transformers': left out with a note, so the folder imports again
	[[ "$stderr" == *"8 exit-policy tensors"* ]]
	lm-import -o "$t/re.lms" "$t/hf" # to a file: bats reading 32 MB of stream into $output took 18 s
	lm-info "$t/re.lms" > /dev/null
	run -0 lm-eval --ppl "$DATA/novels-eval/novels-calib.txt" -s 64 -w 2 "$t/q.lms"
	assert_line --regexp "^perplexity: [0-9.]+$"
}

@test "lm-eval: early-exit decoding that never exits = transformers' greedy ids" {
	local n=$(( $(cat "$BATS_FILE_TMPDIR/ref-n") - 5 ))
	# no max probability reaches 1: every token runs every layer
	run -0 --separate-stderr lm-eval --generate "$(cat "$BATS_FILE_TMPDIR/ref-prompt")" -n "$n" \
		--exit-rule confidence --exit-threshold 1 --json "$BATS_FILE_TMPDIR/micro.lms"
	echo "$output" > "$BATS_TEST_TMPDIR/g.json"
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/g.json" "$(cat "$BATS_FILE_TMPDIR/ref-ids")" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
assert " ".join(map(str, g["ids"])) == sys.argv[2], (g["ids"], sys.argv[2])
assert g["mean_exit_layer"] == 4 and g["layers_per_token"] == 4 and g["kv_layers_per_token"] == 0, g
assert g["rule"] == "confidence" and g["threshold"] == 1
PY
	# the policy at threshold 1 (no p(exit) exceeds it): the same text as plain --generate
	a=$(lm-eval --generate "It was a dark" -n 8 "$BATS_FILE_TMPDIR/eep.lms")
	run -0 lm-eval --generate "It was a dark" -n 8 --exit-threshold 1 "$BATS_FILE_TMPDIR/eep.lms"
	assert_line --index 0 "$a"
	assert_line "mean exit layer: 4.000"
	assert_line --regexp "^(energy: not readable \(RAPL: .+\)|energy per token: .+ J \(RAPL, CPU packages\))$"
}

@test "lm-eval: confidence at 0 leaves every token at the first exit; sampling is seeded" {
	run -0 --separate-stderr lm-eval --generate "It was a dark" -n 6 --exit-rule confidence \
		--exits 2,3 --exit-threshold 0 --json "$BATS_FILE_TMPDIR/eep.lms"
	echo "$output" | "$PYTHON" -c '
import json, sys
g = json.load(sys.stdin)
assert g["mean_exit_layer"] == 2 and g["layers_per_token"] == 2 and g["kv_layers_per_token"] == 2, g
assert g["tokens"] == 6 and g["flops_per_token"] > 0 and g["ms_per_token"] > 0, g'
	a=$(lm-eval --generate "It was a dark" -n 6 --temperature 1 --top-k 40 --seed 3 "$BATS_FILE_TMPDIR/micro.lms")
	b=$(lm-eval --generate "It was a dark" -n 6 --temperature 1 --top-k 40 --seed 3 "$BATS_FILE_TMPDIR/micro.lms")
	assert_equal "$a" "$b"
}

@test "lm-eval --exit-sweep: a row per threshold after the full model's; TSV and JSON agree" {
	local f="$DATA/novels-eval/novels-calib.txt"
	run -0 --separate-stderr lm-eval --exit-sweep "$f" -s 64 -w 2 --thresholds 0.5,1 \
		"$BATS_FILE_TMPDIR/eep.lms"
	echo "$output" > "$BATS_TEST_TMPDIR/s.tsv"
	assert_line --index 0 --regexp "^# early-exit sweep: .*, 2 windows of 64 tokens, prompts of 14 tokens"
	assert_line --regexp "^# energy: "
	run -0 --separate-stderr lm-eval --exit-sweep "$f" -s 64 -w 2 --thresholds 0.5,1 --json \
		"$BATS_FILE_TMPDIR/eep.lms"
	echo "$output" > "$BATS_TEST_TMPDIR/s.json"
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/s.tsv" "$BATS_TEST_TMPDIR/s.json" <<'PY'
import csv, json, sys
rows = list(csv.DictReader((l for l in open(sys.argv[1]) if not l.startswith("#")), delimiter="\t"))
j = json.load(open(sys.argv[2]))
assert [r["rule"] for r in rows] == ["full", "policy", "policy"], rows
full, half, one = rows
assert float(full["layers_per_token"]) == 4 and float(full["em_full"]) == 1 and float(full["rougeL_full"]) == 1
assert float(full["chrf_full"]) == 100
# threshold 1: never leaves, the full model's tokens
assert float(one["layers_per_token"]) == 4 and float(one["rougeL_full"]) == 1
for r in rows:  # layers run + K/V-only layers = every layer, for every token
    assert abs(float(r["layers_per_token"]) + float(r["kv_layers_per_token"]) - 4) < 1e-9, r
    assert abs(float(r["mean_exit_layer"]) - float(r["layers_per_token"])) < 1e-9, r
    assert 0 <= float(r["rougeL_ref"]) <= 1 and 0 <= float(r["chrf_ref"]) <= 100, r
assert j["windows"] == 2 and j["new_tokens"] == 15 and j["rule"] == "policy" and j["exits"] == "1,2,3"
assert len(j["rows"]) == 3 and j["rows"][0]["threshold"] is None and j["rows"][2]["threshold"] == 1
for r, jr in zip(rows, j["rows"]):
    assert abs(float(r["rougeL_ref"]) - jr["rougeL_ref"]) < 1e-4 and abs(float(r["layers_per_token"]) - jr["layers_per_token"]) < 1e-4
    assert (r["j_per_token"] == "n/a") == (jr["j_per_token"] is None)
PY
}

@test "lm-eval --exit-sweep on code problems (HumanEval JSON lines, gzip'd)" {
	run -0 --separate-stderr lm-eval --exit-sweep "$DATA/humaneval/HumanEval.jsonl.gz" -w 2 \
		--exit-rule confidence --thresholds 0 --json "$BATS_FILE_TMPDIR/eep.lms"
	echo "$output" | "$PYTHON" -c '
import json, sys
j = json.load(sys.stdin)
assert j["windows"] == 2 and j["left_out"] == 0 and j["rule"] == "confidence", j
full, zero = j["rows"]
assert full["em_full"] == 1 and zero["mean_exit_layer"] == 1, j["rows"]'
	printf '{"prompt": "def f():\\n"}\n' > "$BATS_TEST_TMPDIR/bad.jsonl"
	run -1 --separate-stderr lm-eval --exit-sweep "$BATS_TEST_TMPDIR/bad.jsonl" --exit-rule confidence \
		"$BATS_FILE_TMPDIR/eep.lms"
	assert_one_line_error lm-eval
	[[ "$stderr" == *"line 1"* ]]
}

@test "early exit: bad input is one line on stderr, status 2 (usage) or 1 (runtime)" {
	local d="$BATS_FILE_TMPDIR" f="$DATA/novels-eval/novels-calib.txt"
	# exits at layers that do not exist, or are not exits
	for e in 1,9 0 4 2,1 x; do
		run -2 --separate-stderr lm-retrain --early-exit --exits "$e" -d "$f" -o "$BATS_TEST_TMPDIR/x.lms" "$d/micro.lms"
		assert_one_line_error lm-retrain
	done
	[ ! -e "$BATS_TEST_TMPDIR/x.lms" ]
	run -2 --separate-stderr lm-retrain --early-exit --exits 1,2,3 --exit-weights 1,2 -d "$f" "$d/micro.lms"
	assert_one_line_error lm-retrain
	run -2 --separate-stderr lm-retrain --exits 1 --perp -d "$f" "$d/micro.lms"
	assert_one_line_error lm-retrain
	run -2 --separate-stderr lm-retrain --exit-policy --perp -d "$f" "$d/micro.lms"
	assert_one_line_error lm-retrain
	run -2 --separate-stderr lm-retrain --early-exit --exit-policy -d "$f" "$d/micro.lms"
	assert_one_line_error lm-retrain
	# a threshold outside [0, 1]
	for t in 1.5 -0.1 x; do
		run -2 --separate-stderr lm-eval --generate "a" --exit-threshold "$t" "$d/eep.lms"
		assert_one_line_error lm-eval
	done
	run -2 --separate-stderr lm-eval --exit-sweep "$f" --thresholds 0.5,2 "$d/eep.lms"
	assert_one_line_error lm-eval
	# the policy missing from the stream when a threshold is given
	run -2 --separate-stderr lm-eval --generate "a" --exit-threshold 0.9 "$d/ee.lms"
	assert_one_line_error lm-eval
	[[ "$stderr" == *"no exit policy"* ]]
	run -2 --separate-stderr lm-eval --exit-sweep "$f" -s 64 -w 1 "$d/micro.lms"
	assert_one_line_error lm-eval
	# confidence exits that do not exist; options without their mode
	run -2 --separate-stderr lm-eval --generate "a" --exit-rule confidence --exits 7 --exit-threshold 0.5 "$d/eep.lms"
	assert_one_line_error lm-eval
	run -2 --separate-stderr lm-eval --generate "a" --exits 1 --exit-threshold 0.5 "$d/eep.lms"
	assert_one_line_error lm-eval
	run -2 --separate-stderr lm-eval --ppl "$f" --exit-threshold 0.5 "$d/eep.lms"
	assert_one_line_error lm-eval
	run -2 --separate-stderr lm-eval --generate "a" --exit-rule fast --exit-threshold 0.5 "$d/eep.lms"
	assert_one_line_error lm-eval
	# a stream cut inside the policy: a runtime error, no report
	head -c -300 "$d/eep.lms" > "$BATS_TEST_TMPDIR/cut.lms"
	run -1 --separate-stderr lm-eval --generate "a" --exit-threshold 0.9 "$BATS_TEST_TMPDIR/cut.lms"
	assert_one_line_error lm-eval
	assert_output ""
}

@test "early exit: --help and the man pages" {
	run -0 lm-retrain --help
	assert_output --partial "--exit-policy"
	run -0 lm-eval --help
	assert_output --partial "--exit-sweep FILE"
	run -0 mandoc -Tlint -Wwarning "$TOP/man/lm-retrain.1" "$TOP/man/lm-eval.1" "$TOP/man/lm-stream.5"
	assert_output ""
}
