/* lm-unlearn: gradient-ascent unlearning with a retain set (docs/methods.md §8), full or
 * through LoRA. The model is read whole, trained, and written only when training ended
 * with finite weights; the work is in common/prog/unlearnrun.c. */
#include "unlearnrun.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage_text[] =
	"usage: lm-unlearn (--forget CSV | --forget-text FILE) [--retain CSV | --retain-text FILE]\n"
	"                  [options] [STREAM]\n"
	"Make the model read from STREAM or standard input forget a data set by gradient ascent\n"
	"while a retain set holds the rest in place; the result goes to stdout.\n"
	"Data (CSV: question/answer rows, laid out \"### Question: Q\\n ### Answer: A\"):\n"
	"      --forget CSV           ascent on the answers, given their questions\n"
	"      --forget-text FILE     ascent on the windows of a text (or an ids stream)\n"
	"      --retain CSV           held in place; its answers are the random answers' pool\n"
	"      --retain-text FILE     held in place: windows of a text (or an ids stream)\n"
	"      --forget-question COL  column names (default: question, goal, prompt or\n"
	"      --forget-answer COL      instruction / answer, best answer, target, response\n"
	"      --retain-question COL    or output, the first the header has, any case)\n"
	"      --retain-answer COL\n"
	"      --skip-incomplete      leave out rows without a question or an answer\n"
	"  -s, --seqlen N             longest question+answer, and the text windows (default 128)\n"
	"What trains:\n"
	"      --full                 the decoder layers and the final LayerNorm (the default)\n"
	"      --lora R               LoRA of rank R on q/k/v/out_proj/fc1/fc2, merged at the end\n"
	"      --lora-alpha A         LoRA scale alpha/R (default 2R)\n"
	"Loss (each term a mean over its batch):\n"
	"      --forget-weight X      ascent on the forget set (default 0.5)\n"
	"      --random-weight X      descent on forget questions with random retain answers\n"
	"                             (default 1; Q/A sets only)\n"
	"      --random-answers K     random answers per forget question (default 5)\n"
	"      --retain-weight X      the retain term (default 1)\n"
	"      --retain-loss L        kl: cross-entropy to the frozen original model (default);\n"
	"                             nll: the retain set's own next tokens\n"
	"      --learn                descend on the forget set instead (a model that knows it)\n"
	"  -b, --batch N              forget sequences per step (default 2)\n"
	"      --retain-batch N       retain sequences per step (default 2)\n"
	"  -n, --steps N              optimizer steps (default 1000)\n"
	"      --max-forget-loss X    stop once the forget loss exceeds X (default 100)\n"
	"      --stop-window N        ... its mean over the last N steps (default 1)\n"
	"Optimizer (AdamW, linear decay to 0):\n"
	"  -l, --lr X                 peak learning rate (default 2e-6)\n"
	"      --warmup X             warmup fraction of the steps (default 0)\n"
	"      --weight-decay X       on matrices and LoRA factors (default 0)\n"
	"      --clip X               clip the global gradient norm to X (default 1.0; 0: off)\n"
	"      --dropout P            dropout probability (default 0)\n"
	"      --seed N               data order, random answers, LoRA initialisation (default 0)\n"
	"      --compute C            f32 (default) or bf16: the forward's and the backward's\n"
	"                             matrix products multiply bf16-rounded operands, summing\n"
	"                             in f32; gradients, the losses and AdamW stay f32\n"
	"                             (AVX512_BF16 CPUs; elsewhere f32, with a note)\n"
	"Output and the rest:\n"
	"  -o, --output FILE          write to FILE (atomically) instead of standard output\n"
	"  -f, --force                write to standard output even if it is a terminal\n"
	"      --log FILE             one line per step (losses, lr, gradient norm, tokens/s)\n"
	"  -j, --threads N            threads (default: all cores)\n"
	"      --no-verify            skip CRC-32 checks of the input stream\n"
	"  -v, --verbose              summary lines on stderr even when it is no terminal\n"
	"  -q, --quiet                nothing on stderr but errors and warnings\n"
	"  -h, --help                 show this help\n"
	"  -V, --version              show the version\n";

/* getopt_long values of lm-unlearn's own long options */
enum {
	O_FORGET = 256, O_FTEXT, O_RETAIN, O_RTEXT, O_FQ, O_FA, O_RQ, O_RA, O_SKIP, O_FULL, O_LORA,
	O_WF, O_WR, O_WT, O_NRAND, O_RLOSS, O_LEARN, O_RBATCH, O_MAXF, O_SWIN,
};

/* one of lm-unlearn's own options into *ctx (its struct lm_unlearn_args): 1, or 0 for
 * another; o->full is --full as given until check_args */
static int option(void *ctx, int c)
{
	struct lm_unlearn_args *o = ctx;
	switch (c) {
	case O_FORGET: o->forget = optarg; break;
	case O_FTEXT: o->forget_text = optarg; break;
	case O_RETAIN: o->retain = optarg; break;
	case O_RTEXT: o->retain_text = optarg; break;
	case O_FQ: o->fq = optarg; break;
	case O_FA: o->fa = optarg; break;
	case O_RQ: o->rq = optarg; break;
	case O_RA: o->ra = optarg; break;
	case O_SKIP: o->skip_incomplete = 1; break;
	case O_FULL: o->full = 1; break;
	case O_LORA: o->rank = estrtoll(optarg, 1, 1 << 20, "--lora"); break;
	case O_WF: o->w_forget = estrtod(optarg, 1e-12, 1e12, "--forget-weight"); break;
	case O_WR: o->w_random = estrtod(optarg, 0, 1e12, "--random-weight"); break;
	case O_WT: o->w_retain = estrtod(optarg, 0, 1e12, "--retain-weight"); break;
	case O_NRAND: o->nrandom = estrtoll(optarg, 0, 1024, "--random-answers"); break;
	case O_RLOSS:
		if (!strcmp(optarg, "nll"))
			o->retain_nll = 1;
		else if (strcmp(optarg, "kl"))
			edie(2, "--retain-loss: '%s' is not kl or nll", optarg);
		break;
	case O_LEARN: o->learn = 1; break;
	case O_RBATCH: o->retain_batch = estrtoll(optarg, 1, 1 << 16, "--retain-batch"); break;
	case O_MAXF: o->max_forget = estrtod(optarg, 0, 1e300, "--max-forget-loss"); break;
	case O_SWIN: o->stop_window = estrtoll(optarg, 1, 1 << 20, "--stop-window"); break;
	default: return 0;
	}
	return 1;
}

/* the usage errors of options that contradict each other or name a set not given */
static void check_args(struct lm_unlearn_args *o)
{
	if (!!o->forget + !!o->forget_text != 1)
		edie(2, "give one forget set: --forget CSV or --forget-text FILE");
	if (o->retain && o->retain_text)
		edie(2, "give one retain set: --retain CSV or --retain-text FILE");
	if ((o->fq || o->fa) && !o->forget)
		edie(2, "--forget-question and --forget-answer name columns of --forget CSV");
	if ((o->rq || o->ra) && !o->retain)
		edie(2, "--retain-question and --retain-answer name columns of --retain CSV");
	if (o->full && o->rank)
		edie(2, "--full and --lora exclude each other");
	o->full = !o->rank;
	if (!o->f.alpha_set)
		o->f.alpha = 2.0 * (double)o->rank;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"forget", required_argument, 0, O_FORGET}, {"forget-text", required_argument, 0, O_FTEXT},
		{"retain", required_argument, 0, O_RETAIN}, {"retain-text", required_argument, 0, O_RTEXT},
		{"forget-question", required_argument, 0, O_FQ},
		{"forget-answer", required_argument, 0, O_FA},
		{"retain-question", required_argument, 0, O_RQ},
		{"retain-answer", required_argument, 0, O_RA},
		{"skip-incomplete", no_argument, 0, O_SKIP},
		{"full", no_argument, 0, O_FULL}, {"lora", required_argument, 0, O_LORA},
		{"forget-weight", required_argument, 0, O_WF}, {"random-weight", required_argument, 0, O_WR},
		{"retain-weight", required_argument, 0, O_WT},
		{"random-answers", required_argument, 0, O_NRAND},
		{"retain-loss", required_argument, 0, O_RLOSS}, {"learn", no_argument, 0, O_LEARN},
		{"retain-batch", required_argument, 0, O_RBATCH},
		{"max-forget-loss", required_argument, 0, O_MAXF},
		{"stop-window", required_argument, 0, O_SWIN},
		LM_TRAIN_LONGOPTS, LM_CLI_LONGOPTS, {0, 0, 0, 0}};
	struct lm_unlearn_args o = {
		.f = {.cf = LM_CLI_FLAGS_INIT, .seqlen = 128, .batch = 2, .steps = 1000, .lr = 2e-6,
		      .clip = 1.0, .adam = {0.9, 0.999, 1e-8, 0.0}},
		.retain_batch = 2, .nrandom = 5, .w_forget = 0.5, .w_random = 1, .w_retain = 1,
		.max_forget = 100, .stop_window = 1};

	lm_prog_init(argc, argv);
	const char *in = lm_train_getopt(argc, argv, "s:b:n:l:o:fj:vqhV", lopts, option, &o, &o.f,
	                                 "lm-unlearn", usage_text);
	check_args(&o);
	lm_cli_compute(o.f.bf16);
	lm_unlearn_run(&o, in, argc, argv);
	return 0;
}
