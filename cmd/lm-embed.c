/* lm-embed: sentence embeddings (PromptEOL) of each line of a file, or of a prompt pool
 * for retrieval, optionally with a retriever tuned the UPRISE way; --contrastive
 * fine-tunes the model itself on sentence pairs (SimCSE's loss) and writes the model */
#include "cli.h"
#include "embedrun.h"
#include "embedtrain.h"
#include "util.h"

#include <getopt.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
	"usage: lm-embed [options] FILE\n"
	"Embed each line of FILE with the model read from standard input; the embeddings go to\n"
	"stdout as an lm-stream (tensor \"embeddings\" [n, d] f32 and the lines).\n"
	"  -m, --model STREAM    read the model from STREAM instead of standard input\n"
	"      --demo S=W        in-context demonstration: sentence S means in one word W\n"
	"      --template T      prompt with <sentence> in it (default PromptEOL's:\n"
	"                        This sentence : \"<sentence>\" means in one word:\")\n"
	"      --avg             mean of the final hidden states instead of the last token's\n"
	"      --verbatim        keep each sentence's white space as it is (default: runs\n"
	"                        collapsed to one space, ends trimmed, as the reference does)\n"
	"  -b, --batch N         prompts per forward batch (default 16)\n"
	"      --pool            FILE is a prompt pool, INPUT<TAB>ANSWER per line: embed the\n"
	"                        demonstrations \"INPUT ANSWER\" as a retrieval index\n"
	"      --tune TASK       tune the retriever on TASK (JSON lines, see lm-eval --mc) with\n"
	"                        the pool: writes a projection into the index (needs --pool)\n"
	"      --tune-encoder TASK  train the model itself as the retriever's encoder on TASK\n"
	"                        with the pool (UPRISE; the pairs as --tune makes them, then the\n"
	"                        contrastive training below): writes the model (needs --pool)\n"
	"      --projection IDX  copy the tuned projection of index IDX (same model) into this one\n"
	"  -L, --sample N        --tune: pool prompts scored per training input (default 16)\n"
	"      --negatives N     --tune: hard negatives per input (default 4)\n"
	"      --train-max N     --tune: use at most N training inputs (default 256)\n"
	"      --epochs N        --tune: passes over the training inputs (default 20)\n"
	"      --lr X            --tune: AdamW learning rate (default 1e-3)\n"
	"      --temperature X   --tune: InfoNCE temperature of the cosines (default 0.05)\n"
	"      --seed N          --tune: sampling and shuffling seed (default 0)\n"
	"      --tsv             write LINE<TAB>v1 v2 ... text instead of a stream\n"
	"      --compute C       f32 (default) or bf16: the model's matrix products (embedding\n"
	"                        and contrastive training, forward and backward) multiply\n"
	"                        bf16-rounded operands, summing in f32 (AVX512_BF16 CPUs;\n"
	"                        elsewhere f32, with a note)\n"
	"Contrastive fine-tuning (the output is the model, adapters merged):\n"
	"      --contrastive     FILE holds SENTENCE<TAB>POSITIVE[<TAB>HARD NEGATIVE] lines:\n"
	"                        InfoNCE on the PromptEOL embeddings, in-batch negatives\n"
	"      --unsupervised    FILE holds plain sentences, each its own positive under\n"
	"                        another dropout mask (SimCSE); implies --contrastive\n"
	"      --lora R          train LoRA of rank R on q/k/v/out_proj/fc1/fc2 (default 16)\n"
	"      --lora-alpha A    LoRA scale alpha/R (default 2R)\n"
	"      --perp            train every bias and LayerNorm instead (with --lora: as well)\n"
	"      --full            train every tensor of the decoder layers and the final LayerNorm\n"
	"      --pairs N         examples per step (default 32)\n"
	"      --epochs N        passes over FILE (default 1)\n"
	"  -n, --steps N         optimizer steps instead of whole epochs\n"
	"      --lr X            peak learning rate (default 1e-3; 1e-4 with --full)\n"
	"      --temperature X   of the cosines (default 0.05)\n"
	"      --symmetric       also each positive choosing its sentence (CLIP's loss)\n"
	"      --dropout P       dropout probability while training (default 0.1)\n"
	"      --warmup X        warmup fraction of the steps (default 0.1), then linear decay\n"
	"      --clip X          clip the global gradient norm (default 1.0; 0: off)\n"
	"      --seed N          order, LoRA initialisation and dropout (default 0)\n"
	"      --log FILE        one line per step (step, loss, lr, gradient norm, tokens/s)\n"
	"  -v, --verbose         notes on stderr even when it is no terminal\n"
	"  -o, --output FILE     write to FILE (renamed into place when complete)\n"
	"  -f, --force           write a stream to a terminal\n"
	"  -j, --threads N       threads (default: all cores)\n"
	"      --no-verify       skip CRC-32 checks of the model stream\n"
	"  -q, --quiet           no progress on stderr\n"
	"  -h, --help            show this help\n"
	"  -V, --version         show the version\n";

static int compute_bf16; /* --compute bf16 */

/* the options into o, checked against each other (usage errors exit 2) */
static void parse(int argc, char **argv, struct lm_embed_opts *o)
{
	/* getopt_long's table: ARG takes a value, FLAG none */
#define ARG(name, c) {name, required_argument, 0, c}
#define FLAG(name, c) {name, no_argument, 0, c}
	static const struct option lopts[] = {
		ARG("model", 'm'), ARG("demo", 'D'), ARG("template", 'T'), FLAG("avg", 'A'),
		FLAG("verbatim", 'W'), ARG("batch", 'b'), FLAG("pool", 'P'), ARG("tune", 'U'),
		ARG("projection", 'R'), ARG("sample", 'L'), ARG("negatives", 'G'),
		ARG("train-max", 'X'), ARG("epochs", 'E'), ARG("lr", 'r'), ARG("temperature", 't'),
		ARG("seed", 'S'), FLAG("tsv", 'Y'), ARG("output", 'o'), FLAG("force", 'f'),
		ARG("threads", 'j'), FLAG("no-verify", LM_OPT_NO_VERIFY), FLAG("quiet", 'q'),
		FLAG("help", 'h'), ARG("tune-encoder", 'e'), FLAG("contrastive", 'C'),
		FLAG("unsupervised", 'u'), FLAG("symmetric", 'y'), ARG("lora", 'K'),
		ARG("lora-alpha", 'a'), FLAG("perp", 'p'), FLAG("full", 'F'), ARG("pairs", 'z'),
		ARG("steps", 'n'), ARG("dropout", 'd'), ARG("warmup", 'w'), ARG("clip", 'c'),
		ARG("log", 'g'), FLAG("verbose", 'v'), FLAG("version", 'V'), LM_CLI_COMPUTE_LONGOPT,
		{0, 0, 0, 0}};
#undef ARG
#undef FLAG
	struct lm_embed_ctr_opts *ct = &o->ct;
	int ctr_opt = 0, c;

	while ((c = getopt_long(argc, argv, "m:b:L:n:o:fj:qvhV", lopts, NULL)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'D': o->ec.demo = optarg; break;
		case 'T': o->ec.tmpl = optarg; break;
		case 'A': o->ec.avg = 1; break;
		case 'W': o->ec.verbatim = 1; break;
		case 'b': o->ec.batch = (size_t)estrtoll(optarg, 1, 4096, "--batch"); break;
		case 'P': o->pool = 1; break;
		case 'U': o->tune = optarg; break;
		case 'R': o->projection = optarg; break;
		case 'L': o->tc.sample = (size_t)estrtoll(optarg, 2, 4096, "--sample"); break;
		case 'G': o->tc.negatives = (size_t)estrtoll(optarg, 1, 4096, "--negatives"); break;
		case 'X': o->tc.train_max = (size_t)estrtoll(optarg, 1, 1LL << 30, "--train-max"); break;
		case 'E': o->tc.epochs = (size_t)estrtoll(optarg, 1, 1 << 20, "--epochs"), o->epochs_set = 1; break;
		case 'r': o->tc.lr = estrtod(optarg, 1e-8, 10, "--lr"), o->lr_set = 1; break;
		case 't': o->tc.temperature = estrtod(optarg, 1e-4, 100, "--temperature"), o->temp_set = 1; break;
		case 'S': o->tc.seed = (uint64_t)estrtoll(optarg, 0, INT64_MAX, "--seed"); break;
		case 'C': ct->on = 1; break;
		case 'e': o->tune_encoder = optarg; break;
		case 'u': ct->on = ct->unsup = 1; break;
		case 'y': ct->symmetric = 1, ctr_opt = 1; break;
		case 'K': ct->rank = estrtoll(optarg, 1, 1 << 16, "--lora"), ct->lora_set = 1, ctr_opt = 1; break;
		case 'a': ct->alpha = estrtod(optarg, 1e-12, 1e12, "--lora-alpha"), ctr_opt = 1; break;
		case 'p': ct->perp = 1, ctr_opt = 1; break;
		case 'F': ct->full = 1, ctr_opt = 1; break;
		case 'z': ct->pairs = estrtoll(optarg, 2, 1 << 16, "--pairs"), ctr_opt = 1; break;
		case 'n': ct->steps = estrtoll(optarg, 1, 1LL << 40, "--steps"), ctr_opt = 1; break;
		case 'd': ct->dropout = estrtod(optarg, 0, 0.99, "--dropout"), ctr_opt = 1; break;
		case 'w': ct->warmup = estrtod(optarg, 0, 1, "--warmup"), ctr_opt = 1; break;
		case 'c': ct->clip = estrtod(optarg, 0, 1e300, "--clip"), ctr_opt = 1; break;
		case 'g': ct->log = optarg, ctr_opt = 1; break;
		case 'Y': o->tsv = 1; break;
		case LM_OPT_COMPUTE: compute_bf16 = lm_cli_compute_arg(optarg); break;
		default: lm_cli_flag(c, &o->fl, "lm-embed", usage_text); /* -o -f -j -v -q --no-verify -h -V */
		}
	}
	if (argc - optind != 1)
		lm_usage(usage_text, 2);
	o->file = argv[optind];
	if (lm_embed_cfg_check(&o->ec) < 0)
		edie(2, "%s", lm_errmsg());
	if (o->tune_encoder) {
		if (!o->pool || o->tune || o->projection || o->tsv || ct->on)
			edie(2, "--tune-encoder trains the model on a --pool: give --pool, and not --tune, "
			     "--projection, --tsv or --contrastive");
		if (ct->unsup)
			edie(2, "--unsupervised: --tune-encoder's pairs come from the model's scores");
	}
	if (ctr_opt && !ct->on && !o->tune_encoder)
		edie(2, "--symmetric, --lora, --perp, --full, --pairs, --steps, --dropout, --warmup, "
		     "--clip and --log are for --contrastive or --tune-encoder");
	if (ct->on || o->tune_encoder) {
		if (o->tune_encoder)
			o->pool = 0, ct->on = 1;
		if (o->pool || o->tune || o->projection || o->tsv)
			edie(2, "--contrastive writes the trained model: not with --pool, --tune, "
			     "--projection or --tsv");
		if (o->ec.avg)
			edie(2, "--avg: contrastive training trains the last token's state; embed the "
			     "trained model with --avg if you like, but it learnt without");
		if ((ct->perp || ct->full) && !ct->lora_set)
			ct->rank = 0;
		if (ct->alpha < 0)
			ct->alpha = 2.0 * (double)ct->rank;
		ct->epochs = o->epochs_set ? (long long)o->tc.epochs : o->tune_encoder ? 10 : 1;
		ct->lr = o->lr_set ? o->tc.lr : ct->full ? 1e-4 : 1e-3;
		if (o->temp_set)
			ct->temperature = o->tc.temperature;
		if (o->epochs_set && ct->steps)
			edie(2, "--epochs and --steps: choose one");
	}
	if ((o->tune || o->projection) && !o->pool)
		edie(2, "--tune and --projection build a retrieval index: give --pool");
	if (o->tune && o->projection)
		edie(2, "--tune and --projection: choose one");
	if (o->tsv && (o->tune || o->projection))
		edie(2, "--tsv writes no projection: drop it with --tune or --projection");
	if (o->tsv && o->fl.out)
		edie(2, "--tsv writes text to standard output: redirect it instead of -o");
	if ((!ct->on || o->tune_encoder) && o->tc.negatives >= o->tc.sample)
		edie(2, "--negatives %zu: must be fewer than the %zu sampled prompts (--sample)",
		     o->tc.negatives, o->tc.sample);
	if (!o->model && !strcmp(o->file, "-"))
		edie(2, "FILE '-': standard input carries the model; give it with --model");
	if (!o->model && isatty(0))
		edie(2, "the model comes on standard input (lm-import DIR | lm-embed FILE), or give --model");
	if (!o->tsv && !o->fl.out && !o->fl.force && isatty(1))
		edie(2, "standard output is a terminal: redirect it, use -o FILE, or -f");
}

int main(int argc, char **argv)
{
	struct lm_embed_opts o = {.fl = LM_CLI_FLAGS_INIT,
	                          .ct = {.rank = 16, .pairs = 32, .epochs = 1, .temperature = 0.05,
	                                 .dropout = 0.1, .warmup = 0.1, .clip = 1.0, .alpha = -1}};

	lm_rtune_defaults(&o.tc);
	lm_prog_init(argc, argv);
	parse(argc, argv, &o);
	lm_cli_compute(compute_bf16);
	lm_cli_threads(o.fl.threads, 0);
	if (o.ct.on)
		lm_embed_train(&o, argc, argv);
	else
		lm_embed_run(&o, argc, argv);
	return 0;
}
