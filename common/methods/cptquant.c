/* cptquant.c: CPTQuant layer sensitivities and bit allocation (see cptquant.h) */
#include "cptquant.h"

#include "forward.h"
#include "lapack.h"
#include "modelio.h"
#include "perplexity.h"
#include "prune.h"
#include "quant.h"
#include "train.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int lm_kmeans_1d(const double *x, int n, int k, int *rank)
{
	double *c, *srt, *sum;
	int *cnt, *lab, changed = 1;
	if (n < 1 || k < 1 || k > n)
		return lm_seterr("k-means: %d clusters of %d values", k, n);
	c = malloc((size_t)k * sizeof *c), sum = malloc((size_t)k * sizeof *sum);
	srt = malloc((size_t)n * sizeof *srt);
	cnt = malloc((size_t)k * sizeof *cnt), lab = malloc((size_t)n * sizeof *lab);
	if (!c || !sum || !srt || !cnt || !lab) {
		free(c), free(sum), free(srt), free(cnt), free(lab);
		return lm_seterr("k-means: out of memory");
	}
	memcpy(srt, x, (size_t)n * sizeof *srt);
	qsort(srt, (size_t)n, sizeof *srt, cmp_double);
	/* quantile init: deterministic, and the centres start sorted, which Lloyd's steps in
	 * 1-D keep (each cluster is an interval), so the labels are already ranks */
	for (int j = 0; j < k; j++)
		c[j] = srt[(int)(((double)j + 0.5) * n / k)];
	for (int i = 0; i < n; i++)
		lab[i] = -1;
	for (int it = 0; it < 1000 && changed; it++) {
		changed = 0;
		for (int i = 0; i < n; i++) {
			int best = 0;
			for (int j = 1; j < k; j++)
				if (fabs(x[i] - c[j]) < fabs(x[i] - c[best]))
					best = j;
			changed |= best != lab[i];
			lab[i] = best;
		}
		for (int j = 0; j < k; j++)
			sum[j] = 0, cnt[j] = 0;
		for (int i = 0; i < n; i++)
			sum[lab[i]] += x[i], cnt[lab[i]]++;
		for (int j = 0; j < k; j++)
			if (cnt[j])
				c[j] = sum[j] / cnt[j];   /* an empty cluster keeps its centre */
	}
	/* rank by centre anyway (ties of equal centres: lower index first), so the mapping
	 * never depends on label order, the reference's bug */
	for (int i = 0; i < n; i++) {
		int r = 0;
		for (int j = 0; j < k; j++)
			r += c[j] < c[lab[i]] || (c[j] == c[lab[i]] && j < lab[i]);
		rank[i] = r;
	}
	free(c), free(sum), free(srt), free(cnt), free(lab);
	return 0;
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

int lm_cpt_alloc_kmeans(const double *s, int n, const int *levels, int nl, int *bits)
{
	int lv[64], k, *rank;
	if (nl < 1 || nl > 64 || n < 1)
		return lm_seterr("allocation: %d levels for %d layers", nl, n);
	memcpy(lv, levels, (size_t)nl * sizeof *lv);
	qsort(lv, (size_t)nl, sizeof *lv, cmp_int);
	k = nl < n ? nl : n;
	if (!(rank = malloc((size_t)n * sizeof *rank)))
		return lm_seterr("allocation: out of memory");
	if (lm_kmeans_1d(s, n, k, rank) < 0) {
		free(rank);
		return -1;
	}
	/* fewer layers than levels: the top k levels, least sensitive -> smallest of them */
	for (int t = 0; t < n; t++)
		bits[t] = lv[nl - k + rank[t]];
	free(rank);
	return 0;
}

static int64_t gcd64(int64_t a, int64_t b)
{
	while (b) {
		int64_t r = a % b;
		a = b, b = r;
	}
	return a;
}

int lm_cpt_alloc_target(const double *s, const int64_t *numel, int n, const int *levels, int nl,
                        double target, int *bits)
{
	int64_t g = 0, tot = 0, *u, budget;
	int lmin = levels[0];
	double *cost, *next;
	int *choice;
	if (n < 1 || nl < 1)
		return lm_seterr("allocation: %d levels for %d layers", nl, n);
	for (int j = 1; j < nl; j++)
		lmin = levels[j] < lmin ? levels[j] : lmin;
	if (target < lmin)
		return lm_seterr("--target-bits %g is below the smallest level, %d bits", target, lmin);
	/* the sizes in units of their gcd, so the budget table stays small (the layers of a
	 * decoder are all the same size: one unit each) */
	for (int t = 0; t < n; t++)
		g = gcd64(g, numel[t]);
	if (!(u = malloc((size_t)n * sizeof *u)))
		return lm_seterr("allocation: out of memory");
	for (int t = 0; t < n; t++)
		u[t] = numel[t] / g, tot += u[t];
	budget = (int64_t)floor(target * (double)tot + 1e-9);
	if (budget > (int64_t)1 << 22 || (int64_t)n * (budget + 1) > (int64_t)1 << 26) {
		free(u);
		return lm_seterr("allocation: layer sizes too uneven for the exact allocation");
	}
	cost = malloc((size_t)(budget + 1) * sizeof *cost);
	next = malloc((size_t)(budget + 1) * sizeof *next);
	choice = malloc((size_t)n * (size_t)(budget + 1) * sizeof *choice);
	if (!cost || !next || !choice) {
		free(u), free(cost), free(next), free(choice);
		return lm_seterr("allocation: out of memory");
	}
	/* cost[c]: least summed penalty of layers 0..t-1 using at most c bit-units; the error
	 * proxy 4^-b is the RTN mean squared error's dependence on b (scale ~ 2^-b) */
	for (int64_t c = 0; c <= budget; c++)
		cost[c] = 0;
	for (int t = 0; t < n; t++) {
		double w = (s[t] > 0 ? s[t] : 0) * (double)u[t];
		for (int64_t c = 0; c <= budget; c++) {
			next[c] = INFINITY, choice[(size_t)t * (size_t)(budget + 1) + (size_t)c] = -1;
			for (int j = 0; j < nl; j++) {
				int64_t need = u[t] * levels[j];
				double v;
				if (need > c || !isfinite(cost[c - need]))
					continue;
				v = cost[c - need] + w * pow(4.0, -levels[j]);
				/* ties: the larger level (no reason to leave bits unused) */
				if (v < next[c] || (v == next[c] && levels[j] >
				    levels[choice[(size_t)t * (size_t)(budget + 1) + (size_t)c]])) {
					next[c] = v;
					choice[(size_t)t * (size_t)(budget + 1) + (size_t)c] = j;
				}
			}
		}
		memcpy(cost, next, (size_t)(budget + 1) * sizeof *cost);
	}
	if (!isfinite(cost[budget])) {
		free(u), free(cost), free(next), free(choice);
		return lm_seterr("--target-bits %g cannot be met with these levels", target);
	}
	for (int t = n - 1, c = (int)budget; t >= 0; t--) {
		int j = choice[(size_t)t * (size_t)(budget + 1) + (size_t)c];
		bits[t] = levels[j];
		c -= (int)(u[t] * levels[j]);
	}
	free(u), free(cost), free(next), free(choice);
	return 0;
}

/* dgesvd_ with no U (jobu "N") and its workspace: LAPACK's size query, then the call;
 * LAPACK's info, -100 when the workspace cannot be had */
static int svd_no_u(const char *jobvt, int m, int n, double *a, int lda, double *s, double *vt,
                    int ldvt)
{
	double wq, *work;
	int lwork = -1, info = 0, one = 1;
	dgesvd_("N", jobvt, &m, &n, a, &lda, s, NULL, &one, vt, &ldvt, &wq, &lwork, &info, 1, 1);
	if (info)
		return info;
	lwork = (int)wq;
	if (!(work = malloc((size_t)lwork * sizeof *work)))
		return -100;
	dgesvd_("N", jobvt, &m, &n, a, &lda, s, NULL, &one, vt, &ldvt, work, &lwork, &info, 1, 1);
	free(work);
	return info;
}

/* the top k left singular vectors of the centred A [n,p] as K [k,n] (row r: component r) */
static int pca_basis(const double *A, size_t n, size_t p, size_t k, double *K)
{
	size_t mn = n < p ? n : p;
	double *a = malloc(n * p * sizeof *a), *sv = malloc(mn * sizeof *sv), *vt = malloc(mn * n * sizeof *vt);
	int info;
	if (!a || !sv || !vt) {
		free(a), free(sv), free(vt);
		return lm_seterr("CCA: out of memory");
	}
	for (size_t j = 0; j < p; j++) {
		double mu = 0;
		for (size_t i = 0; i < n; i++)
			mu += A[i * p + j];
		mu /= (double)n;
		for (size_t i = 0; i < n; i++)
			a[i * p + j] = A[i * p + j] - mu;
	}
	/* row-major A [n,p] is column-major A^T [p,n] = U S V^T: the sample-space vectors
	 * of A are V's columns, the rows of VT */
	info = svd_no_u("S", (int)p, (int)n, a, (int)p, sv, vt, (int)mn);
	if (!info)
		for (size_t r = 0; r < k; r++)
			for (size_t i = 0; i < n; i++)
				K[r * n + i] = vt[r + i * mn];
	free(a), free(sv), free(vt);
	return info ? lm_seterr("CCA: dgesvd failed (info %d)", info) : 0;
}

int lm_cca_first(const double *X, const double *Y, size_t n, size_t p, size_t q, double *rho)
{
	size_t k = (n - 1) / 4;
	double *Kx, *Ky, *M, sv[1], *svall;
	int K, info;
	if (n < 2)
		return lm_seterr("CCA: %zu samples (need 2 or more)", n);
	k = k < 1 ? 1 : k;
	k = k < p ? k : p;
	k = k < q ? k : q;
	k = k < n ? k : n;
	K = (int)k;
	Kx = malloc(k * n * sizeof *Kx), Ky = malloc(k * n * sizeof *Ky), M = malloc(k * k * sizeof *M);
	svall = malloc(k * sizeof *svall);
	if (!Kx || !Ky || !M || !svall) {
		free(Kx), free(Ky), free(M), free(svall);
		return lm_seterr("CCA: out of memory");
	}
	if (pca_basis(X, n, p, k, Kx) < 0 || pca_basis(Y, n, q, k, Ky) < 0) {
		free(Kx), free(Ky), free(M), free(svall);
		return -1;
	}
	/* canonical correlations of the two orthonormal bases = singular values of Kx Ky^T */
	for (size_t a = 0; a < k; a++)
		for (size_t b = 0; b < k; b++) {
			double d = 0;
			for (size_t i = 0; i < n; i++)
				d += Kx[a * n + i] * Ky[b * n + i];
			M[a + b * k] = d;
		}
	info = svd_no_u("N", K, K, M, K, svall, NULL, 1);
	sv[0] = svall[0];
	free(Kx), free(Ky), free(M), free(svall);
	if (info)
		return lm_seterr("CCA: dgesvd failed (info %d)", info);
	*rho = sv[0] > 1 ? 1 : sv[0];
	return 0;
}

int lm_cpt_pmpq(struct lm_model *m, const int32_t *ids, size_t W, size_t T, double *s)
{
	static const enum lm_opt_kind kinds[6] = {LM_T_Q_W, LM_T_K_W, LM_T_V_W, LM_T_O_W, LM_T_FC1_W,
	                                          LM_T_FC2_W};
	const struct lm_prune_spec sp = {.method = LM_PRUNE_MAGNITUDE, .sparsity = 0.3};
	double base;
	if (lm_ppl_windows(m, ids, W, T, &base) < 0)
		return -1;
	for (int l = 0; l < (int)m->cfg.num_layers; l++) {
		void *save[6] = {0};
		size_t nb[6];
		double ppl;
		int rc = 0;
		for (int j = 0; j < 6 && !rc; j++) {
			struct lm_mat *w = lm_model_mat(m, kinds[j], l);
			int64_t shape[2] = {w->rows, w->cols};
			rc = lm_dtype_nbytes(w->dtype, 2, shape, &nb[j]);
			if (!rc && !(save[j] = malloc(nb[j])))
				rc = lm_seterr("PMPQ: out of memory");
			if (!rc) {
				memcpy(save[j], w->data, nb[j]);
				rc = lm_prune_mat(w, &sp, NULL);
			}
		}
		if (!rc)
			rc = lm_ppl_windows(m, ids, W, T, &ppl);
		for (int j = 0; j < 6; j++)
			if (save[j]) {
				memcpy(lm_model_mat(m, kinds[j], l)->data, save[j], nb[j]);
				free(save[j]);
			}
		if (rc)
			return -1;
		/* the reference's ppl_base - ppl_pruned, negated so larger = more sensitive */
		s[l] = ppl - base;
	}
	return 0;
}

int lm_cpt_cmpq(const struct lm_model *m, const int32_t *ids, size_t W, size_t T, double *s)
{
	const size_t L = (size_t)m->cfg.num_layers, C = (size_t)m->cfg.hidden_size;
	struct lm_fwd f;
	double *P;   /* [L][W][C]: mean-pooled output of each layer for each window */
	if (W < 2)
		return lm_seterr("CMPQ: %zu calibration windows (need 2 or more)", W);
	if (!(P = malloc(L * W * C * sizeof *P)))
		return lm_seterr("CMPQ: out of memory");
	if (lm_fwd_init(&f, &m->cfg, 1, T) < 0) {
		free(P);
		return -1;
	}
	for (size_t w = 0; w < W; w++) {
		if (lm_forward_embed(&f, m, ids + w * T, 1, T) < 0)
			goto fail;
		for (size_t l = 0; l < L; l++) {
			double *p = P + (l * W + w) * C;
			if (lm_forward_layer(&f, &m->layers[l], (int)l, f.x, 1, T) < 0)
				goto fail;
			/* no padding in a window: the mask-aware mean is the mean over all T tokens */
			for (size_t c = 0; c < C; c++)
				p[c] = 0;
			for (size_t t = 0; t < T; t++)
				for (size_t c = 0; c < C; c++)
					p[c] += f.x[t * C + c];
			for (size_t c = 0; c < C; c++)
				p[c] /= (double)T;
		}
	}
	lm_fwd_free(&f);
	{
		double *rho = calloc(L * L, sizeof *rho);
		if (!rho) {
			free(P);
			return lm_seterr("CMPQ: out of memory");
		}
		for (size_t a = 0; a < L; a++)
			for (size_t b = a + 1; b < L; b++) {
				if (lm_cca_first(P + a * W * C, P + b * W * C, W, C, C, &rho[a * L + b]) < 0) {
					free(rho), free(P);
					return -1;
				}
				rho[b * L + a] = rho[a * L + b];
			}
		for (size_t a = 0; a < L; a++) {
			double sum = 0;
			for (size_t b = 0; b < L; b++)
				sum += b != a ? rho[a * L + b] : 0;
			s[a] = L > 1 ? 1 - sum / (double)(L - 1) : 0;
		}
		free(rho);
	}
	free(P);
	return 0;
fail:
	lm_fwd_free(&f);
	free(P);
	return -1;
}

/* |g (Q(w) - w)| and g (Q(w) - w) summed over one matrix w [rows, cols] (f32) */
static int taylor_mat(const float *w, const float *g, size_t rows, size_t cols, enum lm_dtype qt,
                      int sym, double *abs_sum, double *lin_sum)
{
	size_t n = rows * cols, nb = 0;
	int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
	float *q = lm_alloc(n * sizeof *q);
	void *packed = NULL;
	int rc = 0;
	if (!q)
		return -1;
	if (qt == LM_F16) {
		for (size_t i = 0; i < n; i++)
			q[i] = lm_f16_to_f32(lm_f32_to_f16(w[i]));
	} else if (lm_dtype_nbytes(qt, 2, shape, &nb) < 0 || !(packed = lm_alloc(nb)) ||
	           lm_q_rtn(packed, qt, w, rows, cols, sym) < 0 ||
	           lm_q_dequant_rows(q, packed, qt, rows, cols) < 0) {
		rc = -1;
	}
	if (!rc) {
		double a = 0, l = 0;
		for (size_t i = 0; i < n; i++) {
			double t = (double)g[i] * ((double)q[i] - (double)w[i]);
			a += fabs(t), l += t;
		}
		*abs_sum += a, *lin_sum += l;
	}
	lm_free(packed);
	lm_free(q);
	return rc;
}

int lm_cpt_tdmpq(struct lm_model *m, const int32_t *ids, size_t W, size_t T, enum lm_dtype qt,
                 int sym, double *s, double *lin, lm_cpt_progress_fn *progress, void *ctx)
{
	/* the six linear weights of every layer train, nothing else: the backward then runs
	 * down to layer 0 and keeps only what their gradients need */
	static const char *const globs[] = {"model.decoder.layers.*.self_attn.*_proj.weight",
	                                    "model.decoder.layers.*.fc[12].weight"};
	const struct lm_train_opts to = {.globs = globs, .nglobs = 2, .layer = -1};
	const int L = (int)m->cfg.num_layers;
	struct lm_train tr;
	int rc = 0;

	if (W < 1 || T < 2)
		return lm_seterr("TDMPQ: %zu windows of %zu tokens (need 1 window of 2 or more)", W, T);
	if (qt != LM_F16 && !lm_dtype_is_packed(qt))
		return lm_seterr("TDMPQ: %s is not a quantized type", lm_dtype_name(qt));
	if (lm_train_init(&tr, m, &to, 1, T) < 0)
		return lm_preerr("TDMPQ");
	lm_train_zero_grad(&tr);
	/* one window per step: the gradients add up, so their sum / W is the gradient of the
	 * mean over windows of each window's mean NLL (every window has T - 1 targets) */
	for (size_t w = 0; w < W && !rc; w++) {
		double loss;
		rc = lm_train_step(&tr, ids + w * T, 1, T, &loss);
		if (!rc && progress)
			progress(ctx, w + 1, W);
	}
	for (int l = 0; l < L; l++) {
		s[l] = 0;
		if (lin)
			lin[l] = 0;
	}
	for (size_t i = 0; i < tr.npar && !rc; i++) {
		const struct lm_tparam *p = &tr.par[i];
		const struct lm_mat *mt = lm_model_mat(m, p->kind, p->layer);
		double a = 0, d = 0;
		if (p->layer < 0 || p->layer >= L || !lm_opt_is_linear(p->kind))
			continue;
		/* sum_i |g_i / W * dq_i| = (1 / W) sum_i |g_i dq_i| */
		rc = taylor_mat(p->p, p->g, (size_t)mt->rows, (size_t)mt->cols, qt, sym, &a, &d);
		s[p->layer] += a / (double)W;
		if (lin)
			lin[p->layer] += d / (double)W;
	}
	lm_train_free(&tr);
	return rc ? lm_preerr("TDMPQ") : 0;
}
