#!/usr/bin/env bats
# lm-export: stream -> Hugging Face folder; import -> export -> import is bit-identical

load helper

@test "lm-export --help and man page" {
	run -0 lm-export --help
	assert_line --index 0 "usage: lm-export -o DIR [FILE]"
	run -0 mandoc -Tlint -Wwarning "$TOP/man/lm-export.1"
	assert_output ""
	run -2 --separate-stderr lm-export
	assert_one_line_error lm-export
}

@test "lm-export: import -> export -> import is bit-identical for every fixture and opt-micro" {
	for m in "$FIX/pre-ln" "$FIX/post-ln-proj" "$FIX/fp16" "$MICRO"; do
		out=$BATS_TEST_TMPDIR/$(basename "$m")
		lm-import "$m" > "$out.a.lms"
		lm-export -o "$out" < "$out.a.lms"
		lm-import "$out" > "$out.b.lms"
		cmp <(tensor_digest "$out.a.lms") <(tensor_digest "$out.b.lms")
		cmp <(lm-info --json "$out.a.lms" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["header"]["model"])') \
		    <(lm-info --json "$out.b.lms" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["header"]["model"])')
	done
	cmp "$MICRO/vocab.json" "$BATS_TEST_TMPDIR/opt-micro/vocab.json"
	cmp "$MICRO/merges.txt" "$BATS_TEST_TMPDIR/opt-micro/merges.txt"
}

@test "lm-export: model.safetensors follows the spec (header, offsets, 8-byte padding)" {
	lm-import "$FIX/post-ln-proj" | lm-export -o "$BATS_TEST_TMPDIR/o"
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/o/model.safetensors" "$FIX/post-ln-proj/model.safetensors" <<'PY'
import json, struct, sys
def load(p):
    raw = open(p, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return n, json.loads(raw[8:8 + n]), raw[8 + n:]
n, h, data = load(sys.argv[1])
assert n % 8 == 0 and h["__metadata__"] == {"format": "pt"}
pos = 0
for k, v in sorted(((k, v) for k, v in h.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0]):
    assert v["data_offsets"][0] == pos; pos = v["data_offsets"][1]
assert pos == len(data)
_, h0, d0 = load(sys.argv[2])
for k, v in h0.items():
    if k == "__metadata__": continue
    a, b = v["data_offsets"]; c, e = h[k]["data_offsets"]
    assert v["dtype"] == h[k]["dtype"] and v["shape"] == h[k]["shape"] and d0[a:b] == data[c:e], k
c = json.load(open(sys.argv[1].replace("model.safetensors", "config.json")))
assert c["model_type"] == "opt" and c["word_embed_proj_dim"] == 32 and c["do_layer_norm_before"] is False
print("ok")
PY
	assert_output "ok"
}

@test "lm-export: a truncated stream writes no model file" {
	lm-import "$FIX/pre-ln" > "$BATS_TEST_TMPDIR/m.lms"
	head -c 300000 "$BATS_TEST_TMPDIR/m.lms" > "$BATS_TEST_TMPDIR/cut.lms"
	run -1 --separate-stderr lm-export -o "$BATS_TEST_TMPDIR/o" "$BATS_TEST_TMPDIR/cut.lms"
	assert_one_line_error lm-export
	[ ! -e "$BATS_TEST_TMPDIR/o/model.safetensors" ]
	[ ! -e "$BATS_TEST_TMPDIR/o/config.json" ]
	run ls -A "$BATS_TEST_TMPDIR/o"
	assert_output ""
}
