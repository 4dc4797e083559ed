# helper.bash: loaded by every bats file. Puts the programs under test first on PATH
# (bin/, or bin-asan/ for the sanitizer run) and gives the fixtures' paths.
bats_require_minimum_version 1.5.0
bats_load_library bats-support
bats_load_library bats-assert

TOP="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
PATH="${LM_BIN:-$TOP/bin}:$PATH"
FIX="$TOP/tests/fixtures"
MICRO="$TOP/models/opt-micro"
DATA="$TOP/data"
# Debian's python3 has python3-msgpack; a python3 earlier on PATH (pyenv) may not
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3
export PATH TOP FIX MICRO DATA PYTHON
# a hung pipeline fails its test instead of the whole run
BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-600}

# assert stderr is exactly one line that starts with the program's name
assert_one_line_error() {
	local prog=$1
	[ "${#stderr_lines[@]}" -eq 1 ] || { echo "stderr has ${#stderr_lines[@]} lines: $stderr"; return 1; }
	[[ "$stderr" == "$prog: "* ]] || { echo "stderr does not start with '$prog: ': $stderr"; return 1; }
}

# fields of every tensor (name dtype shape crc32) in a stream file, one per line
tensor_digest() {
	lm-info --json "$1" | "$PYTHON" -c '
import json, sys
for t in json.load(sys.stdin)["tensors"]:
    print(t["name"], t["dtype"], t["shape"], t["crc32"])'
}

# Full reference-number runs (all 138 windows of novels-test.txt) are skipped in the
# sanitizer pass (LM_SANITIZE=1, `make check-asan`): they take minutes under ASan, and the
# short tests drive the same code paths there.
reference_run() {
	[ -z "${LM_SANITIZE:-}" ] || skip "reference-number run: checked in the unsanitized pass"
}
