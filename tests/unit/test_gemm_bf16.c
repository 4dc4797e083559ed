/* test_gemm_bf16.c: the bf16 GEMM against a double reference on bf16-rounded inputs, and its dispatch switch. */
#include "unit.h"
#include "gemm_bf16.h"
#include "pool.h"
#include <stdint.h>
#include <string.h>

static uint32_t seed = 12345;
static float rnd(void)
{
	seed = seed * 1664525u + 1013904223u;
	return (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* C = A*B^T + 0.5*C0, A given [M x K] or (a_km) [K x M], B [N x K] or (b_kn) [K x N]:
 * checks against rounded (tight) and unrounded (bf16-size) references */
static void one_t(size_t M, size_t N, size_t K, int a_km, int b_kn)
{
	float *A = malloc(M * K * 4), *B = malloc(N * K * 4), *C = malloc(M * N * 4);
	float *C0 = malloc(M * N * 4);
	for (size_t i = 0; i < M * K; i++) A[i] = rnd();
	for (size_t i = 0; i < N * K; i++) B[i] = rnd();
	for (size_t i = 0; i < M * N; i++) C[i] = C0[i] = rnd();
	/* element (i, k) of A and (j, k) of B as stored */
#define AT(i, k) A[a_km ? (k) * M + (i) : (i) * K + (k)]
#define BT(j, k) B[b_kn ? (k) * N + (j) : (j) * K + (k)]
	if (!a_km && !b_kn)
		CHECK(lm_gemm_bf16_nt(C, N, A, B, M, N, K, 0.5f) == 0);
	else
		CHECK(lm_gemm_bf16_t(C, N, A, a_km ? M : K, a_km, B, b_kn ? N : K, b_kn, M, N, K,
		                     0.5f) == 0);
	double worst = 0, worst_raw = 0;
	for (size_t i = 0; i < M; i++)
		for (size_t j = 0; j < N; j++) {
			double s = 0.5 * C0[i * N + j], abs = fabs(s), raw = s;
			for (size_t k = 0; k < K; k++) {
				double p = (double)unit_round_bf16(AT(i, k)) * unit_round_bf16(BT(j, k));
				s += p;
				abs += fabs(p);
				raw += (double)AT(i, k) * BT(j, k);
			}
			double e = fabs(C[i * N + j] - s) / (abs > 0 ? abs : 1);
			double er = fabs(C[i * N + j] - raw) / (abs > 0 ? abs : 1);
			if (e > worst) worst = e;
			if (er > worst_raw) worst_raw = er;
		}
#undef AT
#undef BT
	CHECKF(worst <= 1e-5, "%zu x %zu x %zu (a_km %d, b_kn %d): %g", M, N, K, a_km, b_kn, worst);
	CHECKF(worst_raw <= 1e-2, "%zu x %zu x %zu (a_km %d, b_kn %d) unrounded: %g", M, N, K, a_km,
	       b_kn, worst_raw);
	free(A); free(B); free(C); free(C0);
}

static void one(size_t M, size_t N, size_t K)
{
	one_t(M, N, K, 0, 0);
}

/* the other entry points against lm_gemm_bf16_nt: rows further apart (lda, ldb, ldc past
 * the row), B given [K x N] (b_kn), and operands packed once: all the same bits */
static void forms(size_t M, size_t N, size_t K)
{
	size_t lda = K + 3, ldb = K + 5, ldc = N + 2;
	float *A = malloc(M * lda * 4), *B = malloc(N * ldb * 4), *Bt = malloc((K + 1) * (N + 7) * 4);
	float *C0 = malloc(M * N * 4), *C1 = malloc(M * ldc * 4), *C2 = malloc(M * N * 4);
	float *C3 = malloc(M * N * 4);
	uint32_t *ap = malloc((lm_gemm_bf16_packed_a(M, K) + 1) * 4);
	uint32_t *bp = malloc((lm_gemm_bf16_packed_b(N, K) + 1) * 4);
	float *Ad = malloc(M * K * 4 + 4), *Bd = malloc(N * K * 4 + 4);
	for (size_t i = 0; i < M * lda; i++) A[i] = rnd();
	for (size_t i = 0; i < N * ldb; i++) B[i] = rnd();
	for (size_t i = 0; i < M; i++) memcpy(Ad + i * K, A + i * lda, K * 4);
	for (size_t i = 0; i < N; i++) memcpy(Bd + i * K, B + i * ldb, K * 4);
	for (size_t k = 0; k < K; k++)
		for (size_t n = 0; n < N; n++)
			Bt[k * (N + 7) + n] = B[n * ldb + k];
	float *Cs = malloc(M * N * 4); /* C's start, for the transposed forms */
	for (size_t i = 0; i < M * N; i++) Cs[i] = C0[i] = C2[i] = C3[i] = rnd();
	for (size_t i = 0; i < M; i++) memcpy(C1 + i * ldc, C0 + i * N, N * 4);
	CHECK(lm_gemm_bf16_nt(C0, N, Ad, Bd, M, N, K, 0.5f) == 0);
	CHECK(lm_gemm_bf16(C1, ldc, A, lda, B, ldb, 0, M, N, K, 0.5f) == 0);
	CHECK(lm_gemm_bf16(C2, N, A, lda, Bt, N + 7, 1, M, N, K, 0.5f) == 0);
	lm_gemm_bf16_pack_a(ap, Ad, M, K);
	lm_gemm_bf16_pack_b(bp, Bd, N, K);
	CHECK(lm_gemm_bf16_nt_packed(C3, N, ap, bp, M, N, K, 0.5f) == 0);
	/* A given transposed ([K x M], rows M + 3 apart), with B either way */
	float *At = malloc(K * (M + 3) * 4 + 4), *C4 = malloc(M * N * 4), *C5 = malloc(M * N * 4);
	for (size_t k = 0; k < K; k++)
		for (size_t i = 0; i < M; i++)
			At[k * (M + 3) + i] = A[i * lda + k];
	for (size_t i = 0; i < M * N; i++) C4[i] = C5[i] = Cs[i];
	CHECK(lm_gemm_bf16_t(C4, N, At, M + 3, 1, B, ldb, 0, M, N, K, 0.5f) == 0);
	CHECK(lm_gemm_bf16_t(C5, N, At, M + 3, 1, Bt, N + 7, 1, M, N, K, 0.5f) == 0);
	CHECKF(!memcmp(C4, C0, M * N * 4), "%zu x %zu x %zu: A as [K x M] differs", M, N, K);
	CHECKF(!memcmp(C5, C0, M * N * 4), "%zu x %zu x %zu: A as [K x M], B as [K x N] differ", M,
	       N, K);
	/* B packed whole from either layout (rows past their length), A unpacked or transposed:
	 * the LM head packed once for all chunks of the loss */
	uint32_t *bq = malloc((lm_gemm_bf16_packed_b(N, K) + 1) * 4);
	float *C6 = malloc(M * N * 4), *C7 = malloc(M * N * 4);
	for (size_t i = 0; i < M * N; i++) C6[i] = C7[i] = Cs[i];
	lm_gemm_bf16_pack_b_t(bq, B, ldb, 0, N, K);
	CHECK(lm_gemm_bf16_b_packed(C6, N, A, lda, 0, bq, M, N, K, 0.5f) == 0);
	lm_gemm_bf16_pack_b_t(bq, Bt, N + 7, 1, N, K);
	CHECK(lm_gemm_bf16_b_packed(C7, N, At, M + 3, 1, bq, M, N, K, 0.5f) == 0);
	/* A packed from its transposed form, by both packed operands (the bf16 Hessian) */
	uint32_t *aq = malloc((lm_gemm_bf16_packed_a(M, K) + 1) * 4);
	float *C8 = malloc(M * N * 4);
	for (size_t i = 0; i < M * N; i++) C8[i] = Cs[i];
	lm_gemm_bf16_pack_a_t(aq, At, M + 3, 1, M, K);
	CHECK(lm_gemm_bf16_nt_packed(C8, N, aq, bq, M, N, K, 0.5f) == 0);
	CHECKF(!memcmp(C8, C0, M * N * 4), "%zu x %zu x %zu: A packed from [K x M] differs", M, N, K);
	free(aq); free(C8);
	CHECKF(!memcmp(C6, C0, M * N * 4), "%zu x %zu x %zu: B packed whole differs", M, N, K);
	CHECKF(!memcmp(C7, C0, M * N * 4), "%zu x %zu x %zu: B packed from [K x N], A as [K x M] "
	       "differ", M, N, K);
	free(bq); free(C6); free(C7);
	free(At); free(C4); free(C5); free(Cs);
	int same1 = 1;
	for (size_t i = 0; i < M; i++)
		same1 &= !memcmp(C1 + i * ldc, C0 + i * N, N * 4);
	CHECKF(same1, "%zu x %zu x %zu: strided rows differ", M, N, K);
	CHECKF(!memcmp(C2, C0, M * N * 4), "%zu x %zu x %zu: B as [K x N] differs", M, N, K);
	CHECKF(!memcmp(C3, C0, M * N * 4), "%zu x %zu x %zu: packed operands differ", M, N, K);
	free(A); free(B); free(Bt); free(C0); free(C1); free(C2); free(C3);
	free(ap); free(bp); free(Ad); free(Bd);
}

/* C on 1 thread and on 2 and 3 (by column panels when N has many, by row blocks when not):
 * bitwise the same, since each element is summed by one thread in one K order */
static void threads_same(size_t M, size_t N, size_t K)
{
	float *A = malloc(M * K * 4), *B = malloc(N * K * 4), *C0 = malloc(M * N * 4);
	float *C[3];
	for (size_t i = 0; i < M * K; i++) A[i] = rnd();
	for (size_t i = 0; i < N * K; i++) B[i] = rnd();
	for (size_t i = 0; i < M * N; i++) C0[i] = rnd();
	for (int t = 0; t < 3; t++) {
		C[t] = malloc(M * N * 4);
		memcpy(C[t], C0, M * N * 4);
		lm_set_threads(t + 1);
		CHECK(lm_gemm_bf16_nt(C[t], N, A, B, M, N, K, 0.5f) == 0);
	}
	CHECKF(!memcmp(C[0], C[1], M * N * 4), "%zu x %zu x %zu: 1 and 2 threads differ", M, N, K);
	CHECKF(!memcmp(C[0], C[2], M * N * 4), "%zu x %zu x %zu: 1 and 3 threads differ", M, N, K);
	lm_set_threads(1);
	free(A); free(B); free(C0);
	for (int t = 0; t < 3; t++)
		free(C[t]);
}

int main(void)
{
	static const size_t sz[] = {1, 7, 17, 768};
	int have = lm_gemm_bf16_available();
	setenv("LM_NO_BF16", "1", 1);
	CHECK(lm_gemm_bf16_available() == 0);
	unsetenv("LM_NO_BF16");
	CHECK(lm_gemm_bf16_available() == have);
	if (!have) {
		fprintf(stderr, "test_gemm_bf16: skip: the CPU has no avx512bf16\n");
		return unit_done("test_gemm_bf16");
	}
	for (size_t a = 0; a < 4; a++)
		for (size_t b = 0; b < 4; b++)
			for (size_t c = 0; c < 4; c++)
				if (sz[a] * sz[b] * sz[c] <= 17 * 768 * 768)
					one(sz[a], sz[b], sz[c]);
	one(7, 3072, 768);
	one(17, 768, 3072);
	one(3, 50272, 17);
	one(2, 50272, 768);
	one(5, 9, 33);
	one(50272, 7, 17);   /* many row blocks, a narrow C */
	one(9, 33, 1537);    /* an odd K past one K block (768 pairs) */
	one(1, 1, 3072);
	one(3072, 1, 7);
	static const size_t fm[][3] = {{1, 1, 1}, {7, 17, 1}, {17, 7, 2}, {9, 33, 1537},
	                               {33, 100, 768}, {3, 50272, 17}, {64, 768, 600},
	                               {333, 17, 513}, {128, 64, 511}};
	for (size_t i = 0; i < sizeof fm / sizeof *fm; i++)
		forms(fm[i][0], fm[i][1], fm[i][2]);
	/* the transposed forms (the backward's dW = dY^T X, dX = dY W, attention's dS^T Q) on
	 * odd shapes against the double reference */
	static const size_t ts[] = {1, 7, 17, 768, 3072};
	for (size_t a = 0; a < 5; a++)
		for (size_t b = 0; b < 5; b++)
			for (size_t c = 0; c < 5; c++)
				if (ts[a] * ts[b] * ts[c] <= 17 * 768 * 768)
					for (int f = 1; f < 4; f++)
						one_t(ts[a], ts[b], ts[c], f & 1, f >> 1);
	one_t(64, 768, 3072, 1, 1);    /* wgrad rows of a layer: K = tokens, past a K block */
	one_t(3072, 7, 768, 1, 1);
	threads_same(64, 768, 600);  /* 24 column panels */
	threads_same(333, 17, 513);  /* one panel: row blocks */
	threads_same(1, 3072, 768);  /* decoding: one row */
	return unit_done("test_gemm_bf16");
}
