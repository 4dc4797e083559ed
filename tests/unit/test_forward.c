/* test_forward.c: the whole OPT forward pass against transformers' reference outputs.
 *
 * For every fixture in $LM_TESTDATA/{pre-ln,post-ln-proj,fp16}: load the checkpoint
 * through lm_model_take, run embed / each layer / final / head, and compare with
 * reference.safetensors (computed by transformers in f32): every hidden state and the
 * logits within 1e-4 relative, the loss within 1e-5. Then the KV-cache decoding path
 * must give the full forward's logits, and on models/opt-micro greedy generation must
 * reproduce reference.json's tokens exactly. */
#include "forward.h"
#include "kernels.h"
#include "modelio.h"
#include "opt.h"
#include "safetensors.h"
#include "fixture.h"
#include "unit.h"
#include "util.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

#define TOL_ACT 1e-4   /* hidden states and logits, relative (unit_relerr) */
#define TOL_LOSS 1e-5  /* loss, relative */

static double cmp_tensor(const struct lm_st_file *st, const char *name, const float *got, size_t n)
{
	size_t nb = 0;
	float *want = ref_read(st, name, &nb);
	double e;
	CHECKF(want && nb == n * sizeof(float), "reference %s missing or of the wrong size", name);
	if (!want || nb != n * sizeof(float)) {
		lm_free(want);
		return INFINITY;
	}
	e = unit_relerr(got, want, n);
	CHECKF(e < TOL_ACT, "%s: relative error %g", name, e);
	lm_free(want);
	return e;
}

static void test_fixture(const char *root, const char *name)
{
	char dir[1024], path[1100], hs[64];
	struct lm_model m;
	struct lm_st_file ref;
	struct lm_fwd s;
	const size_t B = 2, T = 16, N = B * T;

	snprintf(dir, sizeof dir, "%s/%s", root, name);
	CHECKF(load_model(&m, dir) == 0, "%s: model not loaded", name);
	if (!m.layers)
		return;
	snprintf(path, sizeof path, "%s/reference.safetensors", dir);
	CHECKF(lm_st_open(&ref, path) == 0, "%s: %s", path, lm_errmsg());

	const struct lm_opt_config *c = &m.cfg;
	size_t C = (size_t)c->hidden_size, E = (size_t)c->word_embed_proj_dim, V = (size_t)c->vocab_size;
	size_t L = (size_t)c->num_layers, nb = 0;
	int64_t *ids64 = ref_read(&ref, "input_ids", &nb);
	CHECK(ids64 && nb == N * sizeof(int64_t));
	int32_t ids[32];
	for (size_t i = 0; i < N; i++)
		ids[i] = (int32_t)ids64[i];
	lm_free(ids64);

	CHECK(lm_fwd_init(&s, c, B, T) == 0);
	double worst = 0, e;

	/* piece by piece, every hidden state */
	CHECK(lm_forward_embed(&s, &m, ids, B, T) == 0);
	e = cmp_tensor(&ref, "hidden_states.0", s.x, N * C);
	worst = e > worst ? e : worst;
	for (size_t l = 0; l < L; l++) {
		CHECKF(lm_forward_layer(&s, &m.layers[l], (int)l, s.x, B, T) == 0, "%s", lm_errmsg());
		if (l + 1 < L) {
			snprintf(hs, sizeof hs, "hidden_states.%zu", l + 1);
			e = cmp_tensor(&ref, hs, s.x, N * C);
			worst = e > worst ? e : worst;
		}
	}
	CHECK(lm_forward_final(&s, &m, s.x, s.out, N) == 0);
	snprintf(hs, sizeof hs, "hidden_states.%zu", L);
	e = cmp_tensor(&ref, hs, s.out, N * E);
	worst = e > worst ? e : worst;

	float *logits = lm_alloc(N * V * sizeof *logits);
	CHECK(lm_forward_head(&s, &m, s.out, NULL, N, NULL, logits) == 0);
	double elog = cmp_tensor(&ref, "logits", logits, N * V);

	/* the whole model in one call, logits from the fused cross-entropy path */
	memset(logits, 0, N * V * sizeof *logits);
	int32_t tgt[32];
	for (size_t i = 0; i < N; i++)
		tgt[i] = i % T + 1 < T ? ids[i + 1] : -1;
	CHECK(lm_forward(&s, &m, ids, tgt, B, T, NULL, logits) == 0);
	double efused = cmp_tensor(&ref, "logits", logits, N * V);

	/* loss */
	double loss = 0;
	float *want_loss = ref_read(&ref, "loss", NULL);
	CHECKF(lm_forward_loss(&s, &m, ids, B, T, &loss) == 0, "%s", lm_errmsg());
	double eloss = want_loss ? fabs(loss - want_loss[0]) / fabs(want_loss[0]) : INFINITY;
	CHECKF(eloss < TOL_LOSS, "%s: loss %.8f, reference %.8f", name, loss,
	       want_loss ? want_loss[0] : 0);

	/* KV cache: a 5-token prefill then one token at a time must give the full forward's
	 * logits at every position from 4 on; a second cache fed token by token from the
	 * start must agree too */
	float *want = ref_read(&ref, "logits", NULL), *step = lm_alloc(B * V * sizeof *step);
	double ekv = 0;
	for (int mode = 0; mode < 2; mode++) {
		struct lm_kv kv;
		struct lm_fwd sd;
		int32_t tok[2 * 16];
		CHECK(lm_kv_init(&kv, c, B, T) == 0);
		CHECK(lm_fwd_init(&sd, c, B, T) == 0);
		size_t t = 0;
		while (t < T) {
			size_t n = mode == 0 && t == 0 ? 5 : 1;
			for (size_t b = 0; b < B; b++)
				memcpy(tok + b * n, ids + b * T + t, n * sizeof *tok);
			CHECKF(lm_forward_decode(&sd, &m, &kv, tok, n, step) == 0, "%s", lm_errmsg());
			t += n;
			for (size_t b = 0; b < B; b++) {
				e = unit_relerr(step + b * V, want + (b * T + t - 1) * V, V);
				ekv = e > ekv ? e : ekv;
			}
		}
		CHECK(kv.len == T);
		int32_t one = ids[0];
		CHECK(lm_forward_decode(&sd, &m, &kv, &one, 1, step) < 0); /* the cache is full */
		lm_kv_free(&kv);
		lm_fwd_free(&sd);
	}
	CHECKF(ekv < TOL_ACT, "%s: KV-cache logits relative error %g", name, ekv);

	fprintf(stderr, "forward %-13s max rel err: hidden %.2e, logits %.2e (fused %.2e), "
	        "loss %.2e (%.6f), kv-decode %.2e\n", name, worst, elog, efused, eloss, loss, ekv);
	lm_free(want), lm_free(step), lm_free(want_loss), lm_free(logits);
	lm_fwd_free(&s);
	lm_st_close(&ref);
	lm_model_free(&m);
}

/* models/opt-micro: reference.json greedy_generation (5-token prompt, BOS included) */
static void test_greedy(const char *dir)
{
	char path[1024];
	json_error_t jerr;
	struct lm_model m;
	snprintf(path, sizeof path, "%s/reference.json", dir);
	json_t *ref = json_load_file(path, 0, &jerr);
	if (!ref) {
		fprintf(stderr, "forward: %s not found, greedy generation not tested\n", path);
		return;
	}
	json_t *ids = json_object_get(json_object_get(ref, "greedy_generation"), "ids");
	size_t n = json_array_size(ids), np = 5, got = 0;
	CHECK(n > np && n <= 64);
	int32_t want[64], out[64];
	for (size_t i = 0; i < n && i < 64; i++)
		want[i] = (int32_t)json_integer_value(json_array_get(ids, i));
	json_decref(ref);
	if (n <= np || n > 64 || load_model(&m, dir) < 0) {
		CHECK(0);
		return;
	}
	CHECKF(lm_generate_greedy(&m, want, np, n - np, 0, out, &got) == 0, "%s", lm_errmsg());
	CHECK(got == n);
	size_t same = 0;
	while (same < got && same < n && out[same] == want[same])
		same++;
	CHECKF(same == n, "greedy generation differs at token %zu (%d, reference %d)", same,
	       same < got ? out[same] : -1, want[same < n ? same : 0]);
	fprintf(stderr, "forward opt-micro greedy: %zu of %zu tokens match\n", same, n);
	lm_model_free(&m);
}

static void *zalloc(size_t n)
{
	void *p = lm_alloc(n);
	memset(p, 0, n);
	return p;
}

/* what lm_model_take refuses */
static void test_take_errors(void)
{
	struct lm_opt_config c;
	struct lm_model m;
	CHECK(lm_opt_config_like(&c, "opt-micro") == 0);
	c.vocab_size = 10, c.hidden_size = 8, c.num_heads = 2, c.ffn_dim = 16, c.num_layers = 2;
	c.word_embed_proj_dim = 8, c.max_positions = 4;
	CHECK(lm_model_init(&m, &c) == 0);
	int64_t s88[2] = {8, 8}, s8[1] = {8}, s98[2] = {9, 8};
	CHECK(lm_model_take(&m, "model.decoder.layers.0.self_attn.q_proj.weight", LM_F16, 2, s88,
	                    zalloc(128)) == 0);
	CHECK(lm_model_take(&m, "model.decoder.layers.0.self_attn.q_proj.weight", LM_F16, 2, s88,
	                    zalloc(128)) < 0);                                  /* twice */
	CHECK(strstr(lm_errmsg(), "q_proj") != NULL);
	CHECK(lm_model_take(&m, "model.decoder.layers.2.fc1.bias", LM_F32, 1, s8, zalloc(64)) < 0);
	CHECK(lm_model_take(&m, "model.decoder.layers.1.fc1.weight", LM_F32, 2, s98,
	                    zalloc(9 * 8 * 4)) < 0);                           /* shape */
	CHECK(lm_model_take(&m, "model.decoder.project_in.weight", LM_F32, 2, s88,
	                    zalloc(256)) < 0);                                 /* E == C */
	CHECK(lm_model_take(&m, "model.decoder.layers.0.fc2.bias", LM_I32, 1, s8, zalloc(32)) < 0);
	CHECK(lm_model_take(&m, "decoder.layers.0.fc2.bias", LM_F32, 1, s8, zalloc(32)) < 0);
	float *b = zalloc(32);
	for (int i = 0; i < 8; i++)
		b[i] = i == 5 ? NAN : 1.0f;
	CHECK(lm_model_take(&m, "model.decoder.layers.1.fc2.bias", LM_F32, 1, s8, b) == 0);
	CHECK(lm_model_has(&m, LM_T_FC2_B, 1) && !lm_model_has(&m, LM_T_FC2_B, 0));
	CHECK(lm_model_check_finite(&m) < 0);
	CHECK(strstr(lm_errmsg(), "layers.1.fc2.bias") != NULL);
	CHECK(lm_layer_check(&m, 0) < 0);
	CHECK(lm_model_check(&m) < 0);
	lm_layer_free(&m.layers[1]);
	CHECK(!lm_model_has(&m, LM_T_FC2_B, 1));
	lm_model_free(&m);
}

int main(void)
{
	const char *root = getenv("LM_TESTDATA");
	static const char *fixtures[] = {"pre-ln", "post-ln-proj", "fp16"};
	if (!root)
		root = "tests/fixtures";
	for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++)
		test_fixture(root, fixtures[i]);
	test_take_errors();
	test_greedy("models/opt-micro");
	return unit_done("forward");
}
