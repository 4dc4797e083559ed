#!/usr/bin/env bats
# lm-init: shapes, determinism, dtypes, bad options

load helper

@test "lm-init --help and man page" {
	run -0 lm-init --help
	assert_line --index 0 "usage: lm-init --like NAME [-t f32|f16|bf16] [--seed N] [options] [-o FILE]"
	run -0 mandoc -Tlint -Wwarning "$TOP/man/lm-init.1"
	assert_output ""
}

@test "lm-init: the same seed gives byte-identical streams, another seed does not" {
	lm-init --like opt-125m --layers 1 --seed 7 > "$BATS_TEST_TMPDIR/a.lms"
	lm-init --like opt-125m --layers 1 --seed 7 > "$BATS_TEST_TMPDIR/b.lms"
	lm-init --like opt-125m --layers 1 --seed 8 > "$BATS_TEST_TMPDIR/c.lms"
	cmp "$BATS_TEST_TMPDIR/a.lms" "$BATS_TEST_TMPDIR/b.lms"
	run ! cmp -s <(tensor_digest "$BATS_TEST_TMPDIR/a.lms") <(tensor_digest "$BATS_TEST_TMPDIR/c.lms")
}

@test "lm-init: opt-350m shape has projections and post-LayerNorm; f16 output" {
	run -0 bash -c "lm-init --like opt-350m --layers 1 -t f16 | lm-info"
	assert_output --partial "word_embed_proj_dim 512, post-LayerNorm"
	assert_line --regexp "^model.decoder.project_in.weight +f16 +1024x512 "
	assert_line --regexp "^model.decoder.project_out.weight +f16 +512x1024 "
	refute_output --partial "model.decoder.final_layer_norm"
}

@test "lm-init: weights have the asked standard deviation" {
	run -0 bash -c "lm-init --like opt-micro --layers 1 --std 0.5 --no-tokenizer | lm-export -o '$BATS_TEST_TMPDIR/o' && echo ok"
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/o/model.safetensors" <<'PY'
import json, struct, sys, array, statistics
raw = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n]); e = h["model.decoder.layers.0.fc1.weight"]
a = array.array("f"); a.frombytes(raw[8 + n + e["data_offsets"][0]: 8 + n + e["data_offsets"][1]])
sd = statistics.pstdev(a); m = statistics.fmean(a)
assert abs(sd - 0.5) < 0.01 and abs(m) < 0.01, (m, sd)
b = h["model.decoder.layers.0.fc1.bias"]; assert not any(raw[8 + n + b["data_offsets"][0]: 8 + n + b["data_offsets"][1]])
print("ok")
PY
	assert_output "ok"
}

@test "lm-init: bad shapes and options" {
	run -2 --separate-stderr lm-init --like opt-9t
	assert_one_line_error lm-init
	run -2 --separate-stderr lm-init
	assert_one_line_error lm-init
	run -2 --separate-stderr lm-init --like opt-125m -t q4
	assert_one_line_error lm-init
	run -2 --separate-stderr lm-init --like opt-125m --layers 0
	assert_one_line_error lm-init
}
