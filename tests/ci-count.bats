#!/usr/bin/env bats
# ci-count.bats: the harness CI's verdict rests on. tests/count.sh must count what units.sh,
# bats --tap --timing and check.sh write, ignore the timing lines, and fail on any failure;
# units.sh must turn a crash into a failed check.

load helper

setup() {
	W=$(mktemp -d)
}

teardown() {
	rm -rf "$W"
}

@test "count.sh: unit checks, timed bats lines, skips and stage lines add up" {
	cat > "$W/log" <<-'EOF'
	unit: time test_a: 3 s
	unit: ok test_a: 120 checks
	unit: ok test_b OPENBLAS_CORETYPE=Zen: 7 checks
	ok 1 lm-info: prints in 120ms
	ok 2 lm-info: needs AVX-512 in 24ms # skip this CPU has it
	check: time unit: 12 s
	check: ok manlint
	EOF
	run sh "$TOP/tests/count.sh" "$W/log"
	assert_success
	assert_output "129 passed, 0 failed, 1 skipped"
}

@test "count.sh: a failed check, a failed bats test or a dead program fails the count" {
	printf 'unit: FAIL test_a: 2 of 10 checks failed\nnot ok 3 lm-eval: x in 5ms\n' > "$W/log"
	printf 'unit: FAIL test_b: died with status 134 after 40 checks\ncheck: FAIL bats\n' >> "$W/log"
	run sh "$TOP/tests/count.sh" "$W/log"
	assert_failure
	assert_output "48 passed, 5 failed, 0 skipped"
}

@test "units.sh: a test that crashes counts as failed, its time is reported" {
	mkdir "$W/t"
	printf '#!/bin/sh\necho "test_ok: 4 checks, 0 failed"\n' > "$W/t/test_ok"
	printf '#!/bin/sh\necho "half done"\nkill -SEGV $$\n' > "$W/t/test_crash"
	chmod +x "$W/t/test_ok" "$W/t/test_crash"
	run sh "$TOP/tests/units.sh" "$W/t" LABEL
	assert_failure
	assert_line "unit: ok test_ok LABEL: 4 checks"
	assert_line --regexp '^unit: FAIL test_crash LABEL: died with status [0-9]+$'
	assert_line --regexp '^unit: time test_ok LABEL: [0-9]+ s$'
	echo "$output" > "$W/log"
	run sh "$TOP/tests/count.sh" "$W/log"
	assert_output "4 passed, 1 failed, 0 skipped"
}
