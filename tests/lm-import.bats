#!/usr/bin/env bats
# lm-import: every fixture format gives the same tensors; bad folders give one-line errors

load helper

setup_file() {
	# broken checkpoints, made from the fixtures (python3 standard library only)
	local d=$BATS_FILE_TMPDIR
	mkdir -p "$d/not-opt" "$d/bad-json" "$d/lying-st" "$d/short-bin" "$d/evil" "$d/no-weights" \
		"$d/missing-tensor" "$d/sharded"
	sed 's/"model_type": "opt"/"model_type": "gpt2"/' "$FIX/pre-ln/config.json" > "$d/not-opt/config.json"
	cp "$FIX/pre-ln/model.safetensors" "$d/not-opt/"
	head -c 100 "$FIX/pre-ln/config.json" > "$d/bad-json/config.json"
	cp "$FIX/pre-ln/model.safetensors" "$d/bad-json/"
	cp "$FIX/pre-ln/config.json" "$d/no-weights/"
	for x in lying-st short-bin evil missing-tensor sharded; do cp "$FIX/pre-ln/config.json" "$d/$x/"; done
	head -c $(( $(stat -c %s "$FIX/pre-ln/pytorch_model.bin") / 2 )) "$FIX/pre-ln/pytorch_model.bin" \
		> "$d/short-bin/pytorch_model.bin"
	"$PYTHON" - "$FIX/pre-ln" "$d" <<'PY'
import json, struct, sys, zipfile
src, d = sys.argv[1], sys.argv[2]
raw = open(src + "/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n]); data = raw[8 + n:]
def write(path, h, body):
    hb = json.dumps(h).encode()
    open(path, "wb").write(struct.pack("<Q", len(hb)) + hb + body)
# a header whose offsets claim more bytes than the file has
lie = json.loads(json.dumps(hdr))
k = "model.decoder.layers.0.fc1.weight"
lie[k]["data_offsets"][1] += 4096
write(d + "/lying-st/model.safetensors", lie, data)
# one tensor left out (its bytes too, so the file is otherwise consistent)
miss = {}
off = 0
for name, e in sorted(((k2, v) for k2, v in hdr.items() if k2 != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0]):
    if name == "model.decoder.layers.1.fc2.bias":
        continue
    b, e2 = e["data_offsets"]
    miss[name] = dict(e, data_offsets=[off, off + e2 - b]); off += e2 - b
body = b"".join(data[hdr[k2]["data_offsets"][0]:hdr[k2]["data_offsets"][1]] for k2 in miss)
write(d + "/missing-tensor/model.safetensors", miss, body)
# two shards and an index, as transformers writes big models
names = sorted((k2 for k2 in hdr if k2 != "__metadata__"), key=lambda k2: hdr[k2]["data_offsets"][0])
half = len(names) // 2
index = {"metadata": {}, "weight_map": {}}
for i, part in enumerate((names[:half], names[half:])):
    h, off, body = {}, 0, b""
    for k2 in part:
        b, e2 = hdr[k2]["data_offsets"]
        h[k2] = dict(hdr[k2], data_offsets=[off, off + e2 - b]); off += e2 - b; body += data[b:e2]
    fn = "model-%05d-of-00002.safetensors" % (i + 1)
    write(d + "/sharded/" + fn, h, body)
    for k2 in part:
        index["weight_map"][k2] = fn
json.dump(index, open(d + "/sharded/model.safetensors.index.json", "w"))
# a pytorch zip whose pickle calls os.system
pkl = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
with zipfile.ZipFile(d + "/evil/pytorch_model.bin", "w") as z:
    z.writestr("archive/data.pkl", pkl)
    z.writestr("archive/version", "3\n")
PY
}

@test "lm-import --help prints usage on stdout and exits 0" {
	run -0 lm-import --help
	assert_line --index 0 "usage: lm-import [-f] [-t f32|f16|bf16] [-o FILE] DIR"
}

@test "lm-import: bad option and missing operand are usage errors (exit 2)" {
	run -2 --separate-stderr lm-import --bogus
	run -2 --separate-stderr lm-import
	run -2 --separate-stderr lm-import -t f8 "$FIX/pre-ln"
	assert_one_line_error lm-import
}

@test "lm-import: man page exists and is well formed" {
	[ -f "$TOP/man/lm-import.1" ]
	run -0 mandoc -Tlint -Wwarning "$TOP/man/lm-import.1"
	assert_output ""
}

@test "lm-import: safetensors, pytorch .bin and legacy .bin give identical tensors" {
	for f in pre-ln post-ln-proj fp16; do
		mkdir -p "$BATS_TEST_TMPDIR/$f-bin" "$BATS_TEST_TMPDIR/$f-legacy"
		cp "$FIX/$f/config.json" "$BATS_TEST_TMPDIR/$f-bin/"
		cp "$FIX/$f/config.json" "$BATS_TEST_TMPDIR/$f-legacy/"
		ln -s "$FIX/$f/pytorch_model.bin" "$BATS_TEST_TMPDIR/$f-bin/pytorch_model.bin"
		ln -s "$FIX/$f/legacy_pytorch_model.bin" "$BATS_TEST_TMPDIR/$f-legacy/pytorch_model.bin"
		lm-import "$FIX/$f" > "$BATS_TEST_TMPDIR/st.lms"
		lm-import "$BATS_TEST_TMPDIR/$f-bin" > "$BATS_TEST_TMPDIR/bin.lms"
		lm-import "$BATS_TEST_TMPDIR/$f-legacy" > "$BATS_TEST_TMPDIR/legacy.lms"
		tensor_digest "$BATS_TEST_TMPDIR/st.lms" > "$BATS_TEST_TMPDIR/a"
		tensor_digest "$BATS_TEST_TMPDIR/bin.lms" > "$BATS_TEST_TMPDIR/b"
		tensor_digest "$BATS_TEST_TMPDIR/legacy.lms" > "$BATS_TEST_TMPDIR/c"
		[ -s "$BATS_TEST_TMPDIR/a" ]
		cmp "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b"
		cmp "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/c"
	done
}

@test "lm-import: sharded safetensors with an index equal the single file" {
	lm-import "$FIX/pre-ln" > "$BATS_TEST_TMPDIR/one.lms"
	lm-import "$BATS_FILE_TMPDIR/sharded" > "$BATS_TEST_TMPDIR/two.lms"
	cmp <(tensor_digest "$BATS_TEST_TMPDIR/one.lms") <(tensor_digest "$BATS_TEST_TMPDIR/two.lms")
}

@test "lm-import: the stream is plain msgpack that python3-msgpack decodes" {
	lm-import "$FIX/post-ln-proj" > "$BATS_TEST_TMPDIR/m.lms"
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/m.lms" <<'PY'
import sys, zlib, msgpack
u = msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, max_buffer_size=1 << 30)
hdr = next(u)
assert list(hdr)[0] == "format" and hdr["format"] == "lm-stream", hdr
assert hdr["model"]["word_embed_proj_dim"] == 32 and hdr["model"]["do_layer_norm_before"] is False
n = 0
for rec in u:
    if rec["kind"] == "end":
        assert rec["tensor_count"] == n, (rec, n)
        break
    got = b""
    while len(got) < rec["nbytes"]:
        got += next(u)
    assert zlib.crc32(got) == rec["crc32"], rec["name"]
    n += rec["kind"] == "tensor"
print("ok", n)
PY
	assert_output --partial "ok"
}

@test "lm-import -t converts dtypes: fp16 -> f32 -> f16 is exact" {
	lm-import -t f32 "$FIX/fp16" > "$BATS_TEST_TMPDIR/32.lms"
	lm-import "$FIX/fp16" > "$BATS_TEST_TMPDIR/16.lms"
	run -0 lm-info "$BATS_TEST_TMPDIR/32.lms"
	refute_output --regexp " f16 "
	lm-import -t f16 "$FIX/fp16" > "$BATS_TEST_TMPDIR/16b.lms"
	cmp <(tensor_digest "$BATS_TEST_TMPDIR/16.lms") <(tensor_digest "$BATS_TEST_TMPDIR/16b.lms")
}

@test "lm-import -o writes the file atomically and output is deterministic" {
	lm-import -o "$BATS_TEST_TMPDIR/a.lms" "$FIX/pre-ln"
	lm-import "$FIX/pre-ln" > "$BATS_TEST_TMPDIR/b.lms"
	cmp <(tensor_digest "$BATS_TEST_TMPDIR/a.lms") <(tensor_digest "$BATS_TEST_TMPDIR/b.lms")
	lm-import "$FIX/pre-ln" > "$BATS_TEST_TMPDIR/c.lms"
	cmp "$BATS_TEST_TMPDIR/b.lms" "$BATS_TEST_TMPDIR/c.lms"
	run -1 --separate-stderr lm-import -o "$BATS_TEST_TMPDIR/d.lms" "$BATS_FILE_TMPDIR/lying-st"
	[ ! -e "$BATS_TEST_TMPDIR/d.lms" ]
	run ls "$BATS_TEST_TMPDIR"
	refute_output --partial "tmp"
}

bad_input() { # dir, expected message part
	run -1 --separate-stderr lm-import "$1"
	assert_one_line_error lm-import
	output=$stderr
	assert_output --partial "$2"
	[ -z "$(cat "$BATS_TEST_TMPDIR/out" 2>/dev/null)" ]
}

@test "lm-import: missing folder" { bad_input "$BATS_TEST_TMPDIR/nope" "No such file or directory"; }
@test "lm-import: a file instead of a folder" { bad_input "$FIX/pre-ln/config.json" "not a directory"; }
@test "lm-import: config.json that is not OPT" { bad_input "$BATS_FILE_TMPDIR/not-opt" 'model_type is not "opt"'; }
@test "lm-import: malformed config.json" { bad_input "$BATS_FILE_TMPDIR/bad-json" "config.json:"; }
@test "lm-import: folder without weights" { bad_input "$BATS_FILE_TMPDIR/no-weights" "no weights"; }
@test "lm-import: safetensors header lying about offsets" { bad_input "$BATS_FILE_TMPDIR/lying-st" "model.safetensors"; }
@test "lm-import: a tensor missing" { bad_input "$BATS_FILE_TMPDIR/missing-tensor" "layers.1.fc2.bias' missing"; }
@test "lm-import: truncated pytorch_model.bin" { bad_input "$BATS_FILE_TMPDIR/short-bin" "pytorch_model.bin"; }
@test "lm-import: pickle with a forbidden global is refused, nothing executed" {
	bad_input "$BATS_FILE_TMPDIR/evil" "os.system"
}

@test "lm-import: refuses to write a stream to a terminal, -f overrides" {
	run script -qec "lm-import $FIX/pre-ln; echo status=\$?" /dev/null
	assert_output --partial "refusing to write a binary stream to a terminal"
	assert_output --partial "status=2"
	run script -qec "lm-import -f $FIX/pre-ln > /dev/null; echo status=\$?" /dev/null
	assert_output --partial "status=0"
}
