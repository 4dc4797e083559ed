#!/usr/bin/env bats
# Bad input, round two (issue #23): crafted embedding indexes, inputs whose size is out of
# proportion to what they say (a letter repeated for megabytes, /dev/zero, a gzip bomb),
# degenerate tasks that used to print a number, and control bytes quoted in messages.
# Every case is one line on stderr, no report, bounded memory.

load helper

TASKS="$BATS_TEST_DIRNAME/data-tasks"

setup_file() {
	lm-import "$MICRO" > "$BATS_FILE_TMPDIR/micro.lms"
	head -5 "$TASKS/stsb-pool.tsv" > "$BATS_FILE_TMPDIR/pool.tsv"
	lm-embed -q --pool "$BATS_FILE_TMPDIR/pool.tsv" < "$BATS_FILE_TMPDIR/micro.lms" \
		> "$BATS_FILE_TMPDIR/idx.lms"
}

bad() { # program expected-status message-part command...
	local prog=$1 st=$2 msg=$3; shift 3
	run "-$st" --separate-stderr "$@"
	assert_one_line_error "$prog"
	[ -z "$output" ] || { echo "report printed: $output"; return 1; }
	output=$stderr
	assert_output --partial "$msg"
}

# run a command with its address space limited to $1 KB. OpenBLAS's buffers are sized
# per thread (and it retries a failed allocation forever), so it gets one thread; ASan
# reserves terabytes of shadow memory, so the sanitizer pass runs it without the limit
# (the unsanitized pass checks the memory).
limited() { # KB command...
	local kb=$1; shift
	[ -z "${LM_SANITIZE:-}" ] || kb=unlimited
	OPENBLAS_NUM_THREADS=1 bash -c 'ulimit -v "$0" && exec "$@"' "$kb" "$@"
}

# copy an embedding stream, changing it (CRCs recomputed): drop-line (the lines blob
# loses its last line), huge-count (the header says 10^9 embeddings)
rewrite_index() { # mode in out
	"$PYTHON" - "$@" <<'PY'
import sys, zlib, msgpack
mode, src, dst = sys.argv[1:4]
u = msgpack.Unpacker(open(src, "rb"), raw=False, max_buffer_size=1 << 30)
out = open(dst, "wb")
h = next(u)
if mode == "huge-count":
    h["embedding"]["count"] = 10**9
out.write(msgpack.packb(h))
for rec in u:
    if rec["kind"] == "end":
        out.write(msgpack.packb(rec)); break
    body = b""
    while len(body) < rec["nbytes"]:
        body += next(u)
    if mode == "drop-line" and rec["name"] == "embed/lines.txt":
        body = body[:body.rstrip(b"\n").rfind(b"\n") + 1]
        rec["nbytes"], rec["crc32"] = len(body), zlib.crc32(body)
    out.write(msgpack.packb(rec)); out.write(msgpack.packb(body, use_bin_type=True))
PY
}

@test "index with fewer lines than embeddings: an error, not a double free" {
	rewrite_index drop-line "$BATS_FILE_TMPDIR/idx.lms" "$BATS_TEST_TMPDIR/short.lms"
	bad lm-eval 1 "embed/lines.txt: 4 lines for 5 embeddings" lm-eval --mc "$TASKS/stsb-bin-test.jsonl" \
		--retrieve "$BATS_TEST_TMPDIR/short.lms" "$BATS_FILE_TMPDIR/micro.lms"
	bad lm-embed 1 "embed/lines.txt: 4 lines for 5 embeddings" lm-embed --pool \
		--projection "$BATS_TEST_TMPDIR/short.lms" "$BATS_FILE_TMPDIR/pool.tsv" < "$BATS_FILE_TMPDIR/micro.lms"
}

@test "index whose header counts 10^9 embeddings: refused within 500 MB" {
	rewrite_index huge-count "$BATS_FILE_TMPDIR/idx.lms" "$BATS_TEST_TMPDIR/huge.lms"
	# the count used to size an 8 GB array before anything was compared to it
	bad lm-embed 1 "5 lines for 1000000000 embeddings" limited 500000 lm-embed --pool \
		--projection "$BATS_TEST_TMPDIR/huge.lms" "$BATS_FILE_TMPDIR/pool.tsv" < "$BATS_FILE_TMPDIR/micro.lms"
}

@test "STS with one pair, equal gold scores or equal cosines: undefined, not spearman 0.00" {
	local f="$BATS_TEST_TMPDIR"
	head -1 "$TASKS/sts-mini.csv" > "$f/one.csv"
	head -4 "$TASKS/sts-mini.csv" | awk -F'\t' -v OFS='\t' '{$5 = "3.000"; print}' > "$f/flat.csv"
	# the same two sentences with different gold scores: every cosine is the same
	head -4 "$TASKS/sts-mini.csv" | awk -F'\t' -v OFS='\t' '{$6 = "A man plays."; $7 = "A man sings."; $5 = NR; print}' \
		> "$f/same.csv"
	bad lm-eval 1 "one.csv: Spearman's rho is undefined for 1 sentence pair" \
		lm-eval --sts "$f/one.csv" "$BATS_FILE_TMPDIR/micro.lms"
	bad lm-eval 1 "flat.csv: Spearman's rho is undefined: the gold score is 3 for every pair" \
		lm-eval --sts "$f/flat.csv" "$BATS_FILE_TMPDIR/micro.lms"
	bad lm-eval 1 "same.csv: Spearman's rho is undefined: the cosine is" \
		lm-eval --sts "$f/same.csv" "$BATS_FILE_TMPDIR/micro.lms"
	# two pairs that differ are enough for a number
	head -2 "$TASKS/sts-mini.csv" > "$f/two.csv"
	run -0 lm-eval --sts "$f/two.csv" --json "$BATS_FILE_TMPDIR/micro.lms"
	assert_output --partial '"spearman": '
}

@test "multiple choice with an empty choice: refused, naming the file and the item" {
	local f="$BATS_TEST_TMPDIR"
	head -1 "$TASKS/stsb-bin-test.jsonl" > "$f/mc.jsonl"
	printf '{"input": "Is it?", "choices": ["", ""], "gold": 0}\n' >> "$f/mc.jsonl"
	bad lm-eval 1 "mc.jsonl: line 2: choice 1 is empty" lm-eval --mc "$f/mc.jsonl" "$BATS_FILE_TMPDIR/micro.lms"
	printf '{"input": "Is it?", "choices": ["yes", " \\t"], "gold": 0}\n' > "$f/ws.jsonl"
	bad lm-eval 1 "ws.jsonl: line 1: choice 2 is empty" lm-eval --mc "$f/ws.jsonl" "$BATS_FILE_TMPDIR/micro.lms"
	printf '[{"question": "Q?", "mc1_targets": {"yes": 1, "": 0}}]\n' > "$f/tqa.json"
	bad lm-eval 1 "tqa.json: item 1: \"mc1_targets\": answer 2 is empty" \
		lm-eval --mc "$f/tqa.json" "$BATS_FILE_TMPDIR/micro.lms"
}

@test "a control byte quoted from an input file is escaped in the message" {
	local f="$BATS_TEST_TMPDIR"
	printf 'g\tf\ty\t1\t\033[2J\001\tA man.\tA dog.\n' > "$f/ctl.csv"
	bad lm-eval 1 "line 1: score '\\x1b[2J\\x01' is not a number" \
		lm-eval --sts "$f/ctl.csv" "$BATS_FILE_TMPDIR/micro.lms"
	# no byte below 0x20 reached the terminal
	! printf '%s' "$stderr" | LC_ALL=C grep -q '[[:cntrl:]]'
}

@test "dropout 2.0 in config.json is refused: [0, 1)" {
	mkdir "$BATS_TEST_TMPDIR/d2"
	ln -s "$MICRO"/model.safetensors "$MICRO"/vocab.json "$MICRO"/merges.txt "$BATS_TEST_TMPDIR/d2/"
	sed 's/"dropout": 0.0/"dropout": 2.0/' "$MICRO/config.json" > "$BATS_TEST_TMPDIR/d2/config.json"
	grep -q '"dropout": 2.0' "$BATS_TEST_TMPDIR/d2/config.json"
	bad lm-import 1 "config: dropout 2 is not in [0, 1)" lm-import "$BATS_TEST_TMPDIR/d2"
	# and on the command line, as before
	bad lm-retrain 2 "--dropout: '2.0' is not a number in [0, 0.99]" lm-retrain --perp --dropout 2.0 \
		-d "$DATA/novels-eval/novels-calib.txt" "$BATS_FILE_TMPDIR/micro.lms"
}

@test "lm-eval --ppl: an 8 MB line of one letter is tokenized in bounded memory, ordinary text's ids unchanged" {
	local f="$BATS_TEST_TMPDIR"
	"$PYTHON" -c 'import sys; sys.stdout.write("a" * 8000000 + "\n")' > "$f/a.txt"
	# 300 MB of address space: the model, OpenBLAS and the text's ids fit (about 230 MB);
	# BPE over the whole line at once (36 bytes a byte, 290 MB more) did not
	run -0 --separate-stderr limited 300000 lm-eval -q --ppl "$f/a.txt" -w 1 -s 64 -j 1 \
		--save-ids "$f/a.lms" "$BATS_FILE_TMPDIR/micro.lms"
	assert_output --partial "tokens: 2000002"
	# the pieces are cut at 64 KiB, a multiple of the 4-letter token this line is made of:
	# every id is that token
	"$PYTHON" - "$f/a.lms" <<'PY'
import sys, struct, msgpack
u = msgpack.Unpacker(open(sys.argv[1], "rb"), raw=False, max_buffer_size=1 << 30)
next(u)
for rec in u:
    body = b""
    while len(body) < rec["nbytes"]:
        body += next(u)
    if rec.get("name") == "ids":
        ids = struct.unpack("<%di" % (len(body) // 4), body)
        assert ids[0] == 2 and len(set(ids[1:-1])) == 1, set(ids[1:-1])
        break
PY
	# ordinary text: the ids' count is the one transformers gave (models/opt-micro/reference.json)
	run -0 --separate-stderr lm-eval -q --ppl "$DATA/novels-eval/novels-test.txt" -w 1 -s 64 -j 1 \
		"$BATS_FILE_TMPDIR/micro.lms"
	want=$("$PYTHON" -c "import json; print(json.load(open('$MICRO/reference.json'))['tokens']['novels-test.txt'])")
	assert_output --partial "tokens: $want"
}

@test "lm-eval --ppl: /dev/zero and a text with a NUL byte are refused at once" {
	bad lm-eval 1 "/dev/zero: a NUL byte at offset 0: not text" \
		limited 400000 lm-eval --ppl /dev/zero "$BATS_FILE_TMPDIR/micro.lms"
	head -c 100000 "$DATA/novels-eval/novels-test.txt" > "$BATS_TEST_TMPDIR/nul.txt"
	printf 'x\0y' >> "$BATS_TEST_TMPDIR/nul.txt"
	bad lm-eval 1 "nul.txt: a NUL byte at offset 100001: not text" \
		lm-eval --ppl "$BATS_TEST_TMPDIR/nul.txt" "$BATS_FILE_TMPDIR/micro.lms"
	# an lm-stream of ids (NULs and all) is still read as ids
	lm-eval -q --ppl "$DATA/novels-eval/novels-calib.txt" -w 1 -s 64 --save-ids "$BATS_TEST_TMPDIR/ids.lms" \
		"$BATS_FILE_TMPDIR/micro.lms" > /dev/null
	run -0 --separate-stderr lm-eval -q --ppl "$BATS_TEST_TMPDIR/ids.lms" -w 1 -s 64 "$BATS_FILE_TMPDIR/micro.lms"
	assert_output --partial "tokens: "
}

@test "STS, multiple-choice and CSV files: /dev/zero is refused at its first byte" {
	bad lm-eval 1 "/dev/zero: a NUL byte at offset 0: not text" \
		limited 400000 lm-eval --sts /dev/zero "$BATS_FILE_TMPDIR/micro.lms"
	bad lm-eval 1 "/dev/zero: a NUL byte at offset 0: not text" \
		limited 400000 lm-eval --mc /dev/zero "$BATS_FILE_TMPDIR/micro.lms"
	bad lm-unlearn 1 "/dev/zero: a NUL byte at offset 0: not text" \
		limited 400000 lm-unlearn --forget /dev/zero "$BATS_FILE_TMPDIR/micro.lms"
	# a NUL further in: its offset
	{ head -2 "$TASKS/sts-mini.csv"; printf 'x\0'; } > "$BATS_TEST_TMPDIR/nul.csv"
	bad lm-eval 1 "nul.csv: a NUL byte at offset $(head -2 "$TASKS/sts-mini.csv" | wc -c | awk '{print $1 + 1}'): not text" \
		lm-eval --sts "$BATS_TEST_TMPDIR/nul.csv" "$BATS_FILE_TMPDIR/micro.lms"
}

@test "lm-eval --exit-sweep: a 50 MB JSON line in 50 KB of gzip is refused within 300 MB" {
	"$PYTHON" - "$BATS_TEST_TMPDIR/big.jsonl.gz" <<'PY'
import gzip, sys
with gzip.open(sys.argv[1], "wt") as f:
    f.write('{"prompt": "def f():\\n", "canonical_solution": "    return 1\\n"}\n')
    f.write('{"prompt": "' + "a" * 50000000 + '", "canonical_solution": "x"}\n')
PY
	bad lm-eval 1 "big.jsonl.gz: line 2: longer than 1 MiB" limited 300000 lm-eval --exit-sweep \
		"$BATS_TEST_TMPDIR/big.jsonl.gz" --exit-rule confidence --exits 1,2,3 -w 2 "$BATS_FILE_TMPDIR/micro.lms"
}
