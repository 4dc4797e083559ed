/* unlearnrun.c: lm-unlearn's sets, its loop of steps and its output (see unlearnrun.h; the
 * algorithm is in methods/unlearn.c). */
#include "unlearnrun.h"
#include "textids.h"
#include "tokenizer.h"
#include "unlearn.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- data ---- */

static void load_set(struct lm_ul_set *s, const char *csv, const char *text, const char *qc,
                     const char *ac, const struct lm_unlearn_args *o,
                     const struct lm_model_stream *ms, struct lm_tokenizer **tk)
{
	if (csv) {
		if (!*tk && !(*tk = lm_ids_tokenizer(ms, "a question/answer file")))
			die_lm(lm_reader_name(ms->rd));
		if (lm_ul_load_qa(s, csv, qc, ac, *tk, ms->h.cfg.bos, (size_t)o->f.seqlen,
		                  o->skip_incomplete) < 0)
			die_lm(csv);
		if (s->skipped)
			warnf("%s: %zu rows without a question or an answer left out", csv, s->skipped);
		if (s->truncated)
			warnf("%s: %zu answers cut to %lld tokens (--seqlen)", csv, s->truncated, o->f.seqlen);
	} else {
		int32_t *ids;
		size_t n;
		if (lm_ids_load(text, ms, &ids, &n) < 0 ||
		    lm_ul_load_text(s, ids, n, (size_t)o->f.seqlen) < 0)
			die_lm(text);
		free(ids);
	}
}

/* ---- what the output records ---- */

static void mark_attrs(struct lm_model_stream *ms, const struct lm_train *tr,
                       const struct lm_unlearn_args *o, long steps)
{
	for (size_t i = 0; i < ms->norder; i++) {
		const struct lm_opt_tensor *t = &ms->order[i];
		if (!lm_train_changes(tr, t->kind, t->layer))
			continue;
		json_t *r = json_pack("{s:s, s:s, s:I, s:f, s:I}", "method",
		                      o->learn ? "learn" : "gradient-ascent", "forget",
		                      o->forget ? o->forget : o->forget_text, "steps", (json_int_t)steps,
		                      "lr", o->f.lr, "seed", (json_int_t)o->f.seed);
		if (o->retain || o->retain_text)
			json_object_set_new(r, "retain", json_string(o->retain ? o->retain : o->retain_text));
		if (!o->full) {
			json_object_set_new(r, "adapter", json_string(lm_lora_name(LM_LORA_STD)));
			json_object_set_new(r, "rank", json_integer(o->rank));
			json_object_set_new(r, "alpha", json_real(o->f.alpha));
		}
		json_object_set_new(lm_ms_attrs(ms, t->kind, t->layer), "unlearn", r);
	}
}

/* full training changes the model's layers in place: the frozen original is a copy of
 * them that shares everything else, which such a training must leave alone */
static void check_shared(const struct lm_train *tr)
{
	static const enum lm_opt_kind shared[] = {LM_T_EMBED_TOKENS, LM_T_EMBED_POS, LM_T_PROJECT_IN,
	                                          LM_T_PROJECT_OUT, LM_T_LM_HEAD};
	for (size_t i = 0; i < sizeof shared / sizeof *shared; i++)
		if (lm_train_changes(tr, shared[i], -1))
			die("internal: a tensor shared with the frozen model trains");
}

/* ---- the loop ---- */

static long run(struct lm_unlearn *u, struct lm_train *tr, const struct lm_unlearn_args *o,
                struct lm_progress *pg)
{
	struct lm_train_steps st = LM_TRAIN_STEPS_INIT;
	long s;
	double wsum = 0;
	/* the last stop_window forget losses: one batch says little about a large set */
	double *recent = xcalloc((size_t)o->stop_window, sizeof *recent);
	char extra[160];
	struct lm_ul_losses ls;

	pg->t0 = lm_now(), pg->total = o->f.steps, pg->extra = extra;
	for (s = 0; s < o->f.steps; s++) {
		double lr = lm_train_lr(&o->f, s);
		if (lm_ul_step(u, &ls) < 0)
			die_lm("training");
		snprintf(extra, sizeof extra, "forget %.4f", ls.forget);
		if (u->use_random)
			snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " random %.4f", ls.random);
		if (u->use_retain)
			snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " retain %.4f", ls.retain);
		size_t k = (size_t)(s % o->stop_window);
		wsum += ls.forget - recent[k], recent[k] = ls.forget;
		double mean = wsum / (double)(s + 1 < o->stop_window ? s + 1 : o->stop_window);
		/* a loss that is not finite goes on to the update, which stops the run */
		if (!o->learn && isfinite(ls.total) && s + 1 >= o->stop_window && mean > o->max_forget) {
			if (o->stop_window > 1)
				lm_progress_note(pg, "step %ld: mean forget loss of the last %lld steps %.4f "
				                 "exceeds %g: stopping", s + 1, o->stop_window, mean, o->max_forget);
			else
				lm_progress_note(pg, "step %ld: forget loss %.4f exceeds %g: stopping", s + 1,
				                 ls.forget, o->max_forget);
			break;
		}
		lm_train_steps_update(&st, tr, &o->f, pg, NULL, s, ls.total, lr, (double)ls.tokens);
	}
	if (pg->tty && s < o->f.steps && s > 0)
		fputc('\n', stderr);
	pg->extra = NULL;
	free(recent);
	return s;  /* updates made */
}

/* ---- the program ---- */

void lm_unlearn_run(struct lm_unlearn_args *o, const char *input, int argc, char **argv)
{
	struct lm_train_io io = {0};
	struct lm_model frozen;
	struct lm_tokenizer *tk = NULL;
	struct lm_ul_set fs, rs;
	struct lm_train tr;
	struct lm_unlearn u;
	struct lm_progress *pg = &io.pg;
	int have_frozen = 0;

	lm_train_io_open(&io, &o->f, input);
	lm_train_io_load(&io, &o->f);
	load_set(&fs, o->forget, o->forget_text, o->fq, o->fa, o, &io.ms, &tk);
	int retain = o->retain || o->retain_text;
	if (retain) {
		load_set(&rs, o->retain, o->retain_text, o->rq, o->ra, o, &io.ms, &tk);
		size_t ov = lm_ul_overlap(&fs, &rs);
		if (ov)
			warnf("%zu of the %zu forget %s also in the retain set", ov, fs.n,
			      fs.qa && rs.qa ? "questions are" : "sequences are (a shared run of 32 tokens)");
	}

	struct lm_ul_opts uo = {
		.w_forget = o->w_forget, .w_random = o->w_random, .w_retain = o->w_retain,
		.forget_batch = (size_t)o->f.batch, .retain_batch = (size_t)o->retain_batch,
		.nrandom = (size_t)o->nrandom, .maxlen = (size_t)o->f.seqlen, .retain_nll = o->retain_nll,
		.learn = o->learn, .seed = (uint64_t)o->f.seed};
	struct lm_train_opts to = {.full = o->full, .lora = o->full ? LM_LORA_NONE : LM_LORA_STD,
	                           .rank = (int)o->rank, .alpha = o->f.alpha, .dropout = o->f.dropout,
	                           .seed = (uint64_t)o->f.seed, .layer = -1};
	size_t B, T;
	lm_ul_shape(&fs, retain ? &rs : NULL, &uo, &B, &T);
	/* the frozen original: with LoRA, the model itself (its own weights do not change
	 * until the merge); with full training, a copy of the layers */
	int need_frozen = retain && o->w_retain > 0 && !o->retain_nll;
	if (need_frozen && o->full) {
		if (lm_ul_frozen_copy(&frozen, &io.m) < 0)
			die_lm("the frozen model");
		have_frozen = 1;
	}
	if (lm_train_init(&tr, &io.m, &to, B, T) < 0)
		die_lm(lm_reader_name(io.rd));
	if (have_frozen)
		check_shared(&tr);
	if (lm_ul_init(&u, &tr, need_frozen ? (have_frozen ? &frozen : &io.m) : NULL, &fs,
	               retain ? &rs : NULL, &uo) < 0)
		die_lm("training");
	lm_progress_note(pg, "%s %zu forget %s%s; training %zu values (%.0f MiB of gradients, "
	                 "moments and activations%s); batches up to %zu x %zu tokens, %lld steps",
	                 o->learn ? "learning" : "unlearning", fs.n, fs.qa ? "pairs" : "windows",
	                 retain ? (rs.qa ? " against retain pairs" : " against retain windows") : "",
	                 lm_train_count(&tr), (double)lm_train_bytes(&tr) / 1048576.0,
	                 have_frozen ? ", plus a frozen copy of the layers" : "", B, T, o->f.steps);
	if (have_frozen)
		lm_progress_note(pg, "frozen copy of the layers: %.1f MiB (embeddings and head shared)",
		                 (double)lm_ul_frozen_bytes(&frozen) / 1048576.0);

	long done = run(&u, &tr, o, pg);
	lm_progress_note(pg, "%ld optimizer steps%s", done,
	                 done < o->f.steps ? " (stopped early)" : "");
	if (lm_train_merge(&tr) < 0)
		die("training: %s; nothing written", lm_errmsg());
	mark_attrs(&io.ms, &tr, o, done);
	lm_train_commit(&tr);
	lm_ul_free(&u);
	lm_train_free(&tr);
	if (have_frozen)
		lm_ul_frozen_free(&frozen);

	lm_train_io_close(&io, &o->f, argc, argv);
	lm_ul_set_free(&fs);
	if (retain)
		lm_ul_set_free(&rs);
	lm_tokenizer_free(tk);
}
