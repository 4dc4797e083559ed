#!/usr/bin/python3
"""bench/torch_opt.py: the PyTorch peer of `lm-eval --ppl`, for bench/run.sh.

A straightforward OPT forward in plain PyTorch (Debian python3-torch 1.13, no transformers),
reading a Hugging Face folder (config.json + model.safetensors, parsed by hand) and token ids
written by `lm-eval --save-ids` (an lm-stream, see lm-stream(5)), with lm-eval's perplexity
protocol: floor(N/T) windows of T ids, per window the mean cross-entropy of the T-1 shifted
predictions, perplexity = exp(mean over windows of the window means).

    /usr/bin/python3 bench/torch_opt.py MODEL_DIR IDS.lms [--seqlen T] [--windows K]
                                         [--batch B] [--threads N] [--json]

Timing mirrors lm-eval's own clock: from before the ids and weights are read to after the
last loss (so weight loading counts on both sides); forward-only seconds are printed too.
Peak RSS is getrusage(RUSAGE_SELF).ru_maxrss of this process.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import msgpack
import numpy as np
import torch
import torch.nn.functional as F

ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64,
             "I64": np.int64, "I32": np.int32}


def print_result(r, as_json):
    """A run's figures on stdout: one JSON line (--json), or a "key: value" line each. The
    other bench/torch_*.py print theirs through it too."""
    if as_json:
        print(json.dumps(r))
    else:
        for k, v in r.items():
            print(f"{k}: {v}")


def read_safetensors(path):
    """name -> float32 torch tensor; the file is parsed by hand (8-byte length, JSON, data).
    Each tensor is read() into its own buffer (no mmap: file pages would count in the RSS)."""
    out = {}
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        base = 8 + n
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]
                                 if kv[0] != "__metadata__" else -1):
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            dt = info["dtype"]
            if dt not in ST_DTYPES:
                raise SystemExit(f"torch_opt: {path}: {name}: dtype {dt} not supported")
            buf = bytearray(e - b)
            f.seek(base + b)
            if f.readinto(buf) != e - b:
                raise SystemExit(f"torch_opt: {path}: {name}: truncated")
            a = np.frombuffer(buf, dtype=ST_DTYPES[dt])
            if dt == "BF16":
                a = (a.astype(np.uint32) << 16).view(np.float32)
            elif dt != "F32":
                a = a.astype(np.float32)
            out[name[len("model."):] if name.startswith("model.") else name] = \
                torch.from_numpy(a).reshape(info["shape"])
    return out


def read_ids(path):
    """The tensor 'ids' (i32 or i64, shape [N]) of an lm-stream written by lm-eval --save-ids."""
    with open(path, "rb") as f:
        u = msgpack.Unpacker(f, raw=False, max_buffer_size=0)
        header = next(u)
        if not isinstance(header, dict) or header.get("format") != "lm-stream":
            raise SystemExit(f"torch_opt: {path}: not an lm-stream")
        ids = None
        for rec in u:
            if rec["kind"] == "end":
                break
            chunks, got = [], 0
            while got < rec["nbytes"]:
                c = next(u)
                chunks.append(c)
                got += len(c)
            if rec["kind"] == "tensor" and rec["name"] == "ids" and ids is None:
                dt = {"i32": "<i4", "i64": "<i8"}[rec["dtype"]]
                ids = np.frombuffer(b"".join(chunks), dtype=dt).astype(np.int64)
        if ids is None:
            raise SystemExit(f"torch_opt: {path}: no tensor 'ids'")
        return torch.from_numpy(ids)


class OPT:
    def __init__(self, cfg, sd):
        self.C = cfg["hidden_size"]
        self.NH = cfg["num_attention_heads"]
        self.L = cfg["num_hidden_layers"]
        self.pre = cfg.get("do_layer_norm_before", True)
        self.eps = cfg.get("layer_norm_eps", 1e-5)
        self.sd = sd
        # decoder.* names (HF "model.decoder.*"; legacy checkpoints lack "model.")
        self.final_ln = "decoder.final_layer_norm.weight" in sd
        self.proj_in = sd.get("decoder.project_in.weight")
        self.proj_out = sd.get("decoder.project_out.weight")
        tied = cfg.get("tie_word_embeddings", True)
        self.lm_head = sd["decoder.embed_tokens.weight"] if tied or "lm_head.weight" not in sd \
            else sd["lm_head.weight"]

    def ln(self, x, p):
        return F.layer_norm(x, (self.C,), self.sd[p + ".weight"], self.sd[p + ".bias"], self.eps)

    def lin(self, x, p):
        return F.linear(x, self.sd[p + ".weight"], self.sd.get(p + ".bias"))

    def logits(self, ids):
        B, T = ids.shape
        C, NH = self.C, self.NH
        hd = C // NH
        sd = self.sd
        x = F.embedding(ids, sd["decoder.embed_tokens.weight"])
        if self.proj_in is not None:
            x = F.linear(x, self.proj_in)
        x = x + sd["decoder.embed_positions.weight"][2:T + 2]        # learned positions, offset 2
        mask = torch.full((T, T), float("-inf")).triu_(1)           # causal
        for l in range(self.L):
            p = f"decoder.layers.{l}."
            r = x
            h = self.ln(x, p + "self_attn_layer_norm") if self.pre else x
            q = self.lin(h, p + "self_attn.q_proj") * hd ** -0.5       # scaled after the bias
            k = self.lin(h, p + "self_attn.k_proj")
            v = self.lin(h, p + "self_attn.v_proj")
            q, k, v = (t.view(B, T, NH, hd).transpose(1, 2) for t in (q, k, v))
            a = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1) @ v
            a = a.transpose(1, 2).reshape(B, T, C)
            x = r + self.lin(a, p + "self_attn.out_proj")
            if not self.pre:
                x = self.ln(x, p + "self_attn_layer_norm")
            r = x
            h = self.ln(x, p + "final_layer_norm") if self.pre else x
            h = self.lin(torch.relu(self.lin(h, p + "fc1")), p + "fc2")
            x = r + h
            if not self.pre:
                x = self.ln(x, p + "final_layer_norm")
        if self.final_ln:
            x = self.ln(x, "decoder.final_layer_norm")
        if self.proj_out is not None:
            x = F.linear(x, self.proj_out)
        return F.linear(x, self.lm_head)                             # tied lm_head


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("ids")
    ap.add_argument("--seqlen", type=int, default=0, help="default: max_position_embeddings")
    ap.add_argument("--windows", type=int, default=0, help="use only the first K windows")
    ap.add_argument("--batch", type=int, default=4, help="windows per forward (lm-eval's default 4)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    o = ap.parse_args()

    torch.set_num_threads(o.threads)
    torch.set_num_interop_threads(1)
    t0 = time.monotonic()
    with open(os.path.join(o.model, "config.json")) as f:
        cfg = json.load(f)
    ids = read_ids(o.ids)
    sd = read_safetensors(os.path.join(o.model, "model.safetensors"))
    m = OPT(cfg, sd)
    T = o.seqlen or cfg["max_position_embeddings"]
    W = len(ids) // T
    if W == 0:
        raise SystemExit(f"torch_opt: {len(ids)} ids, fewer than one window of {T}")
    if o.windows and o.windows < W:
        W = o.windows
    B = min(o.batch, W)
    t1 = time.monotonic()
    means = []
    with torch.inference_mode():
        for w0 in range(0, W, B):
            nb = min(B, W - w0)
            x = ids[w0 * T:(w0 + nb) * T].view(nb, T)
            lg = m.logits(x)
            ce = F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1),
                                 reduction="none").view(nb, T - 1)
            means += ce.double().mean(dim=1).tolist()
            del lg, ce
    t2 = time.monotonic()
    mean = sum(means) / W
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    r = {"program": "torch_opt.py", "torch": torch.__version__, "threads": torch.get_num_threads(),
         "tokens": len(ids), "windows": W, "seqlen": T, "batch": B, "mean_nll": mean,
         "perplexity": math.exp(mean), "seconds": t2 - t0, "forward_seconds": t2 - t1,
         "tokens_per_second": W * T / (t2 - t0), "forward_tokens_per_second": W * T / (t2 - t1),
         "peak_rss_bytes": rss}
    print_result(r, o.json)


if __name__ == "__main__":
    sys.exit(main())
