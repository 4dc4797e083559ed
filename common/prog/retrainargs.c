/* retrainargs.c: what lm-retrain's modes share: the ids of a data file and the attrs
 * "retrain" the output records. One module below retrainrun, retrainlayer and retrainexit,
 * so that none of them includes another that includes it back. */
#include "retrainargs.h"
#include "textids.h"
#include "util.h"

int32_t *lm_retrain_ids(const char *path, const struct lm_model_stream *ms, size_t *n)
{
	int32_t *ids;
	if (lm_ids_load(path, ms, &ids, n) < 0)
		die_lm(path);
	return ids;
}

/* ---- what the output records ---- */

void lm_retrain_mark(struct lm_model_stream *ms, const struct lm_train *tr,
                     const struct lm_retrain_args *o, int layer_only)
{
	for (size_t i = 0; i < ms->norder; i++) {
		const struct lm_opt_tensor *t = &ms->order[i];
		if (layer_only >= 0 && t->layer != layer_only)
			continue;
		if (!lm_train_changes(tr, t->kind, t->layer))
			continue;
		json_t *a = lm_ms_attrs(ms, t->kind, t->layer);
		json_t *r = json_pack("{s:s, s:I, s:f, s:I, s:I, s:I}", "method",
		                      o->reconstruct ? "reconstruct" : "end-to-end", "steps",
		                      (json_int_t)o->f.steps, "lr", o->f.lr, "batch",
		                      (json_int_t)o->f.batch, "seqlen", (json_int_t)o->f.seqlen, "seed",
		                      (json_int_t)o->f.seed);
		int adapted = 0;
		for (size_t k = 0; k < tr->npar; k++)
			if (tr->par[k].lora && tr->par[k].kind == t->kind && tr->par[k].layer == t->layer)
				adapted = 1;
		if (o->early_exit) { /* what --exit-policy and lm-eval find as the exits */
			json_t *ex = json_array(), *w = json_array();
			for (size_t k = 0; k < o->nexits; k++)
				json_array_append_new(ex, json_integer(o->exits[k] + 1));
			for (size_t k = 0; k <= o->nexits; k++)
				json_array_append_new(w, json_real(o->exit_w[k]));
			json_object_set_new(r, "exits", ex);
			json_object_set_new(r, "exit_weights", w);
		}
		if (adapted) {
			int head = !lm_opt_is_linear(t->kind);
			json_object_set_new(r, "adapter", json_string(lm_lora_name(head ? LM_LORA_STD : o->to.lora)));
			json_object_set_new(r, "rank", json_integer(o->to.rank));
			if (head || o->to.lora != LM_LORA_SCALE)
				json_object_set_new(r, "alpha", json_real(o->to.alpha));
		}
		json_object_set_new(a, "retrain", r);
	}
}
