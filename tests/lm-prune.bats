#!/usr/bin/env bats
# lm-prune: the three methods reproduce the reference perplexities of opt-micro; every
# pruned matrix has exactly the zeros its method defines (checked by an independent reader
# in Python, sparse layouts included: tests/sparse_layout.py); every bad input is one line on stderr and no stream

load helper

setup_file() {
	lm-import "$MICRO" > "$BATS_FILE_TMPDIR/micro.lms"
	# the reference setting: 32 windows of 512 tokens of novels-calib.txt
	echo "-c $DATA/novels-eval/novels-calib.txt --nsamples 32 --seqlen 512" > "$BATS_FILE_TMPDIR/cal"
	# checks a pruned stream against its input: check.py IN OUT MODE ARGS...
	cat > "$BATS_FILE_TMPDIR/check.py" <<'PY'
import math, os, sys, msgpack
import numpy as np  # whole matrices as arrays: as Python floats a check took 3-5 s
sys.path.insert(0, os.path.join(os.environ["TOP"], "tests"))
from sparse_layout import dense  # pruned matrices are stored sparse (--store sparse)
LINEAR = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "out_proj.weight", "fc1.weight", "fc2.weight")

def read(path):
    u = msgpack.Unpacker(open(path, "rb"), raw=False, max_buffer_size=1 << 30)
    hdr, recs = next(u), {}
    for rec in u:
        if rec["kind"] == "end":
            break
        body = b""
        while len(body) < rec["nbytes"]:
            body += next(u)
        recs[rec["name"]] = (rec, dense(rec, body))
    return hdr, recs

def values(rec, body):
    return np.frombuffer(body, {"f16": "<f2", "f32": "<f4"}[rec["dtype"]]).astype(np.float64)

def first(bad):  # the first failing index of a check, for its message
    return int(np.flatnonzero(bad)[0])

src, dst = read(sys.argv[1]), read(sys.argv[2])
mode, args = sys.argv[3], sys.argv[4:]
pruned = [n for n in src[1] if n.endswith(LINEAR)] if mode != "include" else args[1:]
assert list(src[1]) == list(dst[1]), "tensor order changed"
assert dst[0]["provenance"][-1]["tool"] == "lm-prune"
for n, (rec, body) in src[1].items():
    drec, dbody = dst[1][n]
    assert drec.get("dtype") == rec.get("dtype") and drec.get("shape") == rec.get("shape"), n
    if n not in pruned:
        assert dbody == body and "prune" not in drec.get("attrs", {}), "%s changed" % n

if mode == "global":
    allw = np.sort(np.concatenate([np.abs(values(*src[1][n])) for n in pruned]))
    gthr = allw[int(math.floor(float(args[0]) * len(allw))) - 1]
for n in pruned:
    rec, body = src[1][n]
    drec, dbody = dst[1][n]
    w, p = values(rec, body), values(drec, dbody)
    rows, cols = rec["shape"]
    z = p == 0.0
    zeros = int(z.sum())
    a = drec["attrs"]["prune"]
    assert abs(a["sparsity"] - zeros / len(p)) < 1e-12, (n, a, zeros)
    if mode in ("magnitude", "global", "include"):
        s = float(args[0])
        thr = gthr if mode == "global" else np.sort(np.abs(w))[int(math.floor(s * len(w))) - 1]
        # exactly the weights at or below the k-th smallest magnitude, the others untouched
        bad = ~((z & (np.abs(w) <= thr)) | ((p == w) & (np.abs(w) > thr)))
        assert not bad.any(), (n, w[first(bad)], p[first(bad)], thr)
        assert a["method"] == "magnitude" and a["pattern"] == "unstructured", a
    elif mode == "wanda":
        k = int(math.floor(float(args[0]) * cols))
        bad = z.reshape(rows, cols).sum(axis=1) != k
        assert not bad.any(), (n, first(bad))
        bad = ~(z | (p == w)).reshape(rows, cols).all(axis=1)
        assert not bad.any(), (n, first(bad))
        assert a["method"] == "wanda" and a["pattern"] == "unstructured", a
    # SparseGPT zeroes the columns of inputs that never fired (dead) on top of its mask
    dead = z.reshape(rows, cols).all(axis=0) if "sparsegpt" in (mode, args[-1]) else np.zeros(cols, bool)
    if mode == "sparsegpt":
        s, want = float(args[0]), int(dead.sum()) * rows
        for i1 in range(0, cols, 128):
            cnt = min(128, cols - i1)
            k = int(math.floor(s * rows * cnt)) + 1
            zb = int(z.reshape(rows, cols)[:, i1:i1 + cnt].sum())
            assert zb >= k, (n, i1, zb, k)
            want += k
        # an updated weight may round to an f16 zero: allow one in 10^4
        assert zeros <= want + max(2, len(p) // 10000), (n, zeros, want)
        assert int(((w != p) & ~z).sum()) > len(p) // 4, "%s: no update" % n
        assert a["method"] == "sparsegpt" and a["pattern"] == "unstructured", a
    elif mode == "nm":
        N, M, method = int(args[0]), int(args[1]), args[2]
        # zeros of each group of M (row-major), against N or its dead inputs if more
        d = np.tile(dead.reshape(-1, M).sum(axis=1), rows) if method == "sparsegpt" else 0
        bad = z.reshape(-1, M).sum(axis=1) != np.maximum(N, d)
        assert not bad.any(), (n, first(bad) * M)
        assert a["method"] == method and a["pattern"] == "%d:%d" % (N, M), a
if mode == "global":
    sp = [dst[1][n][0]["attrs"]["prune"]["sparsity"] for n in pruned]
    assert max(sp) - min(sp) > 0.1, "one threshold should give the matrices different sparsities"
print(len(pruned), "tensors checked")
PY
	# reference perplexities: the entry whose name starts with "<method>_0.5 "
	"$PYTHON" -c "
import json, sys
d = json.load(open('$MICRO/reference.json'))['ppl_novels_test']
for m in ('magnitude', 'wanda', 'sparsegpt'):
    print(m, [v for k, v in d.items() if k.split(' ')[0] == m + '_0.5'][0])" > "$BATS_FILE_TMPDIR/ref"
}

check() { run -0 "$PYTHON" "$BATS_FILE_TMPDIR/check.py" "$@"; }

# perplexity of a stream on the first 2 windows of 512 of novels-test.txt (or FILE SEQLEN)
ppl2() { # stream [file seqlen]
	lm-eval -q --ppl "${2:-$DATA/novels-eval/novels-test.txt}" --seqlen "${3:-512}" --windows 2 --json "$1" |
		"$PYTHON" -c "import json, sys; print(json.load(sys.stdin)['perplexity'])"
}

# the sparsity lm-info counts in every pruned linear (or the tensors matching REGEX) is in
# [LO, HI], and every other 2-D tensor has almost none (under 1 %, as in the input)
sparsity_of() { # stream lo hi [regex]
	lm-info --json "$1" | "$PYTHON" -c "
import json, re, sys
lo, hi, rx = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
n = 0
for t in json.load(sys.stdin)['tensors']:
    if re.search(rx, t['name']):
        assert lo <= t['sparsity'] <= hi, (t['name'], t['sparsity'])
        n += 1
    elif len(t['shape']) == 2:
        assert t['sparsity'] < 0.01, (t['name'], t['sparsity'])
assert n > 0
print(n, 'tensors with sparsity in', lo, hi)" "$2" "$3" "${4:-(q_proj|k_proj|v_proj|out_proj|fc1|fc2)\.weight$}"
}

# prune with METHOD at 0.5 in the reference setting, check the stream, then the perplexity
# on novels-test.txt (all 138 windows of 512) within TOL (relative) of reference.json and,
# given OTHER, nearer METHOD's reference than OTHER's
reference() { # method tol [other]
	reference_run
	local m=$1 tol=$2 other=${3:-} cal=""
	[ "$m" = magnitude ] || cal=$(cat "$BATS_FILE_TMPDIR/cal")
	# shellcheck disable=SC2086
	lm-prune -q -s 0.5 -m "$m" $cal "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/p.lms"
	check "$BATS_FILE_TMPDIR/micro.lms" "$BATS_TEST_TMPDIR/p.lms" "$m" 0.5
	lm-eval -q --ppl "$DATA/novels-eval/novels-test.txt" --seqlen 512 --json "$BATS_TEST_TMPDIR/p.lms" \
		> "$BATS_TEST_TMPDIR/ppl.json"
	ref=$(awk -v m="$m" '$1 == m { print $2 }' "$BATS_FILE_TMPDIR/ref")
	oref=$(awk -v m="$other" '$1 == m { print $2 }' "$BATS_FILE_TMPDIR/ref")
	run -0 "$PYTHON" -c "
import json
got = json.load(open('$BATS_TEST_TMPDIR/ppl.json'))
assert got['windows'] == 138, got
p = got['perplexity']
err = abs(p - $ref) / $ref
print('$m', p, $ref, err)
assert err < $tol, err
if '$other':
    print('$other reference', ${oref:-0})
    assert abs(p - $ref) < abs(p - ${oref:-0}), 'nearer the $other reference'"
	echo "$output"
}

@test "lm-prune --help and man page" {
	run -0 lm-prune --help
	assert_line --index 0 "usage: lm-prune (-s S | --nm N:M) [options] [STREAM]"
	run -0 mandoc -Tlint -Wwarning "$TOP/man/lm-prune.1"
	assert_output ""
	run -0 lm-prune --version
	assert_output --regexp "^lm-prune [0-9]"
}

# Tolerances from what is achieved, with the default OpenBLAS kernels and with
# OPENBLAS_CORETYPE=Haswell: magnitude and Wanda 1.7e-7 and 1.3e-7 relative (both), so
# 1e-5; SparseGPT 0.16 % (default) and 0.25 % (Haswell): its Hessian solve amplifies f32
# rounding. Its reference is only 0.9 % from Wanda's, so it must also be nearer its own.
@test "lm-prune: magnitude 0.5 within 1e-5 of the reference perplexity" {
	reference magnitude 1e-5
}

@test "lm-prune: wanda 0.5 within 1e-5 of the reference perplexity" {
	reference wanda 1e-5
}

@test "lm-prune: sparsegpt 0.5 within 0.3% of the reference perplexity, nearer it than Wanda's" {
	reference sparsegpt 0.003 wanda
}

@test "lm-prune --nm 2:4 and 4:8: exactly N zeros in every block of M, for each method" {
	local cal="-c $DATA/novels-eval/novels-calib.txt --nsamples 4 --seqlen 128"
	lm-prune -q --nm 2:4 "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/a.lms"
	check "$BATS_FILE_TMPDIR/micro.lms" "$BATS_TEST_TMPDIR/a.lms" nm 2 4 magnitude
	# shellcheck disable=SC2086
	lm-prune -q --nm 2:4 -m wanda $cal "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/b.lms"
	check "$BATS_FILE_TMPDIR/micro.lms" "$BATS_TEST_TMPDIR/b.lms" nm 2 4 wanda
	# shellcheck disable=SC2086
	lm-prune -q --nm 4:8 -s 0.5 -m sparsegpt $cal "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/c.lms"
	check "$BATS_FILE_TMPDIR/micro.lms" "$BATS_TEST_TMPDIR/c.lms" nm 4 8 sparsegpt
	# lm-info counts half of every linear matrix as zero (its own count, not the attr)
	sparsity_of "$BATS_TEST_TMPDIR/a.lms" 0.5 0.5
	sparsity_of "$BATS_TEST_TMPDIR/b.lms" 0.5 0.5
	# SparseGPT also zeroes inputs that never fired (fc2 after the ReLU)
	sparsity_of "$BATS_TEST_TMPDIR/c.lms" 0.5 0.6
	# SparseGPT's update is the point: 4:8 by magnitude on the same 2 windows is worse, and
	# both are worse than the dense model
	lm-prune -q --nm 4:8 "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/m.lms"
	run -0 "$PYTHON" -c "
d, s, m = $(ppl2 "$BATS_FILE_TMPDIR/micro.lms"), $(ppl2 "$BATS_TEST_TMPDIR/c.lms"), $(ppl2 "$BATS_TEST_TMPDIR/m.lms")
print('dense', d, 'sparsegpt 4:8', s, 'magnitude 4:8', m)
assert d < s < m, (d, s, m)"
	echo "$output"
}

@test "lm-prune --global: one threshold over all the pruned matrices" {
	lm-prune -s 0.5 --global "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/g.lms"
	check "$BATS_FILE_TMPDIR/micro.lms" "$BATS_TEST_TMPDIR/g.lms" global 0.5
}

@test "lm-prune --include/--exclude; f32 stays f32; magnitude may prune an embedding" {
	lm-import -t f32 "$MICRO" > "$BATS_TEST_TMPDIR/32.lms"
	lm-prune -s 0.3 --include '*embed_positions*' --include '*.fc1.weight' --exclude '*layers.1.*' \
		"$BATS_TEST_TMPDIR/32.lms" > "$BATS_TEST_TMPDIR/i.lms"
	check "$BATS_TEST_TMPDIR/32.lms" "$BATS_TEST_TMPDIR/i.lms" include 0.3 model.decoder.embed_positions.weight \
		model.decoder.layers.0.fc1.weight model.decoder.layers.2.fc1.weight model.decoder.layers.3.fc1.weight
	# lm-info's own count: 30 % (ties may add a few) in exactly those four, none elsewhere
	sparsity_of "$BATS_TEST_TMPDIR/i.lms" 0.3 0.31 'embed_positions|layers\.[023]\.fc1\.weight$'
	# pruning moves the perplexity up, not far (30 % of a few matrices)
	run -0 "$PYTHON" -c "
d, p = $(ppl2 "$BATS_TEST_TMPDIR/32.lms"), $(ppl2 "$BATS_TEST_TMPDIR/i.lms")
print('dense', d, 'pruned', p)
assert d < p < 2 * d, (d, p)"
	echo "$output"
}

@test "lm-prune: pre-tokenized calibration ids give the same stream as the text" {
	local cal="--nsamples 2 --seqlen 256"
	lm-eval -q --ppl "$DATA/novels-eval/novels-calib.txt" --seqlen 256 --windows 1 \
		--save-ids "$BATS_TEST_TMPDIR/ids.lms" "$BATS_FILE_TMPDIR/micro.lms" > /dev/null
	# shellcheck disable=SC2086
	lm-prune -q -s 0.4 -m wanda -c "$DATA/novels-eval/novels-calib.txt" $cal -o "$BATS_TEST_TMPDIR/a.lms" \
		"$BATS_FILE_TMPDIR/micro.lms"
	# shellcheck disable=SC2086
	lm-prune -q -s 0.4 -m wanda -c "$BATS_TEST_TMPDIR/ids.lms" $cal "$BATS_FILE_TMPDIR/micro.lms" \
		> "$BATS_TEST_TMPDIR/b.lms"
	# the streams differ only in their provenance (argv)
	run -0 diff <(tensor_digest "$BATS_TEST_TMPDIR/a.lms") <(tensor_digest "$BATS_TEST_TMPDIR/b.lms")
	check "$BATS_FILE_TMPDIR/micro.lms" "$BATS_TEST_TMPDIR/b.lms" wanda 0.4
}

@test "lm-prune: an already-pruned input: magnitude and wanda prune further, sparsegpt refuses" {
	lm-prune -s 0.3 "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/p.lms"
	lm-prune -s 0.6 "$BATS_TEST_TMPDIR/p.lms" > "$BATS_TEST_TMPDIR/pp.lms"
	check "$BATS_FILE_TMPDIR/micro.lms" "$BATS_TEST_TMPDIR/pp.lms" magnitude 0.6
	# -o: nothing of the refused stream is left, and bats reads no 26 MB of it into $output
	run -1 --separate-stderr lm-prune -s 0.5 -m sparsegpt $(cat "$BATS_FILE_TMPDIR/cal") \
		-o "$BATS_TEST_TMPDIR/ps.lms" "$BATS_TEST_TMPDIR/p.lms"
	assert_one_line_error lm-prune
	[ ! -e "$BATS_TEST_TMPDIR/ps.lms" ]
	output=$stderr
	assert_output --partial "tensor 'model.decoder.layers.0.self_attn.q_proj.weight' is already pruned"
}

@test "lm-prune: post-LN model with projections (fixture): every method, partial SparseGPT block" {
	# the fixture carries no tokenizer: calibrate on ids
	"$PYTHON" - "$BATS_TEST_TMPDIR/ids.lms" <<'PY'
import sys, zlib, msgpack, struct
ids = [2] + [(i * 37 + i * i) % 1000 for i in range(1, 200)]
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
	local in="$BATS_TEST_TMPDIR/pl.lms" cal="-c $BATS_TEST_TMPDIR/ids.lms --nsamples 3"
	lm-import "$FIX/post-ln-proj" > "$in"
	# fc2 has 192 inputs: one block of 128 and one of 64
	# shellcheck disable=SC2086
	lm-prune -q -s 0.5 -m sparsegpt $cal "$in" > "$BATS_TEST_TMPDIR/s.lms"
	check "$in" "$BATS_TEST_TMPDIR/s.lms" sparsegpt 0.5
	# shellcheck disable=SC2086
	lm-prune -q --nm 2:4 -m wanda $cal --seqlen 32 "$in" > "$BATS_TEST_TMPDIR/w.lms"
	check "$in" "$BATS_TEST_TMPDIR/w.lms" nm 2 4 wanda
	lm-prune -q -s 0.25 --include '*project_*' "$in" > "$BATS_TEST_TMPDIR/m.lms"
	check "$in" "$BATS_TEST_TMPDIR/m.lms" include 0.25 model.decoder.project_in.weight \
		model.decoder.project_out.weight
	sparsity_of "$BATS_TEST_TMPDIR/s.lms" 0.5 0.6
	sparsity_of "$BATS_TEST_TMPDIR/w.lms" 0.5 0.5
	sparsity_of "$BATS_TEST_TMPDIR/m.lms" 0.25 0.26 'project_(in|out)\.weight$'
	# each pruned model runs and predicts differently from the dense one: a random model's
	# perplexity stays near the vocabulary's 1000 (within a factor 2), but not equal
	local d
	d=$(ppl2 "$in" "$BATS_TEST_TMPDIR/ids.lms" 32)
	for f in s w m; do
		run -0 "$PYTHON" -c "
d, p = $d, $(ppl2 "$BATS_TEST_TMPDIR/$f.lms" "$BATS_TEST_TMPDIR/ids.lms" 32)
print('$f', d, p)
assert p != d and d / 2 < p < 2 * d, (d, p)"
		echo "$output"
	done
}

bad() { # expected-status message-part command...
	local st=$1 msg=$2; shift 2
	run "-$st" --separate-stderr "$@"
	assert_one_line_error lm-prune
	[ -z "$output" ] || { echo "stream written: ${#output} bytes"; return 1; }
	output=$stderr
	assert_output --partial "$msg"
}

@test "lm-prune: sparsity outside [0, 1), no sparsity, bad N:M" {
	local in="$BATS_FILE_TMPDIR/micro.lms"
	bad 2 "--sparsity" lm-prune -s 1 "$in"
	bad 2 "--sparsity" lm-prune -s -0.1 "$in"
	bad 2 "--sparsity" lm-prune -s x "$in"
	bad 2 "usage: lm-prune" lm-prune "$in"
	bad 2 "N must be smaller than M" lm-prune --nm 4:4 "$in"
	bad 2 "N must be smaller than M" lm-prune --nm 5:4 "$in"
	bad 2 "is not N:M" lm-prune --nm 2-4 "$in"
	bad 2 "contradicts --nm 2:4" lm-prune -s 0.6 --nm 2:4 "$in"
	bad 2 "not a multiple of 3" lm-prune --nm 1:3 "$in"
	bad 2 "--global is for unstructured magnitude" lm-prune --nm 2:4 --global "$in"
}

@test "lm-prune: calibration missing, unwanted, too short; seqlen too long" {
	local in="$BATS_FILE_TMPDIR/micro.lms" calib="$DATA/novels-eval/novels-calib.txt"
	bad 2 "--method wanda needs calibration data (-c FILE)" lm-prune -s 0.5 -m wanda "$in"
	bad 2 "--method sparsegpt needs calibration data" lm-prune -s 0.5 -m sparsegpt "$in"
	bad 2 "magnitude pruning uses no calibration data" lm-prune -s 0.5 -c "$calib" "$in"
	bad 2 "--method: 'obs' is not" lm-prune -s 0.5 -m obs "$in"
	# 28798 tokens: 56 windows of 512, fewer than --nsamples 128 asked for (the default of
	# 128 takes the 56 with a warning: tests/output-safety.bats)
	bad 1 "28798 tokens make 56 windows of 512, fewer than the 128 asked for" \
		lm-prune -s 0.5 -m wanda -c "$calib" --nsamples 128 "$in"
	bad 1 "No such file" lm-prune -s 0.5 -m wanda -c "$BATS_TEST_TMPDIR/none.txt" "$in"
	bad 2 "exceeds the model's 512 positions" lm-prune -s 0.5 -m wanda -c "$calib" --seqlen 513 "$in"
}

@test "lm-prune: --include of a non-linear tensor for a calibrated method; empty selection" {
	local in="$BATS_FILE_TMPDIR/micro.lms" calib="$DATA/novels-eval/novels-calib.txt"
	bad 2 "wanda prunes only q/k/v/out_proj, fc1 and fc2" \
		lm-prune -s 0.5 -m wanda -c "$calib" --include '*embed_tokens*' "$in"
	bad 2 "no tensor to prune" lm-prune -s 0.5 --include '*nothing*' "$in"
	bad 2 "no tensor to prune" lm-prune -s 0.5 --exclude '*' "$in"
}

@test "lm-prune: a quantized tensor is refused" {
	"$PYTHON" - "$BATS_FILE_TMPDIR/micro.lms" "$BATS_TEST_TMPDIR/q.lms" <<'PY'
import sys, msgpack
u = msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, max_buffer_size=1 << 30)
out = open(sys.argv[2], "wb")
out.write(msgpack.packb(next(u)))
for rec in u:
    if rec.get("name") == "model.decoder.layers.2.fc1.weight":
        rec["attrs"]["quant"] = {"scheme": "rtn", "bits": 4}
    out.write(msgpack.packb(rec))
    if rec["kind"] == "end":
        break
    got = 0
    while got < rec["nbytes"]:
        b = next(u); got += len(b)
        out.write(msgpack.packb(b, use_bin_type=True))
PY
	run -1 --separate-stderr lm-prune -s 0.5 -o "$BATS_TEST_TMPDIR/out.lms" "$BATS_TEST_TMPDIR/q.lms"
	assert_one_line_error lm-prune
	output=$stderr
	assert_output --partial "'model.decoder.layers.2.fc1.weight' is quantized"
	[ ! -e "$BATS_TEST_TMPDIR/out.lms" ]
	run ! compgen -G "$BATS_TEST_TMPDIR/out.lms*"
}

@test "lm-prune: a truncated input fails and the partial output has no end record" {
	run -1 --separate-stderr bash -c "set -o pipefail; head -c 20000000 '$BATS_FILE_TMPDIR/micro.lms' | lm-prune -s 0.5 > '$BATS_TEST_TMPDIR/t.lms'"
	assert_one_line_error lm-prune
	output=$stderr
	assert_output --partial "unexpected end of stream"
	run -1 --separate-stderr lm-info "$BATS_TEST_TMPDIR/t.lms"
}

@test "lm-prune: refuses to write a stream to a terminal" {
	# script(1) gives the program a terminal as standard output
	command -v script > /dev/null || skip "script(1) not installed"
	run script -qec "lm-prune -s 0.5 '$BATS_FILE_TMPDIR/micro.lms'" /dev/null
	assert_output --partial "refusing to write a binary stream to a terminal"
}
