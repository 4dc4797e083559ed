/* lm-quant: a filter that quantizes the linear weights: RTN or GPTQ, packed in the stream */
#include "clock.h"
#include "cptquant.h"
#include "gptq.h"
#include "layerwise.h"
#include "quant.h"
#include "util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
	"usage: lm-quant [-b BITS] [-g G] [--method rtn|gptq] [options] [STREAM]\n"
	"Quantize the model read from STREAM or standard input; the stream goes to stdout.\n"
	"  -b, --bits B          2, 3, 4 (default) or 8 bits per weight; 16 keeps them as f16;\n"
	"                        with --mixed, the levels to choose from (default 16,8,4)\n"
	"  -g, --group G         inputs per scale and zero point: 32, 64, ..., 2048, or 0 (default)\n"
	"                        for one per output channel (row)\n"
	"      --sym             symmetric grid (zero point in the middle) instead of min-max\n"
	"  -m, --method NAME     rtn (round to nearest, default) or gptq\n"
	"  -c, --calib FILE      calibration text, or an lm-stream of token ids (gptq)\n"
	"      --mixed NAME      one bit-width per decoder layer from its sensitivity on the\n"
	"                        calibration windows: pmpq (pruning), cmpq (correlation) or\n"
	"                        tdmpq (Taylor: gradients of the whole model held in memory)\n"
	"      --target-bits B   --mixed: meet an average of B bits per weight instead of k-means\n"
	"      --nsamples N      calibration windows (default: up to 128, as -c holds)\n"
	"      --seqlen N        tokens per window (default: the model's max positions)\n"
	"      --blocksize N     gptq: columns per block (default 128)\n"
	"      --damp F          gptq: dampening, a fraction of the mean diagonal (default 0.01)\n"
	"      --act-order       gptq: columns in order of decreasing Hessian diagonal (groups:\n"
	"                        fitted up front on the natural column groups)\n"
	"      --include GLOB    quantize the linear weights whose names match GLOB (repeatable)\n"
	"      --exclude GLOB    leave the tensors whose names match GLOB alone (repeatable)\n"
	"  -o, --output FILE     write to FILE (atomically) instead of standard output\n"
	"  -f, --force           write to standard output even if it is a terminal\n"
	"  -j, --threads N       threads (default: all cores)\n"
	"      --no-verify       skip CRC-32 checks of the input stream\n"
	"  -v, --verbose         one line per quantized tensor on stderr\n"
	"  -q, --quiet           no progress on stderr\n"
	"  -h, --help            show this help\n"
	"  -V, --version         show the version\n";


enum method { M_RTN, M_GPTQ };
enum mixed { MX_NONE, MX_PMPQ, MX_CMPQ, MX_TDMPQ };
static const char *const mixed_name[] = {"none", "pmpq", "cmpq", "tdmpq"};
#define MAXLEVELS 8

struct opts {
	int bits, group, sym, act_order;
	enum method method;
	struct lm_cli_flags cf;
	struct lm_lw_opts lw;
	enum mixed mixed;
	double target_bits;      /* 0: k-means */
	int levels[MAXLEVELS], nlevels;
};

struct quantizer {
	const struct opts *o;
	struct lm_layerwise lw;
	int dtype;            /* the packed type, or LM_F16 for 16 bits */
	int bits;             /* the bits of the layer being quantized */
	int *lbits;           /* --mixed: [L] bits per layer */
	double *sens;         /* --mixed: [L] sensitivities */
	double t0;            /* --mixed tdmpq: start of the backward passes */
};

/* which tensors: the six linears of each layer by default; embed_tokens, lm_head and the
 * projections when --include names them (a q4 embedding matrix is most of what is left of
 * a q4 OPT-125m: 77 MiB of 121 in f16) */
static int accept(void *ctx, const struct lm_opt_tensor *t)
{
	struct quantizer *p = ctx;
	const struct opts *o = p->o;
	const char *in = lm_reader_name(p->lw.ms.rd);
	if (!lm_opt_is_linear(t->kind)) {
		/* only --include reaches here with one of these */
		int outer = t->kind == LM_T_EMBED_TOKENS || t->kind == LM_T_LM_HEAD ||
		            t->kind == LM_T_PROJECT_IN || t->kind == LM_T_PROJECT_OUT;
		if (!outer)
			edie(2, "%s: only the linear weights, embed_tokens, lm_head and project_in/out "
			     "can be quantized; --include matched '%s'", in, t->name);
		if (o->mixed)
			edie(2, "%s: --mixed gives bits to decoder layers; quantize '%s' in a run of "
			     "its own (lm-quant -b B --include '%s')", in, t->name, t->name);
	}
	if (o->group && t->shape[1] % o->group)
		edie(2, "%s: tensor '%s' has rows of %lld weights, not a multiple of the group size %d "
		     "(-g)", in, t->name, (long long)t->shape[1], o->group);
	return 1;
}

static void check_input(void *ctx, size_t i)
{
	struct quantizer *p = ctx;
	json_t *a = p->lw.ms.attrs[i];
	if (lm_dtype_is_packed(p->lw.ms.dtypes[i]) || (a && json_object_get(a, "quant")))
		die("%s: tensor '%s' is already quantized (%s): quantizing it again would compound "
		    "the error; start from the unquantized stream", lm_reader_name(p->lw.ms.rd),
		    p->lw.ms.order[i].name, lm_dtype_name(p->lw.ms.dtypes[i]));
}

/* record what was done in the tensor's attrs, and the dtype it is written in */
static void note(struct quantizer *p, size_t i, double loss)
{
	const struct lm_opt_tensor *t = &p->lw.ms.order[i];
	const struct opts *o = p->o;
	json_t *q;
	p->lw.ms.dtypes[i] = (enum lm_dtype)p->dtype;
	if (p->bits == 16 && !o->mixed)
		return;  /* f16 is not a quantization anything needs to know about */
	/* outside the decoder layers (embeddings, head, projections) it is always RTN */
	const int gptq = o->method == M_GPTQ && t->layer >= 0;
	q = json_pack("{s:s, s:i, s:i, s:b}", "method", gptq ? "gptq" : "rtn", "bits", p->bits,
	              "group", o->group, "sym", o->sym);
	if (o->act_order && gptq && p->bits != 16)
		json_object_set_new(q, "act_order", json_true());
	if (o->mixed) {
		/* a 16-bit layer of a mixed model is recorded too: the choice was the method's */
		json_object_set_new(q, "mixed", json_string(mixed_name[o->mixed]));
		json_object_set_new(q, "sensitivity", json_real(p->sens[t->layer]));
	}
	json_object_set_new(lm_ms_attrs(&p->lw.ms, t->kind, t->layer), "quant", q);
	if (o->cf.verbose) {
		fprintf(stderr, "%s: %s: %s", argv0, t->name, lm_dtype_name((enum lm_dtype)p->dtype));
		if (o->method == M_GPTQ)
			fprintf(stderr, ", error %.6g", loss);
		fputc('\n', stderr);
	}
}

/* RTN (g NULL, or outside the decoder layers) or GPTQ on one selected matrix */
static void quant_tensor(void *ctx, size_t i, const struct lm_lw_group *g)
{
	struct quantizer *p = ctx;
	const struct opts *o = p->o;
	const struct lm_opt_tensor *t = &p->lw.ms.order[i];
	struct lm_mat *w = lm_model_mat(&p->lw.m, t->kind, t->layer);
	double loss = 0;
	if (g) {
		if (lm_gptq_mat(w, (enum lm_dtype)p->dtype, g->U, g->dead, g->perm, o->sym,
		                (size_t)o->lw.blocksize, &loss) < 0)
			die("%s: %s", t->name, lm_errmsg());
	} else {
		/* 16 bits: the write converts to f16 (ms->dtypes, set by note) */
		if (p->bits != 16 && lm_q_mat_rtn(w, (enum lm_dtype)p->dtype, o->sym) < 0)
			die("%s: %s", t->name, lm_errmsg());
		if (t->kind == LM_T_EMBED_TOKENS && p->lw.m.cfg.tied)
			p->lw.m.lm_head = *w;  /* the tied head is the same (now packed) matrix */
	}
	note(p, i, loss);
}

/* before layer l: its bits (--mixed); a 16-bit layer is not run through GPTQ */
static int begin_layer(void *ctx, int l)
{
	struct quantizer *p = ctx;
	if (p->o->mixed) {
		p->bits = p->lbits[l];
		p->dtype = p->bits == 16 ? LM_F16 : lm_dtype_q(p->bits, p->o->group);
	}
	return p->bits != 16;
}

static void tdmpq_progress(void *ctx, size_t done, size_t total)
{
	struct quantizer *p = ctx;
	if (p->o->cf.quiet || !isatty(2))
		return;
	fprintf(stderr, "\r%s: tdmpq: window %zu/%zu, %.0f s   ", argv0, done, total, lm_now() - p->t0);
	if (done == total)
		fputc('\n', stderr);
}

/* TDMPQ: Q(w) is RTN at the lowest level of --bits: the sensitivity is the first-order
 * loss change of the most aggressive choice the allocation can make for a layer (at b
 * bits the rounding error is about 2^(bmin - b) times that at bmin in every layer alike,
 * so the order of the layers hardly depends on the level; the lowest one is the furthest
 * above f16's own rounding) */
static int tdmpq(struct quantizer *p, const int32_t *ids)
{
	const struct opts *o = p->o;
	int b = o->levels[0];
	enum lm_dtype qt;
	for (int k = 1; k < o->nlevels; k++)
		b = o->levels[k] < b ? o->levels[k] : b;
	qt = b == 16 ? LM_F16 : (enum lm_dtype)lm_dtype_q(b, o->group);
	if (!o->cf.quiet)
		fprintf(stderr, "%s: tdmpq: the whole model in memory, gradients of its linear weights "
		        "over %lld windows of %lld tokens; Q = RTN %s\n", argv0, o->lw.nsamples, o->lw.seqlen,
		        lm_dtype_name(qt));
	p->t0 = lm_now();
	return lm_cpt_tdmpq(&p->lw.m, ids, (size_t)o->lw.nsamples, (size_t)o->lw.seqlen, qt, o->sym, p->sens,
	                    NULL, tdmpq_progress, p);
}

/* --mixed: the whole model (as read, f16 for an imported one) is needed because each
 * sensitivity re-runs it; then the bits of each layer, reported on stderr */
static void plan_mixed(struct quantizer *p, const int32_t *ids)
{
	const struct opts *o = p->o;
	const int L = (int)p->lw.ms.h.cfg.num_layers;
	int64_t *numel = xcalloc((size_t)L, sizeof *numel);
	double nb = 0, nw = 0, bytes = 0;
	int rc;

	p->sens = xcalloc((size_t)L, sizeof *p->sens);
	p->lbits = xcalloc((size_t)L, sizeof *p->lbits);
	if (lm_ms_load_all(&p->lw.ms, &p->lw.m) < 0)
		die_lm(lm_reader_name(p->lw.ms.rd));
	p->lw.all_loaded = 1;
	rc = o->mixed == MX_PMPQ ? lm_cpt_pmpq(&p->lw.m, ids, (size_t)o->lw.nsamples, (size_t)o->lw.seqlen, p->sens)
	   : o->mixed == MX_CMPQ ? lm_cpt_cmpq(&p->lw.m, ids, (size_t)o->lw.nsamples, (size_t)o->lw.seqlen, p->sens)
	                         : tdmpq(p, ids);
	if (rc < 0)
		die_lm(mixed_name[o->mixed]);
	for (size_t i = 0; i < p->lw.ms.norder; i++)
		if (p->lw.sel[i] && p->lw.ms.order[i].layer >= 0)
			numel[p->lw.ms.order[i].layer] += p->lw.ms.order[i].shape[0] * p->lw.ms.order[i].shape[1];
	for (int l = 0; l < L; l++)
		if (!numel[l])
			numel[l] = 1;   /* a layer --exclude left out entirely: any level, it costs nothing */
	rc = o->target_bits > 0
		? lm_cpt_alloc_target(p->sens, numel, L, o->levels, o->nlevels, o->target_bits, p->lbits)
		: lm_cpt_alloc_kmeans(p->sens, L, o->levels, o->nlevels, p->lbits);
	if (rc < 0)
		die("%s", lm_errmsg());
	/* totals over the quantized matrices: nominal bits, and the stored size with each
	 * group's 4-byte scale/zero header (what lm-info reports as bits per weight) */
	for (size_t i = 0; i < p->lw.ms.norder; i++) {
		const struct lm_opt_tensor *t = &p->lw.ms.order[i];
		int b;
		size_t n;
		if (!p->lw.sel[i] || t->layer < 0)
			continue;
		b = p->lbits[t->layer];
		if (lm_dtype_nbytes(b == 16 ? LM_F16 : (enum lm_dtype)lm_dtype_q(b, o->group), 2, t->shape, &n) < 0)
			die_lm(t->name);
		nb += (double)b * (double)(t->shape[0] * t->shape[1]);
		nw += (double)(t->shape[0] * t->shape[1]);
		bytes += (double)n;
	}
	if (!o->cf.quiet) {
		for (int l = 0; l < L; l++)
			fprintf(stderr, "%s: %s: layer %d: sensitivity %.6g, %d bits\n", argv0, mixed_name[o->mixed],
			        l, p->sens[l], p->lbits[l]);
		fprintf(stderr, "%s: %s: %.4g bits per weight nominal, %.4g stored (with scales and zero "
		        "points), compression %.3gx vs f32, %.3gx vs f16\n", argv0, mixed_name[o->mixed],
		        nb / nw, 8 * bytes / nw, 4 * nw / bytes, 2 * nw / bytes);
	}
	free(numel);
}

int main(int argc, char **argv)
{
	enum { O_SYM = 256, O_ACT_ORDER, O_MIXED, O_TARGET };
	static const struct option lopts[] = {
		{"bits", required_argument, 0, 'b'}, {"group", required_argument, 0, 'g'},
		{"sym", no_argument, 0, O_SYM}, {"act-order", no_argument, 0, O_ACT_ORDER},
		{"mixed", required_argument, 0, O_MIXED},
		{"target-bits", required_argument, 0, O_TARGET}, {"method", required_argument, 0, 'm'},
		LM_LW_LONGOPTS, {"output", required_argument, 0, 'o'},
		{"force", no_argument, 0, 'f'}, {"threads", required_argument, 0, 'j'},
		{"no-verify", no_argument, 0, LM_OPT_NO_VERIFY}, {"verbose", no_argument, 0, 'v'},
		{"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
	struct opts o = {.bits = 4, .cf = LM_CLI_FLAGS_INIT,
	                 .lw = {.nsamples = 128, .blocksize = LM_GPTQ_BLOCK, .damp = 0.01}};
	struct quantizer p = {.o = &o};
	struct lm_layerwise *d = &p.lw;
	const char *bits_arg = NULL;
	int c;

	lm_prog_init(argc, argv);
	while ((c = getopt_long(argc, argv, "b:g:m:c:o:fj:vqhV", lopts, NULL)) != -1) {
		switch (c) {
		case 'b': bits_arg = optarg; break;
		case O_MIXED:
			if (!strcmp(optarg, "pmpq"))
				o.mixed = MX_PMPQ;
			else if (!strcmp(optarg, "cmpq"))
				o.mixed = MX_CMPQ;
			else if (!strcmp(optarg, "tdmpq"))
				o.mixed = MX_TDMPQ;
			else
				edie(2, "--mixed: '%s' is not pmpq, cmpq or tdmpq", optarg);
			break;
		case O_TARGET: o.target_bits = estrtod(optarg, 1, 16, "--target-bits"); break;
		case 'g':
			o.group = (int)estrtoll(optarg, 0, 1 << 20, "--group");
			if (lm_dtype_q(4, o.group) < 0)
				edie(2, "--group: %s is not supported (0 for one group per row, or 32, 64, 128, "
				     "256, 512, 1024, 2048)", optarg);
			break;
		case O_SYM: o.sym = 1; break;
		case O_ACT_ORDER: o.act_order = 1; break;
		case 'm':
			if (!strcmp(optarg, "rtn"))
				o.method = M_RTN;
			else if (!strcmp(optarg, "gptq"))
				o.method = M_GPTQ;
			else
				edie(2, "--method: '%s' is not rtn or gptq", optarg);
			break;
		default:
			if (!lm_lw_option(c, &o.lw))
				lm_cli_flag(c, &o.cf, "lm-quant", usage_text);
		}
	}
	if (argc - optind > 1)
		lm_usage(usage_text, 2);
	if (o.mixed) {
		/* a list of levels: each one 16 or a packed type at this group size */
		char *buf = xstrdup(bits_arg ? bits_arg : "16,8,4"), *save = NULL;
		for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			int b = (int)estrtoll(tok, 1, 64, "--bits");
			if (b != 16 && lm_dtype_q(b, o.group) < 0)
				edie(2, "--bits: %d is not supported (2, 3, 4, 8, or 16 for f16)", b);
			if (o.nlevels == MAXLEVELS)
				edie(2, "--bits: at most %d levels", MAXLEVELS);
			for (int k = 0; k < o.nlevels; k++)
				if (o.levels[k] == b)
					edie(2, "--bits: %d given twice", b);
			o.levels[o.nlevels++] = b;
		}
		free(buf);
		if (!o.nlevels)
			edie(2, "--bits: no level given");
		if (!o.lw.calib)
			edie(2, "--mixed needs calibration data (-c FILE)");
	} else {
		if (bits_arg) {
			o.bits = (int)estrtoll(bits_arg, 1, 64, "--bits");
			if (o.bits != 16 && lm_dtype_q(o.bits, 0) < 0)
				edie(2, "--bits: %s is not supported (2, 3, 4, 8, or 16 for f16)", bits_arg);
		}
		if (o.target_bits > 0)
			edie(2, "--target-bits needs --mixed");
	}
	if (o.method == M_RTN && o.lw.calib && !o.mixed)
		edie(2, "-c: rtn uses no calibration data (see --method)");
	if (o.method == M_GPTQ && !o.lw.calib)
		edie(2, "--method gptq needs calibration data (-c FILE)");
	if (o.act_order && o.method != M_GPTQ)
		edie(2, "--act-order needs --method gptq");
	p.bits = o.bits;
	p.dtype = o.bits == 16 ? LM_F16 : lm_dtype_q(o.bits, o.group);
	d->cf = &o.cf, d->lo = &o.lw, d->ctx = &p;
	d->calibrated = o.method == M_GPTQ && (o.mixed || o.bits != 16);
	d->hessian = 1, d->act_order = o.act_order;
	d->accept = accept, d->check = check_input, d->layer = begin_layer, d->tensor = quant_tensor;
	lm_lw_open(d, optind < argc ? argv[optind] : NULL);
	lm_lw_select(d, "quantize");
	lm_lw_begin(d, argc, argv);
	if (o.mixed)
		plan_mixed(&p, d->ids);
	lm_lw_run(d);
	lm_lw_end(d);
	free(p.lbits);
	free(p.sens);
	return 0;
}
