/* util.c: see util.h */
#define _POSIX_C_SOURCE 200809L
#include "util.h"

#include "blascore.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <getopt.h>
#include <malloc.h>
#include <unistd.h>

const char *argv0 = "lm";
int lm_argc;
char **lm_argv;

static _Thread_local char errbuf[1024];

/* Messages quote their inputs (a score field, a JSON key, a column name), and a control
 * byte there would reach the terminal as it is: an escape sequence, a second line. So
 * every byte below 0x20 and DEL is written \xNN; UTF-8 and other bytes are kept. */
static void escape_ctl(void)
{
	char tmp[sizeof errbuf];
	size_t o = 0;
	const unsigned char *p = (const unsigned char *)errbuf;
	while (*p && *p >= 0x20 && *p != 0x7f)
		p++;
	if (!*p)
		return;
	for (p = (const unsigned char *)errbuf; *p; p++) {
		int ctl = *p < 0x20 || *p == 0x7f;
		if (o + (ctl ? 4 : 1) >= sizeof tmp)
			break;
		if (ctl)
			o += (size_t)snprintf(tmp + o, 5, "\\x%02x", *p);
		else
			tmp[o++] = (char)*p;
	}
	tmp[o] = '\0';
	memcpy(errbuf, tmp, o + 1);
}

int lm_seterr(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	escape_ctl();
	return -1;
}

int lm_preerr(const char *fmt, ...)
{
	char old[sizeof errbuf], pre[512];
	va_list ap;
	memcpy(old, errbuf, sizeof old);
	va_start(ap, fmt);
	vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	/* built by hand: a truncated message is fine, a -Wformat-truncation warning is not */
	size_t a = strlen(pre), b = strlen(old);
	if (a > sizeof errbuf - 3)
		a = sizeof errbuf - 3;
	memcpy(errbuf, pre, a);
	memcpy(errbuf + a, ": ", 2);
	if (b > sizeof errbuf - 1 - a - 2)
		b = sizeof errbuf - 1 - a - 2;
	memcpy(errbuf + a + 2, old, b);
	errbuf[a + 2 + b] = '\0';
	escape_ctl();
	return -1;
}

const char *lm_errmsg(void) { return errbuf[0] ? errbuf : "unknown error"; }

void lm_prog_init(int argc, char **argv)
{
	lm_argc = argc, lm_argv = argv;
	/* first: it may execute the program again on OpenBLAS's AVX-512 core (blascore.c) */
	lm_blas_core_start(argv);
#ifdef M_MMAP_THRESHOLD
	/* glibc raises its mmap threshold each time a large block is freed, after which
	 * tensor payloads come from the heap and a one-tensor-at-a-time program's heap can
	 * grow layer after layer (seen: 1.6 GB for lm-info on OPT-1.3b). A fixed threshold
	 * keeps every payload in its own mapping, returned to the OS when freed. */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
	/* getopt's own message would make a second line: lm_usage says it in one */
	opterr = 0;
	if (argv && argv[0]) {
		const char *s = strrchr(argv[0], '/');
		argv0 = s ? s + 1 : argv[0];
	}
}

static void vwarn(const char *fmt, va_list ap)
{
	int saved = errno;
	size_t n = strlen(fmt);
	fprintf(stderr, "%s: ", argv0);
	vfprintf(stderr, fmt, ap);
	if (n && fmt[n - 1] == ':')
		fprintf(stderr, " %s", strerror(saved));
	fputc('\n', stderr);
}

void warnf(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: warning: ", argv0);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void (*die_hook)(void);

void lm_set_die_hook(void (*fn)(void)) { die_hook = fn; }

_Noreturn void lm_exit_now(int status)
{
	/* the hook first (a flush into a stalled pipe could block), then what exit() would
	 * have written (stdout, a --log file): nothing else needs to run */
	if (die_hook)
		die_hook();
	fflush(NULL);
	_exit(status);
}

_Noreturn void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
	lm_exit_now(1);
}

_Noreturn void edie(int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
	lm_exit_now(status);
}

_Noreturn void die_lm(const char *input)
{
	if (input)
		fprintf(stderr, "%s: %s: %s\n", argv0, input, lm_errmsg());
	else
		fprintf(stderr, "%s: %s\n", argv0, lm_errmsg());
	lm_exit_now(1);
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("out of memory (%zu bytes)", n);
	return p;
}

void *xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);
	if (!p)
		die("out of memory");
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		die("out of memory (%zu bytes)", n);
	return p;
}

char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d)
		die("out of memory");
	return d;
}

void *lm_alloc(size_t n)
{
	void *p = NULL;
	size_t r = (n + LM_ALIGN - 1) / LM_ALIGN * LM_ALIGN;
	if (r < n || posix_memalign(&p, LM_ALIGN, r ? r : LM_ALIGN) != 0) {
		lm_seterr("cannot allocate %zu bytes", n);
		return NULL;
	}
	return p;
}

void lm_free(void *p) { free(p); }

void *lm_alloc_huge(size_t bytes)
{
	const size_t huge = (size_t)2 << 20;
	void *p = NULL;
	if (bytes >= 2 * huge && bytes <= SIZE_MAX - huge) {
		size_t r = (bytes + huge - 1) / huge * huge;
		if (posix_memalign(&p, huge, r) == 0) {
#ifdef MADV_HUGEPAGE
			(void)madvise(p, r, MADV_HUGEPAGE);   /* only advice: failing is harmless */
#endif
			return p;
		}
	}
	return lm_alloc(bytes);
}

int lm_mul(size_t a, size_t b, size_t *out)
{
	if (__builtin_mul_overflow(a, b, out))
		return lm_seterr("size overflow (%zu x %zu)", a, b);
	return 0;
}

int lm_add(size_t a, size_t b, size_t *out)
{
	if (__builtin_add_overflow(a, b, out))
		return lm_seterr("size overflow (%zu + %zu)", a, b);
	return 0;
}

/* n bytes read from fd into rbuf, or written to it from wbuf (the other NULL), in
 * chunks of at most 1 GiB (Linux moves at most about 2 GiB per call), retried after a
 * signal */
static int full_io(int fd, void *rbuf, const void *wbuf, size_t n)
{
	size_t done = 0;
	while (done < n) {
		size_t k = n - done > (1u << 30) ? (1u << 30) : n - done;
		ssize_t r = wbuf ? write(fd, (const char *)wbuf + done, k)
		                 : read(fd, (char *)rbuf + done, k);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return lm_seterr("%s error: %s", wbuf ? "write" : "read", strerror(errno));
		}
		if (r == 0 && !wbuf)
			return lm_seterr("unexpected end of file");
		done += (size_t)r;
	}
	return 0;
}

int lm_read_full(int fd, void *buf, size_t n)
{
	return full_io(fd, buf, NULL, n);
}

int lm_write_full(int fd, const void *buf, size_t n)
{
	return full_io(fd, NULL, buf, n);
}

char *lm_read_file_checked(const char *path, size_t max, size_t *len, lm_read_check *check,
                           void *ctx)
{
	int fd = open(path, O_RDONLY);
	size_t cap = 1 << 16, n = 0;
	char *buf;
	if (fd < 0) {
		lm_seterr("%s", strerror(errno));
		return NULL;
	}
	buf = malloc(cap + 1);
	for (;;) {
		ssize_t r;
		if (!buf) {
			close(fd);
			lm_seterr("out of memory");
			return NULL;
		}
		if (n == cap) {
			char *nb;
			if (cap >= max) {
				lm_seterr("file larger than %zu bytes", max);
				goto fail;
			}
			cap = cap * 2 > max ? max : cap * 2;
			nb = realloc(buf, cap + 1);
			if (!nb)
				free(buf);
			buf = nb;
			continue;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			lm_seterr("%s", strerror(errno));
			goto fail;
		}
		n += (size_t)r;
		int c = check ? check(ctx, buf, n - (size_t)r, n, r == 0) : 0;
		if (c < 0)
			goto fail;
		if (c > 0 || r == 0)
			break;
	}
	close(fd);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
fail:
	free(buf);
	close(fd);
	return NULL;
}

/* lm_read_text's check: a NUL byte is an error as soon as it is read */
static int no_nul(void *ctx, const char *buf, size_t from, size_t n, int eof)
{
	(void)ctx, (void)eof;
	const char *nul = memchr(buf + from, 0, n - from);
	return nul ? lm_seterr("a NUL byte at offset %zu: not text", (size_t)(nul - buf)) : 0;
}

char *lm_read_file(const char *path, size_t max, size_t *len)
{
	return lm_read_file_checked(path, max, len, NULL, NULL);
}

char *lm_read_text(const char *path, size_t max, size_t *len)
{
	return lm_read_file_checked(path, max, len, no_nul, NULL);
}

long long estrtoll(const char *s, long long lo, long long hi, const char *what)
{
	char *end;
	long long v;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (!*s || *end || errno || v < lo || v > hi)
		edie(2, "%s: '%s' is not an integer in [%lld, %lld]", what, s, lo, hi);
	return v;
}

double estrtod(const char *s, double lo, double hi, const char *what)
{
	char *end;
	double v;
	errno = 0;
	v = strtod(s, &end);
	if (!*s || *end || errno || !isfinite(v) || v < lo || v > hi)
		edie(2, "%s: '%s' is not a number in [%g, %g]", what, s, lo, hi);
	return v;
}
