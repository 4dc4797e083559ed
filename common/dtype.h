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
	LM_DTYPE_COUNT
};

struct lm_dtype_info {
	const char *name;     /* wire name: "f32" */
	const char *st_name;  /* safetensors name: "F32" */
	size_t size;          /* bytes per element */
	int is_float;
};

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
