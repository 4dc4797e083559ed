/* util.h: error idiom, checked allocation and size arithmetic shared by all of lmpipe.
 *
 * Library code never prints or exits: it records a message with lm_seterr() and
 * returns -1 (or NULL). Only cmd/ decides to exit, through die()/usage errors, so a
 * message reads "lm-<tool>: <input>: <reason>" with one prefix added in one place. */
#ifndef LM_UTIL_H
#define LM_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LM_VERSION "0.1.0"
#define LM_ALIGN 64 /* payload alignment: one cache line, enough for AVX-512 loads */

/* ---- errors: a thread-local message, like errno but with text ---- */
int lm_seterr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* prefix the current message: "<ctx>: <old message>" */
int lm_preerr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *lm_errmsg(void);

/* ---- program-level diagnostics (cmd/ only) ---- */
extern const char *argv0; /* "lm-prune"; set by lm_prog_init() */
extern int lm_argc;       /* the program's arguments, for usage messages */
extern char **lm_argv;
void lm_prog_init(int argc, char **argv);
void warnf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* print "argv0: <msg>" and exit(1); a message ending in ':' gets strerror(errno) */
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* same, exit status given */
_Noreturn void edie(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* die with the library's last message: "argv0: <input>: <lm_errmsg()>" */
_Noreturn void die_lm(const char *input);
/* The one thing a dying program still does before it goes (cli.c: remove the temporary
 * -o file). die, edie and die_lm flush stdio, run it and _exit: never exit(), whose
 * destructors include OpenBLAS's, which joins its worker threads, and a worker that ran
 * out of memory retries its buffer allocation forever (a hang under ulimit -v). */
void lm_set_die_hook(void (*fn)(void));
_Noreturn void lm_exit_now(int status);

/* ---- memory ---- */
/* each dies on failure with one line "argv0: out of memory ..." and exit 1, at once */
void *xmalloc(size_t n);   /* only for small, internal sizes */
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* 64-byte aligned, returns NULL and sets the error on failure (sizes from input) */
void *lm_alloc(size_t n);
void lm_free(void *p);
/* lm_alloc for a large buffer written soon after (the layer Hessians, their factors):
 * fresh, such a buffer is zero pages the kernel fills one 4 KiB fault at a time (n = 3072
 * floats squared: 9k faults, each a trap out of a VM's guest; ~10 % of a SparseGPT run
 * went to sys time), so from 4 MiB on it is 2 MiB aligned and asks for huge pages, where
 * the kernel gives them on request (transparent_hugepage=madvise): 512 times fewer
 * faults. Freed by lm_free. */
void *lm_alloc_huge(size_t bytes);

/* ---- overflow-checked size arithmetic: return -1 and set the error on overflow ---- */
int lm_mul(size_t a, size_t b, size_t *out);
int lm_add(size_t a, size_t b, size_t *out);

/* ---- whole-file I/O ---- */
/* read a whole file (at most max bytes) into a NUL-terminated buffer; NULL + error */
char *lm_read_file(const char *path, size_t max, size_t *len);
/* the same for a text: a NUL byte is an error as soon as it is read (/dev/zero, a binary
 * file given for a text, is refused at once, not read up to max) */
char *lm_read_text(const char *path, size_t max, size_t *len);
/* a check of a file as lm_read_file_checked reads it: buf [0, n) is the file so far,
 * [from, n) the bytes just read; once more at the end of the file with eof set. -1 +
 * error fails the read, 1 ends it there (the bytes so far are returned), 0 reads on. */
typedef int lm_read_check(void *ctx, const char *buf, size_t from, size_t n, int eof);
/* lm_read_file with check (NULL: none) after each read */
char *lm_read_file_checked(const char *path, size_t max, size_t *len, lm_read_check *check,
                           void *ctx);
/* read/write exactly n bytes; 0 on success, -1 + error (short read says "unexpected end") */
int lm_read_full(int fd, void *buf, size_t n);
int lm_write_full(int fd, const void *buf, size_t n);

/* ---- numbers from the command line ---- */
/* parse or exit 2 with "argv0: <what>: '<s>' is not a number in [lo, hi]" */
long long estrtoll(const char *s, long long lo, long long hi, const char *what);
double estrtod(const char *s, double lo, double hi, const char *what);

#endif
