/* blascore.h: which OpenBLAS fp32 core runs (blascore.c says why lmpipe chooses it). */
#ifndef LM_BLASCORE_H
#define LM_BLASCORE_H

/* the core lmpipe asks for on a CPU with (avx512: F, CD, BW, DQ, VL) and avx512_bf16;
 * NULL: leave OpenBLAS's choice */
const char *lm_blas_core_for_cpu(int avx512, int avx512_bf16);

/* 1 if this CPU can execute OpenBLAS core `core`'s kernels (AVX-512 ones need AVX-512) */
int lm_blas_core_runs(const char *core);

/* lm_blas_core_for_cpu for this CPU */
const char *lm_blas_core_best(void);

/* First thing a program does (lm_prog_init): where OpenBLAS runs a core without AVX-512 on
 * a CPU with it, set OPENBLAS_CORETYPE and execute the program again with argv (and where
 * the environment's OPENBLAS_CORETYPE cannot run here, drop it and do the same); returns when
 * nothing is to be done, in the second start, or when the restart failed. */
void lm_blas_core_start(char **argv);

/* For a harness that runs on the core it is given (the unit tests under each core, make
 * unit-cores): only lm_blas_core_start's dropping of an OPENBLAS_CORETYPE this CPU cannot
 * execute, never a core of lmpipe's own choosing */
void lm_blas_core_guard(char **argv);

/* the core asked for (NULL when OpenBLAS chose), and why, in a few words */
const char *lm_blas_core_asked(void);
const char *lm_blas_core_reason(void);

#endif
