/* hfexport.c: an lm-stream written as a Hugging Face OPT folder that transformers'
 * from_pretrained loads (lm-export). */
#include "hfexport.h"
#include "cli.h"
#include "exitpolicy.h"
#include "quant.h"
#include "safetensors.h"
#include "util.h"
#include "valread.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct blob { char name[LM_MAX_NAME + 1]; char *data; size_t len; };

static char *join(const char *dir, const char *file)
{
	size_t n = strlen(dir) + strlen(file) + 2;
	char *p = xmalloc(n);
	snprintf(p, n, "%s/%s", dir, file);
	return p;
}

/* write a whole file atomically: temporary name, then rename */
static void put_file(const char *dir, const char *file, const char *data, size_t len)
{
	char *path = join(dir, file);
	struct lm_out o;
	lm_out_open(&o, path, 1);
	if (lm_write_full(o.fd, data, len) < 0)
		die_lm(path);
	lm_out_commit(&o);
	free(path);
}

/* model.safetensors: the header from the entries, then the payloads from the scratch file */
static void write_safetensors(const char *dir, int datafd, const struct lm_st_out_entry *ents,
                              size_t n)
{
	char *path = join(dir, "model.safetensors");
	struct lm_out o;
	char *buf = xmalloc(1 << 20);
	ssize_t k;
	lm_out_open(&o, path, 1);
	if (lm_st_write_header(o.fd, ents, n) < 0)
		die_lm(path);
	if (lseek(datafd, 0, SEEK_SET) < 0)
		die("%s:", dir);
	while ((k = read(datafd, buf, 1 << 20)) > 0)
		if (lm_write_full(o.fd, buf, (size_t)k) < 0)
			die_lm(path);
	if (k < 0)
		die("%s:", dir);
	lm_out_commit(&o);
	free(buf);
	free(path);
}

/* config.json: the stream's config over the original one it carries (hf/config.json), with
 * the dtype of the weights as written */
static void write_config(const char *dir, const struct lm_opt_config *cfg,
                         const struct blob *blobs, size_t nblobs,
                         const struct lm_st_out_entry *ents, size_t n)
{
	json_t *orig = NULL, *hf;
	char *text;
	for (size_t i = 0; i < nblobs; i++)
		if (!strcmp(blobs[i].name, "hf/config.json"))
			orig = json_loadb(blobs[i].data, blobs[i].len, 0, NULL);
	hf = lm_opt_config_to_hf(cfg, orig);
	/* the dtype transformers loads by default: that of the weights as written */
	if (n) {
		const char *tn = ents[0].dtype == LM_F16 ? "float16" : ents[0].dtype == LM_BF16 ? "bfloat16" : "float32";
		json_object_set_new(hf, "torch_dtype", json_string(tn));
		if (json_object_get(hf, "dtype"))
			json_object_set_new(hf, "dtype", json_string(tn));
	}
	text = json_dumps(hf, JSON_INDENT(2) | JSON_SORT_KEYS);
	put_file(dir, "config.json", text, strlen(text));
	free(text);
	json_decref(hf);
	json_decref(orig);
}

void lm_hf_export(struct lm_reader *rd, const char *dir)
{
	int datafd, got;
	char tmpl[4096];
	struct lm_header h;
	struct lm_record r = {0};
	struct lm_st_out_entry *ents = NULL;
	int64_t (*shapes)[8] = NULL;
	char **names = NULL;
	size_t n = 0, cap = 0, nblobs = 0, nskipped = 0;
	struct blob *blobs = NULL;
	struct lm_validator val;

	if (lm_read_header(rd, &h) < 0)
		die_lm(lm_reader_name(rd));
	if (mkdir(dir, 0777) < 0 && errno != EEXIST)
		die("%s:", dir);

	/* safetensors needs every shape before the first byte of data, and a pipe gives
	 * tensors one at a time: payloads go to an unlinked scratch file in DIR first */
	snprintf(tmpl, sizeof tmpl, "%s/.lm-export.XXXXXX", dir);
	if ((datafd = mkstemp(tmpl)) < 0)
		die("%s:", dir);
	unlink(tmpl);
	/* a folder transformers loads must hold the model the header describes: checked as
	 * the tensors arrive, and what never came at the end, before any file is written */
	lm_val_init(&val, &h.cfg, 1);
	while ((got = lm_val_next(&val, rd, &r, NULL, NULL)) != 0) {
		if (got < 0)
			die_lm(lm_reader_name(rd));
		if (r.kind == LM_REC_BLOB) {
			blobs = xrealloc(blobs, (nblobs + 1) * sizeof *blobs);
			snprintf(blobs[nblobs].name, sizeof blobs[0].name, "%s", r.name);
			blobs[nblobs].data = r.data, blobs[nblobs].len = r.nbytes;
			r.data = NULL;
			nblobs++;
			continue;
		}
		/* an early-exit policy (lm-retrain --exit-policy) is ours, not OPT's: transformers
		 * would carry it as an unknown weight and lm-import would refuse the folder */
		if (!strncmp(r.name, LM_POLICY_PREFIX, strlen(LM_POLICY_PREFIX))) {
			nskipped++;
			continue;
		}
		if (lm_dtype_is_packed(r.dtype)) {
			/* transformers has no packed types of ours: the dequantized values, in f16,
			 * the dtype OPT checkpoints are published in */
			size_t cols = (size_t)r.shape[1], numel = lm_record_numel(&r);
			float *f = lm_alloc(numel * sizeof *f);
			uint16_t *hv = lm_alloc(numel * sizeof *hv);
			if (!f || !hv || lm_q_dequant_rows(f, r.data, r.dtype, (size_t)r.shape[0], cols) < 0)
				die("%s: tensor '%s': %s", lm_reader_name(rd), r.name, lm_errmsg());
			lm_convert(hv, LM_F16, f, LM_F32, numel);
			lm_free(f);
			lm_free(r.data);
			r.data = hv, r.dtype = LM_F16, r.nbytes = numel * sizeof *hv;
		}
		if (!lm_dtype_info(r.dtype)->st_name)
			die("%s: tensor '%s': dtype %s cannot be exported", lm_reader_name(rd), r.name,
			    lm_dtype_name(r.dtype));
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			ents = xrealloc(ents, cap * sizeof *ents);
			shapes = xrealloc(shapes, cap * sizeof *shapes);
			names = xrealloc(names, cap * sizeof *names);
		}
		names[n] = xstrdup(r.name);
		memcpy(shapes[n], r.shape, sizeof shapes[n]);
		ents[n].dtype = r.dtype, ents[n].ndim = r.ndim;
		n++;
		if (lm_write_full(datafd, r.data, r.nbytes) < 0)
			die_lm(dir);
	}
	lm_record_clear(&r);
	if (nskipped)
		warnf("%zu exit-policy tensors (%s*) left out: a transformers checkpoint has no place for them",
		      nskipped, LM_POLICY_PREFIX);
	for (size_t i = 0; i < n; i++)
		ents[i].name = names[i], ents[i].shape = shapes[i];

	/* the stream was whole: now the files */
	write_safetensors(dir, datafd, ents, n);
	close(datafd);
	write_config(dir, &h.cfg, blobs, nblobs, ents, n);
	for (size_t i = 0; i < nblobs; i++) {
		const char *base = NULL;
		if (!strcmp(blobs[i].name, "tokenizer/vocab.json")) base = "vocab.json";
		else if (!strcmp(blobs[i].name, "tokenizer/merges.txt")) base = "merges.txt";
		else if (!strcmp(blobs[i].name, "hf/generation_config.json")) base = "generation_config.json";
		if (base)
			put_file(dir, base, blobs[i].data, blobs[i].len);
		lm_free(blobs[i].data);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names), free(shapes), free(ents), free(blobs);
	lm_val_free(&val);
	lm_header_free(&h);
}
