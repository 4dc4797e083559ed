/* sysinfo.h: what lm-info --system prints: the CPU's features, OpenBLAS's build and the core
 * it runs, and the kernels lmpipe picked on this CPU (decode product, bf16 GEMM). */
#ifndef LM_SYSINFO_H
#define LM_SYSINFO_H

/* a table on stdout, or one JSON object (as_json) */
void lm_info_system(int as_json);

#endif
