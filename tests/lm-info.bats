#!/usr/bin/env bats
# lm-info: the table, --json, totals against config.json, tokenizing, bad input

load helper

setup_file() {
	lm-import "$MICRO" > "$BATS_FILE_TMPDIR/micro.lms"
	lm-import "$FIX/post-ln-proj" > "$BATS_FILE_TMPDIR/pl.lms"
}

@test "lm-info --help and man page" {
	run -0 lm-info --help
	assert_line --index 0 "usage: lm-info [--json] [--tokenize TEXT] [FILE]"
	run -0 mandoc -Tlint -Wwarning "$TOP/man/lm-info.1"
	assert_output ""
	run -2 --separate-stderr lm-info --nope
}

@test "lm-info: totals equal the parameter count computed from config.json" {
	for m in "$MICRO:micro" "$FIX/post-ln-proj:pl"; do
		dir=${m%%:*} lms=$BATS_FILE_TMPDIR/${m##*:}.lms
		want=$("$PYTHON" - "$dir/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
C, L, F, V = c["hidden_size"], c["num_hidden_layers"], c["ffn_dim"], c["vocab_size"]
E, P = c.get("word_embed_proj_dim", C), c["max_position_embeddings"]
layer = 4 * (C * C + C) + (F * C + F) + (C * F + C) + 4 * C
n = V * E + (P + 2) * C + L * layer
if E != C: n += 2 * C * E
if c.get("do_layer_norm_before", True): n += 2 * C
print(n)
PY
)
		run -0 lm-info "$lms"
		assert_output --partial "total: "
		assert_output --regexp "total: [0-9]+ tensors, $want parameters"
	done
}

@test "lm-info --json: totals, per-tensor fields and blobs" {
	run -0 bash -c "lm-info --json '$BATS_FILE_TMPDIR/micro.lms' | $PYTHON -c '
import json, sys
d = json.load(sys.stdin)
t = d[\"tensors\"]
assert t[0][\"name\"] == \"model.decoder.embed_tokens.weight\" and t[0][\"shape\"] == [50272, 256]
assert t[-1][\"name\"] == \"model.decoder.final_layer_norm.bias\"
assert sum(x[\"params\"] for x in t) == d[\"totals\"][\"params\"]
assert abs(d[\"totals\"][\"bits_per_weight\"] - 16) < 1e-9
assert {b[\"name\"] for b in d[\"blobs\"]} >= {\"tokenizer/vocab.json\", \"tokenizer/merges.txt\"}
print(\"ok\")'"
	assert_output "ok"
}

@test "lm-info: sparsity counts exact zeros" {
	# zero a quarter of one f16 tensor's payload with python, fixing its CRC
	"$PYTHON" - "$BATS_FILE_TMPDIR/pl.lms" "$BATS_TEST_TMPDIR/z.lms" <<'PY'
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
    if rec["name"] == "model.decoder.layers.0.fc1.weight":
        body = bytes(len(body) // 4) + body[len(body) // 4:]
        rec["crc32"] = zlib.crc32(body)
    out.write(msgpack.packb(rec)); out.write(msgpack.packb(body, use_bin_type=True))
PY
	run -0 lm-info "$BATS_TEST_TMPDIR/z.lms"
	assert_line --regexp "^model.decoder.layers.0.fc1.weight +f32 +192x64 .* 25.00% "
}

@test "lm-info --tokenize uses the tokenizer carried in the stream" {
	run -0 lm-info --tokenize "Hello world" "$BATS_FILE_TMPDIR/micro.lms"
	assert_output "31414 232"
	run -1 --separate-stderr lm-info --tokenize "Hello" "$BATS_FILE_TMPDIR/pl.lms"
	assert_one_line_error lm-info
	output=$stderr
	assert_output --partial "no tokenizer"
}

@test "lm-info: a stream cut in the middle is an error, no report printed" {
	size=$(stat -c %s "$BATS_FILE_TMPDIR/micro.lms")
	head -c $((size / 2)) "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/cut.lms"
	run -1 --separate-stderr lm-info "$BATS_TEST_TMPDIR/cut.lms"
	assert_one_line_error lm-info
	[ -z "$output" ]
	output=$stderr
	assert_output --regexp "unexpected end of stream|input truncated"
}

@test "lm-info: a flipped payload byte is a CRC error naming the tensor" {
	cp "$BATS_FILE_TMPDIR/pl.lms" "$BATS_TEST_TMPDIR/f.lms"
	# flip bits of one byte in the middle of the file (inside the embeddings' payload): the
	# byte XOR 0x55 always differs from the byte, whatever the header's length puts there
	b=$(od -An -tu1 -j 20000 -N 1 "$BATS_FILE_TMPDIR/pl.lms" | tr -d ' ')
	printf "\\$(printf '%03o' $((b ^ 0x55)))" |
		dd of="$BATS_TEST_TMPDIR/f.lms" bs=1 seek=20000 conv=notrunc status=none
	run -1 cmp "$BATS_FILE_TMPDIR/pl.lms" "$BATS_TEST_TMPDIR/f.lms"
	assert_output --partial "byte 20001"
	run -1 --separate-stderr lm-info "$BATS_TEST_TMPDIR/f.lms"
	assert_one_line_error lm-info
	output=$stderr
	assert_output --regexp "tensor 'model.decoder.embed_tokens.weight': crc32 mismatch"
}

@test "lm-info: not a stream, empty input, missing file" {
	run -1 --separate-stderr lm-info "$FIX/pre-ln/config.json"
	assert_one_line_error lm-info
	output=$stderr
	assert_output --partial "not an lm-stream"
	run -1 --separate-stderr lm-info < /dev/null
	assert_one_line_error lm-info
	run -1 --separate-stderr lm-info "$BATS_TEST_TMPDIR/none.lms"
	assert_one_line_error lm-info
	output=$stderr
	assert_output --partial "No such file"
}

@test "lm-info: an upstream stage dying mid-pipe makes the reader fail" {
	run -1 --separate-stderr bash -c "set -o pipefail; head -c 100000 '$BATS_FILE_TMPDIR/micro.lms' | lm-info"
	output=$stderr
	assert_output --partial "lm-info: <stdin>: "
	assert_output --regexp "unexpected end of stream|input truncated"
}

@test "lm-info: writing to a full device is an error" {
	run -1 --separate-stderr bash -c "lm-info '$BATS_FILE_TMPDIR/micro.lms' > /dev/full"
	output=$stderr
	assert_output --partial "write error"
}

# --system: what the CPU has and which OpenBLAS core runs (common/base/blascore.c). The
# environment of a test run may force a core (OPENBLAS_CORETYPE); each test sets its own.
sys_field() { # FIELD [ENV...]: one field of lm-info --system --json, run under env -u/ENV
	local f=$1
	shift
	env -u OPENBLAS_CORETYPE -u LM_BLAS_CORE "$@" lm-info --system --json |
		"$PYTHON" -c 'import json, sys; v = json.load(sys.stdin)[sys.argv[1]]; print("null" if v is None else v)' "$f"
}

@test "lm-info --system: one JSON object with the CPU, the BLAS core and lmpipe's kernels" {
	run -0 --separate-stderr env -u OPENBLAS_CORETYPE lm-info --system --json
	[ -z "$stderr" ]
	echo "$output" | "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
for k in ("cpu", "cores", "features", "openblas_config", "blas_core", "blas_core_asked",
          "blas_core_reason", "blas_core_best", "blas_threads", "matvec", "bf16_gemm"):
    assert k in d, k
assert d["cores"] >= 1 and isinstance(d["features"], list), d
'
	run -0 env -u OPENBLAS_CORETYPE lm-info --system
	assert_line --regexp '^blas core +[A-Za-z0-9]+ \('
}

@test "lm-info --system: on a CPU with AVX-512 the AVX-512 core runs, whatever OpenBLAS chose" {
	best=$(sys_field blas_core_best)
	[ "$best" != null ] || skip "this CPU has no AVX-512: OpenBLAS's choice stands"
	core=$(sys_field blas_core)
	[ "${core,,}" = "${best,,}" ]
}

@test "lm-info --system: the program restarts on the core asked for (LM_BLAS_CORE)" {
	# a core OpenBLAS did not choose itself, so that only the restart can make it run
	own=$(sys_field blas_core LM_BLAS_CORE=openblas)
	grep -qw avx2 /proc/cpuinfo || skip "no AVX2"
	want=Haswell
	[ "${own,,}" != haswell ] || want=Sandybridge
	[ "$(sys_field blas_core LM_BLAS_CORE=$want)" = "$want" ]
	[ "$(sys_field blas_core_asked LM_BLAS_CORE=$want)" = "$want" ]
	[ "$(sys_field blas_core_reason LM_BLAS_CORE=$want)" = "LM_BLAS_CORE=$want" ]
	# LM_BLAS_CORE=openblas: no restart, OpenBLAS's own choice and nothing asked
	[ "$(sys_field blas_core_asked LM_BLAS_CORE=openblas)" = null ]
}

@test "lm-info --system: OPENBLAS_CORETYPE set by the user wins and is named" {
	[ "$(sys_field blas_core OPENBLAS_CORETYPE=Haswell)" = Haswell ]
	[ "$(sys_field blas_core_asked OPENBLAS_CORETYPE=Haswell)" = null ]
	[ "$(sys_field blas_core_reason OPENBLAS_CORETYPE=Haswell)" = "OPENBLAS_CORETYPE set in the environment" ]
}

@test "lm-info --system takes no stream: a file or --tokenize is a usage error" {
	run -2 --separate-stderr lm-info --system "$BATS_FILE_TMPDIR/micro.lms"
	[ -z "$output" ]
	run -2 --separate-stderr lm-info --system --tokenize hello
	[ -z "$output" ]
}

@test "lm-info --system: an OPENBLAS_CORETYPE this CPU cannot execute is dropped with one warning" {
	grep -qw avx512f /proc/cpuinfo && skip "this CPU executes OpenBLAS's AVX-512 cores"
	run -0 --separate-stderr env -u LM_BLAS_CORE OPENBLAS_CORETYPE=SkylakeX lm-info --system --json
	assert_one_line_error lm-info
	[[ "$stderr" == *"OPENBLAS_CORETYPE=SkylakeX needs instructions this CPU lacks"* ]]
	[[ "$output" == *"needs instructions this CPU lacks: OpenBLAS's own choice"* ]]
}
