/* lm-retrain: retrain a (pruned) model: PERP's parameter-efficient subsets, LoRA variants
 * that keep sparsity, full masked retraining, or layer-wise reconstruction against a dense
 * teacher. The model is read whole, trained, and written only when training succeeded. */
#include "textids.h"
#include "cli.h"
#include "backward.h"
#include "earlyexit.h"
#include "exitpolicy.h"
#include "forward.h"
#include "kernels.h"
#include "modelio.h"
#include "modelstream.h"
#include "rng.h"
#include "tokenizer.h"
#include "train.h"
#include "trainloop.h"
#include "util.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
	"usage: lm-retrain (--perp | --full | --train GLOB | --lora R | --mask-lora R | --scale-lora R)...\n"
	"                  (-d FILE | --reconstruct --teacher STREAM -c FILE) [options] [STREAM]\n"
	"Retrain the model read from STREAM or standard input; the retrained model goes to stdout.\n"
	"What trains (any combination):\n"
	"      --perp            every bias and LayerNorm weight/bias (PERP's subset)\n"
	"      --full            every tensor of the decoder layers and the final LayerNorm\n"
	"      --train GLOB      the tensors whose names match GLOB (fnmatch; repeatable)\n"
	"      --lora R          LoRA of rank R on q/k/v/out_proj/fc1/fc2 of every layer\n"
	"      --mask-lora R     MaskLoRA: W + alpha/R (BA * 1[W != 0])\n"
	"      --scale-lora R    ScaleLoRA: W * BA (elementwise)\n"
	"      --lora-alpha A    LoRA scale alpha/R (default 2R)\n"
	"      --lora-head       also standard LoRA of rank R on the LM head\n"
	"Pruned zeros (exact zeros of a trained or adapted matrix) stay zero in every mode.\n"
	"Data:\n"
	"  -d, --data FILE       training text (or an lm-stream of token ids): random windows\n"
	"  -s, --seqlen N        tokens per window (default 512, or the model's positions if fewer)\n"
	"  -b, --batch N         windows per step (default 8)\n"
	"  -n, --steps N         optimizer steps (default 200; per layer with --reconstruct)\n"
	"      --eval FILE       validation text or ids: loss on its first windows\n"
	"      --eval-every N    validation every N steps (default: at the start and the end)\n"
	"      --eval-windows K  validation windows (default 8)\n"
	"Optimizer (AdamW):\n"
	"  -l, --lr X            peak learning rate (default 1e-3; 1e-4 with --full)\n"
	"      --warmup X        warmup fraction of the steps (default 0.1)\n"
	"      --schedule S      decay after warmup: linear (default) or cosine, to 0\n"
	"      --beta1 X         (default 0.9)\n"
	"      --beta2 X         (default 0.999)\n"
	"      --eps X           (default 1e-8)\n"
	"      --weight-decay X  on matrices and LoRA factors (default 0)\n"
	"      --clip X          clip the global gradient norm to X (default 1.0; 0: off)\n"
	"      --dropout P       dropout probability (default: the stream's config)\n"
	"      --seed N          windows, LoRA initialisation and dropout (default 0)\n"
	"Layer-wise reconstruction:\n"
	"      --reconstruct     train each layer to match the teacher layer's output (MSE)\n"
	"      --teacher STREAM  the dense model (read layer by layer along with training)\n"
	"  -c, --calib FILE      calibration text or ids: the first windows of it\n"
	"      --nsamples K      calibration windows (default 128)\n"
	"Early exits (GREEN-CODE; exit k leaves after decoder layer k, k = 1..L-1):\n"
	"      --early-exit      multi-exit fine-tuning: the weighted sum of each exit's and the\n"
	"                        final output's cross-entropy, every exit through the shared\n"
	"                        final LayerNorm and head (trains --full unless told otherwise)\n"
	"      --exits LIST      the exits, e.g. 1,2,3 (default: every layer but the last; for\n"
	"                        --exit-policy: those the stream records)\n"
	"      --exit-weights LIST  a weight per exit, then the final output's (default:\n"
	"                        GREEN-CODE's geometric ones)\n"
	"      --exit-policy     train the exit policy by PPO on decoding episodes of -d FILE and\n"
	"                        store it in the stream; the model's tensors are unchanged\n"
	"      --episodes N      decoding episodes of 15 tokens (default 256)\n"
	"      --policy-steps N  PPO environment steps (default 200000; -l sets the rate)\n"
	"      --policy-hidden H width of the policy's two hidden layers (default 64)\n"
	"Output and the rest:\n"
	"  -o, --output FILE     write to FILE (atomically) instead of standard output\n"
	"  -f, --force           write to standard output even if it is a terminal\n"
	"      --log FILE        one line per step (step, loss, lr, gradient norm, tokens/s)\n"
	"  -j, --threads N       threads (default: all cores)\n"
	"      --no-verify       skip CRC-32 checks of the input stream\n"
	"  -v, --verbose         summary and validation lines on stderr even when it is no terminal\n"
	"  -q, --quiet           nothing on stderr but errors (progress shows only on a terminal)\n"
	"  -h, --help            show this help\n"
	"  -V, --version         show the version\n";

struct opts {
	struct lm_train_opts to;
	const char *data, *eval, *teacher, *calib, *input, *output, *log;
	const char **globs;
	size_t nglobs;
	long long seqlen, batch, steps, eval_every, eval_windows, nsamples, seed;
	double lr, warmup, clip, dropout;
	struct lm_adamw adam;
	int cosine, reconstruct, threads, verify, quiet, verbose, force, alpha_set, dropout_set;
	/* early exits: the exits 0-based, their weights then the final output's */
	const char *exits_arg, *exit_w_arg;
	int early_exit, exit_policy;
	int *exits;
	size_t nexits;
	float *exit_w;
	long long episodes, policy_steps, policy_hidden;
};

/* ---- token ids from a text or an ids stream ---- */

/* FILE as ids: an lm-stream holding an integer tensor "ids", or text (one BOS in front),
 * read exactly as lm-eval and lm-prune read it */
static int32_t *load_ids(const char *path, const struct lm_model_stream *ms, size_t *n)
{
	int32_t *ids;
	if (lm_ids_load(path, ms, &ids, n) < 0)
		die_lm(path);
	return ids;
}

/* ---- what the output records ---- */

static void mark_attrs(struct lm_model_stream *ms, const struct lm_train *tr,
                       const struct opts *o, int layer_only)
{
	for (size_t i = 0; i < ms->norder; i++) {
		const struct lm_opt_tensor *t = &ms->order[i];
		if (layer_only >= 0 && t->layer != layer_only)
			continue;
		if (!lm_train_changes(tr, t->kind, t->layer))
			continue;
		json_t *a = lm_ms_attrs(ms, t->kind, t->layer);
		json_t *r = json_pack("{s:s, s:I, s:f, s:I, s:I, s:I}", "method",
		                      o->reconstruct ? "reconstruct" : "end-to-end", "steps",
		                      (json_int_t)o->steps, "lr", o->lr, "batch", (json_int_t)o->batch,
		                      "seqlen", (json_int_t)o->seqlen, "seed", (json_int_t)o->seed);
		int adapted = 0;
		for (size_t k = 0; k < tr->npar; k++)
			if (tr->par[k].lora && tr->par[k].kind == t->kind && tr->par[k].layer == t->layer)
				adapted = 1;
		if (o->early_exit) { /* what --exit-policy and lm-eval find as the exits */
			json_t *ex = json_array(), *w = json_array();
			for (size_t k = 0; k < o->nexits; k++)
				json_array_append_new(ex, json_integer(o->exits[k] + 1));
			for (size_t k = 0; k <= o->nexits; k++)
				json_array_append_new(w, json_real(o->exit_w[k]));
			json_object_set_new(r, "exits", ex);
			json_object_set_new(r, "exit_weights", w);
		}
		if (adapted) {
			int head = !lm_opt_is_linear(t->kind);
			json_object_set_new(r, "adapter", json_string(lm_lora_name(head ? LM_LORA_STD : o->to.lora)));
			json_object_set_new(r, "rank", json_integer(o->to.rank));
			if (head || o->to.lora != LM_LORA_SCALE)
				json_object_set_new(r, "alpha", json_real(o->to.alpha));
		}
		json_object_set_new(a, "retrain", r);
	}
}

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

/* a multi-exit step: the exits and the final output (when its weight is not 0), each
 * one's loss shown after the weighted sum */
static int exit_step(struct lm_train *tr, const struct opts *o, const int32_t *batch, size_t B,
                     size_t T, double *loss, struct lm_progress *pg)
{
	static char shown[512];
	int *ex = xmalloc((o->nexits + 1) * sizeof *ex);
	float *w = xmalloc((o->nexits + 1) * sizeof *w);
	double *el = xmalloc((o->nexits + 1) * sizeof *el);
	size_t n = 0, k = 0;
	for (size_t i = 0; i < o->nexits; i++)
		ex[n] = o->exits[i], w[n++] = o->exit_w[i];
	if (o->exit_w[o->nexits] > 0)
		ex[n] = (int)tr->cfg.num_layers - 1, w[n++] = o->exit_w[o->nexits];
	struct lm_train_loss ls = {.exits = ex, .exit_w = w, .nexits = n, .exit_loss = el};
	int rc = lm_train_step_loss(tr, batch, B, T, &ls, loss);
	k += (size_t)snprintf(shown, sizeof shown, "exits");
	for (size_t i = 0; rc == 0 && i < n && k < sizeof shown; i++)
		k += (size_t)snprintf(shown + k, sizeof shown - k, " %s%.3f",
		                      i == o->nexits ? "final " : "", el[i]);
	pg->extra = shown;
	free(ex), free(w), free(el);
	return rc;
}

static void end_to_end(struct lm_model_stream *ms, struct lm_model *m, struct opts *o,
                       struct lm_progress *pg)
{
	size_t T = (size_t)o->seqlen, B = (size_t)o->batch, n = 0, ne = 0, We = 0;
	int32_t *ids = load_ids(o->data, ms, &n), *eids = NULL, *batch;
	struct lm_train tr;
	struct lm_rng rng;
	double last = NAN, tokens = 0;
	long last_step = -1;

	if (n < T)
		die("%s: %zu tokens, fewer than one window of %zu", o->data, n, T);
	if (o->eval) {
		eids = load_ids(o->eval, ms, &ne);
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
	                 o->steps);
	lm_rng_seed(&rng, (uint64_t)o->seed);
	batch = xmalloc(B * T * sizeof *batch);
	long warm = (long)ceil(o->warmup * (double)o->steps);
	if (eids)
		lm_progress_note(pg, "step 0: validation loss %.6f", eval_loss(&tr, eids, We, B, T));
	/* from here on: -v lines, the log, and a terminal's progress line */
	pg->t0 = lm_now(), pg->total = o->steps;
	for (long s = 0; s < o->steps; s++) {
		double loss, lr = lm_lr_at(s, o->steps, warm, o->lr, o->cosine);
		for (size_t b = 0; b < B; b++) {
			size_t at = (size_t)lm_rng_below(&rng, n - T + 1);
			memcpy(batch + b * T, ids + at, T * sizeof *batch);
		}
		lm_train_zero_grad(&tr);
		if ((o->early_exit ? exit_step(&tr, o, batch, B, T, &loss, pg) : lm_train_step(&tr, batch, B, T, &loss)) < 0)
			die_lm("training");
		double gn = lm_train_update(&tr, &o->adam, o->clip, loss, lr, s, last, last_step, NULL);
		last = loss, last_step = s;
		tokens += (double)(B * T);
		lm_progress_step(pg, NULL, s + 1, loss, lr, gn, tokens);
		if (eids && o->eval_every && (s + 1) % o->eval_every == 0 && s + 1 < o->steps)
			lm_progress_note(pg, "step %ld: validation loss %.6f", s + 1,
			                 eval_loss(&tr, eids, We, B, T));
	}
	/* the last validation is the trained model's before the adapters are merged: what
	 * lm-eval says of the output must agree (the merge is exact up to rounding) */
	if (eids)
		lm_progress_note(pg, "step %lld: validation loss %.6f", o->steps,
		                 eval_loss(&tr, eids, We, B, T));
	if (lm_train_merge(&tr) < 0)
		die("training: %s; nothing written", lm_errmsg());
	mark_attrs(ms, &tr, o, -1);
	lm_train_commit(&tr);
	lm_train_free(&tr);
	free(batch), free(ids), free(eids);
}

/* ---- layer-wise reconstruction ---- */

static int same_shape(const struct lm_opt_config *a, const struct lm_opt_config *b)
{
	return a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
	       a->num_layers == b->num_layers && a->num_heads == b->num_heads &&
	       a->ffn_dim == b->ffn_dim && a->word_embed_proj_dim == b->word_embed_proj_dim &&
	       a->pre_ln == b->pre_ln && a->max_positions == b->max_positions;
}

static void reconstruct(struct lm_model_stream *ms, struct lm_model *m, struct opts *o,
                        struct lm_progress *pg)
{
	const struct lm_opt_config *c = &m->cfg;
	size_t T = (size_t)o->seqlen, B = (size_t)o->batch, C = (size_t)c->hidden_size, n = 0;
	int32_t *ids = load_ids(o->calib, ms, &n);
	struct lm_model_stream tms;
	struct lm_model tm;
	struct lm_fwd fw;
	struct lm_reader *trd;
	size_t K = n / T, xn;
	float *X, *Y, *xb, *yb;
	double tokens = 0;

	if (K == 0)
		die("%s: %zu tokens, fewer than one window of %zu", o->calib, n, T);
	if ((size_t)o->nsamples < K)
		K = (size_t)o->nsamples;
	if (B > K)
		B = K;
	trd = lm_in_open(o->teacher);
	lm_reader_set_verify(trd, o->verify);
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
	                 "layer", K, T, o->steps);
	long warm = (long)ceil(o->warmup * (double)o->steps);
	pg->t0 = lm_now(), pg->total = o->steps;
	for (int l = 0; l < c->num_layers; l++) {
		struct lm_train tr;
		struct lm_train_opts lo = o->to;
		char what[32];
		double last = NAN, mse0 = NAN, mse = NAN;
		long last_step = -1;
		snprintf(what, sizeof what, "layer %d", l);
		/* targets: the dense teacher layer on the inputs from the reconstructed layers */
		if (lm_ms_load(&tms, &tm, l) < 0)
			die_lm(o->teacher);
		memcpy(Y, X, xn * sizeof *Y);
		for (size_t w0 = 0; w0 < K; w0 += B) {
			size_t nb = K - w0 < B ? K - w0 : B;
			if (lm_forward_layer(&fw, &tm.layers[l], l, Y + w0 * T * C, nb, T) < 0)
				die_lm("teacher forward");
		}
		lm_layer_free(&tm.layers[l]);
		lo.layer = l;
		if (lm_train_init(&tr, m, &lo, B, T) < 0)
			die_lm(lm_reader_name(ms->rd));
		pg->t0 = lm_now(), tokens = 0;
		for (long s = 0; s < o->steps; s++) {
			double lr = lm_lr_at(s, o->steps, warm, o->lr, o->cosine);
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
			double gn = lm_train_update(&tr, &o->adam, o->clip, mse, lr, s, last, last_step, what);
			last = mse, last_step = s;
			tokens += (double)(B * T);
			lm_progress_step(pg, what, s + 1, mse, lr, gn, tokens);
		}
		if (lm_train_merge(&tr) < 0)
			die("%s: %s; nothing written", what, lm_errmsg());
		mark_attrs(ms, &tr, o, l);
		lm_train_commit(&tr);
		lm_train_free(&tr);
		/* the next layer's inputs come from this reconstructed layer */
		for (size_t w0 = 0; w0 < K; w0 += B) {
			size_t nb = K - w0 < B ? K - w0 : B;
			if (lm_forward_layer(&fw, &m->layers[l], l, X + w0 * T * C, nb, T) < 0)
				die_lm("forward");
		}
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

/* ---- the exit policy: PPO on decoding episodes (GREEN-CODE); the model is unchanged ---- */

static void episode_progress(void *ctx, size_t done, size_t total)
{
	struct lm_progress *pg = ctx;
	if (pg->tty) {
		fprintf(stderr, "\r%s: episode %zu/%zu   ", argv0, done, total);
		if (done == total)
			fputc('\n', stderr);
	}
}

static void ppo_progress(void *ctx, const struct lm_ppo_report *r)
{
	static char shown[256];
	struct lm_progress *pg = ctx;
	snprintf(shown, sizeof shown, "value_loss %.5f reward %.4f exit %.3f entropy %.3f kl %.5f",
	         r->v_loss, r->reward, r->exit_rate, r->entropy, r->approx_kl);
	pg->extra = shown;
	lm_progress_step(pg, "policy", r->steps, r->pg_loss, r->lr, r->grad_norm, (double)r->steps);
}

static void exit_policy(struct lm_model_stream *ms, struct lm_model *m, struct opts *o,
                        struct lm_progress *pg)
{
	const int L = (int)m->cfg.num_layers;
	const size_t ntok = 15, neps = (size_t)o->episodes; /* GREEN-CODE's episode: 15 tokens */
	size_t n = 0;
	int32_t *ids = load_ids(o->data, ms, &n), *pr;
	struct lm_policy_episode *ep;
	struct lm_policy p;
	struct lm_ppo po;
	float *st;
	double ml, ag;
	char shown[256];
	size_t k = 0;

	for (size_t i = 0; i < o->nexits && k < sizeof shown; i++)
		k += (size_t)snprintf(shown + k, sizeof shown - k, "%s%d", i ? "," : "", o->exits[i] + 1);
	lm_progress_note(pg, "exit policy: %zu episodes of %zu tokens (prompts from windows of %lld "
	                 "tokens), exits after layers %s of %d", neps, ntok, o->seqlen, shown, L);
	double t0 = lm_now();
	if (lm_ee_episodes(m, ids, n, (size_t)o->seqlen, neps, ntok, o->exits, o->nexits,
	                   (uint64_t)o->seed, &ep, &st, &pr, episode_progress, pg) < 0)
		die_lm(o->data);
	lm_progress_note(pg, "episodes decoded in %.1f s", lm_now() - t0);
	if (lm_policy_init(&p, (size_t)m->cfg.hidden_size, (size_t)o->policy_hidden, L, o->exits,
	                   o->nexits, (uint64_t)o->seed) < 0)
		die_lm("exit policy");
	lm_ppo_defaults(&po);
	po.total = o->policy_steps, po.lr = o->lr, po.seed = (uint64_t)o->seed;
	pg->t0 = lm_now();
	pg->total = (long)(((size_t)po.total + po.n_steps - 1) / po.n_steps * po.n_steps);
	if (lm_policy_train(&p, ep, neps, &po, ppo_progress, pg) < 0)
		die("exit policy: %s; nothing written", lm_errmsg());
	pg->extra = NULL;
	lm_policy_score(&p, ep, neps, 0.5, &ml, &ag);
	lm_progress_note(pg, "policy on its episodes at threshold 0.5: mean exit layer %.3f of %d, "
	                 "%.1f%% of tokens the full model's (the oracle that keeps them all: %.3f)", ml,
	                 L, 100 * ag, lm_policy_oracle(ep, neps, o->exits, o->nexits, L));
	json_t *info = json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:I, s:I}", "algorithm", "ppo",
	                         "reward", "green-code", "episodes", (json_int_t)neps,
	                         "episode_tokens", (json_int_t)ntok, "steps", (json_int_t)po.total,
	                         "lr", po.lr, "seqlen", (json_int_t)o->seqlen, "seed",
	                         (json_int_t)o->seed);
	if (lm_policy_save(ms, &p, info) < 0)
		die_lm("exit policy");
	json_decref(info);
	lm_policy_free(&p);
	free(ep), lm_free(st), free(pr), free(ids);
}

/* ---- options ---- */

/* the exits and their weights, checked against the model (exit 2 on a bad one) */
static void exit_args(struct opts *o, const struct lm_model_stream *ms)
{
	const int L = (int)ms->h.cfg.num_layers;
	const char *whose = o->exits_arg ? "--exits" : "the exits the stream records";
	if (L < 2)
		edie(2, "a model of %d layer has no early exits", L);
	if (!o->exits && o->exit_policy)
		o->exits = lm_ee_stream_exits(ms, &o->nexits);
	if (!o->exits) {
		whose = "--exits";
		o->nexits = (size_t)L - 1;
		o->exits = xmalloc(o->nexits * sizeof *o->exits);
		for (int i = 0; i < L - 1; i++)
			o->exits[i] = i;
	}
	if (lm_ee_check_exits(o->exits, o->nexits, L) < 0)
		edie(2, "%s: %s", whose, lm_errmsg());
	o->exit_w = xmalloc((o->nexits + 1) * sizeof *o->exit_w);
	if (!o->exit_w_arg) {
		lm_ee_default_weights(o->exits, o->nexits, L, o->exit_w);
		return;
	}
	size_t n;
	double *w = lm_ee_parse_list(o->exit_w_arg, &n), sum = 0;
	if (!w)
		edie(2, "--exit-weights: %s", lm_errmsg());
	if (n != o->nexits + 1)
		edie(2, "--exit-weights: %zu weights for %zu exits and the final output (give %zu)", n,
		     o->nexits, o->nexits + 1);
	for (size_t i = 0; i < n; i++) {
		if (w[i] < 0 || w[i] > 1e6)
			edie(2, "--exit-weights: %g is not a weight in [0, 1e6]", w[i]);
		o->exit_w[i] = (float)w[i], sum += w[i];
	}
	free(w);
	if (sum <= 0)
		edie(2, "--exit-weights: all zero");
}

static int rank_arg(const char *s, const char *what)
{
	return (int)estrtoll(s, 1, 1 << 20, what);
}

int main(int argc, char **argv)
{
	enum {
		O_PERP = 256, O_FULL, O_TRAIN, O_LORA, O_MLORA, O_SLORA, O_ALPHA, O_HEAD, O_EVAL,
		O_EVERY, O_EWIN, O_WARM, O_SCHED, O_B1, O_B2, O_EPS, O_WD, O_CLIP, O_DROP, O_SEED,
		O_RECON, O_TEACHER, O_NSAMP, O_LOG, O_NOVERIFY,
		O_EE, O_EXITS, O_EXITW, O_EPOL, O_EPIS, O_PSTEPS, O_PHID,
	};
	static const struct option lopts[] = {
		{"perp", no_argument, 0, O_PERP}, {"full", no_argument, 0, O_FULL},
		{"train", required_argument, 0, O_TRAIN}, {"lora", required_argument, 0, O_LORA},
		{"mask-lora", required_argument, 0, O_MLORA}, {"scale-lora", required_argument, 0, O_SLORA},
		{"lora-alpha", required_argument, 0, O_ALPHA}, {"lora-head", no_argument, 0, O_HEAD},
		{"data", required_argument, 0, 'd'}, {"seqlen", required_argument, 0, 's'},
		{"batch", required_argument, 0, 'b'}, {"steps", required_argument, 0, 'n'},
		{"eval", required_argument, 0, O_EVAL}, {"eval-every", required_argument, 0, O_EVERY},
		{"eval-windows", required_argument, 0, O_EWIN}, {"lr", required_argument, 0, 'l'},
		{"warmup", required_argument, 0, O_WARM}, {"schedule", required_argument, 0, O_SCHED},
		{"beta1", required_argument, 0, O_B1}, {"beta2", required_argument, 0, O_B2},
		{"eps", required_argument, 0, O_EPS}, {"weight-decay", required_argument, 0, O_WD},
		{"clip", required_argument, 0, O_CLIP}, {"dropout", required_argument, 0, O_DROP},
		{"seed", required_argument, 0, O_SEED}, {"reconstruct", no_argument, 0, O_RECON},
		{"teacher", required_argument, 0, O_TEACHER}, {"calib", required_argument, 0, 'c'},
		{"nsamples", required_argument, 0, O_NSAMP}, {"output", required_argument, 0, 'o'},
		{"force", no_argument, 0, 'f'}, {"log", required_argument, 0, O_LOG},
		{"threads", required_argument, 0, 'j'}, {"no-verify", no_argument, 0, O_NOVERIFY},
		{"quiet", no_argument, 0, 'q'}, {"verbose", no_argument, 0, 'v'},
		{"help", no_argument, 0, 'h'},
		{"early-exit", no_argument, 0, O_EE}, {"exits", required_argument, 0, O_EXITS},
		{"exit-weights", required_argument, 0, O_EXITW}, {"exit-policy", no_argument, 0, O_EPOL},
		{"episodes", required_argument, 0, O_EPIS}, {"policy-steps", required_argument, 0, O_PSTEPS},
		{"policy-hidden", required_argument, 0, O_PHID},
		{"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
	struct opts o = {.batch = 8, .steps = 200, .eval_windows = 8, .nsamples = 128, .lr = -1,
	                 .warmup = 0.1, .clip = 1.0, .verify = 1,
	                 .adam = {0.9, 0.999, 1e-8, 0.0},
	                 .episodes = 256, .policy_steps = 200000, .policy_hidden = 64};
	int policy_opt = 0;
	struct lm_model_stream ms;
	struct lm_model m;
	struct lm_reader *rd;
	struct lm_out out;
	struct lm_progress pg = {0};
	int c, nlora = 0;

	o.to.layer = -1;
	lm_prog_init(argc, argv);
	o.globs = xcalloc((size_t)argc, sizeof *o.globs);
	while ((c = getopt_long(argc, argv, "d:s:b:n:l:c:o:fj:qvhV", lopts, NULL)) != -1) {
		switch (c) {
		case O_PERP: o.to.perp = 1; break;
		case O_FULL: o.to.full = 1; break;
		case O_TRAIN: o.globs[o.nglobs++] = optarg; break;
		case O_LORA: o.to.lora = LM_LORA_STD, o.to.rank = rank_arg(optarg, "--lora"), nlora++; break;
		case O_MLORA: o.to.lora = LM_LORA_MASK, o.to.rank = rank_arg(optarg, "--mask-lora"), nlora++; break;
		case O_SLORA: o.to.lora = LM_LORA_SCALE, o.to.rank = rank_arg(optarg, "--scale-lora"), nlora++; break;
		case O_ALPHA: o.to.alpha = estrtod(optarg, 1e-12, 1e12, "--lora-alpha"), o.alpha_set = 1; break;
		case O_HEAD: o.to.lora_head = 1; break;
		case 'd': o.data = optarg; break;
		case 's': o.seqlen = estrtoll(optarg, 2, 1 << 20, "--seqlen"); break;
		case 'b': o.batch = estrtoll(optarg, 1, 1 << 16, "--batch"); break;
		case 'n': o.steps = estrtoll(optarg, 1, 1LL << 40, "--steps"); break;
		case O_EVAL: o.eval = optarg; break;
		case O_EVERY: o.eval_every = estrtoll(optarg, 1, 1LL << 40, "--eval-every"); break;
		case O_EWIN: o.eval_windows = estrtoll(optarg, 1, 1LL << 40, "--eval-windows"); break;
		case 'l': o.lr = estrtod(optarg, 0, 1e300, "--lr"); break;
		case O_WARM: o.warmup = estrtod(optarg, 0, 1, "--warmup"); break;
		case O_SCHED:
			if (!strcmp(optarg, "cosine"))
				o.cosine = 1;
			else if (strcmp(optarg, "linear"))
				edie(2, "--schedule: '%s' is not linear or cosine", optarg);
			break;
		case O_B1: o.adam.beta1 = estrtod(optarg, 0, 0.999999999, "--beta1"); break;
		case O_B2: o.adam.beta2 = estrtod(optarg, 0, 0.999999999, "--beta2"); break;
		case O_EPS: o.adam.eps = estrtod(optarg, 0, 1, "--eps"); break;
		case O_WD: o.adam.weight_decay = estrtod(optarg, 0, 1e6, "--weight-decay"); break;
		case O_CLIP: o.clip = estrtod(optarg, 0, 1e300, "--clip"); break;
		case O_DROP: o.dropout = estrtod(optarg, 0, 0.99, "--dropout"), o.dropout_set = 1; break;
		case O_SEED: o.seed = estrtoll(optarg, 0, 1LL << 62, "--seed"); break;
		case O_RECON: o.reconstruct = 1; break;
		case O_TEACHER: o.teacher = optarg; break;
		case 'c': o.calib = optarg; break;
		case O_NSAMP: o.nsamples = estrtoll(optarg, 1, 1LL << 40, "--nsamples"); break;
		case 'o': o.output = optarg; break;
		case 'f': o.force = 1; break;
		case O_LOG: o.log = optarg; break;
		case 'j': o.threads = (int)estrtoll(optarg, 0, 1024, "--threads"); break;
		case O_NOVERIFY: o.verify = 0; break;
		case 'q': o.quiet = 1; break;
		case 'v': o.verbose = 1; break;
		case O_EE: o.early_exit = 1; break;
		case O_EXITS:
			free(o.exits);
			if (!(o.exits = lm_ee_parse_exits(optarg, &o.nexits)))
				edie(2, "--exits: %s", lm_errmsg());
			o.exits_arg = optarg;
			break;
		case O_EXITW: o.exit_w_arg = optarg; break;
		case O_EPOL: o.exit_policy = 1; break;
		case O_EPIS: o.episodes = estrtoll(optarg, 1, 1 << 24, "--episodes"), policy_opt = 1; break;
		case O_PSTEPS: o.policy_steps = estrtoll(optarg, 1, 1LL << 40, "--policy-steps"), policy_opt = 1; break;
		case O_PHID: o.policy_hidden = estrtoll(optarg, 1, LM_POLICY_MAX_HIDDEN, "--policy-hidden"), policy_opt = 1; break;
		case 'h': lm_usage(usage_text, 0);
		case 'V': puts("lm-retrain " LM_VERSION); return 0;
		default: lm_bad_option(usage_text);
		}
	}
	if (argc - optind > 1)
		lm_usage(usage_text, 2);
	if (o.early_exit && o.exit_policy)
		edie(2, "--early-exit fine-tunes the model, --exit-policy trains its policy: one at a time");
	if (o.exits_arg && !o.early_exit && !o.exit_policy)
		edie(2, "--exits is for --early-exit or --exit-policy");
	if (o.exit_w_arg && !o.early_exit)
		edie(2, "--exit-weights is for --early-exit");
	if (policy_opt && !o.exit_policy)
		edie(2, "--episodes, --policy-steps and --policy-hidden are for --exit-policy");
	if (o.exit_policy && (o.to.perp || o.to.full || o.nglobs || o.to.lora || o.reconstruct))
		edie(2, "--exit-policy trains only the policy: no --perp, --full, --train, LoRA or --reconstruct");
	if ((o.early_exit || o.exit_policy) && o.reconstruct)
		edie(2, "--early-exit trains end to end: not with --reconstruct");
	if (o.early_exit && !o.to.perp && !o.to.full && !o.nglobs && !o.to.lora)
		o.to.full = 1; /* GREEN-CODE fine-tunes every weight */
	if (!o.exit_policy && !o.to.perp && !o.to.full && !o.nglobs && !o.to.lora)
		edie(2, "nothing to train: give --perp, --full, --train GLOB or a LoRA kind (see --help)");
	if (nlora > 1)
		edie(2, "--lora, --mask-lora and --scale-lora exclude each other");
	if (o.to.lora_head && !o.to.lora)
		edie(2, "--lora-head needs a rank: give --lora, --mask-lora or --scale-lora");
	if (o.reconstruct) {
		if (!o.teacher || !o.calib)
			edie(2, "--reconstruct needs --teacher STREAM and -c FILE");
		if (o.data || o.eval)
			edie(2, "--reconstruct trains on -c FILE; -d and --eval are for end-to-end training");
		if (o.to.lora_head)
			edie(2, "--lora-head: the LM head is not part of a layer (--reconstruct)");
	} else if (!o.data) {
		edie(2, "no training data: give -d FILE (or --reconstruct)");
	}
	if (o.teacher && !o.reconstruct)
		edie(2, "--teacher is for --reconstruct");
	if (o.lr < 0)
		o.lr = o.exit_policy ? 3e-4 : o.to.full ? 1e-4 : 1e-3;
	if (!o.alpha_set)
		o.to.alpha = 2.0 * o.to.rank;
	o.to.globs = o.globs, o.to.nglobs = o.nglobs, o.to.seed = (uint64_t)o.seed;

	lm_cli_threads(o.threads, o.verbose);
	/* the output is checked (terminal, path) now, and written only at the very end */
	lm_out_open(&out, o.output, o.force);
	rd = lm_in_open(optind < argc ? argv[optind] : NULL);
	lm_reader_set_verify(rd, o.verify);
	if (lm_ms_open(&ms, rd) < 0)
		die_lm(lm_reader_name(rd));
	const struct lm_opt_config *cfg = &ms.h.cfg;
	if (!o.seqlen)
		o.seqlen = cfg->max_positions < 512 ? cfg->max_positions : 512;
	if (o.seqlen > cfg->max_positions)
		edie(2, "--seqlen %lld exceeds the model's %lld positions", o.seqlen,
		     (long long)cfg->max_positions);
	o.to.dropout = o.dropout_set ? o.dropout : cfg->dropout;
	if (o.early_exit || o.exit_policy)
		exit_args(&o, &ms);
	if (lm_model_init(&m, cfg) < 0 || lm_ms_load_all(&ms, &m) < 0)
		die_lm(lm_reader_name(rd));

	lm_progress_open(&pg, o.log, o.verbose, o.quiet);
	if (o.exit_policy)
		exit_policy(&ms, &m, &o, &pg);
	else if (o.reconstruct)
		reconstruct(&ms, &m, &o, &pg);
	else
		end_to_end(&ms, &m, &o, &pg);
	/* a policy learnt on the model before this fine-tuning would decide on other states */
	if (o.early_exit && lm_ms_drop_extras(&ms, LM_POLICY_PREFIX))
		lm_progress_note(&pg, "dropped the stream's exit policy (trained for the model before "
		                 "this fine-tuning): train it again with --exit-policy");

	lm_write_model(&ms, &m, &out, argc, argv);
	if (pg.log && pg.log != stderr && fclose(pg.log) == EOF)
		die("%s: write error:", o.log);
	lm_model_free(&m);
	lm_ms_close(&ms);
	lm_reader_close(rd);
	free(o.globs);
	free(o.exits), free(o.exit_w);
	return 0;
}
