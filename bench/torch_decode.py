#!/usr/bin/python3
"""bench/torch_decode.py: the PyTorch peer of `lm-eval --generate`, for bench/decode.sh.

Greedy decoding with a KV cache in plain PyTorch (Debian python3-torch, no transformers), on
the weights of a Hugging Face folder (as `lm-export` writes it; read by torch_opt.py's reader,
as f32): the prompt's ids in one forward (prefill), then one token at a time, each step's keys
and values written into a preallocated cache, the next id the argmax of the last row's logits.

    /usr/bin/python3 bench/torch_decode.py MODEL_DIR --ids "2 133 750 9 5" [-n 64]
                                           [--threads N] [--json]

The clock is lm-eval's: from the prefill to the last new token, weights already loaded;
tokens/s = new tokens / those seconds. The ids come out too, so a reader can see both
programs decoded the same thing.
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_opt import OPT, print_result, read_safetensors  # noqa: E402


class Decoder(OPT):
    """OPT with a KV cache: cache[l] = (k, v), each [NH, P, HS], filled up to self.t rows"""

    def __init__(self, cfg, sd, capacity):
        super().__init__(cfg, sd)
        hd = self.C // self.NH
        self.cache = [(torch.zeros(self.NH, capacity, hd), torch.zeros(self.NH, capacity, hd))
                      for _ in range(self.L)]
        self.t = 0

    def step(self, ids):
        """logits [V] of the last of ids ([T] new tokens after the self.t cached ones)"""
        T, t0 = ids.shape[0], self.t
        C, NH = self.C, self.NH
        hd = C // NH
        sd = self.sd
        x = F.embedding(ids, sd["decoder.embed_tokens.weight"])
        if self.proj_in is not None:
            x = F.linear(x, self.proj_in)
        x = x + sd["decoder.embed_positions.weight"][t0 + 2:t0 + T + 2]  # offset 2, as OPT
        # query i (position t0 + i) sees keys 0 .. t0 + i
        mask = torch.full((T, t0 + T), float("-inf")).triu_(t0 + 1) if T > 1 else None
        for l in range(self.L):
            p = f"decoder.layers.{l}."
            r = x
            h = self.ln(x, p + "self_attn_layer_norm") if self.pre else x
            q = self.lin(h, p + "self_attn.q_proj") * hd ** -0.5
            k = self.lin(h, p + "self_attn.k_proj")
            v = self.lin(h, p + "self_attn.v_proj")
            kc, vc = self.cache[l]
            kc[:, t0:t0 + T] = k.view(T, NH, hd).transpose(0, 1)
            vc[:, t0:t0 + T] = v.view(T, NH, hd).transpose(0, 1)
            q = q.view(T, NH, hd).transpose(0, 1)
            s = q @ kc[:, :t0 + T].transpose(-1, -2)
            if mask is not None:
                s = s + mask
            a = (torch.softmax(s, dim=-1) @ vc[:, :t0 + T]).transpose(0, 1).reshape(T, C)
            x = r + self.lin(a, p + "self_attn.out_proj")
            if not self.pre:
                x = self.ln(x, p + "self_attn_layer_norm")
            r = x
            h = self.ln(x, p + "final_layer_norm") if self.pre else x
            x = r + self.lin(torch.relu(self.lin(h, p + "fc1")), p + "fc2")
            if not self.pre:
                x = self.ln(x, p + "final_layer_norm")
        self.t += T
        x = x[-1:]
        if self.final_ln:
            x = self.ln(x, "decoder.final_layer_norm")
        if self.proj_out is not None:
            x = F.linear(x, self.proj_out)
        return F.linear(x, self.lm_head)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--ids", required=True, help="the prompt's ids, BOS first, space-separated")
    ap.add_argument("-n", type=int, default=64, help="new tokens (default 64)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    o = ap.parse_args()

    torch.set_num_threads(o.threads)
    torch.set_num_interop_threads(1)
    with open(os.path.join(o.model, "config.json")) as f:
        cfg = json.load(f)
    sd = read_safetensors(os.path.join(o.model, "model.safetensors"))
    prompt = [int(t) for t in o.ids.split()]
    if not prompt or len(prompt) + o.n > cfg["max_position_embeddings"]:
        raise SystemExit("torch_decode: the prompt and -n must fit the model's positions")
    m = Decoder(cfg, sd, len(prompt) + o.n)
    ids = list(prompt)
    with torch.inference_mode():
        t0 = time.monotonic()
        nxt = int(torch.argmax(m.step(torch.tensor(prompt))))
        for i in range(o.n):
            ids.append(nxt)
            if i + 1 < o.n:
                nxt = int(torch.argmax(m.step(torch.tensor([nxt]))))
        el = time.monotonic() - t0
    r = {"program": "torch_decode.py", "torch": torch.__version__, "threads": torch.get_num_threads(),
         "ids": ids, "new_tokens": o.n, "seconds": el, "tokens_per_second": o.n / el,
         "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    print_result(r, o.json)


if __name__ == "__main__":
    sys.exit(main())
