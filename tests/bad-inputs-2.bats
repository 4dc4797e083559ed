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
# reserves terabytes of shadow memory, so the sanitizer pass skips these checks.
limited() { # KB command...
	[ -z "${LM_SANITIZE:-}" ] || skip "ulimit -v and ASan's shadow memory do not mix"
	local kb=$1; shift
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
