/* matvec_avx2.c: matvec.c's dense row kernels (f32, f16, bf16, packed codes) for AVX2 + FMA +
 * F16C: matvec_isa.h compiled over matvec_avx2.h's macros. */
#include "matvec_avx2.h"

#ifdef MV_X86
#include "matvec_isa.h"

mv_rows_fn *lm_mv_dense_avx2(struct mv_args *a)
{
	switch (a->dt) {
	case LM_F32: return rows_f32_avx2;
	case LM_F16: return rows_f16_avx2;
	case LM_BF16: return rows_bf16_avx2;
	default: break;
	}
	switch (a->bits) {
	case 2: return rows_q2_avx2;
	case 3: return rows_q3_avx2;
	case 4: a->xsplit = 16; return rows_q4_avx2; /* pair4_avx2 reads x split */
	case 8: return rows_q8_avx2;
	default: return NULL;
	}
}
#endif
