/* lm-import: a Hugging Face OPT folder -> lm-stream on stdout */
#include "cli.h"
#include "hfdir.h"
#include "util.h"
#include "validate.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"usage: lm-import [-f] [-t f32|f16|bf16] [-o FILE] DIR\n"
	"Read a Hugging Face OPT model folder (config.json; model.safetensors, sharded\n"
	"safetensors or pytorch_model.bin; vocab.json and merges.txt) and write it as an\n"
	"lm-stream, tensors in model order.\n"
	"  -t, --dtype TYPE   convert floating-point tensors to f32, f16 or bf16\n"
	"  -o, --output FILE  write to FILE (atomically) instead of standard output\n"
	"  -f, --force        write to standard output even if it is a terminal\n"
	"  -h, --help         show this help\n"
	"  -V, --version      show the version\n";

static void add_blob(struct lm_writer *w, const char *name, char *data, size_t len)
{
	struct lm_record r = {0};
	r.kind = LM_REC_BLOB;
	snprintf(r.name, sizeof r.name, "%s", name);
	r.nbytes = len;
	r.data = lm_alloc(len);
	if (!r.data)
		die_lm(name);
	memcpy(r.data, data, len);
	if (lm_write_record(w, &r) < 0)
		die_lm(NULL);
	lm_record_clear(&r);
}

/* the side files of a folder and their blob names */
static const char *const side[][2] = {
	{"config.json", "hf/config.json"}, {"generation_config.json", "hf/generation_config.json"},
	{"vocab.json", "tokenizer/vocab.json"}, {"merges.txt", "tokenizer/merges.txt"}};
#define NSIDE (sizeof side / sizeof *side)

/* -t to a narrower type: a finite value beyond its range became inf; refuse, naming it */
static void overflow(const char *dir, const struct lm_record *src, const struct lm_record *cv)
{
	size_t n = lm_record_numel(cv), bad = 0, first = 0;
	float v;
	for (size_t i = 0; i < n; i++) {
		int inf;
		if (cv->dtype == LM_F32) { /* from f64 */
			inf = !isfinite(((const float *)cv->data)[i]);
		} else {
			uint16_t h = ((const uint16_t *)cv->data)[i];
			inf = cv->dtype == LM_F16 ? (h & 0x7c00) == 0x7c00 : (h & 0x7f80) == 0x7f80;
		}
		if (inf && !bad++)
			first = i;
	}
	if (!bad)
		return;
	lm_to_f32(&v, (const char *)src->data + first * lm_dtype_size(src->dtype), src->dtype, 1);
	die("%s: tensor '%s': %zu values beyond the range of %s, the first %g (element %zu); keep a "
	    "wider type (%s)", dir, src->name, bad, lm_dtype_name(cv->dtype), (double)v, first,
	    cv->dtype == LM_F16 ? "-t f32 or bf16" : cv->dtype == LM_BF16 ? "-t f32" : "no -t");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dtype", required_argument, 0, 't'}, {"output", required_argument, 0, 'o'},
		{"force", no_argument, 0, 'f'}, {"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
	const char *dir;
	int c, to = -1;
	struct lm_cli_flags cf = LM_CLI_FLAGS_INIT;
	struct lm_hfdir *d;
	struct lm_out out;
	struct lm_writer *w;
	struct lm_header h;
	struct lm_opt_tensor *t;
	size_t nt, slen[NSIDE] = {0};
	char *sdata[NSIDE] = {0};

	lm_prog_init(argc, argv);
	while ((c = getopt_long(argc, argv, "t:o:fhV", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			to = lm_dtype_parse(optarg);
			if (to != LM_F32 && to != LM_F16 && to != LM_BF16)
				edie(2, "-t: '%s' is not one of f32, f16, bf16", optarg);
			break;
		default: lm_cli_flag(c, &cf, "lm-import", usage_text);
		}
	}
	if (optind != argc - 1)
		lm_usage(usage_text, 2);
	dir = argv[optind];

	/* everything is checked before the first byte goes out */
	if (!(d = lm_hfdir_open(dir)))
		die_lm(dir);
	for (size_t i = 0; i < NSIDE; i++)
		sdata[i] = lm_hfdir_file(d, side[i][0], &slen[i]);
	if (lm_hfdir_check_tokenizer(d, sdata[2], slen[2], sdata[3], slen[3]) < 0)
		die_lm(dir);
	lm_out_open(&out, cf.out, cf.force);
	w = lm_writer_open(out.fd, out.name);
	lm_header_init(&h, lm_hfdir_config(d));
	json_object_set_new(h.json, "source", json_pack("{s:s}", "format", lm_hfdir_format(d)));
	if (lm_write_header(w, &h, argv0, argc, argv) < 0)
		die_lm(NULL);

	/* side files travel inside the stream, so the end of a pipe needs no folder; they come
	 * first, so a program can tokenize its text before the first layer arrives */
	for (size_t i = 0; i < NSIDE; i++) {
		if (sdata[i])
			add_blob(w, side[i][1], sdata[i], slen[i]);
		free(sdata[i]);
	}
	t = lm_opt_tensors(lm_hfdir_config(d), &nt);
	for (size_t i = 0; i < nt; i++) {
		struct lm_record r = {0};
		if (lm_hfdir_read(d, t[i].name, &r) < 0)
			die_lm(dir);
		if (r.ndim != t[i].ndim || r.shape[0] != t[i].shape[0] || (r.ndim == 2 && r.shape[1] != t[i].shape[1]))
			edie(1, "%s: tensor '%s': shape does not match config.json", dir, t[i].name);
		if (!lm_dtype_info(r.dtype)->is_float)
			edie(1, "%s: tensor '%s': dtype %s is not a float type", dir, t[i].name, lm_dtype_name(r.dtype));
		/* a NaN would pass through every stage and be refused by the first that runs it */
		if (lm_val_payload(&r) < 0)
			die_lm(dir);
		if (to >= 0 && (int)r.dtype != to) {
			struct lm_record cv = {0};
			lm_record_tensor(&cv, r.name, to, r.ndim, r.shape);
			if (lm_record_alloc(&cv) < 0 || lm_convert(cv.data, to, r.data, r.dtype, lm_record_numel(&r)) < 0)
				die_lm(t[i].name);
			overflow(dir, &r, &cv);
			lm_record_clear(&r);
			r = cv;
		}
		if (lm_write_record(w, &r) < 0)
			die_lm(NULL);
		lm_record_clear(&r);
	}
	free(t);

	lm_out_finish(w, &out);
	lm_header_free(&h);
	lm_hfdir_close(d);
	return 0;
}
