# lmpipe: one static library (common/, grouped by role), one thin program per cmd/lm-*.c
include config.mk

B        ?= build
# common/ is grouped by role (docs/design.md): base/ io/ nn/ methods/ eval/ prog/; every
# folder is on the include path, so a file includes another by its name alone
LIB_SRC   = $(wildcard common/*.c common/*/*.c)
LIB_HDR   = $(wildcard common/*.h common/*/*.h)
LIB_OBJ   = $(LIB_SRC:common/%.c=$(B)/common/%.o)
LIB_DIRS  = $(sort $(dir $(LIB_SRC) $(LIB_HDR)))
CPPFLAGS += $(patsubst %/,-I%,$(filter-out common/,$(LIB_DIRS)))
BIN      ?= bin
PROGS     = $(patsubst cmd/%.c,$(BIN)/%,$(wildcard cmd/lm-*.c))
UNIT_SRC  = $(wildcard tests/unit/test_*.c)
UNITS     = $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
MAN1      = $(wildcard man/*.1)
MAN5      = $(wildcard man/*.5)

all: $(PROGS)

# the kernels and the loops over them (config.mk's KFLAGS)
MV_KERN = %/matvec_avx2.o %/matvec_avx512.o %/matvec_sparse_avx2.o %/matvec_sparse_avx512.o \
          %/matvec_x8_avx2.o %/matvec_x8.o
$(filter %/kernels.o %/matvec.o $(MV_KERN) %/pool.o %/rows.o %/forward.o %/quant.o %/backward.o %/train.o %/optim.o,$(LIB_OBJ)): XFLAGS = $(KFLAGS)
ifeq ($(SANITIZE),1)
# the SIMD decode kernels under ASan+UBSan at -O1, every check kept: at -O3 each sparse file
# took 4 minutes to compile there (the sanitizer build's critical path), at -O1 2
$(filter $(MV_KERN),$(LIB_OBJ)): XFLAGS = -O1 -fno-math-errno
endif

$(B)/common/%.o: common/%.c $(LIB_HDR) config.mk
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(XFLAGS) $(WARN) -c -o $@ $<

$(B)/libcommon.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $(LIB_OBJ)

$(BIN)/%: cmd/%.c $(B)/libcommon.a $(LIB_HDR)
	@mkdir -p $(BIN)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $< $(B)/libcommon.a $(LDFLAGS) $(LIBS)

$(B)/tests/%: tests/unit/%.c tests/unit/unit.h tests/unit/fixture.h tests/unit/mvcheck.h $(B)/libcommon.a $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -Itests/unit -o $@ $< $(B)/libcommon.a $(LDFLAGS) $(LIBS)

# ---- fuzz targets: replayed over the committed corpora in every check, fuzzed by `make fuzz` ----
FUZZ       = stream safetensors torchbin config tokenizer
FUZZ_RUNS  = $(FUZZ:%=$(B)/fuzz/replay_%)
FUZZ_SECONDS ?= 60

$(B)/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c tests/fuzz/fuzz.h $(B)/libcommon.a $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -Itests/fuzz -o $@ $< tests/fuzz/replay.c $(B)/libcommon.a $(LDFLAGS) $(LIBS)

fuzz-replay: $(FUZZ_RUNS)
	@fail=0; for t in $(FUZZ); do \
	  if ./$(B)/fuzz/replay_$$t tests/fuzz/corpus/$$t/*; then echo "check: ok fuzz-replay $$t"; \
	  else echo "check: FAIL fuzz-replay $$t"; fail=1; fi; done; test $$fail = 0

# libFuzzer (clang from Debian): each target for FUZZ_SECONDS; new inputs land in
# build-fuzz/corpus/<target>, crashes in build-fuzz/ (copy reproducers into the corpus)
fuzz:
	$(MAKE) B=build-fuzz BIN=bin-fuzz CC=clang \
	  CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" build-fuzz/libcommon.a
	@for t in $(FUZZ); do \
	  clang $(CPPFLAGS) -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Itests/fuzz \
	    -o build-fuzz/fuzz_$$t tests/fuzz/fuzz_$$t.c build-fuzz/libcommon.a $(LIBS) || exit 1; \
	  mkdir -p build-fuzz/corpus/$$t; \
	  (cd build-fuzz && LM_FUZZ_TOKENIZER=$(CURDIR)/models/opt-micro ./fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	    -print_final_stats=1 corpus/$$t ../tests/fuzz/corpus/$$t 2>&1 | \
	    grep -E "stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY|Done") ; \
	done

# ---- tests ----
deps:
	@sh .ci/deps.sh

# the decode product's probe (bench/matvec.c): built with the unit programs so it keeps
# compiling, run by hand
$(B)/bench/matvec: bench/matvec.c $(B)/libcommon.a $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $< $(B)/libcommon.a $(LDFLAGS) $(LIBS)

# the thread pool's hand-off probe (bench/handoff.c), the same way
$(B)/bench/handoff: bench/handoff.c $(B)/libcommon.a $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $< $(B)/libcommon.a $(LDFLAGS) $(LIBS)

# every unit program runs even when one fails; tests/units.sh prints a count per program
unit: $(UNITS) $(B)/bench/matvec $(B)/bench/handoff
	@sh tests/units.sh $(B)/tests

# the unit tests again under each OpenBLAS core type this CPU can execute (Debian's OpenBLAS
# picks one by CPU: a user's machine may get Haswell where ours gets Cooperlake) and at two
# threads: results may differ in the last bits between kernels, and no test may depend on it
unit-cores: $(UNITS)
	@fail=0; for c in $$(sh tests/coretypes.sh); do \
	  OPENBLAS_CORETYPE=$$c sh tests/units.sh $(B)/tests OPENBLAS_CORETYPE=$$c || fail=1; done; \
	OPENBLAS_NUM_THREADS=2 sh tests/units.sh $(B)/tests OPENBLAS_NUM_THREADS=2 || fail=1; \
	test $$fail = 0

# bats files run side by side, BATS_JOBS at a time (bats --jobs needs GNU parallel; without it,
# or at BATS_JOBS=1, one after another); a file's tests keep their order. Much of a test is
# process start-up and single-threaded Python: on 2 cores the pass took 521 s, not 735.
JOBS      ?= $(shell nproc 2>/dev/null || echo 1)
BATS_JOBS ?= $(JOBS)
BATS_RUN   = bats --tap --timing $(shell [ "$(BATS_JOBS)" -gt 1 ] 2>/dev/null && \
               command -v parallel >/dev/null && echo --jobs $(BATS_JOBS) --no-parallelize-within-files)

bats: all
	PATH="$(CURDIR)/bin:$$PATH" $(BATS_RUN) tests/

# leak checks stay on in the unit tests; a one-shot program exiting on an error need not free
# what the OS reclaims
bats-asan:
	LM_SANITIZE=1 ASAN_OPTIONS=detect_leaks=0 PATH="$(CURDIR)/$(BIN):$$PATH" LM_BIN="$(CURDIR)/$(BIN)" $(BATS_RUN) tests/

manlint:
	@if mandoc -Tlint -Wwarning $(MAN1) $(MAN5); then echo "check: ok manlint"; \
	else echo "check: FAIL manlint"; exit 1; fi

# every stage runs whatever the others gave; the last line counts every unit check and
# every bats test (tests/check.sh), and the target fails if any failed
# builds one job per core (JOBS): without it CI compiled one file at a time
check: deps
	$(MAKE) -j$(JOBS) all
	@sh tests/check.sh $(B)/check.log "$(MAKE) --no-print-directory -j$(JOBS)" unit fuzz-replay manlint bats

# the whole suite again with ASan+UBSan: its own build tree and programs (bin-asan/)
check-asan:
	$(MAKE) -j$(JOBS) B=build-asan BIN=bin-asan SANITIZE=1 all
	@sh tests/check.sh build-asan/check.log "$(MAKE) --no-print-directory -j$(JOBS) B=build-asan BIN=bin-asan SANITIZE=1" \
	  unit fuzz-replay bats-asan

demo: all
	@sh examples/demo.sh

bench: all
	@sh .ci/deps.sh python3-torch python3-numpy time
	@sh bench/run.sh

install: all
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANPREFIX)/man1 $(DESTDIR)$(MANPREFIX)/man5
	for p in $(PROGS); do install -m 755 $$p $(DESTDIR)$(PREFIX)/bin/; done
	# the pages carry the version in their .Os line as they are (tests/output-safety.bats
	# checks it against config.mk's VERSION), so `man -l man/x.1` reads right too
	install -m 644 $(MAN1) $(DESTDIR)$(MANPREFIX)/man1/
	install -m 644 $(MAN5) $(DESTDIR)$(MANPREFIX)/man5/
	mkdir -p $(DESTDIR)$(DATADIR)/tokenizer
	install -m 644 models/opt-micro/vocab.json models/opt-micro/merges.txt $(DESTDIR)$(DATADIR)/tokenizer/

uninstall:
	for p in $(PROGS); do rm -f $(DESTDIR)$(PREFIX)/bin/$$(basename $$p); done
	for m in $(MAN1); do rm -f $(DESTDIR)$(MANPREFIX)/man1/$$(basename $$m); done
	for m in $(MAN5); do rm -f $(DESTDIR)$(MANPREFIX)/man5/$$(basename $$m); done
	rm -rf $(DESTDIR)$(DATADIR)

clean:
	rm -rf build build-asan build-fuzz bin bin-asan bin-fuzz

.PHONY: all deps unit unit-cores bats bats-asan manlint check check-asan demo bench install uninstall clean fuzz fuzz-replay
.SECONDARY:
