/* lm-init: a randomly initialised OPT model of any shape, as an lm-stream (benchmarks,
 * tests): weights N(0, init_std) as transformers' OPTPreTrainedModel._init_weights,
 * biases 0, LayerNorm weights 1. Written one tensor at a time, so any size fits. */
#include "cli.h"
#include "rng.h"
#include "util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LM_DATADIR
#define LM_DATADIR "/usr/local/share/lmpipe"
#endif
#ifndef LM_SRCDIR
#define LM_SRCDIR "."
#endif

static const char usage_text[] =
	"usage: lm-init --like NAME [-t f32|f16|bf16] [--seed N] [options] [-o FILE]\n"
	"Write a randomly initialised OPT model (weights N(0, std), biases 0, LayerNorm 1)\n"
	"as an lm-stream, with the OPT tokenizer.\n"
	"  -l, --like NAME       shape of opt-micro, opt-125m, opt-350m, opt-1.3b, opt-2.7b, ... opt-66b\n"
	"      --layers N        override the number of decoder layers\n"
	"      --positions N     override max_position_embeddings\n"
	"  -t, --dtype TYPE      f32 (default), f16 or bf16\n"
	"      --std X           standard deviation of the weights (default 0.02)\n"
	"      --seed N          random seed (default 0)\n"
	"      --tokenizer DIR   take vocab.json and merges.txt from DIR\n"
	"      --no-tokenizer    write no tokenizer blobs\n"
	"  -o, --output FILE     write to FILE (atomically) instead of standard output\n"
	"  -f, --force           write to standard output even if it is a terminal\n"
	"  -h, --help            show this help\n"
	"  -V, --version         show the version\n";

static void add_blob(struct lm_writer *w, const char *dir, const char *file, const char *name)
{
	struct lm_record r = {0};
	size_t n = strlen(dir) + strlen(file) + 2, len;
	char *path = xmalloc(n), *s;
	snprintf(path, n, "%s/%s", dir, file);
	if (!(s = lm_read_file(path, (size_t)1 << 30, &len)))
		die_lm(path);
	r.kind = LM_REC_BLOB;
	snprintf(r.name, sizeof r.name, "%s", name);
	r.nbytes = len;
	if (!(r.data = lm_alloc(len)))
		die_lm(path);
	memcpy(r.data, s, len);
	if (lm_write_record(w, &r) < 0)
		die_lm(NULL);
	lm_record_clear(&r);
	free(s);
	free(path);
}

/* BINDIR/../share/lmpipe/tokenizer of the running program: `make install PREFIX=P` puts
 * the programs in P/bin and the tokenizer in P/share/lmpipe, and the compiled-in DATADIR
 * names only the PREFIX the objects were built with (an install to another PREFIX reuses
 * them). NULL where /proc/self/exe cannot be read. */
static const char *beside_exe(void)
{
	static const char rel[] = "/../share/lmpipe/tokenizer";
	static char buf[4096];
	ssize_t k = readlink("/proc/self/exe", buf, sizeof buf - sizeof rel);
	char *slash;
	if (k <= 0 || (size_t)k >= sizeof buf - sizeof rel)
		return NULL;
	buf[k] = '\0';
	if (!(slash = strrchr(buf, '/')))
		return NULL;
	memcpy(slash, rel, sizeof rel);
	return buf;
}

/* the first folder holding both files: --tokenizer, $LMPIPE_TOKENIZER, the data installed
 * beside this program, the build's DATADIR, then the source tree (programs run from bin/) */
static const char *find_tokenizer(const char *given)
{
	static char buf[4096];
	const char *cand[4] = {getenv("LMPIPE_TOKENIZER"), beside_exe(), LM_DATADIR "/tokenizer",
	                       LM_SRCDIR "/models/opt-micro"};
	if (given)
		return given;
	for (int i = 0; i < 4; i++) {
		if (!cand[i])
			continue;
		snprintf(buf, sizeof buf, "%s/vocab.json", cand[i]);
		if (access(buf, R_OK) < 0)
			continue;
		snprintf(buf, sizeof buf, "%s/merges.txt", cand[i]);
		if (access(buf, R_OK) == 0)
			return cand[i];
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"like", required_argument, 0, 'l'}, {"layers", required_argument, 0, 'L'},
		{"positions", required_argument, 0, 'P'}, {"dtype", required_argument, 0, 't'},
		{"std", required_argument, 0, 'S'}, {"seed", required_argument, 0, 's'},
		{"tokenizer", required_argument, 0, 'T'}, {"no-tokenizer", no_argument, 0, 'N'},
		{"output", required_argument, 0, 'o'}, {"force", no_argument, 0, 'f'},
		{"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
	const char *like = NULL, *tokdir = NULL;
	long long layers = 0, positions = 0, seed = 0;
	double std = 0.02;
	int c, dt = LM_F32, notok = 0;
	struct lm_cli_flags cf = LM_CLI_FLAGS_INIT;
	struct lm_opt_config cfg;
	struct lm_out out;
	struct lm_writer *w;
	struct lm_header h;
	struct lm_opt_tensor *t;
	struct lm_rng rng;
	size_t nt;

	lm_prog_init(argc, argv);
	while ((c = getopt_long(argc, argv, "l:t:o:fhV", opts, NULL)) != -1) {
		switch (c) {
		case 'l': like = optarg; break;
		case 'L': layers = estrtoll(optarg, 1, 4096, "--layers"); break;
		case 'P': positions = estrtoll(optarg, 1, 1 << 20, "--positions"); break;
		case 't':
			dt = lm_dtype_parse(optarg);
			if (dt != LM_F32 && dt != LM_F16 && dt != LM_BF16)
				edie(2, "-t: '%s' is not one of f32, f16, bf16", optarg);
			break;
		case 'S': std = estrtod(optarg, 0, 10, "--std"); break;
		case 's': seed = estrtoll(optarg, 0, 1LL << 62, "--seed"); break;
		case 'T': tokdir = optarg; break;
		case 'N': notok = 1; break;
		default: lm_cli_flag(c, &cf, "lm-init", usage_text);
		}
	}
	if (!like || optind != argc)
		lm_usage(usage_text, 2);
	if (lm_opt_config_like(&cfg, like) < 0)
		edie(2, "--like: %s", lm_errmsg());
	if (layers)
		cfg.num_layers = layers;
	if (positions)
		cfg.max_positions = positions;
	if (!notok && !(tokdir = find_tokenizer(tokdir)))
		die("no tokenizer found (give --tokenizer DIR, set LMPIPE_TOKENIZER, or use --no-tokenizer)");

	lm_out_open(&out, cf.out, cf.force);
	w = lm_writer_open(out.fd, out.name);
	lm_header_init(&h, &cfg);
	if (lm_write_header(w, &h, argv0, argc, argv) < 0)
		die_lm(NULL);
	if (!notok) {
		add_blob(w, tokdir, "vocab.json", "tokenizer/vocab.json");
		add_blob(w, tokdir, "merges.txt", "tokenizer/merges.txt");
	}
	lm_rng_seed(&rng, (uint64_t)seed);
	t = lm_opt_tensors(&cfg, &nt);
	for (size_t i = 0; i < nt; i++) {
		struct lm_record r = {0};
		int is_ln = t[i].kind == LM_T_ATTN_LN_W || t[i].kind == LM_T_FFN_LN_W || t[i].kind == LM_T_FINAL_LN_W;
		int is_vec = t[i].ndim == 1;
		size_t n;
		float *f;
		lm_record_tensor(&r, t[i].name, dt, t[i].ndim, t[i].shape);
		n = lm_record_numel(&r);
		if (lm_record_alloc(&r) < 0 || !(f = lm_alloc(n * sizeof *f)))
			die_lm(t[i].name);
		for (size_t k = 0; k < n; k++)
			f[k] = is_vec ? (is_ln ? 1.0f : 0.0f) : (float)(std * lm_rng_normal(&rng));
		if (lm_convert(r.data, dt, f, LM_F32, n) < 0 || lm_write_record(w, &r) < 0)
			die_lm(t[i].name);
		lm_free(f);
		lm_record_clear(&r);
	}
	free(t);
	lm_out_finish(w, &out);
	lm_header_free(&h);
	return 0;
}
