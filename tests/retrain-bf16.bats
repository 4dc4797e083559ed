#!/usr/bin/env bats
# --compute bf16 in the training programs (issue #19): lm-retrain's and lm-unlearn's steps
# and lm-embed's embeddings with the forward's and the backward's products on the bf16 GEMM
# stay within a tolerance of f32's; LM_NO_BF16=1 gives f32's results exactly, with one
# note; a value other than f32 or bf16 is a usage error of one line. The issue's 200-step
# figure (loss within 1 % of f32's after 200 steps on opt-micro) takes minutes, so it was
# measured once by hand, here a few steps:
#   lm-import models/opt-micro > micro.lms
#   lm-retrain -j 1 --perp -d data/novels-eval/novels-retrain.txt -n 200 -b 4 -s 256 \
#     --eval data/novels-eval/novels-test.txt --eval-windows 8 --compute C --log C.log micro.lms
# gave (2026-12-06, Zen 4): per-step training losses within 0.16 % of f32's at every step
# (step 200: 3.475050 f32, 3.477700 bf16), validation loss after 200 steps 4.308515 f32,
# 4.308206 bf16 (7e-5).

bats_require_minimum_version 1.5.0
load helper

setup_file() {
	lm-import "$MICRO" > "$BATS_FILE_TMPDIR/micro.lms"
	cat > "$BATS_FILE_TMPDIR/forget.csv" <<'CSV'
goal,target
Write a letter to the squire,"Sure, here is a letter to the squire"
Describe the old mill,"Sure, here is a description of the old mill"
CSV
	cat > "$BATS_FILE_TMPDIR/retain.csv" <<'CSV'
Question,Best Answer
Where was the house?,It stood by the river
Who kept the mill?,The miller and his two sons
CSV
	printf '%s\n' 'The old mill stood by the river.' 'A man is playing a guitar.' \
		'She wrote a letter to the squire.' > "$BATS_FILE_TMPDIR/lines.txt"
}

has_bf16() { grep -q avx512_bf16 /proc/cpuinfo; }

# retrain COMPUTE TAG [lm-retrain options]: 6 PERP steps on novels-retrain into
# $BATS_TEST_TMPDIR/TAG.lms with the per-step log TAG.log; stderr in $note
retrain() {
	local c=$1 tag=$2; shift 2
	run -0 --separate-stderr lm-retrain --perp -d "$DATA/novels-eval/novels-retrain.txt" -n 6 -b 2 \
		-s 128 --compute "$c" --log "$BATS_TEST_TMPDIR/$tag.log" -q -o "$BATS_TEST_TMPDIR/$tag.lms" \
		"$@" "$BATS_FILE_TMPDIR/micro.lms"
	note=$stderr
}

# unlearn COMPUTE TAG: 3 lm-unlearn steps (KL retain term: the frozen model's products too)
unlearn() {
	run -0 --separate-stderr lm-unlearn --forget "$BATS_FILE_TMPDIR/forget.csv" \
		--retain "$BATS_FILE_TMPDIR/retain.csv" -b 2 -n 3 -l 1e-4 --compute "$1" \
		--log "$BATS_TEST_TMPDIR/$2.log" -q -o "$BATS_TEST_TMPDIR/$2.lms" "$BATS_FILE_TMPDIR/micro.lms"
	note=$stderr
}

# the losses of the logs A and B (field 4 of each "step" line): every step within TOL
# relative, and (unless TOL is 0, which asks for equality) not all equal
losses_close() {
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/$1.log" "$BATS_TEST_TMPDIR/$2.log" "$3" <<'PY'
import sys
a, b = ([float(l.split()[3]) for l in open(f) if l.startswith("step ")] for f in sys.argv[1:3])
tol = float(sys.argv[3])
assert len(a) == len(b) > 0, (a, b)
err = [abs(y - x) / abs(x) for x, y in zip(a, b)]
print(" ".join("%.6f/%.6f" % p for p in zip(a, b)), "worst", max(err))
assert (max(err) == 0) if tol == 0 else (0 < max(err) < tol), err
PY
}

@test "lm-retrain --perp --compute bf16: each step's loss within 1% of f32's" {
	has_bf16 || skip "this CPU has no avx512_bf16: --compute bf16 computes in f32 (the fallback test checks that)"
	retrain f32 f32
	retrain bf16 bf16
	[ -z "$note" ] || { echo "stderr: $note"; return 1; }
	losses_close f32 bf16 0.01
	echo "$output"
	# the trained model is read as any other
	run -0 lm-eval --ppl "$DATA/novels-eval/novels-test.txt" --seqlen 128 --windows 2 -q \
		"$BATS_TEST_TMPDIR/bf16.lms"
}

@test "lm-retrain --lora --compute bf16: each step's loss within 1% of f32's" {
	has_bf16 || skip "this CPU has no avx512_bf16"
	retrain f32 f32 --lora 4
	retrain bf16 bf16 --lora 4
	losses_close f32 bf16 0.01
}

@test "lm-unlearn --compute bf16: each step's loss within 1% of f32's" {
	has_bf16 || skip "this CPU has no avx512_bf16"
	unlearn f32 f32
	unlearn bf16 bf16
	[ -z "$note" ] || { echo "stderr: $note"; return 1; }
	losses_close f32 bf16 0.01
}

@test "lm-embed --compute bf16: embeddings within 2e-2 of f32's (max abs error / max abs), cosines above 0.999" {
	has_bf16 || skip "this CPU has no avx512_bf16"
	for c in f32 bf16; do
		run -0 --separate-stderr lm-embed --tsv --compute $c -m "$BATS_FILE_TMPDIR/micro.lms" \
			"$BATS_FILE_TMPDIR/lines.txt"
		echo "$output" > "$BATS_TEST_TMPDIR/$c.tsv"
	done
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/f32.tsv" "$BATS_TEST_TMPDIR/bf16.tsv" <<'PY'
import math, sys
a, b = ([[float(x) for x in l.split("\t")[1].split()] for l in open(f) if l.strip()] for f in sys.argv[1:3])
assert len(a) == len(b) == 3
top = max(abs(x) for r in a for x in r)
err = max(abs(x - y) for r, s in zip(a, b) for x, y in zip(r, s)) / top
cos = [sum(x * y for x, y in zip(r, s)) / math.sqrt(sum(x * x for x in r) * sum(y * y for y in s))
       for r, s in zip(a, b)]
print(err, cos)
assert 0 < err < 2e-2 and min(cos) > 0.999, (err, cos)
PY
}

@test "lm-retrain, lm-unlearn --compute: bf16 with LM_NO_BF16=1 is f32 exactly, with one note" {
	retrain f32 f32
	LM_NO_BF16=1 retrain bf16 off
	[[ "$note" == *"--compute bf16"*"computing in f32"* ]] || { echo "stderr: $note"; return 1; }
	[ "$(printf '%s\n' "$note" | wc -l)" -eq 1 ] || { echo "stderr: $note"; return 1; }
	losses_close f32 off 0
	assert_equal "$(tensor_digest "$BATS_TEST_TMPDIR/off.lms")" "$(tensor_digest "$BATS_TEST_TMPDIR/f32.lms")"
	unlearn f32 uf32
	LM_NO_BF16=1 unlearn bf16 uoff
	[[ "$note" == *"--compute bf16"*"computing in f32"* ]] || { echo "stderr: $note"; return 1; }
	losses_close uf32 uoff 0
	assert_equal "$(tensor_digest "$BATS_TEST_TMPDIR/uoff.lms")" "$(tensor_digest "$BATS_TEST_TMPDIR/uf32.lms")"
}

@test "lm-retrain, lm-unlearn, lm-embed --compute: an unknown value is a usage error of one line" {
	m="$BATS_FILE_TMPDIR/micro.lms"
	run -2 --separate-stderr lm-retrain --perp -d "$DATA/novels-eval/novels-retrain.txt" --compute f16 "$m"
	assert_one_line_error lm-retrain
	[ -z "$output" ] || { echo "stream written: ${#output} bytes"; return 1; }
	[[ "$stderr" == *"--compute: 'f16' is not f32 or bf16" ]] || { echo "stderr: $stderr"; return 1; }
	run -2 --separate-stderr lm-unlearn --forget "$BATS_FILE_TMPDIR/forget.csv" --compute BF16 "$m"
	assert_one_line_error lm-unlearn
	[[ "$stderr" == *"--compute: 'BF16' is not f32 or bf16" ]] || { echo "stderr: $stderr"; return 1; }
	run -2 --separate-stderr lm-embed --compute fp32 -m "$m" "$BATS_FILE_TMPDIR/lines.txt"
	assert_one_line_error lm-embed
	[ -z "$output" ] || { echo "stream written: ${#output} bytes"; return 1; }
	# a usage error elsewhere is still the one line, not preceded by --compute's note
	run -2 --separate-stderr env LM_NO_BF16=1 lm-retrain --compute bf16 "$m"
	assert_one_line_error lm-retrain
	[[ "$stderr" == *"nothing to train"* ]] || { echo "stderr: $stderr"; return 1; }
}

@test "lm-retrain, lm-unlearn, lm-embed: --compute in --help and the man page" {
	for p in lm-retrain lm-unlearn lm-embed; do
		run -0 $p --help
		assert_output --partial "--compute C"
		grep -q 'Fl \\-compute Cm f32 | bf16' "$TOP/man/$p.1" || { echo "$p.1: no --compute"; return 1; }
	done
}
