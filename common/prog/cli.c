/* cli.c: shared program plumbing (see cli.h) */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "textids.h"
#include "cli.h"
#include "kernels.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The temporary file of the -o output being written, removed if the program dies (die
 * paths, through the die hook) or is killed by SIGINT, SIGTERM or SIGHUP. Its name lives
 * in a static buffer so the signal handler touches no heap: unlink is async-signal-safe. */
static char pending_tmp[PATH_MAX];
static volatile sig_atomic_t have_pending;

static void remove_pending(void)
{
	if (have_pending) {
		have_pending = 0;
		unlink(pending_tmp);
	}
}

/* SA_RESETHAND put the default action back and the signal stays blocked in here: raised
 * again, it kills the process once this returns, and the exit status says by what */
static void on_signal(int sig)
{
	int saved = errno;
	remove_pending();
	raise(sig);
	errno = saved;
}

static void catch_signals(void)
{
	static int done;
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	if (done)
		return;
	done = 1;
	lm_set_die_hook(remove_pending);
	atexit(remove_pending);
	for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
		struct sigaction sa, old;
		/* a signal the caller ignores (nohup, a background job's SIGINT) stays ignored */
		if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
			continue;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_signal;
		sa.sa_flags = SA_RESETHAND;
		sigemptyset(&sa.sa_mask);
		sigaction(sigs[i], &sa, NULL);
	}
	/* past ulimit -f a write fails with EFBIG, reported as a write error with the temporary
	 * file removed, instead of SIGXFSZ killing the program and leaving that file behind */
	signal(SIGXFSZ, SIG_IGN);
}

/* The path a rename must replace for `path` to be written: the end of its chain of symbolic
 * links (the links stay and point at the new file), or path itself. Only the last component
 * matters, so a dangling link is followed too, as the shell's > would. */
static char *link_target(const char *path)
{
	char *p = xstrdup(path);
	for (int hops = 0; hops < 40; hops++) {
		struct stat st;
		char buf[PATH_MAX];
		ssize_t k;
		if (lstat(p, &st) < 0 || !S_ISLNK(st.st_mode))
			return p;
		if ((k = readlink(p, buf, sizeof buf - 1)) < 0)
			die("%s:", path);
		buf[k] = '\0';
		const char *slash = strrchr(p, '/');
		if (buf[0] != '/' && slash) {
			/* relative to the link's own folder */
			size_t dl = (size_t)(slash - p) + 1, n = dl + (size_t)k + 1;
			char *q = xmalloc(n);
			memcpy(q, p, dl);
			memcpy(q + dl, buf, (size_t)k + 1);
			free(p);
			p = q;
		} else {
			free(p);
			p = xstrdup(buf);
		}
	}
	errno = ELOOP;
	die("%s:", path);
}

void lm_out_open(struct lm_out *o, const char *path, int force)
{
	struct stat st;
	memset(o, 0, sizeof *o);
	if (!path || !strcmp(path, "-")) {
		o->fd = 1;
		o->name = "<stdout>";
		if (!force && isatty(1))
			edie(2, "refusing to write a binary stream to a terminal (redirect it, or use -f)");
		return;
	}
	o->name = path;
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		/* a device, FIFO or socket is written in place, as the shell's > would: a rename
		 * would put a regular file where /dev/null or a reader's FIFO was */
		o->fd = open(path, O_WRONLY | O_CLOEXEC);
		if (o->fd < 0)
			die("%s:", path);
		if (!force && isatty(o->fd))
			edie(2, "%s: refusing to write a binary stream to a terminal (use -f)", path);
		return;
	}
	o->path = link_target(path);
	size_t n = strlen(o->path) + 16;
	if (n > sizeof pending_tmp) {
		errno = ENAMETOOLONG;
		die("%s:", path);
	}
	catch_signals();
	o->tmp = xmalloc(n);
	snprintf(o->tmp, n, "%s.tmpXXXXXX", o->path);
	o->fd = mkstemp(o->tmp);
	if (o->fd < 0) /* a writable file in a read-only folder cannot be replaced whole */
		die("%s: cannot create a temporary file in its folder:", path);
	memcpy(pending_tmp, o->tmp, n);
	have_pending = 1;
	/* mkstemp makes 0600 files: a replaced file keeps its mode, a new one gets the umask's */
	mode_t mode;
	if (stat(o->path, &st) == 0)
		mode = st.st_mode & 07777;
	else {
		mode_t um = umask(0);
		umask(um);
		mode = 0666 & ~um;
	}
	if (fchmod(o->fd, mode) < 0)
		die("%s:", path);
}

void lm_out_finish(struct lm_writer *w, struct lm_out *o)
{
	if (lm_write_end(w) < 0 || lm_writer_close(w) < 0)
		die_lm(NULL);
	lm_out_commit(o);
}

void lm_out_abort(struct lm_out *o)
{
	if (o->tmp) {
		remove_pending();
		free(o->tmp);
		o->tmp = NULL;
	}
}

void lm_out_commit(struct lm_out *o)
{
	if (!o->tmp) {
		/* stdout or a device: a failed close is a failed write (e.g. /dev/full, NFS) */
		if (close(o->fd) < 0 && errno != EINVAL)
			die("%s: write error:", o->name);
		return;
	}
	if (fsync(o->fd) < 0 && errno != EINVAL)
		die("%s:", o->name);
	if (close(o->fd) < 0)
		die("%s: write error:", o->name);
	if (rename(o->tmp, o->path) < 0)
		die("%s:", o->name);
	have_pending = 0;
	free(o->tmp);
	free(o->path);
	o->tmp = o->path = NULL;
}

int lm_cores(void)
{
	cpu_set_t set;
	long c;
	/* taskset, cgroup cpusets and container runtimes narrow this below the online count */
	if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	c = sysconf(_SC_NPROCESSORS_ONLN);
	return c > 0 ? (int)c : 1;
}

void lm_cli_threads(int n, int verbose)
{
	int cores = lm_cores();
	if (n <= 0)
		n = cores;
	else if (n > cores) {
		if (verbose)
			fprintf(stderr, "%s: -j %d: %d usable cores, running %d threads\n", argv0, n,
			        cores, cores);
		n = cores;
	}
	lm_set_threads(n);
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

void lm_cli_flag(int c, struct lm_cli_flags *f, const char *name, const char *usage)
{
	if (f) {
		switch (c) {
		case 'o': f->out = optarg; return;
		case 'f': f->force = 1; return;
		case 'j': f->threads = (int)estrtoll(optarg, 0, 1024, "--threads"); return;
		case LM_OPT_NO_VERIFY: f->verify = 0; return;
		case 'v': f->verbose = 1; return;
		case 'q': f->quiet = 1; return;
		}
	}
	if (c == 'h')
		lm_usage(usage, 0);
	if (c == 'V') {
		printf("%s %s\n", name, LM_VERSION);
		exit(0);
	}
	lm_bad_option(usage);
}

int lm_cli_compute_arg(const char *arg)
{
	if (!strcmp(arg, "bf16"))
		return 1;
	if (strcmp(arg, "f32"))
		edie(2, "--compute: '%s' is not f32 or bf16", arg);
	return 0;
}

void lm_cli_compute(int bf16)
{
	if (!bf16)
		return;
	lm_set_compute(LM_COMPUTE_BF16);
	if (lm_compute_used() != LM_COMPUTE_BF16)
		warnf("--compute bf16: this CPU has no AVX512_BF16 (or LM_NO_BF16=1 is set): computing in f32");
}

int32_t *lm_cli_calib_ids(const char *path, const struct lm_model_stream *ms, long long *seqlen,
                          long long *nsamples, int given)
{
	int32_t *ids;
	size_t n, T, have;
	if (!*seqlen)
		*seqlen = ms->h.cfg.max_positions;
	if (*seqlen > ms->h.cfg.max_positions)
		edie(2, "--seqlen %lld exceeds the model's %lld positions", *seqlen,
		     (long long)ms->h.cfg.max_positions);
	T = (size_t)*seqlen;
	if (lm_ids_load(path, ms, &ids, &n) < 0)
		die_lm(path);
	have = n / T;
	if (have >= (size_t)*nsamples)
		return ids;
	/* the default is a ceiling, not a demand: the README's own calibration file holds
	 * 56 windows of 512; a number the user asked for is kept to */
	if (have == 0)
		die("%s: %zu tokens make no window of %zu (--seqlen)", path, n, T);
	if (given)
		die("%s: %zu tokens make %zu windows of %zu, fewer than the %lld asked for (--nsamples)",
		    path, n, have, T, *nsamples);
	warnf("%s: %zu tokens make %zu windows of %zu: calibrating on %zu, not the default %lld "
	      "(--nsamples)", path, n, have, T, have, *nsamples);
	*nsamples = (long long)have;
	return ids;
}
