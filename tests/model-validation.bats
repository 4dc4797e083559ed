#!/usr/bin/env bats
# model validation (#23): streams whose tensors do not fit their header, packed groups
# against lm-stream(5), NUL inside names, and lm-import's checks of a folder. lm-info warns
# and still reports; lm-export and the programs that run a model refuse in one line.

load helper

setup_file() {
	lm-import "$FIX/pre-ln" > "$BATS_FILE_TMPDIR/pre.lms"
	lm-quant -q -b 4 -g 32 "$BATS_FILE_TMPDIR/pre.lms" > "$BATS_FILE_TMPDIR/q.lms"
}

# mutate IN OUT CODE: rewrite a stream through Python: CODE changes hdr (the header map)
# and recs (a list of [record map, payload bytes]); CRCs and end counts are recomputed
mutate() {
	"$PYTHON" - "$@" <<'PY'
import math, struct, sys, zlib, msgpack
src, dst, code = sys.argv[1:4]
with open(src, "rb") as f:
    u = msgpack.Unpacker(f, raw=False, max_buffer_size=0)
    hdr, recs = next(u), []
    for rec in u:
        if rec["kind"] == "end":
            break
        data = b""
        while len(data) < rec["nbytes"]:
            data += next(u)
        recs.append([rec, data])
L0 = "model.decoder.layers.0."
def find(name):
    return next(r for r in recs if r[0]["name"] == name)
def index(name):
    return next(i for i, r in enumerate(recs) if r[0]["name"] == name)
def set_f32(name, i, v):
    r = find(name); b = bytearray(r[1]); struct.pack_into("<f", b, 4 * i, v); r[1] = bytes(b)
def set_byte(name, i, v):
    r = find(name); b = bytearray(r[1]); b[i] = v; r[1] = bytes(b)
exec(code)
with open(dst, "wb") as f:
    f.write(msgpack.packb(hdr))
    nt = nb = pay = 0
    for rec, data in recs:
        rec["nbytes"], rec["crc32"] = len(data), zlib.crc32(data)
        f.write(msgpack.packb(rec))
        if data:
            f.write(msgpack.packb(data, use_bin_type=True))
        nt += rec["kind"] == "tensor"; nb += rec["kind"] == "blob"; pay += len(data)
    f.write(msgpack.packb({"kind": "end", "tensor_count": nt, "blob_count": nb, "payload_bytes": pay}))
PY
}

# refused IN MESSAGE-PART: lm-export and lm-prune refuse IN in one line; lm-info warns
# (one line, "problems" in the JSON), prints its report and exits 0
refused() {
	local in=$1 msg=$2
	run -1 --separate-stderr lm-export -o "$BATS_TEST_TMPDIR/out" "$in"
	assert_one_line_error lm-export
	[[ "$stderr" == *"$msg"* ]] || { echo "lm-export: '$stderr' lacks '$msg'"; return 1; }
	[ ! -e "$BATS_TEST_TMPDIR/out/config.json" ] || { echo "lm-export wrote config.json"; return 1; }
	run -1 --separate-stderr lm-prune -q -s 0.5 "$in"
	assert_one_line_error lm-prune
	[[ "$stderr" == *"$msg"* ]] || { echo "lm-prune: '$stderr' lacks '$msg'"; return 1; }
	run -0 --separate-stderr lm-info "$in"
	[ "${#stderr_lines[@]}" -ge 1 ] && [[ "$stderr" == "lm-info: warning: "*"$msg"* ]] ||
		{ echo "lm-info: no warning with '$msg': $stderr"; return 1; }
	assert_line --partial "total: "
	assert_line --partial "problem: "
	run -0 bash -c "lm-info --json '$in' 2>/dev/null | '$PYTHON' -c 'import json, sys; p = json.load(sys.stdin)[\"problems\"]; assert p, p; print(p[0])'"
	assert_output --partial "$msg"
}

@test "model validation: the streams the programs write pass without a warning" {
	for s in pre q; do
		run -0 --separate-stderr lm-info "$BATS_FILE_TMPDIR/$s.lms"
		[ -z "$stderr" ] || { echo "$s: $stderr"; return 1; }
		refute_line --partial "problem: "
		run -0 lm-export -o "$BATS_TEST_TMPDIR/$s" "$BATS_FILE_TMPDIR/$s.lms"
	done
}

@test "model validation: a header claiming more layers than the stream has" {
	mutate "$BATS_FILE_TMPDIR/pre.lms" "$BATS_TEST_TMPDIR/b.lms" 'hdr["model"]["num_layers"] = 3'
	refused "$BATS_TEST_TMPDIR/b.lms" "the header says 3 layers (num_layers), the stream has 2"
}

@test "model validation: a header claiming fewer layers than the stream has" {
	mutate "$BATS_FILE_TMPDIR/pre.lms" "$BATS_TEST_TMPDIR/b.lms" 'hdr["model"]["num_layers"] = 1'
	refused "$BATS_TEST_TMPDIR/b.lms" "is in layer 1, but the header says 1 layers"
}

@test "model validation: a tensor given twice" {
	mutate "$BATS_FILE_TMPDIR/pre.lms" "$BATS_TEST_TMPDIR/b.lms" \
		'i = index(L0 + "fc1.bias"); recs.insert(i + 1, [dict(recs[i][0]), recs[i][1]])'
	refused "$BATS_TEST_TMPDIR/b.lms" "tensor 'model.decoder.layers.0.fc1.bias' given twice"
}

@test "model validation: two tensors out of model order" {
	mutate "$BATS_FILE_TMPDIR/pre.lms" "$BATS_TEST_TMPDIR/b.lms" \
		'i = index(L0 + "fc1.weight"); recs[i], recs[i + 1] = recs[i + 1], recs[i]'
	refused "$BATS_TEST_TMPDIR/b.lms" "expected tensor 'model.decoder.layers.0.fc1.weight' (model order), found 'model.decoder.layers.0.fc1.bias'"
	# one swap is one problem
	run -0 --separate-stderr lm-info "$BATS_TEST_TMPDIR/b.lms"
	[ "${#stderr_lines[@]}" -eq 1 ] || { echo "$stderr"; return 1; }
}

@test "model validation: a tensor whose shape is not the header's" {
	mutate "$BATS_FILE_TMPDIR/pre.lms" "$BATS_TEST_TMPDIR/b.lms" \
		'r = find(L0 + "fc1.bias"); r[0]["shape"] = [128]; r[1] = r[1][:512]'
	refused "$BATS_TEST_TMPDIR/b.lms" "tensor 'model.decoder.layers.0.fc1.bias': shape [128], the header says [256]"
}

@test "model validation: an integer-typed weight" {
	mutate "$BATS_FILE_TMPDIR/pre.lms" "$BATS_TEST_TMPDIR/b.lms" \
		'find(L0 + "self_attn_layer_norm.weight")[0]["dtype"] = "i32"'
	refused "$BATS_TEST_TMPDIR/b.lms" "'model.decoder.layers.0.self_attn_layer_norm.weight': dtype i32 is not allowed"
}

@test "model validation: NaN and Inf weights are named with their place" {
	mutate "$BATS_FILE_TMPDIR/pre.lms" "$BATS_TEST_TMPDIR/b.lms" \
		'set_f32(L0 + "fc1.weight", 70, float("nan")); set_f32(L0 + "fc1.weight", 80, float("inf"))'
	refused "$BATS_TEST_TMPDIR/b.lms" "tensor 'model.decoder.layers.0.fc1.weight': 2 non-finite values, the first at [1, 6]"
}

@test "model validation: a missing tensor is named" {
	mutate "$BATS_FILE_TMPDIR/pre.lms" "$BATS_TEST_TMPDIR/b.lms" \
		'del recs[index("model.decoder.final_layer_norm.bias")]'
	run -1 --separate-stderr lm-export -o "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/b.lms"
	assert_one_line_error lm-export
	[[ "$stderr" == *"tensor 'model.decoder.final_layer_norm.bias' is missing"* ]] || { echo "$stderr"; return 1; }
	run -0 --separate-stderr lm-info "$BATS_TEST_TMPDIR/b.lms"
	[[ "$stderr" == *"final_layer_norm.bias' is missing"* ]] || { echo "$stderr"; return 1; }
}

@test "model validation: extra tensors pass after the model, not before it or twice" {
	# an extra tensor after the model's last one is legitimate (lm-stream(5), 1.2)
	mutate "$BATS_FILE_TMPDIR/pre.lms" "$BATS_TEST_TMPDIR/ok.lms" \
		'recs.append([{"kind": "tensor", "name": "mine.w", "dtype": "i32", "shape": [2], "attrs": {}}, bytes(8)])'
	run -0 --separate-stderr lm-info "$BATS_TEST_TMPDIR/ok.lms"
	[ -z "$stderr" ] || { echo "$stderr"; return 1; }
	run -0 lm-export -o "$BATS_TEST_TMPDIR/o" "$BATS_TEST_TMPDIR/ok.lms"
	mutate "$BATS_TEST_TMPDIR/ok.lms" "$BATS_TEST_TMPDIR/b.lms" 'recs.append(recs[-1])'
	refused "$BATS_TEST_TMPDIR/b.lms" "tensor 'mine.w' given twice"
	mutate "$BATS_TEST_TMPDIR/ok.lms" "$BATS_TEST_TMPDIR/b.lms" \
		'x = recs.pop(); recs.insert(index("model.decoder.final_layer_norm.weight"), x)'
	refused "$BATS_TEST_TMPDIR/b.lms" "expected tensor 'model.decoder.final_layer_norm.weight' (model order), found 'mine.w'"
}

@test "model validation: a data stream is described, but not exported as a model" {
	"$PYTHON" - "$BATS_TEST_TMPDIR/ids.lms" <<'PY'
import sys, zlib, msgpack, struct
body = struct.pack("<4i", 2, 5, 7, 9)
hdr = {"format": "lm-stream", "version": [1, 2], "endian": "little",
       "model": {"architecture": "opt", "vocab_size": 1000, "hidden_size": 64, "num_layers": 2,
                 "num_heads": 4, "ffn_dim": 256, "max_positions": 64, "word_embed_proj_dim": 64}}
with open(sys.argv[1], "wb") as f:
    f.write(msgpack.packb(hdr))
    f.write(msgpack.packb({"kind": "tensor", "name": "ids", "dtype": "i32", "shape": [4],
                           "nbytes": 16, "crc32": zlib.crc32(body), "attrs": {}}))
    f.write(msgpack.packb(body, use_bin_type=True))
    f.write(msgpack.packb({"kind": "end", "tensor_count": 1, "payload_bytes": 16}))
PY
	run -0 --separate-stderr lm-info "$BATS_TEST_TMPDIR/ids.lms"
	[ -z "$stderr" ] || { echo "$stderr"; return 1; }
	run -1 --separate-stderr lm-export -o "$BATS_TEST_TMPDIR/o" "$BATS_TEST_TMPDIR/ids.lms"
	assert_one_line_error lm-export
	[[ "$stderr" == *"not a model stream: its first tensor is 'ids'"* ]] || { echo "$stderr"; return 1; }
}

@test "model validation: packed groups: zero point above 2^b-1, reserved byte, scale not finite" {
	q=$BATS_FILE_TMPDIR/q.lms
	# q4g32: each group is a 4-byte header (f16 scale, zero point, reserved) and 16 code bytes
	mutate "$q" "$BATS_TEST_TMPDIR/z.lms" 'set_byte(L0 + "fc1.weight", 20 + 2, 16)'
	refused "$BATS_TEST_TMPDIR/z.lms" "tensor 'model.decoder.layers.0.fc1.weight': 1 packed groups with a bad header, the first (row 0, group 1) with zero point 16 above 15 (2^4-1)"
	mutate "$q" "$BATS_TEST_TMPDIR/r.lms" 'set_byte(L0 + "fc2.weight", 3, 1)'
	refused "$BATS_TEST_TMPDIR/r.lms" "the first (row 0, group 0) with reserved byte 1, not 0"
	mutate "$q" "$BATS_TEST_TMPDIR/s.lms" 'set_byte(L0 + "self_attn.q_proj.weight", 1, 0x7e)'
	refused "$BATS_TEST_TMPDIR/s.lms" "with a scale that is not finite"
}

@test "model validation: a NUL inside a tensor or blob name is refused, not read as the real name" {
	mutate "$BATS_FILE_TMPDIR/pre.lms" "$BATS_TEST_TMPDIR/b.lms" \
		'find("model.decoder.embed_tokens.weight")[0]["name"] = "model.decoder.embed_tokens.weight\0evil"'
	for p in "lm-info" "lm-export -o $BATS_TEST_TMPDIR/o" "lm-prune -q -s 0.5"; do
		run -1 --separate-stderr $p "$BATS_TEST_TMPDIR/b.lms"
		assert_one_line_error "${p%% *}"
		[[ "$stderr" == *"a NUL byte inside the name"* ]] || { echo "$stderr"; return 1; }
	done
	mutate "$BATS_FILE_TMPDIR/pre.lms" "$BATS_TEST_TMPDIR/c.lms" \
		'recs.insert(0, [{"kind": "blob", "name": "tokenizer/vocab.json\0x"}, b"{}"])'
	run -1 --separate-stderr lm-info "$BATS_TEST_TMPDIR/c.lms"
	[[ "$stderr" == *"blob 'tokenizer/vocab.json': a NUL byte inside the name"* ]] || { echo "$stderr"; return 1; }
}

# ---- lm-import: what a folder holds must all be used, in range and representable ----

# folder NAME: a copy of the pre-ln fixture with its safetensors only
folder() {
	local d=$BATS_TEST_TMPDIR/$1
	mkdir -p "$d"
	cp "$FIX/pre-ln/config.json" "$FIX/pre-ln/model.safetensors" "$d/"
	echo "$d"
}

# st_edit FILE CODE: rewrite a safetensors header through Python (h: the header dict,
# data: the byte buffer); offsets are left as CODE sets them
st_edit() {
	"$PYTHON" - "$@" <<'PY'
import json, struct, sys
p, code = sys.argv[1:3]
raw = open(p, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h, data = json.loads(raw[8:8 + n]), raw[8 + n:]
exec(code)
t = json.dumps(h).encode()
open(p, "wb").write(struct.pack("<Q", len(t)) + t + data)
PY
}

@test "lm-import: weights config.json has no place for are an error naming them, with a count" {
	d=$(folder few)
	sed -i 's/"num_hidden_layers": 2/"num_hidden_layers": 1/' "$d/config.json"
	run -1 --separate-stderr lm-import "$d"
	assert_one_line_error lm-import
	[[ "$stderr" == *"16 tensors in the weight files that config.json (num_hidden_layers 1) has no place for: 'model.decoder.layers.1."*", …"* ]] || { echo "$stderr"; return 1; }
	[ -z "$output" ] || { echo "a stream was written"; return 1; }
}

@test "lm-import: token ids are range-checked before narrowing" {
	d=$(folder ids)
	sed -i 's/"bos_token_id": 2/"bos_token_id": 4294967298/' "$d/config.json"
	run -1 --separate-stderr lm-import "$d"
	assert_one_line_error lm-import
	[[ "$stderr" == *'"bos_token_id" 4294967298 is not a token id'* ]] || { echo "$stderr"; return 1; }
	d=$(folder pad)
	sed -i 's/"pad_token_id": 1/"pad_token_id": 1000/' "$d/config.json"
	run -1 --separate-stderr lm-import "$d"
	[[ "$stderr" == *"pad_token_id 1000 outside the vocabulary of 1000"* ]] || { echo "$stderr"; return 1; }
}

@test "lm-import: -t f16 refuses a value beyond f16's range, naming the tensor; NaN in a checkpoint too" {
	d=$(folder big)
	st_edit "$d/model.safetensors" '
o = h["model.decoder.layers.1.fc2.weight"]["data_offsets"][0] + 4 * 5
data = data[:o] + struct.pack("<f", 1e6) + data[o + 4:]'
	run -0 bash -c "lm-import -t bf16 '$d' | lm-info >/dev/null"
	run -1 --separate-stderr lm-import -t f16 "$d"
	assert_one_line_error lm-import
	[[ "$stderr" == *"tensor 'model.decoder.layers.1.fc2.weight': 1 values beyond the range of f16, the first 1e+06 (element 5)"* ]] || { echo "$stderr"; return 1; }
	st_edit "$d/model.safetensors" '
o = h["model.decoder.layers.1.fc2.weight"]["data_offsets"][0] + 4 * 5
data = data[:o] + struct.pack("<f", float("nan")) + data[o + 4:]'
	run -1 --separate-stderr lm-import "$d"
	[[ "$stderr" == *"tensor 'model.decoder.layers.1.fc2.weight': 1 non-finite values, the first at [0, 5]"* ]] || { echo "$stderr"; return 1; }
}

@test "lm-import: vocab.json and merges.txt are checked before they travel in the stream" {
	d=$(folder tok)
	# a small byte-level BPE vocabulary: the 256 byte tokens and one merge, ids below 1000
	"$PYTHON" - "$d" <<'PY'
import json, sys
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
vocab = {chr(c): i for i, c in enumerate(cs)}
vocab["\u0120t"] = 256
json.dump(vocab, open(sys.argv[1] + "/vocab.json", "w"))
open(sys.argv[1] + "/merges.txt", "w").write("#version: 0.2\n\u0120 t\n")
PY
	run -0 bash -c "lm-import '$d' | lm-info --tokenize ' t'"
	assert_output "256"
	cp "$d/merges.txt" "$BATS_TEST_TMPDIR/merges.ok"
	printf '#version: 0.2\n\xc4\xa0 t x\n' > "$d/merges.txt"
	run -1 --separate-stderr lm-import "$d"
	assert_one_line_error lm-import
	[[ "$stderr" == *"merges.txt: line 2: not two tokens"* ]] || { echo "$stderr"; return 1; }
	cp "$BATS_TEST_TMPDIR/merges.ok" "$d/merges.txt"
	"$PYTHON" -c "import json, sys; v = json.load(open(sys.argv[1])); v['zz'] = 1000; json.dump(v, open(sys.argv[1], 'w'))" "$d/vocab.json"
	run -1 --separate-stderr lm-import "$d"
	[[ "$stderr" == *"vocab.json: id 1000 is outside the model's vocab_size 1000"* ]] || { echo "$stderr"; return 1; }
	echo '["a", "b"]' > "$d/vocab.json"
	run -1 --separate-stderr lm-import "$d"
	assert_one_line_error lm-import
	[[ "$stderr" == *"vocab.json"* ]] || { echo "$stderr"; return 1; }
	[ -z "$output" ] || { echo "a stream was written"; return 1; }
}

@test "lm-import: safetensors: empty tensors may share offsets; a header of too many entries is refused before parsing" {
	d=$(folder empty)
	# two empty buffers (skipped as transformers skips them) at the offset of the first tensor
	st_edit "$d/model.safetensors" '
h["a.position_ids"] = {"dtype": "I64", "shape": [0], "data_offsets": [0, 0]}
h["b.position_ids"] = {"dtype": "I64", "shape": [0], "data_offsets": [0, 0]}'
	run -0 bash -c "lm-import '$d' | lm-info | tail -n 1"
	assert_output --partial "total: 36 tensors"
	st_edit "$d/model.safetensors" '
for i in range(140000):
    h["p%d.position_ids" % i] = {"dtype": "I64", "shape": [0], "data_offsets": [0, 0]}'
	run -1 --separate-stderr lm-import "$d"
	assert_one_line_error lm-import
	[[ "$stderr" == *"header lists 140039 entries, more than the 131072 tensors this reader takes"* ]] || { echo "$stderr"; return 1; }
}

@test "lm-import: a NUL inside a safetensors key or a zip record name is refused" {
	d=$(folder nul)
	st_edit "$d/model.safetensors" '
h["model.decoder.embed_tokens.weight\0evil"] = h.pop("model.decoder.embed_tokens.weight")'
	run -1 --separate-stderr lm-import "$d"
	assert_one_line_error lm-import
	[[ "$stderr" == *"NUL byte in object key"* ]] || { echo "$stderr"; return 1; }
	d=$BATS_TEST_TMPDIR/zip
	mkdir -p "$d"
	cp "$FIX/pre-ln/config.json" "$FIX/pre-ln/pytorch_model.bin" "$d/"
	# the same length, in the local header and the central directory: libarchive would
	# hand out "pytorch_model/byteord" and the record would pass unseen
	"$PYTHON" -c '
import sys
p = sys.argv[1]; b = open(p, "rb").read()
assert b.count(b"pytorch_model/byteorder") == 2
open(p, "wb").write(b.replace(b"pytorch_model/byteorder", b"pytorch_model/byteord\0x"))' "$d/pytorch_model.bin"
	run -1 --separate-stderr lm-import "$d"
	assert_one_line_error lm-import
	[[ "$stderr" == *"zip record 'pytorch_model/byteord': a NUL byte inside the name"* ]] || { echo "$stderr"; return 1; }
}
