/* matvec_sparse_isa.h: the row loops of matvec.c for matrices kept in a sparse layout
 * (sparse.h: N:M of f32/f16/bf16 values or of packed codes, bitmap of values), written
 * once over matvec_isa.h's vector macros and compiled once per instruction set.
 *
 * What the includer defines on top of matvec_isa.h's macros:
 *   VLOADI(p): VL int32 -> vi        VADDI(a, b): a + b (int32 lanes)
 *   VPOS(w, sh, pb): VL positions of pb bits from the integer w (lane j's at bit j*pb;
 *     sh is the vector of (j % 8) * pb, mv_args.spsh)
 *   VPOSW(w, shw, pb): the same from a 32-bit w holding all VL (VL * pb <= 32; shw is the
 *     vector of j * pb, mv_args.spshw)
 *   VWIN2(xw, idx) / VWIN4(xw, idx): xw[idx[j]] per lane, idx < 2 VL / < 4 VL, from that
 *     many floats at xw loaded whole (permutes in registers)
 *   VGATHER(xw, idx): the same for any idx (a hardware gather)
 *   VWINP(xw, idx) (optional): 2:4 with VL = 8 from x reordered by blocks of 16 inputs
 *     (matvec.c's pair_x): lane j's input (j / 2) * 4 + idx[j] % 4 by two in-lane permutes
 *     and a blend, window mode 5; with it VPOSR(w, shw): VPOSW without the mask (the
 *     permutes read only each lane's two low bits)
 *   VBM(val, dt, mask, end): VL weights of a bitmap chunk: lane j is the next kept value
 *     where bit j of mask is set, 0 elsewhere; reads no byte at or past end
 *   VBMW(val, dt, mask): the same where 64 bytes at val may be read
 *   VQ4LUT(scale, zero), VQ4W(p, lut) (optional): a 4-bit group's 16 values scale *
 *     (q - zero) in one register, and VL consecutive 4-bit codes at p looked up in it
 *
 * N:M: a chunk of VL kept values (VL a multiple of n) covers VL/n groups of m inputs, the
 * window of x at k/n*m; each value's input is (j/n)*m + its position (mv_args.spbase +
 * the positions), gathered from the window while it is 2 or 4 vectors wide (2:4, 1:4, 4:8,
 * 2:8), by a hardware gather otherwise. Bitmap: VL inputs at a time, the kept values
 * expanded into their lanes by the map's VL bits (nothing for an empty chunk), then one
 * FMA against x as it is. Tails (kept values past the last whole chunk, inputs past the
 * last whole vector) are summed in scalar code, as the dense loops do. */

#define SP_LOADW(dt, w, i)                                                             \
	((dt) == LM_F32 ? VLOADX((const float *)(const void *)(w) + (i))                 \
	                : (dt) == LM_F16 ? VF16((const uint16_t *)(const void *)(w) + (i)) \
	                                 : VBF16((const uint16_t *)(const void *)(w) + (i)))

#define SP_CODES(bits, c, i)                                                           \
	((bits) == 8 ? VU8((c) + (i)) : VCODES((c) + (i) * (size_t)(bits) / 8, (bits)))

/* x at the window xw for lanes idx, by the window's width (a constant after inlining) */
#ifdef VWINP
#define SP_WINP(xw, idx) VWINP(xw, idx)
#define SP_POSW(wmode, w, shw, pb) ((wmode) == 5 ? VPOSR(w, shw) : VPOSW(w, shw, pb))
#else
#define SP_WINP(xw, idx) VWIN2(xw, idx) /* never chosen: mode 5 needs VWINP */
#define SP_POSW(wmode, w, shw, pb) VPOSW(w, shw, pb)
#endif
#define SP_WIN(wmode, xw, idx)                                                          \
	((wmode) == 2 ? VWIN2(xw, idx) : (wmode) == 4 ? VWIN4(xw, idx)                    \
	              : (wmode) == 5 ? SP_WINP(xw, idx) : VGATHER(xw, idx))
/* lane j's input in the window: its group's start plus its position (mode 5 reads only the
 * position's two bits, the start being where its permute looks) */
#define SP_IDX(wmode, base, p) ((wmode) == 5 ? (p) : VADDI(base, p))

/* s[n] = x[n] · row o for a float N:M row. A chunk's positions start k * pb / 8 bytes into
 * the row's (VL * pb is whole bytes), at the row's bit offset s0: where the row's positions
 * and 8 bytes more lie before the payload's end (every row but the last few), each chunk's
 * are one plain load, no bounds check; and where they fit 32 bits and the row starts on a
 * byte (2:4 when the inputs are a multiple of 8, as OPT's), lane j shifts its position out
 * of that one word (VPOSW), no second half to insert, four chunks per step on four chains
 * while nb <= 2 (two otherwise, and two per step without VPOSW), so an FMA's latency does
 * not bound the sum. */
static inline __attribute__((always_inline)) MV_TARGET void
MV(dot_nm)(float *s, const struct mv_args *a, size_t o, const float *x, size_t nb,
           enum lm_dtype dt, int wmode)
{
	const struct lm_sparse_view *v = &a->sv;
	const size_t es = dt == LM_F32 ? 4 : 2, n = (size_t)v->l.n, m = (size_t)v->l.m;
	const size_t IN = a->IN, kr = v->kr, pb = (size_t)v->pb;
	const uint8_t *val = v->vals + o * kr * es;
	const size_t bit0 = o * kr * pb;
	const uint8_t *pp = v->pos + bit0 / 8;
	const int s0 = (int)(bit0 % 8);
	const int fast = (size_t)(v->end - pp) >= kr * pb / 8 + 9;
	/* x's window moves VL / n groups of m per chunk: no division in the loop (k / n * m, a
	 * 64-bit divide per chunk, was its slowest step) */
	const size_t xstep = VL / n * m, pstep = VL * pb / 8;
	const vi base = VLOADI(a->spbase), sh = VLOADI(a->spsh);
	const float *xw = x;
	vf acc[MV_NB], acc1[MV_NB], acc2[MV_NB], acc3[MV_NB];
	size_t k = 0;
	for (size_t j = 0; j < nb; j++)
		acc[j] = acc1[j] = acc2[j] = acc3[j] = VZERO();
	if (fast && !s0 && VL * pb <= 32) {
		const vi shw = VLOADI(a->spshw);
		for (; k + 4 * VL <= kr; k += 4 * VL, xw += 4 * xstep) {
			const uint8_t *pk = pp + k * pb / 8;
			uint32_t p0, p1, p2, p3;
			memcpy(&p0, pk, 4), memcpy(&p1, pk + pstep, 4);
			memcpy(&p2, pk + 2 * pstep, 4), memcpy(&p3, pk + 3 * pstep, 4);
			vf w0 = SP_LOADW(dt, val, k), w1 = SP_LOADW(dt, val, k + VL);
			vf w2 = SP_LOADW(dt, val, k + 2 * VL), w3 = SP_LOADW(dt, val, k + 3 * VL);
			vi i0 = SP_IDX(wmode, base, SP_POSW(wmode, p0, shw, (int)pb));
			vi i1 = SP_IDX(wmode, base, SP_POSW(wmode, p1, shw, (int)pb));
			vi i2 = SP_IDX(wmode, base, SP_POSW(wmode, p2, shw, (int)pb));
			vi i3 = SP_IDX(wmode, base, SP_POSW(wmode, p3, shw, (int)pb));
			for (size_t j = 0; j < nb; j++) {
				acc[j] = VFMA(w0, SP_WIN(wmode, xw + j * IN, i0), acc[j]);
				acc1[j] = VFMA(w1, SP_WIN(wmode, xw + xstep + j * IN, i1), acc1[j]);
				if (nb <= 2) { /* four chains while the registers hold them */
					acc2[j] = VFMA(w2, SP_WIN(wmode, xw + 2 * xstep + j * IN, i2), acc2[j]);
					acc3[j] = VFMA(w3, SP_WIN(wmode, xw + 3 * xstep + j * IN, i3), acc3[j]);
				} else {
					acc[j] = VFMA(w2, SP_WIN(wmode, xw + 2 * xstep + j * IN, i2), acc[j]);
					acc1[j] = VFMA(w3, SP_WIN(wmode, xw + 3 * xstep + j * IN, i3), acc1[j]);
				}
			}
		}
	} else if (fast) {
		for (; k + 2 * VL <= kr; k += 2 * VL, xw += 2 * xstep) {
			const uint8_t *pk = pp + k * pb / 8;
			uint64_t p0, p1;
			memcpy(&p0, pk, 8), memcpy(&p1, pk + pstep, 8);
			vf w0 = SP_LOADW(dt, val, k), w1 = SP_LOADW(dt, val, k + VL);
			vi i0 = VADDI(base, VPOS(p0 >> s0, sh, (int)pb)), i1 = VADDI(base, VPOS(p1 >> s0, sh, (int)pb));
			for (size_t j = 0; j < nb; j++) {
				acc[j] = VFMA(w0, SP_WIN(wmode, xw + j * IN, i0), acc[j]);
				acc1[j] = VFMA(w1, SP_WIN(wmode, xw + xstep + j * IN, i1), acc1[j]);
			}
		}
	}
	for (; k + VL <= kr; k += VL, xw += xstep) {
		vf w = SP_LOADW(dt, val, k);
		vi idx = VADDI(base, VPOS(lm_sparse_bits(v->pos, bit0 + k * pb, VL * (int)pb, v->end),
		                          sh, (int)pb));
		for (size_t j = 0; j < nb; j++)
			acc[j] = VFMA(w, SP_WIN(wmode, xw + j * IN, idx), acc[j]);
	}
	for (size_t j = 0; j < nb; j++)
		s[j] = VHSUM(VADD(VADD(acc[j], acc1[j]), VADD(acc2[j], acc3[j])));
	for (; k < kr; k++) {
		size_t col = k / n * m + lm_sparse_bits(v->pos, bit0 + k * pb, (int)pb, v->end);
		float wi = mv_scalar_w(val, dt, k);
		for (size_t j = 0; j < nb; j++)
			s[j] += wi * x[j * IN + col];
	}
}

/* one step of the N:M-codes loops below: two chunks of weights w0, w1 (values already),
 * their positions one 32-bit load each at pk and pk + VL pb / 8, x's window at xw, into
 * the chains acc and acc1 */
static inline __attribute__((always_inline)) MV_TARGET void
MV(nmq_step2)(vf *acc, vf *acc1, const struct mv_args *a, const uint8_t *pk, vf w0, vf w1,
              const float *xw, size_t nb, int wmode)
{
	const size_t pb = (size_t)a->sv.pb, IN = a->IN;
	const size_t xstep = VL / (size_t)a->sv.l.n * (size_t)a->sv.l.m;
	const vi base = VLOADI(a->spbase), shw = VLOADI(a->spshw);
	uint32_t p0, p1;
	memcpy(&p0, pk, 4), memcpy(&p1, pk + VL * pb / 8, 4);
	vi i0 = SP_IDX(wmode, base, SP_POSW(wmode, p0, shw, (int)pb));
	vi i1 = SP_IDX(wmode, base, SP_POSW(wmode, p1, shw, (int)pb));
	for (size_t j = 0; j < nb; j++) {
		acc[j] = VFMA(w0, SP_WIN(wmode, xw + j * IN, i0), acc[j]);
		acc1[j] = VFMA(w1, SP_WIN(wmode, xw + xstep + j * IN, i1), acc1[j]);
	}
}

/* s[n] = x[n] · row o for N:M of packed codes: per quant group sum (q - zero) * x over its
 * kept codes in vectors, then one multiply by the scale (a dropped code is the zero point:
 * 0 in the dense row, nothing here) */
static inline __attribute__((always_inline)) MV_TARGET void
MV(dot_nmq)(float *s, const struct mv_args *a, size_t o, const float *x, size_t nb, int bits,
            int wmode)
{
	const struct lm_sparse_view *v = &a->sv;
	const size_t n = (size_t)v->l.n, m = (size_t)v->l.m, IN = a->IN, pb = (size_t)v->pb;
	const size_t kc = v->kc, G = v->G, xstep = VL / n * m;
	const vi base = VLOADI(a->spbase), sh = VLOADI(a->spsh);
#ifdef VQ4W
	/* 4-bit codes in groups of whole chunk pairs whose positions are one 32-bit load each (2:4
	 * with groups of 128, as lm-quant writes them): the whole row on two chains, each group
	 * adding its table-scaled weights straight into them. Per group a header and a table,
	 * no accumulators to clear and fold: that set-up per group of four chunks made 2:4 + q4
	 * slower than dense q4. */
	const size_t rowb = v->ngr * kc * pb; /* the row's position bits */
	const uint8_t *pr = v->pos + o * rowb / 8;
	if (bits == 4 && VL * pb <= 32 && kc % (2 * VL) == 0 && o * rowb % 8 == 0 &&
	    (size_t)(v->end - pr) >= rowb / 8 + 4) {
		const size_t pstep = VL * pb / 8;
		vf acc[MV_NB], acc1[MV_NB];
		for (size_t j = 0; j < nb; j++)
			acc[j] = acc1[j] = VZERO();
		const float *xw = x; /* a group's chunks cover its G inputs: x runs on unbroken */
		for (size_t g = 0; g < v->ngr; g++) {
			const uint8_t *grp = v->vals + (o * v->ngr + g) * (4 + v->kb), *c = grp + 4;
			float scale;
			int zero;
			mv_grid_f16c(grp, &scale, &zero);
			const vf lut = VQ4LUT(scale, zero);
			for (size_t k = 0; k < kc; k += 2 * VL, xw += 2 * xstep, pr += 2 * pstep)
				MV(nmq_step2)(acc, acc1, a, pr, VQ4W(c + k / 2, lut), VQ4W(c + (k + VL) / 2, lut),
				              xw, nb, wmode);
		}
		for (size_t j = 0; j < nb; j++)
			s[j] = VHSUM(VADD(acc[j], acc1[j]));
		return;
	}
#endif
	vf t[MV_NB];
	float st[MV_NB];
	for (size_t j = 0; j < nb; j++)
		t[j] = VZERO(), st[j] = 0.0f;
	for (size_t g = 0; g < v->ngr; g++) {
		const size_t q = o * v->ngr + g, bit0 = q * kc * pb;
		const uint8_t *grp = v->vals + q * (4 + v->kb), *c = grp + 4;
		const float *xg = x + g * G;
		float scale;
		int zero;
		mv_grid_f16c(grp, &scale, &zero);
		vi z = VZI(zero);
#ifdef VQ4W
		/* 4-bit codes by table, as the dense q4 rows (the convert and subtract per chunk
		 * were a third of the loop): the weights come scaled, one rounding each as
		 * lm_q_value, so the group's sum takes no multiply at its end */
		const int lut4 = bits == 4;
		const vf lut = lut4 ? VQ4LUT(scale, zero) : VZERO();
#define SP_QW(k) (lut4 ? VQ4W(c + (k) / 2, lut) : VQF(SP_CODES(bits, c, k), z))
#else
		const int lut4 = 0;
#define SP_QW(k) VQF(SP_CODES(bits, c, k), z)
#endif
		vf acc[MV_NB];
		size_t k = 0;
		for (size_t j = 0; j < nb; j++)
			acc[j] = VZERO();
		const float *xw = xg; /* moves xstep per chunk: no divide per chunk */
		const uint8_t *pp = v->pos + bit0 / 8;
		if (bit0 % 8 == 0 && VL * pb <= 32 && (size_t)(v->end - pp) >= kc * pb / 8 + 4) {
			/* as dot_nm's fast loop: a chunk's positions are one 32-bit load (the group's
			 * start on a byte, 4 bytes inside the payload), two chunks per step on two
			 * chains; the general bit reader per chunk made 2:4+q4 slower than dense q4 */
			vf acc1[MV_NB];
			for (size_t j = 0; j < nb; j++)
				acc1[j] = VZERO();
			for (; k + 2 * VL <= kc; k += 2 * VL, xw += 2 * xstep)
				MV(nmq_step2)(acc, acc1, a, pp + k * pb / 8, SP_QW(k), SP_QW(k + VL), xw, nb,
				              wmode);
			for (size_t j = 0; j < nb; j++)
				acc[j] = VADD(acc[j], acc1[j]);
		}
		for (; k + VL <= kc; k += VL, xw += xstep) {
			vf w = SP_QW(k);
			vi idx = VADDI(base, VPOS(lm_sparse_bits(v->pos, bit0 + k * pb, VL * (int)pb, v->end),
			                          sh, (int)pb));
			for (size_t j = 0; j < nb; j++)
				acc[j] = VFMA(w, SP_WIN(wmode, xw + j * IN, idx), acc[j]);
		}
#undef SP_QW
		vf sv = VSET1(scale);
		for (size_t j = 0; j < nb; j++)
			t[j] = lut4 ? VADD(t[j], acc[j]) : VFMA(sv, acc[j], t[j]);
		for (; k < kc; k++) { /* groups whose kept codes are not whole vectors */
			size_t col = k / n * m + lm_sparse_bits(v->pos, bit0 + k * pb, (int)pb, v->end);
			float wi = scale * (float)(mv_code(c, k, bits) - zero);
			for (size_t j = 0; j < nb; j++)
				st[j] += wi * xg[j * IN + col];
		}
	}
	for (size_t j = 0; j < nb; j++)
		s[j] = VHSUM(t[j]) + st[j];
}

/* s[n] = x[n] · row o for a bitmap row. Where the row's map starts on a byte and 64 bytes
 * follow its last value (every row but the payload's last few: the map comes after the
 * values), several chunks per step from one read of their map bits, on up to four chains
 * (as dot_nm), with no test for an empty chunk or the payload's end: one chain ran at
 * under a third of dense f16's speed, bound by its FMA latency and the chunk's branches. */
static inline __attribute__((always_inline)) MV_TARGET void
MV(dot_bm)(float *s, const struct mv_args *a, size_t o, const float *x, size_t nb, enum lm_dtype dt)
{
	const struct lm_sparse_view *v = &a->sv;
	const size_t es = dt == LM_F32 ? 4 : 2, IN = a->IN, bit0 = o * IN;
	const uint8_t *val = v->vals + v->rowoff[o] * es;
	const int aligned = bit0 % 8 == 0;
	const int whole = aligned && v->end - (v->vals + v->rowoff[o + 1] * es) >= 64;
	vf acc[MV_NB], acc1[MV_NB], acc2[MV_NB], acc3[MV_NB];
	size_t i = 0;
	for (size_t j = 0; j < nb; j++)
		acc[j] = acc1[j] = acc2[j] = acc3[j] = VZERO();
	for (; whole && i + 4 * VL <= IN; i += 4 * VL) {
		uint64_t mw = 0; /* 4 VL bits: VL / 2 bytes of the row's map */
		memcpy(&mw, v->pos + (bit0 + i) / 8, VL / 2);
		const uint64_t lo = ((uint64_t)1 << VL) - 1;
		const unsigned m0 = (unsigned)(mw & lo), m1 = (unsigned)(mw >> VL & lo);
		const unsigned m2 = (unsigned)(mw >> 2 * VL & lo), m3 = (unsigned)(mw >> 3 * VL);
		const uint8_t *val1 = val + (size_t)__builtin_popcount(m0) * es;
		const uint8_t *val2 = val1 + (size_t)__builtin_popcount(m1) * es;
		const uint8_t *val3 = val2 + (size_t)__builtin_popcount(m2) * es;
		vf w0 = VBMW(val, dt, m0), w1 = VBMW(val1, dt, m1);
		vf w2 = VBMW(val2, dt, m2), w3 = VBMW(val3, dt, m3);
		val += (size_t)__builtin_popcountll(mw) * es; /* one add on the chain of steps */
		for (size_t j = 0; j < nb; j++) {
			acc[j] = VFMA(w0, VLOADX(x + j * IN + i), acc[j]);
			acc1[j] = VFMA(w1, VLOADX(x + j * IN + i + VL), acc1[j]);
			if (nb <= 2) { /* four chains while the registers hold them */
				acc2[j] = VFMA(w2, VLOADX(x + j * IN + i + 2 * VL), acc2[j]);
				acc3[j] = VFMA(w3, VLOADX(x + j * IN + i + 3 * VL), acc3[j]);
			} else {
				acc[j] = VFMA(w2, VLOADX(x + j * IN + i + 2 * VL), acc[j]);
				acc1[j] = VFMA(w3, VLOADX(x + j * IN + i + 3 * VL), acc1[j]);
			}
		}
	}
	for (; i + VL <= IN; i += VL) {
		unsigned mk;
		if (aligned) { /* the row's bits start on a byte: VL / 8 of its bytes */
			uint16_t b16 = 0;
			memcpy(&b16, v->pos + (bit0 + i) / 8, VL / 8);
			mk = b16;
		} else {
			mk = (unsigned)lm_sparse_bits(v->pos, bit0 + i, VL, v->end);
		}
		if (!mk)
			continue;
		vf w = VBM(val, dt, mk, v->end);
		val += (size_t)__builtin_popcount(mk) * es;
		for (size_t j = 0; j < nb; j++)
			acc[j] = VFMA(w, VLOADX(x + j * IN + i), acc[j]);
	}
	for (size_t j = 0; j < nb; j++)
		s[j] = VHSUM(VADD(VADD(acc[j], acc1[j]), VADD(acc2[j], acc3[j])));
	for (; i < IN; i++) {
		size_t b = bit0 + i;
		if (!(v->pos[b / 8] >> (b % 8) & 1))
			continue;
		float wi = mv_scalar_w(val, dt, 0);
		val += es;
		for (size_t j = 0; j < nb; j++)
			s[j] += wi * x[j * IN + i];
	}
}

/* ---- the row kernels: dtype or code bits, window and nb constants in each instance ---- */

/* nb is a constant in each inlined dot: dot(s, a, o, x, nb, args...) for nb = 1 .. 4 */
#define SP_NB_SWITCH(dot, ...)                                                          \
	switch (nb) {                                                                  \
	case 1: MV(dot)(s, a, o, x, 1, __VA_ARGS__); break;                            \
	case 2: MV(dot)(s, a, o, x, 2, __VA_ARGS__); break;                            \
	case 3: MV(dot)(s, a, o, x, 3, __VA_ARGS__); break;                            \
	default: MV(dot)(s, a, o, x, 4, __VA_ARGS__); break;                           \
	}

/* the row kernel name: every row o0 .. o1 by dot with the constant arguments given */
#define SP_ROWS(name, dot, ...)                                                         \
	static MV_TARGET void MV(name)(const struct mv_args *a, const float *x, float *y,     \
	                               size_t nb, size_t o0, size_t o1)                   \
	{                                                                              \
		for (size_t o = o0; o < o1; o++) {                                     \
			float s[MV_NB];                                                \
			SP_NB_SWITCH(dot, __VA_ARGS__)                                 \
			mv_store(y, a->ldy, o - a->r0, s, nb, a->beta);                \
		}                                                                      \
	}

/* N:M rows of values (dtype dt) or of codes (b bits), in window mode wm */
#define SP_NM(dtn, dt, wm) SP_ROWS(rows_nm_##dtn##_w##wm, dot_nm, dt, wm)
#define SP_NMQ(b, wm) SP_ROWS(rows_nmq##b##_w##wm, dot_nmq, b, wm)
#define SP_NM_MODES(wm)                                                                 \
	SP_NM(f32, LM_F32, wm) SP_NM(f16, LM_F16, wm) SP_NM(bf16, LM_BF16, wm)          \
	SP_NMQ(2, wm) SP_NMQ(3, wm) SP_NMQ(4, wm) SP_NMQ(8, wm)
SP_NM_MODES(2)
SP_NM_MODES(4)
SP_NM_MODES(3)
#ifdef VWINP
SP_NM_MODES(5)
#endif

SP_ROWS(rows_bm_f32, dot_bm, LM_F32)
SP_ROWS(rows_bm_f16, dot_bm, LM_F16)
SP_ROWS(rows_bm_bf16, dot_bm, LM_BF16)

/* the kernel for a's layout in this instruction set; NULL: the plain C rows */
static mv_rows_fn *MV(sparse_rows_for)(const struct mv_args *a)
{
	const int wm = a->spwin;
	if (a->sv.l.kind == LM_LAYOUT_BITMAP)
		return a->dt == LM_F32 ? MV(rows_bm_f32) : a->dt == LM_F16 ? MV(rows_bm_f16) : MV(rows_bm_bf16);
	if (!wm)
		return NULL;
#ifdef VWINP
#define SP_P5(p) (p)
#else
#define SP_P5(p) NULL /* mode 5 is not chosen without VWINP */
#endif
#define SP_PICK3(name) (wm == 2 ? MV(name##_w2) : wm == 4 ? MV(name##_w4) : wm == 5 ? SP_P5(MV(name##_w5)) \
	                                                                          : MV(name##_w3))
	switch (a->sv.bits) {
	case 0:
		return a->dt == LM_F32 ? SP_PICK3(rows_nm_f32) : a->dt == LM_F16 ? SP_PICK3(rows_nm_f16)
		                                                                 : SP_PICK3(rows_nm_bf16);
	case 2: return SP_PICK3(rows_nmq2);
	case 3: return SP_PICK3(rows_nmq3);
	case 4: return SP_PICK3(rows_nmq4);
	case 8: return SP_PICK3(rows_nmq8);
	default: return NULL;
	}
#undef SP_PICK3
#undef SP_P5
}

#undef SP_LOADW
#undef SP_CODES
#undef SP_WIN
#undef SP_WINP
#undef SP_POSW
#undef SP_IDX
#undef SP_NB_SWITCH
#undef SP_ROWS
#undef SP_NM
#undef SP_NMQ
#undef SP_NM_MODES
