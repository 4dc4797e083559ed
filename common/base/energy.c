/* energy.c: joules used by the CPU packages, read from the RAPL counters (see energy.h). */
#include "energy.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* a sysfs counter as a number; -1 + error */
static int read_num(const char *path, double *v)
{
	char buf[64];
	FILE *f = fopen(path, "r");
	if (!f)
		return lm_seterr("%s: %s", path, strerror(errno));
	size_t k = fread(buf, 1, sizeof buf - 1, f);
	int bad = ferror(f);
	fclose(f);
	buf[k] = '\0';
	char *end;
	errno = 0;
	double x = strtod(buf, &end);
	if (bad || end == buf || errno)
		return lm_seterr("%s: not a number", path);
	*v = x;
	return 0;
}

/* "intel-rapl:N" exactly: a package, not one of its parts (intel-rapl:N:M) */
static int is_package(const char *name)
{
	const char *p = "intel-rapl:";
	if (strncmp(name, p, strlen(p)))
		return 0;
	name += strlen(p);
	if (!*name)
		return 0;
	for (; *name; name++)
		if (*name < '0' || *name > '9')
			return 0;
	return 1;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int lm_rapl_open(struct lm_rapl *r, const char *root)
{
	char *names[LM_RAPL_MAX];
	int nn = 0;
	struct dirent *de;
	DIR *d;
	memset(r, 0, sizeof *r);
	if (!root)
		root = "/sys/class/powercap";
	if (!(d = opendir(root)))
		return lm_seterr("%s: %s", root, strerror(errno));
	while ((de = readdir(d)) && nn < LM_RAPL_MAX)
		if (is_package(de->d_name))
			names[nn++] = xstrdup(de->d_name);
	closedir(d);
	if (nn == 0)
		return lm_seterr("%s: no intel-rapl:N package domains", root);
	qsort(names, (size_t)nn, sizeof *names, name_cmp); /* the same order every run */
	int rc = 0;
	for (int i = 0; i < nn; i++) {
		char rp[600];
		snprintf(r->path[i], sizeof r->path[i], "%s/%s/energy_uj", root, names[i]);
		snprintf(rp, sizeof rp, "%s/%s/max_energy_range_uj", root, names[i]);
		if (rc == 0 && (read_num(r->path[i], &r->last[i]) < 0 || read_num(rp, &r->range[i]) < 0))
			rc = -1;
		free(names[i]);
	}
	if (rc < 0) {
		memset(r, 0, sizeof *r);
		return -1;
	}
	r->n = nn;
	return 0;
}

int lm_rapl_joules(struct lm_rapl *r, double *joules)
{
	double sum = 0;
	for (int i = 0; i < r->n; i++) {
		double v;
		if (read_num(r->path[i], &v) < 0)
			return -1;
		double d = v - r->last[i];
		if (d < 0) /* the counter wrapped (about once an hour on a busy server) */
			d += r->range[i];
		sum += d, r->last[i] = v;
	}
	*joules = sum * 1e-6;
	return 0;
}
