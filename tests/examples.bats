#!/usr/bin/env bats
# examples/Makefile: the experiment recipes. make -n shows the pipelines of bench/methods.md;
# a tiny real grid writes its table, a pasted row reproduces its number, and a second run
# does nothing; missing programs and bad grids fail in one line.

load helper

setup() {
	# a make above bats (make check) must not hand its jobserver or flags to these
	unset MAKEFLAGS MAKELEVEL MFLAGS
	# the programs under test (bin/ or bin-asan/), never a rebuild of the tree
	LMBIN=${LM_BIN:-$TOP/bin}
	OUT=$BATS_TEST_TMPDIR/out
}

# make -C examples with the programs under test and OUT in the test's folder (helper.bash
# exports DATA, which is also a setting of the recipes)
ex() {
	env -u DATA make --no-print-directory -C "$TOP/examples" LMBIN="$LMBIN" OUT="$OUT" "$@"
}

# a tiny grid: 64-token windows, one of them, two retraining steps (the first is warmup at lr 0)
TINY=(SEQLEN=64 WINDOWS=1 NSAMPLES=2 STEPS=2 BATCH=1)

@test "examples: make help names the recipes and exits 0" {
	run -0 ex help
	assert_output --partial "make -C examples perp"
	assert_output --partial "make -C examples quant"
	assert_output --partial "fetch-opt-125m"
}

@test "examples: make -n perp prints bench/methods.md's pipelines, each pruned model built once" {
	run -0 --separate-stderr ex -n perp
	assert_output --partial "lm-import -o $OUT/work/"
	assert_output --partial "lm-prune -s 0.5 -q -o"
	assert_output --partial "lm-prune -s 0.5 -m wanda -c data/novels-eval/novels-calib.txt --nsamples 32 --seqlen 512 -q -o"
	assert_output --partial "lm-prune -s 0.5 -m sparsegpt -c data/novels-eval/novels-calib.txt --nsamples 32 --seqlen 512 -q -o"
	e2e="-d data/novels-eval/novels-retrain.txt --steps 200 --batch 8 --seqlen 512 --seed 0"
	assert_output --partial "lm-retrain --perp --lr 1e-3 $e2e -q -o"
	assert_output --partial "lm-retrain --full --lr 1e-4 $e2e -q -o"
	assert_output --partial "lm-retrain --perp --mask-lora 16 --lr 1e-3 $e2e -q -o"
	assert_output --partial "lm-retrain --reconstruct --perp --mask-lora 16 --teacher $OUT/work/"
	# the row of a cell is its whole pipeline, as it would be pasted
	assert_output --partial "'lm-import models/opt-micro | lm-prune -s 0.5 | lm-retrain --perp --lr 1e-3 $e2e | lm-eval --ppl data/novels-eval/novels-test.txt --seqlen 512'"
	# magnitude 0.5 feeds four retrainings and one evaluation, and is made once
	[ "$(grep -c -- '-o [^ ]*/prune/magnitude-0.5.lms' <<< "$output")" -eq 1 ]
	[ "$(grep -c '^lm-retrain ' <<< "$output")" -eq 5 ]
	[ "$(grep -c '^lm-eval ' <<< "$output")" -eq 9 ]
	# make -n wrote no stream and no table
	run -0 find "$OUT" -name '*.lms' -o -name '*.tsv'
	assert_output ""
}

@test "examples: make -n quant prints RTN/GPTQ at 8/4/3/2 bits and the CPTQuant settings" {
	run -0 --separate-stderr ex -n quant
	for b in 8 4 3 2; do assert_output --partial "lm-quant -b $b -g 128 -q -o"; done
	cal="-c data/novels-eval/novels-calib.txt --nsamples 32 --seqlen 512"
	assert_output --partial "lm-quant -b 4 -g 128 -m gptq $cal -q -o"
	for m in pmpq cmpq; do
		assert_output --partial "lm-quant --mixed $m --bits 8,4 -g 128 $cal -q -o"
		assert_output --partial "lm-quant --mixed $m --bits 8,4 -g 128 $cal --target-bits 6 -q -o"
		assert_output --partial "lm-quant --mixed $m --bits 16,8,4 -g 128 $cal -q -o"
		assert_output --partial "lm-quant --mixed $m --bits 8,4,2 -g 128 $cal -q -o"
	done
	# tdmpq joins the grid exactly when this lm-quant has it
	if "$LMBIN/lm-quant" --help | grep -q tdmpq; then
		assert_output --partial "lm-quant --mixed tdmpq --bits 8,4 -g 128"
	else
		refute_output --partial "tdmpq"
	fi
}

@test "examples: a tiny perp grid writes its table; a pasted row gives its number; a rerun does nothing" {
	run -0 --separate-stderr ex perp "${TINY[@]}" PERP_GRID="dense/none magnitude-0.5/none magnitude-0.5/perp"
	run -0 cat "$OUT/perp.tsv"
	[ "${#lines[@]}" -eq 4 ]
	assert_line --index 0 "$(printf 'method\tsparsity\tretrain\tperplexity\tcommand')"
	assert_line --index 1 --regexp "^dense	-	none	[0-9.]+	lm-import models/opt-micro \| lm-eval --ppl "
	assert_line --index 2 --regexp "^magnitude	0\.5	none	[0-9.]+	lm-import models/opt-micro \| lm-prune -s 0\.5 \| lm-eval "
	assert_line --index 3 --regexp "^magnitude	0\.5	perp	[0-9.]+	.* \| lm-retrain --perp --lr 1e-3 -d data/novels-eval/novels-retrain.txt --steps 2 --batch 1 --seqlen 64 --seed 0 \| lm-eval "
	# pruning and retraining change the number
	ppl=$(cut -f4 "$OUT/perp.tsv" | sed -n '2,4p' | sort -u | wc -l)
	[ "$ppl" -eq 3 ]
	# the row's command, pasted at the repository root, prints the row's perplexity
	row=$(sed -n 4p "$OUT/perp.tsv")
	want=$(printf '%.4f' "$(cut -f4 <<< "$row")")
	run -0 bash -c "set -o pipefail; cd '$TOP' && $(cut -f5 <<< "$row")"
	assert_line "perplexity: $want"
	# the report has the table and the command; the plot when gnuplot is here
	run -0 cat "$OUT/perp.md"
	assert_output --partial "| 3 | magnitude | 0.5 | perp | $want |"
	assert_output --partial "    $(cut -f5 <<< "$row")"
	if command -v gnuplot >/dev/null; then [ -s "$OUT/perp.png" ]; fi
	# interrupted or not, a second run finds everything made
	before=$(find "$OUT" -type f -newer "$OUT/perp.tsv" | wc -l)
	run -0 --separate-stderr ex perp "${TINY[@]}" PERP_GRID="dense/none magnitude-0.5/none magnitude-0.5/perp"
	assert_output "make[1]: Nothing to be done for 'perp'."
	[ "$(find "$OUT" -type f -newer "$OUT/perp.tsv" | wc -l)" -eq "$before" ]
	# a changed setting makes new cells, in their own folder, and a new table
	run -0 --separate-stderr ex perp "${TINY[@]}" WINDOWS=2 PERP_GRID="dense/none"
	assert_output --partial "lm-eval --ppl data/novels-eval/novels-test.txt --seqlen 64 --windows 2 --json"
	refute_line --regexp "^lm-import "
	run -0 cat "$OUT/perp.tsv"
	[ "${#lines[@]}" -eq 2 ]
}

@test "examples: a tiny quant grid has bits per layer and stored bits per weight from lm-info" {
	run -0 --separate-stderr ex quant "${TINY[@]}" QUANT_GRID="dense rtn-4 rtn-8"
	run -0 cat "$OUT/quant.tsv"
	[ "${#lines[@]}" -eq 4 ]
	assert_line --index 1 --regexp "^dense	dense	-	-	16 16 16 16	16	[0-9.]+	lm-import models/opt-micro \| lm-eval "
	# stored bits: what lm-info says of one q4 weight (every linear weight has the same shape
	# class and group here, so the average is that value)
	stream=$(find "$OUT/work" -name rtn-4.lms)
	q4=$(lm-info --json "$stream" | jq '.tensors[] | select(.name == "model.decoder.layers.0.fc1.weight") | .bits_per_weight')
	assert_line --index 2 --regexp "^rtn-4	rtn	4	-	4 4 4 4	$q4	[0-9.]+	lm-import models/opt-micro \| lm-quant -b 4 -g 128 \| lm-eval "
	assert_line --index 3 --regexp "^rtn-8	rtn	8	-	8 8 8 8	"
	run -0 cat "$OUT/quant.md"
	assert_output --partial "| 2 | rtn-4 | rtn | 4 | - | 4 4 4 4 |"
}

@test "examples: a bad grid entry is one line naming it, before anything runs" {
	# (make's own "*** ... Stop." wraps it, and the make above adds its "Error 2")
	run -2 --separate-stderr ex perp PERP_GRID="fancy-0.5/none"
	assert_output ""
	[[ "${stderr_lines[0]}" == *"*** examples: perp: 'fancy-0.5' is not a pruning: use dense or METHOD-SPARSITY"* ]]
	run -2 --separate-stderr ex perp PERP_GRID="magnitude-0.5/sometimes"
	[[ "${stderr_lines[0]}" == *"examples: perp: no retraining 'sometimes'"* ]]
	run -2 --separate-stderr ex quant QUANT_GRID="rtn"
	[[ "${stderr_lines[0]}" == *"examples: quant: 'rtn' is not a quantization"* ]]
	[ ! -e "$OUT/work" ]
}

# programs that only say --help, without the option or program a recipe needs
stub_bin() {
	mkdir -p "$BATS_TEST_TMPDIR/stub"
	for p in lm-import lm-eval lm-retrain lm-quant; do
		printf '#!/bin/sh\necho "usage: %s [options]"\n' "$p" > "$BATS_TEST_TMPDIR/stub/$p"
		chmod +x "$BATS_TEST_TMPDIR/stub/$p"
	done
}

@test "examples: sts, retrieval, unlearn, early-exit say in one line what is missing" {
	stub_bin
	LMBIN=$BATS_TEST_TMPDIR/stub
	for r in sts:"this lm-eval has no --sts (issue #7)" retrieval:"lm-embed is not built (issue #7)" \
		unlearn:"lm-unlearn is not built" early-exit:"this lm-retrain has no --early-exit"; do
		run ! --separate-stderr env -u DATA PATH=/usr/bin:/bin make --no-print-directory -C "$TOP/examples" \
			LMBIN="$LMBIN" OUT="$OUT" "${r%%:*}"
		assert_equal "${stderr_lines[0]}" "examples: ${r%%:*}: ${r#*:}"
		[ ! -e "$OUT/work" ]
	done
}

@test "examples: grid-parallel and grid-slurm need their engines and say so" {
	run -2 --separate-stderr ex grid-parallel RECIPE=quant
	assert_equal "${stderr_lines[0]}" "examples: grid-parallel: set HOSTS=host1,host2 (GNU parallel --sshlogin; : is this machine)"
	if ! command -v sbatch >/dev/null; then
		run -2 --separate-stderr ex grid-slurm RECIPE=quant
		assert_equal "${stderr_lines[0]}" "examples: grid-slurm: sbatch not found (run on a Slurm login node)"
	fi
	run -2 --separate-stderr sh "$TOP/examples/slurm.sh" list
	assert_equal "$stderr" "slurm.sh: not a Slurm array task (submit it with sbatch --array)"
	[ ! -e "$OUT/work" ]
}

@test "examples: grid-parallel runs a grid stage by stage through GNU parallel (this machine)" {
	command -v parallel >/dev/null || skip "GNU parallel is not installed"
	run -0 --separate-stderr ex grid-parallel RECIPE=quant HOSTS=: "${TINY[@]}" QUANT_GRID="dense rtn-4"
	assert_output --partial "parallel -q --sshlogin ':'"
	run -0 cat "$OUT/quant.tsv"
	[ "${#lines[@]}" -eq 3 ]
	run -0 find "$OUT/work" -path '*/grid/quant.*' -name 'quant.[0-9]'
	[ "${#lines[@]}" -eq 3 ]
}

# a stand-in for the hub: the tree listing (git blob ids; sha256 for the LFS weights) and
# /resolve/ for the files, on file://
fake_hub() {
	local hub=$BATS_TEST_TMPDIR/hub files=$BATS_TEST_TMPDIR/hub/facebook/opt-micro/resolve/main
	mkdir -p "$hub/api/models/facebook/opt-micro/tree" "$files"
	cp "$MICRO"/config.json "$MICRO"/vocab.json "$MICRO"/merges.txt "$MICRO"/model.safetensors "$files/"
	(cd "$files" && for f in *; do
		if [ "$f" = model.safetensors ]; then
			jq -n --arg p "$f" --arg o "$(sha256sum < "$f" | cut -c1-64)" --argjson s "$(wc -c < "$f")" \
				'{type: "file", path: $p, oid: "0", size: $s, lfs: {oid: $o, size: $s, pointerSize: 134}}'
		else
			jq -n --arg p "$f" --arg o "$(git hash-object "$f")" --argjson s "$(wc -c < "$f")" \
				'{type: "file", path: $p, oid: $o, size: $s}'
		fi
	done) | jq -s '. + [{type: "directory", path: "onnx", oid: "0", size: 0}]' \
		> "$hub/api/models/facebook/opt-micro/tree/main"
	echo "file://$hub"
}

@test "examples: fetch-opt-* downloads what lm-import reads, checked against the hub's listing" {
	command -v git >/dev/null || skip "git hash-object makes the stand-in listing"
	hub=$(fake_hub)
	run -0 --separate-stderr ex fetch-opt-micro HF_DIR="$BATS_TEST_TMPDIR/hf" HF_ENDPOINT="$hub"
	for f in config.json vocab.json merges.txt model.safetensors; do
		cmp "$MICRO/$f" "$BATS_TEST_TMPDIR/hf/opt-micro/$f"
	done
	[ ! -e "$BATS_TEST_TMPDIR/hf/opt-micro/.partial" ]
	run -0 bash -c "lm-import '$BATS_TEST_TMPDIR/hf/opt-micro' | lm-info | tail -1"
	assert_output --partial "total: "
	# again: nothing downloaded, every file re-checked
	run -0 --separate-stderr ex fetch-opt-micro HF_DIR="$BATS_TEST_TMPDIR/hf" HF_ENDPOINT="$hub"
	[[ "$stderr" == *"model.safetensors: already there, checksum ok"* ]]
	# a file that is not what the listing says is refused and not kept
	printf 'x' >> "$BATS_TEST_TMPDIR/hub/facebook/opt-micro/resolve/main/vocab.json"
	run ! --separate-stderr ex fetch-opt-micro HF_DIR="$BATS_TEST_TMPDIR/hf2" HF_ENDPOINT="$hub"
	[[ "$stderr" == *"fetch-hf: facebook/opt-micro: vocab.json: checksum does not match the hub's listing"* ]]
	[ ! -e "$BATS_TEST_TMPDIR/hf2/opt-micro/vocab.json" ]
	# no listing, no download
	run ! --separate-stderr ex fetch-opt-none HF_DIR="$BATS_TEST_TMPDIR/hf3" HF_ENDPOINT="$hub"
	[[ "$stderr" == *"fetch-hf: facebook/opt-none: cannot list $hub/api/models/facebook/opt-none/tree/main"* ]]
}
