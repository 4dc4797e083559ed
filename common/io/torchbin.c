/* torchbin.c: PyTorch zip checkpoints (see torchbin.h).
 *
 * lm_tb_open makes one pass over the zip's records: it notes every name and size, reads the
 * small records (data.pkl, version, byteorder), then unpickles data.pkl and checks each
 * tensor against its storage record before any tensor byte is read. lm_tb_read then streams
 * exactly one tensor's bytes out of its storage record. */
#include "torchbin.h"
#include "pickle.h"
#include "util.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TB_MAX_RECORDS (1u << 20)
#define TB_MAX_SMALL   4096u        /* version, byteorder */
#define TB_CHUNK       ((size_t)1 << 30)

/* legacy torch.save: a bare pickle whose first value is LONG1 of 10 bytes, the magic number
 * 0x1950a86a20f9469cfc6c; after PROTO 2 (the default) it sits at byte 2, other protocols
 * may put a FRAME first, so it is looked for in the first bytes */
static const unsigned char tb_legacy_magic[] = {
	0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19
};

static int tb_is_legacy(const unsigned char *b, size_t n)
{
	if (n < 2 + sizeof tb_legacy_magic || b[0] != 0x80)
		return 0;
	for (size_t i = 2; i + sizeof tb_legacy_magic <= n && i < 16; i++)
		if (!memcmp(b + i, tb_legacy_magic, sizeof tb_legacy_magic))
			return 1;
	return 0;
}

/* look at the first bytes so that the usual wrong inputs get a message that says what they
 * are, instead of libarchive's "Unrecognized archive format" */
static int tb_sniff(const char *path)
{
	unsigned char b[512];
	size_t n = 0;
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return lm_seterr("%s", strerror(errno));
	while (n < sizeof b) {
		ssize_t r = read(fd, b + n, sizeof b - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			return lm_seterr("%s", strerror(e));
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (n >= 4 && !memcmp(b, "PK\3\4", 4))
		return 0;
	if (n >= 4 && !memcmp(b, "PK\5\6", 4))
		return lm_seterr("empty zip archive");
	/* the tar format is older still (torch < 0.4): "ustar" at 257 */
	if (tb_is_legacy(b, n) || (n >= 262 && !memcmp(b + 257, "ustar", 5)))
		return lm_seterr("legacy torch.save format is not supported; re-save with torch>=1.6");
	return lm_seterr("not a zip archive (torch.save files are zip archives since torch 1.6)");
}

static uint64_t tb_le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	while (n--)
		v = v << 8 | p[n];
	return v;
}

static int tb_pread(int fd, void *buf, size_t n, uint64_t off)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

/* The zip's names as the central directory stores them, with their lengths: libarchive
 * hands names out as C strings, so "archive/data/0\0evil" would pass for the storage
 * "archive/data/0". Refused here; any other damage is left to libarchive to report. */
static int tb_names_nul(const char *path)
{
	unsigned char tail[65557], *cd = NULL, z[56];
	struct stat st;
	uint64_t size, n, eocd = 0, cd_off, cd_size;
	int fd = open(path, O_RDONLY), found = 0, rc = 0;
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < 22)
		goto out;
	size = (uint64_t)st.st_size;
	n = size < sizeof tail ? size : sizeof tail;
	if (tb_pread(fd, tail, (size_t)n, size - n) < 0)
		goto out;
	for (uint64_t i = n - 22 + 1; i-- > 0;)
		if (!memcmp(tail + i, "PK\5\6", 4) && i + 22 + tb_le(tail + i + 20, 2) == n) {
			eocd = size - n + i, found = 1;
			break;
		}
	if (!found)
		goto out;
	memcpy(z, tail + (eocd - (size - n)), 22);
	cd_size = tb_le(z + 12, 4), cd_off = tb_le(z + 16, 4);
	if ((cd_off == 0xffffffffu || cd_size == 0xffffffffu) && eocd >= 20) {
		unsigned char loc[20];
		if (tb_pread(fd, loc, 20, eocd - 20) < 0 || memcmp(loc, "PK\6\7", 4) ||
		    tb_pread(fd, z, 56, tb_le(loc + 8, 8)) < 0 || memcmp(z, "PK\6\6", 4))
			goto out;
		cd_size = tb_le(z + 40, 8), cd_off = tb_le(z + 48, 8);
	}
	if (cd_size > ((uint64_t)256 << 20) || cd_off > size || cd_size > size - cd_off ||
	    !(cd = malloc(cd_size ? cd_size : 1)) || tb_pread(fd, cd, (size_t)cd_size, cd_off) < 0)
		goto out;
	for (uint64_t p = 0; p + 46 <= cd_size && !memcmp(cd + p, "PK\1\2", 4);) {
		uint64_t nl = tb_le(cd + p + 28, 2);
		if (p + 46 + nl > cd_size)
			break;
		if (memchr(cd + p + 46, 0, (size_t)nl)) {
			rc = lm_seterr("zip record '%s': a NUL byte inside the name", (const char *)cd + p + 46);
			break;
		}
		p += 46 + nl + tb_le(cd + p + 30, 2) + tb_le(cd + p + 32, 2);
	}
out:
	free(cd);
	if (fd >= 0)
		close(fd);
	return rc;
}

static struct archive *tb_ar_open(const char *path)
{
	struct archive *a = archive_read_new();
	if (!a) {
		lm_seterr("out of memory");
		return NULL;
	}
	/* the seekable reader walks the central directory, so STORED records with data
	 * descriptors have known sizes; the streaming reader would misread them */
	archive_read_support_format_zip_seekable(a);
	if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
		/* the caller saw a zip signature: no usable central directory means damage */
		lm_seterr("damaged or truncated zip archive (no readable central directory): %s",
		          archive_error_string(a));
		archive_read_free(a);
		return NULL;
	}
	return a;
}

/* the current record's data, at most max bytes, NUL-terminated */
static int tb_read_small(struct archive *a, const char *name, int64_t size, size_t max, char **out,
                         size_t *len)
{
	/* one byte more than the directory says, to notice a record that is longer */
	size_t cap = size >= 0 ? (size_t)size + 1 : 4096, n = 0;
	char *buf;

	if (size >= 0 && (uint64_t)size > max)
		return lm_seterr("record '%s' is %lld bytes, more than the %zu limit", name, (long long)size, max);
	if (!(buf = malloc(cap + 1)))
		return lm_seterr("out of memory");
	for (;;) {
		if (n == cap) {
			size_t nc = cap > max / 2 ? max + 1 : cap * 2;
			char *nb = cap > max ? NULL : realloc(buf, nc + 1);
			if (!nb) {
				free(buf);
				return cap > max ? lm_seterr("record '%s' exceeds the %zu byte limit", name, max)
				                 : lm_seterr("out of memory");
			}
			buf = nb, cap = nc;
		}
		la_ssize_t r = archive_read_data(a, buf + n, cap - n);
		if (r < 0) {
			lm_seterr("record '%s': %s", name, archive_error_string(a));
			free(buf);
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > max || (size >= 0 && n != (size_t)size)) {
		free(buf);
		return n > max ? lm_seterr("record '%s' exceeds the %zu byte limit", name, max)
		               : lm_seterr("record '%s' holds %zu bytes, the zip directory says %lld", name, n,
		                           (long long)size);
	}
	buf[n] = '\0';
	*out = buf, *len = n;
	return 0;
}

/* records sorted by name, for lookups and the duplicate check */
struct tb_zref {
	const char *name;
	size_t idx;
};

static int tb_cmp_zref(const void *a, const void *b)
{
	return strcmp(((const struct tb_zref *)a)->name, ((const struct tb_zref *)b)->name);
}

static long tb_zip_find(const struct tb_zref *sorted, size_t n, const char *name)
{
	struct tb_zref key = {name, 0};
	const struct tb_zref *r = bsearch(&key, sorted, n, sizeof *sorted, tb_cmp_zref);
	return r ? (long)r->idx : -1;
}

/* "3\n" -> 3; -1 if not a plain decimal number */
static int tb_parse_version(const char *s)
{
	long v = 0;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return -1;
	while (*p >= '0' && *p <= '9' && v < 100000)
		v = v * 10 + (*p++ - '0');
	while (*p == '\n' || *p == '\r' || *p == ' ')
		p++;
	return *p ? -1 : (int)v;
}

/* one pass over the records: names, sizes, and the content of the small ones */
static int tb_scan(struct lm_tb_file *f, char **pkl, size_t *pkl_len, char **version, char **byteorder)
{
	struct archive *a = tb_ar_open(f->path);
	struct archive_entry *ae;
	size_t cap = 0, toplen = 0;
	int r;

	if (!a)
		return -1;
	while ((r = archive_read_next_header(a, &ae)) != ARCHIVE_EOF) {
		if (r < ARCHIVE_WARN) {
			lm_seterr("damaged zip archive: %s", archive_error_string(a));
			goto fail;
		}
		const char *name = archive_entry_pathname(ae);
		if (!name) {
			lm_seterr("zip record %zu has no usable name", f->nzip);
			goto fail;
		}
		if (f->nzip == 0) {
			/* as torch's reader does: the top folder is the first record's first component */
			const char *slash = strchr(name, '/');
			if (!slash || slash == name) {
				lm_seterr("zip record '%s' is not in a folder (not a torch.save file?)", name);
				goto fail;
			}
			toplen = (size_t)(slash - name);
			f->top = strndup(name, toplen);
			if (!f->top) {
				lm_seterr("out of memory");
				goto fail;
			}
		}
		if (f->nzip >= TB_MAX_RECORDS) {
			lm_seterr("more than %u zip records", TB_MAX_RECORDS);
			goto fail;
		}
		if (f->nzip == cap) {
			cap = cap ? cap * 2 : 64;
			f->zip_name = xrealloc(f->zip_name, cap * sizeof *f->zip_name);
			f->zip_size = xrealloc(f->zip_size, cap * sizeof *f->zip_size);
		}
		f->zip_name[f->nzip] = xstrdup(name);
		f->zip_size[f->nzip] = archive_entry_size_is_set(ae) ? archive_entry_size(ae) : -1;
		int64_t size = f->zip_size[f->nzip];
		f->nzip++;

		if (strncmp(name, f->top, toplen) || name[toplen] != '/')
			continue;
		const char *rel = name + toplen + 1;
		size_t len;
		if (!strcmp(rel, "data.pkl")) {
			if (*pkl) {
				lm_seterr("zip record '%s' appears twice", name);
				goto fail;
			}
			if (tb_read_small(a, name, size, LM_TB_MAX_PKL, pkl, pkl_len))
				goto fail;
		} else if (!strcmp(rel, "version") || !strcmp(rel, ".data/version")) {
			if (!*version && tb_read_small(a, name, size, TB_MAX_SMALL, version, &len))
				goto fail;
		} else if (!strcmp(rel, "byteorder")) {
			if (!*byteorder && tb_read_small(a, name, size, TB_MAX_SMALL, byteorder, &len))
				goto fail;
		}
	}
	archive_read_free(a);
	if (!f->nzip)
		return lm_seterr("empty zip archive");
	return 0;
fail:
	archive_read_free(a);
	return -1;
}

/* check one tensor against its storage record and fill its entry */
static int tb_entry(struct lm_tb_file *f, const struct tb_zref *sorted, const struct lm_pk_tensor *t,
                    size_t i)
{
	struct lm_tb_entry *e = &f->entries[i];
	size_t esize = lm_dtype_size(t->dtype), numel = 1, need, end, off, stbytes;
	int64_t expect = 1;
	char *rec;
	long zi;

	for (int d = 0; d < t->ndim; d++) {
		if ((uint64_t)t->shape[d] > ((uint64_t)1 << 48))
			return lm_seterr("tensor '%s': bad shape", t->name);
		if (lm_mul(numel, (size_t)t->shape[d], &numel))
			return lm_preerr("tensor '%s'", t->name);
	}
	/* row-major check from the last dimension; size-1 dimensions may have any stride (torch
	 * gives them arbitrary ones), and an empty tensor has no bytes to misplace */
	for (int d = t->ndim - 1; d >= 0 && numel > 0; d--) {
		if (t->shape[d] != 1 && t->stride[d] != expect)
			return lm_seterr("tensor '%s' is not contiguous (stride %lld in dimension %d, row-major "
			                 "needs %lld): save it after .contiguous()",
			                 t->name, (long long)t->stride[d], d, (long long)expect);
		expect *= t->shape[d];
	}
	if (lm_mul(numel, esize, &need) || lm_add((size_t)t->storage_offset, numel, &end) ||
	    lm_mul((size_t)t->storage_offset, esize, &off) || lm_mul((size_t)t->storage_numel, esize, &stbytes))
		return lm_preerr("tensor '%s'", t->name);
	if (numel > 0 && end > t->storage_numel)
		return lm_seterr("tensor '%s': elements [%llu, %zu) lie outside its storage '%s' of %llu",
		                 t->name, (unsigned long long)t->storage_offset, end, t->storage,
		                 (unsigned long long)t->storage_numel);

	size_t reclen = strlen(f->top) + strlen(t->storage) + sizeof "/data/";
	rec = xmalloc(reclen);
	snprintf(rec, reclen, "%s/data/%s", f->top, t->storage);
	zi = tb_zip_find(sorted, f->nzip, rec);
	if (zi < 0) {
		lm_seterr("tensor '%s': storage record '%s' is missing", t->name, rec);
		free(rec);
		return -1;
	}
	free(rec);
	if (f->zip_size[zi] >= 0 && (uint64_t)f->zip_size[zi] < stbytes)
		return lm_seterr("tensor '%s': storage '%s' holds %lld bytes, the pickle says %zu", t->name,
		                 t->storage, (long long)f->zip_size[zi], stbytes);

	e->name = xstrdup(t->name);
	e->storage = xstrdup(t->storage);
	e->dtype = t->dtype;
	e->ndim = t->ndim;
	memcpy(e->shape, t->shape, sizeof e->shape);
	e->storage_offset = t->storage_offset;
	e->nbytes = need;
	f->ent_zip[i] = (size_t)zi;
	return 0;
}

int lm_tb_open(struct lm_tb_file *f, const char *path)
{
	char *pkl = NULL, *version = NULL, *byteorder = NULL;
	size_t pkl_len = 0, nt = 0;
	struct tb_zref *sorted = NULL;
	struct lm_pk_tensor *t = NULL;

	memset(f, 0, sizeof *f);
	f->path = xstrdup(path);
	if (tb_sniff(path) || tb_names_nul(path) || tb_scan(f, &pkl, &pkl_len, &version, &byteorder))
		goto fail;

	/* a name twice would make "the storage record" ambiguous: refuse it */
	sorted = xcalloc(f->nzip, sizeof *sorted);
	for (size_t i = 0; i < f->nzip; i++)
		sorted[i].name = f->zip_name[i], sorted[i].idx = i;
	qsort(sorted, f->nzip, sizeof *sorted, tb_cmp_zref);
	for (size_t i = 1; i < f->nzip; i++) {
		if (!strcmp(sorted[i].name, sorted[i - 1].name)) {
			lm_seterr("zip record '%s' appears twice", sorted[i].name);
			goto fail;
		}
	}

	if (!pkl) {
		lm_seterr("no record '%s/data.pkl' (not a torch.save file?)", f->top);
		goto fail;
	}
	if (version) {
		/* torch.save writes 3; torch's reader accepts 1..10, later numbers only concern
		 * TorchScript operators, which a state dict does not contain */
		f->version = tb_parse_version(version);
		if (f->version < 1 || f->version > 10) {
			lm_seterr("unsupported torch zip format version '%.*s' (1 to 10 are known)",
			          (int)strcspn(version, "\r\n"), version);
			goto fail;
		}
	}
	if (byteorder && strcmp(byteorder, "little") && strcmp(byteorder, "little\n")) {
		lm_seterr("byteorder '%.*s' is not supported (only little-endian files)",
		          (int)strcspn(byteorder, "\r\n"), byteorder);
		goto fail;
	}

	if (lm_pk_state_dict((const unsigned char *)pkl, pkl_len, &t, &nt))
		goto fail;
	f->entries = xcalloc(nt ? nt : 1, sizeof *f->entries);
	f->ent_zip = xcalloc(nt ? nt : 1, sizeof *f->ent_zip);
	f->n = nt;
	for (size_t i = 0; i < nt; i++)
		if (tb_entry(f, sorted, &t[i], i))
			goto fail;

	lm_pk_free(t, nt);
	free(sorted);
	free(pkl);
	free(version);
	free(byteorder);
	return 0;
fail:
	lm_pk_free(t, nt);
	free(sorted);
	free(pkl);
	free(version);
	free(byteorder);
	lm_tb_close(f);
	return -1;
}

void lm_tb_close(struct lm_tb_file *f)
{
	if (f->ar)
		archive_read_free(f->ar);
	for (size_t i = 0; i < f->n; i++) {
		free(f->entries[i].name);
		free(f->entries[i].storage);
	}
	for (size_t i = 0; i < f->nzip; i++)
		free(f->zip_name[i]);
	free(f->entries);
	free(f->ent_zip);
	free(f->zip_name);
	free(f->zip_size);
	free(f->top);
	free(f->path);
	memset(f, 0, sizeof *f);
}

long lm_tb_find(const struct lm_tb_file *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (!strcmp(f->entries[i].name, name))
			return (long)i;
	return -1;
}

static void tb_ar_close(struct lm_tb_file *f)
{
	if (f->ar)
		archive_read_free(f->ar);
	f->ar = NULL;
	f->ar_next = 0;
}

/* leave f->ar positioned at the start of record zi's data */
static int tb_seek_record(struct lm_tb_file *f, size_t zi)
{
	struct archive_entry *ae = NULL;

	if (f->ar && f->ar_next > zi)
		tb_ar_close(f);  /* the seekable reader only goes forward: start again */
	if (!f->ar && !(f->ar = tb_ar_open(f->path)))
		return -1;
	while (f->ar_next <= zi) {
		int r = archive_read_next_header(f->ar, &ae);
		if (r < ARCHIVE_WARN || r == ARCHIVE_EOF) {
			lm_seterr("damaged zip archive: %s", r == ARCHIVE_EOF ? "fewer records than at open"
			                                                      : archive_error_string(f->ar));
			tb_ar_close(f);
			return -1;
		}
		f->ar_next++;
	}
	const char *name = ae ? archive_entry_pathname(ae) : NULL;
	if (!name || strcmp(name, f->zip_name[zi])) {
		tb_ar_close(f);
		return lm_seterr("the archive changed since it was opened");
	}
	return 0;
}

/* read n bytes of the current record into dst; a short record is an error */
static int tb_read_data(struct lm_tb_file *f, const struct lm_tb_entry *e, char *dst, size_t n)
{
	while (n > 0) {
		la_ssize_t r = archive_read_data(f->ar, dst, n < TB_CHUNK ? n : TB_CHUNK);
		if (r <= 0) {
			lm_seterr("tensor '%s': storage '%s': %s", e->name, e->storage,
			          r < 0 ? archive_error_string(f->ar) : "record truncated");
			tb_ar_close(f);
			return -1;
		}
		dst += r, n -= (size_t)r;
	}
	return 0;
}

int lm_tb_read(struct lm_tb_file *f, size_t i, void *dst)
{
	if (i >= f->n)
		return lm_seterr("no tensor %zu", i);
	const struct lm_tb_entry *e = &f->entries[i];
	size_t skip = (size_t)e->storage_offset * lm_dtype_size(e->dtype);  /* checked at open */

	if (e->nbytes == 0)
		return 0;
	if (tb_seek_record(f, f->ent_zip[i]))
		return -1;
	/* the bytes before the tensor (other views of a shared storage) are streamed through
	 * dst itself, or a small buffer for a small tensor, so no other tensor is ever held in
	 * memory */
	char scratch[16384], *sink = e->nbytes >= sizeof scratch ? dst : scratch;
	size_t sinksz = e->nbytes >= sizeof scratch ? (size_t)e->nbytes : sizeof scratch;
	while (skip > 0) {
		size_t k = skip < sinksz ? skip : sinksz;
		if (tb_read_data(f, e, sink, k))
			return -1;
		skip -= k;
	}
	return tb_read_data(f, e, dst, (size_t)e->nbytes);
}
