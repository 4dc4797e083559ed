#!/usr/bin/env bats
# lm-eval: perplexity and generation match transformers' reference numbers for opt-micro;
# every bad input is one line on stderr and no report

load helper

setup_file() {
	lm-import "$MICRO" > "$BATS_FILE_TMPDIR/micro.lms"
	lm-import "$FIX/pre-ln" > "$BATS_FILE_TMPDIR/pre.lms"
	ref() { "$PYTHON" -c "import json,sys; d=json.load(open('$MICRO/reference.json')); print($1)"; }
	ref 'd["ppl_novels_test"]["dense"]' > "$BATS_FILE_TMPDIR/ref-ppl"
	ref '" ".join(map(str, d["greedy_generation"]["ids"]))' > "$BATS_FILE_TMPDIR/ref-ids"
	ref 'd["greedy_generation"]["prompt"]' > "$BATS_FILE_TMPDIR/ref-prompt"
	ref 'len(d["greedy_generation"]["ids"])' > "$BATS_FILE_TMPDIR/ref-n"
}

json_field() { "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }

@test "lm-eval --help and man page" {
	run -0 lm-eval --help
	assert_line --index 0 "usage: lm-eval (--ppl FILE | --generate TEXT) [options] [STREAM]"
	run -0 mandoc -Tlint -Wwarning "$TOP/man/lm-eval.1"
	assert_output ""
	run -2 --separate-stderr lm-eval "$BATS_FILE_TMPDIR/micro.lms"
	assert_one_line_error lm-eval
	run -2 --separate-stderr lm-eval --ppl x --generate y
	assert_one_line_error lm-eval
}

@test "lm-eval --ppl: opt-micro on novels-test at seqlen 512 within 0.05% of transformers" {
	reference_run
	run -0 --separate-stderr lm-eval --ppl "$DATA/novels-eval/novels-test.txt" --seqlen 512 --json \
		"$BATS_FILE_TMPDIR/micro.lms"
	echo "$output" > "$BATS_FILE_TMPDIR/ppl.json"
	run -0 "$PYTHON" - "$BATS_FILE_TMPDIR/ppl.json" "$(cat "$BATS_FILE_TMPDIR/ref-ppl")" "$MICRO/reference.json" <<'PY'
import json, sys
got = json.load(open(sys.argv[1])); ref = float(sys.argv[2]); r = json.load(open(sys.argv[3]))
assert got["tokens"] == r["tokens"]["novels-test.txt"], got
assert got["windows"] == r["windows_novels_test"], got
err = abs(got["perplexity"] - ref) / ref
print(got["perplexity"], ref, err)
assert err < 5e-4, err
PY
}

@test "lm-eval --generate: greedy ids equal transformers' exactly" {
	n=$(( $(cat "$BATS_FILE_TMPDIR/ref-n") - 5 ))
	run -0 --separate-stderr lm-eval --generate "$(cat "$BATS_FILE_TMPDIR/ref-prompt")" -n "$n" --json \
		"$BATS_FILE_TMPDIR/micro.lms"
	got=$(echo "$output" | "$PYTHON" -c "import json,sys; print(' '.join(map(str, json.load(sys.stdin)['ids'])))")
	assert_equal "$got" "$(cat "$BATS_FILE_TMPDIR/ref-ids")"
	run -0 lm-eval --generate "The history of the" -n 3 "$BATS_FILE_TMPDIR/micro.lms"
	assert_output --regexp "^The history of the "
}

@test "lm-eval --generate --json: bytes that are not UTF-8 come out as U+FFFD, as Python's decode(errors=\"replace\") gives" {
	# a prompt of invalid sequences (overlong, surrogate, cut-off, stray continuation): the
	# JSON must be valid and its prompt what Python makes of the same bytes
	p=$(printf 'a\361\200\200\341\200\302b\200c\355\240\200d\342\202')
	run -0 --separate-stderr lm-eval --generate "$p" -n 2 --json "$BATS_FILE_TMPDIR/micro.lms"
	[ -n "$output" ]
	printf '%s' "$p" > "$BATS_TEST_TMPDIR/p"
	echo "$output" | "$PYTHON" -c "
import json, sys
got = json.load(sys.stdin)
want = open(sys.argv[1], 'rb').read().decode('utf-8', 'replace')
assert got['prompt'] == want, (got['prompt'], want)
assert isinstance(got['text'], str) and len(got['ids']) > 2
" "$BATS_TEST_TMPDIR/p"
}

@test "lm-eval --generate: the fused decode product gives the tile path's greedy ids (f16, q4 with packed embeddings, q3 per row; -j 1, 2)" {
	# opt-micro is f16 as imported; LM_NO_MATVEC=1 sends every product back through the f32
	# tiles and sgemv/sgemm (the path before nn/matvec), which computes the ids to compare with
	lm-quant -q -b 4 -g 32 --include '*embed_tokens*' --include '*proj.weight' \
		--include '*fc?.weight' -o "$BATS_TEST_TMPDIR/q4.lms" "$BATS_FILE_TMPDIR/micro.lms"
	lm-quant -q -b 3 -g 0 -o "$BATS_TEST_TMPDIR/q3.lms" "$BATS_FILE_TMPDIR/micro.lms"
	cp "$BATS_FILE_TMPDIR/micro.lms" "$BATS_TEST_TMPDIR/f16.lms"
	run -0 lm-info "$BATS_TEST_TMPDIR/q4.lms"
	assert_output --regexp "embed_tokens.weight +q4g32 "
	ids() { "$PYTHON" -c "import json,sys; print(' '.join(map(str, json.load(sys.stdin)['ids'])))"; }
	for m in f16 q4 q3; do
		for j in 1 2; do
			old=$(LM_NO_MATVEC=1 lm-eval --generate "The history of the" -n 24 -j "$j" --json -q \
				"$BATS_TEST_TMPDIR/$m.lms" | ids)
			new=$(lm-eval --generate "The history of the" -n 24 -j "$j" --json -q \
				"$BATS_TEST_TMPDIR/$m.lms" | ids)
			echo "$m -j $j: $new"
			[ "$(echo "$old" | wc -w)" -eq 29 ]
			assert_equal "$new" "$old"
		done
	done
}

@test "lm-eval --act8: 4-bit decode on 8-bit activations moves a perplexity by < 1 %, and nothing else" {
	# windows of 8 tokens one at a time (-b 1) put every product through the decode path
	# (8 rows of x at most), where --act8 applies
	lm-quant -q -b 4 -g 128 -o "$BATS_TEST_TMPDIR/q4.lms" "$BATS_FILE_TMPDIR/micro.lms"
	ppl() { lm-eval --ppl "$DATA/novels-eval/novels-test.txt" -s 8 -b 1 -w 300 --json -q "$@" | json_field perplexity; }
	a=$(ppl "$BATS_TEST_TMPDIR/q4.lms")
	b=$(ppl --act8 "$BATS_TEST_TMPDIR/q4.lms")
	echo "q4 $a, --act8 $b"
	# it applies (the values change), within 1 % (opt-micro: 0.13 % over 2000 windows)
	[ "$a" != "$b" ]
	"$PYTHON" -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); assert abs(b - a) / a < 0.01, (a, b)" "$a" "$b"
	# f16 weights are not 4-bit: the same ids with --act8 as without
	x=$(lm-eval --generate "The history of the" -n 12 "$BATS_FILE_TMPDIR/micro.lms")
	y=$(lm-eval --generate "The history of the" -n 12 --act8 "$BATS_FILE_TMPDIR/micro.lms")
	assert_equal "$y" "$x"
	# and --generate runs on it
	run -0 lm-eval --generate "The history of the" -n 12 --act8 -q "$BATS_TEST_TMPDIR/q4.lms"
	[ -n "$output" ]
}

@test "lm-eval: pre-tokenized ids (--save-ids) give the same perplexity as the text" {
	lm-eval --ppl "$DATA/novels-eval/novels-calib.txt" --seqlen 128 --windows 3 --json \
		--save-ids "$BATS_TEST_TMPDIR/ids.lms" "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/a.json"
	lm-eval --ppl "$BATS_TEST_TMPDIR/ids.lms" --seqlen 128 --windows 3 --json \
		"$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/b.json"
	a=$(json_field perplexity < "$BATS_TEST_TMPDIR/a.json")
	b=$(json_field perplexity < "$BATS_TEST_TMPDIR/b.json")
	assert_equal "$a" "$b"
	# the ids file is itself a valid stream
	run -0 lm-info "$BATS_TEST_TMPDIR/ids.lms"
	assert_output --regexp "ids +i32 +[0-9]+ "
}

@test "lm-eval: -j 1 and -j 2 agree up to float reassociation" {
	for j in 1 2; do
		lm-eval -j $j --ppl "$DATA/novels-eval/novels-calib.txt" --seqlen 256 --windows 4 --json \
			"$BATS_FILE_TMPDIR/micro.lms" | json_field perplexity > "$BATS_TEST_TMPDIR/p$j"
	done
	run -0 "$PYTHON" -c "a, b = float(open('$BATS_TEST_TMPDIR/p1').read()), float(open('$BATS_TEST_TMPDIR/p2').read()); assert abs(a - b) / a < 1e-5, (a, b)"
}

@test "lm-eval: f16, bf16 and f32 streams of the same weights agree" {
	lm-import -t f32 "$MICRO" > "$BATS_TEST_TMPDIR/32.lms"
	a=$(lm-eval --ppl "$DATA/novels-eval/novels-calib.txt" --seqlen 256 --windows 2 --json "$BATS_TEST_TMPDIR/32.lms" | json_field perplexity)
	b=$(lm-eval --ppl "$DATA/novels-eval/novels-calib.txt" --seqlen 256 --windows 2 --json "$BATS_FILE_TMPDIR/micro.lms" | json_field perplexity)
	run -0 "$PYTHON" -c "a, b = $a, $b; assert abs(a - b) / a < 1e-5, (a, b)"
}

@test "lm-eval: post-LN model with projections runs (fixture)" {
	# the fixtures carry no tokenizer: use ids written by another model's tokenizer
	"$PYTHON" - "$BATS_TEST_TMPDIR/ids.lms" <<'PY'
import sys, zlib, msgpack, struct
ids = [2] + [(i * 37) % 1000 for i in range(1, 64)]
body = struct.pack("<%di" % len(ids), *ids)
hdr = {"format": "lm-stream", "version": [1, 0], "endian": "little",
       "model": {"architecture": "opt", "vocab_size": 1000, "hidden_size": 64, "num_layers": 2,
                 "num_heads": 4, "ffn_dim": 192, "max_positions": 64, "word_embed_proj_dim": 32}}
with open(sys.argv[1], "wb") as f:
    f.write(msgpack.packb(hdr))
    f.write(msgpack.packb({"kind": "tensor", "name": "ids", "dtype": "i32", "shape": [len(ids)],
                           "nbytes": len(body), "crc32": zlib.crc32(body), "attrs": {}}))
    f.write(msgpack.packb(body, use_bin_type=True))
    f.write(msgpack.packb({"kind": "end", "tensor_count": 1, "payload_bytes": len(body)}))
PY
	lm-import "$FIX/post-ln-proj" > "$BATS_TEST_TMPDIR/pl.lms"
	run -0 lm-eval --ppl "$BATS_TEST_TMPDIR/ids.lms" --seqlen 32 --json "$BATS_TEST_TMPDIR/pl.lms"
	assert_output --partial '"windows": 2'
}

bad() { # expected-status message-part command...
	local st=$1 msg=$2; shift 2
	run "-$st" --separate-stderr "$@"
	assert_one_line_error lm-eval
	[ -z "$output" ] || { echo "report printed: $output"; return 1; }
	output=$stderr
	assert_output --partial "$msg"
}

@test "lm-eval: empty text and text shorter than one window" {
	: > "$BATS_TEST_TMPDIR/empty.txt"
	bad 1 "fewer than one window" lm-eval --ppl "$BATS_TEST_TMPDIR/empty.txt" "$BATS_FILE_TMPDIR/micro.lms"
	echo "a few words only" > "$BATS_TEST_TMPDIR/short.txt"
	bad 1 "fewer than one window" lm-eval --ppl "$BATS_TEST_TMPDIR/short.txt" "$BATS_FILE_TMPDIR/micro.lms"
	bad 1 "No such file" lm-eval --ppl "$BATS_TEST_TMPDIR/none.txt" "$BATS_FILE_TMPDIR/micro.lms"
}

@test "lm-eval: a seqlen above the model's positions is a usage error" {
	bad 2 "exceeds the model's 512 positions" lm-eval --ppl "$DATA/novels-eval/novels-test.txt" --seqlen 513 \
		"$BATS_FILE_TMPDIR/micro.lms"
}

@test "lm-eval: text given to a stream without tokenizer blobs" {
	bad 1 "carries no tokenizer" lm-eval --ppl "$DATA/novels-eval/novels-test.txt" "$BATS_FILE_TMPDIR/pre.lms"
}

@test "lm-eval: NaN in a weight is reported with the tensor's name" {
	"$PYTHON" - "$BATS_FILE_TMPDIR/micro.lms" "$BATS_TEST_TMPDIR/nan.lms" <<'PY'
import sys, zlib, msgpack
u = msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, max_buffer_size=1 << 30)
out = open(sys.argv[2], "wb")
out.write(msgpack.packb(next(u)))
for rec in u:
    if rec["kind"] == "end":
        out.write(msgpack.packb(rec)); break
    body = b""
    while len(body) < rec["nbytes"]:
        body += next(u)
    if rec["name"] == "model.decoder.layers.2.fc1.weight":
        body = body[:100] + b"\x00\x7e" + body[102:]   # f16 NaN
        rec["crc32"] = zlib.crc32(body)
    out.write(msgpack.packb(rec)); out.write(msgpack.packb(body, use_bin_type=True))
PY
	bad 1 "model.decoder.layers.2.fc1.weight" lm-eval --ppl "$DATA/novels-eval/novels-calib.txt" --seqlen 128 \
		--windows 1 "$BATS_TEST_TMPDIR/nan.lms"
}

@test "lm-eval: a truncated upstream stream fails, no report" {
	bad 1 "unexpected end of stream" bash -c "set -o pipefail; head -c 20000000 '$BATS_FILE_TMPDIR/micro.lms' | lm-eval --ppl '$DATA/novels-eval/novels-calib.txt' --seqlen 128 --windows 1"
}

has_bf16() { grep -q avx512_bf16 /proc/cpuinfo; }

@test "lm-eval --compute bf16: perplexity within 0.1% of f32 on opt-micro (novels-test, seqlen 512)" {
	reference_run
	has_bf16 || skip "this CPU has no avx512_bf16: --compute bf16 computes in f32 (the next test checks that fallback)"
	for c in f32 bf16; do
		run -0 --separate-stderr lm-eval --compute $c --ppl "$DATA/novels-eval/novels-test.txt" --seqlen 512 \
			--json "$BATS_FILE_TMPDIR/micro.lms"
		echo "$output" > "$BATS_TEST_TMPDIR/$c.json"
		[ -z "$stderr" ] || { echo "stderr: $stderr"; return 1; }
	done
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/f32.json" "$BATS_TEST_TMPDIR/bf16.json" <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
assert a["tokens"] == b["tokens"] and a["windows"] == b["windows"], (a, b)
err = abs(b["perplexity"] - a["perplexity"]) / a["perplexity"]
print(a["perplexity"], b["perplexity"], err)
assert 0 < err < 1e-3, err
PY
}

@test "lm-eval --compute: bf16 with LM_NO_BF16=1 is f32 exactly, with one note; an unknown value is a usage error" {
	ppl() { lm-eval -q --ppl "$DATA/novels-eval/novels-calib.txt" --seqlen 128 --windows 3 --json "$@" \
		"$BATS_FILE_TMPDIR/micro.lms" | "$PYTHON" -c "import json,sys; d=json.load(sys.stdin); print(repr(d['mean_nll']), repr(d['perplexity']))"; }
	f32=$(ppl)
	assert_equal "$(ppl --compute f32)" "$f32"
	run -0 --separate-stderr env LM_NO_BF16=1 lm-eval --compute bf16 --ppl "$DATA/novels-eval/novels-calib.txt" \
		--seqlen 128 --windows 3 --json "$BATS_FILE_TMPDIR/micro.lms"
	got=$(echo "$output" | "$PYTHON" -c "import json,sys; d=json.load(sys.stdin); print(repr(d['mean_nll']), repr(d['perplexity']))")
	assert_equal "$got" "$f32"
	assert_one_line_error lm-eval
	[[ "$stderr" == *"--compute bf16"*"computing in f32"* ]] || { echo "stderr: $stderr"; return 1; }
	if has_bf16; then
		# the bf16 path itself on a few windows (the sanitized pass runs this one too)
		bf=$(ppl --compute bf16)
		[ "$bf" != "$f32" ] || { echo "bf16 gave f32's bits: $bf"; return 1; }
	fi
	bad 2 "--compute: 'f16' is not f32 or bf16" lm-eval --compute f16 --ppl x "$BATS_FILE_TMPDIR/micro.lms"
}
