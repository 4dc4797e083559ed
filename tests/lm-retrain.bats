#!/usr/bin/env bats
# lm-retrain: every mode runs the real code path on few steps and small windows; pruned
# zeros stay zero and frozen tensors stay bit for bit (checked by an independent reader in
# Python); same seed, same bytes; the adapters' merge gives the loss training saw; every
# bad input is one line on stderr and no stream

load helper

setup_file() {
	lm-import "$MICRO" > "$BATS_FILE_TMPDIR/micro.lms"
	lm-import -t f32 "$MICRO" > "$BATS_FILE_TMPDIR/micro32.lms"
	# reads and compares streams: stream.py prune|check ...
	cat > "$BATS_FILE_TMPDIR/stream.py" <<'PY'
import math, sys, zlib, msgpack
import numpy as np  # whole matrices as arrays: as Python floats each check took 4 s
LINEAR = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "out_proj.weight", "fc1.weight", "fc2.weight")

def read(path):
    u = msgpack.Unpacker(open(path, "rb"), raw=False, max_buffer_size=1 << 30)
    hdr, recs, order = next(u), {}, []
    for rec in u:
        if rec["kind"] == "end":
            break
        body = b""
        while len(body) < rec["nbytes"]:
            body += next(u)
        recs[rec["name"]] = (rec, body)
        if rec["kind"] == "tensor":
            order.append(rec["name"])
    return hdr, recs, order

def values(rec, body):
    if rec["dtype"] == "bf16":
        return (np.frombuffer(body, "<u2").astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(body, {"f16": "<f2", "f32": "<f4"}[rec["dtype"]])

def write(path, hdr, recs):
    out = open(path, "wb")
    out.write(msgpack.packb(hdr))
    n = pb = 0
    for name, (rec, body) in recs.items():
        rec = dict(rec, nbytes=len(body), crc32=zlib.crc32(body))
        out.write(msgpack.packb(rec))
        out.write(msgpack.packb(body, use_bin_type=True))
        n += rec["kind"] == "tensor"
        pb += len(body)
    nb = sum(1 for r, _ in recs.values() if r["kind"] == "blob")
    out.write(msgpack.packb({"kind": "end", "tensor_count": n, "blob_count": nb, "payload_bytes": pb}))

cmd = sys.argv[1]
if cmd == "prune":
    # magnitude 0.5 per matrix of the six linears: zero every |w| <= the k-th smallest
    hdr, recs, order = read(sys.argv[2])
    for name in order:
        rec, body = recs[name]
        if not name.endswith(LINEAR):
            continue
        assert rec["dtype"] in ("f16", "f32"), rec["dtype"]
        w = values(rec, body)
        thr = np.sort(np.abs(w))[int(math.floor(0.5 * len(w))) - 1]
        recs[name] = (rec, np.where(np.abs(w) <= thr, w.dtype.type(0), w).tobytes())
    write(sys.argv[3], hdr, recs)
elif cmd == "check":
    # check.py IN OUT TRAINED-GLOB...: zeros of every matrix unchanged; tensors outside the
    # globs bit-identical (payload and attrs); inside, some changed, with a "retrain" attr
    import fnmatch
    src, dst = read(sys.argv[2]), read(sys.argv[3])
    globs = sys.argv[4:]
    assert src[2] == dst[2], "tensor order changed"
    assert dst[0]["provenance"][-1]["tool"] == "lm-retrain"
    changed = 0
    for name in src[2]:
        (r0, b0), (r1, b1) = src[1][name], dst[1][name]
        assert r0["dtype"] == r1["dtype"] and r0["shape"] == r1["shape"], name
        if len(r0["shape"]) == 2:
            z0, z1 = values(r0, b0) == 0, values(r1, b1) == 0
            assert (z0 == z1).all(), "%s: zeros changed (%d -> %d)" % (name, z0.sum(), z1.sum())
        if not any(fnmatch.fnmatchcase(name, g) for g in globs):
            assert b0 == b1, "%s changed but does not train" % name
            assert r0.get("attrs", {}) == r1.get("attrs", {}), name
        else:
            assert "retrain" in r1["attrs"], name
            for k, v in r0.get("attrs", {}).items():
                assert r1["attrs"][k] == v, (name, k)
            changed += b0 != b1
    assert changed > 0, "nothing changed"
    print(changed, "tensors changed")
PY
	"$PYTHON" "$BATS_FILE_TMPDIR/stream.py" prune "$BATS_FILE_TMPDIR/micro.lms" "$BATS_FILE_TMPDIR/mag.lms"
	"$PYTHON" "$BATS_FILE_TMPDIR/stream.py" prune "$BATS_FILE_TMPDIR/micro32.lms" "$BATS_FILE_TMPDIR/mag32.lms"
	lm-import "$FIX/pre-ln" > "$BATS_FILE_TMPDIR/pre.lms"
	# a small training text and a smaller one for overfitting
	head -c 30000 "$DATA/novels-eval/novels-retrain.txt" > "$BATS_FILE_TMPDIR/train.txt"
	head -c 600 "$DATA/novels-eval/novels-calib.txt" > "$BATS_FILE_TMPDIR/tiny.txt"
	head -c 20000 "$DATA/novels-eval/novels-test.txt" > "$BATS_FILE_TMPDIR/valid.txt"
}

# a short run: retrain [args...] on the pruned model into $BATS_TEST_TMPDIR/out.lms
SMALL="--steps 3 --batch 2 --seqlen 64"
retrain() {
	run -0 --separate-stderr lm-retrain -j 1 $SMALL -d "$BATS_FILE_TMPDIR/train.txt" "$@" \
		-o "$BATS_TEST_TMPDIR/out.lms" "$BATS_FILE_TMPDIR/mag.lms"
}
check() { # trained-globs...
	run -0 "$PYTHON" "$BATS_FILE_TMPDIR/stream.py" check "$BATS_FILE_TMPDIR/mag.lms" \
		"$BATS_TEST_TMPDIR/out.lms" "$@"
	echo "$output"
}

# perplexity on 16 windows of 64 tokens of valid.txt (novels-test.txt, not trained on)
ppl16() {
	lm-eval -q --ppl "$BATS_FILE_TMPDIR/valid.txt" --seqlen 64 --windows 16 --json "$1" |
		"$PYTHON" -c "import json, sys; print(json.load(sys.stdin)['perplexity'])"
}

LAYER='model.decoder.layers.*'
BIAS_LN=('*.bias' '*layer_norm*')
LINEARS=("$LAYER.q_proj.weight" "$LAYER.k_proj.weight" "$LAYER.v_proj.weight"
	"$LAYER.out_proj.weight" "$LAYER.fc1.weight" "$LAYER.fc2.weight")

@test "lm-retrain --help, --version and man page" {
	run -0 lm-retrain --help
	assert_line --index 0 --partial "usage: lm-retrain (--perp | --full | --train GLOB"
	run -0 lm-retrain --version
	assert_output --regexp "^lm-retrain [0-9]"
	run -0 mandoc -Tlint -Wwarning "$TOP/man/lm-retrain.1"
	assert_output ""
}

@test "lm-retrain: usage errors exit 2 with one line" {
	for args in "-d x" "--perp" "--perp --lora 2 --mask-lora 2 -d x" "--perp --lora-head -d x" \
		"--perp --reconstruct -c x" "--perp -d x --schedule steep" "--perp -d x --teacher y" \
		"--perp -d x --seqlen 513" "--perp -d x --dropout 1"; do
		# shellcheck disable=SC2086
		run -2 --separate-stderr lm-retrain $args "$BATS_FILE_TMPDIR/mag.lms"
		assert_one_line_error lm-retrain
		[ -z "$output" ] || return 1
	done
}

@test "lm-retrain --perp: biases and LayerNorm train, matrices bit-identical, zeros kept" {
	retrain --perp
	check "${BIAS_LN[@]}"
	assert_output --partial "tensors changed"
	# exactly PERP's subset: 13,824 values in opt-micro
	run -0 --separate-stderr lm-retrain -v -j 1 $SMALL --steps 1 -d "$BATS_FILE_TMPDIR/train.txt" --perp \
		-o "$BATS_TEST_TMPDIR/x.lms" "$BATS_FILE_TMPDIR/mag.lms"
	[[ "$stderr" == *"training 13824 values in 42 tensors ("* ]]
}

@test "lm-retrain --full: every decoder-layer tensor trains, pruned zeros stay zero" {
	retrain --full --lr 1e-3
	check "$LAYER" 'model.decoder.final_layer_norm.*'
	# all 24 matrices and 42 vectors changed (3,159,552 values)
	assert_output --partial "66 tensors changed"
}

@test "lm-retrain --train GLOB: only the matching tensors change" {
	retrain --train "$LAYER.fc?.bias" --lr 1e-2
	check "$LAYER.fc?.bias"
	assert_output --partial "8 tensors changed"
	retrain --train "$LAYER.fc1.weight" --train 'model.decoder.embed_positions.weight' --lr 1e-3
	check "$LAYER.fc1.weight" 'model.decoder.embed_positions.weight'
	assert_output --partial "5 tensors changed"
}

@test "lm-retrain LoRA kinds: sparsity kept through the merge" {
	for kind in --lora --mask-lora --scale-lora; do
		retrain --perp $kind 4 --lr 1e-2
		check "${BIAS_LN[@]}" "${LINEARS[@]}"
	done
}

@test "lm-retrain --lora-head: the tied head (embed_tokens) changes too" {
	retrain --mask-lora 2 --lora-head --lr 1e-2
	check "${LINEARS[@]}" 'model.decoder.embed_tokens.weight'
}

@test "lm-retrain: the merged model gives the loss the adapters gave (f32 streams)" {
	# mask and scale kinds on the pruned f32 model, the standard kind on the dense one (its
	# merge keeps pruned zeros, which would change a pruned model's loss)
	for case in "mask-lora mag32" "scale-lora mag32" "lora micro32"; do
		set -- $case
		run -0 --separate-stderr lm-retrain -v -j 1 $SMALL --perp --$1 4 --lr 1e-2 \
			-d "$BATS_FILE_TMPDIR/train.txt" --eval "$BATS_FILE_TMPDIR/valid.txt" --eval-windows 4 \
			-o "$BATS_TEST_TMPDIR/m.lms" "$BATS_FILE_TMPDIR/$2.lms"
		want=$(echo "$stderr" | sed -n 's/.*step 3: validation loss \([0-9.]*\).*/\1/p')
		first=$(echo "$stderr" | sed -n 's/.*step 0: validation loss \([0-9.]*\).*/\1/p')
		[ -n "$want" ] || return 1
		[ -n "$first" ] || return 1
		got=$(lm-eval -q --ppl "$BATS_FILE_TMPDIR/valid.txt" --seqlen 64 --windows 4 --json \
			"$BATS_TEST_TMPDIR/m.lms" | "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)['mean_nll'])")
		run -0 "$PYTHON" -c "a, b, c = $want, $got, $first; print('$1', c, a, b)
assert abs(a - b) / a < 1e-5, (a, b)
assert abs(a - c) > 1e-4, 'training changed nothing'"
		echo "$output"
	done
}

@test "lm-retrain: the loss goes down on a tiny text it sees again and again" {
	run -0 --separate-stderr lm-retrain -j 1 --perp --mask-lora 4 --steps 12 --batch 2 --seqlen 64 \
		--warmup 0 --lr 1e-2 -d "$BATS_FILE_TMPDIR/tiny.txt" --log "$BATS_TEST_TMPDIR/log" \
		-o "$BATS_TEST_TMPDIR/out.lms" "$BATS_FILE_TMPDIR/mag.lms"
	run -0 "$PYTHON" -c "
losses = [float(l.split()[3]) for l in open('$BATS_TEST_TMPDIR/log') if l.startswith('step ')]
print(losses)
assert len(losses) == 12 and sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3"
}

@test "lm-retrain: the same seed gives the same bytes at -j 1, another seed other bytes" {
	for run in "1 a" "1 b" "2 c"; do
		set -- $run
		lm-retrain -j 1 $SMALL --perp --scale-lora 2 --dropout 0.1 --seed $1 \
			-d "$BATS_FILE_TMPDIR/train.txt" "$BATS_FILE_TMPDIR/mag.lms" > "$BATS_TEST_TMPDIR/$2.lms"
	done
	cmp "$BATS_TEST_TMPDIR/a.lms" "$BATS_TEST_TMPDIR/b.lms"
	run ! cmp -s "$BATS_TEST_TMPDIR/a.lms" "$BATS_TEST_TMPDIR/c.lms"
}

@test "lm-retrain --reconstruct: layer-wise against the dense teacher, the error to it falls, zeros kept" {
	# the same run at learning rate 0 is the error before reconstruction: the adapters stay
	# zero, every layer as pruned, each layer's MSE to the teacher's output on its inputs
	for lr in 0 1e-2; do
		run -0 --separate-stderr lm-retrain -v -j 1 --reconstruct --perp --mask-lora 4 --steps 4 --batch 2 \
			--seqlen 64 --nsamples 4 --lr $lr --teacher "$BATS_FILE_TMPDIR/micro.lms" \
			-c "$DATA/novels-eval/novels-calib.txt" -o "$BATS_TEST_TMPDIR/out$lr.lms" "$BATS_FILE_TMPDIR/mag.lms"
		echo "$stderr" | tee "$BATS_TEST_TMPDIR/err$lr"
	done
	# every layer's error to the teacher is at least 20 % lower after its 4 steps
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/err0" "$BATS_TEST_TMPDIR/err1e-2" <<'PY'
import re, sys
mse = [[float(x) for x in re.findall(r"layer \d+: MSE to the teacher (\S+) ", open(f).read())] for f in sys.argv[1:]]
print("before", mse[0], "after", mse[1])
assert len(mse[0]) == len(mse[1]) == 4
for l, (b, a) in enumerate(zip(*mse)):
    assert a < 0.8 * b, (l, b, a)
PY
	echo "$output"
	# and the model as a whole moves towards the teacher: on held-out text (not the
	# calibration text) the perplexity gap to the dense model shrinks by 10 % or more
	run -0 "$PYTHON" -c "
t, p, z, r = $(ppl16 "$BATS_FILE_TMPDIR/micro.lms"), $(ppl16 "$BATS_FILE_TMPDIR/mag.lms"), $(ppl16 "$BATS_TEST_TMPDIR/out0.lms"), $(ppl16 "$BATS_TEST_TMPDIR/out1e-2.lms")
print('teacher', t, 'pruned', p, 'lr 0', z, 'reconstructed', r)
assert z == p, 'lr 0 changed the model'
assert abs(r - t) < 0.9 * abs(p - t)"
	echo "$output"
	cp "$BATS_TEST_TMPDIR/out1e-2.lms" "$BATS_TEST_TMPDIR/out.lms"
	check "$LAYER.*.bias" "$LAYER.*layer_norm*" "${LINEARS[@]}"
	# the teacher must have the student's shape
	run -1 --separate-stderr lm-retrain --reconstruct --perp --teacher "$BATS_FILE_TMPDIR/pre.lms" \
		-c "$DATA/novels-eval/novels-calib.txt" "$BATS_FILE_TMPDIR/mag.lms"
	assert_one_line_error lm-retrain
	[[ "$stderr" == *"the teacher's shape differs"* ]]
}

@test "lm-retrain: validation loss lines with --eval and --eval-every" {
	run -0 --separate-stderr lm-retrain -v -j 1 $SMALL --steps 4 --perp --eval-every 2 \
		-d "$BATS_FILE_TMPDIR/train.txt" --eval "$BATS_FILE_TMPDIR/valid.txt" --eval-windows 2 \
		-o "$BATS_TEST_TMPDIR/out.lms" "$BATS_FILE_TMPDIR/mag.lms"
	for s in 0 2 4; do
		[[ "$stderr" == *"step $s: validation loss"* ]] || return 1
	done
}

@test "lm-retrain: a post-LN model with projections trains on token ids (fixture)" {
	"$PYTHON" - "$BATS_TEST_TMPDIR/ids.lms" <<'PY'
import sys, zlib, msgpack, struct
ids = [2] + [(i * 37) % 1000 for i in range(1, 400)]
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
	run -0 --separate-stderr lm-retrain -j 1 --full --train 'model.decoder.project_*' --steps 3 \
		--batch 2 --seqlen 32 -d "$BATS_TEST_TMPDIR/ids.lms" -o "$BATS_TEST_TMPDIR/out.lms" \
		"$BATS_TEST_TMPDIR/pl.lms"
	run -0 lm-eval --ppl "$BATS_TEST_TMPDIR/ids.lms" --seqlen 32 --json "$BATS_TEST_TMPDIR/out.lms"
	assert_output --partial '"windows": 12'
}

bad() { # expected-status message-part command...
	local st=$1 msg=$2; shift 2
	run "-$st" --separate-stderr "$@"
	assert_one_line_error lm-retrain
	[ -z "$output" ] || { echo "stream written: ${#output} bytes"; return 1; }
	output=$stderr
	assert_output --partial "$msg"
}

@test "lm-retrain: data shorter than one window" {
	bad 1 "fewer than one window of 512" lm-retrain --perp -d "$BATS_FILE_TMPDIR/tiny.txt" \
		"$BATS_FILE_TMPDIR/mag.lms"
	: > "$BATS_TEST_TMPDIR/empty.txt"
	bad 1 "fewer than one window" lm-retrain --perp -d "$BATS_TEST_TMPDIR/empty.txt" \
		"$BATS_FILE_TMPDIR/mag.lms"
	bad 1 "No such file" lm-retrain --perp -d "$BATS_TEST_TMPDIR/none.txt" "$BATS_FILE_TMPDIR/mag.lms"
}

@test "lm-retrain: a LoRA rank larger than the matrix" {
	bad 1 "LoRA rank 257 exceeds" lm-retrain --mask-lora 257 $SMALL -d "$BATS_FILE_TMPDIR/train.txt" \
		"$BATS_FILE_TMPDIR/mag.lms"
}

@test "lm-retrain: a learning rate that makes the loss NaN stops with the step, writes nothing" {
	bad 1 "not finite (last finite loss" lm-retrain --perp --lr 1e30 --warmup 0 --clip 0 $SMALL \
		--steps 10 -d "$BATS_FILE_TMPDIR/train.txt" "$BATS_FILE_TMPDIR/mag.lms"
	[[ "$stderr" =~ step\ [0-9]+: ]]
	# with -o, no file appears (nor its temporary)
	run -1 --separate-stderr lm-retrain --perp --lr 1e30 --warmup 0 --clip 0 $SMALL --steps 10 \
		-d "$BATS_FILE_TMPDIR/train.txt" -o "$BATS_TEST_TMPDIR/nan.lms" "$BATS_FILE_TMPDIR/mag.lms"
	[ ! -e "$BATS_TEST_TMPDIR/nan.lms" ]
	[ -z "$(ls "$BATS_TEST_TMPDIR" | grep nan.lms)" ]
}

@test "lm-retrain: a --train pattern that matches nothing" {
	bad 1 "--train 'model.decoder.layers.*.nothing' matches no tensor" lm-retrain \
		--train 'model.decoder.layers.*.nothing' $SMALL -d "$BATS_FILE_TMPDIR/train.txt" \
		"$BATS_FILE_TMPDIR/mag.lms"
}

@test "lm-retrain: a truncated upstream stream fails before training, nothing written" {
	bad 1 "unexpected end of stream" bash -c "set -o pipefail; head -c 20000000 '$BATS_FILE_TMPDIR/mag.lms' | lm-retrain --perp -d '$BATS_FILE_TMPDIR/train.txt'"
}

@test "lm-retrain in a pipeline: lm-eval reads what it writes" {
	run -0 bash -c "set -o pipefail; lm-retrain -j 1 $SMALL --perp -d '$BATS_FILE_TMPDIR/train.txt' \
		'$BATS_FILE_TMPDIR/mag.lms' | lm-eval -q --ppl '$BATS_FILE_TMPDIR/valid.txt' --seqlen 64 --windows 2"
	assert_output --partial "perplexity:"
}
