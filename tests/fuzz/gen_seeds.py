#!/usr/bin/env python3
"""gen_seeds.py: write the fuzz targets' seed corpora under tests/fuzz/corpus/ (small files,
committed). Standard library plus python3-msgpack; run from the repository root:
    /usr/bin/python3 tests/fuzz/gen_seeds.py
"""
import io, json, os, pickle, struct, sys, types, zipfile, zlib
import msgpack

out = "tests/fuzz/corpus"
def put(target, name, data):
    os.makedirs(f"{out}/{target}", exist_ok=True)
    with open(f"{out}/{target}/{name}", "wb") as f:
        f.write(data)

# ---- a tiny valid lm-stream: 1 layer, hidden 8, vocab 10 ----
model = {"architecture": "opt", "vocab_size": 10, "hidden_size": 8, "num_layers": 1, "num_heads": 2,
         "ffn_dim": 16, "max_positions": 4, "word_embed_proj_dim": 8}
def stream(records, blobs=()):
    b = msgpack.packb({"format": "lm-stream", "version": [1, 0], "endian": "little", "model": model,
                       "tensor_count": None, "provenance": []})
    nt = payload = 0
    for name, body in blobs:
        b += msgpack.packb({"kind": "blob", "name": name, "nbytes": len(body), "crc32": zlib.crc32(body)})
        b += msgpack.packb(body, use_bin_type=True); payload += len(body)
    for name, shape in records:
        n = 1
        for d in shape: n *= d
        body = struct.pack("<%df" % n, *[(i % 7) * 0.25 - 0.5 for i in range(n)])
        b += msgpack.packb({"kind": "tensor", "name": name, "dtype": "f32", "shape": shape, "nbytes": len(body),
                            "crc32": zlib.crc32(body), "attrs": {"prune": {"method": "magnitude"}}})
        b += msgpack.packb(body, use_bin_type=True); nt += 1; payload += len(body)
    b += msgpack.packb({"kind": "end", "tensor_count": nt, "blob_count": len(blobs), "payload_bytes": payload})
    return b
put("stream", "valid", stream([("model.decoder.embed_tokens.weight", [10, 8]), ("a", [3]), ("b", [2, 2])],
                              [("tokenizer/vocab.json", b'{"a": 0}')]))
put("stream", "empty-model", stream([]))
put("stream", "truncated", stream([("x", [16])])[:-20])
# reproducer of a fuzz finding: an empty map key arrives with a NULL pointer (UBSan: memcpy/memchr)
put("stream", "repro-empty-key", msgpack.packb({"": 1, "format": "lm-stream"}))

# ---- model validation (#23): a whole 1-layer model, then streams that do not fit their header ----
def mstream(records, hdr_model=None, blobs=()):
    b = msgpack.packb({"format": "lm-stream", "version": [1, 2], "endian": "little",
                       "model": hdr_model or model, "tensor_count": None, "provenance": []})
    nt = payload = 0
    for name, body in blobs:
        b += msgpack.packb({"kind": "blob", "name": name, "nbytes": len(body), "crc32": zlib.crc32(body)})
        b += msgpack.packb(body, use_bin_type=True); payload += len(body)
    for name, dtype, shape, body, *layout in records:
        rec = {"kind": "tensor", "name": name, "dtype": dtype}
        if layout:  # a sparse layout (lm-stream 1.3)
            rec["layout"] = layout[0]
        rec.update({"shape": shape, "nbytes": len(body), "crc32": zlib.crc32(body), "attrs": {}})
        b += msgpack.packb(rec)
        if body:
            b += msgpack.packb(body, use_bin_type=True)
        nt += 1; payload += len(body)
    b += msgpack.packb({"kind": "end", "tensor_count": nt, "blob_count": len(blobs), "payload_bytes": payload})
    return b
def f32(shape, v=0.25):
    n = 1
    for d in shape: n *= d
    return struct.pack("<%df" % n, *[v] * n)
L0 = "model.decoder.layers.0."
tiny = [("model.decoder.embed_tokens.weight", [10, 8]), ("model.decoder.embed_positions.weight", [6, 8])]
for suffix, shape in [("self_attn_layer_norm.weight", [8]), ("self_attn_layer_norm.bias", [8]),
                      ("self_attn.q_proj.weight", [8, 8]), ("self_attn.q_proj.bias", [8]),
                      ("self_attn.k_proj.weight", [8, 8]), ("self_attn.k_proj.bias", [8]),
                      ("self_attn.v_proj.weight", [8, 8]), ("self_attn.v_proj.bias", [8]),
                      ("self_attn.out_proj.weight", [8, 8]), ("self_attn.out_proj.bias", [8]),
                      ("final_layer_norm.weight", [8]), ("final_layer_norm.bias", [8]),
                      ("fc1.weight", [16, 8]), ("fc1.bias", [16]), ("fc2.weight", [8, 16]), ("fc2.bias", [8])]:
    tiny.append((L0 + suffix, shape))
tiny += [("model.decoder.final_layer_norm.weight", [8]), ("model.decoder.final_layer_norm.bias", [8])]
whole = [(n, "f32", s, f32(s)) for n, s in tiny]
put("stream", "mv-valid", mstream(whole + [("exit_policy.w", "f32", [2], f32([2]))]))
put("stream", "mv-layers-over", mstream(whole, dict(model, num_layers=2)))
put("stream", "mv-duplicate", mstream(whole[:5] + whole[4:]))
put("stream", "mv-order", mstream(whole[:5] + [whole[6], whole[5]] + whole[7:]))
put("stream", "mv-shape", mstream(whole[:3] + [(whole[3][0], "f32", [4], f32([4]))] + whole[4:]))
put("stream", "mv-int", mstream(whole[:3] + [(whole[3][0], "i32", [8], bytes(32))] + whole[4:]))
put("stream", "mv-nan", mstream(whole[:4] + [(whole[4][0], "f32", [8, 8], f32([8, 8], float("nan")))] + whole[5:]))
put("stream", "mv-extra-first", mstream([("exit_policy.w", "f32", [2], f32([2]))] + whole))
# q4c [8, 8]: per row one group, 4-byte header (f16 scale, zero point 16 > 15, reserved 1) and 4 code bytes
put("stream", "mv-packed-zero", mstream(whole[:4] + [(whole[4][0], "q4c", [8, 8], (b"\x00\x3c\x10\x01" + bytes(4)) * 8)] + whole[5:]))
# sparse layouts (#18) of q_proj [8, 8] f32: 2:4 (32 values, 32 two-bit positions: 0 and 2 of
# each group), bitmap (the first half of each row kept), index (column 3 of each row), and a
# 2:4 whose first group repeats a position
def sp(layout, body):
    return mstream(whole[:4] + [(whole[4][0], "f32", [8, 8], body, layout)] + whole[5:])
put("stream", "sp-nm", sp("2:4", f32([32]) + bytes([0b10001000]) * 8))
put("stream", "sp-bitmap", sp("bitmap", f32([32]) + bytes([0x0f]) * 8))
put("stream", "sp-index", sp("index", f32([8]) + struct.pack("<8H", *[3] * 8) + struct.pack("<8I", *[1] * 8)))
put("stream", "sp-bad-pos", sp("2:4", f32([32]) + bytes([0b10000101]) + bytes([0b10001000]) * 7))
put("stream", "nul-name", mstream([("model.decoder.embed_tokens.weight\0evil", "f32", [10, 8], f32([10, 8]))] + whole[1:]))
put("stream", "nul-blob", mstream(whole, blobs=[("tokenizer/vocab.json\0x", b"{}")]))

# ---- safetensors ----
def st(entries):
    hdr, body, off = {"__metadata__": {"format": "pt"}}, b"", 0
    for name, dt, shape, data in entries:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data); body += data
    h = json.dumps(hdr).encode()
    return struct.pack("<Q", len(h)) + h + body
put("safetensors", "valid", st([("w", "F32", [2, 2], bytes(16)), ("b", "F16", [3], bytes(6)), ("e", "BF16", [0], b"")]))
put("safetensors", "scalar", st([("s", "I64", [], bytes(8))]))
put("safetensors", "empty-shared-offsets", st([("e1", "F32", [0], b""), ("e2", "F32", [0], b""), ("w", "F32", [2], bytes(8))]))
put("safetensors", "nul-key", st([("w\0evil", "F32", [2], bytes(8))]))

# ---- PyTorch zip: pickled with stand-ins named like torch's globals ----
torch_utils = types.ModuleType("torch._utils"); torch_mod = types.ModuleType("torch")
sys.modules["torch"] = torch_mod; sys.modules["torch._utils"] = torch_utils
def _rebuild_tensor_v2(*a): pass
_rebuild_tensor_v2.__module__ = "torch._utils"; torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
class FloatStorage: pass
FloatStorage.__module__ = "torch"; torch_mod.FloatStorage = FloatStorage
class Storage:
    def __init__(self, key, n): self.key, self.n = key, n
class Tensor:
    def __init__(self, st, off, shape): self.st, self.off, self.shape = st, off, shape
    def __reduce__(self):
        stride, s = [], 1
        for d in reversed(self.shape): stride.insert(0, s); s *= d
        import collections
        return (_rebuild_tensor_v2, (self.st, self.off, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))
class P(pickle.Pickler):
    def persistent_id(self, o):
        return ("storage", FloatStorage, o.key, "cpu", o.n) if isinstance(o, Storage) else None
import collections
s0 = Storage("0", 6)
sd = collections.OrderedDict([("model.decoder.w", Tensor(s0, 0, [2, 2])), ("lm_head.weight", Tensor(s0, 2, [4]))])
buf = io.BytesIO(); P(buf, protocol=2).dump(sd)
zb = io.BytesIO()
with zipfile.ZipFile(zb, "w") as z:
    z.writestr("archive/data.pkl", buf.getvalue())
    z.writestr("archive/data/0", bytes(24))
    z.writestr("archive/version", "3\n")
put("torchbin", "valid.zip", zb.getvalue())
put("torchbin", "data.pkl", buf.getvalue())
put("torchbin", "evil.pkl", b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")

# ---- config.json ----
for f in ("pre-ln", "post-ln-proj", "fp16"):
    put("config", f + ".json", open(f"tests/fixtures/{f}/config.json", "rb").read())
put("config", "minimal.json", json.dumps({"model_type": "opt", "vocab_size": 10, "hidden_size": 8,
    "num_hidden_layers": 1, "num_attention_heads": 2, "ffn_dim": 16, "max_position_embeddings": 4}).encode())

# ---- tokenizer: texts, and a tiny vocab/merges after a 'V' ----
cases = json.load(open("tests/fixtures/tokenizer-reference.json"))["cases"]
for i, c in enumerate(cases):
    put("tokenizer", "case%02d" % i, c["text"].encode())
put("tokenizer", "invalid-utf8", b"caf\xe9 \xff\xfe \xc3")
vocab = {chr(0x100 + i) if i < 33 else chr(i): i for i in range(256)}
put("tokenizer", "vocab", b"V" + json.dumps({**{k: v for k, v in vocab.items()}, "ab": 256}).encode() + b"\0#version: 0.2\na b\n")
print("seeds written under", out)
