/* embedtrain.c: lm-embed's training modes, --contrastive and --tune-encoder, each ending in
 * the trained model written with what changed recorded on its tensors (see embedtrain.h) */
#include "embedtrain.h"
#include "contrastive_train.h"
#include "modelio.h"
#include "rng.h"
#include "train.h"
#include "trainloop.h"
#include "util.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* record on every tensor that changed how (lm-info shows the attributes) */
static void mark_attrs(struct lm_model_stream *ms, const struct lm_train *tr,
                       const struct lm_embed_opts *o, long steps)
{
	const struct lm_embed_ctr_opts *c = &o->ct;
	for (size_t i = 0; i < ms->norder; i++) {
		const struct lm_opt_tensor *t = &ms->order[i];
		if (!lm_train_changes(tr, t->kind, t->layer))
			continue;
		json_t *r = json_pack("{s:s, s:I, s:f, s:I, s:f, s:b, s:f, s:I}", "data",
		                      c->unsup ? "unsupervised" : "supervised", "steps", (json_int_t)steps,
		                      "lr", c->lr, "pairs", (json_int_t)c->pairs, "temperature",
		                      c->temperature, "symmetric", c->symmetric, "dropout", c->dropout,
		                      "seed", (json_int_t)o->tc.seed);
		if (c->rank && lm_opt_is_linear(t->kind)) {
			json_object_set_new(r, "adapter", json_string("lora"));
			json_object_set_new(r, "rank", json_integer(c->rank));
			json_object_set_new(r, "alpha", json_real(c->alpha));
		}
		json_object_set_new(lm_ms_attrs(ms, t->kind, t->layer), "contrastive", r);
	}
}

/* QLoRA: an adapter merged into a packed (lm-quant) matrix leaves an f32 matrix that is
 * no longer on the quantization grid; it is written as f16 (train.h, lora_packed) and says
 * what it was */
static void unpack_merged(struct lm_model_stream *ms, struct lm_model *m)
{
	for (size_t i = 0; i < ms->norder; i++) {
		const struct lm_opt_tensor *t = &ms->order[i];
		struct lm_mat *mt = lm_model_mat(m, t->kind, t->layer);
		if (!lm_dtype_is_packed(ms->dtypes[i]) || !mt || lm_dtype_is_packed(mt->dtype))
			continue;
		json_t *a = json_object_get(lm_ms_attrs(ms, t->kind, t->layer), "contrastive");
		if (a)
			json_object_set_new(a, "unpacked_from", json_string(lm_dtype_name(ms->dtypes[i])));
		ms->dtypes[i] = LM_F16;
	}
}

/* the next P example rows of an endless sequence: the n examples in a new seeded order
 * every epoch (*at == n: the epoch is over), so every step has P examples */
static void next_rows(struct lm_rng *rng, size_t *order, size_t n, size_t *at, size_t *rows,
                      size_t P)
{
	for (size_t b = 0; b < P; b++) {
		if (*at == n) {
			for (size_t i = 0; i < n; i++)
				order[i] = i;
			for (size_t i = n - 1; i > 0; i--) {
				size_t j = (size_t)lm_rng_below(rng, i + 1), t = order[i];
				order[i] = order[j], order[j] = t;
			}
			*at = 0;
		}
		rows[b] = order[(*at)++];
	}
}

/* Train the loaded model on the examples d (path names them in messages); the loop is
 * lm-retrain's (schedule, clip, AdamW, progress); dies on failure, nothing written */
static void contrastive(const struct lm_embed_opts *o, const char *path,
                        const struct lm_ctr_data *d, struct lm_embed_model *em)
{
	const struct lm_embed_ctr_opts *co = &o->ct;
	struct lm_ctr c;
	struct lm_train tr;
	struct lm_progress pg = {0};
	struct lm_rng rng;
	struct lm_adamw adam = {0.9, 0.999, 1e-8, 0.0};
	struct lm_train_opts to = {.perp = co->perp, .full = co->full, .layer = -1,
	                           .dropout = co->dropout, .seed = o->tc.seed};
	double last = NAN, first_sum = 0, last_sum = 0, tokens = 0;
	long last_step = -1;

	if (co->rank)
		to.lora = LM_LORA_STD, to.rank = (int)co->rank, to.alpha = co->alpha;
	to.lora_packed = 1; /* QLoRA: see unpack_merged */
	if (d->n < 2)
		die("%s: one example: in-batch negatives need two or more", path);
	size_t P = (size_t)co->pairs < d->n ? (size_t)co->pairs : d->n;
	if (lm_ctr_init(&c, d, &em->m.cfg, em->tk, &o->ec, P, co->temperature, co->symmetric) < 0)
		die_lm(path);
	long per_epoch = (long)((d->n + P - 1) / P);
	long steps = co->steps ? co->steps : (long)co->epochs * per_epoch;
	lm_progress_open(&pg, co->log, o->fl.verbose, o->fl.quiet);
	if (lm_train_init(&tr, &em->m, &to, c.maxseq, c.T) < 0)
		die_lm(lm_reader_name(em->rd));
	lm_progress_note(&pg, "training %zu values in %zu tensors (%.0f MiB of gradients, moments and "
	                 "activations) on %zu %s examples (%zu hard negatives), %zu per step, "
	                 "%ld steps", lm_train_count(&tr), tr.npar,
	                 (double)lm_train_bytes(&tr) / 1048576.0, d->n,
	                 co->unsup ? "unsupervised" : "supervised", d->nhard, P, steps);

	size_t *order = xmalloc(d->n * sizeof *order), at = d->n, *rows = xmalloc(P * sizeof *rows);
	lm_rng_seed(&rng, o->tc.seed);
	long warm = (long)ceil(co->warmup * (double)steps), k10 = steps / 10 ? steps / 10 : 1;
	pg.t0 = lm_now(), pg.total = steps;
	for (long s = 0; s < steps; s++) {
		double loss, lr = lm_lr_at(s, steps, warm, co->lr, 0);
		next_rows(&rng, order, d->n, &at, rows, P);
		lm_train_zero_grad(&tr);
		if (lm_ctr_step(&c, &tr, rows, P, &loss) < 0)
			die_lm("training");
		double gn = lm_train_update(&tr, &adam, co->clip, loss, lr, s, last, last_step, NULL);
		last = loss, last_step = s;
		if (s < k10)
			first_sum += loss;
		if (s >= steps - k10)
			last_sum += loss;
		tokens += (double)c.tokens;
		lm_progress_step(&pg, NULL, s + 1, loss, lr, gn, tokens);
	}
	double secs = lm_now() - pg.t0;
	if (lm_train_merge(&tr) < 0)
		die("training: %s; nothing written", lm_errmsg());
	mark_attrs(&em->ms, &tr, o, steps);
	lm_train_commit(&tr);
	unpack_merged(&em->ms, &em->m);
	lm_train_free(&tr);
	if (!o->fl.quiet)
		fprintf(stderr, "%s: contrastive: %ld steps of %zu examples, loss %.4f (first %ld steps) "
		        "-> %.4f (last %ld); %.1f pairs/s\n", argv0, steps, P, first_sum / (double)k10, k10,
		        last_sum / (double)k10, k10, (double)steps * (double)P / secs);
	if (pg.log && pg.log != stderr && fclose(pg.log) == EOF)
		die("%s: write error:", co->log);
	free(order), free(rows);
	lm_ctr_free(&c);
}

/* ---- --tune-encoder: UPRISE's retriever, the encoder itself trained ---- */

/* share of the pairs sel [n] whose positive prompt is nearer (cosine) to the input than
 * every hard negative, with the model's embeddings */
static double ranked_first(const struct lm_embed_model *em, const struct lm_embed_cfg *ec,
                           const struct lm_task *task, const struct lm_embed_lines *L,
                           const struct lm_rtune_pairs *pr, const size_t *sel, size_t n)
{
	size_t H = pr->H, d = (size_t)em->m.cfg.word_embed_proj_dim, ok = 0;
	const char **t = xmalloc((n * (H + 2) + 1) * sizeof *t);
	float *z = xmalloc((n * (H + 2) + 1) * d * sizeof *z);
	for (size_t i = 0; i < n; i++) {
		size_t k = sel[i];
		t[i * (H + 2)] = task->it[pr->item[k]].input;
		t[i * (H + 2) + 1] = L->line[pr->pos[k]];
		for (size_t h = 0; h < H; h++)
			t[i * (H + 2) + 2 + h] = L->line[pr->neg[k * H + h]];
	}
	if (n && lm_embed_texts(&em->m, em->tk, ec, t, n * (H + 2), z, NULL, NULL) < 0)
		die_lm("retrieval check");
	for (size_t i = 0; i < n; i++) {
		const float *q = z + i * (H + 2) * d;
		double cp = lm_cosine(q, q + d, d), best = -2;
		for (size_t h = 0; h < H; h++) {
			double c = lm_cosine(q, q + (2 + h) * d, d);
			best = c > best ? c : best;
		}
		ok += cp > best;
	}
	free(t), free(z);
	return n ? (double)ok / (double)n : 0;
}

/* score the pool with the frozen model (lm_rtune's pairs), then train the model itself on
 * rows INPUT, POSITIVE, the H worst-scored prompts: one encoder for the inputs and the
 * prompts */
static void tune_encoder(struct lm_embed_opts *o, struct lm_embed_model *em)
{
	struct lm_embed_lines L;
	struct lm_task task;
	struct lm_rtune_pairs pr;
	struct lm_ctr_data d;
	int tty = !o->fl.quiet && isatty(2);

	lm_embed_lines_read(&L, o->file, 1, o->fl.quiet);
	if (lm_task_load(&task, o->tune_encoder) < 0)
		die_lm(o->tune_encoder);
	o->tc.progress = lm_embed_progress_line, o->tc.pctx = &tty;
	if (lm_rtune_pairs(&em->m, em->tk, &task, (const char *const *)L.input,
	                   (const char *const *)L.line, L.n, &o->tc, &pr) < 0)
		die_lm(o->tune_encoder);
	if (!o->fl.quiet)
		lm_embed_feedback_note(&pr.fb);
	/* every tenth pair held out (none when there are fewer than 10), as --tune does */
	size_t *held = xmalloc(pr.n * sizeof *held), *tr = xmalloc(pr.n * sizeof *tr), nh = 0, nt = 0;
	for (size_t i = 0; i < pr.n; i++) {
		if (pr.n >= 10 && i % 10 == 9)
			held[nh++] = i;
		else
			tr[nt++] = i;
	}
	/* every one of the H worst-scored prompts is a hard negative, as UPRISE's top_k */
	const char **a = xmalloc((nt + 1) * sizeof *a), **p = xmalloc((nt + 1) * sizeof *p);
	const char **h = xmalloc((nt * pr.H + 1) * sizeof *h);
	for (size_t i = 0; i < nt; i++) {
		a[i] = task.it[pr.item[tr[i]]].input;
		p[i] = L.line[pr.pos[tr[i]]];
		for (size_t j = 0; j < pr.H; j++)
			h[i * pr.H + j] = L.line[pr.neg[tr[i] * pr.H + j]];
	}
	lm_ctr_data_set(&d, a, p, h, pr.H, nt);
	double before = ranked_first(em, &o->ec, &task, &L, &pr, held, nh);
	double tbefore = ranked_first(em, &o->ec, &task, &L, &pr, tr, nt);
	contrastive(o, o->tune_encoder, &d, em);
	double after = ranked_first(em, &o->ec, &task, &L, &pr, held, nh);
	double tafter = ranked_first(em, &o->ec, &task, &L, &pr, tr, nt);
	if (!o->fl.quiet)
		fprintf(stderr, "%s: encoder tuned on %zu of %zu inputs with a correct prompt (%zu held "
		        "out); positive ranked first: held out %.1f%% -> %.1f%%, training %.1f%% -> "
		        "%.1f%%\n", argv0, pr.n, pr.inputs, nh, 100 * before, 100 * after, 100 * tbefore,
		        100 * tafter);
	free(a), free(p), free(h), free(held), free(tr);
	lm_ctr_data_free(&d);
	lm_rtune_pairs_free(&pr);
	lm_task_free(&task);
	lm_embed_lines_free(&L);
}

void lm_embed_train(struct lm_embed_opts *o, int argc, char **argv)
{
	struct lm_out out;
	struct lm_embed_model em;

	/* the output is checked (terminal, path) now, and written only at the very end */
	lm_out_open(&out, o->fl.out, o->fl.force);
	lm_embed_model_open(&em, o->model, o->fl.verify);
	if (o->tune_encoder) {
		tune_encoder(o, &em);
	} else {
		struct lm_ctr_data d;
		if (lm_ctr_load(&d, o->file, o->ct.unsup) < 0)
			die_lm(o->file);
		contrastive(o, o->file, &d, &em);
		lm_ctr_data_free(&d);
	}
	lm_write_model(&em.ms, &em.m, &out, argc, argv);
	lm_embed_model_close(&em);
}
