/* lm-retrain: retrain a (pruned) model: PERP's parameter-efficient subsets, LoRA variants
 * that keep sparsity, full masked retraining, or layer-wise reconstruction against a dense
 * teacher. The model is read whole, trained, and written only when training succeeded; the
 * modes are in common/prog/retrainrun.c, retrainlayer.c and retrainexit.c. */
#include "retrainrun.h"
#include "earlyexit.h"
#include "exitpolicy.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static const char usage_text[] =
	"usage: lm-retrain (--perp | --full | --train GLOB | --lora R | --mask-lora R | --scale-lora R)...\n"
	"                  (-d FILE | --reconstruct --teacher STREAM -c FILE) [options] [STREAM]\n"
	"Retrain the model read from STREAM or standard input; the retrained model goes to stdout.\n"
	"What trains (any combination):\n"
	"      --perp            every bias and LayerNorm weight/bias (PERP's subset)\n"
	"      --full            every tensor of the decoder layers and the final LayerNorm\n"
	"      --train GLOB      the tensors whose names match GLOB (fnmatch; repeatable)\n"
	"      --lora R          LoRA of rank R on q/k/v/out_proj/fc1/fc2 of every layer\n"
	"      --mask-lora R     MaskLoRA: W + alpha/R (BA * 1[W != 0])\n"
	"      --scale-lora R    ScaleLoRA: W * BA (elementwise)\n"
	"      --lora-alpha A    LoRA scale alpha/R (default 2R)\n"
	"      --lora-head       also standard LoRA of rank R on the LM head\n"
	"Pruned zeros (exact zeros of a trained or adapted matrix) stay zero in every mode.\n"
	"Data:\n"
	"  -d, --data FILE       training text (or an lm-stream of token ids): random windows\n"
	"  -s, --seqlen N        tokens per window (default 512, or the model's positions if fewer)\n"
	"  -b, --batch N         windows per step (default 8)\n"
	"  -n, --steps N         optimizer steps (default 200; per layer with --reconstruct)\n"
	"      --eval FILE       validation text or ids: loss on its first windows\n"
	"      --eval-every N    validation every N steps (default: at the start and the end)\n"
	"      --eval-windows K  validation windows (default 8)\n"
	"Optimizer (AdamW):\n"
	"  -l, --lr X            peak learning rate (default 1e-3; 1e-4 with --full)\n"
	"      --warmup X        warmup fraction of the steps (default 0.1)\n"
	"      --schedule S      decay after warmup: linear (default) or cosine, to 0\n"
	"      --beta1 X         (default 0.9)\n"
	"      --beta2 X         (default 0.999)\n"
	"      --eps X           (default 1e-8)\n"
	"      --weight-decay X  on matrices and LoRA factors (default 0)\n"
	"      --clip X          clip the global gradient norm to X (default 1.0; 0: off)\n"
	"      --dropout P       dropout probability (default: the stream's config)\n"
	"      --seed N          windows, LoRA initialisation and dropout (default 0)\n"
	"      --compute C       f32 (default) or bf16: the forward's and the backward's matrix\n"
	"                        products multiply bf16-rounded operands, summing in f32;\n"
	"                        gradients, LayerNorm, softmax, the loss and AdamW stay f32\n"
	"                        (AVX512_BF16 CPUs; elsewhere f32, with a note)\n"
	"Layer-wise reconstruction:\n"
	"      --reconstruct     train each layer to match the teacher layer's output (MSE)\n"
	"      --teacher STREAM  the dense model (read layer by layer along with training)\n"
	"  -c, --calib FILE      calibration text or ids: the first windows of it\n"
	"      --nsamples K      calibration windows (default 128)\n"
	"Early exits (GREEN-CODE; exit k leaves after decoder layer k, k = 1..L-1):\n"
	"      --early-exit      multi-exit fine-tuning: the weighted sum of each exit's and the\n"
	"                        final output's cross-entropy, every exit through the shared\n"
	"                        final LayerNorm and head (trains --full unless told otherwise)\n"
	"      --exits LIST      the exits, e.g. 1,2,3 (default: every layer but the last; for\n"
	"                        --exit-policy: those the stream records)\n"
	"      --exit-weights LIST  a weight per exit, then the final output's (default:\n"
	"                        GREEN-CODE's geometric ones)\n"
	"      --exit-policy     train the exit policy by PPO on decoding episodes of -d FILE and\n"
	"                        store it in the stream; the model's tensors are unchanged\n"
	"      --episodes N      decoding episodes of 15 tokens (default 256)\n"
	"      --policy-steps N  PPO environment steps (default 200000; -l sets the rate)\n"
	"      --policy-hidden H width of the policy's two hidden layers (default 64)\n"
	"Output and the rest:\n"
	"  -o, --output FILE     write to FILE (atomically) instead of standard output\n"
	"  -f, --force           write to standard output even if it is a terminal\n"
	"      --log FILE        one line per step (step, loss, lr, gradient norm, tokens/s)\n"
	"  -j, --threads N       threads (default: all cores)\n"
	"      --no-verify       skip CRC-32 checks of the input stream\n"
	"  -v, --verbose         summary and validation lines on stderr even when it is no terminal\n"
	"  -q, --quiet           nothing on stderr but errors (progress shows only on a terminal)\n"
	"  -h, --help            show this help\n"
	"  -V, --version         show the version\n";

/* getopt_long values of lm-retrain's own long options */
enum {
	O_PERP = 256, O_FULL, O_TRAIN, O_LORA, O_MLORA, O_SLORA, O_HEAD, O_EVAL, O_EVERY, O_EWIN,
	O_RECON, O_TEACHER, O_NSAMP, O_EE, O_EXITS, O_EXITW, O_EPOL, O_EPIS, O_PSTEPS, O_PHID,
};

struct parsed {
	struct lm_retrain_args a;
	int nlora;       /* LoRA kinds given (one at most) */
	int policy_opt;  /* an option of --exit-policy given */
};

/* --lora, --mask-lora or --scale-lora R: the kind and its rank, counted (one kind at most) */
static void lora_arg(struct parsed *p, enum lm_lora_kind kind, const char *what)
{
	p->a.to.lora = kind, p->a.to.rank = (int)estrtoll(optarg, 1, 1 << 20, what), p->nlora++;
}

/* one of lm-retrain's own options into *ctx (a struct parsed): 1, or 0 for another */
static int option(void *ctx, int c)
{
	struct parsed *p = ctx;
	struct lm_retrain_args *o = &p->a;
	switch (c) {
	case O_PERP: o->to.perp = 1; break;
	case O_FULL: o->to.full = 1; break;
	case O_TRAIN: o->globs[o->nglobs++] = optarg; break;
	case O_LORA: lora_arg(p, LM_LORA_STD, "--lora"); break;
	case O_MLORA: lora_arg(p, LM_LORA_MASK, "--mask-lora"); break;
	case O_SLORA: lora_arg(p, LM_LORA_SCALE, "--scale-lora"); break;
	case O_HEAD: o->to.lora_head = 1; break;
	case 'd': o->data = optarg; break;
	case O_EVAL: o->eval = optarg; break;
	case O_EVERY: o->eval_every = estrtoll(optarg, 1, 1LL << 40, "--eval-every"); break;
	case O_EWIN: o->eval_windows = estrtoll(optarg, 1, 1LL << 40, "--eval-windows"); break;
	case O_RECON: o->reconstruct = 1; break;
	case O_TEACHER: o->teacher = optarg; break;
	case 'c': o->calib = optarg; break;
	case O_NSAMP: o->nsamples = estrtoll(optarg, 1, 1LL << 40, "--nsamples"); break;
	case O_EE: o->early_exit = 1; break;
	case O_EXITS:
		free(o->exits);
		if (!(o->exits = lm_ee_parse_exits(optarg, &o->nexits)))
			edie(2, "--exits: %s", lm_errmsg());
		o->exits_arg = optarg;
		break;
	case O_EXITW: o->exit_w_arg = optarg; break;
	case O_EPOL: o->exit_policy = 1; break;
	case O_EPIS: o->episodes = estrtoll(optarg, 1, 1 << 24, "--episodes"), p->policy_opt = 1; break;
	case O_PSTEPS:
		o->policy_steps = estrtoll(optarg, 1, 1LL << 40, "--policy-steps"), p->policy_opt = 1;
		break;
	case O_PHID:
		o->policy_hidden = estrtoll(optarg, 1, LM_POLICY_MAX_HIDDEN, "--policy-hidden");
		p->policy_opt = 1;
		break;
	default: return 0;
	}
	return 1;
}

/* the usage errors of modes that exclude each other or lack what they need (exit 2), then
 * the defaults that depend on the mode */
static void check_args(struct parsed *p)
{
	struct lm_retrain_args *o = &p->a;
	if (o->early_exit && o->exit_policy)
		edie(2, "--early-exit fine-tunes the model, --exit-policy trains its policy: one at a time");
	if (o->exits_arg && !o->early_exit && !o->exit_policy)
		edie(2, "--exits is for --early-exit or --exit-policy");
	if (o->exit_w_arg && !o->early_exit)
		edie(2, "--exit-weights is for --early-exit");
	if (p->policy_opt && !o->exit_policy)
		edie(2, "--episodes, --policy-steps and --policy-hidden are for --exit-policy");
	if (o->exit_policy && (o->to.perp || o->to.full || o->nglobs || o->to.lora || o->reconstruct))
		edie(2, "--exit-policy trains only the policy: no --perp, --full, --train, LoRA or --reconstruct");
	if ((o->early_exit || o->exit_policy) && o->reconstruct)
		edie(2, "--early-exit trains end to end: not with --reconstruct");
	if (o->early_exit && !o->to.perp && !o->to.full && !o->nglobs && !o->to.lora)
		o->to.full = 1; /* GREEN-CODE fine-tunes every weight */
	if (!o->exit_policy && !o->to.perp && !o->to.full && !o->nglobs && !o->to.lora)
		edie(2, "nothing to train: give --perp, --full, --train GLOB or a LoRA kind (see --help)");
	if (p->nlora > 1)
		edie(2, "--lora, --mask-lora and --scale-lora exclude each other");
	if (o->to.lora_head && !o->to.lora)
		edie(2, "--lora-head needs a rank: give --lora, --mask-lora or --scale-lora");
	if (o->reconstruct) {
		if (!o->teacher || !o->calib)
			edie(2, "--reconstruct needs --teacher STREAM and -c FILE");
		if (o->data || o->eval)
			edie(2, "--reconstruct trains on -c FILE; -d and --eval are for end-to-end training");
		if (o->to.lora_head)
			edie(2, "--lora-head: the LM head is not part of a layer (--reconstruct)");
	} else if (!o->data) {
		edie(2, "no training data: give -d FILE (or --reconstruct)");
	}
	if (o->teacher && !o->reconstruct)
		edie(2, "--teacher is for --reconstruct");
	if (o->f.lr < 0)
		o->f.lr = o->exit_policy ? 3e-4 : o->to.full ? 1e-4 : 1e-3;
	o->to.alpha = o->f.alpha_set ? o->f.alpha : 2.0 * o->to.rank;
	o->to.globs = o->globs, o->to.nglobs = o->nglobs, o->to.seed = (uint64_t)o->f.seed;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"perp", no_argument, 0, O_PERP}, {"full", no_argument, 0, O_FULL},
		{"train", required_argument, 0, O_TRAIN}, {"lora", required_argument, 0, O_LORA},
		{"mask-lora", required_argument, 0, O_MLORA}, {"scale-lora", required_argument, 0, O_SLORA},
		{"lora-head", no_argument, 0, O_HEAD}, {"data", required_argument, 0, 'd'},
		{"eval", required_argument, 0, O_EVAL}, {"eval-every", required_argument, 0, O_EVERY},
		{"eval-windows", required_argument, 0, O_EWIN}, {"reconstruct", no_argument, 0, O_RECON},
		{"teacher", required_argument, 0, O_TEACHER}, {"calib", required_argument, 0, 'c'},
		{"nsamples", required_argument, 0, O_NSAMP},
		{"early-exit", no_argument, 0, O_EE}, {"exits", required_argument, 0, O_EXITS},
		{"exit-weights", required_argument, 0, O_EXITW}, {"exit-policy", no_argument, 0, O_EPOL},
		{"episodes", required_argument, 0, O_EPIS}, {"policy-steps", required_argument, 0, O_PSTEPS},
		{"policy-hidden", required_argument, 0, O_PHID},
		LM_TRAIN_LONGOPTS, LM_TRAIN_ADAM_LONGOPTS, LM_CLI_LONGOPTS, {0, 0, 0, 0}};
	struct parsed p = {.a = {
		.f = {.cf = LM_CLI_FLAGS_INIT, .batch = 8, .steps = 200, .lr = -1, .warmup = 0.1,
		      .clip = 1.0, .adam = {0.9, 0.999, 1e-8, 0.0}},
		.to = {.layer = -1}, .eval_windows = 8, .nsamples = 128,
		.episodes = 256, .policy_steps = 200000, .policy_hidden = 64}};

	lm_prog_init(argc, argv);
	p.a.globs = xcalloc((size_t)argc, sizeof *p.a.globs);
	const char *in = lm_train_getopt(argc, argv, "d:s:b:n:l:c:o:fj:qvhV", lopts, option, &p,
	                                 &p.a.f, "lm-retrain", usage_text);
	check_args(&p);
	lm_cli_compute(p.a.f.bf16);
	lm_retrain_run(&p.a, in, argc, argv);
	free(p.a.globs);
	return 0;
}
