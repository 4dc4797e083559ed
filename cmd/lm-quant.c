/* lm-quant: a filter that quantizes the linear weights: RTN or GPTQ, packed in the stream */
#include "gptq.h"
#include "layerwise.h"
#include "lwnote.h"
#include "quant.h"
#include "quantplan.h"
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
	"      --compute C       f32 (default) or bf16: the calibration forward multiplies\n"
	"                        bf16-rounded inputs and weights, summing in f32 (AVX512_BF16\n"
	"                        CPUs; elsewhere f32, with a note)\n"
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
static const char *const method_names[] = {"rtn", "gptq"};

struct opts {
	int bits, group, sym, act_order;
	enum method method;
	struct lm_cli_flags cf;
	struct lm_lw_opts lw;
	struct lm_qplan mx;      /* --mixed */
};

struct quantizer {
	const struct opts *o;
	struct lm_layerwise lw;
	int dtype;            /* the packed type, or LM_F16 for 16 bits */
	int bits;             /* the bits of the layer being quantized */
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
		if (o->mx.mixed)
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
	if (p->bits == 16 && !o->mx.mixed)
		return;  /* f16 is not a quantization anything needs to know about */
	/* outside the decoder layers (embeddings, head, projections) it is always RTN */
	const int gptq = o->method == M_GPTQ && t->layer >= 0;
	q = json_pack("{s:s, s:i, s:i, s:b}", "method", gptq ? "gptq" : "rtn", "bits", p->bits,
	              "group", o->group, "sym", o->sym);
	if (o->act_order && gptq && p->bits != 16)
		json_object_set_new(q, "act_order", json_true());
	if (o->mx.mixed) {
		/* a 16-bit layer of a mixed model is recorded too: the choice was the method's */
		json_object_set_new(q, "mixed", json_string(lm_qmixed_names[o->mx.mixed]));
		json_object_set_new(q, "sensitivity", json_real(o->mx.sens[t->layer]));
	}
	lm_lw_note(&p->lw, i, "quant", q, lm_dtype_name((enum lm_dtype)p->dtype),
	           o->method == M_GPTQ ? &loss : NULL);
}

/* RTN (g NULL, or outside the decoder layers) or GPTQ on one selected matrix */
static void quant_tensor(void *ctx, size_t i, const struct lm_lw_group *g)
{
	struct quantizer *p = ctx;
	const struct opts *o = p->o;
	const struct lm_opt_tensor *t = &p->lw.ms.order[i];
	struct lm_mat *w = lm_lw_mat(&p->lw, i);
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
	if (p->o->mx.mixed) {
		p->bits = p->o->mx.lbits[l];
		p->dtype = p->bits == 16 ? LM_F16 : lm_dtype_q(p->bits, p->o->group);
	}
	return p->bits != 16;
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
	int c, mt;

	lm_prog_init(argc, argv);
	while ((c = getopt_long(argc, argv, "b:g:m:c:o:fj:vqhV", lopts, NULL)) != -1) {
		switch (c) {
		case 'b': bits_arg = optarg; break;
		case O_MIXED:
			if ((mt = lm_name_index(optarg, lm_qmixed_names, 4)) <= 0)
				edie(2, "--mixed: '%s' is not pmpq, cmpq or tdmpq", optarg);
			o.mx.mixed = (enum lm_qmixed)mt;
			break;
		case O_TARGET: o.mx.target_bits = estrtod(optarg, 1, 16, "--target-bits"); break;
		case 'g':
			o.group = (int)estrtoll(optarg, 0, 1 << 20, "--group");
			if (lm_dtype_q(4, o.group) < 0)
				edie(2, "--group: %s is not supported (0 for one group per row, or 32, 64, 128, "
				     "256, 512, 1024, 2048)", optarg);
			break;
		case O_SYM: o.sym = 1; break;
		case O_ACT_ORDER: o.act_order = 1; break;
		case 'm':
			if ((mt = lm_name_index(optarg, method_names, 2)) < 0)
				edie(2, "--method: '%s' is not rtn or gptq", optarg);
			o.method = (enum method)mt;
			break;
		default:
			if (!lm_lw_option(c, &o.lw))
				lm_cli_flag(c, &o.cf, "lm-quant", usage_text);
		}
	}
	if (argc - optind > 1)
		lm_usage(usage_text, 2);
	o.mx.group = o.group, o.mx.sym = o.sym;
	if (o.mx.mixed) {
		lm_qplan_levels(&o.mx, bits_arg);
		if (!o.lw.calib)
			edie(2, "--mixed needs calibration data (-c FILE)");
	} else {
		if (bits_arg) {
			o.bits = (int)estrtoll(bits_arg, 1, 64, "--bits");
			if (o.bits != 16 && lm_dtype_q(o.bits, 0) < 0)
				edie(2, "--bits: %s is not supported (2, 3, 4, 8, or 16 for f16)", bits_arg);
		}
		if (o.mx.target_bits > 0)
			edie(2, "--target-bits needs --mixed");
	}
	if (o.method == M_RTN && o.lw.calib && !o.mx.mixed)
		edie(2, "-c: rtn uses no calibration data (see --method)");
	if (o.method == M_GPTQ && !o.lw.calib)
		edie(2, "--method gptq needs calibration data (-c FILE)");
	if (o.act_order && o.method != M_GPTQ)
		edie(2, "--act-order needs --method gptq");
	p.bits = o.bits;
	p.dtype = o.bits == 16 ? LM_F16 : lm_dtype_q(o.bits, o.group);
	d->cf = &o.cf, d->lo = &o.lw, d->ctx = &p;
	d->calibrated = o.method == M_GPTQ && (o.mx.mixed || o.bits != 16);
	d->hessian = 1, d->act_order = o.act_order;
	d->accept = accept, d->check = check_input, d->layer = begin_layer, d->tensor = quant_tensor;
	lm_lw_open(d, optind < argc ? argv[optind] : NULL);
	lm_lw_select(d, "quantize");
	lm_lw_begin(d, argc, argv);
	if (o.mx.mixed)
		lm_qplan_run(&o.mx, d);
	lm_lw_run(d);
	lm_lw_end(d);
	lm_qplan_free(&o.mx);
	return 0;
}
