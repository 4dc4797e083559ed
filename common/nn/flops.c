/* flops.c: FLOPs of the pieces of one decoded token of OPT (see flops.h). */
#include "flops.h"

double lm_ee_flops_layer(const struct lm_opt_config *c, size_t keys)
{
	double C = (double)c->hidden_size, F = (double)c->ffn_dim;
	/* q, k, v, out_proj, fc1, fc2; scores and the weighted sum over the keys */
	return 2 * (4 * C * C + 2 * C * F) + 4 * (double)keys * C;
}

double lm_ee_flops_kv(const struct lm_opt_config *c)
{
	double C = (double)c->hidden_size;
	return 2 * 2 * C * C;
}

double lm_ee_flops_head(const struct lm_opt_config *c)
{
	double C = (double)c->hidden_size, E = (double)c->word_embed_proj_dim;
	return 2 * (double)c->vocab_size * E + (E != C ? 2 * E * C : 0);
}

double lm_ee_flops_embed(const struct lm_opt_config *c)
{
	return c->word_embed_proj_dim != c->hidden_size
	               ? 2.0 * (double)c->word_embed_proj_dim * (double)c->hidden_size : 0;
}
