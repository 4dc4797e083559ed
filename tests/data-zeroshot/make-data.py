#!/usr/bin/env python3
"""make-data.py: writes this folder's tiny zero-shot task files, in the layout lm-eval
--task --data DIR reads (the data sets' own file formats), from data/novels-eval's
novels-calib.txt, a novel opt-micro was trained on.

Every item's answer is known by construction: the correct choice is the novel's own next
words after a passage, the others strings of random letters of about the same length; for
the fixed yes/no and True/False choices of BoolQ and RTE the items come in pairs with
opposite labels, so exactly half are right. Run from anywhere; the output is deterministic.

    make-data.py              this folder's files (a few items per task)
    make-data.py OUT N        N items per task into OUT, from novels-retrain.txt (for
                              bench/zeroshot.sh: timing without the real data sets)"""
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
BIG = len(sys.argv) == 3
OUT = sys.argv[1] if BIG else HERE
N = int(sys.argv[2]) if BIG else 0
SRC = "novels-retrain.txt" if BIG else "novels-calib.txt"
text = open(os.path.join(TOP, "data/novels-eval", SRC), encoding="utf-8").read()
rng = random.Random(21)
# items per task: hellaswag, arc_easy, arc_challenge, openbookqa, piqa, boolq pairs, winogrande
COUNTS = [N, N, N, N, N, (N + 1) // 2, N] if BIG else [4, 3, 3, 3, 3, 2, 3]
STEP = 0 if BIG else 9000


def passages(n, ctx_chars=240 if BIG else 320, cont_words=8, start=4000, step=STEP):
    """n (context, continuation) pairs cut at word boundaries inside long paragraphs"""
    out, off = [], start
    while len(out) < n:
        para_start = text.find("\n", off) + 1  # whole paragraphs only
        para_end = text.find("\n", para_start)
        if BIG and para_end < 0:
            raise SystemExit(f"make-data.py: {SRC}: fewer than {n} long paragraphs after {start}")
        para = text[para_start:para_end]
        off = para_end
        if len(para) < ctx_chars + 120:
            continue
        cut = para.rfind(" ", 0, ctx_chars)
        words = para[cut + 1:].split(" ")
        out.append((para[:cut], " ".join(words[:cont_words])))
        off += step
    return out


def garbage(like):
    """random lower-case words of the lengths of like's words"""
    return " ".join("".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in w) for w in like.split(" "))


def write(path, lines):
    path = os.path.join(OUT, path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for l in lines:
            f.write(l + "\n")


def jl(o):
    return json.dumps(o, ensure_ascii=False)


P = passages(sum(COUNTS[:6]) if BIG else 24)
ends = [sum(COUNTS[:k + 1]) for k in range(6)]
# hellaswag: the passage split between ctx_a and ctx_b (lower case: the harness capitalizes
# ctx_b and lowers its rest), one item with WikiHow's bracket markers
rows = []
for i, (ctx, cont) in enumerate(P[0:ends[0]]):
    head, tail = ctx.rsplit(". ", 1) if ". " in ctx else (ctx, "")
    endings = [garbage(cont) for _ in range(3)]
    endings.insert(i % 4, cont)
    ctx_a = head + "." + (" [header] " if i == 1 else "")
    rows.append(jl({"ind": i, "activity_label": "Reading a novel", "ctx_a": ctx_a,
                    "ctx_b": tail.lower(), "ctx": ctx, "split": "val", "split_type": "indomain",
                    "label": i % 4, "endings": endings, "source_id": "novels-calib"}))
write("hellaswag/hellaswag_val.jsonl", rows)

# ARC (AI2's nested layout; labels A-D, and 1-4 as some ARC questions have)
for name, ps, numeric in (("ARC-Easy-Test", P[ends[0]:ends[1]], False),
                          ("ARC-Challenge-Test", P[ends[1]:ends[2]], True)):
    rows = []
    for i, (ctx, cont) in enumerate(ps):
        texts = [garbage(cont) for _ in range(3)]
        texts.insert((i + 1) % 4, cont)
        labels = ["1", "2", "3", "4"] if numeric else ["A", "B", "C", "D"]
        rows.append(jl({"id": f"novel-{i}", "question": {"stem": ctx, "choices": [
            {"text": t, "label": l} for t, l in zip(texts, labels)]},
            "answerKey": labels[(i + 1) % 4]}))
    write(f"arc/{name}.jsonl", rows)

# OpenBookQA (the same layout, the stem alone as the context)
rows = []
for i, (ctx, cont) in enumerate(P[ends[2]:ends[3]]):
    texts = [garbage(cont) for _ in range(3)]
    texts.insert(3 - i % 4, cont)
    rows.append(jl({"id": f"novel-{i}", "question": {"stem": ctx, "choices": [
        {"text": t, "label": l} for t, l in zip(texts, "ABCD")]}, "fact1": "",
        "humanScore": 1, "clarity": 1, "turkIdAnonymized": "", "answerKey": "ABCD"[3 - i % 4]}))
write("openbookqa/test.jsonl", rows)

# PIQA: goal, sol1, sol2; the labels in valid-labels.lst
rows, labels = [], []
for i, (ctx, cont) in enumerate(P[ends[3]:ends[4]]):
    sols = [garbage(cont), cont] if i % 2 else [cont, garbage(cont)]
    rows.append(jl({"goal": ctx, "sol1": sols[0], "sol2": sols[1]}))
    labels.append(str(i % 2))
write("piqa/valid.jsonl", rows)
write("piqa/valid-labels.lst", labels)

# WinoGrande: "_" where the options go; the novel's next three words or random letters,
# then the rest of its sentence, scored after each (the harness's partial scoring)
rows = []
for i, (ctx, cont) in enumerate(passages(COUNTS[6], cont_words=14,
                                         start=len(text) // 2 if BIG else 50000)):
    w = cont.split(" ")
    opt, rest = " ".join(w[:3]), " ".join(w[3:])
    opts = [garbage(opt), opt] if i % 2 else [opt, garbage(opt)]
    rows.append(jl({"sentence": ctx + " _ " + rest, "option1": opts[0], "option2": opts[1],
                    "answer": str(2 if i % 2 else 1)}))
write("winogrande/dev.jsonl", rows)

# BoolQ (SuperGLUE's val.jsonl) and RTE (GLUE's dev.tsv): their choices are fixed (yes/no,
# True/False), so the items come in pairs, the same text with opposite labels: whatever
# the model prefers, exactly one of a pair is right and the accuracy is 1/2
qs = [(("is the house on the hill", "did the old man come back")[k % 2], P[k][0])
      for k in range(ends[4], ends[5])]
rows = []
for i, (q, passage) in enumerate(qs):
    for yes in ((True, False) if i % 2 == 0 else (False, True)):
        rows.append(jl({"question": q, "passage": passage, "idx": len(rows), "label": yes}))
write("boolq/val.jsonl", rows)
rows = ["index\tsentence1\tsentence2\tlabel"]
for i, (q, passage) in enumerate(qs):
    h = q[0].upper() + q[1:] + "."
    for yes in ((True, False) if i % 2 == 0 else (False, True)):
        rows.append(f"{len(rows) - 1}\t{passage}\t{h}\t{'entailment' if yes else 'not_entailment'}")
write("rte/dev.tsv", rows)

# LAMBADA (OpenAI's jsonl): three idioms whose last word opt-micro predicts greedily, and
# one ending in a made-up word, which no model predicts
rows = [jl({"text": t}) for t in (
    "She looked at me for a moment, and then she turned away without saying a word",
    "I shook my head, and said nothing; for I knew that it would be of no use to say anything at all",
    "\"Good morning, sir,\" said the man, taking off his hat",
    "\"Good morning, sir,\" said the man, taking off his " + garbage("zzzzzz"))]
if BIG:  # passages ending on a word, for timing
    rows = [jl({"text": ctx}) for ctx, _ in passages(N)]
write("lambada/lambada_test.jsonl", rows)
