/* matvec_isa.h: the dense row loops of matvec.c, written once over a few vector macros and
 * compiled once per instruction set (matvec_avx2.c and matvec_avx512.c include this file
 * after matvec_avx2.h or matvec_avx512.h has defined them).
 *
 * What the includer defines: MV(name) (the set's suffix), MV_TARGET (its target
 * attribute), VL (float lanes), the types vf / vi (VL floats / VL int32), and
 *   VZERO() VSET1(f) VLOADX(p) VFMA(a, b, c) = a*b+c  VADD(a, b)  VHSUM(v) -> float
 *   VF16(p) VBF16(p): VL stored halves -> vf    VU8(p): VL bytes -> vi
 *   VCODES(p, b): the VL codes of b (2, 3, 4) bits starting at byte p, masked -> vi
 *   VQF(q, z): (float)(q - z) for vi q and int32 vector z (VZI(z) makes one)
 *   VPAIR4(p, z, &w0, &w1): the 2 VL 4-bit codes of the VL bytes at p, minus the zero
 *     point z, as two vf: the even codes, then the odd ones (x comes split to match)
 * and optionally VQUAD3(p, z, &w0, &w1, &w2, &w3): the 4 VL 3-bit codes from byte p of a
 *     group's codes, minus z, in order (p - 4 may be read: a group's header precedes them),
 *     and VQUAD2 the same for 2-bit codes
 * Tails (IN or a per-row group not a multiple of VL) are summed in scalar code. */

/* ---- f32 / f16 / bf16 rows ---- */

/* VL weights of row w from element i, of the (constant, after inlining) dtype dt */
#define MV_LOADW(dt, w, i)                                                             \
	((dt) == LM_F32 ? VLOADX((const float *)(w) + (i))                               \
	                : (dt) == LM_F16 ? VF16((const uint16_t *)(w) + (i))             \
	                                 : VBF16((const uint16_t *)(w) + (i)))

/* s[n] = x[n] · w for nb rows of x (stride IN): four chains per row of x while nb <= 2, two
 * while they fit the registers, so an FMA's latency does not bound one row's sum */
static inline __attribute__((always_inline)) MV_TARGET void
MV(dot_float)(float *s, const void *w, enum lm_dtype dt, const float *x, size_t IN, size_t nb)
{
	vf a0[MV_NB], a1[MV_NB], a2[MV_NB], a3[MV_NB];
	size_t i = 0;
	for (size_t n = 0; n < nb; n++)
		a0[n] = a1[n] = a2[n] = a3[n] = VZERO();
	for (; nb <= 2 && i + 4 * VL <= IN; i += 4 * VL) { /* four chains while they fit */
		vf w0 = MV_LOADW(dt, w, i), w1 = MV_LOADW(dt, w, i + VL);
		vf w2 = MV_LOADW(dt, w, i + 2 * VL), w3 = MV_LOADW(dt, w, i + 3 * VL);
		for (size_t n = 0; n < nb; n++) {
			a0[n] = VFMA(w0, VLOADX(x + n * IN + i), a0[n]);
			a1[n] = VFMA(w1, VLOADX(x + n * IN + i + VL), a1[n]);
			a2[n] = VFMA(w2, VLOADX(x + n * IN + i + 2 * VL), a2[n]);
			a3[n] = VFMA(w3, VLOADX(x + n * IN + i + 3 * VL), a3[n]);
		}
	}
	for (; i + 2 * VL <= IN; i += 2 * VL) {
		vf w0 = MV_LOADW(dt, w, i), w1 = MV_LOADW(dt, w, i + VL);
		for (size_t n = 0; n < nb; n++) {
			a0[n] = VFMA(w0, VLOADX(x + n * IN + i), a0[n]);
			a1[n] = VFMA(w1, VLOADX(x + n * IN + i + VL), a1[n]);
		}
	}
	for (; i + VL <= IN; i += VL) {
		vf w0 = MV_LOADW(dt, w, i);
		for (size_t n = 0; n < nb; n++)
			a0[n] = VFMA(w0, VLOADX(x + n * IN + i), a0[n]);
	}
	for (size_t n = 0; n < nb; n++)
		s[n] = VHSUM(VADD(VADD(a0[n], a1[n]), VADD(a2[n], a3[n])));
	for (; i < IN; i++) {
		float wi = mv_scalar_w(w, dt, i);
		for (size_t n = 0; n < nb; n++)
			s[n] += wi * x[n * IN + i];
	}
}

/* ---- packed rows ---- */

/* VL codes of `bits` (constant after inlining) from element i of a group's code bytes c;
 * i is a multiple of VL, so the codes start on a byte */
#define MV_CODES(bits, c, i)                                                           \
	((bits) == 8 ? VU8((c) + (i)) : VCODES((c) + (i) * (size_t)(bits) / 8, (bits)))

/* s[n] = x[n] · row for nb rows of x, row packed in ng groups of G codes of `bits`, gb bytes
 * per group: per group sum (q - zero) * x in vectors, then one multiply by the scale */
static inline __attribute__((always_inline)) MV_TARGET void
MV(dot_packed)(float *s, const uint8_t *row, int bits, size_t G, size_t ng, size_t gb,
               const float *x, size_t IN, size_t nb)
{
	vf t[MV_NB];
	float st[MV_NB];
	for (size_t n = 0; n < nb; n++)
		t[n] = VZERO(), st[n] = 0.0f;
	for (size_t g = 0; g < ng; g++) {
		const uint8_t *grp = row + g * gb, *c = grp + 4;
		const float *xg = x + g * G;
		float scale;
		int zero;
		mv_grid_f16c(grp, &scale, &zero);
		vi z = VZI(zero);
		vf a0[MV_NB], a1[MV_NB], a2[MV_NB], a3[MV_NB];
		size_t i = 0;
		for (size_t n = 0; n < nb; n++)
			a0[n] = a1[n] = a2[n] = a3[n] = VZERO();
		/* four chains while nb <= 2, as dot_float: with two, an FMA's latency bounded a
		 * decode step of the 3-bit rows (AVX2 on Zen 3, one row of x, in cache: 4.6 -> 7
		 * G weights/s; 4 and 8 bits unchanged there) */
		for (; nb <= 2 && i + 4 * VL <= G; i += 4 * VL) {
			vf w0, w1, w2, w3;
			if (bits == 4) {
				VPAIR4(c + i / 2, z, &w0, &w1);
				VPAIR4(c + (i + 2 * VL) / 2, z, &w2, &w3);
#ifdef VQUAD3
			} else if (bits == 3) {
				VQUAD3(c + i * 3 / 8, z, &w0, &w1, &w2, &w3);
			} else if (bits == 2) {
				VQUAD2(c + i / 4, z, &w0, &w1, &w2, &w3);
#endif
			} else {
				w0 = VQF(MV_CODES(bits, c, i), z);
				w1 = VQF(MV_CODES(bits, c, i + VL), z);
				w2 = VQF(MV_CODES(bits, c, i + 2 * VL), z);
				w3 = VQF(MV_CODES(bits, c, i + 3 * VL), z);
			}
			for (size_t n = 0; n < nb; n++) {
				const float *xn = xg + n * IN + i;
				a0[n] = VFMA(w0, VLOADX(xn), a0[n]);
				a1[n] = VFMA(w1, VLOADX(xn + VL), a1[n]);
				a2[n] = VFMA(w2, VLOADX(xn + 2 * VL), a2[n]);
				a3[n] = VFMA(w3, VLOADX(xn + 3 * VL), a3[n]);
			}
		}
		for (; i + 2 * VL <= G; i += 2 * VL) {
			vf w0, w1;
			if (bits == 4) { /* even codes, odd codes: x comes split (matvec.c) */
				VPAIR4(c + i / 2, z, &w0, &w1);
			} else {
				w0 = VQF(MV_CODES(bits, c, i), z);
				w1 = VQF(MV_CODES(bits, c, i + VL), z);
			}
			for (size_t n = 0; n < nb; n++) {
				/* a second chain while the registers hold it */
				if (nb <= 2) {
					a0[n] = VFMA(w0, VLOADX(xg + n * IN + i), a0[n]);
					a1[n] = VFMA(w1, VLOADX(xg + n * IN + i + VL), a1[n]);
				} else {
					a0[n] = VFMA(w0, VLOADX(xg + n * IN + i), a0[n]);
					a0[n] = VFMA(w1, VLOADX(xg + n * IN + i + VL), a0[n]);
				}
			}
		}
		for (; i + VL <= G; i += VL) {
			vf w0 = VQF(MV_CODES(bits, c, i), z);
			for (size_t n = 0; n < nb; n++)
				a0[n] = VFMA(w0, VLOADX(xg + n * IN + i), a0[n]);
		}
		vf sv = VSET1(scale);
		for (size_t n = 0; n < nb; n++)
			t[n] = VFMA(sv, VADD(VADD(a0[n], a1[n]), VADD(a2[n], a3[n])), t[n]);
		for (; i < G; i++) { /* only per-row groups (G = IN) have a tail */
			float wi = scale * (float)(mv_code(c, i, bits) - zero);
			for (size_t n = 0; n < nb; n++)
				st[n] += wi * xg[n * IN + i];
		}
	}
	for (size_t n = 0; n < nb; n++)
		s[n] = VHSUM(t[n]) + st[n];
}

/* ---- the row kernels of the table in matvec.c ---- */

/* rows [o0, o1) of the job for nb rows of x from x, into y: nb, dt and bits become constants
 * in each instance below, so the loops above are unrolled for them */
static inline __attribute__((always_inline)) MV_TARGET void
MV(rows_float_nb)(const struct mv_args *a, const float *x, float *y, size_t o0, size_t o1,
                  enum lm_dtype dt, size_t nb)
{
	const size_t es = dt == LM_F32 ? 4 : 2;
	for (size_t o = o0; o < o1; o++) {
		float s[MV_NB];
		MV(dot_float)(s, (const char *)a->w + o * a->IN * es, dt, x, a->IN, nb);
		mv_store(y, a->ldy, o - a->r0, s, nb, a->beta);
	}
}

static inline __attribute__((always_inline)) MV_TARGET void
MV(rows_packed_nb)(const struct mv_args *a, const float *x, float *y, size_t o0, size_t o1,
                   int bits, size_t nb)
{
	for (size_t o = o0; o < o1; o++) {
		float s[MV_NB];
		MV(dot_packed)(s, (const uint8_t *)a->w + o * a->rb, bits, a->G, a->ng, a->gb, x,
		               a->IN, nb);
		mv_store(y, a->ldy, o - a->r0, s, nb, a->beta);
	}
}

#define MV_NB_SWITCH(call)                                                              \
	switch (nb) {                                                                  \
	case 1: call(1); break;                                                        \
	case 2: call(2); break;                                                        \
	case 3: call(3); break;                                                        \
	default: call(4); break;                                                       \
	}

static MV_TARGET void MV(rows_f32)(const struct mv_args *a, const float *x, float *y,
                                   size_t nb, size_t o0, size_t o1)
{
#define CALL(k) MV(rows_float_nb)(a, x, y, o0, o1, LM_F32, k)
	MV_NB_SWITCH(CALL)
#undef CALL
}

static MV_TARGET void MV(rows_f16)(const struct mv_args *a, const float *x, float *y,
                                   size_t nb, size_t o0, size_t o1)
{
#define CALL(k) MV(rows_float_nb)(a, x, y, o0, o1, LM_F16, k)
	MV_NB_SWITCH(CALL)
#undef CALL
}

static MV_TARGET void MV(rows_bf16)(const struct mv_args *a, const float *x, float *y,
                                    size_t nb, size_t o0, size_t o1)
{
#define CALL(k) MV(rows_float_nb)(a, x, y, o0, o1, LM_BF16, k)
	MV_NB_SWITCH(CALL)
#undef CALL
}

#define MV_ROWS_Q(b)                                                                    \
	static MV_TARGET void MV(rows_q##b)(const struct mv_args *a, const float *x, float *y, \
	                                    size_t nb, size_t o0, size_t o1)              \
	{                                                                              \
		switch (nb) {                                                          \
		case 1: MV(rows_packed_nb)(a, x, y, o0, o1, b, 1); break;              \
		case 2: MV(rows_packed_nb)(a, x, y, o0, o1, b, 2); break;              \
		case 3: MV(rows_packed_nb)(a, x, y, o0, o1, b, 3); break;              \
		default: MV(rows_packed_nb)(a, x, y, o0, o1, b, 4); break;             \
		}                                                                      \
	}
MV_ROWS_Q(2)
MV_ROWS_Q(3)
#ifndef MV_OWN_Q4 /* a set with 4-bit rows of its own (AVX-512's table) */
MV_ROWS_Q(4)
#endif
MV_ROWS_Q(8)
#undef MV_ROWS_Q
#undef MV_NB_SWITCH
#undef MV_LOADW
#undef MV_CODES
