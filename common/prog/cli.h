/* cli.h: what every lm-* program does the same way: inputs, outputs, shared flags.
 * Exit status everywhere: 0 success, 1 runtime error, 2 usage error. */
#ifndef LM_CLI_H
#define LM_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "stream.h"

struct lm_out {
	int fd;
	char *path;      /* where the temporary file is renamed to; NULL for stdout or a device */
	char *tmp;       /* temporary file renamed to path on success */
	const char *name;  /* for messages: the path as given, or "<stdout>" */
};

/* Open where a binary stream goes: path NULL or "-" is stdout. A regular file (or a new
 * one) is written to a temporary name beside it and renamed by lm_out_commit only when
 * everything succeeded, so a failed run never leaves a file that looks whole; a symbolic
 * link is followed, so its target is replaced and the link kept. A device, FIFO or socket
 * is written in place. The temporary file is removed when the program dies (die paths)
 * or is killed by SIGINT, SIGTERM or SIGHUP, which then ends it as the signal would.
 * Refuses a terminal unless force. Dies on failure. One temporary file at a time. */
void lm_out_open(struct lm_out *o, const char *path, int force);
/* close, check for write errors, rename into place; dies on failure */
void lm_out_commit(struct lm_out *o);
/* end the stream (lm_write_end), close the writer and commit o; dies on failure */
void lm_out_finish(struct lm_writer *w, struct lm_out *o);
/* remove the temporary file (the die paths do it through lm_set_die_hook) */
void lm_out_abort(struct lm_out *o);

/* cores this process may run on (its CPU affinity mask), at least 1 */
int lm_cores(void);
/* -j N for OpenBLAS and the thread pool: N <= 0 is every usable core, and N above them is
 * capped there (a note on stderr when verbose): more threads would not run any faster and
 * each OpenBLAS thread reserves its own buffers, which under ulimit -v ran out of memory */
void lm_cli_threads(int n, int verbose);

/* open an input stream: path NULL or "-" is stdin (named "<stdin>"); dies on failure */
struct lm_reader *lm_in_open(const char *path);

/* header + provenance, for filters: read the input header, write it with this tool appended */
void lm_pass_header(struct lm_reader *rd, struct lm_writer *w, struct lm_header *h, int argc, char **argv);

/* calibration ids for a layer-by-layer tool (lm-prune, lm-quant): *seqlen 0 becomes the
 * model's positions; a seqlen above them is a usage error (exit 2). A file with fewer than
 * *nsamples windows of *seqlen tokens is a runtime error naming how many it has (exit 1)
 * when --nsamples was given, or it has none; with the default, *nsamples becomes what the
 * file holds, with a warning. */
struct lm_model_stream;
int32_t *lm_cli_calib_ids(const char *path, const struct lm_model_stream *ms, long long *seqlen,
                          long long *nsamples, int given);

/* fflush + ferror + fclose on stdout for text tools; dies with a message on failure */
void lm_fshut_stdout(void);

/* The flags most programs share: -o FILE, -f, -j N, -v, -q, --no-verify. A program keeps
 * them in one of these (initialized with LM_CLI_FLAGS_INIT: verifying is the default) and
 * gives --no-verify the value LM_OPT_NO_VERIFY in its getopt_long table. */
struct lm_cli_flags {
	const char *out;  /* -o */
	int force, threads, verify, verbose, quiet;
};
#define LM_CLI_FLAGS_INIT {.verify = 1}
enum { LM_OPT_NO_VERIFY = 0x4000, LM_OPT_COMPUTE };  /* above any program's own long-option values */
/* their long options, with --help and --version, for a getopt_long table (getopt.h) */
/* -h and -V, which every program takes, for a long-option table of its own */
#define LM_CLI_HELPOPTS {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}

#define LM_CLI_LONGOPTS                                                                            \
	{"output", required_argument, 0, 'o'}, {"force", no_argument, 0, 'f'},                     \
	{"threads", required_argument, 0, 'j'}, {"no-verify", no_argument, 0, LM_OPT_NO_VERIFY},   \
	{"verbose", no_argument, 0, 'v'}, {"quiet", no_argument, 0, 'q'},                          \
	{"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}

/* Called from a getopt switch's default: with getopt's c: the shared flags above into *f
 * (NULL for a program that has none of them), -h prints the usage text and exits 0, -V prints
 * "NAME VERSION" and exits 0, anything else is lm_bad_option's usage error (exit 2). A
 * program that gives one of these letters its own meaning (lm-info -j) handles it in its
 * own case first; a letter not in its optstring never reaches here. */
void lm_cli_flag(int c, struct lm_cli_flags *f, const char *name, const char *usage);

/* --compute C, for the programs whose matrix products may run in bf16 (lm-eval, lm-prune,
 * lm-quant, lm-retrain, lm-unlearn, lm-embed) */
#define LM_CLI_COMPUTE_LONGOPT {"compute", required_argument, 0, LM_OPT_COMPUTE}
/* its value: 1 for bf16, 0 for f32, anything else a usage error (exit 2) in one line */
int lm_cli_compute_arg(const char *arg);
/* bf16: the forward's and the backward's products on the bf16 GEMM from now on (kernels.h
 * lm_set_compute), or, on a CPU without AVX512_BF16 or with LM_NO_BF16=1, a warning and
 * f32; f32: nothing. Called after a program's usage checks, so a usage error stays one
 * line. */
void lm_cli_compute(int bf16);

/* print the usage text to stdout (exit 0) or its first line to stderr (exit 2) */
_Noreturn void lm_usage(const char *text, int status);
/* the usage error for getopt's '?': names the bad option, then the synopsis; exit 2 */
_Noreturn void lm_bad_option(const char *text);

#endif
