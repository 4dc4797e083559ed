#!/usr/bin/env bats
# pipes: failures propagate, nothing is silently truncated, output is deterministic

load helper

setup_file() {
	lm-import "$MICRO" > "$BATS_FILE_TMPDIR/micro.lms"
}

@test "pipeline: a stage killed mid-stream makes every later stage fail, naming the record" {
	run -1 --separate-stderr bash -c "set -o pipefail
		{ head -c 3000000 '$BATS_FILE_TMPDIR/micro.lms'; kill -9 \$BASHPID; } | lm-info"
	output=$stderr
	assert_output --regexp "^lm-info: <stdin>: .*(record [0-9]+|tensor 'model.decoder.embed_tokens.weight')"
	run ! --separate-stderr bash -c "set -o pipefail
		{ head -c 3000000 '$BATS_FILE_TMPDIR/micro.lms'; kill -9 \$BASHPID; } | lm-eval --ppl '$DATA/novels-eval/novels-calib.txt' --seqlen 64 --windows 1"
	[ -z "$output" ]
}

@test "pipeline: writing a stream to /dev/full or a closed stdout is an error" {
	run -1 --separate-stderr bash -c "lm-import '$FIX/pre-ln' > /dev/full"
	assert_one_line_error lm-import
	output=$stderr
	assert_output --partial "No space left on device"
	run -1 --separate-stderr bash -c "lm-import '$FIX/pre-ln' >&-"
	assert_one_line_error lm-import
}

@test "pipeline: a reader that stops early (head) ends the writer quietly" {
	run -0 bash -c "lm-import '$MICRO' | head -c 10 | wc -c"
	assert_output "10"
}

# every program once, in directory $1, with relative paths so argv is identical
run_all() {
	mkdir -p "$1" && cd "$1" || return 1
	lm-import "$FIX/fp16" | lm-export -o exp
	lm-import -t f32 exp > s.lms
	lm-init --like opt-micro --layers 1 --seed 3 > i.lms
	lm-eval --ppl "$DATA/novels-eval/novels-calib.txt" --seqlen 64 --windows 2 --json \
		--save-ids ids.lms "$BATS_FILE_TMPDIR/micro.lms" |
		"$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); print(d["perplexity"], d["tokens"])' > e.txt
	lm-info --json s.lms > info.json
	lm-prune -q -s 0.5 -m wanda -c "$DATA/novels-eval/novels-calib.txt" --nsamples 2 --seqlen 64 \
		"$BATS_FILE_TMPDIR/micro.lms" > p.lms
	lm-quant -q -b 4 -g 128 -m gptq -c "$DATA/novels-eval/novels-calib.txt" --nsamples 2 --seqlen 64 \
		p.lms > q.lms
	lm-retrain -q -j 1 --perp --mask-lora 2 -d "$DATA/novels-eval/novels-calib.txt" --steps 2 --batch 2 \
		--seqlen 32 --seed 5 p.lms > r.lms
}

@test "pipeline: the same input and flags give byte-identical output from every program" {
	(run_all "$BATS_TEST_TMPDIR/a")
	(run_all "$BATS_TEST_TMPDIR/b")
	for f in exp/model.safetensors exp/config.json s.lms i.lms ids.lms e.txt info.json p.lms q.lms r.lms; do
		[ -s "$BATS_TEST_TMPDIR/a/$f" ] || { echo "$f: missing or empty"; return 1; }
		cmp "$BATS_TEST_TMPDIR/a/$f" "$BATS_TEST_TMPDIR/b/$f" || return 1
	done
}

@test "make install: programs and man pages under PREFIX, man finds lm-prune; uninstall removes them" {
	unset MAKEFLAGS MAKELEVEL MFLAGS
	local p="$BATS_TEST_TMPDIR/prefix"
	run -0 make --no-print-directory -C "$TOP" install PREFIX="$p"
	run -0 "$p/bin/lm-prune" --help
	assert_line --index 0 --partial "usage: lm-prune"
	for f in lm-import lm-export lm-info lm-init lm-prune lm-quant lm-retrain lm-unlearn lm-embed lm-eval; do
		# each on its own: a failure on the left of && is ignored by set -e
		[ -x "$p/bin/$f" ] || { echo "$f: not installed"; return 1; }
		[ -s "$p/share/man/man1/$f.1" ] || { echo "$f.1: not installed"; return 1; }
	done
	[ -s "$p/share/man/man5/lm-stream.5" ]
	# the version is filled in (`run !`: a bare `! cmd` is ignored by set -e)
	run ! grep -l '@VERSION@' "$p"/share/man/man1/*.1 "$p"/share/man/man5/lm-stream.5
	if command -v man > /dev/null; then
		run -0 man -M "$p/share/man" -w lm-prune
		assert_output "$p/share/man/man1/lm-prune.1"
		MANPAGER=cat run -0 man -M "$p/share/man" lm-prune
		assert_output --partial "lm-prune"
	fi
	run -0 make --no-print-directory -C "$TOP" uninstall PREFIX="$p"
	[ ! -e "$p/bin/lm-prune" ]
	[ ! -e "$p/share/man/man1/lm-prune.1" ]
}
