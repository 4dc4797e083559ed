/* test_earlyexit.c: early-exit decoding (earlyexit.h, forward.h lm_decode_*) and the exit
 * policy (exitpolicy.h), on the transformers fixtures (pre-LN, and post-LN with
 * project_in/out and no final LayerNorm) and on small synthetic cases:
 *
 *  - embed + every layer + advance, one layer at a time = lm_forward_decode, bit for bit;
 *  - lm_decode_kv writes the same cache rows as the full layer on the same input;
 *  - a policy threshold no probability exceeds = lm_generate_greedy's tokens exactly;
 *  - the confidence rule at tau = 0 leaves every token at the first exit, and its tokens
 *    are those of the model cut after that layer (the skipped layers' K/V never leak in);
 *  - a policy that always says exit / never does; the trace's last-layer tokens are the
 *    greedy ones; the FLOPs count of a full step is the sum of its pieces;
 *  - RAPL: package domains only, wraparound, a clear error without powercap;
 *  - samples from windows; the reward's cases; the MLP's backward against finite
 *    differences; the policy through a stream's extra tensors and back;
 *  - PPO learns the optimal rule of a synthetic environment, deterministically. */
#include "earlyexit.h"
#include "exitpolicy.h"
#include "forward.h"
#include "kernels.h"
#include "modelio.h"
#include "modelstream.h"
#include "rng.h"
#include "fixture.h"
#include "unit.h"
#include "util.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct lm_rng rng;

static void random_ids(int32_t *ids, size_t n, int V)
{
	for (size_t i = 0; i < n; i++)
		ids[i] = (int32_t)lm_rng_below(&rng, (uint64_t)V);
}

/* ---- decoding on a fixture ---- */

static void test_layers(const struct lm_model *m, const char *fx)
{
	const struct lm_opt_config *c = &m->cfg;
	const size_t V = (size_t)c->vocab_size, C = (size_t)c->hidden_size, L = (size_t)c->num_layers;
	const size_t np = 7, cap = 16;
	int32_t ids[8];
	struct lm_fwd s1, s2;
	struct lm_kv k1, k2;
	float *l1 = xmalloc(V * sizeof *l1), *l2 = xmalloc(V * sizeof *l2);
	random_ids(ids, 8, (int)V);
	CHECK(lm_fwd_init(&s1, c, 1, cap) == 0 && lm_fwd_init(&s2, c, 1, cap) == 0);
	CHECK(lm_kv_init(&k1, c, 1, cap) == 0 && lm_kv_init(&k2, c, 1, cap) == 0);
	/* a prompt, then one more token: whole vs one layer at a time */
	CHECK(lm_forward_decode(&s1, m, &k1, ids, np, NULL) == 0);
	CHECK(lm_forward_decode(&s1, m, &k1, ids + np, 1, l1) == 0);
	CHECK(lm_forward_decode(&s2, m, &k2, ids, np, NULL) == 0);
	CHECK(lm_decode_embed(&s2, m, &k2, ids + np, 1) == 0);
	for (int l = 0; l < (int)L; l++)
		CHECK(lm_decode_layer(&s2, m, &k2, l, s2.x, 1) == 0);
	CHECK(lm_kv_advance(&k2, 1) == 0);
	CHECK(lm_forward_final(&s2, m, s2.x, s2.out, 1) == 0);
	CHECK(lm_forward_head(&s2, m, s2.out, NULL, 1, NULL, l2) == 0);
	/* bitwise: the same kernels over the same rows, called in one go or layer by layer */
	CHECKF(!memcmp(l1, l2, V * sizeof *l1), "%s: layer-by-layer decode differs", fx);
	int same = 1; /* the rows written so far (the rest of the cache is uninitialised) */
	for (size_t l = 0; l < L; l++)
		same &= !memcmp(k1.k + l * cap * C, k2.k + l * cap * C, (np + 1) * C * sizeof(float)) &&
		        !memcmp(k1.v + l * cap * C, k2.v + l * cap * C, (np + 1) * C * sizeof(float));
	CHECKF(same, "%s: caches differ", fx);
	CHECK(k2.len == np + 1);

	/* K/V only = the K/V the whole layer writes for the same input */
	float *x = xmalloc(C * sizeof *x);
	size_t per = cap * C, row = k2.len * C;
	CHECK(lm_decode_embed(&s2, m, &k2, ids, 1) == 0);
	CHECK(lm_decode_layer(&s2, m, &k2, 0, s2.x, 1) == 0);
	memcpy(x, s2.x, C * sizeof *x);
	for (size_t l = 1; l < L; l++) {
		CHECK(lm_decode_kv(&s2, m, &k2, (int)l, x, 1) == 0);
		CHECKF(!memcmp(x, s2.x, C * sizeof *x), "%s: decode_kv changed its input", fx);
		float *kr = xmalloc(C * sizeof *kr), *vr = xmalloc(C * sizeof *vr);
		memcpy(kr, k2.k + l * per + row, C * sizeof *kr);
		memcpy(vr, k2.v + l * per + row, C * sizeof *vr);
		CHECK(lm_decode_layer(&s2, m, &k2, (int)l, s2.x, 1) == 0); /* on the same input x */
		CHECKF(!memcmp(kr, k2.k + l * per + row, C * sizeof *kr) &&
		       !memcmp(vr, k2.v + l * per + row, C * sizeof *vr), "%s: layer %zu K/V differ", fx, l);
		memcpy(s2.x, x, C * sizeof *x);
		free(kr), free(vr);
	}
	CHECK(lm_decode_layer(&s2, m, &k2, (int)L, s2.x, 1) < 0); /* no such layer */
	free(x), free(l1), free(l2);
	lm_kv_free(&k1), lm_kv_free(&k2), lm_fwd_free(&s1), lm_fwd_free(&s2);
}

/* a policy for m's shape whose output is a constant decision */
static void constant_policy(struct lm_policy *p, const struct lm_model *m, const int *ex, size_t ne,
                            float exit_logit)
{
	CHECK(lm_policy_init(p, (size_t)m->cfg.hidden_size, 8, (int)m->cfg.num_layers, ex, ne, 1) == 0);
	memset(p->pi.w3, 0, 2 * p->H * sizeof(float));
	p->pi.b3[0] = 0, p->pi.b3[1] = exit_logit;
}

static void test_generate(const struct lm_model *m, const char *fx)
{
	const struct lm_opt_config *c = &m->cfg;
	const int L = (int)c->num_layers, V = (int)c->vocab_size;
	const size_t np = 6, nnew = 9;
	int32_t prompt[6], greedy[16], out[16], cut[16];
	size_t ng;
	struct lm_ee ee;
	struct lm_policy p;
	int first = 0, ex[8];
	size_t ne = (size_t)L - 1;
	for (int i = 0; i < L - 1; i++)
		ex[i] = i;
	random_ids(prompt, np, V);
	CHECK(lm_generate_greedy(m, prompt, np, nnew, 0, greedy, &ng) == 0 && ng == np + nnew);
	CHECK(lm_ee_init(&ee, m, np + nnew, 5) == 0);

	/* never exits (no p(exit) exceeds 1): the plain greedy tokens; every layer runs */
	struct lm_ee_cost cost = {0};
	constant_policy(&p, m, ex, ne, 30.0f);
	struct lm_ee_opts o = {.rule = LM_EE_POLICY, .threshold = 1.0, .policy = &p};
	CHECK(lm_ee_generate(&ee, &o, prompt, np, nnew, out, &cost) == 0);
	/* ids, not floats: both decode with the same kernels over the same rows on one CPU */
	CHECKF(!memcmp(out, greedy + np, nnew * sizeof *out), "%s: threshold 1 differs from greedy", fx);
	CHECK(cost.tokens == nnew && cost.layers == (double)(nnew * (size_t)L) && cost.kv_layers == 0);
	CHECK(cost.exit_layer == (double)(nnew * (size_t)L));
	/* the FLOPs of those steps: layers over growing caches, a head, the policy at each exit */
	double want = 0;
	for (size_t i = 0; i < nnew; i++) {
		for (int l = 0; l < L; l++)
			want += lm_ee_flops_layer(c, np + i);
		want += lm_ee_flops_head(c) + (double)ne * 2.0 * ((double)p.C * p.H + (double)p.H * p.H + 2.0 * p.H);
		if (c->word_embed_proj_dim != c->hidden_size)
			want += 2.0 * (double)c->word_embed_proj_dim * (double)c->hidden_size;
	}
	CHECKF(fabs(cost.flops - want) <= 1e-9 * want, "%s: flops %g vs %g", fx, cost.flops, want);

	/* the same policy at threshold 0.5 always exits at the first exit */
	memset(&cost, 0, sizeof cost);
	o.threshold = 0.5;
	CHECK(lm_ee_generate(&ee, &o, prompt, np, nnew, out, &cost) == 0);
	CHECK(cost.exit_layer == (double)(nnew * (size_t)(ex[first] + 1)));
	CHECK(cost.kv_layers == (double)(nnew * (size_t)(L - 1 - ex[first])));
	int32_t pol_out[16];
	memcpy(pol_out, out, nnew * sizeof *out);
	lm_policy_free(&p);
	/* exit logit -30: never */
	memset(&cost, 0, sizeof cost);
	constant_policy(&p, m, ex, ne, -30.0f);
	o.threshold = 0.0;
	CHECK(lm_ee_generate(&ee, &o, prompt, np, nnew, out, &cost) == 0);
	CHECK(cost.exit_layer == (double)(nnew * (size_t)L));
	lm_policy_free(&p);

	/* confidence at tau = 0: every token leaves at the first exit, with the tokens of the
	 * model cut after that layer (which no skipped layer's K/V can reach) */
	memset(&cost, 0, sizeof cost);
	struct lm_ee_opts oc = {.rule = LM_EE_CONFIDENCE, .threshold = 0.0, .exits = ex, .nexits = ne};
	CHECK(lm_ee_generate(&ee, &oc, prompt, np, nnew, out, &cost) == 0);
	CHECK(cost.exit_layer == (double)(nnew * (size_t)(ex[0] + 1)) && cost.layers == (double)nnew * (ex[0] + 1));
	CHECKF(!memcmp(out, pol_out, nnew * sizeof *out), "%s: policy and confidence exits differ", fx);
	struct lm_model cm = *m;
	cm.cfg.num_layers = ex[0] + 1;
	struct lm_ee ce;
	struct lm_ee_cost cc = {0};
	struct lm_ee_opts on = {.rule = LM_EE_NONE};
	CHECK(lm_ee_init(&ce, &cm, np + nnew, 5) == 0);
	CHECK(lm_ee_generate(&ce, &on, prompt, np, nnew, cut, &cc) == 0);
	CHECKF(!memcmp(out, cut, nnew * sizeof *out), "%s: tau 0 differs from the cut model", fx);
	lm_ee_free(&ce);

	/* the trace: the last layer's tokens are the greedy ones; at the first exit, the
	 * cut model's first token */
	float *st = xmalloc(nnew * ne * (size_t)c->hidden_size * sizeof *st);
	int32_t *pr = xmalloc(nnew * (size_t)L * sizeof *pr);
	CHECK(lm_ee_trace(&ee, ex, ne, prompt, np, nnew, st, pr) == 0);
	int same = 1;
	for (size_t i = 0; i < nnew; i++)
		same &= pr[i * (size_t)L + (size_t)L - 1] == greedy[np + i];
	CHECKF(same, "%s: the trace's tokens are not greedy", fx);
	CHECK(pr[ex[0]] == cut[0]);
	free(st), free(pr);

	/* bad requests */
	int bad[2] = {L - 1, 0};
	oc.exits = bad, oc.nexits = 1;
	CHECK(lm_ee_generate(&ee, &oc, prompt, np, nnew, out, &cost) < 0);
	oc.exits = ex, oc.threshold = 1.5;
	CHECK(lm_ee_generate(&ee, &oc, prompt, np, nnew, out, &cost) < 0);
	oc.threshold = 0.5;
	CHECK(lm_ee_generate(&ee, &oc, prompt, np, nnew + 1, out, &cost) < 0); /* no room */
	lm_ee_free(&ee);
}

static void test_model(const char *root, const char *name)
{
	char dir[512];
	struct lm_model m;
	snprintf(dir, sizeof dir, "%s/%s", root, name);
	if (load_model(&m, dir) < 0) {
		CHECKF(0, "cannot load %s", dir);
		return;
	}
	test_layers(&m, name);
	test_generate(&m, name);
	lm_model_free(&m);
}

/* ---- RAPL ---- */

static void put(const char *dir, const char *name, const char *text)
{
	char p[1024];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	CHECK(f != NULL);
	if (f)
		fputs(text, f), fclose(f);
}

static void test_rapl(void)
{
	char root[] = "/tmp/lm-rapl-XXXXXX", d[1100];
	struct lm_rapl r;
	double j;
	CHECK(mkdtemp(root) != NULL);
	CHECK(lm_rapl_open(&r, root) < 0 && strstr(lm_errmsg(), "no intel-rapl"));
	const char *zones[] = {"intel-rapl:0", "intel-rapl:1", "intel-rapl:0:0"};
	const char *e0[] = {"1000000\n", "2000000\n", "5\n"};
	for (int i = 0; i < 3; i++) {
		snprintf(d, sizeof d, "%s/%s", root, zones[i]);
		CHECK(mkdir(d, 0755) == 0);
		put(d, "energy_uj", e0[i]);
		put(d, "max_energy_range_uj", "4000000\n");
	}
	CHECK(lm_rapl_open(&r, root) == 0 && r.n == 2); /* the subdomain is part of package 0 */
	/* package 0: +2 J; package 1 wrapped: 2000000 -> 500 is 4000000 - 2000000 + 500 uJ */
	snprintf(d, sizeof d, "%s/intel-rapl:0", root);
	put(d, "energy_uj", "3000000\n");
	snprintf(d, sizeof d, "%s/intel-rapl:0:0", root);
	put(d, "energy_uj", "999999\n");
	snprintf(d, sizeof d, "%s/intel-rapl:1", root);
	put(d, "energy_uj", "500\n");
	CHECK(lm_rapl_joules(&r, &j) == 0);
	CHECKF(fabs(j - 4.0005) < 1e-9, "%.9f J", j);
	CHECK(lm_rapl_joules(&r, &j) == 0 && j == 0);
	put(d, "energy_uj", "garbage\n");
	CHECK(lm_rapl_joules(&r, &j) < 0);
	for (int i = 2; i >= 0; i--) {
		char p[1200];
		snprintf(p, sizeof p, "%s/%s/energy_uj", root, zones[i]), unlink(p);
		snprintf(p, sizeof p, "%s/%s/max_energy_range_uj", root, zones[i]), unlink(p);
		snprintf(p, sizeof p, "%s/%s", root, zones[i]), rmdir(p);
	}
	rmdir(root);
}

/* ---- samples ---- */

static void test_samples(void)
{
	int32_t ids[25];
	struct lm_ee_sample *s;
	int32_t *buf;
	size_t ns;
	for (int i = 0; i < 25; i++)
		ids[i] = 100 + i;
	ids[10] = 2; /* window 1 starts with BOS: none added */
	CHECK(lm_ee_samples(ids, 25, 10, 0.2, 3, 2, 0, &s, &ns, &buf) == 0 && ns == 2);
	CHECK(s[0].nctx == 3 && s[0].ctx[0] == 2 && s[0].ctx[1] == 100 && s[0].ctx[2] == 101);
	CHECK(s[0].nref == 3 && s[0].ref[0] == 102 && s[0].ref[2] == 104);
	CHECK(s[1].nctx == 2 && s[1].ctx[0] == 2 && s[1].ctx[1] == 111 && s[1].ref[0] == 112);
	free(s), free(buf);
	CHECK(lm_ee_samples(ids, 25, 10, 0.2, 3, 2, 1, &s, &ns, &buf) == 0 && ns == 1);
	free(s), free(buf);
	CHECK(lm_ee_samples(ids, 25, 10, 0.5, 6, 2, 0, &s, &ns, &buf) < 0);  /* no room */
	CHECK(lm_ee_samples(ids, 5, 10, 0.2, 3, 2, 0, &s, &ns, &buf) < 0);   /* no window */
}

/* the multi-exit weights: GREEN-CODE's for OPT-2.7B (docs/methods.md §9, 4 decimals) */
static void test_weights(void)
{
	const int ex[10] = {3, 5, 7, 9, 11, 13, 15, 19, 23, 27};
	const double ref[11] = {.1342, .1208, .1087, .0978, .0880, .0792, .0713, .0738, .0664, .0598, .1000};
	float w[11], w2[3];
	double md = 0, sum = 0;
	lm_ee_default_weights(ex, 10, 32, w);
	for (int i = 0; i < 11; i++)
		md = fmax(md, fabs(w[i] - ref[i]));
	CHECKF(md <= 5e-5, "weights differ from the reference by %g", md);
	/* exits only in the first half: scaled to sum to 1, final 0.1 / 0.8 */
	const int e2[2] = {0, 1};
	lm_ee_default_weights(e2, 2, 4, w2);
	for (int i = 0; i < 3; i++)
		sum += w2[i];
	CHECK(fabs(sum - 1) < 1e-6 && fabs(w2[2] - 0.125) < 1e-7 && w2[0] > w2[1]);
	/* parsing: 1-based in, 0-based out */
	size_t n;
	int *e = lm_ee_parse_exits("1,3", &n);
	CHECK(e && n == 2 && e[0] == 0 && e[1] == 2);
	free(e);
	CHECK(!lm_ee_parse_exits("0,1", &n) && !lm_ee_parse_exits("1,x", &n) && !lm_ee_parse_exits("1.5", &n));
	CHECK(!lm_ee_parse_exits("1,", &n) && !lm_ee_parse_exits("", &n));
	const int bad[2] = {1, 1}, hi[1] = {3};
	CHECK(lm_ee_check_exits(bad, 2, 4) < 0 && lm_ee_check_exits(hi, 1, 4) < 0 && lm_ee_check_exits(e2, 2, 4) == 0);
}

/* ---- the policy ---- */

static void test_reward(void)
{
	const int ex[3] = {0, 1, 2};
	const int32_t a[4] = {5, 9, 9, 9};  /* l* = 1 */
	const int32_t b[4] = {5, 5, 7, 9};  /* l* = 3: only the full model */
	const int32_t c[4] = {9, 7, 9, 9};  /* l* = 0 */
	const double s = 1.0 / 3.0;        /* rewards are divided by L - 1 */
	CHECK(fabs(lm_policy_reward(a, 4, ex, 3, 0, 1) - -1 * s) < 1e-12); /* early, wrong */
	CHECK(fabs(lm_policy_reward(a, 4, ex, 3, 1, 1) - 1 * s) < 1e-12);  /* best */
	CHECK(fabs(lm_policy_reward(a, 4, ex, 3, 2, 1) - -1 * s) < 1e-12); /* late, right */
	CHECK(fabs(lm_policy_reward(a, 4, ex, 3, 0, 0) - 1 * s) < 1e-12);  /* continue before l* */
	CHECK(fabs(lm_policy_reward(a, 4, ex, 3, 1, 0) - -1 * s) < 1e-12); /* continue past: 2 - 1 */
	CHECK(fabs(lm_policy_reward(a, 4, ex, 3, 2, 0) - -2 * s) < 1e-12); /* last: 3 - 1 */
	CHECK(fabs(lm_policy_reward(b, 4, ex, 3, 2, 0) - 1 * s) < 1e-12);  /* only the full model */
	CHECK(fabs(lm_policy_reward(b, 4, ex, 3, 2, 1) - -1 * s) < 1e-12); /* exit before l* */
	CHECK(fabs(lm_policy_reward(c, 4, ex, 3, 1, 1) - -0.1 * s) < 1e-12); /* wrong, after l* */
	/* exits {1}: l* = 0 is no candidate, the best is the first one after it */
	const int e1[1] = {1};
	CHECK(fabs(lm_policy_reward(c, 4, e1, 1, 0, 1) - 1 * s) < 1e-12);
	CHECK(lm_policy_exits(0.6, 0.5) && !lm_policy_exits(0.6, 0.7) && !lm_policy_exits(0.5, 0.0));
	CHECK(!lm_policy_exits(1.0, 1.0) && lm_policy_exits(0.51, 0.0));
}

static double mlp_loss(const struct lm_mlp *m, const float *X, const float *R, size_t N, float *H1,
                       float *H2, float *Y)
{
	double s = 0;
	lm_mlp_forward(m, X, N, H1, H2, Y);
	for (size_t i = 0; i < N * m->out; i++)
		s += (double)Y[i] * R[i];
	return s;
}

static void test_mlp(void)
{
	const size_t in = 5, hid = 4, out = 3, N = 3, n = lm_mlp_size(in, hid, out);
	float *par = xmalloc(n * sizeof *par), *g = xcalloc(n, sizeof *g);
	float X[15], R[9], H1[12], H2[12], Y[9], d1[12], d2[12];
	struct lm_mlp m, gm;
	lm_mlp_point(&m, par, in, hid, out);
	lm_mlp_point(&gm, g, in, hid, out);
	for (size_t i = 0; i < n; i++)
		par[i] = (float)(lm_rng_uniform(&rng) - 0.5);
	for (size_t i = 0; i < 15; i++)
		X[i] = (float)(2 * lm_rng_uniform(&rng) - 1);
	for (size_t i = 0; i < 9; i++)
		R[i] = (float)(2 * lm_rng_uniform(&rng) - 1);
	mlp_loss(&m, X, R, N, H1, H2, Y);
	lm_mlp_backward(&m, &gm, X, H1, H2, R, N, d1, d2); /* d loss / dY = R */
	double md = 0, mg = 0;
	for (size_t i = 0; i < n; i++) {
		float keep = par[i];
		const float h = 1e-2f;
		par[i] = keep + h;
		double lp = mlp_loss(&m, X, R, N, H1, H2, Y);
		par[i] = keep - h;
		double lm = mlp_loss(&m, X, R, N, H1, H2, Y);
		par[i] = keep;
		double fd = (lp - lm) / (2.0 * h);
		md = fmax(md, fabs(fd - g[i])), mg = fmax(mg, fabs(fd));
	}
	CHECKF(md <= 1e-3 * mg, "MLP backward vs finite differences: %g of %g", md, mg);
	free(par), free(g);
}

static void test_policy_stream(void)
{
	struct lm_model_stream ms;
	struct lm_policy p, q;
	int ex[2] = {0, 2}, missing;
	memset(&ms, 0, sizeof ms);
	CHECK(lm_opt_config_like(&ms.h.cfg, "opt-micro") == 0);
	CHECK(lm_policy_init(&p, (size_t)ms.h.cfg.hidden_size, 16, (int)ms.h.cfg.num_layers, ex, 2, 3) == 0);
	CHECK(lm_policy_load(&q, &ms, &missing) < 0 && missing);
	for (size_t c = 0; c < p.C; c++)
		p.mean[c] = (float)c, p.scale[c] = 1.0f / (float)(c + 1);
	json_t *info = json_pack("{s:s}", "algorithm", "ppo");
	CHECK(lm_policy_save(&ms, &p, info) == 0 && ms.nextras == 8);
	CHECK(lm_policy_save(&ms, &p, info) == 0 && ms.nextras == 8); /* replaced, not added */
	json_decref(info);
	CHECK(lm_policy_load(&q, &ms, &missing) == 0);
	CHECK(q.nexits == 2 && q.exits[0] == 0 && q.exits[1] == 2 && q.H == 16 && q.L == p.L);
	CHECK(!memcmp(q.mean, p.mean, p.C * sizeof(float)) && !memcmp(q.scale, p.scale, p.C * sizeof(float)));
	CHECK(!memcmp(q.par, p.par, p.npi * sizeof(float)));
	float *st = xmalloc(p.C * sizeof *st), *w1 = xmalloc(lm_policy_work(&p) * sizeof *w1);
	for (size_t c = 0; c < p.C; c++)
		st[c] = (float)lm_rng_normal(&rng);
	CHECK(lm_policy_p_exit(&p, st, w1) == lm_policy_p_exit(&q, st, w1));
	const struct lm_record *main = lm_ms_extra(&ms, LM_POLICY_MAIN);
	CHECK(main && json_integer_value(json_array_get(json_object_get(main->attrs, "exits"), 1)) == 3);
	CHECK(!strcmp(json_string_value(json_object_get(main->attrs, "algorithm")), "ppo"));
	lm_policy_free(&q);
	/* a tensor missing; then one of the wrong shape */
	CHECK(lm_ms_drop_extras(&ms, LM_POLICY_PREFIX "out.b") == 1);
	CHECK(lm_policy_load(&q, &ms, &missing) < 0 && missing);
	struct lm_record r = {0};
	int64_t shape[1] = {3};
	lm_record_tensor(&r, LM_POLICY_PREFIX "out.bias", LM_F32, 1, shape);
	CHECK(lm_record_alloc(&r) == 0 && lm_ms_set_extra(&ms, &r) == 0);
	CHECK(lm_policy_load(&q, &ms, &missing) < 0 && !missing);
	/* model names are not extras */
	lm_record_tensor(&r, "model.decoder.layers.0.fc1.weight", LM_F32, 1, shape);
	CHECK(lm_ms_set_extra(&ms, &r) < 0);
	lm_record_tensor(&r, "model.something", LM_F32, 1, shape);
	CHECK(lm_ms_set_extra(&ms, &r) < 0);
	CHECK(lm_ms_drop_extras(&ms, LM_POLICY_PREFIX) == 8 && ms.nextras == 0);
	free(st), free(w1);
	lm_policy_free(&p);
	lm_ms_close(&ms);
}

/* a synthetic environment: L = 4, exits 0, 1, 2; l* uniform; the state's first component
 * says whether this exit is at or past l* (the rest is noise): the optimal rule is exit
 * there, which the trained policy must find */
static void test_ppo(void)
{
	const int L = 4, ex[3] = {0, 1, 2};
	const size_t C = 6, T = 15, NE = 48;
	struct lm_policy_episode ep[48];
	float *st = xmalloc(NE * T * 3 * C * sizeof *st);
	int32_t *pr = xmalloc(NE * T * (size_t)L * sizeof *pr);
	double opt_layer = 0;
	for (size_t e = 0; e < NE; e++) {
		for (size_t t = 0; t < T; t++) {
			int ls = (int)lm_rng_below(&rng, 4);
			for (int l = 0; l < L; l++)
				pr[(e * T + t) * (size_t)L + (size_t)l] = l >= ls ? 7 : 100 + l;
			for (size_t j = 0; j < 3; j++) {
				float *s = st + ((e * T + t) * 3 + j) * C;
				for (size_t c = 0; c < C; c++)
					s[c] = (float)(3.0 + 0.5 * lm_rng_normal(&rng));
				s[0] = ex[j] >= ls ? 4.0f : 2.0f;
			}
			opt_layer += (ls < 3 ? ls : 3) + 1;
		}
		ep[e] = (struct lm_policy_episode){T, st + e * T * 3 * C, pr + e * T * (size_t)L};
	}
	opt_layer /= (double)(NE * T);
	struct lm_ppo o;
	lm_ppo_defaults(&o);
	o.total = 24576, o.n_steps = 2048, o.batch = 256, o.epochs = 4, o.lr = 3e-3, o.seed = 7;
	struct lm_policy p, q;
	double ml, ag, ml0, ag0;
	CHECK(lm_policy_init(&p, C, 16, L, ex, 3, 11) == 0 && lm_policy_init(&q, C, 16, L, ex, 3, 11) == 0);
	lm_policy_fit_input(&p, st, NE * T * 3);
	lm_policy_score(&p, ep, NE, 0.5, &ml0, &ag0);
	CHECK(lm_policy_train(&p, ep, NE, &o, NULL, NULL) == 0);
	lm_policy_score(&p, ep, NE, 0.5, &ml, &ag);
	CHECKF(ag >= 0.97 && fabs(ml - opt_layer) <= 0.1, "PPO: agreement %.3f (before %.3f), "
	       "mean exit layer %.3f (optimal %.3f, before %.3f)", ag, ag0, ml, opt_layer, ml0);
	/* the synthetic episodes' oracle is the optimum computed above */
	CHECK(fabs(lm_policy_oracle(ep, NE, ex, 3, L) - opt_layer) < 1e-12);
	CHECK(lm_policy_train(&q, ep, NE, &o, NULL, NULL) == 0);
	CHECKF(!memcmp(p.par, q.par, p.npar * sizeof(float)) && !memcmp(p.mean, q.mean, C * sizeof(float)),
	       "PPO is not deterministic for a seed");
	lm_policy_free(&p), lm_policy_free(&q);
	free(st), free(pr);
}

int main(void)
{
	const char *root = getenv("LM_TESTDATA");
	if (!root)
		root = "tests/fixtures";
	lm_rng_seed(&rng, 2024);
	lm_set_threads(1);
	test_model(root, "pre-ln");
	test_model(root, "post-ln-proj");
	test_model(root, "fp16");
	test_rapl();
	test_samples();
	test_weights();
	test_reward();
	test_mlp();
	test_policy_stream();
	test_ppo();
	return unit_done("test_earlyexit");
}
