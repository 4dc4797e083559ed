/* matvec_avx2.c: matvec.c's dense row kernels (f32, f16, bf16, packed codes) for AVX2 + FMA +
 * F16C: matvec_isa.h compiled over matvec_avx2.h's macros. */
#include "matvec_avx2.h"

#ifdef MV_X86
#include "matvec_isa.h"

/* pair4_avx2 reads x split in blocks of 16 */
const struct mv_dense_set lm_mv_dense_avx2 = {rows_f32_avx2, rows_f16_avx2, rows_bf16_avx2,
                                              rows_q2_avx2, rows_q3_avx2, rows_q4_avx2,
                                              rows_q8_avx2, 16};
#endif
