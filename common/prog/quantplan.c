/* quantplan.c: lm-quant --mixed's plan: CPTQuant's layer sensitivities and the bits each decoder layer gets (see quantplan.h). */
#include "quantplan.h"
#include "clock.h"
#include "cptquant.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const lm_qmixed_names[4] = {"none", "pmpq", "cmpq", "tdmpq"};

int lm_name_index(const char *s, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -1;
}

void lm_qplan_levels(struct lm_qplan *q, const char *arg)
{
	/* a list of levels: each one 16 or a packed type at this group size */
	char *buf = xstrdup(arg ? arg : "16,8,4"), *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int b = (int)estrtoll(tok, 1, 64, "--bits");
		if (b != 16 && lm_dtype_q(b, q->group) < 0)
			edie(2, "--bits: %d is not supported (2, 3, 4, 8, or 16 for f16)", b);
		if (q->nlevels == LM_QPLAN_MAXLEVELS)
			edie(2, "--bits: at most %d levels", LM_QPLAN_MAXLEVELS);
		for (int k = 0; k < q->nlevels; k++)
			if (q->levels[k] == b)
				edie(2, "--bits: %d given twice", b);
		q->levels[q->nlevels++] = b;
	}
	free(buf);
	if (!q->nlevels)
		edie(2, "--bits: no level given");
}

struct tdmpq_ctx {
	const struct lm_qplan *q;
	const struct lm_layerwise *d;
};

static void tdmpq_progress(void *ctx, size_t done, size_t total)
{
	const struct tdmpq_ctx *c = ctx;
	if (c->d->cf->quiet || !isatty(2))
		return;
	fprintf(stderr, "\r%s: tdmpq: window %zu/%zu, %.0f s   ", argv0, done, total, lm_now() - c->q->t0);
	if (done == total)
		fputc('\n', stderr);
}

/* TDMPQ: Q(w) is RTN at the lowest level of --bits: the sensitivity is the first-order
 * loss change of the most aggressive choice the allocation can make for a layer (at b
 * bits the rounding error is about 2^(bmin - b) times that at bmin in every layer alike,
 * so the order of the layers hardly depends on the level; the lowest one is the furthest
 * above f16's own rounding) */
static int tdmpq(struct lm_qplan *q, struct lm_layerwise *d)
{
	const struct lm_lw_opts *lo = d->lo;
	struct tdmpq_ctx c = {q, d};
	int b = q->levels[0];
	enum lm_dtype qt;
	for (int k = 1; k < q->nlevels; k++)
		b = q->levels[k] < b ? q->levels[k] : b;
	qt = b == 16 ? LM_F16 : (enum lm_dtype)lm_dtype_q(b, q->group);
	if (!d->cf->quiet)
		fprintf(stderr, "%s: tdmpq: the whole model in memory, gradients of its linear weights "
		        "over %lld windows of %lld tokens; Q = RTN %s\n", argv0, lo->nsamples, lo->seqlen,
		        lm_dtype_name(qt));
	q->t0 = lm_now();
	return lm_cpt_tdmpq(&d->m, d->ids, (size_t)lo->nsamples, (size_t)lo->seqlen, qt, q->sym, q->sens,
	                    NULL, tdmpq_progress, &c);
}

/* the whole model (as read, f16 for an imported one) is needed because each sensitivity
 * re-runs it */
void lm_qplan_run(struct lm_qplan *q, struct lm_layerwise *d)
{
	const struct lm_lw_opts *lo = d->lo;
	const int L = (int)d->ms.h.cfg.num_layers;
	const char *name = lm_qmixed_names[q->mixed];
	int64_t *numel = xcalloc((size_t)L, sizeof *numel);
	double nb = 0, nw = 0, bytes = 0;
	int rc;

	q->sens = xcalloc((size_t)L, sizeof *q->sens);
	q->lbits = xcalloc((size_t)L, sizeof *q->lbits);
	if (lm_ms_load_all(&d->ms, &d->m) < 0)
		die_lm(lm_reader_name(d->ms.rd));
	d->all_loaded = 1;
	rc = q->mixed == LM_QMIXED_PMPQ ? lm_cpt_pmpq(&d->m, d->ids, (size_t)lo->nsamples, (size_t)lo->seqlen, q->sens)
	   : q->mixed == LM_QMIXED_CMPQ ? lm_cpt_cmpq(&d->m, d->ids, (size_t)lo->nsamples, (size_t)lo->seqlen, q->sens)
	                                : tdmpq(q, d);
	if (rc < 0)
		die_lm(name);
	for (size_t i = 0; i < d->ms.norder; i++)
		if (d->sel[i] && d->ms.order[i].layer >= 0)
			numel[d->ms.order[i].layer] += d->ms.order[i].shape[0] * d->ms.order[i].shape[1];
	for (int l = 0; l < L; l++)
		if (!numel[l])
			numel[l] = 1;   /* a layer --exclude left out entirely: any level, it costs nothing */
	rc = q->target_bits > 0
		? lm_cpt_alloc_target(q->sens, numel, L, q->levels, q->nlevels, q->target_bits, q->lbits)
		: lm_cpt_alloc_kmeans(q->sens, L, q->levels, q->nlevels, q->lbits);
	if (rc < 0)
		die("%s", lm_errmsg());
	/* totals over the quantized matrices: nominal bits, and the stored size with each
	 * group's 4-byte scale/zero header (what lm-info reports as bits per weight) */
	for (size_t i = 0; i < d->ms.norder; i++) {
		const struct lm_opt_tensor *t = &d->ms.order[i];
		int b;
		size_t n;
		if (!d->sel[i] || t->layer < 0)
			continue;
		b = q->lbits[t->layer];
		if (lm_dtype_nbytes(b == 16 ? LM_F16 : (enum lm_dtype)lm_dtype_q(b, q->group), 2, t->shape, &n) < 0)
			die_lm(t->name);
		nb += (double)b * (double)(t->shape[0] * t->shape[1]);
		nw += (double)(t->shape[0] * t->shape[1]);
		bytes += (double)n;
	}
	if (!d->cf->quiet) {
		for (int l = 0; l < L; l++)
			fprintf(stderr, "%s: %s: layer %d: sensitivity %.6g, %d bits\n", argv0, name, l,
			        q->sens[l], q->lbits[l]);
		fprintf(stderr, "%s: %s: %.4g bits per weight nominal, %.4g stored (with scales and zero "
		        "points), compression %.3gx vs f32, %.3gx vs f16\n", argv0, name,
		        nb / nw, 8 * bytes / nw, 4 * nw / bytes, 2 * nw / bytes);
	}
	free(numel);
}

void lm_qplan_free(struct lm_qplan *q)
{
	free(q->lbits);
	free(q->sens);
	q->lbits = NULL, q->sens = NULL;
}
