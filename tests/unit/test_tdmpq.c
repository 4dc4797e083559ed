/* test_tdmpq.c: the TDMPQ sensitivity (cptquant.h) on the pre-ln fixture, checked two ways
 * that do not share its code:
 *
 * 1. Direct computation from transformers' numbers: sum over each layer's six linear
 *    weights of |g (Q(w) - w)|, with g the fixture's reference gradient (grad.<name> in
 *    reference.safetensors: dL/dw of the mean shifted cross-entropy of input_ids [2,16],
 *    the loss lm_cpt_tdmpq differentiates on those ids as 2 windows of 16) and Q the RTN
 *    quantizer of quant.h (itself checked against the GPTQ reference in test_quant).
 *    The signed sum g (Q(w) - w) (lin) the same way.
 * 2. A central finite difference of the loss (forward.h, not train.h): along the direction
 *    E = sign(g) |Q(w) - w| on the layer's six matrices (g: transformers' gradient), the
 *    directional derivative is sum g E = sum |g (Q(w) - w)|, the score itself:
 *    (L(w + h E) - L(w - h E)) / 2h must come out as s. (Along Q(w) - w itself the
 *    derivative is the signed sum, which nearly cancels on this random model: a few
 *    thousandths, below what an f32 loss can difference.)
 * Both for per-row 4-bit and for 3-bit groups of 32. */
#include "cptquant.h"
#include "fixture.h"
#include "kernels.h"
#include "perplexity.h"
#include "quant.h"
#include "unit.h"

#include <stdint.h>
#include <string.h>

#define TOL_REF 1e-4  /* our gradients vs transformers' in a sum over a layer, relative */
#define TOL_FD 2e-3   /* the score vs the finite difference, relative: f32 loss rounding
                         (~1e-6 of 6.9) / 2h, and the O(h^2) term */
#define FD_H 1e-3     /* step along E */

static const enum lm_opt_kind kinds[6] = {LM_T_Q_W, LM_T_K_W, LM_T_V_W, LM_T_O_W, LM_T_FC1_W,
                                          LM_T_FC2_W};
static const char *const kname[6] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                     "self_attn.out_proj", "fc1", "fc2"};

/* D = RTN(w) - w of an f32 matrix [rows, cols] */
static float *quant_step(const float *w, size_t rows, size_t cols, enum lm_dtype qt)
{
	size_t n = rows * cols, nb = 0;
	int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
	float *d = lm_alloc(n * sizeof *d);
	void *pk = NULL;
	CHECK(lm_dtype_nbytes(qt, 2, shape, &nb) == 0 && (pk = lm_alloc(nb)) != NULL);
	CHECK(lm_q_rtn(pk, qt, w, rows, cols, 0) == 0);
	CHECK(lm_q_dequant_rows(d, pk, qt, rows, cols) == 0);
	for (size_t i = 0; i < n; i++)
		d[i] -= w[i];
	lm_free(pk);
	return d;
}

/* the mean NLL of the 2 windows */
static double loss_of(const struct lm_model *m, const int32_t *ids)
{
	double ppl = 0;
	CHECK(lm_ppl_windows(m, ids, 2, 16, &ppl) == 0);
	return log(ppl);
}

static size_t calls;
static void count_progress(void *ctx, size_t done, size_t total)
{
	(void)ctx;
	CHECK(done == ++calls && total == 2);
}

static void check_type(struct lm_model *m, const struct lm_st_file *ref, const int32_t *ids,
                       enum lm_dtype qt)
{
	const int L = (int)m->cfg.num_layers;
	double s[8], lin[8];
	float *before[8][6];

	/* the model is f32: remember it, to check it comes back unchanged */
	for (int l = 0; l < L; l++)
		for (int j = 0; j < 6; j++) {
			const struct lm_mat *w = lm_model_mat(m, kinds[j], l);
			size_t n = (size_t)(w->rows * w->cols);
			before[l][j] = lm_alloc(n * sizeof(float));
			memcpy(before[l][j], w->data, n * sizeof(float));
		}
	calls = 0;
	CHECK(lm_cpt_tdmpq(m, ids, 2, 16, qt, 0, s, lin, count_progress, NULL) == 0);
	CHECK(calls == 2);

	for (int l = 0; l < L; l++) {
		double want = 0, want_lin = 0, fd, lp = 0, lm = 0;
		float *D[6];
		for (int j = 0; j < 6; j++) {
			struct lm_mat *w = lm_model_mat(m, kinds[j], l);
			size_t rows = (size_t)w->rows, cols = (size_t)w->cols, nb = 0;
			char key[128];
			float *g;
			CHECK(w->dtype == LM_F32 && w->data != NULL);
			CHECK(memcmp(w->data, before[l][j], rows * cols * sizeof(float)) == 0);
			snprintf(key, sizeof key, "grad.model.decoder.layers.%d.%s.weight", l, kname[j]);
			g = ref_read(ref, key, &nb);
			CHECKF(g && nb == rows * cols * sizeof(float), "%s", key);
			D[j] = quant_step(w->data, rows, cols, qt);
			for (size_t i = 0; g && i < rows * cols; i++) {
				want += fabs((double)g[i] * D[j][i]);
				want_lin += (double)g[i] * D[j][i];
				/* D becomes E = sign(g) |D| */
				D[j][i] = g[i] < 0 ? -fabsf(D[j][i]) : fabsf(D[j][i]);
			}
			lm_free(g);
		}
		CHECKF(s[l] > 0 && fabs(s[l] - want) <= TOL_REF * want, "%s layer %d: %.9g, direct %.9g",
		       lm_dtype_name(qt), l, s[l], want);
		CHECKF(fabs(lin[l] - want_lin) <= TOL_REF * want, "%s layer %d: signed %.9g, direct %.9g",
		       lm_dtype_name(qt), l, lin[l], want_lin);

		/* finite difference along E (the model's own matrices moved and put back) */
		for (int sign = 1; sign >= -1; sign -= 2) {
			for (int j = 0; j < 6; j++) {
				struct lm_mat *w = lm_model_mat(m, kinds[j], l);
				float *x = w->data;
				for (size_t i = 0; i < (size_t)(w->rows * w->cols); i++)
					x[i] = before[l][j][i] + (float)(sign * FD_H) * D[j][i];
			}
			if (sign > 0)
				lp = loss_of(m, ids);
			else
				lm = loss_of(m, ids);
		}
		fd = (lp - lm) / (2 * FD_H);
		CHECKF(fabs(fd - s[l]) <= TOL_FD * s[l], "%s layer %d: score %.6g, finite difference %.6g",
		       lm_dtype_name(qt), l, s[l], fd);
		if (getenv("LM_TEST_VERBOSE"))
			fprintf(stderr, "%s layer %d: s %.7g direct %.7g fd %.7g, signed %.6g direct %.6g\n",
			        lm_dtype_name(qt), l, s[l], want, fd, lin[l], want_lin);
		for (int j = 0; j < 6; j++) {
			struct lm_mat *w = lm_model_mat(m, kinds[j], l);
			memcpy(w->data, before[l][j], (size_t)(w->rows * w->cols) * sizeof(float));
			lm_free(D[j]);
		}
	}
	for (int l = 0; l < L; l++)
		for (int j = 0; j < 6; j++)
			lm_free(before[l][j]);
}

int main(void)
{
	const char *root = getenv("LM_TESTDATA") ? getenv("LM_TESTDATA") : "tests/fixtures";
	char dir[512], path[600];
	struct lm_model m;
	struct lm_st_file ref;
	int32_t ids[32];
	size_t nb = 0;
	int64_t *ids64;
	double s[2];

	snprintf(dir, sizeof dir, "%s/pre-ln", root);
	snprintf(path, sizeof path, "%s/reference.safetensors", dir);
	if (load_model(&m, dir) < 0 || lm_st_open(&ref, path) < 0) {
		fprintf(stderr, "test_tdmpq: cannot load %s\n", dir);
		return 1;
	}
	ids64 = ref_read(&ref, "input_ids", &nb);
	CHECK(ids64 && nb == sizeof ids / sizeof *ids * sizeof(int64_t));
	for (size_t i = 0; ids64 && i < 32; i++)
		ids[i] = (int32_t)ids64[i];
	lm_free(ids64);
	lm_set_threads(1);

	check_type(&m, &ref, ids, (enum lm_dtype)lm_dtype_q(4, 0));
	check_type(&m, &ref, ids, (enum lm_dtype)lm_dtype_q(3, 32));
	/* bad arguments: one-token windows, a float type that is not f16 */
	CHECK(lm_cpt_tdmpq(&m, ids, 2, 1, (enum lm_dtype)lm_dtype_q(4, 0), 0, s, NULL, NULL, NULL) < 0);
	CHECK(lm_cpt_tdmpq(&m, ids, 2, 16, LM_F32, 0, s, NULL, NULL, NULL) < 0 &&
	      strstr(lm_errmsg(), "not a quantized type"));

	lm_st_close(&ref);
	lm_model_free(&m);
	return unit_done("test_tdmpq");
}
