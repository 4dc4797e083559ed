/* blascore.c: run OpenBLAS's AVX-512 fp32 kernels ("core") on every CPU that has AVX-512.
 *
 * Why: Debian's OpenBLAS (0.3.21, built for every x86-64 core) chooses its kernels once, when
 * the library is loaded, from a table of CPUs it knows. It does not know AMD's Zen 5 (family
 * 26) and falls back to its AVX2 "Haswell" kernels there, about half the fp32 speed of its
 * AVX-512 kernels on the same CPU (docs/performance.md, "The BLAS core"). The only documented
 * switch is the environment variable OPENBLAS_CORETYPE, read by OpenBLAS's load-time
 * constructor, before main(). Setting it earlier from inside the program does not work: an
 * executable's .preinit_array does run before OpenBLAS's constructor, but libc's own start-up
 * then reinstalls the original environment (tried: the setting is lost). So the program sets
 * the variable and executes itself again (/proc/self/exe, same argv and descriptors, nothing
 * read yet); the second start finds OpenBLAS on the chosen core. That costs one more program
 * load (a few ms), only on CPUs where OpenBLAS chose a core without AVX-512.
 *
 * The rule is by CPU feature, not by CPU name: with AVX-512 (F, CD, BW, DQ, VL) the AVX-512
 * core, Cooperlake where the CPU also has AVX512_BF16 (the core OpenBLAS itself picks on
 * Zen 4 and Cooper Lake), SkylakeX otherwise. A CPU without AVX-512 keeps OpenBLAS's own
 * choice. OPENBLAS_CORETYPE set by the user wins (lm-info --system then says which
 * core lmpipe would have chosen), unless it names a core this CPU cannot execute (AVX-512
 * ones without AVX-512): then it is dropped with a warning, as OpenBLAS would crash.
 * LM_BLAS_CORE=openblas keeps OpenBLAS's choice and LM_BLAS_CORE=NAME asks for core NAME the same way (to compare cores). Both variables set
 * here are removed again in the second start, so that programs this one starts choose for
 * themselves. */
#include "blascore.h"

#include <cblas.h> /* OpenBLAS's introspection: openblas_get_corename */
#ifndef OPENBLAS_CONFIG_H
/* another BLAS's cblas.h (Debian's libblas-dev, say) came first: say what is missing rather
 * than fail on an undeclared openblas_get_corename */
#error "cblas.h is not OpenBLAS's: install libopenblas-dev (`make check` installs what lmpipe needs)"
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define LM_BLASCORE_X86 1
#endif

/* marks OPENBLAS_CORETYPE as set by lmpipe for its own second start, with the same value */
#define MARK "LM_BLAS_CORE_SET"

static const char *asked;  /* the core lmpipe asked for; NULL when it asked for none */
static const char *reason = "not chosen (lm_blas_core_start not run)";

static int cpu_avx512(void)
{
#ifdef LM_BLASCORE_X86
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
	       __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
	       __builtin_cpu_supports("avx512vl");
#else
	return 0;
#endif
}

static int cpu_avx512_bf16(void)
{
#ifdef LM_BLASCORE_X86
	return __builtin_cpu_supports("avx512bf16");
#else
	return 0;
#endif
}

const char *lm_blas_core_for_cpu(int avx512, int avx512_bf16)
{
	if (!avx512)
		return NULL;
	return avx512_bf16 ? "Cooperlake" : "SkylakeX";
}

/* OpenBLAS's core names are lower case in some versions ("haswell"), capitalised in others */
static int core_is(const char *core, const char *want)
{
	return core && want && strcasecmp(core, want) == 0;
}

/* whether this CPU can execute core's kernels: OpenBLAS takes OPENBLAS_CORETYPE on trust,
 * and an AVX-512 core on a CPU without AVX-512 dies of SIGILL in the first product */
int lm_blas_core_runs(const char *core)
{
	if (core_is(core, "SkylakeX"))
		return cpu_avx512();
	if (core_is(core, "Cooperlake") || core_is(core, "SapphireRapids"))
		return cpu_avx512() && cpu_avx512_bf16();
	return 1;
}

/* the second start: see whether the core asked for runs (OpenBLAS ignores a name it does
 * not know), then remove both variables so that programs this one starts choose afresh */
static void second_start(const char *mark)
{
	static char name[32], why[160];
	const char *now = getenv("OPENBLAS_CORETYPE"), *by = getenv("LM_BLAS_CORE");
	if (mark[0] == '!') { /* the user's core was dropped (lm_blas_core_start) */
		snprintf(why, sizeof why, "OPENBLAS_CORETYPE=%.40s needs instructions this CPU lacks: "
		         "OpenBLAS's own choice", mark + 1);
		reason = why;
	} else if (now && strcmp(now, mark) == 0) {
		snprintf(name, sizeof name, "%s", mark);
		asked = name;
		if (by && *by && strcmp(by, "auto") != 0)
			snprintf(why, sizeof why, "LM_BLAS_CORE=%s", by);
		else
			snprintf(why, sizeof why, "chosen by lmpipe");
		if (!core_is(openblas_get_corename(), asked))
			snprintf(why + strlen(why), sizeof why - strlen(why), ", not taken by OpenBLAS");
		reason = why;
		unsetenv("OPENBLAS_CORETYPE");
	} else {  /* the variable changed between the two starts: the user's, keep it */
		reason = "OPENBLAS_CORETYPE set in the environment";
	}
	unsetenv(MARK);
}

const char *lm_blas_core_best(void)
{
	int avx512 = cpu_avx512();
	return lm_blas_core_for_cpu(avx512, avx512 && cpu_avx512_bf16());
}

/* the first start with OPENBLAS_CORETYPE=user naming a core this CPU cannot execute: start
 * again without it (OpenBLAS has read it already), saying so once; 1 if that was the case */
static int drop_unrunnable(const char *user, char **argv)
{
	char m[40];
	if (!user || lm_blas_core_runs(user))
		return 0;
	snprintf(m, sizeof m, "!%.38s", user);
	fprintf(stderr, "%s: warning: OPENBLAS_CORETYPE=%s needs instructions this CPU lacks; "
	        "OpenBLAS chooses its core\n", argv && argv[0] ? argv[0] : "lmpipe", user);
	if (argv && argv[0] && setenv(MARK, m, 1) == 0 && unsetenv("OPENBLAS_CORETYPE") == 0)
		execv("/proc/self/exe", argv);
	reason = "could not restart without OPENBLAS_CORETYPE";
	return 1;
}

void lm_blas_core_start(char **argv)
{
	const char *choice = getenv("LM_BLAS_CORE"), *mark = getenv(MARK), *want;
	if (mark) {
		second_start(mark);
		return;
	}
	const char *user = getenv("OPENBLAS_CORETYPE");
	if (drop_unrunnable(user, argv))
		return;
	if (user) {
		reason = "OPENBLAS_CORETYPE set in the environment";
		return;
	}
	if (choice && strcmp(choice, "openblas") == 0) {
		reason = "LM_BLAS_CORE=openblas: OpenBLAS's own choice";
		return;
	}
	/* LM_BLAS_CORE=NAME asks for NAME as lmpipe asks for its own (to compare cores without
	 * the choice reaching the programs this one starts) */
	want = choice && *choice && strcmp(choice, "auto") != 0 ? choice : lm_blas_core_best();
	if (!want) {
		reason = "OpenBLAS's own choice (no AVX-512)";
		return;
	}
	if (core_is(openblas_get_corename(), want)) {
		reason = "OpenBLAS's own choice";
		return;
	}
	if (!argv || !argv[0] || strlen(want) >= 32 || setenv("OPENBLAS_CORETYPE", want, 1) != 0 ||
	    setenv(MARK, want, 1) != 0) {
		reason = "could not set OPENBLAS_CORETYPE: OpenBLAS's own choice";
		return;
	}
	execv("/proc/self/exe", argv);
	/* no /proc (a chroot) or no such file: go on with OpenBLAS's core */
	unsetenv("OPENBLAS_CORETYPE");
	unsetenv(MARK);
	reason = "could not restart with OPENBLAS_CORETYPE: OpenBLAS's own choice";
}

void lm_blas_core_guard(char **argv)
{
	const char *mark = getenv(MARK);
	if (mark)
		second_start(mark);
	else
		drop_unrunnable(getenv("OPENBLAS_CORETYPE"), argv);
}

const char *lm_blas_core_asked(void) { return asked; }
const char *lm_blas_core_reason(void) { return reason; }
