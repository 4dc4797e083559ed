#!/bin/sh
# units.sh DIR [LABEL]: run every unit-test program in DIR (build/tests) and say, per program,
# how many of its checks passed. A program that fails still lets the others run; one that dies
# before its summary line (a crash, a sanitizer abort) counts as one failed check.
#
# Lines printed, read by tests/count.sh:
#   unit: ok NAME[ LABEL]: N checks
#   unit: FAIL NAME[ LABEL]: F of N checks failed      (or: died with status S)
#   unit: time NAME[ LABEL]: S s                        (where the time goes; not counted)
# Exits 1 if any program failed. LABEL names the variant (an OpenBLAS core type, a thread count).
# UNIT_JOBS programs run at a time (default: one per core).
dir=${1:?usage: units.sh DIR [LABEL]}
label=${2:+ $2}
jobs=${UNIT_JOBS:-$(nproc 2>/dev/null || echo 1)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the programs run UNIT_JOBS at a time (one per core: most are single-threaded), each one's
# output, exit status and seconds into WORK/NAME.*; the report below reads them in order
for t in "$dir"/test_*; do [ -x "$t" ] && echo "$t"; done |
	xargs -r -n 1 -P "$jobs" sh -c '
		name=$(basename "$1")
		t0=$(date +%s)
		LM_TESTDATA=${LM_TESTDATA:-tests/fixtures} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} \
			"$1" >"$0/$name.out" 2>&1
		echo $? >"$0/$name.rc"
		echo $(($(date +%s) - t0)) >"$0/$name.s"' "$work"
fail=0
for t in "$dir"/test_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	out=$work/$name.out
	rc=$(cat "$work/$name.rc" 2>/dev/null || echo 127)
	echo "unit: time $name$label: $(cat "$work/$name.s" 2>/dev/null || echo 0) s"
	# the harness's own last line: "<name>: N checks, F failed" (tests/unit/unit.h)
	sum=$(grep -E '^[A-Za-z0-9_-]+: [0-9]+ checks, [0-9]+ failed$' "$out" 2>/dev/null | tail -n 1)
	n=$(echo "$sum" | sed -n 's/.*: \([0-9]*\) checks, .*/\1/p')
	f=$(echo "$sum" | sed -n 's/.* checks, \([0-9]*\) failed$/\1/p')
	if [ "$rc" -eq 0 ] && [ -n "$n" ] && [ "$f" = 0 ]; then
		echo "unit: ok $name$label: $n checks"
	else
		fail=1
		grep -v -E '^[A-Za-z0-9_-]+: [0-9]+ checks, [0-9]+ failed$' "$out" 2>/dev/null |
			grep -E 'check failed|ERROR|runtime error|Sanitizer' | head -n 20
		if [ -n "$n" ] && [ "${f:-0}" -gt 0 ]; then
			echo "unit: FAIL $name$label: $f of $n checks failed"
		else
			tail -n 5 "$out" 2>/dev/null
			echo "unit: FAIL $name$label: died with status $rc${n:+ after $n checks}"
		fi
	fi
done
exit $fail
