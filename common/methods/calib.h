/* calib.h: calibration for the methods that look at activations (Wanda, SparseGPT, GPTQ),
 * following the reference code's layer-sequential pattern (docs/methods.md §1):
 *
 *   ids --embed--> X [W,T,C], the inputs of layer 0 for W windows of T tokens
 *   for each layer i, as it arrives from the stream:
 *       lm_calib_observe: run the DENSE layer on a copy of X with a hook that sees the
 *                         input of each of its six linears (statistics); X is unchanged
 *       (the caller compresses the layer)
 *       lm_calib_advance: run the compressed layer on X in place: the inputs of layer i+1
 *
 * Memory: X, W * T * hidden_size floats, plus a forward arena for a few windows. */
#ifndef LM_CALIB_H
#define LM_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "hessian.h"
#include "model.h"
#include "modelstream.h"

struct lm_calib {
	size_t W, T, B, C;   /* windows, tokens per window, windows per forward batch, hidden */
	float *X;            /* [W,T,C] inputs of the next layer */
	float *tmp;          /* [B,T,C] the dense pass's copy */
	struct lm_fwd s;
};

/* embed windows ids[w*T .. (w+1)*T) for w < W with m's embeddings (the head must be
 * loaded), B windows per forward batch; -1 + error */
int lm_calib_init(struct lm_calib *c, const struct lm_model *m, const int32_t *ids, size_t W,
                  size_t T, size_t B);
/* the dense layer over all windows with hook(ctx, …) called on each linear's input;
 * hook may be NULL */
int lm_calib_observe(struct lm_calib *c, const struct lm_layer *l, int layer, lm_fwd_hook *hook,
                     void *ctx);
/* X = layer(X) */
int lm_calib_advance(struct lm_calib *c, const struct lm_layer *l, int layer);
void lm_calib_free(struct lm_calib *c);

/* ---- statistics of one layer's linear inputs, gathered by lm_calib_observe ----
 * q, k and v read the same input, so they share one set (computed once); out_proj, fc1
 * and fc2 have one each. */
enum lm_calib_group { LM_G_QKV, LM_G_O, LM_G_FC1, LM_G_FC2, LM_G_COUNT };
/* the group of a linear weight kind, -1 for any other kind */
int lm_calib_group(enum lm_opt_kind k);

struct lm_layer_stats {
	int want[LM_G_COUNT];            /* groups to gather */
	int hessian;                     /* 1: H (SparseGPT, GPTQ); 0: sums of x_j^2 (Wanda) */
	size_t T;                        /* tokens per window: windows = rows / T */
	size_t cols[LM_G_COUNT];         /* inputs: C, C, C, F */
	struct lm_hessian h[LM_G_COUNT];
	double *sumsq[LM_G_COUNT];       /* [cols] sum over the tokens of x_j^2, in double */
};

/* zeroed statistics for the wanted groups of a layer of cfg; -1 + error */
int lm_layer_stats_init(struct lm_layer_stats *st, const struct lm_opt_config *cfg,
                        const int want[LM_G_COUNT], int hessian, size_t T);
/* the lm_fwd_hook that fills them (ctx: the struct lm_layer_stats) */
void lm_layer_stats_hook(void *ctx, int layer, enum lm_opt_kind k, const float *inp, size_t N,
                         size_t cols);
void lm_layer_stats_free(struct lm_layer_stats *st);

#endif
