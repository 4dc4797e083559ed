/* retrainrun.c: lm-retrain's work once its options are parsed: the mode run on the model
 * read whole, and end-to-end training on random windows of -d FILE. --reconstruct is in
 * retrainlayer.c, the early exits in retrainexit.c, what all three share in retrainargs.c. */
#include "retrainrun.h"
#include "retrainexit.h"
#include "retrainlayer.h"
#include "exitpolicy.h"
#include "rng.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* ---- end-to-end ---- */

static double eval_loss(struct lm_train *tr, const int32_t *ids, size_t W, size_t B, size_t T)
{
	double sum = 0, s;
	size_t cnt = 0, c;
	for (size_t w0 = 0; w0 < W; w0 += B) {
		size_t nb = W - w0 < B ? W - w0 : B;
		if (lm_train_eval(tr, ids + w0 * T, nb, T, &s, &c) < 0)
			die_lm("validation");
		sum += s, cnt += c;
	}
	return sum / (double)cnt;
}

static void end_to_end(struct lm_model_stream *ms, struct lm_model *m,
                       const struct lm_retrain_args *o, struct lm_progress *pg)
{
	size_t T = (size_t)o->f.seqlen, B = (size_t)o->f.batch, n = 0, ne = 0, We = 0;
	int32_t *ids = lm_retrain_ids(o->data, ms, &n), *eids = NULL, *batch;
	struct lm_train tr;
	struct lm_rng rng;
	struct lm_train_steps st = LM_TRAIN_STEPS_INIT;

	if (n < T)
		die("%s: %zu tokens, fewer than one window of %zu", o->data, n, T);
	if (o->eval) {
		eids = lm_retrain_ids(o->eval, ms, &ne);
		We = ne / T;
		if (We == 0)
			die("%s: %zu tokens, fewer than one window of %zu", o->eval, ne, T);
		if ((size_t)o->eval_windows < We)
			We = (size_t)o->eval_windows;
	}
	if (lm_train_init(&tr, m, &o->to, B, T) < 0)
		die_lm(lm_reader_name(ms->rd));
	lm_progress_note(pg, "training %zu values in %zu tensors (%.0f MiB of gradients, moments and "
	                 "activations); %zu windows of %zu tokens per step, %lld steps",
	                 lm_train_count(&tr), tr.npar, (double)lm_train_bytes(&tr) / 1048576.0, B, T,
	                 o->f.steps);
	lm_rng_seed(&rng, (uint64_t)o->f.seed);
	batch = xmalloc(B * T * sizeof *batch);
	if (eids)
		lm_progress_note(pg, "step 0: validation loss %.6f", eval_loss(&tr, eids, We, B, T));
	/* from here on: -v lines, the log, and a terminal's progress line */
	pg->t0 = lm_now(), pg->total = o->f.steps;
	for (long s = 0; s < o->f.steps; s++) {
		double loss, lr = lm_train_lr(&o->f, s);
		for (size_t b = 0; b < B; b++) {
			size_t at = (size_t)lm_rng_below(&rng, n - T + 1);
			memcpy(batch + b * T, ids + at, T * sizeof *batch);
		}
		lm_train_zero_grad(&tr);
		if ((o->early_exit ? lm_retrain_exit_step(&tr, o, batch, B, T, &loss, pg)
		                   : lm_train_step(&tr, batch, B, T, &loss)) < 0)
			die_lm("training");
		lm_train_steps_update(&st, &tr, &o->f, pg, NULL, s, loss, lr, (double)(B * T));
		if (eids && o->eval_every && (s + 1) % o->eval_every == 0 && s + 1 < o->f.steps)
			lm_progress_note(pg, "step %ld: validation loss %.6f", s + 1,
			                 eval_loss(&tr, eids, We, B, T));
	}
	/* the last validation is the trained model's before the adapters are merged: what
	 * lm-eval says of the output must agree (the merge is exact up to rounding) */
	if (eids)
		lm_progress_note(pg, "step %lld: validation loss %.6f", o->f.steps,
		                 eval_loss(&tr, eids, We, B, T));
	if (lm_train_merge(&tr) < 0)
		die("training: %s; nothing written", lm_errmsg());
	lm_retrain_mark(ms, &tr, o, -1);
	lm_train_commit(&tr);
	lm_train_free(&tr);
	free(batch), free(ids), free(eids);
}

/* ---- the program ---- */

void lm_retrain_run(struct lm_retrain_args *o, const char *input, int argc, char **argv)
{
	struct lm_train_io io = {0};

	lm_train_io_open(&io, &o->f, input);
	o->to.dropout = o->f.dropout_set ? o->f.dropout : io.ms.h.cfg.dropout;
	if (o->early_exit || o->exit_policy)
		lm_retrain_exit_args(o, &io.ms);
	lm_train_io_load(&io, &o->f);
	if (o->exit_policy)
		lm_retrain_exit_policy(&io.ms, &io.m, o, &io.pg);
	else if (o->reconstruct)
		lm_retrain_reconstruct(&io.ms, &io.m, o, &io.pg);
	else
		end_to_end(&io.ms, &io.m, o, &io.pg);
	/* a policy learnt on the model before this fine-tuning would decide on other states */
	if (o->early_exit && lm_ms_drop_extras(&io.ms, LM_POLICY_PREFIX))
		lm_progress_note(&io.pg, "dropped the stream's exit policy (trained for the model before "
		                 "this fine-tuning): train it again with --exit-policy");
	lm_train_io_close(&io, &o->f, argc, argv);
	free(o->exits), free(o->exit_w);
	o->exits = NULL, o->exit_w = NULL;
}
