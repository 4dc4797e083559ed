/* test_contrastive.c: contrastive fine-tuning of PromptEOL embeddings (contrastive.h,
 * contrastive_train.h, train.h lm_train_embed_forward/backward).
 *
 * 1. The InfoNCE loss's gradient with respect to the embeddings against central finite
 *    differences of the loss (double), with a mask, hard negatives, both directions.
 * 2. The loss and its gradient against PyTorch autograd (tests/data-contrastive/
 *    infonce-torch.txt, written by bench/torch_contrastive.py fixture).
 * 3. On transformers fixtures (pre-LN; post-LN with project_in/out and no final
 *    LayerNorm): the right-padded training forward gives each sequence the embedding the
 *    left-padded inference batch (lm_embed_ids) gives it; the gradient of the contrastive
 *    loss of the model's embeddings with respect to LoRA factors and a LayerNorm weight
 *    against finite differences of the whole model in float; dropout gives two copies of
 *    a sentence two embeddings, and none (up to rounding) at p = 0. QLoRA: the same with every linear
 *    packed to 4 bits (frozen, decoded into W_eff), refused unless lora_packed; the merged,
 *    unpacked model embeds as the adapted training forward did.
 * 4. The example loader's errors name the line; on opt-micro's prompts, a batch's
 *    loss falls over two AdamW steps on it, and a hard negative that is another query's
 *    sentence is masked for that query. */
#include "contrastive.h"
#include "contrastive_train.h"
#include "embed.h"
#include "modelio.h"
#include "quant.h"
#include "rng.h"
#include "train.h"
#include "kernels.h"
#include "fixture.h"
#include "unit.h"
#include "util.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#define TOL_FD 1e-4       /* loss in double of float inputs, central differences h = 1e-3 */
#define TOL_TORCH 1e-6    /* double vs float64 autograd from the same float inputs */
#define TOL_PAD 1e-5      /* right vs left padding: GEMM rounding only */
#define TOL_MODEL_FD 1e-2 /* float model, directional central differences, relative to
                             |g.v| + 0.1 */

static struct lm_rng rng;

static void fill(float *x, size_t n, double scale)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(scale * lm_rng_normal(&rng));
}

/* ---- 1. finite differences of the loss ---- */

static void test_fd(size_t B, size_t K, size_t d, double tau, int sym, int masked)
{
	float *q = xmalloc(B * d * sizeof *q), *k = xmalloc(K * d * sizeof *k);
	float *dq = xmalloc(B * d * sizeof *dq), *dk = xmalloc(K * d * sizeof *dk);
	float *fq = xmalloc(B * d * sizeof *fq), *fk = xmalloc(K * d * sizeof *fk);
	size_t *pos = xmalloc(B * sizeof *pos);
	unsigned char *mask = xmalloc(B * K);
	fill(q, B * d, 1), fill(k, K * d, 1);
	for (size_t b = 0; b < B; b++)
		pos[b] = (b * 7 + 3) % B; /* a permutation: positives need not sit on the diagonal */
	for (size_t i = 0; i < B * K; i++)
		mask[i] = !masked || lm_rng_uniform(&rng) > 0.2;
	double L = lm_contrastive_loss(q, B, k, K, d, pos, masked ? mask : NULL, tau, sym, dq, dk);
	CHECK(isfinite(L) && L > 0);
	/* float inputs, so the step is a float step: h relative to the value, and the loss
	 * evaluated in double from the perturbed floats */
	float *xs[2] = {q, k}, *fs[2] = {fq, fk};
	size_t ns[2] = {B * d, K * d};
	for (int w = 0; w < 2; w++)
		for (size_t i = 0; i < ns[w]; i++) {
			float x0 = xs[w][i];
			float hp = x0 + 1e-3f, hm = x0 - 1e-3f;
			xs[w][i] = hp;
			double lp = lm_contrastive_loss(q, B, k, K, d, pos, masked ? mask : NULL, tau, sym,
			                                NULL, NULL);
			xs[w][i] = hm;
			double lm = lm_contrastive_loss(q, B, k, K, d, pos, masked ? mask : NULL, tau, sym,
			                                NULL, NULL);
			xs[w][i] = x0;
			fs[w][i] = (float)((lp - lm) / ((double)hp - (double)hm));
		}
	double eq = unit_relerr(dq, fq, B * d), ek = unit_relerr(dk, fk, K * d);
	/* central differences of a smooth function: error O(h^2) ~ 1e-6 of the scale */
	CHECKF(eq < TOL_FD && ek < TOL_FD, "B %zu K %zu sym %d mask %d: dq %.2e dk %.2e", B, K, sym,
	       masked, eq, ek);
	/* the loss is mean CE: without a mask and with tau large it tends to log(K) */
	if (!masked && !sym) {
		double big = lm_contrastive_loss(q, B, k, K, d, pos, NULL, 1e6, 0, NULL, NULL);
		CHECKF(fabs(big - log((double)K)) < 1e-4, "tau -> inf: %.6f vs log K %.6f", big,
		       log((double)K));
	}
	free(q), free(k), free(dq), free(dk), free(fq), free(fk), free(pos), free(mask);
}

/* ---- 2. PyTorch ---- */

static int read_vals(FILE *f, double *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fscanf(f, "%lf", &v[i]) != 1)
			return -1;
	return 0;
}

static void test_torch(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512];
	size_t B, K, d;
	double tau;
	CHECKF(f != NULL, "%s: cannot open", path);
	if (!f)
		return;
	while (fgets(line, sizeof line, f) && line[0] == '#')
		;
	CHECK(sscanf(line, "%zu %zu %zu %lf", &B, &K, &d, &tau) == 4 && B <= K && K <= 64 && d <= 64);
	double *v = xmalloc((B + K) * d * sizeof *v), m[64 * 64], want[1 + 64 * 64 * 2];
	float *q = xmalloc(B * d * sizeof *q), *k = xmalloc(K * d * sizeof *k);
	float *dq = xmalloc(B * d * sizeof *dq), *dk = xmalloc(K * d * sizeof *dk);
	float *wq = xmalloc(B * d * sizeof *wq), *wk = xmalloc(K * d * sizeof *wk);
	size_t pos[64];
	unsigned char mask[64 * 64];
	CHECK(read_vals(f, v, (B + K) * d) == 0 && read_vals(f, m, B * K) == 0);
	for (size_t i = 0; i < B * d; i++)
		q[i] = (float)v[i];
	for (size_t i = 0; i < K * d; i++)
		k[i] = (float)v[B * d + i];
	for (size_t i = 0; i < B * K; i++)
		mask[i] = m[i] != 0;
	for (size_t b = 0; b < B; b++)
		pos[b] = b;
	for (int c = 0; c < 2; c++) {
		CHECK(read_vals(f, want, 2 + (B + K) * d) == 0 && want[0] == c);
		for (size_t i = 0; i < B * d; i++)
			wq[i] = (float)want[2 + i];
		for (size_t i = 0; i < K * d; i++)
			wk[i] = (float)want[2 + B * d + i];
		double L = lm_contrastive_loss(q, B, k, K, d, pos, mask, tau, c, dq, dk);
		CHECKF(fabs(L - want[1]) < TOL_TORCH * fabs(want[1]), "symmetric %d: loss %.12f torch %.12f",
		       c, L, want[1]);
		double eq = unit_relerr(dq, wq, B * d), ek = unit_relerr(dk, wk, K * d);
		CHECKF(eq < TOL_TORCH && ek < TOL_TORCH, "symmetric %d: dq %.2e dk %.2e", c, eq, ek);
	}
	fclose(f);
	free(v), free(q), free(k), free(dq), free(dk), free(wq), free(wk);
}

/* ---- 3. through the model ---- */

#define NS 6   /* sequences: 3 queries, 3 candidates */
#define TT 9

struct mctx {
	struct lm_train *tr;
	int32_t ids[NS * TT];
	size_t last[NS];
	float z[NS * 128], dz[NS * 128];
	size_t E;
};

static double model_loss(struct mctx *c, int grad)
{
	size_t pos[3] = {0, 1, 2};
	if (lm_train_embed_forward(c->tr, c->ids, NS, TT, c->last, 0, c->z) < 0)
		return NAN;
	return lm_contrastive_loss(c->z, 3, c->z + 3 * c->E, 3, c->E, pos, NULL, 0.1, 0,
	                           grad ? c->dz : NULL, grad ? c->dz + 3 * c->E : NULL);
}

static void test_model(const char *root, const char *fx, int packed)
{
	char dir[512];
	struct lm_model m;
	struct lm_train tr;
	struct mctx c;
	snprintf(dir, sizeof dir, "%s/%s", root, fx);
	if (load_model(&m, dir) < 0) {
		CHECK(0);
		return;
	}
	size_t E = (size_t)m.cfg.word_embed_proj_dim;
	CHECK(E <= 128);
	/* QLoRA: every linear of every layer RTN-packed to 4 bits in groups of 32 */
	if (packed)
		for (int l = 0; l < m.cfg.num_layers; l++)
			for (enum lm_opt_kind k = 0; k < LM_T_KIND_COUNT; k++) {
				struct lm_mat *w = lm_opt_is_linear(k) ? lm_model_mat(&m, k, l) : NULL;
				if (w)
					CHECKF(lm_q_mat_rtn(w, (enum lm_dtype)lm_dtype_q(4, 32), 0) == 0, "%s", lm_errmsg());
			}
	c.E = E, c.tr = &tr;
	/* lengths 3..9, right-padded with the pad id, BOS first */
	size_t len[NS] = {9, 4, 7, 3, 9, 6};
	const int32_t *rows[NS];
	for (size_t s = 0; s < NS; s++) {
		for (size_t t = 0; t < TT; t++)
			c.ids[s * TT + t] = t == 0 ? (int32_t)m.cfg.bos
			                   : t < len[s] ? (int32_t)(4 + lm_rng_below(&rng, 900))
			                                : (int32_t)m.cfg.pad;
		c.last[s] = len[s] - 1;
		rows[s] = c.ids + s * TT;
	}
	/* the inference embeddings (left padding, the model as loaded) */
	float want[NS * 128];
	CHECK(lm_embed_ids(&m, rows, len, NS, 0, 4, want, NULL, NULL) == 0);

	struct lm_train_opts o = {.lora = LM_LORA_STD, .rank = 2, .alpha = 4, .layer = -1,
	                          .seed = 3, .globs = (const char *const[]){"*final_layer_norm.weight"},
	                          .nglobs = 1};
	if (packed) { /* refused unless asked for: its merge cannot be packed again */
		CHECK(lm_train_init(&tr, &m, &o, NS, TT) < 0 && strstr(lm_errmsg(), "is quantized"));
		lm_train_free(&tr);
		o.lora_packed = 1;
	}
	CHECKF(lm_train_init(&tr, &m, &o, NS, TT) == 0, "%s: %s", fx, lm_errmsg());
	CHECK(lm_train_embed_forward(&tr, c.ids, NS, TT, c.last, 0, c.z) == 0);
	double ep = unit_relerr(c.z, want, NS * E);
	CHECKF(ep < TOL_PAD, "%s%s: right-padded training forward vs lm_embed_ids: %.2e", fx,
	       packed ? " (q4g32)" : "", ep);

	/* LoRA B starts at zero (dA = 0): give every B a value */
	for (size_t i = 0; i < tr.npar; i++)
		if (tr.par[i].lora == 'B')
			fill(tr.par[i].p, tr.par[i].n, 0.05);
	lm_train_zero_grad(&tr);
	double L = model_loss(&c, 1);
	CHECK(isfinite(L));
	CHECK(lm_train_embed_backward(&tr, c.dz, NS, TT, c.last) == 0);
	/* each parameter tensor along a direction v near its gradient (v = g/|g| + r/(2|r|),
	 * r random): the directional derivative g.v against central differences of the whole
	 * float model, where entry-wise differences would drown in float rounding */
	for (size_t i = 0; i < tr.npar; i++) {
		struct lm_tparam *p = &tr.par[i];
		float *x0 = xmalloc(p->n * sizeof *x0), *v = xmalloc(p->n * sizeof *v);
		double gg = 0, rr = 0, gv = 0, h = 3e-4;
		memcpy(x0, p->p, p->n * sizeof *x0);
		fill(v, p->n, 1);
		for (size_t j = 0; j < p->n; j++)
			gg += (double)p->g[j] * p->g[j], rr += (double)v[j] * v[j];
		for (size_t j = 0; j < p->n; j++) {
			v[j] = (float)(p->g[j] / sqrt(gg) + 0.5 * v[j] / sqrt(rr));
			gv += (double)p->g[j] * v[j];
		}
		for (size_t j = 0; j < p->n; j++)
			p->p[j] = (float)(x0[j] + h * v[j]);
		double lp = model_loss(&c, 0);
		for (size_t j = 0; j < p->n; j++)
			p->p[j] = (float)(x0[j] - h * v[j]);
		double lm = model_loss(&c, 0);
		memcpy(p->p, x0, p->n * sizeof *x0);
		/* the float loss's rounding over 2h is ~1e-3 in absolute terms, whatever the BLAS
		 * kernel: a small g.v is compared with that floor */
		double fd = (lp - lm) / (2 * h), e = fabs(fd - gv) / (fabs(gv) + 0.1);
		CHECKF(gg > 0 && e < TOL_MODEL_FD, "%s: %s: g.v %.6e, finite differences %.6e", fx,
		       p->name, gv, fd);
		free(x0), free(v);
	}
	if (packed) {
		/* merged and unpacked: the merged model's embeddings are the adapted ones */
		float zt[NS * 128];
		CHECK(lm_train_embed_forward(&tr, c.ids, NS, TT, c.last, 0, zt) == 0);
		CHECK(lm_train_merge(&tr) == 0);
		lm_train_commit(&tr);
		lm_train_free(&tr);
		CHECK(lm_model_mat(&m, LM_T_Q_W, 0)->dtype == LM_F32);
		CHECK(lm_embed_ids(&m, rows, len, NS, 0, 4, want, NULL, NULL) == 0);
		double em = unit_relerr(want, zt, NS * E);
		CHECKF(em < TOL_PAD, "%s (q4g32): merged model vs adapted training forward: %.2e", fx, em);
		lm_model_free(&m);
		return;
	}
	lm_train_free(&tr);

	/* dropout: two copies of one sequence in a batch get two embeddings, equal at p = 0 */
	for (int d = 0; d < 2; d++) {
		struct lm_train_opts od = {.perp = 1, .layer = -1, .seed = 5, .dropout = d ? 0.1 : 0.0};
		int32_t two[2 * TT];
		size_t l2[2] = {len[0] - 1, len[0] - 1};
		float z2[2 * 128];
		memcpy(two, c.ids, TT * sizeof *two), memcpy(two + TT, c.ids, TT * sizeof *two);
		CHECK(lm_train_init(&tr, &m, &od, 2, TT) == 0);
		CHECK(lm_train_embed_forward(&tr, two, 2, TT, l2, 1, z2) == 0);
		/* (two rows of one GEMM may round differently with some BLAS kernels: a tolerance) */
		double e = unit_relerr(z2 + E, z2, E);
		CHECKF(d ? e > 1e-3 : e < TOL_PAD, "%s: dropout %d: the copies differ by %.2e", fx, d, e);
		lm_train_free(&tr);
	}
	lm_model_free(&m);
}

/* ---- 4. the trainer ---- */

static void test_loader(void)
{
	char path[] = "/tmp/test_contrastive_XXXXXX";
	int fd = mkstemp(path);
	struct lm_ctr_data d;
	const char *good = "a b\tc d\n\n  \nx\ty\tz\r\n";
	CHECK(fd >= 0 && write(fd, good, strlen(good)) == (ssize_t)strlen(good));
	close(fd);
	CHECK(lm_ctr_load(&d, path, 0) == 0 && d.n == 2 && d.nhard == 1 && !strcmp(d.p[0], "c d") &&
	      !d.h[0] && !strcmp(d.h[1], "z"));
	lm_ctr_data_free(&d);
	CHECK(lm_ctr_load(&d, path, 1) == 0 && d.n == 2 && d.p[1] == d.a[1] &&
	      !strcmp(d.a[1], "x\ty\tz"));
	lm_ctr_data_free(&d);
	const char *bad[] = {"a\tb\nno tab here\n", "a\tb\n\nc\t\n", "a\tb\tc\td\n"};
	const char *msg[] = {"line 2: ", "line 3: field 2 is empty", "line 1: "};
	for (int i = 0; i < 3; i++) {
		FILE *f = fopen(path, "w");
		fputs(bad[i], f);
		fclose(f);
		CHECK(lm_ctr_load(&d, path, 0) < 0);
		CHECKF(strstr(lm_errmsg(), msg[i]) != NULL, "bad %d: %s", i, lm_errmsg());
	}
	unlink(path);
}

/* one step and an update lower the batch's loss (the gradient points the right way
 * through the whole trainer: prompts, padding, the mask, the backward) */
/* several hard negatives per example (lm-embed --tune-encoder's rows: UPRISE's worst-scored
 * prompts): every one is a candidate, a missing one is skipped, and one whose text is another
 * query's positive is masked for that query only */
static void test_step_multi(struct lm_model *m, const struct lm_tokenizer *tk)
{
	const char *a[2] = {"A man is playing a guitar.", "A woman is slicing an onion."};
	const char *p[2] = {"A man plays the guitar.", "Someone cuts an onion."};
	const char *h[4] = {"A dog runs.", "Someone cuts an onion.", NULL, "A cat sleeps."};
	struct lm_ctr_data d;
	struct lm_ctr c;
	struct lm_train tr;
	struct lm_embed_cfg ec = {0};
	struct lm_adamw adam = {0.9, 0.999, 1e-8, 0};
	size_t idx[2] = {0, 1};
	double l0, l1;
	lm_ctr_data_set(&d, a, p, h, 2, 2);
	CHECK(d.n == 2 && d.H == 2 && d.nhard == 3 && d.h[2] == NULL && !strcmp(d.h[3], h[3]));
	CHECK(lm_ctr_init(&c, &d, &m->cfg, tk, &ec, 2, 0.05, 0) == 0);
	CHECK(c.S == 4 && c.maxseq == 2 * 2 + 3 && c.len[4 + 2] == 0 && c.len[4 + 3] > 0);
	struct lm_train_opts o = {.lora = LM_LORA_STD, .rank = 4, .alpha = 8, .layer = -1, .seed = 1};
	CHECK(lm_train_init(&tr, m, &o, c.maxseq, c.T) == 0);
	lm_train_zero_grad(&tr);
	CHECK(lm_ctr_step(&c, &tr, idx, 2, &l0) == 0);
	/* candidates: p0 p1 h00 h01 h11 (K = 5); h01 is query 1's positive's text */
	CHECK(c.src[4] == 2 && c.src[5] == 3 && c.src[6] == 4 + 3);
	CHECK(c.mask[0 * 5 + 3] == 1 && c.mask[1 * 5 + 3] == 0 && c.mask[1 * 5 + 4] == 1 &&
	      c.mask[0 * 5 + 1] == 1 && c.mask[1 * 5 + 1] == 1);
	lm_train_adamw(&tr, &adam, 1e-3);
	lm_train_zero_grad(&tr);
	CHECK(lm_ctr_step(&c, &tr, idx, 2, &l1) == 0);
	CHECKF(l1 < l0, "loss %.5f -> %.5f", l0, l1);
	lm_train_free(&tr);
	lm_ctr_free(&c);
	lm_ctr_data_free(&d);
}

static void test_step(void)
{
	char path[] = "/tmp/test_contrastive_XXXXXX";
	struct lm_model m;
	struct lm_tokenizer *tk = NULL;
	struct lm_ctr_data d;
	struct lm_ctr c;
	struct lm_train tr;
	struct lm_embed_cfg ec = {0};
	int fd = mkstemp(path);
	const char *rows = "A man is playing a guitar.\tA man plays the guitar.\tA dog runs.\n"
	                   "A woman is slicing an onion.\tSomeone cuts an onion.\n"
	                   "The cat sleeps on the sofa.\tA cat is asleep on a couch.\tA man is playing a guitar.\n"
	                   "Two kids play football.\tChildren are playing soccer.\n";
	CHECK(fd >= 0 && write(fd, rows, strlen(rows)) == (ssize_t)strlen(rows));
	close(fd);
	/* opt-micro: its tokenizer writes the prompts */
	if (load_model(&m, "models/opt-micro") < 0) {
		CHECK(0);
		unlink(path);
		return;
	}
	{
		size_t vn, mn;
		char *v = lm_read_file("models/opt-micro/vocab.json", 1 << 26, &vn);
		char *mg = lm_read_file("models/opt-micro/merges.txt", 1 << 26, &mn);
		tk = v && mg ? lm_tokenizer_load(v, vn, mg, mn) : NULL;
		free(v), free(mg);
	}
	CHECK(tk != NULL);
	CHECK(lm_ctr_load(&d, path, 0) == 0 && d.n == 4 && d.nhard == 2);
	CHECK(lm_ctr_init(&c, &d, &m.cfg, tk, &ec, 4, 0.05, 1) == 0);
	CHECK(c.maxseq == 10);
	struct lm_train_opts o = {.lora = LM_LORA_STD, .rank = 4, .alpha = 8, .layer = -1, .seed = 1};
	CHECK(lm_train_init(&tr, &m, &o, c.maxseq, c.T) == 0);
	size_t idx[4] = {0, 1, 2, 3};
	double l0, l1, l2;
	struct lm_adamw adam = {0.9, 0.999, 1e-8, 0};
	lm_train_zero_grad(&tr);
	CHECK(lm_ctr_step(&c, &tr, idx, 4, &l0) == 0);
	/* example 2's hard negative is example 0's sentence: masked for query 0 */
	CHECK(c.mask[0 * 6 + 5] == 0 && c.mask[2 * 6 + 5] == 1 && c.mask[1 * 6 + 5] == 1);
	lm_train_adamw(&tr, &adam, 1e-3);
	lm_train_zero_grad(&tr);
	CHECK(lm_ctr_step(&c, &tr, idx, 4, &l1) == 0);
	lm_train_adamw(&tr, &adam, 1e-3);
	lm_train_zero_grad(&tr);
	CHECK(lm_ctr_step(&c, &tr, idx, 4, &l2) == 0);
	CHECKF(l1 < l0 && l2 < l1, "loss %.5f -> %.5f -> %.5f", l0, l1, l2);
	lm_train_free(&tr);
	lm_ctr_free(&c);
	lm_ctr_data_free(&d);
	test_step_multi(&m, tk);
	lm_tokenizer_free(tk);
	lm_model_free(&m);
	unlink(path);
}

int main(void)
{
	const char *root = getenv("LM_TESTDATA");
	if (!root)
		root = "tests/fixtures";
	lm_rng_seed(&rng, 2026);
	lm_set_threads(1);
	test_fd(5, 5, 7, 0.05, 0, 0);
	test_fd(5, 8, 7, 0.05, 0, 1);
	test_fd(4, 7, 6, 0.1, 1, 1);
	test_fd(3, 3, 4, 1.0, 1, 0);
	test_torch("tests/data-contrastive/infonce-torch.txt");
	test_model(root, "pre-ln", 0);
	test_model(root, "post-ln-proj", 0);
	test_model(root, "pre-ln", 1);
	test_loader();
	test_step();
	return unit_done("contrastive");
}
