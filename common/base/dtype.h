/* dtype.h: element types of stream tensors.
 * The numeric ids are stable forever (they may be written to files, as ggml's enum is):
 * never reuse or renumber one. On the wire the lowercase name is written, not the id.
 * Ids 32 and up are reserved for packed quantized types (block layouts, see lm-stream(5)). */
#ifndef LM_DTYPE_H
#define LM_DTYPE_H

#include <stddef.h>
#include <stdint.h>

enum lm_dtype {
	LM_F32 = 0,
	LM_F16 = 1,
	LM_BF16 = 2,
	LM_F64 = 3,
	LM_I64 = 4,
	LM_I32 = 5,
	LM_I16 = 6,
	LM_I8 = 7,
	LM_U8 = 8,
	LM_BOOL = 9,
	/* 10 .. 31: free for plain types */
	/* Packed quantized matrices (lm-stream(5) "Packed quantized types"): 32 + 8 * b + g
	 * with b = 0, 1, 2, 3 for 2, 3, 4, 8 bits and g = 0 for one group per row ("q4c", per
	 * output channel), 1 .. 7 for groups of 32, 64, 128, 256, 512, 1024, 2048 inputs
	 * ("q4g128"). The group size is part of the type so that a reader can check a
	 * record's nbytes from its dtype and shape alone, before allocating anything. */
	LM_Q_FIRST = 32,
	LM_Q4_G128 = 32 + 8 * 2 + 3,
	LM_DTYPE_COUNT = 64
};

struct lm_dtype_info {
	const char *name;     /* wire name: "f32", "q4g128" (NULL: an unused id) */
	const char *st_name;  /* safetensors name: "F32" (NULL: safetensors has none) */
	size_t size;          /* bytes per element; 0 for packed types (see lm_dtype_nbytes) */
	int is_float;
	int qbits;            /* packed types: bits per code, else 0 */
	int qgroup;           /* packed types: inputs per group, 0 = the whole row */
};

/* packed quantized type of bits (2, 3, 4, 8) and group (0 = per row, or 32 .. 2048, a
 * power of two); -1 if there is none */
int lm_dtype_q(int bits, int group);
int lm_dtype_is_packed(enum lm_dtype t);
/* bytes of one packed row of cols inputs (0 if the group does not divide cols): per group
 * a struct lm_qgroup then ceil(G * bits / 8) bytes of codes (see quant.h) */
size_t lm_dtype_row_bytes(enum lm_dtype t, size_t cols);
/* payload bytes of a tensor of this dtype and shape; -1 + error on overflow, an unknown
 * dtype, or a packed type whose shape is not [rows, cols] with the group dividing cols */
int lm_dtype_nbytes(enum lm_dtype t, int ndim, const int64_t *shape, size_t *nbytes);

const struct lm_dtype_info *lm_dtype_info(enum lm_dtype t);
const char *lm_dtype_name(enum lm_dtype t);
/* name -> dtype, case-insensitive; also accepts safetensors and torch spellings
 * ("F16", "float16", "half", "bfloat16"); -1 if unknown */
int lm_dtype_parse(const char *name);
size_t lm_dtype_size(enum lm_dtype t);

float lm_f16_to_f32(uint16_t h);
uint16_t lm_f32_to_f16(float f);      /* round to nearest even, as torch .half() */
float lm_bf16_to_f32(uint16_t h);
uint16_t lm_f32_to_bf16(float f);     /* round to nearest even, as torch .bfloat16() */

/* convert n elements between float types (f32/f16/bf16/f64); -1 + error if unsupported */
int lm_convert(void *dst, enum lm_dtype dt, const void *src, enum lm_dtype st, size_t n);
/* n elements of a float type to f32 (dst may not alias src unless st is f32) */
int lm_to_f32(float *dst, const void *src, enum lm_dtype st, size_t n);

#endif
