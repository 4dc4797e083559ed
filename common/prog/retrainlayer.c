/* retrainlayer.c: lm-retrain --reconstruct, layer-wise reconstruction: each decoder layer
 * trained to give the dense teacher layer's output (MSE) on the calibration windows, the
 * teacher read layer by layer along with the training. */
#include "retrainlayer.h"
#include "backward.h"
#include "forward.h"
#include "kernels.h"
#include "modelio.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the teacher gives each layer's targets: it must be the student's architecture */
static int same_shape(const struct lm_opt_config *a, const struct lm_opt_config *b)
{
	return a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
	       a->num_layers == b->num_layers && a->num_heads == b->num_heads &&
	       a->ffn_dim == b->ffn_dim && a->word_embed_proj_dim == b->word_embed_proj_dim &&
	       a->pre_ln == b->pre_ln && a->max_positions == b->max_positions;
}

/* decoder layer l over the K windows of X ([K x T x C]) in place, B windows at a time */
static void forward_windows(struct lm_fwd *fw, const struct lm_layer *ly, int l, float *X,
                            size_t K, size_t B, size_t T, const char *what)
{
	size_t C = (size_t)fw->cfg.hidden_size;
	for (size_t w0 = 0; w0 < K; w0 += B) {
		size_t nb = K - w0 < B ? K - w0 : B;
		if (lm_forward_layer(fw, ly, l, X + w0 * T * C, nb, T) < 0)
			die_lm(what);
	}
}

void lm_retrain_reconstruct(struct lm_model_stream *ms, struct lm_model *m,
                            const struct lm_retrain_args *o, struct lm_progress *pg)
{
	const struct lm_opt_config *c = &m->cfg;
	size_t T = (size_t)o->f.seqlen, B = (size_t)o->f.batch, C = (size_t)c->hidden_size, n = 0;
	int32_t *ids = lm_retrain_ids(o->calib, ms, &n);
	struct lm_model_stream tms;
	struct lm_model tm;
	struct lm_fwd fw;
	struct lm_reader *trd;
	size_t K = n / T, xn;
	float *X, *Y, *xb, *yb;

	if (K == 0)
		die("%s: %zu tokens, fewer than one window of %zu", o->calib, n, T);
	if ((size_t)o->nsamples < K)
		K = (size_t)o->nsamples;
	if (B > K)
		B = K;
	trd = lm_in_open(o->teacher);
	lm_reader_set_verify(trd, o->f.cf.verify);
	if (lm_ms_open(&tms, trd) < 0)
		die_lm(o->teacher);
	if (!same_shape(&tms.h.cfg, c))
		die("%s: the teacher's shape differs from the model's", o->teacher);
	if (lm_model_init(&tm, &tms.h.cfg) < 0 || lm_ms_load(&tms, &tm, LM_PART_HEAD) < 0)
		die_lm(o->teacher);
	if (lm_fwd_init(&fw, c, B, T) < 0 || lm_mul(K * T, C, &xn) < 0 ||
	    !(X = lm_alloc(xn * sizeof *X)) || !(Y = lm_alloc(xn * sizeof *Y)) ||
	    !(xb = lm_alloc(B * T * C * sizeof *xb)) || !(yb = lm_alloc(B * T * C * sizeof *yb)))
		die_lm("calibration activations");
	/* the inputs of layer 0: the student's embeddings (pruning leaves them alone) */
	for (size_t w0 = 0; w0 < K; w0 += B) {
		size_t nb = K - w0 < B ? K - w0 : B;
		if (lm_forward_embed(&fw, m, ids + w0 * T, nb, T) < 0)
			die_lm("forward");
		memcpy(X + w0 * T * C, fw.x, nb * T * C * sizeof *X);
	}
	lm_progress_note(pg, "reconstruction: %zu calibration windows of %zu tokens, %lld steps per "
	                 "layer", K, T, o->f.steps);
	pg->t0 = lm_now(), pg->total = o->f.steps;
	for (int l = 0; l < c->num_layers; l++) {
		struct lm_train tr;
		struct lm_train_opts lo = o->to;
		char what[32];
		struct lm_train_steps st = LM_TRAIN_STEPS_INIT;
		double mse0 = NAN, mse = NAN;
		snprintf(what, sizeof what, "layer %d", l);
		/* targets: the dense teacher layer on the inputs from the reconstructed layers */
		if (lm_ms_load(&tms, &tm, l) < 0)
			die_lm(o->teacher);
		memcpy(Y, X, xn * sizeof *Y);
		forward_windows(&fw, &tm.layers[l], l, Y, K, B, T, "teacher forward");
		lm_layer_free(&tm.layers[l]);
		lo.layer = l;
		if (lm_train_init(&tr, m, &lo, B, T) < 0)
			die_lm(lm_reader_name(ms->rd));
		pg->t0 = lm_now();
		for (long s = 0; s < o->f.steps; s++) {
			double lr = lm_train_lr(&o->f, s);
			/* the calibration windows in order, round and round (no shuffling, as PERP) */
			for (size_t b = 0; b < B; b++) {
				size_t w = ((size_t)s * B + b) % K;
				memcpy(xb + b * T * C, X + w * T * C, T * C * sizeof *xb);
				memcpy(yb + b * T * C, Y + w * T * C, T * C * sizeof *yb);
			}
			lm_train_zero_grad(&tr);
			if (lm_train_layer_step(&tr, xb, yb, B, T, &mse) < 0)
				die_lm("training");
			if (s == 0)
				mse0 = mse;
			lm_train_steps_update(&st, &tr, &o->f, pg, what, s, mse, lr, (double)(B * T));
		}
		if (lm_train_merge(&tr) < 0)
			die("%s: %s; nothing written", what, lm_errmsg());
		lm_retrain_mark(ms, &tr, o, l);
		lm_train_commit(&tr);
		lm_train_free(&tr);
		/* the next layer's inputs come from this reconstructed layer */
		forward_windows(&fw, &m->layers[l], l, X, K, B, T, "forward");
		double after = lm_mse_backward(NULL, X, Y, xn);
		lm_progress_note(pg, "layer %d: MSE to the teacher %.6g (first step %.6g, last step %.6g)",
		                 l, after, mse0, mse);
	}
	if (lm_ms_load(&tms, &tm, (int)c->num_layers) < 0)
		die_lm(o->teacher);
	lm_model_free(&tm);
	lm_ms_close(&tms);
	lm_reader_close(trd);
	lm_fwd_free(&fw);
	lm_free(X), lm_free(Y), lm_free(xb), lm_free(yb);
	free(ids);
}
