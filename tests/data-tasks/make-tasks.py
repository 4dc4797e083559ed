#!/usr/bin/env python3
"""make-tasks.py: derive multiple-choice tasks and prompt pools from the STS data.

  make-tasks.py stsb-bin  data/stsb/sts-train.csv  N SEED > task.jsonl   (JSON lines, lm-eval --mc)
  make-tasks.py stsb-pool data/stsb/sts-train.csv  N SEED > pool.tsv     (INPUT<TAB>ANSWER, lm-embed --pool)
  make-tasks.py sick-nli  data/sick/SICK_train.txt N SEED > task.jsonl
  make-tasks.py sick-pool data/sick/SICK_train.txt N SEED > pool.tsv

STS-B binarised: gold score >= 3 -> "yes", else "no". SICK entailment: ENTAILMENT ->
"true", CONTRADICTION -> "false", NEUTRAL -> "neither" (3-way). N rows are drawn with
Python's random.Random(SEED) (N = 0: all rows, in file order). Inputs are one line (a pool
is one prompt per line); the demonstration of a pool row is "INPUT ANSWER", exactly the
context + " " + option that lm-eval --mc scores.
"""
import json
import random
import sys


def stsb_rows(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            c = line.rstrip("\n").split("\t")
            if len(c) >= 7:
                yield c[5], c[6], ("yes" if float(c[4]) >= 3.0 else "no")


def sick_rows(path):
    names = {"ENTAILMENT": "true", "CONTRADICTION": "false", "NEUTRAL": "neither"}
    with open(path, encoding="utf-8") as f:
        next(f)  # header
        for line in f:
            c = line.rstrip("\r\n").split("\t")
            if len(c) >= 5:
                yield c[1], c[2], names[c[4]]


def stsb_input(a, b):
    return f"Sentence 1: {a} Sentence 2: {b} Do the two sentences mean the same thing? Answer:"


def sick_input(a, b):
    return f"{a} Question: {b} True, false or neither? Answer:"


TASKS = {
    "stsb": (stsb_rows, stsb_input, ["yes", "no"]),
    "sick": (sick_rows, sick_input, ["true", "neither", "false"]),
}


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    what, path, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    task, kind = what.split("-")
    rows_of, input_of, choices = TASKS[task]
    rows = list(rows_of(path))
    if n:
        rows = random.Random(seed).sample(rows, min(n, len(rows)))
    for a, b, ans in rows:
        x = input_of(" ".join(a.split()), " ".join(b.split()))
        if kind == "pool":
            print(f"{x}\t{ans}")
        else:
            print(json.dumps({"input": x, "choices": choices, "gold": choices.index(ans)}))


if __name__ == "__main__":
    main()
