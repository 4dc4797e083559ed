/* lm-import: a Hugging Face OPT folder -> lm-stream on stdout */
#include "cli.h"
#include "hfdir.h"
#include "util.h"

#include <getopt.h>
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

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dtype", required_argument, 0, 't'}, {"output", required_argument, 0, 'o'},
		{"force", no_argument, 0, 'f'}, {"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
	const char *out_path = NULL, *dir;
	int force = 0, c, to = -1;
	struct lm_hfdir *d;
	struct lm_out out;
	struct lm_writer *w;
	struct lm_header h;
	struct lm_opt_tensor *t;
	size_t nt;

	lm_prog_init(argc, argv);
	while ((c = getopt_long(argc, argv, "t:o:fhV", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			to = lm_dtype_parse(optarg);
			if (to != LM_F32 && to != LM_F16 && to != LM_BF16)
				edie(2, "-t: '%s' is not one of f32, f16, bf16", optarg);
			break;
		case 'o': out_path = optarg; break;
		case 'f': force = 1; break;
		case 'h': lm_usage(usage_text, 0);
		case 'V': puts("lm-import " LM_VERSION); return 0;
		default: lm_bad_option(usage_text);
		}
	}
	if (optind != argc - 1)
		lm_usage(usage_text, 2);
	dir = argv[optind];

	/* everything is checked before the first byte goes out */
	if (!(d = lm_hfdir_open(dir)))
		die_lm(dir);
	lm_out_open(&out, out_path, force);
	w = lm_writer_open(out.fd, out.name);
	lm_header_init(&h, lm_hfdir_config(d));
	json_object_set_new(h.json, "source", json_pack("{s:s}", "format", lm_hfdir_format(d)));
	if (lm_write_header(w, &h, argv0, argc, argv) < 0)
		die_lm(NULL);

	/* side files travel inside the stream, so the end of a pipe needs no folder; they come
	 * first, so a program can tokenize its text before the first layer arrives */
	static const char *const side[][2] = {
		{"config.json", "hf/config.json"}, {"generation_config.json", "hf/generation_config.json"},
		{"vocab.json", "tokenizer/vocab.json"}, {"merges.txt", "tokenizer/merges.txt"}};
	for (size_t i = 0; i < sizeof side / sizeof *side; i++) {
		size_t len;
		char *s = lm_hfdir_file(d, side[i][0], &len);
		if (s)
			add_blob(w, side[i][1], s, len);
		free(s);
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
		if (to >= 0 && (int)r.dtype != to) {
			struct lm_record cv = {0};
			lm_record_tensor(&cv, r.name, to, r.ndim, r.shape);
			if (lm_record_alloc(&cv) < 0 || lm_convert(cv.data, to, r.data, r.dtype, lm_record_numel(&r)) < 0)
				die_lm(t[i].name);
			lm_record_clear(&r);
			r = cv;
		}
		if (lm_write_record(w, &r) < 0)
			die_lm(NULL);
		lm_record_clear(&r);
	}
	free(t);

	if (lm_write_end(w) < 0 || lm_writer_close(w) < 0)
		die_lm(NULL);
	lm_out_commit(&out);
	lm_header_free(&h);
	lm_hfdir_close(d);
	return 0;
}
