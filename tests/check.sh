#!/bin/sh
# check.sh LOG MAKE STAGE...: run each make target STAGE (unit, fuzz-replay, manlint, bats …)
# whatever the earlier ones gave, keep all output in LOG, and end with the line
# "check: N passed, N failed, N skipped" (tests/count.sh). A stage that fails without a
# failing test of its own to show for it (a unit test that does not compile, bats missing)
# counts as one failed check, named. Exits 1 if anything failed.
log=${1:?usage: check.sh LOG MAKE STAGE...}
mk=$2
shift 2
mkdir -p "$(dirname "$log")"
: >"$log"
seg=$log.stage
for t in "$@"; do
	t0=$(date +%s)
	# shellcheck disable=SC2086
	{ $mk "$t"; echo $? >"$seg.rc"; } 2>&1 | tee "$seg"
	rc=$(cat "$seg.rc")
	cat "$seg" >>"$log"
	# where CI's time goes (count.sh reads only "check: ok" and "check: FAIL" lines)
	echo "check: time $t: $(($(date +%s) - t0)) s" | tee -a "$log"
	if [ "$rc" -ne 0 ] && sh tests/count.sh "$seg" >/dev/null; then
		echo "check: FAIL $t: make $t exited with status $rc" | tee -a "$log"
	fi
done
rm -f "$seg" "$seg.rc"
printf 'check: '
sh tests/count.sh "$log"
