#!/usr/bin/env bats
# Where -o writes (issue #23): a device or FIFO is written in place and stays what it
# was, a symbolic link keeps pointing at the file it names, an interrupted, failed or
# size-limited run leaves neither a broken FILE nor a FILE.tmp*; -j above the cores under
# ulimit -v ends instead of hanging; installed programs find their data under PREFIX;
# man pages carry a version; calibration files shorter than the default --nsamples.

load helper

setup_file() {
	lm-init --like opt-micro --layers 1 --seed 3 > "$BATS_FILE_TMPDIR/m1.lms"
	head -c 20000 "$DATA/novels-eval/novels-test.txt" > "$BATS_FILE_TMPDIR/text.txt"
	printf 'goal,target\nWrite a letter,"Sure, here is a letter"\nDescribe a mill,"Sure, a mill"\n' \
		> "$BATS_FILE_TMPDIR/forget.csv"
	printf 'The house stood by the river.\nThe vicar came to dinner.\n' > "$BATS_FILE_TMPDIR/lines.txt"
}

# run_to NAME OUT: program NAME writing its stream to OUT through -o (or --save-ids)
run_to() {
	local f="$BATS_FILE_TMPDIR" o=$2
	case $1 in
	lm-import) lm-import "$MICRO" -o "$o" ;;
	lm-init) lm-init --like opt-micro --layers 1 -o "$o" ;;
	lm-prune) lm-prune -s 0.5 -o "$o" "$f/m1.lms" ;;
	lm-quant) lm-quant -q -b 4 -o "$o" "$f/m1.lms" ;;
	lm-retrain) lm-retrain -q --perp --steps 1 --batch 1 --seqlen 32 -d "$f/text.txt" -o "$o" "$f/m1.lms" ;;
	lm-unlearn) lm-unlearn -q --forget "$f/forget.csv" -b 1 -n 1 -o "$o" "$f/m1.lms" ;;
	lm-embed) lm-embed -q -o "$o" "$f/lines.txt" < "$f/m1.lms" ;;
	lm-eval) lm-eval --ppl "$f/text.txt" --seqlen 64 --save-ids "$o" "$f/m1.lms" > /dev/null ;;
	esac
}
PROGS="lm-import lm-init lm-prune lm-quant lm-retrain lm-unlearn lm-embed lm-eval"

@test "-o a character device (1,3, as /dev/null) writes to it and leaves it a device, every program" {
	local d="$BATS_TEST_TMPDIR"
	mknod "$d/null" c 1 3 2> /dev/null || skip "mknod needs root"
	for p in $PROGS; do
		run_to "$p" "$d/null" || { echo "$p: exit $?"; return 1; }
		[ -c "$d/null" ] || { echo "$p: replaced the device"; ls -l "$d/null"; return 1; }
		[ -z "$(find "$d" -name '*.tmp*')" ] || { echo "$p: left a temporary file"; return 1; }
	done
	# lm-export writes files into its folder: a device there stays a device too
	mkdir "$d/exp"
	mknod "$d/exp/model.safetensors" c 1 3
	lm-export -o "$d/exp" "$BATS_FILE_TMPDIR/m1.lms"
	[ -c "$d/exp/model.safetensors" ]
	[ -s "$d/exp/config.json" ]
}

@test "-o a FIFO: the reader gets the whole stream and the FIFO stays" {
	local d="$BATS_TEST_TMPDIR" reader
	for p in lm-init lm-prune lm-quant lm-embed; do
		rm -f "$d/fifo" "$d/got.lms" "$d/ref.lms"
		mkfifo "$d/fifo"
		cat "$d/fifo" > "$d/got.lms" &
		reader=$!
		run_to "$p" "$d/fifo"
		# a replaced FIFO leaves its reader waiting for a writer forever
		[ -p "$d/fifo" ] || { kill "$reader"; echo "$p: the FIFO was replaced"; return 1; }
		wait "$reader"
		run_to "$p" "$d/ref.lms"
		[ "$(tensor_digest "$d/got.lms")" = "$(tensor_digest "$d/ref.lms")" ] \
			|| { echo "$p: the reader got another stream"; return 1; }
	done
}

@test "-o a symbolic link replaces the file it points at and keeps the link, every program" {
	local d="$BATS_TEST_TMPDIR"
	mkdir "$d/store"
	for p in $PROGS; do
		rm -f "$d/link" "$d/store/real.lms" "$d/ref.lms"
		echo old > "$d/store/real.lms"
		ln -s store/real.lms "$d/link"
		run_to "$p" "$d/link" || { echo "$p: exit $?"; return 1; }
		[ -L "$d/link" ] || { echo "$p: the link was replaced"; return 1; }
		[ "$(readlink "$d/link")" = store/real.lms ]
		run_to "$p" "$d/ref.lms"
		[ "$(tensor_digest "$d/store/real.lms")" = "$(tensor_digest "$d/ref.lms")" ] \
			|| { echo "$p: the link's target does not hold the stream"; return 1; }
		[ -z "$(find "$d" -name '*.tmp*')" ] || { echo "$p: left a temporary file"; return 1; }
	done
	# a dangling link: its target is created, as the shell's > would
	ln -s store/new.lms "$d/dangling"
	lm-prune -s 0.5 -o "$d/dangling" "$BATS_FILE_TMPDIR/m1.lms"
	[ -L "$d/dangling" ]
	run -0 lm-info "$d/store/new.lms"
	# a chain of links through another folder, relative at each step
	ln -s ../dangling "$d/store/chain"
	lm-init --like opt-micro --layers 1 --seed 9 -o "$d/store/chain"
	[ -L "$d/store/chain" ] && [ -L "$d/dangling" ]
	[ "$(tensor_digest "$d/store/new.lms")" = "$(tensor_digest <(lm-init --like opt-micro --layers 1 --seed 9))" ]
}

@test "-o a regular file keeps its permissions; a new one gets the umask's" {
	local d="$BATS_TEST_TMPDIR"
	echo old > "$d/a.lms"
	chmod 640 "$d/a.lms"
	lm-prune -s 0.5 -o "$d/a.lms" "$BATS_FILE_TMPDIR/m1.lms"
	[ "$(stat -c %a "$d/a.lms")" = 640 ]
	(umask 027; lm-prune -s 0.5 -o "$d/b.lms" "$BATS_FILE_TMPDIR/m1.lms")
	[ "$(stat -c %a "$d/b.lms")" = 640 ]
}

# start lm-prune -o out.lms reading from a FIFO held open (so it waits with its temporary
# file made), send it SIG, and check it died of it and left no out.lms*
interrupted() {
	local sig=$1 d="$BATS_TEST_TMPDIR/$1" pid st=0
	mkdir "$d"
	mkfifo "$d/in"
	exec 8<> "$d/in"
	# a background job starts with SIGINT ignored, and under nohup with SIGHUP ignored too (a
	# program keeps a signal ignored that it started with, cli.c); a user's signals reach a
	# foreground one: every signal back to its default
	env --default-signal lm-prune -s 0.5 -o "$d/out.lms" < "$d/in" &
	pid=$!
	for _ in $(seq 100); do
		compgen -G "$d/out.lms.tmp*" > /dev/null && break
		sleep 0.1
	done
	compgen -G "$d/out.lms.tmp*" > /dev/null || { echo "no temporary file appeared"; return 1; }
	kill -"$sig" "$pid"
	wait "$pid" || st=$?
	exec 8>&-
	[ "$st" -eq $((128 + $(kill -l "$sig"))) ] || { echo "$sig: exit status $st"; return 1; }
	run compgen -G "$d/out.lms*"
	assert_output ""
}

@test "-o FILE interrupted by SIGINT, SIGTERM or SIGHUP: no FILE.tmp* left, killed by the signal" {
	interrupted INT
	interrupted TERM
	interrupted HUP
}

@test "-o FILE on a failing run: an existing FILE stays as it was, no FILE.tmp* left" {
	local d="$BATS_TEST_TMPDIR/w"
	mkdir "$d"
	head -c 300000 "$BATS_FILE_TMPDIR/m1.lms" > "$d/cut.lms"
	echo precious > "$d/out.lms"
	run -1 --separate-stderr lm-prune -s 0.5 -o "$d/out.lms" "$d/cut.lms"
	assert_one_line_error lm-prune
	[ "$(cat "$d/out.lms")" = precious ]
	run -1 --separate-stderr lm-quant -b 4 -o "$d/new.lms" "$d/cut.lms"
	assert_one_line_error lm-quant
	run ls "$d"
	assert_output "$(printf 'cut.lms\nout.lms')"
}

@test "-o FILE past ulimit -f: one line, exit 1, no FILE nor FILE.tmp* (not killed by SIGXFSZ)" {
	local d="$BATS_TEST_TMPDIR/w"
	mkdir "$d"
	run -1 --separate-stderr bash -c "ulimit -f 1000; lm-prune -s 0.5 -o '$d/out.lms' '$BATS_FILE_TMPDIR/m1.lms'"
	assert_one_line_error lm-prune
	[[ "$stderr" == *"File too large"* ]]
	run ls "$d"
	assert_output ""
}

# the exact command of issue #23: -j 32 under a 4 GB address space. It printed "out of
# memory" and hung (OpenBLAS workers retrying their buffers while exit() joined them).
@test "-j 32 under ulimit -v 4000000: lm-prune and lm-eval end (0, or 1 with one line)" {
	[ -z "${LM_SANITIZE:-}" ] || skip "ASan reserves more address space than the limit"
	local d="$BATS_TEST_TMPDIR" st
	lm-import "$MICRO" > "$d/m.lms"
	cd "$d"
	run --separate-stderr timeout 120 bash -c '(ulimit -v 4000000; lm-prune -q -s 0.5 -j 32 m.lms > o.lms)'
	st=$status
	[ "$st" -eq 0 ] || { [ "$st" -eq 1 ] && assert_one_line_error lm-prune; }
	run --separate-stderr timeout 120 bash -c \
		"(ulimit -v 4000000; lm-eval -j 32 --ppl '$BATS_FILE_TMPDIR/text.txt' --seqlen 128 m.lms)"
	st=$status
	[ "$st" -eq 0 ] || { [ "$st" -eq 1 ] && assert_one_line_error lm-eval; }
}

@test "-j above the usable cores runs on the cores, with a note only under -v" {
	local n
	n=$(nproc)
	run -0 --separate-stderr lm-prune -v -s 0.5 -j $((n + 5)) -o "$BATS_TEST_TMPDIR/a.lms" "$BATS_FILE_TMPDIR/m1.lms"
	assert_equal "${stderr_lines[0]}" "lm-prune: -j $((n + 5)): $n usable cores, running $n threads"
	run -0 --separate-stderr lm-prune -s 0.5 -j $((n + 5)) -o "$BATS_TEST_TMPDIR/b.lms" "$BATS_FILE_TMPDIR/m1.lms"
	[[ "$stderr" != *"usable cores"* ]]
	run -0 --separate-stderr lm-prune -v -s 0.5 -j "$n" -o "$BATS_TEST_TMPDIR/c.lms" "$BATS_FILE_TMPDIR/m1.lms"
	[[ "$stderr" != *"usable cores"* ]]
}

@test "make install PREFIX: the installed lm-init takes the tokenizer installed under PREFIX, even moved" {
	unset MAKEFLAGS MAKELEVEL MFLAGS LMPIPE_TOKENIZER
	local p="$BATS_TEST_TMPDIR/prefix" q="$BATS_TEST_TMPDIR/moved" d="$BATS_TEST_TMPDIR"
	run -0 make --no-print-directory -C "$TOP" install PREFIX="$p"
	[ -s "$p/share/lmpipe/tokenizer/vocab.json" ]
	# told apart from the source tree's copy (the last fallback): its first 1000 merges only
	head -n 1000 "$MICRO/merges.txt" > "$p/share/lmpipe/tokenizer/merges.txt"
	# moved: neither PREFIX nor the DATADIR compiled in holds the tokenizer any more
	mv "$p" "$q"
	"$q/bin/lm-init" --like opt-micro --layers 1 -o "$d/m.lms"
	lm-export -o "$d/exp" "$d/m.lms"
	cmp "$q/share/lmpipe/tokenizer/merges.txt" "$d/exp/merges.txt"
	cmp "$q/share/lmpipe/tokenizer/vocab.json" "$d/exp/vocab.json"
}

@test "man pages carry the version as they are: no @VERSION@ in man/ nor installed; config.mk's VERSION" {
	unset MAKEFLAGS MAKELEVEL MFLAGS
	local p="$BATS_TEST_TMPDIR/prefix" v f
	v=$(sed -n 's/^VERSION *= *//p' "$TOP/config.mk")
	run -0 lm-info --version
	assert_output "lm-info $v"
	for f in "$TOP"/man/*.[1-9]; do
		run ! grep -n '@VERSION@' "$f"
		run -0 sed -n 's/^\.Os lmpipe //p' "$f"
		[ "$output" = "$v" ] || { echo "${f##*/}: .Os version '$output', config.mk has $v"; return 1; }
	done
	if command -v man > /dev/null; then
		MANWIDTH=80 MANPAGER=cat run -0 man -l "$TOP/man/lm-stream.5"
		assert_output --partial "lmpipe $v"
		refute_output --partial "@VERSION@"
	fi
	run -0 make --no-print-directory -C "$TOP" install PREFIX="$p"
	run ! grep -rl '@VERSION@' "$p/share/man"
	for f in "$TOP"/man/*.1; do cmp "$f" "$p/share/man/man1/${f##*/}"; done
}

# calib_default PROG ARGS...: a calibration file shorter than the default 128 windows
calib_default() {
	local prog=$1 d="$BATS_TEST_TMPDIR" n
	shift
	head -c 6000 "$DATA/novels-eval/novels-calib.txt" > "$d/short.txt"
	run -0 --separate-stderr "$prog" "$@" -c "$d/short.txt" --seqlen 64 -o "$d/a.lms" "$BATS_FILE_TMPDIR/m1.lms"
	[ "${#stderr_lines[@]}" -eq 1 ]
	[[ "$stderr" =~ ^$prog:\ warning:\ .*short.txt:\ [0-9]+\ tokens\ make\ ([0-9]+)\ windows\ of\ 64:\ calibrating\ on\ ([0-9]+),\ not\ the\ default\ 128 ]]
	n=${BASH_REMATCH[1]}
	[ "${BASH_REMATCH[2]}" = "$n" ] && [ "$n" -ge 1 ] && [ "$n" -lt 128 ]
	# the same as asking for exactly what the file holds
	run -0 --separate-stderr "$prog" "$@" -c "$d/short.txt" --seqlen 64 --nsamples "$n" -o "$d/b.lms" "$BATS_FILE_TMPDIR/m1.lms"
	assert_equal "$stderr" ""
	[ "$(tensor_digest "$d/a.lms")" = "$(tensor_digest "$d/b.lms")" ]
	# asked for explicitly, one more than the file holds (or the default's 128) is an error
	for k in $((n + 1)) 128; do
		run -1 --separate-stderr "$prog" "$@" -c "$d/short.txt" --seqlen 64 --nsamples "$k" -o "$d/c.lms" "$BATS_FILE_TMPDIR/m1.lms"
		assert_one_line_error "$prog"
		[[ "$stderr" == *"make $n windows of 64, fewer than the $k asked for (--nsamples)" ]]
		[ ! -e "$d/c.lms" ]
	done
	# no windows at all stays an error with the default too
	: > "$d/empty.txt"
	run -1 --separate-stderr "$prog" "$@" -c "$d/empty.txt" --seqlen 64 -o "$d/c.lms" "$BATS_FILE_TMPDIR/m1.lms"
	assert_one_line_error "$prog"
	[[ "$stderr" == *"empty.txt: 1 tokens make no window of 64 (--seqlen)" ]]
}

@test "lm-prune -m wanda/sparsegpt -c FILE shorter than the default --nsamples: uses what it holds, warns" {
	calib_default lm-prune -s 0.5 -m wanda
	calib_default lm-prune -s 0.5 -m sparsegpt
}

@test "lm-quant -m gptq -c FILE shorter than the default --nsamples: uses what it holds, warns" {
	calib_default lm-quant -b 4 -m gptq
}

@test "-o a folder, a missing folder, a symbolic-link loop: one line, exit 1, nothing made" {
	local d="$BATS_TEST_TMPDIR/w" in="$BATS_FILE_TMPDIR/m1.lms"
	mkdir "$d"
	cd "$d"
	ln -s loop loop
	run -1 --separate-stderr lm-prune -s 0.5 -o . "$in"
	assert_one_line_error lm-prune
	assert_equal "$stderr" "lm-prune: .: Is a directory"
	run -1 --separate-stderr lm-quant -b 4 -o nope/x.lms "$in"
	assert_one_line_error lm-quant
	assert_equal "$stderr" "lm-quant: nope/x.lms: cannot create a temporary file in its folder: No such file or directory"
	run -1 --separate-stderr lm-init --like opt-micro -o loop
	assert_one_line_error lm-init
	assert_equal "$stderr" "lm-init: loop: Too many levels of symbolic links"
	cd "$BATS_TEST_TMPDIR"
	run ls -A "$d"
	assert_output loop
}
