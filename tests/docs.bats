#!/usr/bin/env bats
# The design in the repo stays true to the tree: docs/design.md's module map is what
# docs/modules.sh reads off the files' opening comments, every common/ folder is in the
# README's Layout and in design.md, and every document the code cites exists.

load helper

@test "docs/design.md: the module map lists every module of common/, as docs/modules.sh reads them" {
	sh "$TOP/docs/modules.sh" > "$BATS_TEST_TMPDIR/want"
	sed -n '/<!-- modules: begin -->/,/<!-- modules: end -->/p' "$TOP/docs/design.md" |
		sed '1d;$d' > "$BATS_TEST_TMPDIR/got"
	diff "$BATS_TEST_TMPDIR/want" "$BATS_TEST_TMPDIR/got" ||
		{ echo "docs/design.md is out of date: run sh docs/modules.sh --write"; return 1; }
	# one row per .c module at least (a header-only module has a row too)
	for c in "$TOP"/common/*.c "$TOP"/common/*/*.c; do
		[ -f "$c" ] || continue
		n=$(basename "$c" .c)
		grep -q "^| \`$n\` |" "$BATS_TEST_TMPDIR/got" || { echo "$n: no row"; return 1; }
	done
}

@test "docs: every common/ folder is in the README's Layout and in docs/design.md" {
	for d in "$TOP"/common/*/; do
		d=$(basename "$d")
		grep -q "^      $d/ " "$TOP/README.md" || { echo "README Layout lacks $d/"; return 1; }
		grep -q "^| \`$d/\` |" "$TOP/docs/design.md" || { echo "design.md lacks $d/"; return 1; }
	done
}

@test "docs: every docs/*.md that the code, tests, bench, examples or man pages cite exists" {
	cd "$TOP"
	cited=$(grep -rhoE 'docs/[a-z_-]+\.md' common cmd tests bench examples man README.md Makefile |
		sort -u)
	[ -n "$cited" ]
	for f in $cited; do
		[ -f "$f" ] || { echo "$f is cited but missing"; return 1; }
	done
}

@test "docs: no include circle in common/, and every dependency against the folder order is listed in docs/design.md" {
	"$PYTHON" "$TOP/docs/deps.py" "$TOP" > "$BATS_TEST_TMPDIR/deps"
	! grep '^circle:' "$BATS_TEST_TMPDIR/deps" || { echo "include circle (above)"; return 1; }
	sed -n '/<!-- deps: begin -->/,/<!-- deps: end -->/p' "$TOP/docs/design.md" |
		sed '1d;$d;s/^    //' > "$BATS_TEST_TMPDIR/listed"
	diff "$BATS_TEST_TMPDIR/listed" "$BATS_TEST_TMPDIR/deps" ||
		{ echo "docs/design.md's list of dependencies against the folder order is not the tree's (docs/deps.py)"; return 1; }
}
