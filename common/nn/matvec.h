/* matvec.h: the decode product y[N, OUT] (+)= x[N, IN] · W^T for a few rows of x, reading W
 * in its stored dtype (f32, f16, bf16, every packed quantized type) with SIMD, each weight
 * converted in registers and multiplied at once: no f32 copy of a tile is ever written.
 *
 * Why: with one to a few rows of x (greedy decoding, a KV-cache step) each weight is used N
 * times, so the product is bound by reading W. Converting a tile to f32 first and then
 * calling sgemv writes and reads 4 bytes per weight on top of the 2 (f16) or ~0.5 (q4)
 * stored ones, and an f16 model decodes slower than an f32 one (issue #18).
 *
 * Instruction sets, picked once at run time from the CPU: AVX-512 (F, BW, VL), else
 * AVX2 + FMA + F16C, else plain C (also the only path off x86-64). Threads: the output rows
 * are split over the pool (pool.h), so a row's sum never depends on the thread count;
 * it does depend on the instruction set (the order of the partial sums), and it is not the
 * order of sgemv's or of the tile path's, so results agree with those within float
 * rounding, not bit for bit.
 *
 * Sparse weights: a matrix kept in its N:M or bitmap layout (model.h; lm-eval keeps the
 * linear layers so) is read as stored too, by the row kernels of matvec_sparse_isa.h: only
 * the kept values (or codes) and their positions are read, x gathered at the positions
 * (N:M) or the kept values expanded into their lanes by the bitmap (bitmap). */
#ifndef LM_MATVEC_H
#define LM_MATVEC_H

#include <stddef.h>

#include "model.h"

/* the most rows of x the callers send here; more go through the tile + sgemm path, where
 * W is read once whatever N (here it is read once per 4 rows of x, from cache after the
 * first) */
#define LM_MATVEC_MAX_N 8

enum lm_matvec_isa { LM_MATVEC_SCALAR, LM_MATVEC_AVX2, LM_MATVEC_AVX512 };

/* the fused product is on (LM_NO_MATVEC=1 in the environment turns it off, so the tile path
 * of kernels.c can be compared with it) and reads w's dtype and shape */
int lm_matvec_use(const struct lm_mat *w);

/* y[n * ldy + (o - r0)] = x[n, :] · w[o, :] + beta * (that y), n < N, o in [r0, r0 + nr);
 * x is [N, w->cols] row-major; beta is 0 (y is not read) or 1 (y holds a bias). Threads:
 * lm_threads(). -1 + error if w's dtype or shape cannot be read. */
int lm_matvec(float *y, size_t ldy, const float *x, const struct lm_mat *w, size_t r0, size_t nr,
              size_t N, float beta);

/* 4-bit weights (groups of a multiple of 32 inputs) on 8-bit activations when on: x is
 * rounded to int8 per quantization group and the codes multiply it in integers
 * (matvec_x8.c), about three times as fast on AVX2, with x off by up to half a step of its
 * group (max |x| / 254) and so not the same values as off (the default) */
void lm_matvec_set_act8(int on);

/* the instruction set in use; lm_matvec_set_isa makes it `isa` (tests, benchmarks: to run
 * every path this CPU has), -1 + error when the CPU lacks it */
enum lm_matvec_isa lm_matvec_isa(void);
int lm_matvec_set_isa(enum lm_matvec_isa isa);
const char *lm_matvec_isa_name(enum lm_matvec_isa isa);

#endif
