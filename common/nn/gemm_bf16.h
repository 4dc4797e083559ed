/* gemm_bf16.h: a bf16 GEMM of our own (vdpbf16ps), for CPUs with AVX512_BF16. */
#ifndef LM_GEMM_BF16_H
#define LM_GEMM_BF16_H
#include <stddef.h>

/* 1 when the CPU has AVX512_BF16 and LM_NO_BF16=1 is not set in the environment */
int lm_gemm_bf16_available(void);
/* C[M x N] (ldc) = beta*C + A[M x K] * B[N x K]^T, A and B rounded to bf16 (nearest even),
 * products accumulated in fp32. Runs on lm_threads() threads (serially when called from
 * inside a pool job); C is the same bits whatever the thread count. Only call when
 * lm_gemm_bf16_available(); -1 on no memory. */
int lm_gemm_bf16_nt(float *C, size_t ldc, const float *A, const float *B, size_t M, size_t N,
                    size_t K, float beta);
#endif
