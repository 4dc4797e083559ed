/* unit.h: the smallest test harness that can fail.
 * CHECK records a failure and goes on; main returns unit_done(), non-zero on any failure.
 *
 * Determinism (README, "Determinism"): two computations of one value are bitwise equal only
 * for the same input, build, thread count, row count/chunking and CPU (BLAS kernel). A test
 * that compares with memcmp says in a comment which of these it holds fixed; every other
 * comparison of two computations uses unit_relerr with a tolerance. tests/units.sh runs the
 * programs under every OpenBLAS core type the CPU can execute and at two threads. */
#ifndef LM_UNIT_H
#define LM_UNIT_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blascore.h"

static int unit_failed, unit_checks;

/* A test started with OPENBLAS_CORETYPE naming a core this CPU cannot execute (an AVX-512
 * one without AVX-512) starts again without it, as the programs do (lm_blas_core_start),
 * instead of dying of SIGILL in its first product; the second start clears the mark.
 * glibc passes argc and argv to an executable's constructors. */
__attribute__((constructor)) static void unit_blas_core(int argc, char **argv)
{
	(void)argc;
	lm_blas_core_guard(argv);
}

#define CHECK(cond) do { unit_checks++; if (!(cond)) { unit_failed++; \
	fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECKF(cond, ...) do { unit_checks++; if (!(cond)) { unit_failed++; \
	fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

/* max |a-b| / max |b|: the relative error the issues state tolerances in */
static inline double unit_relerr(const float *a, const float *b, size_t n)
{
	double md = 0, mb = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		if (d > md || isnan(d)) md = isnan(d) ? INFINITY : d;
		if (fabs(b[i]) > mb) mb = fabs(b[i]);
	}
	return mb > 0 ? md / mb : md;
}

/* f rounded to the nearest bf16 (ties to even), as the bf16 kernels round their operands:
 * the reference side of their tests */
static inline float unit_round_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
	memcpy(&f, &u, sizeof f);
	return f;
}

static inline int unit_done(const char *name)
{
	fprintf(stderr, "%s: %d checks, %d failed\n", name, unit_checks, unit_failed);
	return unit_failed != 0;
}
#endif
