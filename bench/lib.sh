# bench/lib.sh: what bench/run.sh and the section scripts (bench/prune.sh, bench/retrain.sh,
# ...) share; sourced (`. bench/lib.sh`) from the repository root, never run.
#
#   bench_start NAME   check the tools, make the scratch folder $B (under TMPDIR, removed on
#                      exit unless BENCH_KEEP=1) with $B/runs = $R, start $B/facts.txt
#   measure ID 'CMD'   run CMD under GNU time -v after waiting for a quiet machine
#   fact KEY VALUE     one line of $B/facts.txt (report.py prints them)
#   bench_end          the closing facts (load, quiet wait, time taken)
#
# Environment: BENCH_KEEP=1 keeps the scratch folder; BENCH_QUIET_MAX and BENCH_QUIET_BUDGET
# bound the waits (see quiet below); TMPDIR.

PY=/usr/bin/python3

say() { printf 'bench: %s\n' "$*" >&2; }
fail() { printf 'bench: %s\n' "$*" >&2; exit 1; }

fact() { printf '%s: %s\n' "$1" "$2" >> "$B/facts.txt"; }

bench_start() {
	T0=$(date +%s)
	[ -x bin/lm-eval ] || fail "bin/lm-eval missing: run 'make bench' (it builds first)"
	[ -x /usr/bin/time ] || fail "GNU time (/usr/bin/time) missing: apt-get install -y time"
	$PY -c 'import torch, msgpack, numpy' 2>/dev/null ||
		fail "$PY cannot import torch, msgpack and numpy: apt-get install -y python3-torch python3-msgpack"
	B=$(mktemp -d "${TMPDIR:-/tmp}/lmpipe-bench-$1.XXXXXX")
	R=$B/runs
	export B
	mkdir -p "$R"
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
	: > "$B/facts.txt"
	: > "$B/quiet.log"
	fact section "$1"
	fact date "$(date -u '+%Y-%m-%d %H:%M UTC')"
	fact commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	fact dirty "$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo yes || echo no)"
	# the family and model tell a Zen 4 from a Zen 5 where the name is only "AMD EPYC"
	fact cpu "$(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') (family $(grep -m 1 '^cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' '), model $(grep -m 1 '^model[[:space:]]*:' /proc/cpuinfo | cut -d: -f2 | tr -d ' '))"
	fact cores "$(nproc)"
	fact torch "$($PY -c 'import torch; print(torch.__version__)' 2>/dev/null)"
	fact load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
}

bench_cleanup() {
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		say "scratch kept in $B"
	else
		rm -rf "$B"
	fi
}

bench_end() {
	fact quiet_wait "$(awk '{ s += $1; n++ } END { printf "%d s before %d measured runs", s, n }' "$B/quiet.log")"
	fact load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
	_el=$(($(date +%s) - T0))
	fact total_time "$((_el / 60)) min $((_el % 60)) s"
}

# quiet: the machine may be shared; before each measured run wait, at most BENCH_QUIET_MAX
# seconds (default 10; 0 = never) and BENCH_QUIET_BUDGET seconds over the whole script
# (default 120), until the rest of the machine keeps less than a quarter of a core busy over
# 0.3 s. The tables show what the rest of the machine did during each run anyway (column
# "others", from the /proc/stat lines measure keeps).
QMAX=${BENCH_QUIET_MAX:-10}
QBUDGET=${BENCH_QUIET_BUDGET:-120}
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat; }
# (sh has no local variables: the helpers' own start with _ so as not to clobber the caller's)
quiet() {
	_qw=0
	while [ "$_qw" -lt "$QMAX" ] && [ "$QBUDGET" -gt 0 ]; do
		_q0=$(busy)
		sleep 0.3
		_q1=$(busy)
		# busy cores over the 0.3 s, all cores together
		if echo "$_q0 $_q1" | awk -v n="$(nproc)" '{ d = $3 - $1 + $4 - $2; exit !(d > 0 && ($3 - $1) / d * n > 0.25) }'; then
			sleep 1.7
			_qw=$((_qw + 2))
			QBUDGET=$((QBUDGET - 2))
		else
			break
		fi
	done
	echo "$_qw" >> "$B/quiet.log"
}

# measure ID 'COMMAND': run COMMAND (sh syntax, from the repository root, $B the scratch
# folder) under GNU time -v; keep the command, its stdout, its stderr, the rusage and how busy
# the whole machine was before and after (to show what else ran meanwhile). IDs are
# GROUP.VARIANT.rREP (report.py splits them there).
measure() {
	quiet
	printf '%s\n' "$2" > "$R/$1.cmd"
	head -n 1 /proc/stat > "$R/$1.stat0"
	if ! /usr/bin/time -v -o "$R/$1.time" sh -c "$2" > "$R/$1.out" 2> "$R/$1.err"; then
		cat "$R/$1.err" >&2
		fail "$1 failed: $2"
	fi
	head -n 1 /proc/stat > "$R/$1.stat1"
}
