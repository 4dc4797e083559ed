/* pool.c: the kernels' thread pool and thread count (see pool.h) */
#include "pool.h"

#include <cblas.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

/* The pool is process-wide state, like OpenBLAS's own thread pool: one set of sleeping
 * workers shared by every caller. A job is published under mu with a new generation
 * number; workers sleep on `go` between jobs, so nothing spins while OpenBLAS works. */
static struct {
	pthread_mutex_t mu, busy;
	pthread_cond_t go, done;
	int nstarted;
	unsigned long gen;
	int nparts, pending;
	size_t n;
	lm_range_fn *fn;
	void *ctx;
} pool = {
	.mu = PTHREAD_MUTEX_INITIALIZER, .busy = PTHREAD_MUTEX_INITIALIZER,
	.go = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER,
};
static int want_threads; /* 0: follow OpenBLAS's setting */

static void *pool_worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	unsigned long seen = 0;

	pthread_mutex_lock(&pool.mu);
	for (;;) {
		while (pool.gen == seen)
			pthread_cond_wait(&pool.go, &pool.mu);
		seen = pool.gen;
		if (id >= pool.nparts)
			continue;
		size_t n = pool.n, p = (size_t)pool.nparts;
		lm_range_fn *fn = pool.fn;
		void *ctx = pool.ctx;
		pthread_mutex_unlock(&pool.mu);
		fn(ctx, n * (size_t)id / p, n * ((size_t)id + 1) / p, id);
		pthread_mutex_lock(&pool.mu);
		if (--pool.pending == 0)
			pthread_cond_signal(&pool.done);
	}
	return NULL;
}

int lm_threads(void)
{
	int n = __atomic_load_n(&want_threads, __ATOMIC_RELAXED);
	if (n <= 0)
		n = openblas_get_num_threads();
	return n < 1 ? 1 : n > LM_MAX_THREADS ? LM_MAX_THREADS : n;
}

void lm_set_threads(int n)
{
	if (n <= 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n = c > 0 ? (int)c : 1;
	}
	if (n > LM_MAX_THREADS)
		n = LM_MAX_THREADS;
	openblas_set_num_threads(n);
	__atomic_store_n(&want_threads, n, __ATOMIC_RELAXED);
}

int lm_parallel_for(size_t n, size_t grain, int maxparts, lm_range_fn *fn, void *ctx)
{
	size_t parts = grain ? n / grain : n;
	size_t nt = (size_t)lm_threads();
	if (parts > nt)
		parts = nt;
	if (maxparts > 0 && parts > (size_t)maxparts)
		parts = (size_t)maxparts;
	if (parts <= 1 || pthread_mutex_trylock(&pool.busy) != 0) {
		if (n)
			fn(ctx, 0, n, 0);
		return 1;
	}
	pthread_mutex_lock(&pool.mu);
	while ((size_t)pool.nstarted + 1 < parts) {
		pthread_t th;
		if (pthread_create(&th, NULL, pool_worker, (void *)(intptr_t)(pool.nstarted + 1)) != 0)
			break;
		pthread_detach(th);
		pool.nstarted++;
	}
	if ((size_t)pool.nstarted + 1 < parts)
		parts = (size_t)pool.nstarted + 1;
	pool.n = n, pool.fn = fn, pool.ctx = ctx;
	pool.nparts = (int)parts, pool.pending = (int)parts - 1;
	pool.gen++;
	pthread_cond_broadcast(&pool.go);
	pthread_mutex_unlock(&pool.mu);

	fn(ctx, 0, n / parts, 0);

	pthread_mutex_lock(&pool.mu);
	while (pool.pending > 0)
		pthread_cond_wait(&pool.done, &pool.mu);
	pthread_mutex_unlock(&pool.mu);
	pthread_mutex_unlock(&pool.busy);
	return (int)parts;
}
