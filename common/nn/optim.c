/* optim.c: Adam, AdamW and the learning-rate schedule (see optim.h) */
#include "optim.h"

#include <math.h>

void lm_adamw_f32_begin(struct lm_adamw_f32 *s, const struct lm_adamw *h, double lr, double t)
{
	s->b1 = (float)h->beta1, s->b2 = (float)h->beta2, s->eps = (float)h->eps;
	s->step = (float)(lr / (1.0 - pow(h->beta1, t)));
	s->bc2s = (float)sqrt(1.0 - pow(h->beta2, t));
	s->lr = lr, s->weight_decay = h->weight_decay;
}

void lm_adamw_f32_update(const struct lm_adamw_f32 *s, int decay, float *p, const float *g,
                         float *m, float *v, size_t n)
{
	float b1 = s->b1, b2 = s->b2, eps = s->eps, step = s->step, bc2s = s->bc2s;
	float keep = decay ? (float)(1.0 - s->lr * s->weight_decay) : 1.0f;
	for (size_t j = 0; j < n; j++) {
		m[j] = b1 * m[j] + (1.0f - b1) * g[j];
		v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
		p[j] = p[j] * keep - step * m[j] / (sqrtf(v[j]) / bc2s + eps);
	}
}

/* one body for both moment types: the arithmetic is double either way, each moment is
 * rounded to its own type when stored (so f32 moments stay bit for bit what they were) */
#define ADAM_STEP(MT)                                                                       \
	{                                                                                   \
		const double b1 = h->beta1, b2 = h->beta2, eps = h->eps;                    \
		double c1 = 1 - pow(b1, (double)t), c2 = 1 - pow(b2, (double)t);            \
		for (size_t i = 0; i < n; i++) {                                            \
			m[i] = (MT)(b1 * m[i] + (1 - b1) * g[i]);                           \
			v[i] = (MT)(b2 * v[i] + (1 - b2) * (double)g[i] * g[i]);            \
			par[i] -= (float)(lr * (m[i] / c1) / (sqrt(v[i] / c2) + eps));      \
		}                                                                           \
	}

void lm_adam_step(const struct lm_adamw *h, double lr, long t, float *par, const float *g,
                  float *m, float *v, size_t n)
ADAM_STEP(float)

void lm_adam_step_f64(const struct lm_adamw *h, double lr, long t, float *par, const float *g,
                      double *m, double *v, size_t n)
ADAM_STEP(double)

double lm_lr_at(long step, long total, long warmup, double peak, int cosine)
{
	if (step < warmup)
		return peak * (double)step / (double)(warmup > 0 ? warmup : 1);
	if (total <= warmup)
		return peak;
	double prog = (double)(step - warmup) / (double)(total - warmup);
	if (prog > 1)
		prog = 1;
	if (cosine)
		return peak * 0.5 * (1.0 + cos(M_PI * prog));
	return peak * (1.0 - prog);
}
