/* lm-prune: a filter that zeroes weights: magnitude, Wanda or SparseGPT, unstructured or N:M */
#include "calib.h"
#include "cli.h"
#include "clock.h"
#include "hessian.h"
#include "kernels.h"
#include "modelio.h"
#include "modelstream.h"
#include "prune.h"
#include "sparsegpt.h"
#include "util.h"

#include <fnmatch.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	"      --include GLOB    prune the tensors whose names match GLOB (repeatable)\n"
	"      --exclude GLOB    leave the tensors whose names match GLOB alone (repeatable)\n"
	"  -o, --output FILE     write to FILE (atomically) instead of standard output\n"
	"  -f, --force           write to standard output even if it is a terminal\n"
	"  -j, --threads N       threads (default: all cores)\n"
	"      --no-verify       skip CRC-32 checks of the input stream\n"
	"  -v, --verbose         one line per pruned tensor on stderr\n"
	"  -q, --quiet           no progress on stderr\n"
	"  -h, --help            show this help\n"
	"  -V, --version         show the version\n";

#define MAXGLOB 64

struct opts {
	struct lm_prune_spec sp;
	int have_s, global, force, threads, verify, verbose, quiet;
	const char *calib, *out;
	long long nsamples, seqlen, blocksize;
	int nsamples_set; /* --nsamples given: a short calibration file is an error */
	double damp;
	const char *incl[MAXGLOB], *excl[MAXGLOB];
	int nincl, nexcl;
};

static void progress(const struct opts *o, int done, int total, double t0)
{
	if (o->quiet || !isatty(2))
		return;
	double el = lm_now() - t0, eta = done ? el / done * (total - done) : 0;
	fprintf(stderr, "\r%s: layer %d/%d, %.0f s elapsed, ETA %.0f s   ", argv0, done, total, el, eta);
	if (done == total)
		fputc('\n', stderr);
}

struct pruner {
	const struct opts *o;
	struct lm_model_stream *ms;
	struct lm_model m;
	unsigned char *sel;   /* [ms->norder] 1: prune this tensor */
};

static int is_matrix(const struct lm_opt_tensor *t)
{
	return t->ndim == 2;
}

/* which tensors to prune; usage errors for patterns the method cannot serve */
static void select_tensors(struct pruner *p)
{
	const struct opts *o = p->o;
	const struct lm_model_stream *ms = p->ms;
	size_t nsel = 0;
	p->sel = xcalloc(ms->norder, 1);
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
		if (!s || !is_matrix(t))
			continue;
		if (o->sp.method != LM_PRUNE_MAGNITUDE && !lm_opt_is_linear(t->kind))
			edie(2, "%s: %s prunes only q/k/v/out_proj, fc1 and fc2 of the decoder layers; --include "
			     "matched '%s'", lm_reader_name(ms->rd), lm_prune_method_name(o->sp.method), t->name);
		if (o->sp.n && t->shape[1] % o->sp.m)
			edie(2, "%s: tensor '%s' has rows of %lld weights, not a multiple of %d (--nm %d:%d)",
			     lm_reader_name(ms->rd), t->name, (long long)t->shape[1], o->sp.m, o->sp.n, o->sp.m);
		p->sel[i] = 1;
		nsel++;
	}
	if (!nsel)
		edie(2, "%s: no tensor to prune (--include/--exclude select none)", lm_reader_name(ms->rd));
}

/* after a tensor was read: refuse what the method cannot handle */
static void check_input(struct pruner *p, size_t i)
{
	const char *name = p->ms->order[i].name;
	json_t *a = p->ms->attrs[i];
	if (a && json_object_get(a, "quant"))
		die("%s: tensor '%s' is quantized (attrs \"quant\"): prune before quantizing",
		    lm_reader_name(p->ms->rd), name);
	if (a && json_object_get(a, "prune") && p->o->sp.method == LM_PRUNE_SPARSEGPT)
		die("%s: tensor '%s' is already pruned (attrs \"prune\"): sparsegpt's update would refill its "
		    "zeros; prune the dense model, or use magnitude or wanda", lm_reader_name(p->ms->rd), name);
}

/* record what was done in the tensor's attrs */
static void note(struct pruner *p, size_t i, double loss)
{
	const struct lm_opt_tensor *t = &p->ms->order[i];
	const struct opts *o = p->o;
	struct lm_mat *w = lm_model_mat(&p->m, t->kind, t->layer);
	double sp = (double)lm_mat_zeros(w) / ((double)w->rows * (double)w->cols);
	char pat[32] = "unstructured";
	if (o->sp.n)
		snprintf(pat, sizeof pat, "%d:%d", o->sp.n, o->sp.m);
	json_object_set_new(lm_ms_attrs(p->ms, t->kind, t->layer), "prune",
	                    json_pack("{s:s, s:f, s:s}", "method", lm_prune_method_name(o->sp.method),
	                              "sparsity", sp, "pattern", pat));
	if (o->verbose) {
		fprintf(stderr, "%s: %s: sparsity %.6f", argv0, t->name, sp);
		if (o->sp.method == LM_PRUNE_SPARSEGPT)
			fprintf(stderr, ", error %.6g", loss);
		fputc('\n', stderr);
	}
}

/* the part (lm_ms_load's unit) a tensor arrives in */
static void load_part(struct pruner *p, int part)
{
	if (lm_ms_load(p->ms, &p->m, part) < 0)
		die_lm(lm_reader_name(p->ms->rd));
	for (size_t i = 0; i < p->ms->norder; i++)
		if (p->sel[i] && lm_ms_part_of(&p->ms->order[i], (int)p->ms->h.cfg.num_layers) == part)
			check_input(p, i);
}

/* magnitude or N:M magnitude on each selected matrix of a part */
static void magnitude_part(struct pruner *p, int part)
{
	for (size_t i = 0; i < p->ms->norder; i++) {
		const struct lm_opt_tensor *t = &p->ms->order[i];
		if (!p->sel[i] || lm_ms_part_of(t, (int)p->ms->h.cfg.num_layers) != part)
			continue;
		if (lm_prune_mat(lm_model_mat(&p->m, t->kind, t->layer), &p->o->sp, NULL) < 0)
			die("%s: %s", t->name, lm_errmsg());
		note(p, i, 0);
	}
}

/* Wanda or SparseGPT on layer l: one dense pass for the statistics, prune, then the pruned
 * layer moves the calibration activations on */
static void calibrated_layer(struct pruner *p, struct lm_calib *cal, int l)
{
	const struct opts *o = p->o;
	const struct lm_opt_config *cfg = &p->ms->h.cfg;
	struct lm_layer_stats st;
	struct lm_layer *ly = &p->m.layers[l];
	int want[LM_G_COUNT] = {0};

	for (size_t i = 0; i < p->ms->norder; i++)
		if (p->sel[i] && p->ms->order[i].layer == l)
			want[lm_calib_group(p->ms->order[i].kind)] = 1;
	if (lm_layer_stats_init(&st, cfg, want, o->sp.method == LM_PRUNE_SPARSEGPT, cal->T) < 0 ||
	    lm_calib_observe(cal, ly, l, lm_layer_stats_hook, &st) < 0)
		die_lm("calibration");

	for (int g = 0; g < LM_G_COUNT; g++) {
		float *U = NULL;
		unsigned char *dead = NULL;
		if (!st.want[g])
			continue;
		if (o->sp.method == LM_PRUNE_SPARSEGPT) {
			size_t n = st.cols[g];
			if (lm_hessian_finish(&st.h[g]) < 0 || !(U = lm_alloc(n * n * sizeof *U)))
				die("layer %d: %s", l, lm_errmsg());
			dead = xmalloc(n);
			if (lm_hessian_inv_chol(st.h[g].H, n, o->damp, dead, U) < 0)
				die("layer %d: %s", l, lm_errmsg());
			lm_hessian_free(&st.h[g]);   /* U replaces it: one n x n less at the peak */
		}
		for (size_t i = 0; i < p->ms->norder; i++) {
			const struct lm_opt_tensor *t = &p->ms->order[i];
			double loss = 0;
			int rc;
			if (!p->sel[i] || t->layer != l || lm_calib_group(t->kind) != g)
				continue;
			struct lm_mat *w = lm_model_mat(&p->m, t->kind, l);
			if (o->sp.method == LM_PRUNE_WANDA)
				rc = lm_prune_mat(w, &o->sp, st.sumsq[g]);
			else
				rc = lm_sparsegpt_mat(w, U, dead, &o->sp, (size_t)o->blocksize, &loss);
			if (rc < 0)
				die("%s: %s", t->name, lm_errmsg());
			note(p, i, loss);
		}
		lm_free(U);
		free(dead);
	}
	lm_layer_stats_free(&st);
	/* the last layer's outputs feed nothing that is pruned */
	if (l + 1 < cfg->num_layers && lm_calib_advance(cal, ly, l) < 0)
		die_lm("calibration");
}

static void write_part(struct pruner *p, int part, struct lm_writer *w)
{
	if (lm_ms_write_part(p->ms, &p->m, part, w) < 0)
		die_lm(NULL);
}

/* stream order: each layer is written as soon as it is pruned */
static void prune_streaming(struct pruner *p, struct lm_writer *w, const int32_t *ids)
{
	const struct opts *o = p->o;
	const int L = (int)p->ms->h.cfg.num_layers;
	const int calibrated = o->sp.method != LM_PRUNE_MAGNITUDE;
	struct lm_calib cal;
	double t0 = lm_now();

	load_part(p, LM_PART_HEAD);
	if (calibrated && lm_calib_init(&cal, &p->m, ids, (size_t)o->nsamples, (size_t)o->seqlen, 4) < 0)
		die_lm("calibration");
	if (!calibrated)
		magnitude_part(p, LM_PART_HEAD);
	write_part(p, LM_PART_HEAD, w);
	for (int l = 0; l < L; l++) {
		load_part(p, l);
		if (calibrated)
			calibrated_layer(p, &cal, l);
		else
			magnitude_part(p, l);
		write_part(p, l, w);
		lm_layer_free(&p->m.layers[l]);
		progress(o, l + 1, L, t0);
	}
	if (calibrated)
		lm_calib_free(&cal);
	load_part(p, L);
	if (!calibrated)
		magnitude_part(p, L);
	write_part(p, L, w);
}

/* --global: the threshold needs every magnitude, so the whole model is read first */
static void prune_global(struct pruner *p, struct lm_writer *w)
{
	const int L = (int)p->ms->h.cfg.num_layers;
	struct lm_mat **mats = xcalloc(p->ms->norder, sizeof *mats);
	size_t nm = 0, total = 0, k;
	float thr;
	double t0 = lm_now();
	for (int part = LM_PART_HEAD; part <= L; part++) {
		load_part(p, part);
		if (part >= 0 && part < L)
			progress(p->o, part + 1, L, t0);
	}
	for (size_t i = 0; i < p->ms->norder; i++)
		if (p->sel[i]) {
			mats[nm] = lm_model_mat(&p->m, p->ms->order[i].kind, p->ms->order[i].layer);
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
	for (size_t i = 0; i < p->ms->norder; i++)
		if (p->sel[i])
			note(p, i, 0);
	for (int part = LM_PART_HEAD; part <= L; part++)
		write_part(p, part, w);
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
	enum { O_NM = 256, O_GLOBAL, O_NSAMPLES, O_SEQLEN, O_BLOCK, O_DAMP, O_INCL, O_EXCL, O_NOVERIFY };
	static const struct option lopts[] = {
		{"sparsity", required_argument, 0, 's'}, {"nm", required_argument, 0, O_NM},
		{"method", required_argument, 0, 'm'}, {"global", no_argument, 0, O_GLOBAL},
		{"calib", required_argument, 0, 'c'}, {"nsamples", required_argument, 0, O_NSAMPLES},
		{"seqlen", required_argument, 0, O_SEQLEN}, {"blocksize", required_argument, 0, O_BLOCK},
		{"damp", required_argument, 0, O_DAMP}, {"include", required_argument, 0, O_INCL},
		{"exclude", required_argument, 0, O_EXCL}, {"output", required_argument, 0, 'o'},
		{"force", no_argument, 0, 'f'}, {"threads", required_argument, 0, 'j'},
		{"no-verify", no_argument, 0, O_NOVERIFY}, {"verbose", no_argument, 0, 'v'},
		{"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
	struct opts o = {.verify = 1, .nsamples = 128, .blocksize = LM_SPARSEGPT_BLOCK, .damp = 0.01};
	struct lm_model_stream ms;
	struct pruner p = {.o = &o, .ms = &ms};
	struct lm_reader *rd;
	struct lm_writer *w;
	struct lm_out out;
	int32_t *ids = NULL;
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
		case 'c': o.calib = optarg; break;
		case O_NSAMPLES:
			o.nsamples = estrtoll(optarg, 1, 1 << 20, "--nsamples");
			o.nsamples_set = 1;
			break;
		case O_SEQLEN: o.seqlen = estrtoll(optarg, 1, 1 << 20, "--seqlen"); break;
		case O_BLOCK: o.blocksize = estrtoll(optarg, 1, 8192, "--blocksize"); break;
		case O_DAMP: o.damp = estrtod(optarg, 0, 1e6, "--damp"); break;
		case O_INCL: case O_EXCL:
			if ((c == O_INCL ? o.nincl : o.nexcl) >= MAXGLOB)
				edie(2, "at most %d --include and %d --exclude patterns", MAXGLOB, MAXGLOB);
			if (c == O_INCL)
				o.incl[o.nincl++] = optarg;
			else
				o.excl[o.nexcl++] = optarg;
			break;
		case 'o': o.out = optarg; break;
		case 'f': o.force = 1; break;
		case 'j': o.threads = (int)estrtoll(optarg, 0, 1024, "--threads"); break;
		case O_NOVERIFY: o.verify = 0; break;
		case 'v': o.verbose = 1; break;
		case 'q': o.quiet = 1; break;
		case 'h': lm_usage(usage_text, 0);
		case 'V': puts("lm-prune " LM_VERSION); return 0;
		default: lm_bad_option(usage_text);
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
	if (o.sp.method == LM_PRUNE_MAGNITUDE && o.calib)
		edie(2, "-c: magnitude pruning uses no calibration data (see --method)");
	if (o.sp.method != LM_PRUNE_MAGNITUDE && !o.calib)
		edie(2, "--method %s needs calibration data (-c FILE)", lm_prune_method_name(o.sp.method));
	if (o.sp.method == LM_PRUNE_SPARSEGPT && o.sp.n && o.blocksize % o.sp.m)
		edie(2, "--nm %d:%d with sparsegpt needs a --blocksize that M divides (%lld)", o.sp.n, o.sp.m,
		     o.blocksize);
	lm_cli_threads(o.threads, o.verbose);
	lm_out_open(&out, o.out, o.force);

	rd = lm_in_open(optind < argc ? argv[optind] : NULL);
	lm_reader_set_verify(rd, o.verify);
	if (lm_ms_open(&ms, rd) < 0)
		die_lm(lm_reader_name(rd));
	select_tensors(&p);
	if (o.calib)
		ids = lm_cli_calib_ids(o.calib, &ms, &o.seqlen, &o.nsamples, o.nsamples_set);

	w = lm_writer_open(out.fd, out.name);
	if (lm_ms_write_start(&ms, w, argc, argv) < 0 || lm_model_init(&p.m, &ms.h.cfg) < 0)
		die_lm(NULL);
	if (o.global)
		prune_global(&p, w);
	else
		prune_streaming(&p, w, ids);
	if (lm_writer_close(w) < 0)
		die_lm(NULL);
	lm_out_commit(&out);
	free(ids);
	free(p.sel);
	lm_model_free(&p.m);
	lm_ms_close(&ms);
	lm_reader_close(rd);
	return 0;
}
