/* dtype.c: dtype table and float conversions (bit exact with torch's casts) */
#include "dtype.h"
#include "util.h"

#include <string.h>
#include <strings.h>

static const struct lm_dtype_info infos[LM_DTYPE_COUNT] = {
	[LM_F32] = {"f32", "F32", 4, 1},
	[LM_F16] = {"f16", "F16", 2, 1},
	[LM_BF16] = {"bf16", "BF16", 2, 1},
	[LM_F64] = {"f64", "F64", 8, 1},
	[LM_I64] = {"i64", "I64", 8, 0},
	[LM_I32] = {"i32", "I32", 4, 0},
	[LM_I16] = {"i16", "I16", 2, 0},
	[LM_I8] = {"i8", "I8", 1, 0},
	[LM_U8] = {"u8", "U8", 1, 0},
	[LM_BOOL] = {"bool", "BOOL", 1, 0},
	/* packed: 8 ids per bit width, see dtype.h */
#define QTYPES(b, bi) \
	[32 + 8 * bi + 0] = {"q" #b "c", NULL, 0, 0, b, 0}, \
	[32 + 8 * bi + 1] = {"q" #b "g32", NULL, 0, 0, b, 32}, \
	[32 + 8 * bi + 2] = {"q" #b "g64", NULL, 0, 0, b, 64}, \
	[32 + 8 * bi + 3] = {"q" #b "g128", NULL, 0, 0, b, 128}, \
	[32 + 8 * bi + 4] = {"q" #b "g256", NULL, 0, 0, b, 256}, \
	[32 + 8 * bi + 5] = {"q" #b "g512", NULL, 0, 0, b, 512}, \
	[32 + 8 * bi + 6] = {"q" #b "g1024", NULL, 0, 0, b, 1024}, \
	[32 + 8 * bi + 7] = {"q" #b "g2048", NULL, 0, 0, b, 2048},
	QTYPES(2, 0) QTYPES(3, 1) QTYPES(4, 2) QTYPES(8, 3)
#undef QTYPES
};

/* a packed group's header: f16 scale, u8 zero point, one reserved byte (see quant.h) */
#define QGROUP_HDR 4

int lm_dtype_q(int bits, int group)
{
	int bi = bits == 2 ? 0 : bits == 3 ? 1 : bits == 4 ? 2 : bits == 8 ? 3 : -1, gi = 0;
	if (bi < 0)
		return -1;
	if (group) {
		for (gi = 1; gi < 8 && (32 << (gi - 1)) != group; gi++)
			;
		if (gi == 8)
			return -1;
	}
	return LM_Q_FIRST + 8 * bi + gi;
}

int lm_dtype_is_packed(enum lm_dtype t)
{
	return (unsigned)t < LM_DTYPE_COUNT && infos[t].qbits > 0;
}

size_t lm_dtype_row_bytes(enum lm_dtype t, size_t cols)
{
	if (!lm_dtype_is_packed(t) || cols == 0 || cols > ((size_t)1 << 40))
		return 0;
	size_t g = infos[t].qgroup ? (size_t)infos[t].qgroup : cols;
	if (cols % g)
		return 0;
	return cols / g * (QGROUP_HDR + (g * (size_t)infos[t].qbits + 7) / 8);
}

int lm_dtype_nbytes(enum lm_dtype t, int ndim, const int64_t *shape, size_t *nbytes)
{
	size_t n = 1;
	if (!lm_dtype_info(t))
		return lm_seterr("unknown dtype %d", (int)t);
	if (lm_dtype_is_packed(t)) {
		if (ndim != 2 || shape[0] < 0 || shape[1] <= 0)
			return lm_seterr("dtype %s needs a [rows, cols] shape", infos[t].name);
		size_t rb = lm_dtype_row_bytes(t, (size_t)shape[1]);
		if (!rb)
			return lm_seterr("dtype %s: groups of %d do not divide rows of %lld", infos[t].name,
			                 infos[t].qgroup, (long long)shape[1]);
		return lm_mul((size_t)shape[0], rb, nbytes);
	}
	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 0)
			return lm_seterr("negative dimension");
		if (lm_mul(n, (size_t)shape[i], &n) < 0)
			return -1;
	}
	return lm_mul(n, infos[t].size, nbytes);
}

const struct lm_dtype_info *lm_dtype_info(enum lm_dtype t)
{
	return (unsigned)t < LM_DTYPE_COUNT && infos[t].name ? &infos[t] : NULL;
}

const char *lm_dtype_name(enum lm_dtype t)
{
	return lm_dtype_info(t) ? infos[t].name : "?";
}

size_t lm_dtype_size(enum lm_dtype t)
{
	return (unsigned)t < LM_DTYPE_COUNT ? infos[t].size : 0;
}

int lm_dtype_parse(const char *name)
{
	static const struct { const char *alias; enum lm_dtype t; } aliases[] = {
		{"float32", LM_F32}, {"float", LM_F32}, {"float16", LM_F16}, {"half", LM_F16},
		{"bfloat16", LM_BF16}, {"float64", LM_F64}, {"double", LM_F64},
		{"int64", LM_I64}, {"long", LM_I64}, {"int32", LM_I32}, {"int", LM_I32},
		{"int16", LM_I16}, {"int8", LM_I8}, {"uint8", LM_U8},
	};
	for (int i = 0; i < LM_DTYPE_COUNT; i++)
		if (infos[i].name && (!strcasecmp(name, infos[i].name) ||
		                      (infos[i].st_name && !strcasecmp(name, infos[i].st_name))))
			return i;
	for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++)
		if (!strcasecmp(name, aliases[i].alias))
			return aliases[i].t;
	return -1;
}

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float lm_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
	if (exp == 0x1f) /* inf / nan */
		return u2f(sign | 0x7f800000u | (man << 13));
	if (exp == 0) {
		if (man == 0)
			return u2f(sign);
		/* subnormal: value = man * 2^-24, exact in f32 */
		float v = (float)man * (1.0f / 16777216.0f);
		return sign ? -v : v;
	}
	return u2f(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t lm_f32_to_f16(float f)
{
	uint32_t u = f2u(f), sign = (u >> 16) & 0x8000, a = u & 0x7fffffffu;
	if (a >= 0x7f800000u) /* inf or nan (keep nan quiet) */
		return (uint16_t)(sign | 0x7c00 | (a > 0x7f800000u ? 0x200 | ((a >> 13) & 0x3ff) : 0));
	if (a >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
		return (uint16_t)(sign | 0x7c00);
	if (a < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
		/* value in units of 2^-24, rounded to nearest even */
		float v = u2f(a) * 16777216.0f;
		uint32_t m = (uint32_t)v;
		float rest = v - (float)m;
		if (rest > 0.5f || (rest == 0.5f && (m & 1)))
			m++;
		return (uint16_t)(sign | m);
	}
	uint32_t e = ((a >> 23) - 112) << 10, m = (a >> 13) & 0x3ff;
	uint32_t r = sign | e | m, low = a & 0x1fff;
	if (low > 0x1000 || (low == 0x1000 && (m & 1)))
		r++; /* carries into the exponent correctly */
	return (uint16_t)r;
}

float lm_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t lm_f32_to_bf16(float f)
{
	uint32_t u = f2u(f);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40); /* quiet nan */
	u += 0x7fffu + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

int lm_to_f32(float *dst, const void *src, enum lm_dtype st, size_t n)
{
	return lm_convert(dst, LM_F32, src, st, n);
}

int lm_convert(void *dst, enum lm_dtype dt, const void *src, enum lm_dtype st, size_t n)
{
	const struct lm_dtype_info *di = lm_dtype_info(dt), *si = lm_dtype_info(st);
	if (!di || !si || !di->is_float || !si->is_float)
		return lm_seterr("cannot convert %s to %s", lm_dtype_name(st), lm_dtype_name(dt));
	if (dt == st) {
		if (dst != src)
			memmove(dst, src, n * di->size);
		return 0;
	}
	/* go through f32 (f64 -> f32 -> x matches torch for f16/bf16 targets only up to
	 * double rounding, which no checkpoint we read relies on) */
	for (size_t i = 0; i < n; i++) {
		float v;
		switch (st) {
		case LM_F32: v = ((const float *)src)[i]; break;
		case LM_F16: v = lm_f16_to_f32(((const uint16_t *)src)[i]); break;
		case LM_BF16: v = lm_bf16_to_f32(((const uint16_t *)src)[i]); break;
		default: v = (float)((const double *)src)[i]; break;
		}
		switch (dt) {
		case LM_F32: ((float *)dst)[i] = v; break;
		case LM_F16: ((uint16_t *)dst)[i] = lm_f32_to_f16(v); break;
		case LM_BF16: ((uint16_t *)dst)[i] = lm_f32_to_bf16(v); break;
		default: ((double *)dst)[i] = v; break;
		}
	}
	return 0;
}
