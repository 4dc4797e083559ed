/* pool.h: the thread count and the small pthread pool that runs the kernels' row loops
 * (workers sleep on a condition variable between jobs; they poll a short while only
 * after a hot job: see pool.c and kernels.h) */
#ifndef LM_POOL_H
#define LM_POOL_H

#include <stddef.h>

#define LM_MAX_THREADS 64

/* n threads for OpenBLAS and for the row loops here (n <= 0: all online cores) */
void lm_set_threads(int n);
/* threads the row loops use: lm_set_threads's value, else OpenBLAS's current setting */
int lm_threads(void);
/* run fn(ctx, i0, i1, part) over [0, n) split into contiguous ranges, one per thread
 * (part 0 .. parts-1, at most `maxparts`, each range at least `grain` items). Runs
 * serially, as part 0, when called while the pool is busy (from another thread or from
 * inside fn). Returns the number of parts used. */
typedef void lm_range_fn(void *ctx, size_t i0, size_t i1, int part);
int lm_parallel_for(size_t n, size_t grain, int maxparts, lm_range_fn *fn, void *ctx);
/* the same for jobs that come back to back, each short (the decode products): after it
 * the workers poll for the next job for a fraction of a millisecond before they sleep,
 * so the next one starts without a wake-up through the kernel */
int lm_parallel_for_hot(size_t n, size_t grain, int maxparts, lm_range_fn *fn, void *ctx);

#endif
