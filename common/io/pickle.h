/* pickle.h: a restricted unpickler for the data.pkl record of torch.save zip files.
 *
 * It is a real stack machine (stack, mark stack, memo), but it knows only the opcodes a
 * pickled state dict uses (protocol 2, plus PROTO/FRAME/MEMOIZE/SHORT_BINUNICODE/
 * BINUNICODE8/STACK_GLOBAL from protocols 3-5) and only a fixed allowlist of globals:
 * collections.OrderedDict, torch._utils._rebuild_tensor{,_v2}, torch._utils._rebuild_parameter
 * {,_with_state} and the typed storage classes torch.{Float,Half,BFloat16,Double,Long,Int,
 * Short,Char,Byte,Bool}Storage. Nothing is ever imported or called: an allowed "call" builds a
 * plain C value. Any other global is refused by name ("forbidden global 'os.system' in
 * data.pkl") at the GLOBAL opcode, before anything could use it.
 *
 * Memory is bounded by the input: every length is checked against the bytes that remain
 * before anything is allocated, and the stack, mark stack, memo, object count and container
 * slots have fixed caps (LM_PK_MAX_*). */
#ifndef LM_PICKLE_H
#define LM_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#define LM_PK_MAX_STACK   (1u << 20)  /* values on the stack at once */
#define LM_PK_MAX_MARKS   64u         /* nesting of MARK; a state dict needs 3 */
#define LM_PK_MAX_MEMO    (1u << 22)  /* memo slots (also capped by the pickle's length) */
#define LM_PK_MAX_OBJECTS (1u << 21)  /* values created */
#define LM_PK_MAX_ITEMS   (1u << 24)  /* tuple/list/dict slots, all containers together */

/* one tensor of the state dict, as _rebuild_tensor_v2 received it (not yet validated
 * against the storage: shape/stride/offset are what the pickle says, all >= 0) */
struct lm_pk_tensor {
	char *name;               /* dict key */
	enum lm_dtype dtype;      /* from the storage class */
	int ndim;                 /* 0..8 */
	int64_t shape[8];
	int64_t stride[8];        /* in elements */
	char *storage;            /* persistent id key: the zip record <top>/data/<storage> */
	uint64_t storage_offset;  /* in elements */
	uint64_t storage_numel;   /* elements the persistent id says the storage holds */
};

/* Unpickle buf (len bytes) which must hold a dict (or OrderedDict) of str -> tensor.
 * On success *out is a malloc'd array of *n tensors in dict order (free with lm_pk_free).
 * Returns -1 and sets the error on any malformed, unsupported or forbidden input. */
int lm_pk_state_dict(const unsigned char *buf, size_t len, struct lm_pk_tensor **out, size_t *n);
void lm_pk_free(struct lm_pk_tensor *t, size_t n);

#endif
