/* opt.c: OPT config and the one table of tensor names (see opt.h) */
#include "opt.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- config ---- */

static int get_int(json_t *o, const char *key, int64_t *v, int required)
{
	json_t *x = json_object_get(o, key);
	if (!x || json_is_null(x)) {
		if (required)
			return lm_seterr("config.json: missing \"%s\"", key);
		return 1;
	}
	if (!json_is_integer(x))
		return lm_seterr("config.json: \"%s\" is not an integer", key);
	*v = json_integer_value(x);
	return 0;
}

/* a token id: checked before it is narrowed to int, so 2^32 + 2 is not read as 2 */
static int get_id(json_t *o, const char *key, int *v)
{
	int64_t x = 0;
	int r = get_int(o, key, &x, 0);
	if (r)
		return r;
	if (x < 0 || x > INT32_MAX)
		return lm_seterr("config.json: \"%s\" %lld is not a token id", key, (long long)x);
	*v = (int)x;
	return 0;
}

static int get_bool(json_t *o, const char *key, int *v)
{
	json_t *x = json_object_get(o, key);
	if (!x || json_is_null(x))
		return 1;
	if (!json_is_boolean(x))
		return lm_seterr("config.json: \"%s\" is not a boolean", key);
	*v = json_is_true(x);
	return 0;
}

static int get_real(json_t *o, const char *key, double *v)
{
	json_t *x = json_object_get(o, key);
	if (!x || json_is_null(x))
		return 1;
	if (!json_is_number(x))
		return lm_seterr("config.json: \"%s\" is not a number", key);
	*v = json_number_value(x);
	return 0;
}

int lm_opt_config_check(const struct lm_opt_config *c)
{
	const int64_t big = (int64_t)1 << 24;
	if (c->vocab_size <= 0 || c->vocab_size > big || c->hidden_size <= 0 ||
	    c->hidden_size > big || c->num_layers <= 0 || c->num_layers > 4096 ||
	    c->num_heads <= 0 || c->ffn_dim <= 0 || c->ffn_dim > big || c->max_positions <= 0 ||
	    c->max_positions > big || c->word_embed_proj_dim <= 0 || c->word_embed_proj_dim > big)
		return lm_seterr("config: sizes out of range");
	if (c->hidden_size % c->num_heads)
		return lm_seterr("config: hidden_size %lld not divisible by num_attention_heads %lld",
		                 (long long)c->hidden_size, (long long)c->num_heads);
	if (c->bos < 0 || c->bos >= c->vocab_size || c->eos < 0 || c->eos >= c->vocab_size)
		return lm_seterr("config: bos/eos token id outside the vocabulary");
	if (c->pad < 0 || c->pad >= c->vocab_size)
		return lm_seterr("config: pad_token_id %d outside the vocabulary of %lld", c->pad,
		                 (long long)c->vocab_size);
	if (!(c->ln_eps > 0 && c->ln_eps < 1))
		return lm_seterr("config: layer norm epsilon out of range");
	/* a probability, and 1 would zero every activation: lm-retrain scales kept ones by 1/(1-p) */
	if (!(c->dropout >= 0 && c->dropout < 1))
		return lm_seterr("config: dropout %g is not in [0, 1)", c->dropout);
	return 0;
}

int lm_opt_config_from_hf(struct lm_opt_config *c, json_t *hf)
{
	json_t *mt;
	const char *act;
	int remove_final = 0, r;

	memset(c, 0, sizeof *c);
	if (!json_is_object(hf))
		return lm_seterr("config.json: not a JSON object");
	mt = json_object_get(hf, "model_type");
	if (!json_is_string(mt) || strcmp(json_string_value(mt), "opt"))
		return lm_seterr("config.json: model_type is not \"opt\"");
	if (get_int(hf, "vocab_size", &c->vocab_size, 1) || get_int(hf, "hidden_size", &c->hidden_size, 1) ||
	    get_int(hf, "num_hidden_layers", &c->num_layers, 1) ||
	    get_int(hf, "num_attention_heads", &c->num_heads, 1) || get_int(hf, "ffn_dim", &c->ffn_dim, 1) ||
	    get_int(hf, "max_position_embeddings", &c->max_positions, 1))
		return -1;
	c->word_embed_proj_dim = c->hidden_size;
	if ((r = get_int(hf, "word_embed_proj_dim", &c->word_embed_proj_dim, 0)) < 0)
		return -1;
	c->pre_ln = 1, c->enable_bias = 1, c->ln_affine = 1, c->tied = 1;
	if (get_bool(hf, "do_layer_norm_before", &c->pre_ln) < 0 ||
	    get_bool(hf, "_remove_final_layer_norm", &remove_final) < 0 ||
	    get_bool(hf, "enable_bias", &c->enable_bias) < 0 ||
	    get_bool(hf, "layer_norm_elementwise_affine", &c->ln_affine) < 0 ||
	    get_bool(hf, "tie_word_embeddings", &c->tied) < 0)
		return -1;
	/* transformers: final_layer_norm exists iff do_layer_norm_before and not removed */
	c->final_ln = c->pre_ln && !remove_final;
	c->bos = 2, c->eos = 2, c->pad = 1;
	if (get_id(hf, "bos_token_id", &c->bos) < 0 || get_id(hf, "eos_token_id", &c->eos) < 0 ||
	    get_id(hf, "pad_token_id", &c->pad) < 0)
		return -1;
	c->ln_eps = 1e-5;
	c->dropout = 0.1;
	if (get_real(hf, "dropout", &c->dropout) < 0)
		return -1;
	act = json_string_value(json_object_get(hf, "activation_function"));
	if (act && strcmp(act, "relu"))
		return lm_seterr("config.json: activation_function \"%s\" is not supported (OPT uses relu)", act);
	if (!c->ln_affine)
		return lm_seterr("config.json: layer_norm_elementwise_affine=false is not supported");
	return lm_opt_config_check(c);
}

json_t *lm_opt_config_to_json(const struct lm_opt_config *c)
{
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:b, s:b, s:i, s:i, s:i, s:f, s:f, s:i}",
	                 "architecture", "opt", "vocab_size", (json_int_t)c->vocab_size,
	                 "hidden_size", (json_int_t)c->hidden_size, "num_layers", (json_int_t)c->num_layers,
	                 "num_heads", (json_int_t)c->num_heads, "ffn_dim", (json_int_t)c->ffn_dim,
	                 "max_positions", (json_int_t)c->max_positions,
	                 "word_embed_proj_dim", (json_int_t)c->word_embed_proj_dim,
	                 "do_layer_norm_before", c->pre_ln, "final_layer_norm", c->final_ln,
	                 "enable_bias", c->enable_bias, "tie_word_embeddings", c->tied,
	                 "bos_token_id", c->bos, "eos_token_id", c->eos, "pad_token_id", c->pad,
	                 "layer_norm_eps", c->ln_eps, "dropout", c->dropout,
	                 "pos_offset", LM_OPT_POS_OFFSET);
}

int lm_opt_config_from_json(struct lm_opt_config *c, json_t *m)
{
	int64_t v = 0;
	const char *arch;
	memset(c, 0, sizeof *c);
	if (!json_is_object(m))
		return lm_seterr("header: \"model\" is not a map");
	arch = json_string_value(json_object_get(m, "architecture"));
	if (!arch || strcmp(arch, "opt"))
		return lm_seterr("header: model architecture is not \"opt\"");
	if (get_int(m, "vocab_size", &c->vocab_size, 1) || get_int(m, "hidden_size", &c->hidden_size, 1) ||
	    get_int(m, "num_layers", &c->num_layers, 1) || get_int(m, "num_heads", &c->num_heads, 1) ||
	    get_int(m, "ffn_dim", &c->ffn_dim, 1) || get_int(m, "max_positions", &c->max_positions, 1) ||
	    get_int(m, "word_embed_proj_dim", &c->word_embed_proj_dim, 1))
		return lm_preerr("header");
	c->pre_ln = c->final_ln = c->enable_bias = c->tied = c->ln_affine = 1;
	if (get_bool(m, "do_layer_norm_before", &c->pre_ln) < 0 || get_bool(m, "final_layer_norm", &c->final_ln) < 0 ||
	    get_bool(m, "enable_bias", &c->enable_bias) < 0 || get_bool(m, "tie_word_embeddings", &c->tied) < 0)
		return lm_preerr("header");
	c->bos = 2, c->eos = 2, c->pad = 1, c->ln_eps = 1e-5, c->dropout = 0.1;
	if (get_id(m, "bos_token_id", &c->bos) < 0 || get_id(m, "eos_token_id", &c->eos) < 0 ||
	    get_id(m, "pad_token_id", &c->pad) < 0 || get_real(m, "layer_norm_eps", &c->ln_eps) < 0 ||
	    get_real(m, "dropout", &c->dropout) < 0)
		return lm_preerr("header");
	/* the offset is OPT's, fixed in the model code: a header may only repeat it */
	int r = get_int(m, "pos_offset", &v, 0);
	if (r < 0)
		return lm_preerr("header");
	if (r == 0 && v != LM_OPT_POS_OFFSET)
		return lm_seterr("header: pos_offset %lld, OPT's is %d", (long long)v, LM_OPT_POS_OFFSET);
	return lm_opt_config_check(c);
}

json_t *lm_opt_config_to_hf(const struct lm_opt_config *c, json_t *orig)
{
	json_t *o = json_is_object(orig) ? json_deep_copy(orig) : json_object();
	json_object_set_new(o, "_remove_final_layer_norm", json_boolean(c->pre_ln && !c->final_ln));
	json_object_set_new(o, "activation_function", json_string("relu"));
	if (!json_object_get(o, "architectures"))
		json_object_set_new(o, "architectures", json_pack("[s]", "OPTForCausalLM"));
	json_object_set_new(o, "bos_token_id", json_integer(c->bos));
	json_object_set_new(o, "do_layer_norm_before", json_boolean(c->pre_ln));
	json_object_set_new(o, "dropout", json_real(c->dropout));
	json_object_set_new(o, "enable_bias", json_boolean(c->enable_bias));
	json_object_set_new(o, "eos_token_id", json_integer(c->eos));
	json_object_set_new(o, "ffn_dim", json_integer(c->ffn_dim));
	json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
	json_object_set_new(o, "layer_norm_elementwise_affine", json_true());
	json_object_set_new(o, "max_position_embeddings", json_integer(c->max_positions));
	json_object_set_new(o, "model_type", json_string("opt"));
	json_object_set_new(o, "num_attention_heads", json_integer(c->num_heads));
	json_object_set_new(o, "num_hidden_layers", json_integer(c->num_layers));
	json_object_set_new(o, "pad_token_id", json_integer(c->pad));
	json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tied));
	json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
	json_object_set_new(o, "word_embed_proj_dim", json_integer(c->word_embed_proj_dim));
	return o;
}

int lm_opt_config_like(struct lm_opt_config *c, const char *name)
{
	static const struct { const char *name; int64_t C, L, NH, F, E, P, V; int pre; } like[] = {
		{"opt-micro", 256, 4, 4, 1024, 256, 512, 50272, 1},
		{"opt-125m", 768, 12, 12, 3072, 768, 2048, 50272, 1},
		{"opt-350m", 1024, 24, 16, 4096, 512, 2048, 50272, 0},
		{"opt-1.3b", 2048, 24, 32, 8192, 2048, 2048, 50272, 1},
		{"opt-2.7b", 2560, 32, 32, 10240, 2560, 2048, 50272, 1},
		{"opt-6.7b", 4096, 32, 32, 16384, 4096, 2048, 50272, 1},
		{"opt-13b", 5120, 40, 40, 20480, 5120, 2048, 50272, 1},
		{"opt-30b", 7168, 48, 56, 28672, 7168, 2048, 50272, 1},
		{"opt-66b", 9216, 64, 72, 36864, 9216, 2048, 50272, 1},
	};
	const char *n = strncmp(name, "facebook/", 9) ? name : name + 9;
	for (size_t i = 0; i < sizeof like / sizeof *like; i++) {
		if (strcmp(n, like[i].name))
			continue;
		memset(c, 0, sizeof *c);
		c->vocab_size = like[i].V, c->hidden_size = like[i].C, c->num_layers = like[i].L;
		c->num_heads = like[i].NH, c->ffn_dim = like[i].F, c->max_positions = like[i].P;
		c->word_embed_proj_dim = like[i].E, c->pre_ln = like[i].pre, c->final_ln = like[i].pre;
		c->enable_bias = 1, c->ln_affine = 1, c->tied = 1;
		c->bos = 2, c->eos = 2, c->pad = 1, c->ln_eps = 1e-5, c->dropout = 0.1;
		return 0;
	}
	return lm_seterr("unknown model shape '%s' (try opt-125m, opt-350m, opt-1.3b, opt-2.7b, …)", name);
}

/* ---- names ---- */

static const struct { enum lm_opt_kind kind; const char *suffix; } layer_names[] = {
	{LM_T_ATTN_LN_W, "self_attn_layer_norm.weight"}, {LM_T_ATTN_LN_B, "self_attn_layer_norm.bias"},
	{LM_T_Q_W, "self_attn.q_proj.weight"}, {LM_T_Q_B, "self_attn.q_proj.bias"},
	{LM_T_K_W, "self_attn.k_proj.weight"}, {LM_T_K_B, "self_attn.k_proj.bias"},
	{LM_T_V_W, "self_attn.v_proj.weight"}, {LM_T_V_B, "self_attn.v_proj.bias"},
	{LM_T_O_W, "self_attn.out_proj.weight"}, {LM_T_O_B, "self_attn.out_proj.bias"},
	{LM_T_FFN_LN_W, "final_layer_norm.weight"}, {LM_T_FFN_LN_B, "final_layer_norm.bias"},
	{LM_T_FC1_W, "fc1.weight"}, {LM_T_FC1_B, "fc1.bias"},
	{LM_T_FC2_W, "fc2.weight"}, {LM_T_FC2_B, "fc2.bias"},
};

static const struct { enum lm_opt_kind kind; const char *name; } global_names[] = {
	{LM_T_EMBED_TOKENS, "model.decoder.embed_tokens.weight"},
	{LM_T_EMBED_POS, "model.decoder.embed_positions.weight"},
	{LM_T_PROJECT_IN, "model.decoder.project_in.weight"},
	{LM_T_FINAL_LN_W, "model.decoder.final_layer_norm.weight"},
	{LM_T_FINAL_LN_B, "model.decoder.final_layer_norm.bias"},
	{LM_T_PROJECT_OUT, "model.decoder.project_out.weight"},
	{LM_T_LM_HEAD, "lm_head.weight"},
};

int lm_opt_is_linear(enum lm_opt_kind k)
{
	return k == LM_T_Q_W || k == LM_T_K_W || k == LM_T_V_W || k == LM_T_O_W || k == LM_T_FC1_W ||
	       k == LM_T_FC2_W;
}

int lm_opt_parse_name(const char *name, enum lm_opt_kind *kind, int *layer)
{
	const char *pre = "model.decoder.layers.";
	for (size_t i = 0; i < sizeof global_names / sizeof *global_names; i++)
		if (!strcmp(name, global_names[i].name)) {
			*kind = global_names[i].kind, *layer = -1;
			return 0;
		}
	if (strncmp(name, pre, strlen(pre)))
		return -1;
	name += strlen(pre);
	if (*name < '0' || *name > '9' || (name[0] == '0' && name[1] != '.'))
		return -1;
	char *end;
	long l = strtol(name, &end, 10);
	if (*end != '.' || l < 0 || l > 100000)
		return -1;
	for (size_t i = 0; i < sizeof layer_names / sizeof *layer_names; i++)
		if (!strcmp(end + 1, layer_names[i].suffix)) {
			*kind = layer_names[i].kind, *layer = (int)l;
			return 0;
		}
	return -1;
}

int lm_opt_canonical_name(const char *key, char *out, size_t outsz)
{
	enum lm_opt_kind k;
	int l, n;
	if (!strncmp(key, "module.", 7))
		key += 7;
	if (!strncmp(key, "decoder.", 8)) /* legacy facebook/opt-* files: no "model." prefix */
		n = snprintf(out, outsz, "model.%s", key);
	else
		n = snprintf(out, outsz, "%s", key);
	if (n < 0 || (size_t)n >= outsz)
		return -1;
	return lm_opt_parse_name(out, &k, &l);
}

struct lm_opt_tensor *lm_opt_tensors(const struct lm_opt_config *c, size_t *n)
{
	size_t cap = 8 + (size_t)c->num_layers * 16, k = 0;
	struct lm_opt_tensor *t = xcalloc(cap, sizeof *t);
	const int64_t C = c->hidden_size, E = c->word_embed_proj_dim, F = c->ffn_dim;

#define ADD(kd, ly, nd, s0, s1) do { \
	t[k].kind = (kd), t[k].layer = (ly), t[k].ndim = (nd), t[k].shape[0] = (s0), t[k].shape[1] = (s1); \
	k++; } while (0)
	ADD(LM_T_EMBED_TOKENS, -1, 2, c->vocab_size, E);
	ADD(LM_T_EMBED_POS, -1, 2, c->max_positions + LM_OPT_POS_OFFSET, C);
	if (E != C)
		ADD(LM_T_PROJECT_IN, -1, 2, C, E);
	for (int l = 0; l < c->num_layers; l++) {
		for (size_t i = 0; i < sizeof layer_names / sizeof *layer_names; i++) {
			enum lm_opt_kind kd = layer_names[i].kind;
			int is_bias = kd == LM_T_Q_B || kd == LM_T_K_B || kd == LM_T_V_B || kd == LM_T_O_B ||
			              kd == LM_T_FC1_B || kd == LM_T_FC2_B;
			if (is_bias && !c->enable_bias)
				continue;
			int64_t rows = (kd == LM_T_FC1_W || kd == LM_T_FC1_B) ? F : C;
			int64_t cols = kd == LM_T_FC2_W ? F : C;
			if (lm_opt_is_linear(kd))
				ADD(kd, l, 2, rows, cols);
			else
				ADD(kd, l, 1, rows, 0);
			snprintf(t[k - 1].name, sizeof t[k - 1].name, "model.decoder.layers.%d.%s", l,
			         layer_names[i].suffix);
		}
	}
	if (c->final_ln) {
		ADD(LM_T_FINAL_LN_W, -1, 1, C, 0);
		ADD(LM_T_FINAL_LN_B, -1, 1, C, 0);
	}
	if (E != C)
		ADD(LM_T_PROJECT_OUT, -1, 2, E, C);
	if (!c->tied)
		ADD(LM_T_LM_HEAD, -1, 2, c->vocab_size, E);
#undef ADD
	for (size_t i = 0; i < k; i++)
		if (t[i].layer < 0)
			for (size_t j = 0; j < sizeof global_names / sizeof *global_names; j++)
				if (global_names[j].kind == t[i].kind)
					snprintf(t[i].name, sizeof t[i].name, "%s", global_names[j].name);
	*n = k;
	return t;
}
