/* optim.h: Adam and AdamW, the one optimizer the trainers step with, and the learning-rate
 * schedule (warmup, then linear or cosine decay) */
#ifndef LM_OPTIM_H
#define LM_OPTIM_H

#include <stddef.h>

struct lm_adamw {
	double beta1, beta2, eps, weight_decay;  /* decay: matrices and LoRA factors only */
};

/* One AdamW step in f32 arithmetic (torch.optim.AdamW: bias-corrected moments, decoupled
 * weight decay): its constants for step t (1-based) at learning rate lr, then the update of
 * each tensor (decay: weight decay applies to it) */
struct lm_adamw_f32 {
	float b1, b2, eps, step, bc2s;
	double lr, weight_decay;
};
void lm_adamw_f32_begin(struct lm_adamw_f32 *s, const struct lm_adamw *h, double lr, double t);
void lm_adamw_f32_update(const struct lm_adamw_f32 *s, int decay, float *p, const float *g,
                         float *m, float *v, size_t n);

/* One Adam step (no weight decay) in double arithmetic on n f32 values par with gradient g,
 * step t (1-based): moments m, v kept in f32 (stable-baselines3's policy) or in f64 */
void lm_adam_step(const struct lm_adamw *h, double lr, long t, float *par, const float *g,
                  float *m, float *v, size_t n);
void lm_adam_step_f64(const struct lm_adamw *h, double lr, long t, float *par, const float *g,
                      double *m, double *v, size_t n);

/* learning rate at (0-based) step of total with warmup steps: linear 0 -> peak over the
 * warmup (transformers' get_*_schedule_with_warmup: 0 at step 0), then linear or cosine
 * decay to 0 at total */
double lm_lr_at(long step, long total, long warmup, double peak, int cosine);

#endif
