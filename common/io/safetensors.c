/* safetensors.c: a careful .safetensors reader and a header writer (see safetensors.h).
 * Every size and offset comes from the file, so each is checked before it is used:
 * integers must be JSON integers >= 0, shape products and byte counts are overflow
 * checked, entries must tile the data buffer exactly (no holes, no overlaps). */
#include "safetensors.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* by (begin, end): empty tensors sort before the one that starts where they are, so
 * several may share an offset, as the reference reader allows */
static int cmp_begin(const void *a, const void *b)
{
	const struct lm_st_entry *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

/* jansson spends about a kilobyte on each entry it builds: before it parses anything,
 * count entries (keys of the top object) and values (by their separators, outside
 * strings) in the text, so a header of a million empty tensors costs its own size */
static int header_bounds(const char *h, size_t n)
{
	size_t entries = 0, values = 0;
	int depth = 0, str = 0;
	for (size_t i = 0; i < n; i++) {
		char c = h[i];
		if (str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				str = 0;
			continue;
		}
		switch (c) {
		case '"': str = 1; break;
		case '{': case '[': depth++, values++; break;
		case '}': case ']': depth--; break;
		case ':': entries += depth == 1; values++; break;
		case ',': values++; break;
		default: break;
		}
	}
	if (entries > LM_ST_MAX_ENTRIES)
		return lm_seterr("header lists %zu entries, more than the %u tensors this reader takes (an OPT "
		                 "of 4096 layers has 65544)", entries, LM_ST_MAX_ENTRIES);
	if (values > LM_ST_MAX_VALUES)
		return lm_seterr("header holds %zu JSON values, more than the %u this reader takes", values,
		                 LM_ST_MAX_VALUES);
	return 0;
}

static int parse_u64(json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int parse_entry(struct lm_st_entry *e, const char *name, json_t *v)
{
	json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
	       *off = json_object_get(v, "data_offsets");
	size_t numel = 1, nbytes, i;
	int t;

	if (!json_is_object(v) || !json_is_string(dt) || !json_is_array(shape) || !json_is_array(off) ||
	    json_array_size(off) != 2)
		return lm_seterr("tensor '%s': malformed header entry", name);
	t = lm_dtype_parse(json_string_value(dt));
	if (t < 0 || strcmp(json_string_value(dt), lm_dtype_info(t)->st_name))
		return lm_seterr("tensor '%s': unsupported dtype '%s'", name, json_string_value(dt));
	e->dtype = t;
	if (json_array_size(shape) > 8)
		return lm_seterr("tensor '%s': more than 8 dimensions", name);
	e->ndim = (int)json_array_size(shape);
	for (i = 0; i < json_array_size(shape); i++) {
		uint64_t d;
		if (parse_u64(json_array_get(shape, i), &d) || d > ((uint64_t)1 << 48))
			return lm_seterr("tensor '%s': bad shape", name);
		e->shape[i] = (int64_t)d;
		if (lm_mul(numel, d, &numel))
			return lm_preerr("tensor '%s'", name);
	}
	if (parse_u64(json_array_get(off, 0), &e->begin) || parse_u64(json_array_get(off, 1), &e->end) ||
	    e->end < e->begin)
		return lm_seterr("tensor '%s': bad data_offsets", name);
	if (lm_mul(numel, lm_dtype_size(e->dtype), &nbytes))
		return lm_preerr("tensor '%s'", name);
	if (e->end - e->begin != nbytes)
		return lm_seterr("tensor '%s': data_offsets span %llu bytes, shape and dtype need %zu", name,
		                 (unsigned long long)(e->end - e->begin), nbytes);
	e->name = xstrdup(name);
	return 0;
}

int lm_st_open(struct lm_st_file *f, const char *path)
{
	unsigned char len8[8];
	uint64_t hlen = 0;
	struct stat st;
	char *hdr = NULL;
	json_t *root = NULL;
	json_error_t jerr;
	const char *key;
	json_t *val;

	memset(f, 0, sizeof *f);
	f->fd = open(path, O_RDONLY);
	if (f->fd < 0)
		return lm_seterr("%s", strerror(errno));
	f->path = xstrdup(path);
	if (fstat(f->fd, &st) < 0) {
		lm_seterr("%s", strerror(errno));
		goto fail;
	}
	f->file_size = (uint64_t)st.st_size;
	if (f->file_size < 8 || lm_read_full(f->fd, len8, 8) < 0) {
		lm_seterr("file too short for a safetensors header");
		goto fail;
	}
	for (int i = 7; i >= 0; i--) /* explicit little-endian, whatever the host */
		hlen = hlen << 8 | len8[i];
	if (hlen > LM_ST_MAX_HEADER || hlen > f->file_size - 8) {
		lm_seterr("header length %llu exceeds the file or the %u MB limit", (unsigned long long)hlen,
		          LM_ST_MAX_HEADER >> 20);
		goto fail;
	}
	hdr = malloc(hlen + 1);
	if (!hdr || lm_read_full(f->fd, hdr, hlen) < 0) {
		lm_seterr("cannot read the header");
		goto fail;
	}
	hdr[hlen] = '\0';
	f->data_start = 8 + hlen;
	if (header_bounds(hdr, hlen) < 0)
		goto fail;
	/* jansson refuses a NUL inside a key ("w\u0000evil" is not read as "w") */
	root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		lm_seterr("header: %s", jerr.text);
		goto fail;
	}
	if (!json_is_object(root)) {
		lm_seterr("header is not a JSON object");
		goto fail;
	}
	f->entries = xcalloc(json_object_size(root) + 1, sizeof *f->entries);
	json_object_foreach(root, key, val) {
		if (!strcmp(key, "__metadata__"))
			continue;
		if (parse_entry(&f->entries[f->n], key, val) < 0)
			goto fail;
		f->n++;
	}
	qsort(f->entries, f->n, sizeof *f->entries, cmp_begin);
	{
		uint64_t pos = 0;
		for (size_t i = 0; i < f->n; i++) {
			if (f->entries[i].begin != pos) {
				lm_seterr("tensor '%s': data_offsets %s another tensor's bytes", f->entries[i].name,
				          f->entries[i].begin > pos ? "leave a hole before" : "overlap");
				goto fail;
			}
			pos = f->entries[i].end;
		}
		if (pos != f->file_size - f->data_start) {
			lm_seterr("tensors cover %llu bytes but the data buffer has %llu", (unsigned long long)pos,
			          (unsigned long long)(f->file_size - f->data_start));
			goto fail;
		}
	}
	json_decref(root);
	free(hdr);
	return 0;
fail:
	json_decref(root);
	free(hdr);
	lm_st_close(f);
	return -1;
}

void lm_st_close(struct lm_st_file *f)
{
	if (f->fd > 0)
		close(f->fd);
	for (size_t i = 0; i < f->n; i++)
		free(f->entries[i].name);
	free(f->entries);
	free(f->path);
	memset(f, 0, sizeof *f);
	f->fd = -1;
}

long lm_st_find(const struct lm_st_file *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (!strcmp(f->entries[i].name, name))
			return (long)i;
	return -1;
}

int lm_st_read(const struct lm_st_file *f, size_t i, void *dst)
{
	const struct lm_st_entry *e = &f->entries[i];
	uint64_t n = e->end - e->begin, off = f->data_start + e->begin;
	char *p = dst;
	while (n > 0) {
		ssize_t r = pread(f->fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return lm_seterr("tensor '%s': %s", e->name, r < 0 ? strerror(errno) : "file truncated");
		p += r, off += (uint64_t)r, n -= (uint64_t)r;
	}
	return 0;
}

int lm_st_write_header(int fd, const struct lm_st_out_entry *e, size_t n)
{
	json_t *root = json_object();
	uint64_t off = 0;
	char *text;
	size_t len, pad;
	unsigned char len8[8];
	int rc;

	json_object_set_new(root, "__metadata__", json_pack("{s:s}", "format", "pt"));
	for (size_t i = 0; i < n; i++) {
		json_t *shape = json_array();
		size_t nbytes = lm_dtype_size(e[i].dtype);
		for (int d = 0; d < e[i].ndim; d++) {
			json_array_append_new(shape, json_integer(e[i].shape[d]));
			if (lm_mul(nbytes, (size_t)e[i].shape[d], &nbytes) < 0) {
				json_decref(shape);
				json_decref(root);
				return -1;
			}
		}
		json_object_set_new(root, e[i].name,
		                    json_pack("{s:s, s:o, s:[I,I]}", "dtype", lm_dtype_info(e[i].dtype)->st_name,
		                              "shape", shape, "data_offsets", (json_int_t)off,
		                              (json_int_t)(off + nbytes)));
		off += nbytes;
	}
	text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (!text)
		return lm_seterr("cannot encode the safetensors header");
	len = strlen(text);
	pad = (8 - len % 8) % 8; /* the reference writer pads the JSON with spaces to 8 bytes */
	for (int i = 0; i < 8; i++)
		len8[i] = (unsigned char)((uint64_t)(len + pad) >> (8 * i));
	rc = lm_write_full(fd, len8, 8);
	if (!rc)
		rc = lm_write_full(fd, text, len);
	if (!rc && pad)
		rc = lm_write_full(fd, "        ", pad);
	free(text);
	return rc;
}
