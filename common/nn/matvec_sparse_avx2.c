/* matvec_sparse_avx2.c: matvec.c's row kernels for sparse-kept matrices (N:M, bitmap) on
 * AVX2 + FMA + F16C: matvec_sparse_isa.h compiled over matvec_avx2.h's macros and the
 * position and window helpers here. */
#include "matvec_avx2.h"

#ifdef MV_X86
/* sparse rows (matvec_sparse_isa.h): 8 positions of pb bits from w */
static inline __attribute__((always_inline)) AVX2_T __m256i pos_avx2(uint64_t w, __m256i sh, int pb)
{
	return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)(uint32_t)w), sh),
	                        _mm256_set1_epi32((1 << pb) - 1));
}

/* x at lanes idx < 16: the two vectors' permutes, picked by idx's bit 3 */
static inline __attribute__((always_inline)) AVX2_T __m256 win2_avx2(const float *xw, __m256i idx)
{
	__m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(xw), idx);
	__m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(xw + 8), idx);
	return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

/* 2:4 (window mode 5): x at lanes idx from a block of 16 inputs reordered by pair_x, so
 * that each 128-bit half of the block's two vectors holds the four inputs of the groups its
 * lanes read: in-lane permutes of the two's halves and a fixed blend, where VWIN2's two
 * lane-crossing permutes needed a shift and a variable blend to pick each lane's vector */
static inline __attribute__((always_inline)) AVX2_T __m256 winp_avx2(const float *xw, __m256i idx)
{
	__m256 a = _mm256_permutevar_ps(_mm256_loadu_ps(xw), idx);     /* groups 0 and 2 */
	__m256 b = _mm256_permutevar_ps(_mm256_loadu_ps(xw + 8), idx); /* groups 1 and 3 */
	return _mm256_blend_ps(a, b, 0xcc);
}

/* lane j of a byte's bitmap chunk takes kept value bm_lane8[mask][j] & 7 (the set bits
 * below j), and keeps it where the lane's sign bit is set (bit j of the mask): one load
 * gives the permute its indices and the blend its mask (vpermps reads only the low three
 * bits), where widening byte indices and testing the mask's bits took five operations.
 * f16 and bf16 values move as bytes instead, by one in-lane vpshufb whose table says, per
 * mask, which bytes of the next values land in lane j, and 0x80 (a zero byte) for the
 * lanes the mask drops: f16 expands into its 8 halves and then converts; bf16 lands in
 * each f32 lane's high half, so it needs no conversion. Both skip the lane-crossing
 * permute and the blend (Zen 3, f16 at 50 %, in cache: 7.8 -> 9.4 G weights/s, against
 * dense f16's 15). */
static int32_t bm_lane8[256][8];
static uint8_t bm_shuf16[256][16], bm_shufbf[256][32];

static void bm_tables_init(void)
{
	for (unsigned mk = 0; mk < 256; mk++)
		for (unsigned j = 0; j < 8; j++) {
			const unsigned k = (unsigned)__builtin_popcount(mk & ((1u << j) - 1)), on = mk >> j & 1u;
			bm_shuf16[mk][2 * j] = on ? (uint8_t)(2 * k) : 0x80;
			bm_shuf16[mk][2 * j + 1] = on ? (uint8_t)(2 * k + 1) : 0x80;
			/* bf16: both 128-bit halves hold the same 16 bytes (a broadcast) */
			bm_shufbf[mk][4 * j] = bm_shufbf[mk][4 * j + 1] = 0x80;
			bm_shufbf[mk][4 * j + 2] = on ? (uint8_t)(2 * k) : 0x80;
			bm_shufbf[mk][4 * j + 3] = on ? (uint8_t)(2 * k + 1) : 0x80;
			bm_lane8[mk][j] = (int32_t)(k | on << 31);
		}
}

/* 8 weights of a bitmap chunk: the next popcount(mk) values at val, in mk's lanes; whole:
 * 8 values may be read at val (else the payload's last ones, copied out first) */
static inline __attribute__((always_inline)) AVX2_T __m256 bm_avx2(const uint8_t *val, enum lm_dtype dt,
                                                                  unsigned mk, int whole)
{
	const size_t es = dt == LM_F32 ? 4 : 2;
	uint8_t buf[32];
	const uint8_t *p = val;
	if (!whole) { /* the payload's last values: no read past it */
		memset(buf, 0, sizeof buf);
		memcpy(buf, val, (size_t)__builtin_popcount(mk) * es);
		p = buf;
	}
	if (dt != LM_F32) {
		const __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
		if (dt == LM_F16)
			return _mm256_cvtph_ps(_mm_shuffle_epi8(h, _mm_loadu_si128((const __m128i *)bm_shuf16[mk])));
		return _mm256_castsi256_ps(_mm256_shuffle_epi8(_mm256_broadcastsi128_si256(h),
		                                               _mm256_loadu_si256((const __m256i *)bm_shufbf[mk])));
	}
	__m256 f = _mm256_loadu_ps((const float *)(const void *)p);
	__m256i lane = _mm256_loadu_si256((const __m256i *)(const void *)bm_lane8[mk]);
	return _mm256_blendv_ps(_mm256_setzero_ps(), _mm256_permutevar8x32_ps(f, lane),
	                        _mm256_castsi256_ps(lane));
}

#define VLOADI(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define VADDI(a, b) _mm256_add_epi32(a, b)
#define VPOS(w, sh, pb) pos_avx2(w, sh, pb)
#define VPOSW(w, sh, pb) _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)(w)), sh), \
                                          _mm256_set1_epi32((1 << (pb)) - 1))
#define VWIN2(xw, idx) win2_avx2(xw, idx)
#define VGATHER(xw, idx) _mm256_i32gather_ps(xw, idx, 4)
#define VWIN4(xw, idx) VGATHER(xw, idx)
#define VWINP(xw, idx) winp_avx2(xw, idx)
#define VPOSR(w, sh) _mm256_srlv_epi32(_mm256_set1_epi32((int)(w)), sh)
#define VBM(val, dt, mk, end) bm_avx2(val, dt, mk, (size_t)((end) - (val)) >= 8 * (dt == LM_F32 ? 4u : 2u))
#define VBMW(val, dt, mk) bm_avx2(val, dt, mk, 1)
#include "matvec_sparse_isa.h"

mv_rows_fn *lm_mv_sparse_avx2(struct mv_args *a)
{
	if (a->sv.l.kind == LM_LAYOUT_BITMAP && !bm_lane8[255][7])
		bm_tables_init(); /* before the threads start */
	return sparse_rows_for_avx2(a);
}
#endif
