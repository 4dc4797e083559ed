/* simd.h: the bit helpers and the clone attribute shared by the vectorized loops
 * (kernels.c, rows.c) */
#ifndef LM_SIMD_H
#define LM_SIMD_H

#include <stdint.h>
#include <string.h>

/* On x86-64 the hot loops are also cloned for x86-64-v4 (AVX-512) and x86-64-v3 (AVX2+FMA),
 * one chosen at load time through an ifunc. Their reductions keep LANES partial sums, so
 * every clone rounds as the baseline does; v4's 16 lanes in one register took the fused
 * cross-entropy's and the attention softmax's share of lm-eval --ppl from 4.0 % to 2.5 % of
 * the samples on Zen 5 (docs/performance.md). (Not under ThreadSanitizer: it instruments the
 * ifunc resolver, which runs before the sanitizer's runtime is up, and the program dies at
 * load.) */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && \
    !defined(__SANITIZE_THREAD__)
#define LM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LM_CLONES
#endif

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* c ? a : b through bit masks. gcc (without -fno-trapping-math) will not if-convert a
 * float select whose arms it has sunk arithmetic into, and then the loop stays scalar;
 * masks keep every loop below branch-free. */
static inline float fsel(uint32_t c, float a, float b)
{
	uint32_t m = 0u - c;
	return u2f((f2u(a) & m) | (f2u(b) & ~m));
}

/* f16 -> f32 without branches: shift exponent+mantissa into the f32 positions and fix the
 * exponent bias with one multiply by 2^-112 (which also carries inf/NaN through, since
 * their exponent field lands on 255); subnormal halves are built as 0.5 + m * 2^-24 in a
 * float of exponent 2^-1 and the 0.5 subtracted, which is exact. */
static inline float h2f(uint16_t h)
{
	uint32_t w = (uint32_t)h << 16;
	uint32_t sign = w & 0x80000000u;
	uint32_t two_w = w + w;  /* drops the sign */
	float norm = u2f((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
	float den = u2f((two_w >> 17) | (126u << 23)) - 0.5f;
	return u2f(sign | f2u(fsel(two_w < (1u << 27), den, norm)));
}

static inline float bf2f(uint16_t h) { return u2f((uint32_t)h << 16); }

#endif
