#!/bin/sh
# count.sh LOG...: the closing line of a test run, "N passed, N failed, N skipped", from what
# tests/units.sh (every unit check), bats --tap (every bats test) and the one-line stage
# results ("check: ok STAGE" / "check: FAIL STAGE") wrote into the logs. Exits 1 if any failed.
awk '
/^unit: ok .*: [0-9]+ checks$/ { passed += $(NF - 1); next }
/^unit: FAIL .*: [0-9]+ of [0-9]+ checks failed$/ {
	failed += $(NF - 4); passed += $(NF - 2) - $(NF - 4); next }
/^unit: FAIL .*: died with status/ {
	failed += 1
	if (match($0, /after [0-9]+ checks/)) passed += substr($0, RSTART + 6, RLENGTH - 13)
	next }
/^ok [0-9]+ .*# skip/ { skipped++; next }
/^ok [0-9]+/ { passed++; next }
/^not ok [0-9]+/ { failed++; next }
/^check: ok / { passed++; next }
/^check: FAIL / { failed++; next }
END {
	printf "%d passed, %d failed, %d skipped\n", passed, failed, skipped
	exit failed > 0
}' "$@"
