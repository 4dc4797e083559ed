/* lm-prune: a filter that zeroes weights: magnitude, Wanda or SparseGPT, unstructured or N:M */
#include "clock.h"
#include "layerwise.h"
#include "lwnote.h"
#include "prune.h"
#include "sparsegpt.h"
#include "util.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"usage: lm-prune (-s S | --nm N:M) [options] [STREAM]\n"
	"Prune the model read from STREAM or standard input; the pruned stream goes to stdout.\n"
	"  -s, --sparsity S      fraction of the weights to zero, 0 <= S < 1\n"
	"      --nm N:M          in every M consecutive inputs of a row, zero N (N < M)\n"
	"  -m, --method NAME     magnitude (default), wanda or sparsegpt\n"
	"      --global          magnitude: one threshold for all the pruned matrices\n"
	"  -c, --calib FILE      calibration text, or an lm-stream of token ids (wanda, sparsegpt)\n"
	"      --nsamples N      calibration windows (default: up to 128, as -c holds)\n"
	"      --seqlen N        tokens per window (default: the model's max positions)\n"
	"      --blocksize N     sparsegpt: columns per block (default 128)\n"
	"      --damp F          sparsegpt: dampening, a fraction of the mean diagonal (default 0.01)\n"
	"      --compute C       f32 (default) or bf16: the calibration forward multiplies\n"
	"                        bf16-rounded inputs and weights, summing in f32 (AVX512_BF16\n"
	"                        CPUs; elsewhere f32, with a note)\n"
	"      --include GLOB    prune the tensors whose names match GLOB (repeatable)\n"
	"      --exclude GLOB    leave the tensors whose names match GLOB alone (repeatable)\n"
	"      --store HOW       sparse (default): each pruned matrix in the smallest of its N:M,\n"
	"                        bitmap, index or dense layouts; dense: with its zeros\n"
	"  -o, --output FILE     write to FILE (atomically) instead of standard output\n"
	"  -f, --force           write to standard output even if it is a terminal\n"
	"  -j, --threads N       threads (default: all cores)\n"
	"      --no-verify       skip CRC-32 checks of the input stream\n"
	"  -v, --verbose         one line per pruned tensor on stderr\n"
	"  -q, --quiet           no progress on stderr\n"
	"  -h, --help            show this help\n"
	"  -V, --version         show the version\n";

struct opts {
	struct lm_prune_spec sp;
	int have_s, global;
	int store_dense;   /* --store dense: pruned matrices are written with their zeros */
	struct lm_cli_flags cf;
	struct lm_lw_opts lw;
};

struct pruner {
	const struct opts *o;
	struct lm_layerwise lw;
};

/* a tensor the globs chose: a matrix the method can prune; usage errors for the rest */
static int accept(void *ctx, const struct lm_opt_tensor *t)
{
	struct pruner *p = ctx;
	const struct opts *o = p->o;
	const char *in = lm_reader_name(p->lw.ms.rd);
	if (t->ndim != 2)
		return 0;
	if (o->sp.method != LM_PRUNE_MAGNITUDE && !lm_opt_is_linear(t->kind))
		edie(2, "%s: %s prunes only q/k/v/out_proj, fc1 and fc2 of the decoder layers; --include "
		     "matched '%s'", in, lm_prune_method_name(o->sp.method), t->name);
	if (o->sp.n && t->shape[1] % o->sp.m)
		edie(2, "%s: tensor '%s' has rows of %lld weights, not a multiple of %d (--nm %d:%d)",
		     in, t->name, (long long)t->shape[1], o->sp.m, o->sp.n, o->sp.m);
	return 1;
}

/* after a tensor was read: refuse what the method cannot handle */
static void check_input(void *ctx, size_t i)
{
	struct pruner *p = ctx;
	const char *name = p->lw.ms.order[i].name;
	json_t *a = p->lw.ms.attrs[i];
	if (a && json_object_get(a, "quant"))
		die("%s: tensor '%s' is quantized (attrs \"quant\"): prune before quantizing",
		    lm_reader_name(p->lw.ms.rd), name);
	if (a && json_object_get(a, "prune") && p->o->sp.method == LM_PRUNE_SPARSEGPT)
		die("%s: tensor '%s' is already pruned (attrs \"prune\"): sparsegpt's update would refill its "
		    "zeros; prune the dense model, or use magnitude or wanda", lm_reader_name(p->lw.ms.rd), name);
}

/* record what was done in the tensor's attrs */
static void note(struct pruner *p, size_t i, double loss)
{
	const struct opts *o = p->o;
	struct lm_mat *w = lm_lw_mat(&p->lw, i);
	double sp = (double)lm_mat_zeros(w) / ((double)w->rows * (double)w->cols);
	char pat[32] = "unstructured", what[48];
	if (o->sp.n)
		snprintf(pat, sizeof pat, "%d:%d", o->sp.n, o->sp.m);
	snprintf(what, sizeof what, "sparsity %.6f", sp);
	/* the layout asked of the writer: N:M keeps M - N of every M; where that does not
	 * fit or is not smaller, the writer takes bitmap, index or dense (sparse.h) */
	struct lm_layout *lay = &p->lw.ms.layouts[i];
	memset(lay, 0, sizeof *lay);
	if (!o->store_dense && o->sp.n)
		lay->kind = LM_LAYOUT_NM, lay->n = o->sp.m - o->sp.n, lay->m = o->sp.m;
	else if (!o->store_dense)
		lay->kind = LM_LAYOUT_UNSTRUCTURED;
	lm_lw_note(&p->lw, i, "prune", json_pack("{s:s, s:f, s:s}", "method",
	           lm_prune_method_name(o->sp.method), "sparsity", sp, "pattern", pat), what,
	           o->sp.method == LM_PRUNE_SPARSEGPT ? &loss : NULL);
}

/* magnitude (g NULL), Wanda or SparseGPT on one selected matrix */
static void prune_tensor(void *ctx, size_t i, const struct lm_lw_group *g)
{
	struct pruner *p = ctx;
	const struct opts *o = p->o;
	struct lm_mat *w = lm_lw_mat(&p->lw, i);
	double loss = 0;
	int rc;
	if (!g)
		rc = lm_prune_mat(w, &o->sp, NULL);
	else if (o->sp.method == LM_PRUNE_WANDA)
		rc = lm_prune_mat(w, &o->sp, g->sumsq);
	else
		rc = lm_sparsegpt_mat(w, g->U, g->dead, &o->sp, (size_t)o->lw.blocksize, &loss);
	if (rc < 0)
		die("%s: %s", p->lw.ms.order[i].name, lm_errmsg());
	note(p, i, loss);
}

/* --global: the threshold needs every magnitude, so the whole model is read first */
static void prune_global(struct pruner *p)
{
	struct lm_layerwise *d = &p->lw;
	const int L = (int)d->ms.h.cfg.num_layers;
	struct lm_mat **mats = xcalloc(d->ms.norder, sizeof *mats);
	size_t nm = 0, total = 0, k;
	float thr;
	double t0 = lm_now();
	for (int part = LM_PART_HEAD; part <= L; part++) {
		lm_lw_load(d, part);
		if (part >= 0 && part < L)
			lm_lw_progress(d, part + 1, L, t0);
	}
	for (size_t i = 0; i < d->ms.norder; i++)
		if (d->sel[i]) {
			mats[nm] = lm_model_mat(&d->m, d->ms.order[i].kind, d->ms.order[i].layer);
			total += (size_t)mats[nm]->rows * (size_t)mats[nm]->cols;
			nm++;
		}
	k = lm_prune_count(p->o->sp.sparsity, total);
	if (k > 0) {
		if (lm_prune_kth_abs(mats, nm, k, &thr) < 0)
			die_lm("--global");
		for (size_t i = 0; i < nm; i++)
			if (lm_prune_abs_below(mats[i], thr) < 0)
				die_lm("--global");
	}
	for (size_t i = 0; i < d->ms.norder; i++)
		if (d->sel[i])
			note(p, i, 0);
	for (int part = LM_PART_HEAD; part <= L; part++)
		lm_lw_write(d, part);
	free(mats);
}

static void parse_nm(struct opts *o, const char *s)
{
	char *e;
	long n = strtol(s, &e, 10), m;
	if (e == s || *e != ':')
		edie(2, "--nm: '%s' is not N:M", s);
	m = strtol(e + 1, &e, 10);
	if (*e || n < 1 || m < 2 || m > 128)
		edie(2, "--nm: '%s' is not N:M with 1 <= N and 2 <= M <= 128", s);
	if (n >= m)
		edie(2, "--nm %ld:%ld: N must be smaller than M (N of every M weights are zeroed)", n, m);
	o->sp.n = (int)n, o->sp.m = (int)m;
}

int main(int argc, char **argv)
{
	enum { O_NM = 256, O_GLOBAL, O_STORE };
	static const struct option lopts[] = {
		{"sparsity", required_argument, 0, 's'}, {"nm", required_argument, 0, O_NM},
		{"method", required_argument, 0, 'm'}, {"global", no_argument, 0, O_GLOBAL},
		{"store", required_argument, 0, O_STORE},
		LM_LW_LONGOPTS, {"output", required_argument, 0, 'o'},
		{"force", no_argument, 0, 'f'}, {"threads", required_argument, 0, 'j'},
		{"no-verify", no_argument, 0, LM_OPT_NO_VERIFY}, {"verbose", no_argument, 0, 'v'},
		{"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
	struct opts o = {.cf = LM_CLI_FLAGS_INIT,
	                 .lw = {.nsamples = 128, .blocksize = LM_SPARSEGPT_BLOCK, .damp = 0.01}};
	struct pruner p = {.o = &o};
	struct lm_layerwise *d = &p.lw;
	int c, mt;

	lm_prog_init(argc, argv);
	while ((c = getopt_long(argc, argv, "s:m:c:o:fj:vqhV", lopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o.sp.sparsity = estrtod(optarg, 0, 1, "--sparsity");
			if (o.sp.sparsity >= 1)
				edie(2, "--sparsity: '%s' is not in [0, 1): a model needs some weights", optarg);
			o.have_s = 1;
			break;
		case O_NM: parse_nm(&o, optarg); break;
		case 'm':
			if ((mt = lm_prune_method_parse(optarg)) < 0)
				edie(2, "--method: '%s' is not magnitude, wanda or sparsegpt", optarg);
			o.sp.method = (enum lm_prune_method)mt;
			break;
		case O_GLOBAL: o.global = 1; break;
		case O_STORE:
			if (strcmp(optarg, "sparse") && strcmp(optarg, "dense"))
				edie(2, "--store: '%s' is not sparse or dense", optarg);
			o.store_dense = !strcmp(optarg, "dense");
			break;
		default:
			if (!lm_lw_option(c, &o.lw))
				lm_cli_flag(c, &o.cf, "lm-prune", usage_text);
		}
	}
	if (argc - optind > 1 || (!o.have_s && !o.sp.n))
		lm_usage(usage_text, 2);
	if (o.sp.n) {
		double nm = (double)o.sp.n / o.sp.m;
		if (o.have_s && fabs(o.sp.sparsity - nm) > 1e-9)
			edie(2, "-s %g contradicts --nm %d:%d, which prunes %g", o.sp.sparsity, o.sp.n, o.sp.m, nm);
		o.sp.sparsity = nm;
	}
	if (o.global && (o.sp.method != LM_PRUNE_MAGNITUDE || o.sp.n))
		edie(2, "--global is for unstructured magnitude pruning only");
	if (o.sp.method == LM_PRUNE_MAGNITUDE && o.lw.calib)
		edie(2, "-c: magnitude pruning uses no calibration data (see --method)");
	if (o.sp.method != LM_PRUNE_MAGNITUDE && !o.lw.calib)
		edie(2, "--method %s needs calibration data (-c FILE)", lm_prune_method_name(o.sp.method));
	if (o.sp.method == LM_PRUNE_SPARSEGPT && o.sp.n && o.lw.blocksize % o.sp.m)
		edie(2, "--nm %d:%d with sparsegpt needs a --blocksize that M divides (%lld)", o.sp.n, o.sp.m,
		     o.lw.blocksize);

	d->cf = &o.cf, d->lo = &o.lw, d->ctx = &p;
	d->calibrated = o.sp.method != LM_PRUNE_MAGNITUDE;
	d->hessian = o.sp.method == LM_PRUNE_SPARSEGPT;
	d->accept = accept, d->check = check_input, d->tensor = prune_tensor;
	lm_lw_open(d, optind < argc ? argv[optind] : NULL);
	lm_lw_select(d, "prune");
	lm_lw_begin(d, argc, argv);
	if (o.global)
		prune_global(&p);
	else
		lm_lw_run(d);
	lm_lw_end(d);
	return 0;
}
