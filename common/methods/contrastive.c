/* contrastive.c: InfoNCE over cosines, forward and backward (see contrastive.h).
 *
 * With u = x / |x| the gradient of a cosine is d cos(x,y) / dx = (v - cos u) / |x|, so the
 * loss is differentiated first with respect to the cosines (softmax minus one-hot, over
 * the rows and, when symmetric, the columns), and then each vector collects
 *   dx = sum_y dL/dcos(x,y) (v_y - cos(x,y) u_x) / |x|. */
#include "contrastive.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define COS_EPS 1e-8

/* unit vectors of n rows of x [n,d] into u, their clamped norms into nrm */
static void unit_rows(const float *x, size_t n, size_t d, double *u, double *nrm)
{
	for (size_t i = 0; i < n; i++) {
		double s = 0;
		for (size_t e = 0; e < d; e++)
			s += (double)x[i * d + e] * x[i * d + e];
		nrm[i] = fmax(sqrt(s), COS_EPS);
		for (size_t e = 0; e < d; e++)
			u[i * d + e] = x[i * d + e] / nrm[i];
	}
}

static int counts(const unsigned char *mask, size_t K, size_t b, size_t j, const size_t *pos)
{
	return j == pos[b] || !mask || mask[b * K + j];
}

/* one softmax cross-entropy over the n scores at s[i * stride] that are in (ok[i]), with
 * target t: adds w (softmax - onehot) to g[i * stride], returns the term */
static double ce_term(const double *s, double *g, size_t n, size_t stride, const unsigned char *ok,
                      size_t t, double w)
{
	double m = -INFINITY, z = 0;
	for (size_t i = 0; i < n; i++)
		if (ok[i])
			m = fmax(m, s[i * stride]);
	for (size_t i = 0; i < n; i++)
		if (ok[i])
			z += exp(s[i * stride] - m);
	for (size_t i = 0; i < n; i++)
		if (ok[i])
			g[i * stride] += w * exp(s[i * stride] - m) / z;
	g[t * stride] -= w;
	return m + log(z) - s[t * stride];
}

double lm_contrastive_loss(const float *q, size_t B, const float *k, size_t K, size_t d,
                           const size_t *pos, const unsigned char *mask, double tau,
                           int symmetric, float *dq, float *dk)
{
	double *uq = xmalloc(B * d * sizeof *uq), *uk = xmalloc(K * d * sizeof *uk);
	double *nq = xmalloc(B * sizeof *nq), *nk = xmalloc(K * sizeof *nk);
	double *cs = xmalloc(B * K * sizeof *cs), *s = xmalloc(B * K * sizeof *s);
	double *g = xcalloc(B * K, sizeof *g); /* dL / ds */
	unsigned char *ok = xmalloc((B > K ? B : K) * sizeof *ok);
	double L = 0, half = symmetric ? 0.5 : 1.0;

	unit_rows(q, B, d, uq, nq);
	unit_rows(k, K, d, uk, nk);
	for (size_t b = 0; b < B; b++)
		for (size_t j = 0; j < K; j++) {
			double c = 0;
			for (size_t e = 0; e < d; e++)
				c += uq[b * d + e] * uk[j * d + e];
			cs[b * K + j] = c;
			s[b * K + j] = c / tau;
		}
	/* rows: each query chooses its positive among its candidates */
	for (size_t b = 0; b < B; b++) {
		for (size_t j = 0; j < K; j++)
			ok[j] = (unsigned char)counts(mask, K, b, j, pos);
		L += half / (double)B * ce_term(s + b * K, g + b * K, K, 1, ok, pos[b], half / (double)B);
	}
	/* columns: each positive chooses its query among the queries */
	if (symmetric)
		for (size_t b = 0; b < B; b++) {
			size_t j = pos[b];
			for (size_t c = 0; c < B; c++)
				ok[c] = (unsigned char)counts(mask, K, c, j, pos);
			L += half / (double)B * ce_term(s + j, g + j, B, K, ok, b, half / (double)B);
		}
	/* dL/dcos = dL/ds / tau, then through the cosines */
	if (dq || dk) {
		double *gq = xcalloc(B * d, sizeof *gq), *gk = xcalloc(K * d, sizeof *gk);
		for (size_t b = 0; b < B; b++)
			for (size_t j = 0; j < K; j++) {
				double w = g[b * K + j] / tau, c = cs[b * K + j];
				if (w == 0)
					continue;
				for (size_t e = 0; e < d; e++) {
					gq[b * d + e] += w * (uk[j * d + e] - c * uq[b * d + e]);
					gk[j * d + e] += w * (uq[b * d + e] - c * uk[j * d + e]);
				}
			}
		if (dq)
			for (size_t b = 0; b < B; b++)
				for (size_t e = 0; e < d; e++)
					dq[b * d + e] = (float)(gq[b * d + e] / nq[b]);
		if (dk)
			for (size_t j = 0; j < K; j++)
				for (size_t e = 0; e < d; e++)
					dk[j * d + e] = (float)(gk[j * d + e] / nk[j]);
		free(gq), free(gk);
	}
	free(uq), free(uk), free(nq), free(nk), free(cs), free(s), free(g), free(ok);
	return L;
}
