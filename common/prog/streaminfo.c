/* streaminfo.c: what lm-info prints of a stream: its header, tensors, blobs and totals as a
 * table or JSON, or a text's token ids by its tokenizer. */
#include "streaminfo.h"
#include "cli.h"
#include "quant.h"
#include "tokenizer.h"
#include "util.h"
#include "valread.h"

#include <stdlib.h>
#include <string.h>

/* zeros counted exactly: pruning writes exact zeros, and sparsity is what they are */
static size_t count_zeros(const struct lm_record *r)
{
	size_t n = lm_record_numel(r), z = 0;
	switch (r->dtype) {
	case LM_F32:
		for (size_t i = 0; i < n; i++)
			z += ((const float *)r->data)[i] == 0.0f;
		break;
	case LM_F16: case LM_BF16:
		for (size_t i = 0; i < n; i++)
			z += (((const uint16_t *)r->data)[i] & 0x7fff) == 0;
		break;
	default: {
		if (lm_dtype_is_packed(r->dtype)) {
			/* a code at the zero point is an exact 0 (quant.h): count the values */
			size_t cols = (size_t)r->shape[1], rb = lm_dtype_row_bytes(r->dtype, cols);
			float *row = xmalloc(cols * sizeof *row);
			for (int64_t i = 0; i < r->shape[0]; i++) {
				lm_q_dequant_rows(row, (const uint8_t *)r->data + (size_t)i * rb, r->dtype, 1, cols);
				for (size_t j = 0; j < cols; j++)
					z += row[j] == 0.0f;
			}
			free(row);
			break;
		}
		size_t es = lm_dtype_size(r->dtype);
		const unsigned char *p = r->data;
		for (size_t i = 0; i < n; i++) {
			size_t k = 0;
			while (k < es && !p[i * es + k])
				k++;
			z += k == es;
		}
	}
	}
	return z;
}

struct problems {
	json_t *list;
	const char *input;
};

/* a model that does not fit its header: a warning now, and a line of the JSON */
static void problem(void *ctx)
{
	struct problems *p = ctx;
	warnf("%s: %s", p->input, lm_errmsg());
	json_array_append_new(p->list, json_string(lm_errmsg()));
}

static void print_shape(char *buf, size_t sz, const struct lm_record *r)
{
	size_t k = 0;
	buf[0] = '\0';
	for (int i = 0; i < r->ndim && k < sz; i++)
		k += (size_t)snprintf(buf + k, sz - k, "%s%lld", i ? "x" : "", (long long)r->shape[i]);
	if (!r->ndim)
		snprintf(buf, sz, "scalar");
}

void lm_info_tokenize(struct lm_reader *rd, const char *text)
{
	struct lm_record r = {0};
	char *vocab = NULL, *merges = NULL;
	size_t vl = 0, ml = 0;
	for (;;) {
		if (lm_read_record(rd, &r) < 0)
			die_lm(lm_reader_name(rd));
		if (r.kind == LM_REC_END)
			break;
		if (r.kind == LM_REC_BLOB && !strcmp(r.name, "tokenizer/vocab.json"))
			vocab = r.data, vl = r.nbytes, r.data = NULL;
		else if (r.kind == LM_REC_BLOB && !strcmp(r.name, "tokenizer/merges.txt"))
			merges = r.data, ml = r.nbytes, r.data = NULL;
	}
	lm_record_clear(&r);
	if (!vocab || !merges)
		die("%s: the stream carries no tokenizer (vocab.json and merges.txt blobs)", lm_reader_name(rd));
	struct lm_tokenizer *tk = lm_tokenizer_load(vocab, vl, merges, ml);
	if (!tk)
		die_lm("tokenizer");
	int32_t *ids;
	size_t n;
	if (lm_tokenize(tk, text, strlen(text), &ids, &n) < 0)
		die_lm("--tokenize");
	for (size_t i = 0; i < n; i++)
		printf("%s%d", i ? " " : "", ids[i]);
	putchar('\n');
	free(ids);
	lm_tokenizer_free(tk);
	lm_free(vocab);
	lm_free(merges);
}

struct counts {
	size_t params, zeros, bytes, ntensors;
};

/* the table: the config, the provenance, a line per tensor (jt) and blob (jb), the totals
 * and the problems (jp) */
static void print_table(const struct lm_header *h, json_t *jt, json_t *jb, json_t *jp,
                        const struct counts *c)
{
	const struct lm_opt_config *cf = &h->cfg;
	json_t *prov = json_object_get(h->json, "provenance"), *p;
	size_t i;
	printf("model: opt, %lld layers, hidden %lld, heads %lld, ffn %lld, vocab %lld, positions %lld",
	       (long long)cf->num_layers, (long long)cf->hidden_size, (long long)cf->num_heads,
	       (long long)cf->ffn_dim, (long long)cf->vocab_size, (long long)cf->max_positions);
	if (cf->word_embed_proj_dim != cf->hidden_size)
		printf(", word_embed_proj_dim %lld", (long long)cf->word_embed_proj_dim);
	printf(", %s-LayerNorm\n", cf->pre_ln ? "pre" : "post");
	json_array_foreach(prov, i, p) {
		json_t *av = json_object_get(p, "argv"), *a;
		size_t k;
		printf("step %zu: %s", i + 1, json_string_value(json_object_get(p, "tool")));
		json_array_foreach(av, k, a)
			if (k > 0)
				printf(" %s", json_string_value(a));
		putchar('\n');
	}
	printf("%-52s %-7s %-12s %12s %12s %8s %6s %s\n", "name", "dtype", "shape", "params", "bytes",
	       "sparsity", "bits", "layout");
	json_array_foreach(jt, i, p) {
		char shp[64];
		struct lm_record tmp = {0};
		json_t *s = json_object_get(p, "shape"), *d;
		size_t k;
		tmp.ndim = (int)json_array_size(s);
		json_array_foreach(s, k, d)
			tmp.shape[k] = json_integer_value(d);
		print_shape(shp, sizeof shp, &tmp);
		printf("%-52s %-7s %-12s %12lld %12lld %7.2f%% %6.2f %s\n",
		       json_string_value(json_object_get(p, "name")),
		       json_string_value(json_object_get(p, "dtype")), shp,
		       (long long)json_integer_value(json_object_get(p, "params")),
		       (long long)json_integer_value(json_object_get(p, "bytes")),
		       100 * json_real_value(json_object_get(p, "sparsity")),
		       json_real_value(json_object_get(p, "bits_per_weight")),
		       json_string_value(json_object_get(p, "layout")));
	}
	json_array_foreach(jb, i, p)
		printf("blob %-47s %31lld bytes\n", json_string_value(json_object_get(p, "name")),
		       (long long)json_integer_value(json_object_get(p, "bytes")));
	printf("total: %zu tensors, %zu parameters, %zu bytes, sparsity %.2f%% (density %.2f%%), "
	       "%.2f bits per weight\n", c->ntensors, c->params, c->bytes,
	       c->params ? 100.0 * (double)c->zeros / (double)c->params : 0.0,
	       c->params ? 100.0 - 100.0 * (double)c->zeros / (double)c->params : 0.0,
	       c->params ? 8.0 * (double)c->bytes / (double)c->params : 0.0);
	json_array_foreach(jp, i, p)
		printf("problem: %s\n", json_string_value(p));
}

void lm_info_describe(struct lm_reader *rd, const struct lm_header *h, int as_json)
{
	int got;
	struct lm_record r = {0};
	size_t params = 0, zeros = 0, bytes = 0, ntensors = 0, nblobs = 0, blob_bytes = 0;
	json_t *jt = json_array(), *jb = json_array(), *jp = json_array();
	struct lm_validator val;

	/* the whole stream is read (and checked) before anything is printed, so a
	 * truncated or corrupt stream never yields a report that looks complete. A model
	 * that does not fit its header is described all the same (describing it is the
	 * point), with one warning per problem, also in the JSON's "problems" */
	lm_val_init(&val, &h->cfg, 0);
	struct problems pr = {jp, lm_reader_name(rd)};
	while ((got = lm_val_next(&val, rd, &r, problem, &pr)) != 0) {
		if (got < 0)
			die_lm(lm_reader_name(rd));
		if (r.kind == LM_REC_BLOB) {
			json_array_append_new(jb, json_pack("{s:s, s:I}", "name", r.name, "bytes", (json_int_t)r.nbytes));
			nblobs++, blob_bytes += r.nbytes;
			continue;
		}
		/* bytes as stored: a sparse tensor was expanded on reading (r.nbytes), its
		 * layout and stored size kept (r.wire_nbytes) */
		size_t n = lm_record_numel(&r), z = count_zeros(&r), wb = r.wire_nbytes;
		char ln[32];
		json_t *shape = json_array();
		for (int i = 0; i < r.ndim; i++)
			json_array_append_new(shape, json_integer(r.shape[i]));
		json_array_append_new(jt, json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:f, s:f, s:f, s:O}",
		                                    "name", r.name, "dtype", lm_dtype_name(r.dtype), "layout",
		                                    lm_layout_name(&r.layout, ln, sizeof ln), "shape", shape,
		                                    "params", (json_int_t)n, "bytes", (json_int_t)wb, "crc32", (json_int_t)r.crc32,
		                                    "sparsity", n ? (double)z / (double)n : 0.0,
		                                    "density", n ? 1.0 - (double)z / (double)n : 0.0,
		                                    "bits_per_weight", n ? 8.0 * (double)wb / (double)n : 0.0,
		                                    "attrs", r.attrs));
		params += n, zeros += z, bytes += wb, ntensors++;
	}
	lm_record_clear(&r);

	json_t *totals = json_pack("{s:I, s:I, s:I, s:f, s:f, s:f, s:I}", "tensors", (json_int_t)ntensors,
	                           "params", (json_int_t)params, "bytes", (json_int_t)bytes,
	                           "sparsity", params ? (double)zeros / (double)params : 0.0,
	                           "density", params ? 1.0 - (double)zeros / (double)params : 0.0,
	                           "bits_per_weight", params ? 8.0 * (double)bytes / (double)params : 0.0,
	                           "blob_bytes", (json_int_t)blob_bytes);
	if (as_json) {
		json_t *all = json_pack("{s:O, s:o, s:o, s:o, s:O}", "header", h->json, "tensors", jt, "blobs", jb,
		                        "totals", totals, "problems", jp);
		json_dumpf(all, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(all);
	} else {
		print_table(h, jt, jb, jp, &(struct counts){params, zeros, bytes, ntensors});
		json_decref(jt);
		json_decref(jb);
		json_decref(totals);
	}
	json_decref(jp);
	lm_val_free(&val);
}
