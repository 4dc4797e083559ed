/* eeexits.c: early exit's exits: parsing, checking, finding them in a stream, and the
 * multi-exit loss weights (see eeexits.h). */
#include "eeexits.h"
#include "exitpolicy.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

int lm_ee_check_exits(const int *ex, size_t n, int L)
{
	for (size_t i = 0; i < n; i++) {
		if (ex[i] < 0 || ex[i] >= L - 1)
			return lm_seterr("exit after layer %d: exits are layers 1..%d of this %d-layer model",
			                 ex[i] + 1, L - 1, L);
		if (i && ex[i] <= ex[i - 1])
			return lm_seterr("exits must increase (%d after %d)", ex[i] + 1, ex[i - 1] + 1);
	}
	return 0;
}

double *lm_ee_parse_list(const char *s, size_t *n)
{
	size_t cap = 1;
	for (const char *p = s; *p; p++)
		cap += *p == ',';
	double *v = xmalloc(cap * sizeof *v);
	const char *p = s;
	*n = 0;
	for (;;) {
		char *end;
		errno = 0;
		v[*n] = strtod(p, &end);
		if (end == p || errno || !isfinite(v[*n]) || (*end && *end != ',')) {
			free(v);
			lm_seterr("'%s' is not a comma-separated list of numbers", s);
			return NULL;
		}
		++*n;
		if (!*end)
			return v;
		p = end + 1;
	}
}

int *lm_ee_parse_exits(const char *s, size_t *n)
{
	double *v = lm_ee_parse_list(s, n);
	if (!v) {
		lm_seterr("'%s' is not a list of layer numbers such as 1,2,3", s);
		return NULL;
	}
	int *e = xmalloc(*n * sizeof *e);
	for (size_t i = 0; i < *n; i++) {
		if (v[i] != floor(v[i]) || v[i] < 1 || v[i] > 1 << 20) {
			lm_seterr("'%s': layers are whole numbers from 1 (after decoder layer k)", s);
			free(v), free(e);
			return NULL;
		}
		e[i] = (int)v[i] - 1;
	}
	free(v);
	return e;
}

/* the exits of the stream: its policy's, else those lm-retrain --early-exit recorded in a
 * tensor's attrs ("retrain": {"exits": [1-based]}); 0-based, NULL if none */
int *lm_ee_stream_exits(const struct lm_model_stream *ms, size_t *n)
{
	int *e = lm_policy_stream_exits(ms, n);
	*n = e ? *n : 0;
	for (size_t i = 0; !e && i < ms->norder; i++)
		if (ms->attrs[i])
			e = lm_exits_from_json(json_object_get(json_object_get(ms->attrs[i], "retrain"), "exits"), n);
	return e;
}

void lm_ee_default_weights(const int *ex, size_t n, int L, float *w)
{
	double share[2] = {0.7, 0.2}, sum[2] = {0, 0}, g[2] = {1, 1}, tot = 0.1;
	for (size_t i = 0; i < n; i++) {
		int h = 2 * ex[i] >= L;
		w[i] = (float)g[h], sum[h] += g[h], g[h] *= 0.9;
	}
	for (int h = 0; h < 2; h++)
		tot += sum[h] > 0 ? share[h] : 0;
	for (size_t i = 0; i < n; i++) {
		int h = 2 * ex[i] >= L;
		w[i] = (float)(share[h] * w[i] / sum[h] / tot);
	}
	w[n] = (float)(0.1 / tot);
}
