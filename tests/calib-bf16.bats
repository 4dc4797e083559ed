#!/usr/bin/env bats
# lm-prune and lm-quant --compute bf16: the calibration forward on the bf16 GEMM gives a
# model whose perplexity is within a tolerance of the f32 calibration's; LM_NO_BF16=1 gives
# f32's model exactly (with one note); a value other than f32 or bf16 is a usage error

bats_require_minimum_version 1.5.0
load helper

setup_file() {
	lm-import "$MICRO" > "$BATS_FILE_TMPDIR/micro.lms"
}

has_bf16() { grep -q avx512_bf16 /proc/cpuinfo; }

# calibrate PROGRAM-AND-ARGS... with COMPUTE (first argument) into $BATS_TEST_TMPDIR/COMPUTE.lms
# (LM_NO_BF16 passed through), then its perplexity on a few windows of novels-test
calibrate() {
	local c=$1 tag=$2; shift 2
	run -0 --separate-stderr "$@" -c "$DATA/novels-eval/novels-calib.txt" --nsamples 8 --seqlen 256 \
		--compute "$c" -q -o "$BATS_TEST_TMPDIR/$tag.lms" "$BATS_FILE_TMPDIR/micro.lms"
	note=$stderr
	run -0 --separate-stderr lm-eval --ppl "$DATA/novels-eval/novels-test.txt" --seqlen 256 --windows 8 \
		--json -q "$BATS_TEST_TMPDIR/$tag.lms"
	echo "$output" > "$BATS_TEST_TMPDIR/$tag.json"
}

# the perplexity in $BATS_TEST_TMPDIR/TAG.json, every digit
ppl() { "$PYTHON" -c 'import json, sys; print(repr(json.load(open(sys.argv[1]))["perplexity"]))' "$BATS_TEST_TMPDIR/$1.json"; }

# the perplexities of $BATS_TEST_TMPDIR/A.json and B.json differ by more than 0 and less than TOL
close() {
	run -0 "$PYTHON" - "$BATS_TEST_TMPDIR/$1.json" "$BATS_TEST_TMPDIR/$2.json" "$3" <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
err = abs(b["perplexity"] - a["perplexity"]) / a["perplexity"]
print(a["perplexity"], b["perplexity"], err)
assert 0 < err < float(sys.argv[3]), err
PY
}

@test "lm-prune --compute bf16: sparsegpt and wanda models within 1% of f32 calibration's perplexity" {
	has_bf16 || skip "this CPU has no avx512_bf16: --compute bf16 computes in f32 (the last test checks that fallback)"
	for m in sparsegpt wanda; do
		calibrate f32 f32 lm-prune -s 0.5 -m $m
		calibrate bf16 bf16 lm-prune -s 0.5 -m $m
		[ -z "$note" ] || { echo "stderr: $note"; return 1; }
		close f32 bf16 0.01
	done
}

# GPTQ's 4-bit rounding choices follow the Hessian closely: here bf16 calibration moves the
# model's perplexity by 1.2 % (79.11 -> 78.17 on these 8 windows; f32 itself gives the same
# bits at -j 1 and 2), against 0.2 % for SparseGPT's pruning. Hence 2 %.
@test "lm-quant --compute bf16: a GPTQ 4-bit model within 2% of f32 calibration's perplexity" {
	has_bf16 || skip "this CPU has no avx512_bf16: --compute bf16 computes in f32 (the last test checks that fallback)"
	calibrate f32 f32 lm-quant -b 4 -m gptq
	calibrate bf16 bf16 lm-quant -b 4 -m gptq
	[ -z "$note" ] || { echo "stderr: $note"; return 1; }
	close f32 bf16 0.02
}

@test "lm-prune, lm-quant --compute: bf16 with LM_NO_BF16=1 is f32 exactly, with one note; an unknown value is a usage error" {
	for p in "lm-prune -s 0.5 -m sparsegpt" "lm-quant -b 4 -m gptq"; do
		calibrate f32 f32 $p
		LM_NO_BF16=1 calibrate bf16 off $p
		assert_equal "$(ppl off)" "$(ppl f32)"
		[[ "$note" == *"--compute bf16"*"computing in f32"* ]] || { echo "stderr: $note"; return 1; }
		[ "$(printf '%s\n' "$note" | wc -l)" -eq 1 ] || { echo "stderr: $note"; return 1; }
		run -2 --separate-stderr $p -c "$DATA/novels-eval/novels-calib.txt" --compute f16 \
			"$BATS_FILE_TMPDIR/micro.lms"
		[ -z "$output" ] || { echo "stream written: ${#output} bytes"; return 1; }
		[[ "$stderr" == *"--compute: 'f16' is not f32 or bf16"* ]] || { echo "stderr: $stderr"; return 1; }
	done
}
