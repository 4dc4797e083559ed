/* quantplan.h: lm-quant --mixed: CPTQuant's sensitivities (methods/cptquant.h) of the whole
 * loaded model, one bit-width per decoder layer from them, and the plan reported on stderr.
 * A program's driver, like layerwise: it prints progress and dies on errors (exit 1 runtime,
 * 2 usage). */
#ifndef LM_QUANTPLAN_H
#define LM_QUANTPLAN_H

#include "layerwise.h"

enum lm_qmixed { LM_QMIXED_NONE, LM_QMIXED_PMPQ, LM_QMIXED_CMPQ, LM_QMIXED_TDMPQ };
/* "none", "pmpq", "cmpq", "tdmpq": the names --mixed takes and the attrs record */
extern const char *const lm_qmixed_names[4];

#define LM_QPLAN_MAXLEVELS 8

struct lm_qplan {
	/* set by the program */
	enum lm_qmixed mixed;
	int group, sym;                      /* the packed types' group size and grid */
	double target_bits;                  /* 0: k-means */
	int levels[LM_QPLAN_MAXLEVELS], nlevels;
	/* the plan's */
	int *lbits;                          /* [L] bits per layer */
	double *sens;                        /* [L] sensitivities */
	double t0;                           /* tdmpq: start of the backward passes */
};

/* the index of s in names[n] (exact match), or -1: the value of an option that takes one
 * of a few names (--method, --mixed) */
int lm_name_index(const char *s, const char *const *names, int n);

/* --bits for --mixed, a list of levels ("16,8,4"; NULL: that default): each one 16 or a
 * packed type at q->group, none twice, at most LM_QPLAN_MAXLEVELS; usage errors */
void lm_qplan_levels(struct lm_qplan *q, const char *arg);

/* the whole model of d loaded (d->all_loaded), each layer's sensitivity on d's calibration
 * windows (d->ids), its bits (k-means, or --target-bits) over the selected matrices, and,
 * unless quiet, one line per layer and the totals on stderr */
void lm_qplan_run(struct lm_qplan *q, struct lm_layerwise *d);
void lm_qplan_free(struct lm_qplan *q);

#endif
