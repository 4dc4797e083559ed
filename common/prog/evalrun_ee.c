/* evalrun_ee.c: lm-eval's early-exit modes: --generate with an exit rule or sampling,
 * and --exit-sweep (the work is in common/methods/earlyexit.c and common/eval/eesweep.c) */
#include "evalrun.h"
#include "cli.h"
#include "earlyexit.h"
#include "eesweep.h"
#include "exitpolicy.h"
#include "modelio.h"
#include "report.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* the model, the exits and the policy early exit runs with; exit 2 for exits the model
 * lacks or a policy the stream lacks */
static void ee_setup(struct lm_model_stream *ms, struct lm_eval_opts *o, struct lm_model *m,
                     struct lm_policy *pol, int **ex)
{
	const int L = (int)ms->h.cfg.num_layers;
	size_t n = 0;
	int missing;
	*ex = NULL;
	if (o->exits && (!(*ex = lm_ee_parse_exits(o->exits, &n)) || lm_ee_check_exits(*ex, n, L) < 0))
		edie(2, "--exits: %s", lm_errmsg());
	if (lm_model_init(m, &ms->h.cfg) < 0 || lm_ms_load_all(ms, m) < 0)
		die_lm(lm_reader_name(ms->rd));
	if (o->eo.rule == LM_EE_POLICY) {
		if (lm_policy_load(pol, ms, &missing) < 0)
			edie(missing ? 2 : 1, "%s: %s", lm_reader_name(ms->rd), lm_errmsg());
		o->eo.policy = pol;
		return;
	}
	if (o->eo.rule == LM_EE_CONFIDENCE && !*ex && !(*ex = lm_ee_stream_exits(ms, &n))) {
		n = (size_t)L - 1; /* every layer but the last */
		*ex = xmalloc((n ? n : 1) * sizeof **ex);
		for (size_t i = 0; i < n; i++)
			(*ex)[i] = (int)i;
	}
	if (o->eo.rule == LM_EE_CONFIDENCE && lm_ee_check_exits(*ex, n, L) < 0)
		edie(2, "%s: the stream's exits: %s", lm_reader_name(ms->rd), lm_errmsg());
	o->eo.exits = *ex, o->eo.nexits = n;
}

static void print_cost(const struct lm_eval_opts *o, const struct lm_ee *ee, const struct lm_ee_cost *c, int L)
{
	double t = c->tokens ? (double)c->tokens : 1, lpt = c->layers / t;
	const int *ex = o->eo.rule == LM_EE_POLICY ? o->eo.policy->exits : o->eo.exits;
	size_t ne = o->eo.rule == LM_EE_POLICY ? o->eo.policy->nexits : o->eo.nexits;
	printf("early exit: %s, threshold %g, exits after layers", lm_ee_rule_name(o->eo.rule),
	       o->eo.threshold);
	for (size_t i = 0; i < ne; i++)
		printf("%s%d", i ? "," : " ", ex[i] + 1);
	printf(" of %d\nmean exit layer: %.3f\nlayers per token: %.3f (%.1f%% fewer), K/V-only "
	       "layers per token: %.3f\nFLOPs per token: %.4g\nms per token: %.3f\n", L,
	       c->exit_layer / t, lpt, 100 * (1 - lpt / L), c->kv_layers / t, c->flops / t,
	       1e3 * c->seconds / t);
	if (c->energy_ok)
		printf("energy per token: %.4g J (RAPL, CPU packages)\n", c->joules / t);
	else
		printf("energy: not readable (RAPL: %s)\n", ee->energy_why);
}

void lm_eval_ee_generate(struct lm_model_stream *ms, struct lm_eval_opts *o)
{
	struct lm_tokenizer *tk = lm_eval_tokenizer(ms, "--generate");
	struct lm_model m;
	struct lm_policy pol = {0};
	struct lm_ee ee;
	struct lm_ee_cost cost = {0};
	int32_t *body, *prompt, *out;
	size_t nb, tl;
	int *ex;

	if (lm_tokenize(tk, o->gen, strlen(o->gen), &body, &nb) < 0)
		die_lm("--generate");
	if ((long long)(nb + 1) + o->ntok > ms->h.cfg.max_positions)
		edie(2, "--generate: %zu prompt tokens + %lld new exceed the model's %lld positions", nb + 1,
		     o->ntok, (long long)ms->h.cfg.max_positions);
	prompt = xmalloc((nb + 1) * sizeof *prompt);
	prompt[0] = ms->h.cfg.bos;
	memcpy(prompt + 1, body, nb * sizeof *prompt);
	ee_setup(ms, o, &m, &pol, &ex);
	out = xmalloc(((size_t)o->ntok + 1) * sizeof *out);
	if (lm_ee_init(&ee, &m, nb + 1 + (size_t)o->ntok, o->ro.seed) < 0 ||
	    lm_ee_generate(&ee, &o->eo, prompt, nb + 1, (size_t)o->ntok, out, &cost) < 0)
		die_lm("generate");
	/* the prompt and its continuation, as plain --generate prints them */
	int32_t *seq = xmalloc((nb + (size_t)o->ntok + 1) * sizeof *seq);
	memcpy(seq, body, nb * sizeof *seq);
	memcpy(seq + nb, out, (size_t)o->ntok * sizeof *seq);
	char *text = lm_detokenize_known(tk, seq, nb + (size_t)o->ntok, -1, &tl);
	if (!text)
		die_lm("generate");
	if (o->json) {
		struct lm_ee_row row = {.rule = o->eo.rule, .threshold = o->eo.threshold, .cost = cost};
		json_t *jids = json_array(), *rows = lm_ee_rows_json(&row, 1, (int)m.cfg.num_layers);
		json_t *j = json_incref(json_array_get(rows, 0));
		json_decref(rows);
		for (size_t i = 0; i < nb + 1; i++) /* the whole sequence, as plain --generate */
			json_array_append_new(jids, json_integer(prompt[i]));
		for (size_t i = 0; i < (size_t)o->ntok; i++)
			json_array_append_new(jids, json_integer(out[i]));
		const char *quality[] = {"em_full", "rougeL_full", "chrf_full", "em_ref", "rougeL_ref", "chrf_ref"};
		for (size_t i = 0; i < sizeof quality / sizeof *quality; i++) /* a sweep's, not here */
			json_object_del(j, quality[i]);
		json_object_set_new(j, "prompt", json_string(o->gen));
		json_object_set_new(j, "ids", jids);
		json_object_set_new(j, "text", json_stringn(text, tl));
		if (!cost.energy_ok)
			json_object_set_new(j, "energy", json_sprintf("not readable (RAPL: %s)", ee.energy_why));
		lm_json_line(stdout, j);
	} else {
		fwrite(text, 1, tl, stdout);
		putchar('\n');
		if (o->eo.rule != LM_EE_NONE)
			print_cost(o, &ee, &cost, (int)m.cfg.num_layers);
	}
	free(text), free(seq), free(out), free(prompt), free(body), free(ex);
	lm_ee_free(&ee);
	lm_policy_free(&pol);
	lm_model_free(&m);
	lm_tokenizer_free(tk);
}

void lm_eval_ee_sweep(struct lm_model_stream *ms, struct lm_eval_opts *o)
{
	struct lm_tokenizer *tk = lm_eval_tokenizer(ms, "--exit-sweep");
	const struct lm_opt_config *cfg = &ms->h.cfg;
	size_t T = o->seqlen ? (size_t)o->seqlen : cfg->max_positions < 512 ? (size_t)cfg->max_positions : 512;
	size_t nnew = o->ntok_set ? (size_t)o->ntok : 15, n = 0, nthr, ns, skipped = 0;
	size_t fl = strlen(o->sweep);
	int jsonl = (fl > 6 && !strcmp(o->sweep + fl - 6, ".jsonl")) ||
	            (fl > 9 && !strcmp(o->sweep + fl - 9, ".jsonl.gz"));
	struct lm_ee_sample *smp;
	struct lm_model m;
	struct lm_policy pol = {0};
	struct lm_ee ee;
	int32_t *ids = NULL, *pbuf;
	int *ex;

	double *thr = lm_ee_parse_list(o->thresholds ? o->thresholds : "0.5,0.6,0.7,0.8,0.9,0.95,0.99", &nthr);
	if (!thr)
		edie(2, "--thresholds: %s", lm_errmsg());
	for (size_t i = 0; i < nthr; i++)
		if (thr[i] < 0 || thr[i] > 1)
			edie(2, "--thresholds: %g is outside [0, 1]", thr[i]);
	if (T > (size_t)cfg->max_positions)
		edie(2, "--seqlen %zu exceeds the model's %lld positions", T, (long long)cfg->max_positions);
	if (jsonl) { /* code problems (HumanEval): the prompt, then its canonical solution */
		if (lm_ee_samples_jsonl(o->sweep, tk, cfg->bos, nnew, (size_t)cfg->max_positions,
		                        (size_t)o->windows, &smp, &ns, &pbuf, &skipped) < 0)
			die_lm(o->sweep);
	} else {
		ids = lm_eval_ids(o->sweep, ms, &n);
		if (lm_ee_samples(ids, n, T, o->ctx_frac, nnew, cfg->bos, (size_t)o->windows, &smp, &ns,
		                  &pbuf) < 0)
			edie(2, "%s: %s", o->sweep, lm_errmsg());
	}
	ee_setup(ms, o, &m, &pol, &ex);
	size_t maxctx = 0;
	for (size_t i = 0; i < ns; i++)
		maxctx = smp[i].nctx > maxctx ? smp[i].nctx : maxctx;
	struct lm_ee_row *rows = xcalloc(nthr + 1, sizeof *rows);
	if (lm_ee_init(&ee, &m, maxctx + nnew, o->ro.seed) < 0 ||
	    lm_ee_sweep(&ee, tk, &o->eo, thr, nthr, smp, ns, nnew, o->ro.seed, rows, lm_eval_progress, o) < 0)
		die_lm("--exit-sweep");
	const int L = (int)m.cfg.num_layers;
	const int *ue = o->eo.rule == LM_EE_POLICY ? pol.exits : o->eo.exits;
	size_t une = o->eo.rule == LM_EE_POLICY ? pol.nexits : o->eo.nexits;
	char exs[256], energy[320];
	size_t k = 0;
	for (size_t i = 0; i < une && k < sizeof exs; i++)
		k += (size_t)snprintf(exs + k, sizeof exs - k, "%s%d", i ? "," : "", ue[i] + 1);
	if (rows[0].cost.energy_ok)
		snprintf(energy, sizeof energy, "RAPL, CPU packages");
	else
		snprintf(energy, sizeof energy, "not readable (RAPL: %s)", ee.energy_why);
	if (o->json) {
		json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:s, s:I, s:s, s:f, s:o}", "file",
		                      o->sweep, "windows", (json_int_t)ns, "seqlen", (json_int_t)T,
		                      "prompt_tokens", (json_int_t)maxctx, "new_tokens", (json_int_t)nnew,
		                      "rule", lm_ee_rule_name(o->eo.rule), "exits", exs, "layers", (json_int_t)L,
		                      "energy", energy, "temperature", o->eo.temperature, "rows",
		                      lm_ee_rows_json(rows, nthr + 1, L));
		if (jsonl)
			json_object_set_new(j, "left_out", json_integer((json_int_t)skipped));
		lm_json_line(stdout, j);
	} else {
		if (jsonl)
			printf("# early-exit sweep: %s, %zu problems (%zu left out: too long), prompts of up "
			       "to %zu tokens (BOS included), %zu new tokens, %s\n", o->sweep, ns, skipped,
			       maxctx, nnew, o->eo.temperature > 0 ? "sampled" : "greedy");
		else
			printf("# early-exit sweep: %s, %zu windows of %zu tokens, prompts of %zu tokens (BOS "
			       "included), %zu new tokens, %s\n", o->sweep, ns, T, maxctx, nnew,
			       o->eo.temperature > 0 ? "sampled" : "greedy");
		printf("# rule %s, exits after layers %s of %d; ROUGE-L "
		       "over tokens, chrF2 on text; vs the full model's output (_full) and the text (_ref)\n"
		       "# energy: %s\n", lm_ee_rule_name(o->eo.rule), exs, L, energy);
		lm_ee_print_tsv(stdout, rows, nthr + 1, L);
	}
	free(rows), free(thr), free(ids), free(smp), free(pbuf), free(ex);
	lm_ee_free(&ee);
	lm_policy_free(&pol);
	lm_model_free(&m);
	lm_tokenizer_free(tk);
}
