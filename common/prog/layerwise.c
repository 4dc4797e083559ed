/* layerwise.c: the layer-by-layer calibrated driver of lm-prune and lm-quant (see layerwise.h) */
#include "layerwise.h"
#include "clock.h"
#include "gptq.h"
#include "hessian.h"
#include "kernels.h"
#include "util.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int lm_lw_option(int c, struct lm_lw_opts *o)
{
	switch (c) {
	case 'c': o->calib = optarg; return 1;
	case LM_OPT_NSAMPLES:
		o->nsamples = estrtoll(optarg, 1, 1 << 20, "--nsamples");
		o->nsamples_set = 1;
		return 1;
	case LM_OPT_SEQLEN: o->seqlen = estrtoll(optarg, 1, 1 << 20, "--seqlen"); return 1;
	case LM_OPT_BLOCK: o->blocksize = estrtoll(optarg, 1, 8192, "--blocksize"); return 1;
	case LM_OPT_DAMP: o->damp = estrtod(optarg, 0, 1e6, "--damp"); return 1;
	case LM_OPT_INCL: case LM_OPT_EXCL:
		if ((c == LM_OPT_INCL ? o->nincl : o->nexcl) >= LM_LW_MAXGLOB)
			edie(2, "at most %d --include and %d --exclude patterns", LM_LW_MAXGLOB, LM_LW_MAXGLOB);
		if (c == LM_OPT_INCL)
			o->incl[o->nincl++] = optarg;
		else
			o->excl[o->nexcl++] = optarg;
		return 1;
	case LM_OPT_COMPUTE: o->bf16 = lm_cli_compute_arg(optarg); return 1;
	}
	return 0;
}

void lm_lw_open(struct lm_layerwise *d, const char *path)
{
	lm_cli_compute(d->lo->bf16); /* after the program's usage checks */
	lm_cli_threads(d->cf->threads, d->cf->verbose);
	lm_out_open(&d->out, d->cf->out, d->cf->force);
	d->rd = lm_in_open(path);
	lm_reader_set_verify(d->rd, d->cf->verify);
	if (lm_ms_open(&d->ms, d->rd) < 0)
		die_lm(lm_reader_name(d->rd));
}

void lm_lw_select(struct lm_layerwise *d, const char *verb)
{
	const struct lm_lw_opts *o = d->lo;
	const struct lm_model_stream *ms = &d->ms;
	size_t nsel = 0;
	d->sel = xcalloc(ms->norder, 1);
	for (size_t i = 0; i < ms->norder; i++) {
		const struct lm_opt_tensor *t = &ms->order[i];
		int s = lm_opt_is_linear(t->kind);
		if (o->nincl) {
			s = 0;
			for (int k = 0; k < o->nincl && !s; k++)
				s = !fnmatch(o->incl[k], t->name, 0);
		}
		for (int k = 0; k < o->nexcl && s; k++)
			s = fnmatch(o->excl[k], t->name, 0) != 0;
		if (!s || (d->accept && !d->accept(d->ctx, t)))
			continue;
		d->sel[i] = 1;
		nsel++;
	}
	if (!nsel)
		edie(2, "%s: no tensor to %s (--include/--exclude select none)", lm_reader_name(ms->rd), verb);
}

void lm_lw_begin(struct lm_layerwise *d, int argc, char **argv)
{
	struct lm_lw_opts *o = d->lo;
	if (o->calib)
		d->ids = lm_cli_calib_ids(o->calib, &d->ms, &o->seqlen, &o->nsamples, o->nsamples_set);
	d->w = lm_writer_open(d->out.fd, d->out.name);
	if (lm_ms_write_start(&d->ms, d->w, argc, argv) < 0 || lm_model_init(&d->m, &d->ms.h.cfg) < 0)
		die_lm(NULL);
}

void lm_lw_end(struct lm_layerwise *d)
{
	if (lm_writer_close(d->w) < 0)
		die_lm(NULL);
	lm_out_commit(&d->out);
	free(d->ids);
	free(d->sel);
	lm_model_free(&d->m);
	lm_ms_close(&d->ms);
	lm_reader_close(d->rd);
}

void lm_lw_progress(const struct lm_layerwise *d, int done, int total, double t0)
{
	if (d->cf->quiet || !isatty(2))
		return;
	double el = lm_now() - t0, eta = done ? el / done * (total - done) : 0;
	fprintf(stderr, "\r%s: layer %d/%d, %.0f s elapsed, ETA %.0f s   ", argv0, done, total, el, eta);
	if (done == total)
		fputc('\n', stderr);
}

void lm_lw_load(struct lm_layerwise *d, int part)
{
	const int L = (int)d->ms.h.cfg.num_layers;
	if (!d->all_loaded && lm_ms_load(&d->ms, &d->m, part) < 0)
		die_lm(lm_reader_name(d->ms.rd));
	for (size_t i = 0; i < d->ms.norder; i++)
		if (d->sel[i] && lm_ms_part_of(&d->ms.order[i], L) == part && d->check)
			d->check(d->ctx, i);
}

void lm_lw_write(struct lm_layerwise *d, int part)
{
	if (lm_ms_write_part(&d->ms, &d->m, part, d->w) < 0)
		die_lm(NULL);
}

/* the selected tensors of a part, without calibration */
static void plain_part(struct lm_layerwise *d, int part)
{
	const int L = (int)d->ms.h.cfg.num_layers;
	for (size_t i = 0; i < d->ms.norder; i++)
		if (d->sel[i] && lm_ms_part_of(&d->ms.order[i], L) == part)
			d->tensor(d->ctx, i, NULL);
}

/* layer l: one dense pass for the statistics of its selected tensors' inputs, then each
 * input group's tensors are worked on with them */
static void calibrated_layer(struct lm_layerwise *d, struct lm_calib *cal, int l)
{
	const struct lm_opt_config *cfg = &d->ms.h.cfg;
	struct lm_layer_stats st;
	struct lm_layer *ly = &d->m.layers[l];
	int want[LM_G_COUNT] = {0};

	for (size_t i = 0; i < d->ms.norder; i++)
		if (d->sel[i] && d->ms.order[i].layer == l)
			want[lm_calib_group(d->ms.order[i].kind)] = 1;
	if (lm_layer_stats_init(&st, cfg, want, d->hessian, cal->T) < 0 ||
	    lm_calib_observe(cal, ly, l, lm_layer_stats_hook, &st) < 0)
		die_lm("calibration");
	for (int g = 0; g < LM_G_COUNT; g++) {
		struct lm_lw_group grp = {.sumsq = st.sumsq[g]};
		float *U = NULL;
		unsigned char *dead = NULL;
		int *perm = NULL;
		size_t n = st.cols[g];
		if (!st.want[g])
			continue;
		if (d->hessian) {
			float *H;
			if (lm_hessian_finish(&st.h[g]) < 0 || !(U = lm_alloc_huge(n * n * sizeof *U)))
				die("layer %d: %s", l, lm_errmsg());
			dead = xmalloc(n);
			H = st.h[g].H;
			if (d->act_order) {
				/* U (and dead) of the permuted Hessian: the walk's order (gptq.h); U's
				 * buffer holds the permuted H until the factorization reads it */
				perm = xmalloc(n * sizeof *perm);
				if (lm_gptq_act_order(H, n, perm) < 0)
					die("layer %d: %s", l, lm_errmsg());
				lm_gptq_permute_h(U, H, n, perm);
				memcpy(H, U, n * n * sizeof *H);
			}
			if (lm_hessian_inv_chol(H, n, d->lo->damp, dead, U) < 0)
				die("layer %d: %s", l, lm_errmsg());
			lm_hessian_free(&st.h[g]);   /* U replaces it: one n x n less at the peak */
		}
		grp.U = U, grp.dead = dead, grp.perm = perm;
		for (size_t i = 0; i < d->ms.norder; i++) {
			const struct lm_opt_tensor *t = &d->ms.order[i];
			if (d->sel[i] && t->layer == l && lm_calib_group(t->kind) == g)
				d->tensor(d->ctx, i, &grp);
		}
		lm_free(U);
		free(dead);
		free(perm);
	}
	lm_layer_stats_free(&st);
}

void lm_lw_run(struct lm_layerwise *d)
{
	const struct lm_lw_opts *o = d->lo;
	const int L = (int)d->ms.h.cfg.num_layers;
	struct lm_calib cal;
	double t0 = lm_now();

	lm_lw_load(d, LM_PART_HEAD);
	if (d->calibrated && lm_calib_init(&cal, &d->m, d->ids, (size_t)o->nsamples, (size_t)o->seqlen, 4) < 0)
		die_lm("calibration");
	/* the head (embeddings, with --include) after the calibration inputs are embedded: each
	 * layer is calibrated on the unmodified model's inputs, as the reference code does */
	plain_part(d, LM_PART_HEAD);
	lm_lw_write(d, LM_PART_HEAD);
	for (int l = 0; l < L; l++) {
		lm_lw_load(d, l);
		int cal_l = d->layer ? d->layer(d->ctx, l) : 1;
		if (d->calibrated && cal_l)
			calibrated_layer(d, &cal, l);
		else
			plain_part(d, l);
		/* a layer worked on without calibration still moves the activations on; the last
		 * layer's outputs feed nothing that is worked on */
		if (d->calibrated && l + 1 < L && lm_calib_advance(&cal, &d->m.layers[l], l) < 0)
			die_lm("calibration");
		lm_lw_write(d, l);
		lm_layer_free(&d->m.layers[l]);
		lm_lw_progress(d, l + 1, L, t0);
	}
	if (d->calibrated)
		lm_calib_free(&cal);
	lm_lw_load(d, L);
	plain_part(d, L);
	lm_lw_write(d, L);
}
