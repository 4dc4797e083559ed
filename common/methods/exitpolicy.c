/* exitpolicy.c: see exitpolicy.h */
#include "exitpolicy.h"
#include "optim.h"
#include "rng.h"
#include "util.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the MLP ---- */

size_t lm_mlp_size(size_t in, size_t hid, size_t out)
{
	return hid * in + hid + hid * hid + hid + out * hid + out;
}

void lm_mlp_point(struct lm_mlp *m, float *base, size_t in, size_t hid, size_t out)
{
	m->in = in, m->hid = hid, m->out = out;
	m->w1 = base, base += hid * in;
	m->b1 = base, base += hid;
	m->w2 = base, base += hid * hid;
	m->b2 = base, base += hid;
	m->w3 = base, base += out * hid;
	m->b3 = base;
}

/* Y [N,out] = X [N,in] W^T + b */
static void linear(float *Y, const float *X, const float *W, const float *b, size_t N, size_t out,
                   size_t in)
{
	for (size_t i = 0; i < N; i++)
		memcpy(Y + i * out, b, out * sizeof *Y);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)out, (int)in, 1.0f, X,
	            (int)in, W, (int)in, 1.0f, Y, (int)out);
}

static void tanh_inplace(float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = tanhf(x[i]);
}

void lm_mlp_forward(const struct lm_mlp *m, const float *X, size_t N, float *H1, float *H2,
                    float *Y)
{
	linear(H1, X, m->w1, m->b1, N, m->hid, m->in);
	tanh_inplace(H1, N * m->hid);
	linear(H2, H1, m->w2, m->b2, N, m->hid, m->hid);
	tanh_inplace(H2, N * m->hid);
	linear(Y, H2, m->w3, m->b3, N, m->out, m->hid);
}

/* dW [out,in] += dY^T X, db += column sums of dY */
static void linear_backward(float *dW, float *db, const float *dY, const float *X, size_t N,
                            size_t out, size_t in)
{
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in, (int)N, 1.0f, dY,
	            (int)out, X, (int)in, 1.0f, dW, (int)in);
	for (size_t i = 0; i < N; i++)
		for (size_t o = 0; o < out; o++)
			db[o] += dY[i * out + o];
}

/* dX [N,in] = dY W, then through tanh whose output is H */
static void back_through(float *dX, const float *dY, const float *W, const float *H, size_t N,
                         size_t out, size_t in)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)in, (int)out, 1.0f, dY,
	            (int)out, W, (int)in, 0.0f, dX, (int)in);
	for (size_t i = 0; i < N * in; i++)
		dX[i] *= 1.0f - H[i] * H[i];
}

void lm_mlp_backward(const struct lm_mlp *m, struct lm_mlp *g, const float *X, const float *H1,
                     const float *H2, const float *dY, size_t N, float *dH1, float *dH2)
{
	linear_backward(g->w3, g->b3, dY, H2, N, m->out, m->hid);
	back_through(dH2, dY, m->w3, H2, N, m->out, m->hid);
	linear_backward(g->w2, g->b2, dH2, H1, N, m->hid, m->hid);
	back_through(dH1, dH2, m->w2, H1, N, m->hid, m->hid);
	linear_backward(g->w1, g->b1, dH1, X, N, m->hid, m->in);
}

/* torch.nn.init.orthogonal_: rows (or columns, whichever are fewer) orthonormal, times
 * gain; Gram-Schmidt on Gaussian vectors */
static void orthogonal(float *w, size_t rows, size_t cols, double gain, struct lm_rng *r)
{
	size_t nv = rows <= cols ? rows : cols, len = rows <= cols ? cols : rows;
	double *a = xmalloc(nv * len * sizeof *a);
	for (size_t i = 0; i < nv * len; i++)
		a[i] = lm_rng_normal(r);
	for (size_t v = 0; v < nv; v++) {
		double *x = a + v * len, nrm = 0;
		for (size_t u = 0; u < v; u++) {
			const double *y = a + u * len;
			double d = 0;
			for (size_t k = 0; k < len; k++)
				d += x[k] * y[k];
			for (size_t k = 0; k < len; k++)
				x[k] -= d * y[k];
		}
		for (size_t k = 0; k < len; k++)
			nrm += x[k] * x[k];
		nrm = sqrt(nrm);
		for (size_t k = 0; k < len; k++)
			x[k] /= nrm;
	}
	for (size_t v = 0; v < nv; v++)
		for (size_t k = 0; k < len; k++) {
			float val = (float)(gain * a[v * len + k]);
			if (rows <= cols)
				w[v * cols + k] = val;
			else
				w[k * cols + v] = val;
		}
	free(a);
}

/* ---- the policy ---- */

static int check_exits(const int *exits, size_t n, int L)
{
	if (n == 0)
		return lm_seterr("no candidate exits");
	for (size_t i = 0; i < n; i++) {
		if (exits[i] < 0 || exits[i] >= L - 1)
			return lm_seterr("exit after layer %d: the exits are layers 1..%d of %d (layer %d "
			                 "is the full model)", exits[i] + 1, L - 1, L, L);
		if (i && exits[i] <= exits[i - 1])
			return lm_seterr("exits must increase (%d after %d)", exits[i] + 1, exits[i - 1] + 1);
	}
	return 0;
}

static int policy_alloc(struct lm_policy *p, size_t C, size_t H, int L, const int *exits,
                        size_t nexits, int with_vf)
{
	memset(p, 0, sizeof *p);
	if (check_exits(exits, nexits, L) < 0)
		return -1;
	if (C == 0 || H == 0 || C > (1u << 24) || H > LM_POLICY_MAX_HIDDEN)
		return lm_seterr("policy sizes %zu x %zu out of range", C, H);
	p->C = C, p->H = H, p->L = L, p->nexits = nexits;
	p->exits = xmalloc(nexits * sizeof *p->exits);
	memcpy(p->exits, exits, nexits * sizeof *exits);
	p->npi = lm_mlp_size(C, H, 2);
	p->npar = p->npi + (with_vf ? lm_mlp_size(C, H, 1) : 0);
	float *mem = lm_alloc((2 * C + p->npar) * sizeof *mem);
	if (!mem) {
		free(p->exits);
		return lm_preerr("exit policy");
	}
	memset(mem, 0, (2 * C + p->npar) * sizeof *mem);
	p->mem = mem, p->mean = mem, p->scale = mem + C, p->par = mem + 2 * C;
	lm_mlp_point(&p->pi, p->par, C, H, 2);
	if (with_vf)
		lm_mlp_point(&p->vf, p->par + p->npi, C, H, 1);
	for (size_t c = 0; c < C; c++)
		p->scale[c] = 1.0f;
	return 0;
}

int lm_policy_init(struct lm_policy *p, size_t C, size_t H, int L, const int *exits,
                   size_t nexits, uint64_t seed)
{
	struct lm_rng r;
	if (policy_alloc(p, C, H, L, exits, nexits, 1) < 0)
		return -1;
	lm_rng_seed(&r, seed);
	/* stable-baselines3: hidden layers gain sqrt(2), action net 0.01, value net 1; biases 0 */
	struct lm_mlp *nets[2] = {&p->pi, &p->vf};
	for (int k = 0; k < 2; k++) {
		struct lm_mlp *m = nets[k];
		orthogonal(m->w1, H, C, sqrt(2.0), &r);
		orthogonal(m->w2, H, H, sqrt(2.0), &r);
		orthogonal(m->w3, m->out, H, k == 0 ? 0.01 : 1.0, &r);
	}
	return 0;
}

void lm_policy_free(struct lm_policy *p)
{
	lm_free(p->mem);
	free(p->exits);
	memset(p, 0, sizeof *p);
}

void lm_policy_fit_input(struct lm_policy *p, const float *X, size_t N)
{
	for (size_t c = 0; c < p->C; c++) {
		double s = 0, s2 = 0;
		for (size_t i = 0; i < N; i++)
			s += X[i * p->C + c];
		double mu = N ? s / (double)N : 0;
		for (size_t i = 0; i < N; i++) {
			double d = X[i * p->C + c] - mu;
			s2 += d * d;
		}
		double sd = N ? sqrt(s2 / (double)N) : 1;
		p->mean[c] = (float)mu;
		p->scale[c] = sd > 1e-6 ? (float)(1.0 / sd) : 0.0f;
	}
}

size_t lm_policy_work(const struct lm_policy *p)
{
	return p->C + 2 * p->H + 2;
}

static void standardise(const struct lm_policy *p, float *x, const float *state)
{
	for (size_t c = 0; c < p->C; c++)
		x[c] = (state[c] - p->mean[c]) * p->scale[c];
}

double lm_policy_p_exit(const struct lm_policy *p, const float *state, float *work)
{
	float *x = work, *h1 = x + p->C, *h2 = h1 + p->H, *y = h2 + p->H;
	standardise(p, x, state);
	lm_mlp_forward(&p->pi, x, 1, h1, h2, y);
	/* softmax over the two logits, written so that neither exponential overflows */
	return 1.0 / (1.0 + exp((double)y[0] - (double)y[1]));
}

int lm_policy_exits(double p_exit, double threshold)
{
	return p_exit > 0.5 && p_exit > threshold;
}

/* ---- in the stream ---- */

struct ptensor {
	const char *name;
	int which;  /* 0 mean, 1 scale, 2.. the MLP's tensors in lm_mlp_point order */
};

static const struct ptensor ptensors[] = {
	{LM_POLICY_PREFIX "in_mean", 0},    {LM_POLICY_PREFIX "in_scale", 1},
	{LM_POLICY_PREFIX "fc1.weight", 2}, {LM_POLICY_PREFIX "fc1.bias", 3},
	{LM_POLICY_PREFIX "fc2.weight", 4}, {LM_POLICY_PREFIX "fc2.bias", 5},
	{LM_POLICY_PREFIX "out.weight", 6}, {LM_POLICY_PREFIX "out.bias", 7},
};
#define NPT (sizeof ptensors / sizeof *ptensors)

/* data and shape of one of the policy's tensors */
static float *ptensor_at(const struct lm_policy *p, int which, int *ndim, int64_t shape[2])
{
	const struct lm_mlp *m = &p->pi;
	const int64_t C = (int64_t)p->C, H = (int64_t)p->H;
	float *d[] = {p->mean, p->scale, m->w1, m->b1, m->w2, m->b2, m->w3, m->b3};
	int64_t rows[] = {C, C, H, H, H, H, 2, 2}, cols[] = {0, 0, C, 0, H, 0, H, 0};
	*ndim = cols[which] ? 2 : 1;
	shape[0] = rows[which], shape[1] = cols[which];
	return d[which];
}

int lm_policy_save(struct lm_model_stream *ms, const struct lm_policy *p, json_t *info)
{
	lm_ms_drop_extras(ms, LM_POLICY_PREFIX);
	for (size_t i = 0; i < NPT; i++) {
		struct lm_record r = {0};
		int ndim;
		int64_t shape[2];
		const float *src = ptensor_at(p, ptensors[i].which, &ndim, shape);
		lm_record_tensor(&r, ptensors[i].name, LM_F32, ndim, shape);
		if (lm_record_alloc(&r) < 0) {
			lm_record_clear(&r);
			return lm_preerr("%s", ptensors[i].name);
		}
		memcpy(r.data, src, r.nbytes);
		if (!strcmp(ptensors[i].name, LM_POLICY_MAIN)) {
			json_t *ex = json_array();
			for (size_t k = 0; k < p->nexits; k++)
				json_array_append_new(ex, json_integer(p->exits[k] + 1));
			json_object_set_new(r.attrs, "exits", ex);
			json_object_set_new(r.attrs, "layers", json_integer(p->L));
			json_object_set_new(r.attrs, "hidden", json_integer((json_int_t)p->H));
			json_object_set_new(r.attrs, "state", json_string("final_layer_norm"));
			json_object_set_new(r.attrs, "actions", json_pack("[s,s]", "continue", "exit"));
			if (info)
				json_object_update(r.attrs, info);
		}
		if (lm_ms_set_extra(ms, &r) < 0)
			return -1;
	}
	return 0;
}

int *lm_exits_from_json(const json_t *ex, size_t *n)
{
	size_t i;
	json_t *v;
	*n = 0;
	if (!json_is_array(ex) || json_array_size(ex) == 0)
		return NULL;
	int *e = xmalloc(json_array_size(ex) * sizeof *e);
	json_array_foreach(ex, i, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1 << 20) {
			free(e);
			return NULL;
		}
		e[i] = (int)json_integer_value(v) - 1;
	}
	*n = json_array_size(ex);
	return e;
}

int *lm_policy_stream_exits(const struct lm_model_stream *ms, size_t *n)
{
	const struct lm_record *r = lm_ms_extra(ms, LM_POLICY_MAIN);
	return lm_exits_from_json(r ? json_object_get(r->attrs, "exits") : NULL, n);
}

int lm_policy_load(struct lm_policy *p, const struct lm_model_stream *ms, int *missing)
{
	const struct lm_record *main = lm_ms_extra(ms, LM_POLICY_MAIN);
	const int L = (int)ms->h.cfg.num_layers;
	size_t ne;
	int *ex;
	*missing = 0;
	memset(p, 0, sizeof *p);
	for (size_t i = 0; i < NPT; i++)
		if (!lm_ms_extra(ms, ptensors[i].name)) {
			*missing = 1;
			return lm_seterr("the stream has no exit policy (%s missing): train one with "
			                 "lm-retrain --exit-policy", ptensors[i].name);
		}
	if (main->ndim != 2 || main->shape[0] < 1 || main->shape[1] != ms->h.cfg.hidden_size)
		return lm_seterr("%s: shape does not fit the model's hidden size %lld", LM_POLICY_MAIN,
		                 (long long)ms->h.cfg.hidden_size);
	json_t *jl = json_object_get(main->attrs, "layers");
	if (!json_is_integer(jl) || json_integer_value(jl) != L)
		return lm_seterr("%s: the policy was made for %lld layers, the model has %d",
		                 LM_POLICY_MAIN, json_is_integer(jl) ? (long long)json_integer_value(jl) : -1LL, L);
	if (!(ex = lm_policy_stream_exits(ms, &ne)))
		return lm_seterr("%s: no valid \"exits\" attribute", LM_POLICY_MAIN);
	int rc = policy_alloc(p, (size_t)main->shape[1], (size_t)main->shape[0], L, ex, ne, 0);
	free(ex);
	if (rc < 0)
		return lm_preerr("%s", LM_POLICY_MAIN);
	for (size_t i = 0; i < NPT; i++) {
		const struct lm_record *r = lm_ms_extra(ms, ptensors[i].name);
		int ndim;
		int64_t shape[2];
		float *dst = ptensor_at(p, ptensors[i].which, &ndim, shape);
		if (r->dtype != LM_F32 || r->ndim != ndim || r->shape[0] != shape[0] ||
		    (ndim == 2 && r->shape[1] != shape[1])) {
			lm_policy_free(p);
			return lm_seterr("%s: f32 [%lld%s%lld] expected", ptensors[i].name, (long long)shape[0],
			                 ndim == 2 ? ", " : "", ndim == 2 ? (long long)shape[1] : 0LL);
		}
		memcpy(dst, r->data, r->nbytes);
		for (size_t k = 0; k < lm_record_numel(r); k++)
			if (!isfinite(dst[k])) {
				lm_policy_free(p);
				return lm_seterr("%s: not finite at %zu", ptensors[i].name, k);
			}
	}
	return 0;
}

/* ---- the reward ---- */

double lm_policy_reward(const int32_t *preds, int L, const int *exits, size_t nexits, size_t j,
                        int exit_action)
{
	const int l = exits[j], fin = L - 1;
	const int32_t want = preds[fin];
	int opt = fin, best = -1;
	double r;
	for (int i = 0; i < L; i++)
		if (preds[i] == want) {
			opt = i;
			break;
		}
	for (size_t k = 0; k < nexits && best < 0; k++)
		if (exits[k] >= opt)
			best = exits[k];
	if (exit_action) {
		if (l == best)
			r = 1;
		else if (preds[l] == want)
			r = -(double)(l - opt);
		else if (l < opt)
			r = -(double)(opt - l);
		else
			r = -0.1;
	} else if (l < opt) {
		r = 1;
	} else {
		int next = j + 1 < nexits ? exits[j + 1] : fin;
		r = -(double)(next - opt);
	}
	if (!exit_action && j + 1 == nexits && opt == fin)
		r = 1; /* only the full model is right: going on is right */
	return r / (double)(fin > 0 ? fin : 1);
}

/* ---- PPO ---- */

void lm_ppo_defaults(struct lm_ppo *o)
{
	/* GREEN-CODE's PPO settings (stable-baselines3's defaults for the rest) */
	*o = (struct lm_ppo){.total = 500000, .n_steps = 4096, .batch = 512, .epochs = 6,
	                     .lr = 5e-5, .gamma = 0.99, .lambda = 0.95, .clip = 0.2,
	                     .vf_coef = 0.5, .ent_coef = 0.0, .max_grad_norm = 0.5, .seed = 420};
}

/* where the environment is: episode e, token t, candidate exit j */
struct env {
	const struct lm_policy_episode *ep;
	size_t nep, e, t, j;
	const size_t *base;  /* first state row of each episode in the standardised pool */
	struct lm_rng *rng;
};

static void env_reset(struct env *v)
{
	do
		v->e = (size_t)lm_rng_below(v->rng, v->nep);
	while (v->ep[v->e].T == 0);
	v->t = 0, v->j = 0;
}

static size_t env_obs(const struct env *v, size_t nexits)
{
	return v->base[v->e] + v->t * nexits + v->j;
}

/* apply action a; returns the reward, *done when the episode ended (then reset) */
static double env_step(struct env *v, const struct lm_policy *p, int a, int *done)
{
	const struct lm_policy_episode *e = &v->ep[v->e];
	double r = lm_policy_reward(e->preds + v->t * (size_t)p->L, p->L, p->exits, p->nexits, v->j, a);
	*done = 0;
	if (a || v->j + 1 == p->nexits) {
		v->j = 0;
		if (++v->t == e->T) {
			*done = 1;
			env_reset(v);
		}
	} else {
		v->j++;
	}
	return r;
}

static void softmax2(const float *z, double *pr)
{
	double m = z[0] > z[1] ? z[0] : z[1], a = exp(z[0] - m), b = exp(z[1] - m);
	pr[0] = a / (a + b), pr[1] = b / (a + b);
}

struct ppo_buf {
	size_t *obs;
	int *act;
	uint8_t *done;
	double *rew, *val, *logp, *adv, *ret;
	size_t *perm;
	float *X, *H1, *H2, *Y, *V, *G1, *G2, *dY, *dV, *G1v, *G2v, *H1v, *H2v;
	float *grad, *m, *v;
};

static const struct lm_adamw adam = {0.9, 0.999, 1e-5, 0}; /* stable-baselines3: eps 1e-5 */

/* one minibatch: losses' gradients, clipped, one Adam step; adds to the report sums */
static void ppo_minibatch(struct lm_policy *p, const struct lm_ppo *o, struct ppo_buf *b,
                          const float *S, const size_t *idx, size_t B, double lr, long *t,
                          double sums[6])
{
	const size_t C = p->C, H = p->H;
	struct lm_mlp gpi, gvf;
	double am = 0, as = 0;
	for (size_t i = 0; i < B; i++) {
		memcpy(b->X + i * C, S + b->obs[idx[i]] * C, C * sizeof *b->X);
		am += b->adv[idx[i]];
	}
	am /= (double)B;
	for (size_t i = 0; i < B; i++)
		as += (b->adv[idx[i]] - am) * (b->adv[idx[i]] - am);
	as = B > 1 ? sqrt(as / (double)(B - 1)) : 1; /* torch's std: unbiased */
	lm_mlp_forward(&p->pi, b->X, B, b->H1, b->H2, b->Y);
	lm_mlp_forward(&p->vf, b->X, B, b->H1v, b->H2v, b->V);
	for (size_t i = 0; i < B; i++) {
		size_t k = idx[i];
		int a = b->act[k];
		double pr[2], A = B > 1 ? (b->adv[k] - am) / (as + 1e-8) : b->adv[k];
		softmax2(b->Y + 2 * i, pr);
		double lp = log(pr[a] > 1e-300 ? pr[a] : 1e-300), lr_ = lp - b->logp[k], ratio = exp(lr_);
		double ent = 0;
		for (int c = 0; c < 2; c++)
			if (pr[c] > 0)
				ent -= pr[c] * log(pr[c]);
		/* clipped surrogate: the unclipped term's gradient counts where the min takes it */
		int active = A >= 0 ? ratio <= 1 + o->clip : ratio >= 1 - o->clip;
		double dlogp = active ? -A * ratio / (double)B : 0;
		for (int c = 0; c < 2; c++) {
			double lpc = log(pr[c] > 1e-300 ? pr[c] : 1e-300);
			b->dY[2 * i + c] = (float)(dlogp * ((c == a) - pr[c]) +
			                           o->ent_coef / (double)B * pr[c] * (lpc + ent));
		}
		double dv = b->V[i] - b->ret[k];
		b->dV[i] = (float)(o->vf_coef * 2 * dv / (double)B);
		double clipped = ratio < 1 - o->clip ? 1 - o->clip : ratio > 1 + o->clip ? 1 + o->clip : ratio;
		sums[0] += -fmin(A * ratio, A * clipped) / (double)B;
		sums[1] += dv * dv / (double)B;
		sums[2] += ent / (double)B;
		sums[3] += ((ratio - 1) - lr_) / (double)B;
		sums[4] += (fabs(ratio - 1) > o->clip) / (double)B;
	}
	memset(b->grad, 0, p->npar * sizeof *b->grad);
	lm_mlp_point(&gpi, b->grad, C, H, 2);
	lm_mlp_point(&gvf, b->grad + p->npi, C, H, 1);
	lm_mlp_backward(&p->pi, &gpi, b->X, b->H1, b->H2, b->dY, B, b->G1, b->G2);
	lm_mlp_backward(&p->vf, &gvf, b->X, b->H1v, b->H2v, b->dV, B, b->G1v, b->G2v);
	double gn = 0;
	for (size_t i = 0; i < p->npar; i++)
		gn += (double)b->grad[i] * b->grad[i];
	gn = sqrt(gn);
	sums[5] += gn;
	if (gn > o->max_grad_norm) /* torch's clip_grad_norm_ */
		for (size_t i = 0; i < p->npar; i++)
			b->grad[i] *= (float)(o->max_grad_norm / (gn + 1e-6));
	lm_adam_step(&adam, lr, ++*t, p->par, b->grad, b->m, b->v, p->npar);
}

int lm_policy_train(struct lm_policy *p, const struct lm_policy_episode *ep, size_t nep,
                    const struct lm_ppo *o, lm_ppo_progress *cb, void *ctx)
{
	const size_t C = p->C, H = p->H, K = p->nexits, n = o->n_steps, MB = o->batch;
	size_t rows = 0;
	struct ppo_buf b = {0};
	struct lm_rng rng;
	struct env v = {ep, nep, 0, 0, 0, NULL, &rng};
	float *S;
	long done_steps = 0, adam_t = 0;

	if (!p->vf.w1)
		return lm_seterr("policy training: no value network");
	if (n == 0 || MB == 0 || o->epochs < 1 || o->total < 1)
		return lm_seterr("policy training: empty run");
	size_t *base = xmalloc(nep * sizeof *base);
	for (size_t e = 0; e < nep; e++)
		base[e] = rows, rows += ep[e].T * K;
	if (rows == 0) {
		free(base);
		return lm_seterr("policy training: the episodes have no tokens");
	}
	/* the standardisation from every state, then the standardised pool */
	S = lm_alloc(rows * C * sizeof *S);
	if (!S) {
		free(base);
		return lm_preerr("policy training states");
	}
	for (size_t e = 0; e < nep; e++)
		memcpy(S + base[e] * C, ep[e].states, ep[e].T * K * C * sizeof *S);
	lm_policy_fit_input(p, S, rows);
	for (size_t i = 0; i < rows; i++)
		standardise(p, S + i * C, S + i * C);

	size_t mb = MB < n ? MB : n;
	b.obs = xmalloc(n * sizeof *b.obs), b.act = xmalloc(n * sizeof *b.act);
	b.done = xmalloc(n), b.perm = xmalloc(n * sizeof *b.perm);
	b.rew = xmalloc(n * sizeof *b.rew), b.val = xmalloc(n * sizeof *b.val);
	b.logp = xmalloc(n * sizeof *b.logp), b.adv = xmalloc(n * sizeof *b.adv);
	b.ret = xmalloc(n * sizeof *b.ret);
	b.X = xmalloc(mb * C * sizeof(float));
	b.H1 = xmalloc(mb * H * sizeof(float)), b.H2 = xmalloc(mb * H * sizeof(float));
	b.H1v = xmalloc(mb * H * sizeof(float)), b.H2v = xmalloc(mb * H * sizeof(float));
	b.G1 = xmalloc(mb * H * sizeof(float)), b.G2 = xmalloc(mb * H * sizeof(float));
	b.G1v = xmalloc(mb * H * sizeof(float)), b.G2v = xmalloc(mb * H * sizeof(float));
	b.Y = xmalloc(mb * 2 * sizeof(float)), b.dY = xmalloc(mb * 2 * sizeof(float));
	b.V = xmalloc(mb * sizeof(float)), b.dV = xmalloc(mb * sizeof(float));
	b.grad = xcalloc(p->npar, sizeof(float));
	b.m = xcalloc(p->npar, sizeof(float)), b.v = xcalloc(p->npar, sizeof(float));

	lm_rng_seed(&rng, o->seed);
	v.base = base;
	env_reset(&v);
	while (done_steps < o->total) {
		struct lm_ppo_report rep = {0};
		double sums[6] = {0};
		size_t nupd = 0;
		/* a rollout with the current policy, actions sampled */
		for (size_t s = 0; s < n; s++) {
			size_t ob = env_obs(&v, K);
			float y[2], vv;
			double pr[2];
			lm_mlp_forward(&p->pi, S + ob * C, 1, b.H1, b.H2, y);
			lm_mlp_forward(&p->vf, S + ob * C, 1, b.H1v, b.H2v, &vv);
			softmax2(y, pr);
			int a = lm_rng_uniform(&rng) < pr[1];
			int dn;
			b.obs[s] = ob, b.act[s] = a, b.val[s] = vv;
			b.logp[s] = log(pr[a] > 1e-300 ? pr[a] : 1e-300);
			b.rew[s] = env_step(&v, p, a, &dn);
			b.done[s] = (uint8_t)dn;
			rep.reward += b.rew[s] / (double)n;
			rep.exit_rate += a / (double)n;
		}
		done_steps += (long)n;
		/* generalised advantage estimation, bootstrapped from the state the rollout ends in */
		{
			float y[1];
			lm_mlp_forward(&p->vf, S + env_obs(&v, K) * C, 1, b.H1v, b.H2v, y);
			double next = y[0], gae = 0;
			for (size_t s = n; s-- > 0;) {
				double nt = 1.0 - b.done[s];
				double delta = b.rew[s] + o->gamma * next * nt - b.val[s];
				gae = delta + o->gamma * o->lambda * nt * gae;
				b.adv[s] = gae, b.ret[s] = gae + b.val[s];
				next = b.val[s];
			}
		}
		/* stable-baselines3 sets the rate from the progress left after this rollout */
		double frac = 1.0 - (double)done_steps / (double)o->total;
		double lr = o->lr * (frac > 0 ? frac : 0);
		for (int ep_i = 0; ep_i < o->epochs; ep_i++) {
			for (size_t i = 0; i < n; i++)
				b.perm[i] = i;
			for (size_t i = n - 1; i > 0; i--) {
				size_t j = (size_t)lm_rng_below(&rng, i + 1), t = b.perm[i];
				b.perm[i] = b.perm[j], b.perm[j] = t;
			}
			for (size_t s0 = 0; s0 < n; s0 += mb, nupd++)
				ppo_minibatch(p, o, &b, S, b.perm + s0, n - s0 < mb ? n - s0 : mb, lr, &adam_t, sums);
		}
		rep.steps = done_steps, rep.total = o->total, rep.lr = lr;
		rep.pg_loss = sums[0] / (double)nupd, rep.v_loss = sums[1] / (double)nupd;
		rep.entropy = sums[2] / (double)nupd, rep.approx_kl = sums[3] / (double)nupd;
		rep.clip_frac = sums[4] / (double)nupd, rep.grad_norm = sums[5] / (double)nupd;
		if (cb)
			cb(ctx, &rep);
	}
	free(b.obs), free(b.act), free(b.done), free(b.perm), free(b.rew), free(b.val);
	free(b.logp), free(b.adv), free(b.ret), free(b.X), free(b.H1), free(b.H2), free(b.H1v);
	free(b.H2v), free(b.G1), free(b.G2), free(b.G1v), free(b.G2v), free(b.Y), free(b.dY);
	free(b.V), free(b.dV), free(b.grad), free(b.m), free(b.v);
	lm_free(S);
	free(base);
	for (size_t i = 0; i < p->npar; i++)
		if (!isfinite(p->par[i]))
			return lm_seterr("policy training diverged (a parameter is not finite)");
	return 0;
}

void lm_policy_score(const struct lm_policy *p, const struct lm_policy_episode *ep, size_t nep,
                     double thr, double *mean_layer, double *agree)
{
	float *w = xmalloc(lm_policy_work(p) * sizeof *w);
	double sl = 0, sa = 0, nt = 0;
	for (size_t e = 0; e < nep; e++)
		for (size_t t = 0; t < ep[e].T; t++) {
			const int32_t *pr = ep[e].preds + t * (size_t)p->L;
			int l = p->L - 1;
			for (size_t j = 0; j < p->nexits; j++) {
				const float *st = ep[e].states + (t * p->nexits + j) * p->C;
				if (lm_policy_exits(lm_policy_p_exit(p, st, w), thr)) {
					l = p->exits[j];
					break;
				}
			}
			sl += l + 1, sa += pr[l] == pr[p->L - 1], nt++;
		}
	free(w);
	*mean_layer = nt ? sl / nt : 0;
	*agree = nt ? sa / nt : 0;
}

double lm_policy_oracle(const struct lm_policy_episode *ep, size_t nep, const int *exits,
                        size_t nexits, int L)
{
	double sl = 0, nt = 0;
	for (size_t e = 0; e < nep; e++)
		for (size_t t = 0; t < ep[e].T; t++) {
			const int32_t *pr = ep[e].preds + t * (size_t)L;
			int l = L - 1;
			for (size_t j = 0; j < nexits; j++)
				if (pr[exits[j]] == pr[L - 1]) {
					l = exits[j];
					break;
				}
			sl += l + 1, nt++;
		}
	return nt ? sl / nt : 0;
}
