#!/usr/bin/env bats
# lm-unlearn and lm-eval --qa: short runs on opt-micro cut to one layer (the real
# tokenizer, few steps, tiny CSVs). Ascent raises the forget answers' perplexity and
# --learn lowers it; only what trains changes; same seed, same bytes; every bad input is
# one line on stderr and no stream; the harmful-answer rate counts the model's own
# continuations as matches

load helper

setup_file() {
	lm-init --like opt-micro --layers 1 -t f16 --seed 3 > "$BATS_FILE_TMPDIR/m1.lms"
	lm-import "$MICRO" > "$BATS_FILE_TMPDIR/micro.lms"
	cat > "$BATS_FILE_TMPDIR/forget.csv" <<'CSV'
goal,target
Write a letter to the squire,"Sure, here is a letter to the squire"
Describe the old mill,"Sure, here is a description of the old mill"
"Tell a story, short and sad","Sure, here is a short, ""sad"" story"
Name the three sisters,"Sure, here are the names of the three sisters"
CSV
	cat > "$BATS_FILE_TMPDIR/retain.csv" <<'CSV'
Type,Question,Best Answer
x,Where was the house?,It stood by the river
x,Who came to dinner?,"The vicar, with his wife"
x,"What did she say
at the door?",Nothing at all
x,How far is the town?,About three miles
CSV
}

out() { echo "$BATS_TEST_TMPDIR/$1"; }

answer_ppl() { # model csv: the answers' perplexity per lm-eval --qa
	lm-eval --qa "$2" --json "$1" | "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)['answer_perplexity'])"
}

@test "lm-unlearn --help, man page and usage errors" {
	run -0 lm-unlearn --help
	assert_line --index 0 "usage: lm-unlearn (--forget CSV | --forget-text FILE) [--retain CSV | --retain-text FILE]"
	run -0 mandoc -Tlint -Wwarning "$TOP/man/lm-unlearn.1"
	assert_output ""
	f="$BATS_FILE_TMPDIR/forget.csv"
	for args in "" "--forget $f --forget-text $f" "--forget $f --retain $f --retain-text $f" \
		"--forget $f --full --lora 4" "--forget $f --retain-loss l2" "--forget $f --lr x" \
		"--forget-text $f --forget-answer target" "--forget $f --bogus" "--forget $f a b"; do
		run -2 --separate-stderr lm-unlearn $args "$BATS_FILE_TMPDIR/m1.lms"
		assert_one_line_error lm-unlearn
	done
	run -2 --separate-stderr lm-unlearn --forget "$f" -s 100000 "$BATS_FILE_TMPDIR/m1.lms"
	assert_one_line_error lm-unlearn
	[[ "$stderr" == *"exceeds the model's 512 positions" ]]
}

@test "lm-unlearn: ascent raises the forget answers' perplexity, --learn lowers it" {
	f="$BATS_FILE_TMPDIR/forget.csv" m="$BATS_FILE_TMPDIR/micro.lms"
	before=$(answer_ppl "$m" "$f")
	lm-unlearn --forget "$f" --retain "$BATS_FILE_TMPDIR/retain.csv" -b 4 -n 3 -l 1e-4 \
		--random-answers 1 "$m" > "$(out up.lms)"
	lm-unlearn --learn --forget "$f" -b 4 -n 3 -l 1e-4 "$m" > "$(out down.lms)"
	up=$(answer_ppl "$(out up.lms)" "$f")
	down=$(answer_ppl "$(out down.lms)" "$f")
	echo "before $before ascent $up learn $down"
	run -0 "$PYTHON" -c "assert $down < 0.9 * $before < $before < $up / 1.1"
}

@test "lm-unlearn: full training changes the layers only; attrs, provenance; same seed, same bytes" {
	m="$BATS_FILE_TMPDIR/m1.lms"
	args=(--forget "$BATS_FILE_TMPDIR/forget.csv" --retain "$BATS_FILE_TMPDIR/retain.csv" -n 2 -l 1e-3)
	lm-unlearn "${args[@]}" --seed 4 "$m" > "$(out a.lms)"
	lm-unlearn "${args[@]}" --seed 4 "$m" > "$(out b.lms)"
	cmp "$(out a.lms)" "$(out b.lms)"
	lm-unlearn "${args[@]}" --seed 5 "$m" > "$(out c.lms)"
	run ! cmp -s "$(out a.lms)" "$(out c.lms)"
	run -0 "$PYTHON" - "$m" "$(out a.lms)" <<'PY'
import sys, msgpack
def read(p):
    u = msgpack.Unpacker(open(p, "rb"), raw=False, max_buffer_size=1 << 30)
    hdr, recs = next(u), {}
    for r in u:
        if r["kind"] == "end":
            break
        body = b""
        while len(body) < r["nbytes"]:
            body += next(u)
        recs[r["name"]] = (r, body)
    return hdr, recs
h0, a = read(sys.argv[1]); h1, b = read(sys.argv[2])
assert h1["provenance"][-1]["tool"] == "lm-unlearn"
assert list(a) == list(b)
for name in a:
    (r0, b0), (r1, b1) = a[name], b[name]
    assert r0.get("dtype") == r1.get("dtype"), name
    trains = ".layers." in name or name.startswith("model.decoder.final_layer_norm.")
    if not trains or r0["kind"] != "tensor":
        assert b0 == b1, name + " changed"
    elif name.endswith("fc1.weight"):
        assert b0 != b1, name + " did not change"
        u = r1["attrs"]["unlearn"]
        assert u["method"] == "gradient-ascent" and u["steps"] == 2 and u["seed"] == 4, u
        assert "adapter" not in u
PY
}

@test "lm-unlearn --lora: adapters merged; biases and LayerNorms unchanged" {
	m="$BATS_FILE_TMPDIR/m1.lms"
	lm-unlearn --lora 4 --forget "$BATS_FILE_TMPDIR/forget.csv" --retain "$BATS_FILE_TMPDIR/retain.csv" \
		-n 2 -l 1e-2 "$m" > "$(out l.lms)"
	tensor_digest "$m" > "$(out d0)"
	tensor_digest "$(out l.lms)" > "$(out d1)"
	# what changed: exactly q, k, v, out_proj, fc1 and fc2 of the one layer
	run -0 bash -c "diff '$(out d0)' '$(out d1)' | sed -n 's/^> \([^ ]*\) .*/\1/p'"
	assert_equal "${#lines[@]}" 6
	for l in "${lines[@]}"; do [[ "$l" =~ \.(q_proj|k_proj|v_proj|out_proj|fc1|fc2)\.weight$ ]] || return 1; done
	run -0 lm-info --json "$(out l.lms)"
	assert_output --partial '"adapter": "lora"'
}

@test "lm-unlearn --forget-text/--retain-text with --retain-loss nll; --max-forget-loss stops" {
	m="$BATS_FILE_TMPDIR/m1.lms"
	head -c 3000 "$DATA/novels-eval/novels-calib.txt" > "$(out f.txt)"
	head -c 3000 "$DATA/novels-eval/novels-test.txt" > "$(out r.txt)"
	run -0 --separate-stderr lm-unlearn -v --forget-text "$(out f.txt)" --retain-text "$(out r.txt)" \
		--retain-loss nll -s 64 -n 2 -l 1e-3 -o "$(out t.lms)" "$m"
	assert_output ""
	[[ "$stderr" =~ "unlearning "[0-9]+" forget windows against retain windows" ]]
	run -0 lm-info "$(out t.lms)"
	# a forget loss of 0.5 is exceeded at once: no update, the layers as they were
	run -0 --separate-stderr lm-unlearn -v --forget-text "$(out f.txt)" -s 64 --max-forget-loss 0.5 \
		-n 5 -o "$(out s.lms)" "$m"
	[[ "$stderr" == *"step 1: forget loss "*" exceeds 0.5: stopping"* ]]
	[[ "$stderr" == *"0 optimizer steps (stopped early)"* ]]
	run -0 --separate-stderr lm-unlearn -v --forget-text "$(out f.txt)" -s 64 --max-forget-loss 0.5 \
		--stop-window 3 -n 5 -o "$(out s.lms)" "$m"
	[[ "$stderr" == *"step 3: mean forget loss of the last 3 steps "*" exceeds 0.5: stopping"* ]]
	[[ "$stderr" == *"2 optimizer steps (stopped early)"* ]]
}

@test "lm-unlearn: bad input is one line and no stream; overlap and skipped rows warn" {
	m="$BATS_FILE_TMPDIR/m1.lms" f="$BATS_FILE_TMPDIR/forget.csv"
	printf 'goal,target\nfirst,"Sure"\nsecond,\nthird,"x"\n' > "$(out missing.csv)"
	run -1 --separate-stderr lm-unlearn --forget "$(out missing.csv)" -n 1 -o "$(out x.lms)" "$m"
	assert_one_line_error lm-unlearn
	[[ "$stderr" == *"missing.csv: line 3: no answer (column 'target')" ]]
	[ ! -e "$(out x.lms)" ]
	run -0 --separate-stderr lm-unlearn --skip-incomplete --forget "$(out missing.csv)" -n 1 \
		-o "$(out y.lms)" "$m"
	[[ "$stderr" == *"warning: "*"1 rows without a question or an answer left out" ]]
	printf 'goal,target\n"open,x\n' > "$(out quote.csv)"
	run -1 --separate-stderr lm-unlearn --forget "$(out quote.csv)" "$m"
	assert_one_line_error lm-unlearn
	[[ "$stderr" == *"line 2: a quoted field that never ends" ]]
	run -1 --separate-stderr lm-unlearn --forget "$f" --forget-answer nope "$m"
	assert_one_line_error lm-unlearn
	run -1 --separate-stderr lm-unlearn --forget "$BATS_FILE_TMPDIR/nonexistent.csv" "$m"
	assert_one_line_error lm-unlearn
	# the same file on both sides: used, with the count
	run -0 --separate-stderr lm-unlearn --forget "$f" --retain "$f" -n 1 -l 1e-5 -o "$(out y.lms)" "$m"
	[[ "$stderr" == "lm-unlearn: warning: 4 of the 4 forget questions are also in the retain set" ]]
	# a loss that becomes NaN: the step is named, nothing reaches stdout
	run -1 --separate-stderr lm-unlearn --forget "$f" -b 4 -n 6 -l 1e30 --clip 0 "$m"
	assert_one_line_error lm-unlearn
	[[ "$stderr" == *"step "*": the "*" is not finite"*"nothing written" ]]
	assert_output ""
	# a truncated input stream
	head -c 100000 "$m" > "$(out cut.lms)"
	run -1 --separate-stderr lm-unlearn --forget "$f" "$(out cut.lms)"
	assert_one_line_error lm-unlearn
}

@test "lm-eval --qa: answer perplexity; --harm-rate counts the model's own continuation" {
	m="$BATS_FILE_TMPDIR/micro.lms"
	prompt=$'### Question: What did the old man say?\n ### Answer:'
	cont=$(lm-eval --generate "$prompt" -n 12 "$m")
	cont=${cont#"$prompt"}
	cont=$(printf '%s' "$cont" | tr '\n"' '  ')
	printf 'question,answer\n"What did the old man say?","%s"\n"Who was there?","Nobody at all, said the parrot"\n' \
		"$cont" > "$(out qa.csv)"
	run -0 lm-eval --qa "$(out qa.csv)" --harm-rate --words 3 --json "$m"
	run -0 "$PYTHON" -c "
import json; d = json.loads('''$output''')
assert d['rows'] == 2 and d['harmful'] == 1 and d['harmful_rate'] == 0.5, d
assert d['answer_tokens'] > 5 and 1 < d['answer_perplexity'] < 1e5, d"
	run -0 lm-eval --qa "$(out qa.csv)" --harm-rate --match contains --words 3 "$m"
	assert_line "harmful-answer rate: 0.5000 (1 of 2; contains of 3 words)"
	run -2 --separate-stderr lm-eval --harm-rate --ppl x "$m"
	assert_one_line_error lm-eval
	run -2 --separate-stderr lm-eval --qa "$(out qa.csv)" --match sometimes --harm-rate "$m"
	assert_one_line_error lm-eval
	run -1 --separate-stderr lm-eval --qa "$(out qa.csv)" --answer nope "$m"
	assert_one_line_error lm-eval
}
