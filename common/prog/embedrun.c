/* embedrun.c: lm-embed's embedding modes: a file's lines, or a prompt pool as a retrieval
 * index with a tuned or copied projection, written as a stream or as text (see embedrun.h) */
#include "embedrun.h"
#include "embstream.h"
#include "modelio.h"
#include "textids.h"
#include "textlines.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* lm_embed_lines_read's state while it goes through the file's lines */
struct line_reader {
	struct lm_embed_lines *L;
	const char *path;
	size_t skipped, first_skip;
};

static int take_line(void *ctx, char *p, size_t l, size_t lineno)
{
	struct line_reader *rd = ctx;
	struct lm_embed_lines *L = rd->L;
	if (lm_line_blank(p, l)) {
		if (!rd->skipped++)
			rd->first_skip = lineno;
		return 0;
	}
	if (!L->input) {
		L->line[L->n++] = p;
		return 1;
	}
	char *tab = strchr(p, '\t');
	if (!tab || tab == p || !tab[1] || strchr(tab + 1, '\t'))
		die("%s: line %zu: a pool line is INPUT<TAB>ANSWER (two non-empty fields)", rd->path,
		    lineno);
	*tab = 0;
	L->input[L->n] = p;
	/* the demonstration as it is prepended: "INPUT ANSWER" */
	char *d = xmalloc(strlen(p) + strlen(tab + 1) + 2);
	sprintf(d, "%s %s", p, tab + 1);
	L->line[L->n++] = d;
	return 1;
}

void lm_embed_lines_read(struct lm_embed_lines *L, const char *path, int pool, int quiet)
{
	struct line_reader rd = {L, path, 0, 0};
	size_t len;
	memset(L, 0, sizeof *L);
	/* "-" (allowed with --model): the lines come on standard input */
	if (!(L->text = lm_read_file(strcmp(path, "-") ? path : "/dev/stdin", (size_t)1 << 31, &len)))
		die_lm(path);
	/* named as on line 1 wherever it is: the lines are not counted yet (as it always was) */
	if (memchr(L->text, 0, len))
		die("%s: line %zu: NUL byte in a text line", path, (size_t)1);
	L->line = xmalloc((len / 2 + 2) * sizeof *L->line);
	L->input = pool ? xmalloc((len / 2 + 2) * sizeof *L->input) : NULL;
	int some = lm_text_lines(L->text, len, "non-empty lines", take_line, &rd) == 0;
	if (rd.skipped && !quiet)
		warnf("%s: skipped %zu empty line%s (first: line %zu); the output has one row per "
		      "non-empty line", path, rd.skipped, rd.skipped > 1 ? "s" : "", rd.first_skip);
	if (!some)
		die("%s: no non-empty lines", path);
}

void lm_embed_lines_free(struct lm_embed_lines *L)
{
	if (L->input)  /* a pool's lines are its demonstrations, made here */
		for (size_t i = 0; i < L->n; i++)
			free(L->line[i]);
	free(L->line);
	free(L->input);
	free(L->text);
}

void lm_embed_model_open(struct lm_embed_model *em, const char *path, int verify)
{
	em->rd = lm_in_open(path);
	lm_reader_set_verify(em->rd, verify);
	if (lm_ms_open(&em->ms, em->rd) < 0)
		die_lm(lm_reader_name(em->rd));
	if (!(em->tk = lm_ids_tokenizer(&em->ms, "lm-embed")))
		die_lm(lm_reader_name(em->rd));
	if (lm_model_init(&em->m, &em->ms.h.cfg) < 0 || lm_ms_load_all(&em->ms, &em->m) < 0)
		die_lm(lm_reader_name(em->rd));
}

void lm_embed_model_close(struct lm_embed_model *em)
{
	lm_tokenizer_free(em->tk);
	lm_model_free(&em->m);
	lm_ms_close(&em->ms);
	lm_reader_close(em->rd);
}

void lm_embed_progress_line(void *ctx, const char *what, size_t done, size_t total)
{
	if (!*(const int *)ctx)
		return;
	fprintf(stderr, "\r%s: %s %zu/%zu   ", argv0, what, done, total);
	if (done == total)
		fputc('\n', stderr);
}

static void embed_progress(void *ctx, size_t done, size_t total)
{
	lm_embed_progress_line(ctx, "embedded", done, total);
}

/* --projection: the tuned projection of index path, made by the same model */
static float *copy_projection(const char *path, const struct lm_model *m, uint32_t fingerprint)
{
	struct lm_emb p;
	if (lm_emb_read(&p, path) < 0)
		die_lm(NULL);
	if (!p.proj)
		die("%s: has no tuned projection (make it with lm-embed --pool --tune)", path);
	if (lm_emb_check_model(&p, &m->cfg, fingerprint) < 0)
		die_lm(path);
	float *proj = p.proj;
	p.proj = NULL;
	lm_emb_free(&p);
	return proj;
}

void lm_embed_feedback_note(const struct lm_rtune_feedback *fb)
{
	fprintf(stderr, "%s: the model's feedback: one random pool prompt right for %.1f%% of "
	        "%zu scored, the best-scored prompt for %.1f%% of %zu inputs (oracle); the prompt "
	        "changes the answer of %zu inputs\n", argv0,
	        fb->prompts ? 100.0 * (double)fb->right / (double)fb->prompts : 0.0, fb->prompts,
	        fb->inputs ? 100.0 * (double)fb->oracle / (double)fb->inputs : 0.0, fb->inputs,
	        fb->swayed);
}

/* --tune: UPRISE's projection for the pool's embeddings emb, and what it did on stderr */
static float *tune_projection(struct lm_embed_opts *o, const struct lm_embed_model *em,
                              const struct lm_embed_lines *L, const float *emb, int *tty)
{
	struct lm_task task;
	struct lm_rtune_report rep;
	float *proj;
	if (lm_task_load(&task, o->tune) < 0)
		die_lm(o->tune);
	o->tc.progress = lm_embed_progress_line, o->tc.pctx = tty;
	if (!(proj = lm_rtune(&em->m, em->tk, &o->ec, &task, (const char *const *)L->input,
	                      (const char *const *)L->line, emb, L->n, &o->tc, &rep)))
		die_lm(o->tune);
	if (!o->fl.quiet)
		lm_embed_feedback_note(&rep.fb);
	if (!o->fl.quiet && rep.held_out)
		fprintf(stderr, "%s: tuned on %zu of %zu inputs with a correct prompt (%zu held out); "
		        "loss %.4f -> %.4f; training positive ranked first %.1f%% -> %.1f%%; held-out "
		        "positive ranked first %.1f%% -> %.1f%%\n", argv0,
		        rep.pairs, rep.inputs, rep.held_out, rep.loss_first, rep.loss_last,
		        100 * rep.train_before, 100 * rep.train_after,
		        100 * rep.held_before, 100 * rep.held_after);
	else if (!o->fl.quiet)
		fprintf(stderr, "%s: tuned on %zu of %zu inputs with a correct prompt (too few to hold "
		        "any out); loss %.4f -> %.4f; training positive ranked first %.1f%% -> %.1f%%\n",
		        argv0, rep.pairs, rep.inputs, rep.loss_first, rep.loss_last,
		        100 * rep.train_before, 100 * rep.train_after);
	lm_task_free(&task);
	return proj;
}

static void write_tsv(const struct lm_emb *e)
{
	for (size_t i = 0; i < e->n; i++) {
		fputs(e->lines[i], stdout);
		for (size_t j = 0; j < e->d; j++)
			printf("%c%.9g", j ? ' ' : '\t', e->emb[i * e->d + j]);
		putchar('\n');
	}
	lm_fshut_stdout();
}

static void write_stream(const struct lm_embed_opts *o, const struct lm_header *h,
                         const struct lm_emb *e, int argc, char **argv)
{
	struct lm_out out;
	struct lm_writer *w;
	lm_out_open(&out, o->fl.out, o->fl.force);
	w = lm_writer_open(out.fd, out.name);
	if (lm_emb_write(w, h, e, argv0, argc, argv) < 0 || lm_writer_close(w) < 0)
		die_lm(out.name);
	lm_out_commit(&out);
}

void lm_embed_run(struct lm_embed_opts *o, int argc, char **argv)
{
	struct lm_embed_lines L;
	struct lm_embed_model em;
	struct lm_emb e = {0};
	int tty = !o->fl.quiet && isatty(2);

	lm_embed_lines_read(&L, o->file, o->pool, o->fl.quiet);
	lm_embed_model_open(&em, o->model, o->fl.verify);
	e.cfg = em.m.cfg;
	e.n = L.n, e.d = (size_t)em.m.cfg.word_embed_proj_dim;
	e.tmpl = (char *)(o->ec.tmpl ? o->ec.tmpl : LM_PROMPTEOL_TEMPLATE);
	e.demo = (char *)o->ec.demo, e.avg = o->ec.avg, e.verbatim = o->ec.verbatim;
	e.kind = o->pool ? "pool" : "lines";
	e.lines = L.line;
	if (lm_model_fingerprint(&em.m, &e.fingerprint) < 0)
		die_lm(lm_reader_name(em.rd));
	/* a bad --projection index is refused before minutes of embedding, not after */
	if (o->projection)
		e.proj = copy_projection(o->projection, &em.m, e.fingerprint);
	if (!(e.emb = lm_alloc(e.n * e.d * sizeof *e.emb)))
		die_lm("embeddings");
	if (lm_embed_texts(&em.m, em.tk, &o->ec, (const char *const *)L.line, L.n, e.emb,
	                   embed_progress, &tty) < 0)
		die_lm(o->file);
	if (o->tune)
		e.proj = tune_projection(o, &em, &L, e.emb, &tty);
	if (o->tsv)
		write_tsv(&e);
	else
		write_stream(o, &em.ms.h, &e, argc, argv);
	lm_free(e.emb);
	lm_free(e.proj);
	lm_embed_lines_free(&L);
	lm_embed_model_close(&em);
}
