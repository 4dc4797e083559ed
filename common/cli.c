/* cli.c: shared program plumbing (see cli.h) */
#include "calib.h"
#include "cli.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* the one output whose temporary file must go if the program dies */
static struct lm_out *pending_out;

static void cleanup(void)
{
	if (pending_out)
		lm_out_abort(pending_out);
}

void lm_out_open(struct lm_out *o, const char *path, int force)
{
	memset(o, 0, sizeof *o);
	if (!path || !strcmp(path, "-")) {
		o->fd = 1;
		o->name = "<stdout>";
		if (!force && isatty(1))
			edie(2, "refusing to write a binary stream to a terminal (redirect it, or use -f)");
		return;
	}
	size_t n = strlen(path) + 16;
	o->path = xstrdup(path);
	o->tmp = xmalloc(n);
	snprintf(o->tmp, n, "%s.tmpXXXXXX", path);
	o->fd = mkstemp(o->tmp);
	if (o->fd < 0)
		die("%s:", path);
	o->name = o->path;
	pending_out = o;
	atexit(cleanup);
}

void lm_out_abort(struct lm_out *o)
{
	if (o->tmp) {
		unlink(o->tmp);
		free(o->tmp);
		o->tmp = NULL;
	}
}

void lm_out_commit(struct lm_out *o)
{
	if (!o->tmp) {
		/* stdout: a failed close is a failed write (e.g. /dev/full, NFS) */
		if (close(o->fd) < 0 && errno != EINVAL)
			die("%s: write error:", o->name);
		return;
	}
	if (fsync(o->fd) < 0 && errno != EINVAL)
		die("%s:", o->name);
	if (close(o->fd) < 0)
		die("%s:", o->name);
	/* mkstemp makes 0600 files; give the user's umask its say */
	mode_t um = umask(0);
	umask(um);
	chmod(o->tmp, 0666 & ~um);
	if (rename(o->tmp, o->path) < 0)
		die("%s:", o->path);
	free(o->tmp);
	free(o->path);
	o->tmp = o->path = NULL;
	pending_out = NULL;
}

struct lm_reader *lm_in_open(const char *path)
{
	int fd = 0;
	if (path && strcmp(path, "-")) {
		fd = open(path, O_RDONLY);
		if (fd < 0)
			die("%s:", path);
		return lm_reader_open(fd, path);
	}
	return lm_reader_open(0, "<stdin>");
}

void lm_pass_header(struct lm_reader *rd, struct lm_writer *w, struct lm_header *h, int argc, char **argv)
{
	if (lm_read_header(rd, h) < 0)
		die_lm(lm_reader_name(rd));
	if (lm_write_header(w, h, argv0, argc, argv) < 0)
		die_lm(NULL);
}

void lm_fshut_stdout(void)
{
	if (fflush(stdout) == EOF || ferror(stdout) || fclose(stdout) == EOF)
		die("<stdout>: write error:");
}

_Noreturn void lm_usage(const char *text, int status)
{
	if (status == 0) {
		fputs(text, stdout);
		lm_fshut_stdout();
		exit(0);
	}
	/* one line: what was wrong, if getopt stopped on an option, and the synopsis */
	const char *nl = strchr(text, '\n');
	int len = nl ? (int)(nl - text) : (int)strlen(text);
	fprintf(stderr, "%s: %.*s (see --help)\n", argv0, len, text);
	exit(status);
}

_Noreturn void lm_bad_option(const char *text)
{
	const char *nl = strchr(text, '\n');
	int len = nl ? (int)(nl - text) : (int)strlen(text);
	fprintf(stderr, "%s: ", argv0);
	if (optopt)
		fprintf(stderr, "option -%c: unknown or missing its argument; ", optopt);
	else if (optind > 1 && optind - 1 < lm_argc)
		fprintf(stderr, "option '%s': unknown or missing its argument; ", lm_argv[optind - 1]);
	fprintf(stderr, "%.*s (see --help)\n", len, text);
	exit(2);
}

int32_t *lm_cli_calib_ids(const char *path, const struct lm_model_stream *ms, long long *seqlen,
                          long long nsamples)
{
	int32_t *ids;
	size_t n, T;
	if (!*seqlen)
		*seqlen = ms->h.cfg.max_positions;
	if (*seqlen > ms->h.cfg.max_positions)
		edie(2, "--seqlen %lld exceeds the model's %lld positions", *seqlen,
		     (long long)ms->h.cfg.max_positions);
	T = (size_t)*seqlen;
	if (lm_calib_load_ids(path, ms, &ids, &n) < 0)
		die_lm(path);
	if (n / T < (size_t)nsamples)
		die("%s: %zu tokens make %zu windows of %zu, fewer than the %lld asked for (--nsamples)",
		    path, n, n / T, T, nsamples);
	return ids;
}
