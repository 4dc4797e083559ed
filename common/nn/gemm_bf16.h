/* gemm_bf16.h: a bf16 GEMM of our own (vdpbf16ps), for CPUs with AVX512_BF16. */
#ifndef LM_GEMM_BF16_H
#define LM_GEMM_BF16_H
#include <stddef.h>
#include <stdint.h>

/* 1 when the CPU has AVX512_BF16 and LM_NO_BF16=1 is not set in the environment */
int lm_gemm_bf16_available(void);
/* C[M x N] (ldc) = beta*C + A[M x K] * B[N x K]^T, A and B rounded to bf16 (nearest even),
 * products accumulated in fp32. Runs on lm_threads() threads (serially when called from
 * inside a pool job); C is the same bits whatever the thread count. Only call when
 * lm_gemm_bf16_available(); -1 on no memory. */
int lm_gemm_bf16_nt(float *C, size_t ldc, const float *A, const float *B, size_t M, size_t N,
                    size_t K, float beta);
/* the same with A's rows lda apart and B's ldb apart; b_kn: B is [K x N] and C = A * B */
int lm_gemm_bf16(float *C, size_t ldc, const float *A, size_t lda, const float *B, size_t ldb,
                 int b_kn, size_t M, size_t N, size_t K, float beta);
/* the same with A given transposed when a_km: A is [K x M] (rows lda apart) and
 * C = beta*C + A^T * B (or A^T * B^T), the backward's dW = dY^T X; the same bits as the
 * untransposed A would give */
int lm_gemm_bf16_t(float *C, size_t ldc, const float *A, size_t lda, int a_km, const float *B,
                   size_t ldb, int b_kn, size_t M, size_t N, size_t K, float beta);
/* Operands packed once for many products. A packed (lm_gemm_bf16_packed_a(M, K) uint32) is
 * one row per (K + 1) / 2 uint32, so rows from n on start at ap + n * ((K + 1) / 2); B packed
 * (lm_gemm_bf16_packed_b(N, K) uint32) is used whole. _nt_packed gives the bits
 * lm_gemm_bf16_nt gives on the unpacked operands. */
size_t lm_gemm_bf16_packed_a(size_t M, size_t K);
size_t lm_gemm_bf16_packed_b(size_t N, size_t K);
void lm_gemm_bf16_pack_a(uint32_t *ap, const float *A, size_t M, size_t K);
void lm_gemm_bf16_pack_b(uint32_t *bp, const float *B, size_t N, size_t K);
int lm_gemm_bf16_nt_packed(float *C, size_t ldc, const uint32_t *ap, const uint32_t *bp,
                           size_t M, size_t N, size_t K, float beta);
/* B packed whole from either layout, rows ldb apart: [N x K] or (b_kn) [K x N]; and the
 * product of an unpacked A (as lm_gemm_bf16_t takes it) by such a B: the bits lm_gemm_bf16_t
 * gives on the unpacked B. For a B used by many row chunks (the LM head in the loss). */
void lm_gemm_bf16_pack_b_t(uint32_t *bp, const float *B, size_t ldb, int b_kn, size_t N,
                           size_t K);
/* A packed as lm_gemm_bf16_pack_a packs it, from rows lda apart, or (a_km) from A given
 * transposed, [K x M] */
void lm_gemm_bf16_pack_a_t(uint32_t *ap, const float *A, size_t lda, int a_km, size_t M,
                           size_t K);
int lm_gemm_bf16_b_packed(float *C, size_t ldc, const float *A, size_t lda, int a_km,
                          const uint32_t *bp, size_t M, size_t N, size_t K, float beta);
#endif
