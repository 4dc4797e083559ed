/* perplexity.c: perplexity over token windows, streamed layer by layer or in memory */
#include "perplexity.h"
#include "forward.h"
#include "modelio.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int lm_ppl_stream(struct lm_model_stream *ms, const int32_t *ids, size_t W, size_t T, size_t B,
                  void (*done)(void *ctx, int l, int L), void *ctx, double *mean, const char **where)
{
	const struct lm_opt_config *cfg = &ms->h.cfg;
	const size_t C = (size_t)cfg->hidden_size, E = (size_t)cfg->word_embed_proj_dim;
	const char *sname = lm_reader_name(ms->rd);
	struct lm_model m;
	struct lm_fwd s;
	float *X = NULL, *nll;
	double sum = 0;
	int rc = -1;

	*where = sname;
	if (lm_model_init(&m, cfg) < 0)
		return -1;
	if (lm_fwd_init(&s, cfg, B, T) < 0) {
		lm_model_free(&m);
		return -1;
	}
	size_t xn;
	if (lm_mul(W * T, C > E ? C : E, &xn) < 0 || !(X = lm_alloc(xn * sizeof *X))) {
		*where = "activations";
		goto out;
	}
	nll = xmalloc(W * T * sizeof *nll);

	if (lm_ms_load(ms, &m, LM_PART_HEAD) < 0)
		goto out_nll;
	for (size_t w0 = 0; w0 < W; w0 += B) {
		size_t nb = W - w0 < B ? W - w0 : B;
		if (lm_forward_embed(&s, &m, ids + w0 * T, nb, T) < 0) {
			*where = "forward";
			goto out_nll;
		}
		memcpy(X + w0 * T * C, s.x, nb * T * C * sizeof *X);
	}
	for (int l = 0; l < cfg->num_layers; l++) {
		if (lm_ms_load(ms, &m, l) < 0)
			goto out_nll;
		for (size_t w0 = 0; w0 < W; w0 += B) {
			size_t nb = W - w0 < B ? W - w0 : B;
			if (lm_forward_layer(&s, &m.layers[l], l, X + w0 * T * C, nb, T) < 0) {
				*where = "forward";
				goto out_nll;
			}
		}
		lm_layer_free(&m.layers[l]);
		if (done)
			done(ctx, l + 1, (int)cfg->num_layers);
	}
	if (lm_ms_load(ms, &m, (int)cfg->num_layers) < 0)
		goto out_nll;
	*where = "forward";
	{
		/* The final LayerNorm (and project_out) batch by batch in place, rows of C becoming
		 * rows of E: a batch's output ends where the next one's input starts when E <= C,
		 * and begins where the batch before it ended when E > C (then the batches go last
		 * first). Then the head once over all windows: an f16 or packed head is converted
		 * a tile at a time once, not once per batch. */
		int32_t *tgt = xmalloc(W * T * sizeof *tgt);
		size_t nbat = (W + B - 1) / B;
		for (size_t k = 0; k < nbat; k++) {
			size_t w0 = (E <= C ? k : nbat - 1 - k) * B, nb = W - w0 < B ? W - w0 : B;
			if (lm_forward_final(&s, &m, X + w0 * T * C, X + w0 * T * E, nb * T) < 0) {
				free(tgt);
				goto out_nll;
			}
		}
		for (size_t w = 0; w < W; w++)
			for (size_t t = 0; t < T; t++)
				tgt[w * T + t] = t + 1 < T ? ids[w * T + t + 1] : -1;
		rc = lm_forward_head(&s, &m, X, tgt, W * T, nll, NULL);
		free(tgt);
		if (rc < 0)
			goto out_nll;
	}
	/* perplexity = exp(mean over windows of each window's mean NLL) */
	for (size_t w = 0; w < W; w++) {
		double wsum = 0;
		for (size_t t = 0; t + 1 < T; t++)
			wsum += nll[w * T + t];
		sum += wsum / (double)(T - 1);
	}
	*mean = sum / (double)W;
	rc = 0;
out_nll:
	free(nll);
out:
	lm_free(X);
	lm_fwd_free(&s);
	lm_model_free(&m);
	return rc;
}

int lm_ppl_windows(const struct lm_model *m, const int32_t *ids, size_t W, size_t T, double *ppl)
{
	struct lm_fwd s;
	double sum = 0;
	if (lm_fwd_init(&s, &m->cfg, 1, T) < 0)
		return -1;
	for (size_t w = 0; w < W; w++) {
		double loss;
		if (lm_forward_loss(&s, m, ids + w * T, 1, T, &loss) < 0) {
			lm_fwd_free(&s);
			return -1;
		}
		sum += loss;   /* every window has T - 1 targets: the mean of means is the mean */
	}
	lm_fwd_free(&s);
	*ppl = exp(sum / (double)W);
	return 0;
}
