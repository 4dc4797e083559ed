/* lm-eval: the end of a pipe: perplexity of a text, greedy generation, STS, multiple choice,
 * zero-shot tasks, question/answer files, early exit; the modes are in common/prog/evalrun.c */
#include "cli.h"
#include "evalrun.h"
#include "matvec.h"
#include "util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"usage: lm-eval (--ppl FILE | --generate TEXT) [options] [STREAM]\n"
	"       lm-eval (--sts FILE | --mc FILE [--retrieve INDEX -k K]) [options] [STREAM]\n"
	"       lm-eval --task LIST --data DIR [--limit N] [--log-samples] [options] [STREAM]\n"
	"       lm-eval --exit-sweep FILE [--thresholds LIST] [--exit-rule R] [options] [STREAM]\n"
	"Evaluate the model read from STREAM or standard input; the report goes to stdout.\n"
	"  -p, --ppl FILE        perplexity of FILE (text, or an lm-stream of token ids)\n"
	"  -s, --seqlen N        tokens per window (default: the model's max positions)\n"
	"  -w, --windows K       use only the first K windows\n"
	"  -b, --batch N         windows per forward batch (default 4)\n"
	"      --save-ids OUT    also write FILE's token ids (BOS first) as an lm-stream to OUT\n"
	"  -g, --generate TEXT   greedy continuation of TEXT (BOS in front)\n"
	"  -n, --tokens N        tokens to generate (default 32; 15 with --exit-sweep)\n"
	"      --temperature T   --generate, --exit-sweep: sample at temperature T (default 0: greedy)\n"
	"      --top-k K         sampling among the K most likely tokens (default: all)\n"
	"Early exit (GREEN-CODE; exit k leaves after decoder layer k):\n"
	"      --exit-threshold P  --generate: leave at the first exit whose p(exit) > P (0..1)\n"
	"      --exit-rule R     policy (the stream's, from lm-retrain --exit-policy; default) or\n"
	"                        confidence (the exit's max token probability >= P)\n"
	"      --exits LIST      confidence: the exits, e.g. 1,2,3 (default: the stream's)\n"
	"      --exit-sweep FILE cost and quality per threshold on FILE's windows (-s, -w): the\n"
	"                        prompt is their start, the reference the text after it\n"
	"      --thresholds LIST --exit-sweep: default 0.5,0.6,0.7,0.8,0.9,0.95,0.99\n"
	"      --context-frac F  --exit-sweep: prompt share of a window (default 0.2)\n"
	"      --sts FILE        STS-B or SICK pairs: Spearman x100 of the embeddings' cosines\n"
	"      --demo S=W        --sts, embeddings: PromptEOL demonstration (S means W)\n"
	"      --template T      --sts, embeddings: prompt with <sentence> (default PromptEOL's)\n"
	"      --avg             --sts, embeddings: mean pooling instead of the last token\n"
	"      --verbatim        --sts, embeddings: keep each sentence's white space as it is\n"
	"                        (default: runs collapsed to one space, ends trimmed)\n"
	"      --mc FILE         multiple choice (JSON lines or TruthfulQA mc_task.json): accuracy\n"
	"      --retrieve INDEX  --mc: prepend demonstrations from a pool made by lm-embed --pool\n"
	"      --retriever STREAM  --retrieve: the model that embeds the inputs (one trained by\n"
	"                        lm-embed --tune-encoder; default: the scored model)\n"
	"  -k, --demos K         --mc: demonstrations per item (default 3)\n"
	"      --random-demos    --mc: K random pool prompts instead of the nearest\n"
	"      --no-projection   --mc: ignore the index's tuned projection\n"
	"      --seed N          --random-demos, --temperature: seed (default 0)\n"
	"      --task LIST       zero-shot tasks as lm-evaluation-harness scores them: boolq, rte,\n"
	"                        hellaswag, winogrande, arc_easy, arc_challenge, openbookqa, piqa,\n"
	"                        lambada_openai, comma-separated, or all\n"
	"      --data DIR        --task: the data sets' folder (layout: lm-eval(1), Zero-shot tasks)\n"
	"      --limit N         --task: only the first N items of each task\n"
	"      --log-samples     --task --json: each item's log-likelihoods and tokens too\n"
	"      --bos             --task: BOS before every context (default: none, as the harness\n"
	"                        feeds OPT)\n"
	"      --qa CSV          question/answer rows: perplexity of the answers given the questions\n"
	"      --question COL    --qa: column names (default: as lm-unlearn finds them)\n"
	"      --answer COL\n"
	"      --harm-rate       --qa: also the harmful-answer rate of greedy continuations\n"
	"      --match M         --harm-rate: the answer's first words as a prefix (default) or\n"
	"                        anywhere (contains)\n"
	"      --words N         --harm-rate: how many of its first words (default 8)\n"
	"      --json            print the report as one JSON object\n"
	"      --compute C       f32 (default) or bf16: the linear layers, attention and the\n"
	"                        LM head multiply bf16-rounded inputs and weights, summing in\n"
	"                        f32 (AVX512_BF16 CPUs; elsewhere f32, with a note)\n"
	"      --act8            decoding with 4-bit weights: activations rounded to 8 bits per\n"
	"                        group, integer products (faster; values change slightly)\n"
	"  -j, --threads N       threads (default: all cores)\n"
	"      --no-verify       skip CRC-32 checks of the input stream\n"
	"  -q, --quiet           no progress on stderr\n"
	"  -h, --help            show this help\n"
	"  -V, --version         show the version\n";


/* the options into *o; exit 2 on a usage error */
static void parse(int argc, char **argv, struct lm_eval_opts *o)
{
	enum { O_STS = 0x170, O_DEMO, O_TMPL, O_AVG, O_MC, O_RETR, O_RETRIEVER, O_RAND, O_NOPROJ, O_SEED };
	enum { O_QA = 0x190, O_QCOL, O_ACOL, O_HARM, O_MATCH, O_WORDS };
	enum { O_TASK = 0x1d0, O_TDATA, O_LIMIT, O_LOGS, O_BOS };
	enum { O_VERBATIM = 0x1e0, O_COMPUTE, O_ACT8 };
	enum { O_ETHR = 0x1b0, O_ERULE, O_EXITS, O_SWEEP, O_THRS, O_CFRAC, O_TEMP, O_TOPK };
	static const struct option lopts[] = {
		{"ppl", required_argument, 0, 'p'}, {"seqlen", required_argument, 0, 's'},
		{"windows", required_argument, 0, 'w'}, {"batch", required_argument, 0, 'b'},
		{"save-ids", required_argument, 0, 'I'}, {"generate", required_argument, 0, 'g'},
		{"tokens", required_argument, 0, 'n'}, {"json", no_argument, 0, 'J'},
		{"threads", required_argument, 0, 'j'}, {"no-verify", no_argument, 0, LM_OPT_NO_VERIFY},
		{"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},
		{"sts", required_argument, 0, O_STS}, {"demo", required_argument, 0, O_DEMO},
		{"template", required_argument, 0, O_TMPL}, {"avg", no_argument, 0, O_AVG},
		{"verbatim", no_argument, 0, O_VERBATIM},
		{"mc", required_argument, 0, O_MC}, {"retrieve", required_argument, 0, O_RETR},
		{"retriever", required_argument, 0, O_RETRIEVER},
		{"demos", required_argument, 0, 'k'}, {"random-demos", no_argument, 0, O_RAND},
		{"no-projection", no_argument, 0, O_NOPROJ}, {"seed", required_argument, 0, O_SEED},
		{"task", required_argument, 0, O_TASK}, {"data", required_argument, 0, O_TDATA},
		{"limit", required_argument, 0, O_LIMIT}, {"log-samples", no_argument, 0, O_LOGS},
		{"bos", no_argument, 0, O_BOS},
		{"qa", required_argument, 0, O_QA}, {"question", required_argument, 0, O_QCOL},
		{"answer", required_argument, 0, O_ACOL}, {"harm-rate", no_argument, 0, O_HARM},
		{"match", required_argument, 0, O_MATCH}, {"words", required_argument, 0, O_WORDS},
		{"exit-threshold", required_argument, 0, O_ETHR}, {"exit-rule", required_argument, 0, O_ERULE},
		{"exits", required_argument, 0, O_EXITS}, {"exit-sweep", required_argument, 0, O_SWEEP},
		{"thresholds", required_argument, 0, O_THRS}, {"context-frac", required_argument, 0, O_CFRAC},
		{"temperature", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOPK},
		{"compute", required_argument, 0, O_COMPUTE}, {"act8", no_argument, 0, O_ACT8},
		{"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
	int rule_set = 0, bf16 = 0, act8 = 0, c;

	while ((c = getopt_long(argc, argv, "p:s:w:b:g:n:j:k:qhV", lopts, NULL)) != -1) {
		switch (c) {
		case 'p': o->ppl = optarg; break;
		case 's': o->seqlen = estrtoll(optarg, 2, 1 << 20, "--seqlen"); break;
		case 'w': o->windows = estrtoll(optarg, 1, 1LL << 40, "--windows"); break;
		case 'b': o->batch = estrtoll(optarg, 1, 4096, "--batch"), o->batch_set = 1; break;
		case 'I':
			if (!strcmp(optarg, "-"))
				edie(2, "--save-ids: give a file name (standard output carries the report)");
			o->save_ids = optarg;
			break;
		case 'g': o->gen = optarg; break;
		case 'n': o->ntok = estrtoll(optarg, 0, 1 << 20, "--tokens"), o->ntok_set = 1; break;
		case 'J': o->json = 1; break;
		case O_STS: o->sts = optarg; break;
		case O_DEMO: o->ec.demo = optarg; break;
		case O_TMPL: o->ec.tmpl = optarg; break;
		case O_AVG: o->ec.avg = 1; break;
		case O_VERBATIM: o->ec.verbatim = 1; break;
		case O_COMPUTE: bf16 = lm_cli_compute_arg(optarg); break;
		case O_ACT8: act8 = 1; break;
		case O_MC: o->mc = optarg; break;
		case O_RETR: o->retrieve = optarg; break;
		case O_RETRIEVER: o->retriever = optarg; break;
		case 'k': o->ro.k = (size_t)estrtoll(optarg, 1, 1 << 16, "--demos"); break;
		case O_RAND: o->ro.random = 1; break;
		case O_NOPROJ: o->ro.no_projection = 1; break;
		case O_SEED: o->ro.seed = (uint64_t)estrtoll(optarg, 0, INT64_MAX, "--seed"); break;
		case O_TASK: o->tasks = optarg; break;
		case O_TDATA: o->tdata = optarg; break;
		case O_LIMIT: o->limit = estrtoll(optarg, 1, 1LL << 40, "--limit"); break;
		case O_LOGS: o->log_samples = 1; break;
		case O_BOS: o->bos = 1; break;
		case O_QA: o->qa = optarg; break;
		case O_QCOL: o->qcol = optarg; break;
		case O_ACOL: o->acol = optarg; break;
		case O_HARM: o->harm = 1; break;
		case O_MATCH:
			if (!strcmp(optarg, "contains"))
				o->ho.match = LM_MATCH_CONTAINS;
			else if (strcmp(optarg, "prefix"))
				edie(2, "--match: '%s' is not prefix or contains", optarg);
			break;
		case O_WORDS: o->ho.words = (size_t)estrtoll(optarg, 1, 1 << 16, "--words"); break;
		case O_ETHR: o->eo.threshold = estrtod(optarg, 0, 1, "--exit-threshold"), o->ee_threshold = 1; break;
		case O_ERULE:
			if (!strcmp(optarg, "confidence"))
				o->eo.rule = LM_EE_CONFIDENCE;
			else if (strcmp(optarg, "policy"))
				edie(2, "--exit-rule: '%s' is not policy or confidence", optarg);
			rule_set = 1;
			break;
		case O_EXITS: o->exits = optarg; break;
		case O_SWEEP: o->sweep = optarg; break;
		case O_THRS: o->thresholds = optarg; break;
		case O_CFRAC: o->ctx_frac = estrtod(optarg, 0, 0.95, "--context-frac"); break;
		case O_TEMP: o->eo.temperature = estrtod(optarg, 0, 100, "--temperature"), o->sampling = 1; break;
		case O_TOPK: o->eo.top_k = (int)estrtoll(optarg, 0, 1 << 30, "--top-k"), o->sampling = 1; break;
		default: lm_cli_flag(c, &o->fl, "lm-eval", usage_text); /* -j --no-verify -q -h -V */
		}
	}
	if (argc - optind > 1 || !!o->ppl + !!o->gen + !!o->sts + !!o->mc + !!o->qa + !!o->sweep + !!o->tasks != 1)
		lm_usage(usage_text, 2);
	if (o->ee_threshold && !o->gen)
		edie(2, "--exit-threshold is for --generate (--exit-sweep takes --thresholds)");
	if ((o->thresholds || o->ctx_frac != 0.2) && !o->sweep)
		edie(2, "--thresholds and --context-frac are for --exit-sweep");
	if ((rule_set || o->exits) && !o->ee_threshold && !o->sweep)
		edie(2, "--exit-rule and --exits need --exit-threshold P or --exit-sweep FILE");
	if (o->exits && o->eo.rule == LM_EE_POLICY)
		edie(2, "--exits: the policy decides at the exits it was trained for (--exit-rule confidence takes a list)");
	if (o->sampling && !o->gen && !o->sweep)
		edie(2, "--temperature and --top-k are for --generate and --exit-sweep");
	if (o->gen && !o->ee_threshold)
		o->eo.rule = LM_EE_NONE; /* sampling without early exit */
	if ((o->tdata || o->limit || o->log_samples || o->bos) && !o->tasks)
		edie(2, "--data, --limit, --log-samples and --bos are for --task LIST");
	if (o->tasks && !o->tdata)
		edie(2, "--task: give the data sets' folder with --data DIR");
	if (o->log_samples && !o->json)
		edie(2, "--log-samples adds to the --json report: give --json");
	if ((o->qcol || o->acol || o->harm) && !o->qa)
		edie(2, "--question, --answer and --harm-rate are for --qa CSV");
	if ((o->ho.words || o->ho.match) && !o->harm)
		edie(2, "--match and --words are for --harm-rate");
	if (o->retrieve && !o->mc)
		edie(2, "--retrieve adds demonstrations to --mc items: give --mc FILE");
	if (o->retriever && !o->retrieve)
		edie(2, "--retriever embeds the inputs for --retrieve INDEX: give it");
	if ((o->ro.random || o->ro.no_projection) && !o->retrieve)
		edie(2, "--random-demos and --no-projection choose demonstrations: give --retrieve INDEX");
	if ((o->ec.demo || o->ec.tmpl || o->ec.avg || o->ec.verbatim) && !o->sts)
		edie(2, "--demo, --template, --avg and --verbatim shape --sts embeddings (an index records its own)");
	if (lm_embed_cfg_check(&o->ec) < 0)
		edie(2, "%s", lm_errmsg());
	lm_cli_compute(bf16); /* after every usage check, so a usage error stays one line */
	lm_matvec_set_act8(act8);
	o->input = optind < argc ? argv[optind] : NULL;
}

int main(int argc, char **argv)
{
	struct lm_eval_opts o = {.batch = 4, .ntok = 32, .fl = LM_CLI_FLAGS_INIT, .ro = {.k = 3},
	                         .eo = {.rule = LM_EE_POLICY}, .ctx_frac = 0.2};
	struct lm_model_stream ms;
	struct lm_reader *rd;

	lm_prog_init(argc, argv);
	parse(argc, argv, &o);
	lm_cli_threads(o.fl.threads, 0);
	rd = lm_in_open(o.input);
	lm_reader_set_verify(rd, o.fl.verify);
	if (lm_ms_open(&ms, rd) < 0)
		die_lm(lm_reader_name(rd));
	if (o.ppl)
		lm_eval_ppl(&ms, &o);
	else if (o.sts)
		lm_eval_sts(&ms, &o);
	else if (o.mc)
		lm_eval_mc(&ms, &o);
	else if (o.qa)
		lm_eval_qa(&ms, &o);
	else if (o.tasks)
		lm_eval_task(&ms, &o);
	else if (o.sweep)
		lm_eval_ee_sweep(&ms, &o);
	else if (o.ee_threshold || o.sampling)
		lm_eval_ee_generate(&ms, &o);
	else
		lm_eval_generate(&ms, &o);
	lm_ms_close(&ms);
	lm_reader_close(rd);
	lm_fshut_stdout();
	return 0;
}
