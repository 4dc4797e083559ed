/* sysinfo.c: lm-info --system. A user comparing figures across machines (or filing a bug)
 * needs what decides the speed and the last bits of results: the CPU's vector features,
 * which OpenBLAS core runs the fp32 products and who chose it (blascore.c), and which of
 * lmpipe's own kernels the CPU gets (nn/matvec.c, nn/gemm_bf16.c). */
#include "sysinfo.h"

#include <cblas.h> /* OpenBLAS's introspection: openblas_get_config, _corename, _num_threads */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "blascore.h"
#include "cli.h"
#include "gemm_bf16.h"
#include "matvec.h"
#include "report.h"
#include "util.h"

/* "model name" of /proc/cpuinfo's first CPU, or "unknown" */
static void cpu_name(char *buf, size_t sz)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];
	snprintf(buf, sz, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		char *c = strchr(line, ':');
		if (strncmp(line, "model name", 10) == 0 && c) {
			c += 1 + (c[1] == ' ');
			c[strcspn(c, "\n")] = 0;
			snprintf(buf, sz, "%s", c);
			break;
		}
	}
	fclose(f);
}

/* the CPU features that choose a kernel somewhere in lmpipe or OpenBLAS, into arr
 * (__builtin_cpu_supports takes a string literal only, hence the macro) */
static void cpu_features(json_t *arr)
{
#if defined(__x86_64__) && defined(__GNUC__)
#define FEATURE(s)                                                                           \
	if (__builtin_cpu_supports(s))                                                      \
		json_array_append_new(arr, json_string(s));
	__builtin_cpu_init();
	FEATURE("sse4.2") FEATURE("avx") FEATURE("avx2") FEATURE("fma") FEATURE("f16c")
	FEATURE("avx512f") FEATURE("avx512cd") FEATURE("avx512bw") FEATURE("avx512dq")
	FEATURE("avx512vl") FEATURE("avx512vnni") FEATURE("avx512bf16")
#undef FEATURE
#else
	(void)arr;
#endif
}

/* what --compute bf16 runs on: the kernel, or why it falls back to fp32 */
static const char *bf16_state(void)
{
	const char *off = getenv("LM_NO_BF16");
	if (lm_gemm_bf16_available())
		return "vdpbf16ps (lmpipe's own, gemm_bf16.c)";
	if (off && strcmp(off, "1") == 0)
		return "off (LM_NO_BF16=1): --compute bf16 runs the fp32 path";
	return "no AVX512_BF16: --compute bf16 runs the fp32 path";
}

void lm_info_system(int as_json)
{
	char name[256], *config = openblas_get_config(), *core = openblas_get_corename();
	const char *asked = lm_blas_core_asked(), *matvec = getenv("LM_NO_MATVEC");
	const char *best = lm_blas_core_best();
	json_t *o = json_object(), *feat = json_array();
	size_t i;

	cpu_name(name, sizeof name);
	cpu_features(feat);
	json_object_set_new(o, "cpu", json_string(name));
	json_object_set_new(o, "cores", json_integer(lm_cores()));
	json_object_set_new(o, "features", feat);
	json_object_set_new(o, "openblas_config", json_string(config ? config : "unknown"));
	json_object_set_new(o, "blas_core", json_string(core ? core : "unknown"));
	json_object_set_new(o, "blas_core_asked", asked ? json_string(asked) : json_null());
	json_object_set_new(o, "blas_core_reason", json_string(lm_blas_core_reason()));
	json_object_set_new(o, "blas_core_best", best ? json_string(best) : json_null());
	json_object_set_new(o, "blas_threads", json_integer(openblas_get_num_threads()));
	json_object_set_new(o, "matvec", json_string(matvec && !strcmp(matvec, "1")
	                                                 ? "off (LM_NO_MATVEC=1)"
	                                                 : lm_matvec_isa_name(lm_matvec_isa())));
	json_object_set_new(o, "bf16_gemm", json_string(bf16_state()));
	if (as_json) {
		lm_json_line(stdout, o);   /* takes o over */
		return;
	} else {
		json_t *f;
		printf("cpu          %s (%d usable cores)\n", name, lm_cores());
		printf("features    ");
		json_array_foreach(feat, i, f)
			printf(" %s", json_string_value(f));
		printf("\nopenblas     %s\n", config ? config : "unknown");
		printf("blas core    %s (%s)\n", core ? core : "unknown", lm_blas_core_reason());
		if (best && core && strcasecmp(core, best) != 0)
			printf("             lmpipe would choose %s on this CPU (docs/performance.md, "
			       "\"The BLAS core\")\n", best);
		printf("decode       %s\n", json_string_value(json_object_get(o, "matvec")));
		printf("bf16 gemm    %s\n", bf16_state());
	}
	json_decref(o);
}
