/* hfdir.c: see hfdir.h. Every key in every weight file is mapped to its canonical name
 * once at open, so a missing, duplicated or foreign tensor is reported before any
 * output is written. */
#include "hfdir.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "torchbin.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FILES 1024

struct src {
	int file;     /* index into files */
	size_t idx;   /* entry in that file */
};

struct wfile {
	char *path;
	int is_st;
	struct lm_st_file st;
	struct lm_tb_file tb;
};

struct lm_hfdir {
	char *dir;
	struct lm_opt_config cfg;
	json_t *hf;
	struct wfile *files;
	int nfiles;
	/* canonical name -> source, as a small jansson object mapping name -> [file, idx] */
	json_t *index;
};

static char *join(const char *dir, const char *file)
{
	size_t n = strlen(dir) + strlen(file) + 2;
	char *p = xmalloc(n);
	snprintf(p, n, "%s/%s", dir, file);
	return p;
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *lm_hfdir_file(const struct lm_hfdir *d, const char *file, size_t *len)
{
	char *p = join(d->dir, file), *s = NULL;
	if (exists(p))
		s = lm_read_file(p, (size_t)1 << 30, len);
	free(p);
	return s;
}

static int add_file(struct lm_hfdir *d, const char *name)
{
	struct wfile *f;
	char *path;
	if (d->nfiles >= MAX_FILES)
		return lm_seterr("more than %d weight files", MAX_FILES);
	for (int i = 0; i < d->nfiles; i++)
		if (!strcmp(strrchr(d->files[i].path, '/') + 1, name))
			return 0;
	if (strchr(name, '/') || !strcmp(name, "..") || !strcmp(name, "."))
		return lm_seterr("weight file name '%s' is not a plain file name", name);
	path = join(d->dir, name);
	f = &d->files[d->nfiles];
	memset(f, 0, sizeof *f);
	f->path = path;
	f->is_st = strlen(name) > 12 && !strcmp(name + strlen(name) - 12, ".safetensors");
	if (f->is_st ? lm_st_open(&f->st, path) : lm_tb_open(&f->tb, path)) {
		lm_preerr("%s", name);
		free(path);
		return -1;
	}
	d->nfiles++;
	return 0;
}

/* the weight files named by an index.json's weight_map, in first-seen order */
static int add_index(struct lm_hfdir *d, const char *idxname)
{
	json_error_t err;
	char *p = join(d->dir, idxname);
	json_t *idx = json_load_file(p, JSON_REJECT_DUPLICATES, &err), *wm, *v;
	const char *k;
	int rc = 0;
	free(p);
	if (!idx)
		return lm_seterr("%s: %s (line %d)", idxname, err.text, err.line);
	wm = json_object_get(idx, "weight_map");
	if (!json_is_object(wm)) {
		json_decref(idx);
		return lm_seterr("%s: no weight_map object", idxname);
	}
	json_object_foreach(wm, k, v) {
		if (!json_is_string(v)) {
			rc = lm_seterr("%s: weight_map entry '%s' is not a file name", idxname, k);
			break;
		}
		if ((rc = add_file(d, json_string_value(v))) < 0)
			break;
	}
	json_decref(idx);
	return rc;
}

/* weights that config.json has no place for (layers past num_hidden_layers, biases of a
 * model without them, ...) would be dropped without a word: -1 + error naming the first
 * three and the count. A tied lm_head.weight is embed_tokens, as transformers reads it. */
static int unused(struct lm_hfdir *d, const struct lm_opt_tensor *t, size_t n)
{
	json_t *want = json_object(), *v;
	const char *key;
	size_t nun = 0, k = 0;
	char list[1024] = "";
	for (size_t i = 0; i < n; i++)
		json_object_set_new(want, t[i].name, json_true());
	json_object_foreach(d->index, key, v) {
		if (json_object_get(want, key) || (d->cfg.tied && !strcmp(key, "lm_head.weight")))
			continue;
		if (nun++ < 3)
			k += (size_t)snprintf(list + k, sizeof list - k, "%s'%s'", nun > 1 ? ", " : "", key);
		if (k >= sizeof list)
			k = sizeof list - 1;
	}
	json_decref(want);
	if (!nun)
		return 0;
	return lm_seterr("%zu tensor%s in the weight files that config.json (num_hidden_layers %lld) has no place "
	                 "for: %s%s", nun, nun > 1 ? "s" : "", (long long)d->cfg.num_layers, list,
	                 nun > 3 ? ", …" : "");
}

int lm_hfdir_check_tokenizer(const struct lm_hfdir *d, const char *vocab, size_t vl, const char *merges,
                             size_t ml)
{
	struct lm_tokenizer *t;
	int32_t n;
	if (!vocab && !merges)
		return 0;
	if (!vocab)
		return lm_seterr("merges.txt without vocab.json");
	/* the same loader the programs at the end of the pipe use, so what it refuses there
	 * is refused here, before the stream is written */
	if (!(t = lm_tokenizer_load(vocab, vl, merges, ml)))
		return -1;
	n = lm_tokenizer_vocab_size(t);
	lm_tokenizer_free(t);
	if (n > d->cfg.vocab_size)
		return lm_seterr("vocab.json: id %d is outside the model's vocab_size %lld", (int)(n - 1),
		                 (long long)d->cfg.vocab_size);
	return 0;
}

struct lm_hfdir *lm_hfdir_open(const char *dir)
{
	struct lm_hfdir *d = xcalloc(1, sizeof *d);
	struct stat st;
	json_error_t err;
	char *p;
	int rc = 0;

	d->dir = xstrdup(dir);
	d->files = xcalloc(MAX_FILES, sizeof *d->files);
	d->index = json_object();
	if (stat(dir, &st) < 0) {
		lm_seterr("%s", strerror(errno));
		goto fail;
	}
	if (!S_ISDIR(st.st_mode)) {
		lm_seterr("not a directory (expected a Hugging Face model folder)");
		goto fail;
	}
	p = join(dir, "config.json");
	if (!exists(p)) {
		free(p);
		lm_seterr("no config.json in the folder");
		goto fail;
	}
	d->hf = json_load_file(p, JSON_REJECT_DUPLICATES, &err);
	free(p);
	if (!d->hf) {
		lm_seterr("config.json: %s (line %d)", err.text, err.line);
		goto fail;
	}
	if (lm_opt_config_from_hf(&d->cfg, d->hf) < 0)
		goto fail;

	/* safetensors first, as transformers prefers them */
	if ((p = join(dir, "model.safetensors")), exists(p))
		rc = add_file(d, "model.safetensors");
	else if (free(p), (p = join(dir, "model.safetensors.index.json")), exists(p))
		rc = add_index(d, "model.safetensors.index.json");
	else if (free(p), (p = join(dir, "pytorch_model.bin")), exists(p))
		rc = add_file(d, "pytorch_model.bin");
	else if (free(p), (p = join(dir, "pytorch_model.bin.index.json")), exists(p))
		rc = add_index(d, "pytorch_model.bin.index.json");
	else
		rc = lm_seterr("no weights (model.safetensors, its sharded index, or pytorch_model.bin)");
	free(p);
	if (rc < 0)
		goto fail;

	/* map every key to its canonical name */
	for (int fi = 0; fi < d->nfiles; fi++) {
		struct wfile *f = &d->files[fi];
		size_t n = f->is_st ? f->st.n : f->tb.n;
		for (size_t i = 0; i < n; i++) {
			const char *key = f->is_st ? f->st.entries[i].name : f->tb.entries[i].name;
			char canon[LM_OPT_MAX_NAME];
			if (lm_opt_canonical_name(key, canon, sizeof canon) < 0) {
				/* transformers ignores these buffers too */
				if (strstr(key, "version") || strstr(key, "position_ids"))
					continue;
				lm_seterr("%s: '%s' is not an OPT tensor", strrchr(f->path, '/') + 1, key);
				goto fail;
			}
			if (json_object_get(d->index, canon)) {
				lm_seterr("tensor '%s' appears twice in the weight files", canon);
				goto fail;
			}
			json_object_set_new(d->index, canon, json_pack("[i,I]", fi, (json_int_t)i));
		}
	}
	/* every tensor of the model must be there before anything is written */
	{
		size_t n;
		struct lm_opt_tensor *t = lm_opt_tensors(&d->cfg, &n);
		for (size_t i = 0; i < n; i++)
			if (!json_object_get(d->index, t[i].name)) {
				lm_seterr("tensor '%s' missing from the weight files", t[i].name);
				free(t);
				goto fail;
			}
		rc = unused(d, t, n);
		free(t);
		if (rc < 0)
			goto fail;
	}
	return d;
fail:
	lm_hfdir_close(d);
	return NULL;
}

void lm_hfdir_close(struct lm_hfdir *d)
{
	if (!d)
		return;
	for (int i = 0; i < d->nfiles; i++) {
		if (d->files[i].is_st)
			lm_st_close(&d->files[i].st);
		else
			lm_tb_close(&d->files[i].tb);
		free(d->files[i].path);
	}
	free(d->files);
	json_decref(d->hf);
	json_decref(d->index);
	free(d->dir);
	free(d);
}

const struct lm_opt_config *lm_hfdir_config(const struct lm_hfdir *d) { return &d->cfg; }
json_t *lm_hfdir_hf_config(const struct lm_hfdir *d) { return d->hf; }

const char *lm_hfdir_format(const struct lm_hfdir *d)
{
	return d->nfiles && !d->files[0].is_st ? "pytorch" : "safetensors";
}

int lm_hfdir_read(struct lm_hfdir *d, const char *name, struct lm_record *r)
{
	json_t *loc = json_object_get(d->index, name);
	struct wfile *f;
	size_t i;
	if (!loc)
		return lm_seterr("tensor '%s' missing", name);
	f = &d->files[json_integer_value(json_array_get(loc, 0))];
	i = (size_t)json_integer_value(json_array_get(loc, 1));
	if (f->is_st) {
		const struct lm_st_entry *e = &f->st.entries[i];
		lm_record_tensor(r, name, e->dtype, e->ndim, e->shape);
		if (lm_record_alloc(r) < 0 || lm_st_read(&f->st, i, r->data) < 0)
			return lm_preerr("%s", strrchr(f->path, '/') + 1);
	} else {
		const struct lm_tb_entry *e = &f->tb.entries[i];
		lm_record_tensor(r, name, e->dtype, e->ndim, e->shape);
		if (lm_record_alloc(r) < 0 || lm_tb_read(&f->tb, i, r->data) < 0)
			return lm_preerr("%s", strrchr(f->path, '/') + 1);
	}
	return 0;
}
