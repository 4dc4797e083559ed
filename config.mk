# config.mk: what a packager may override (sbase style)
VERSION   = 0.1.0
PREFIX   ?= /usr/local
MANPREFIX ?= $(PREFIX)/share/man
DATADIR  ?= $(PREFIX)/share/lmpipe

CC       ?= cc
CFLAGS   ?= -O2 -g
LDFLAGS  ?=

# project-owned flags, kept separate so CFLAGS can be replaced freely. An undeclared function
# is an error: C11 compilers only warn and assume it returns int, which truncates a returned
# pointer (seen: a cblas.h without openblas_get_corename built a program that crashed at start)
WARN      = -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Werror=implicit-function-declaration
CPPFLAGS += -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Icommon
# where lm-init finds the OPT tokenizer: the copy installed beside the program
# (BINDIR/../share/lmpipe, whatever PREFIX was given at install), then DATADIR, then
# this source tree. VERSION is also in common/base/util.h and each man page's .Os line.
CPPFLAGS += -DLM_DATADIR='"$(DATADIR)"' -DLM_SRCDIR='"$(CURDIR)"'
# elementwise kernels must vectorise (gcc -O2 keeps ReLU as a branch); never -ffast-math:
# reference tests and NaN checks need IEEE semantics
KFLAGS    = -O3 -fno-math-errno

MSGPACK_LIBS ?= $(shell pkg-config --libs msgpack-c 2>/dev/null || pkg-config --libs msgpack 2>/dev/null || echo -lmsgpackc)
BLAS_LIBS    ?= -lopenblas
LIBS          = $(MSGPACK_LIBS) $(BLAS_LIBS) -ljansson -lpcre2-8 -larchive -lz -lpthread -lm

ifeq ($(SANITIZE),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
