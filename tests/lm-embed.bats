#!/usr/bin/env bats
# lm-embed: PromptEOL embeddings match transformers' (models/opt-micro/reference.json);
# the stream carries the vectors, the lines and how they were made; a prompt pool becomes
# a retrieval index, tuned deterministically; every bad input is one line on stderr

load helper

setup_file() {
	lm-import "$MICRO" > "$BATS_FILE_TMPDIR/micro.lms"
	"$PYTHON" -c "import json; print('\n'.join(json.load(open('$MICRO/reference.json'))['prompteol']['sentences']))" \
		> "$BATS_FILE_TMPDIR/ref.txt"
}

TASKS="$BATS_TEST_DIRNAME/data-tasks"

# the stream's header map, tensors and lines as JSON (python3-msgpack, an independent reader)
dump_stream() {
	"$PYTHON" - "$1" <<'PY'
import json, struct, sys, msgpack
u = msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, max_buffer_size=1 << 30)
out = {"header": next(u), "tensors": {}, "blobs": {}}
for rec in u:
    if rec["kind"] == "end":
        out["end"] = rec
        break
    body = b""
    while len(body) < rec["nbytes"]:
        body += next(u)
    if rec["kind"] == "tensor":
        out["tensors"][rec["name"]] = {"shape": rec["shape"],
                                       "values": list(struct.unpack("<%df" % (len(body) // 4), body))}
    else:
        out["blobs"][rec["name"]] = body.decode()
print(json.dumps(out))
PY
}

@test "lm-embed --help, man page, usage errors" {
	run -0 lm-embed --help
	assert_line --index 0 "usage: lm-embed [options] FILE"
	run -0 mandoc -Tlint -Wwarning "$TOP/man/lm-embed.1"
	assert_output ""
	run -2 --separate-stderr lm-embed
	assert_one_line_error lm-embed
	run -2 --separate-stderr lm-embed --demo 'no equals sign' x.txt
	assert_one_line_error lm-embed
	run -2 --separate-stderr lm-embed --template 'no slot' x.txt
	assert_one_line_error lm-embed
	run -2 --separate-stderr lm-embed --tune t.jsonl x.txt
	assert_one_line_error lm-embed
	output=$stderr
	assert_output --partial "give --pool"
	run -2 --separate-stderr lm-embed --bogus x.txt
	assert_one_line_error lm-embed
}

@test "lm-embed: opt-micro PromptEOL embeddings match transformers (first 8 values 1e-4, cosines 1e-5)" {
	lm-embed -q --tsv "$BATS_FILE_TMPDIR/ref.txt" < "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/e.tsv"
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/e.tsv" "$MICRO/reference.json" <<'PY'
import json, math, sys
ref = json.load(open(sys.argv[2]))["prompteol"]
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
assert [r[0] for r in rows] == ref["sentences"], rows
emb = [list(map(float, r[1].split())) for r in rows]
assert all(len(e) == 256 for e in emb)
for e, want in zip(emb, ref["first8"]):
    err = max(abs(a - b) for a, b in zip(e, want)) / max(abs(b) for b in want)
    print("first8 relative error", err)
    assert err < 1e-4, err
cos = lambda a, b: sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
for i in range(3):
    for j in range(3):
        assert abs(cos(emb[i], emb[j]) - ref["cos"][i][j]) < 1e-5, (i, j)
PY
}

@test "lm-embed: the stream holds [n, d] f32, the lines and the settings; batch size changes nothing" {
	lm-embed -b 1 "$BATS_FILE_TMPDIR/ref.txt" < "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/b1.lms"
	lm-embed -b 16 -o "$BATS_TEST_TMPDIR/b16.lms" "$BATS_FILE_TMPDIR/ref.txt" < "$BATS_FILE_TMPDIR/micro.lms"
	run -0 lm-info "$BATS_TEST_TMPDIR/b1.lms"
	assert_output --regexp "embeddings +f32 +3x256 "
	assert_output --partial "blob embed/lines.txt"
	dump_stream "$BATS_TEST_TMPDIR/b1.lms" > "$BATS_TEST_TMPDIR/b1.json"
	dump_stream "$BATS_TEST_TMPDIR/b16.lms" > "$BATS_TEST_TMPDIR/b16.json"
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/b1.json" "$BATS_TEST_TMPDIR/b16.json" "$BATS_FILE_TMPDIR/ref.txt" <<'PY'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
em = a["header"]["embedding"]
assert em["method"] == "prompteol" and em["count"] == 3 and em["dim"] == 256 and em["demo"] is None, em
assert em["template"] == 'This sentence : "<sentence>" means in one word:"'
assert em["model_fingerprint"] == b["header"]["embedding"]["model_fingerprint"]
assert a["header"]["provenance"][-1]["tool"] == "lm-embed"
assert a["blobs"]["embed/lines.txt"] == open(sys.argv[3]).read()
x, y = a["tensors"]["embeddings"]["values"], b["tensors"]["embeddings"]["values"]
assert a["tensors"]["embeddings"]["shape"] == [3, 256]
err = max(abs(p - q) for p, q in zip(x, y)) / max(abs(q) for q in y)
assert err < 1e-5, err
PY
}

@test "lm-embed --demo and --avg change the vectors and are recorded" {
	lm-embed --tsv "$BATS_FILE_TMPDIR/ref.txt" < "$BATS_FILE_TMPDIR/micro.lms" | cut -f2 > "$BATS_TEST_TMPDIR/plain"
	lm-embed --tsv --demo 'A man is smoking.=Smoking' "$BATS_FILE_TMPDIR/ref.txt" < "$BATS_FILE_TMPDIR/micro.lms" \
		| cut -f2 > "$BATS_TEST_TMPDIR/demo"
	lm-embed --tsv --avg "$BATS_FILE_TMPDIR/ref.txt" < "$BATS_FILE_TMPDIR/micro.lms" | cut -f2 > "$BATS_TEST_TMPDIR/avg"
	run ! cmp -s "$BATS_TEST_TMPDIR/plain" "$BATS_TEST_TMPDIR/demo"
	run ! cmp -s "$BATS_TEST_TMPDIR/plain" "$BATS_TEST_TMPDIR/avg"
	lm-embed --avg --demo 'A man is smoking.=Smoking' "$BATS_FILE_TMPDIR/ref.txt" < "$BATS_FILE_TMPDIR/micro.lms" \
		> "$BATS_TEST_TMPDIR/d.lms"
	run -0 bash -c "lm-info --json '$BATS_TEST_TMPDIR/d.lms' >/dev/null && '$PYTHON' -c \"
import msgpack; h = next(msgpack.Unpacker(open('$BATS_TEST_TMPDIR/d.lms', 'rb'), raw=False))
e = h['embedding']; print(e['method'], e['demo'])\""
	assert_output "avg A man is smoking.=Smoking"
}

@test "lm-embed: empty lines are skipped with one warning; a file of none is an error" {
	printf 'A man is playing a guitar.\n\n   \nThe stock market fell sharply today.\n' > "$BATS_TEST_TMPDIR/s.txt"
	run -0 --separate-stderr lm-embed --tsv "$BATS_TEST_TMPDIR/s.txt" < "$BATS_FILE_TMPDIR/micro.lms"
	[ "${#lines[@]}" -eq 2 ]
	assert_one_line_error lm-embed
	output=$stderr
	assert_output --partial "warning:"
	assert_output --partial "skipped 2 empty lines (first: line 2)"
	printf '\n\n' > "$BATS_TEST_TMPDIR/none.txt"
	run -1 --separate-stderr lm-embed -q -o "$BATS_TEST_TMPDIR/none.lms" "$BATS_TEST_TMPDIR/none.txt" \
		< "$BATS_FILE_TMPDIR/micro.lms"
	assert_one_line_error lm-embed
	[ ! -e "$BATS_TEST_TMPDIR/none.lms" ]
}

@test "lm-embed -m STREAM: the lines may come on standard input" {
	run -0 bash -c "head -1 '$BATS_FILE_TMPDIR/ref.txt' | lm-embed -m '$BATS_FILE_TMPDIR/micro.lms' --tsv - | cut -f1"
	assert_output "A man is playing a guitar."
	run -2 --separate-stderr lm-embed - < "$BATS_FILE_TMPDIR/micro.lms"
	assert_one_line_error lm-embed
	run -2 --separate-stderr lm-embed --tsv -o x.lms "$BATS_FILE_TMPDIR/ref.txt" < "$BATS_FILE_TMPDIR/micro.lms"
	assert_one_line_error lm-embed
}

@test "lm-embed: a truncated model or a missing file is one line, exit 1, no output file" {
	head -c 200000 "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/cut.lms"
	run -1 --separate-stderr lm-embed -o "$BATS_TEST_TMPDIR/out.lms" "$BATS_FILE_TMPDIR/ref.txt" \
		< "$BATS_TEST_TMPDIR/cut.lms"
	assert_one_line_error lm-embed
	[ ! -e "$BATS_TEST_TMPDIR/out.lms" ]
	run -1 --separate-stderr lm-embed "$BATS_TEST_TMPDIR/absent.txt" < "$BATS_FILE_TMPDIR/micro.lms"
	assert_one_line_error lm-embed
	run -1 --separate-stderr lm-embed -m "$MICRO/README.md" "$BATS_FILE_TMPDIR/ref.txt"
	assert_one_line_error lm-embed
}

@test "lm-embed --pool: INPUT<TAB>ANSWER rows; a bad row names its line" {
	lm-embed -q --pool "$TASKS/stsb-pool.tsv" < "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/idx.lms"
	dump_stream "$BATS_TEST_TMPDIR/idx.lms" > "$BATS_TEST_TMPDIR/idx.json"
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/idx.json" "$TASKS/stsb-pool.tsv" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[2])]
assert d["header"]["embedding"]["kind"] == "pool"
assert d["blobs"]["embed/lines.txt"].splitlines() == [a + " " + b for a, b in rows]
assert d["tensors"]["embeddings"]["shape"] == [len(rows), 256] and "projection" not in d["tensors"]
PY
	printf 'input one\tyes\ninput two without answer\n' > "$BATS_TEST_TMPDIR/bad.tsv"
	run -1 --separate-stderr lm-embed --pool "$BATS_TEST_TMPDIR/bad.tsv" < "$BATS_FILE_TMPDIR/micro.lms"
	assert_one_line_error lm-embed
	output=$stderr
	assert_output --partial "line 2:"
}

@test "lm-embed --tune: retrieval on the task it was tuned on improves" {
	# 24 training items, 8 sampled prompts each: the pairs whose positive the identity map
	# ranks above all 3 hard negatives, before and after 10 epochs
	run -0 --separate-stderr lm-embed --pool --tune "$TASKS/stsb-bin-train.jsonl" --train-max 24 -L 8 \
		--negatives 3 --epochs 10 --seed 1 -o "$BATS_TEST_TMPDIR/t.lms" "$TASKS/stsb-pool.tsv" \
		< "$BATS_FILE_TMPDIR/micro.lms"
	echo "$stderr"
	run -0 "$PYTHON" - "$stderr" <<'PY'
import re, sys
m = re.search(r"tuned on (\d+) of 24 inputs .* loss (\S+) -> (\S+); training positive ranked first "
              r"(\S+)% -> (\S+)%", sys.argv[1])
pairs, l0, l1, r0, r1 = int(m[1]), float(m[2]), float(m[3]), float(m[4]), float(m[5])
print(pairs, "pairs: loss", l0, l1, "ranked first", r0, r1)
assert pairs >= 8 and l1 < l0
assert r1 >= 75 and r1 >= r0 + 40, (r0, r1)
PY
	echo "$output"
}

@test "lm-embed --tune: the same seed gives the same index, with a projection; --projection copies it" {
	tune() {
		lm-embed -q --pool --tune "$TASKS/stsb-bin-train.jsonl" --train-max 10 -L 4 --negatives 2 \
			--epochs 3 "$@" "$TASKS/stsb-pool.tsv" < "$BATS_FILE_TMPDIR/micro.lms"
	}
	tune --seed 1 > "$BATS_TEST_TMPDIR/a.lms"
	tune --seed 1 > "$BATS_TEST_TMPDIR/b.lms"
	cmp "$BATS_TEST_TMPDIR/a.lms" "$BATS_TEST_TMPDIR/b.lms"
	run -0 lm-info "$BATS_TEST_TMPDIR/a.lms"
	assert_output --regexp "projection +f32 +256x256 "
	head -20 "$TASKS/stsb-pool.tsv" > "$BATS_TEST_TMPDIR/small.tsv"
	lm-embed -q --pool --projection "$BATS_TEST_TMPDIR/a.lms" "$BATS_TEST_TMPDIR/small.tsv" \
		< "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/c.lms"
	run -0 lm-info "$BATS_TEST_TMPDIR/c.lms"
	assert_output --regexp "projection +f32 +256x256 "
	# an index without a projection has none to copy
	lm-embed -q --pool "$BATS_TEST_TMPDIR/small.tsv" < "$BATS_FILE_TMPDIR/micro.lms" > "$BATS_TEST_TMPDIR/p.lms"
	run -1 --separate-stderr lm-embed --pool --projection "$BATS_TEST_TMPDIR/p.lms" "$BATS_TEST_TMPDIR/small.tsv" \
		< "$BATS_FILE_TMPDIR/micro.lms"
	assert_one_line_error lm-embed
	# a sample larger than the pool
	run -1 --separate-stderr lm-embed --pool --tune "$TASKS/stsb-bin-train.jsonl" -L 30 \
		"$BATS_TEST_TMPDIR/small.tsv" < "$BATS_FILE_TMPDIR/micro.lms"
	assert_one_line_error lm-embed
	output=$stderr
	assert_output --partial "fewer than --sample 30"
}
