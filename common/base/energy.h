/* energy.h: joules used by the CPU packages, from the RAPL counters of Linux's powercap
 * (/sys/class/powercap/intel-rapl:N/energy_uj), for the cost of early-exit decoding. */
#ifndef LM_ENERGY_H
#define LM_ENERGY_H

#define LM_RAPL_MAX 16
struct lm_rapl {
	int n;                        /* package domains found (0: energy not readable) */
	char path[LM_RAPL_MAX][512];  /* their energy_uj files */
	double range[LM_RAPL_MAX];    /* max_energy_range_uj: where a counter wraps */
	double last[LM_RAPL_MAX];
};
/* the package domains intel-rapl:N under root (NULL: /sys/class/powercap; subdomains
 * intel-rapl:N:M are parts of a package and not added again); -1 + error saying why
 * energy cannot be read (no domains, permission) */
int lm_rapl_open(struct lm_rapl *r, const char *root);
/* joules used by all packages since the last call (or lm_rapl_open); -1 + error */
int lm_rapl_joules(struct lm_rapl *r, double *joules);

#endif
