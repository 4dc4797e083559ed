/* layerwise.h: the layer-by-layer driver of lm-prune and lm-quant: the tensors --include and
 * --exclude choose, the model stream read, worked on and written one decoder layer at a time,
 * with the calibration activations walked through each layer when the method needs them.
 * A program's driver, like trainloop: it prints progress and dies on errors (exit 1 runtime,
 * 2 usage). The work on each tensor is the program's, through a callback. */
#ifndef LM_LAYERWISE_H
#define LM_LAYERWISE_H

#include <getopt.h>
#include <stdint.h>

#include "calib.h"
#include "cli.h"
#include "modelio.h"
#include "modelstream.h"

#define LM_LW_MAXGLOB 64

/* the calibration and selection options of a layer-by-layer program */
struct lm_lw_opts {
	const char *calib;                 /* -c FILE */
	long long nsamples, seqlen, blocksize;
	int nsamples_set;  /* --nsamples given: a short calibration file is an error */
	double damp;
	const char *incl[LM_LW_MAXGLOB], *excl[LM_LW_MAXGLOB];
	int nincl, nexcl;
	int bf16;          /* --compute bf16: the calibration forward on the bf16 GEMM */
};

/* getopt_long values of their long options, above any program's own and below LM_OPT_NO_VERIFY */
enum { LM_OPT_NSAMPLES = 0x3f00, LM_OPT_SEQLEN, LM_OPT_BLOCK, LM_OPT_DAMP, LM_OPT_INCL, LM_OPT_EXCL };
#define LM_LW_LONGOPTS                                                                             \
	{"calib", required_argument, 0, 'c'}, {"nsamples", required_argument, 0, LM_OPT_NSAMPLES}, \
	{"seqlen", required_argument, 0, LM_OPT_SEQLEN}, {"blocksize", required_argument, 0, LM_OPT_BLOCK}, \
	{"damp", required_argument, 0, LM_OPT_DAMP}, {"include", required_argument, 0, LM_OPT_INCL}, \
	{"exclude", required_argument, 0, LM_OPT_EXCL}, LM_CLI_COMPUTE_LONGOPT

/* one of those options (getopt's c, optarg) into *o: 1, or 0 for another option */
int lm_lw_option(int c, struct lm_lw_opts *o);

/* what the calibration pass gives the selected tensors of one input group of a layer */
struct lm_lw_group {
	const double *sumsq;        /* [cols] sums of x_j^2 (Wanda), or NULL */
	const float *U;             /* [cols x cols] Cholesky factor of the inverse Hessian, or NULL */
	const unsigned char *dead;  /* [cols] inputs that never fired */
	const int *perm;            /* act-order: U's column order, or NULL */
};

struct lm_layerwise {
	/* set by the program */
	const struct lm_cli_flags *cf;
	struct lm_lw_opts *lo;     /* seqlen and nsamples become what the calibration uses */
	int calibrated;            /* the calibration activations walk the decoder layers */
	int hessian;               /* calibrated groups get U and dead; 0: sumsq */
	int act_order;             /* U of the Hessian permuted by decreasing diagonal (perm) */
	void *ctx;                 /* the callbacks' first argument */
	/* a tensor the globs chose: 1 selects it, 0 leaves it; refuses what the method cannot do */
	int (*accept)(void *ctx, const struct lm_opt_tensor *t);
	/* a selected tensor just read: refuses what the method cannot take */
	void (*check)(void *ctx, size_t i);
	/* before decoder layer l is worked on: 0 works it without calibration; NULL: 1 */
	int (*layer)(void *ctx, int l);
	/* the work on selected tensor i (ms.order[i]); g NULL: without calibration */
	void (*tensor)(void *ctx, size_t i, const struct lm_lw_group *g);

	/* the driver's */
	struct lm_model_stream ms;
	struct lm_model m;
	unsigned char *sel;        /* [ms.norder] 1: a selected tensor */
	int all_loaded;            /* the whole model is in memory: parts are not read again */
	int32_t *ids;              /* calibration token ids, or NULL */
	struct lm_reader *rd;
	struct lm_writer *w;
	struct lm_out out;
};

/* threads, the output (opened first: a bad -o fails before any reading), the input stream
 * at path (NULL or "-": stdin) and its header */
void lm_lw_open(struct lm_layerwise *d, const char *path);
/* choose the tensors: the decoder layers' linear weights, or those --include names, less
 * those --exclude names, then d->accept; none is a usage error "no tensor to VERB" */
void lm_lw_select(struct lm_layerwise *d, const char *verb);
/* the calibration ids (-c), the output header and the model to fill */
void lm_lw_begin(struct lm_layerwise *d, int argc, char **argv);
/* the walk in stream order: each part read, worked on and written as soon as it is done */
void lm_lw_run(struct lm_layerwise *d);
/* flush and commit the output, free everything */
void lm_lw_end(struct lm_layerwise *d);

/* the steps of the walk, for a program that orders them itself (lm-prune --global) */
void lm_lw_load(struct lm_layerwise *d, int part);
void lm_lw_write(struct lm_layerwise *d, int part);
/* "layer done/total" with the ETA on stderr, unless -q or stderr is not a terminal */
void lm_lw_progress(const struct lm_layerwise *d, int done, int total, double t0);

#endif
