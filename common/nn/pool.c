/* pool.c: the kernels' thread pool and thread count (see pool.h) */
#include "pool.h"
#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

/* The pool is process-wide state, like OpenBLAS's own thread pool: one set of sleeping
 * workers shared by every caller. A job is published under mu with a new generation
 * number; workers sleep on `go` between jobs, so nothing spins while OpenBLAS works.
 *
 * Hot jobs (lm_parallel_for_hot: the decode products, some 75 per token, each a few tens
 * of microseconds) are the exception. A sleeping worker is woken through the kernel, and
 * on a virtual machine through the hypervisor: measured, that wake-up cost as much as
 * the product it started. So after a hot job a worker polls the generation number for
 * POOL_SPIN_NS before it sleeps (after any job inside that window too: attention's,
 * between two products). The caller of any job likewise polls for its workers' end for
 * up to POOL_SPIN_NS before it sleeps on `done` (it has nothing else to do meanwhile).
 * A poller yields its core at every look (sched_yield), so a thread that has work there
 * (OpenBLAS's, in the attention between two products) runs at once: a poller that kept
 * its core made such a multi-threaded BLAS call wait for the scheduler, five times
 * slower. After any other job the workers do not poll, so OpenBLAS's threads keep the
 * cores (docs/performance.md §2). */
#define POOL_SPIN_NS 200000L

static struct {
	pthread_mutex_t mu, busy;
	pthread_cond_t go, done;
	int nstarted;
	unsigned long gen;   /* written under mu, read by pollers: __atomic */
	int nparts, pending; /* pending: decremented under mu, read by pollers: __atomic */
	int hot;
	size_t n;
	lm_range_fn *fn;
	void *ctx;
} pool = {
	.mu = PTHREAD_MUTEX_INITIALIZER, .busy = PTHREAD_MUTEX_INITIALIZER,
	.go = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER,
};

static int want_threads; /* 0: follow OpenBLAS's setting */

static long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* sched_yield until done(arg) or the clock passes `until` (looked at every 16 tries);
 * 1 if done */
static int poll_until(int (*done)(unsigned long), unsigned long arg, long until)
{
	for (int i = 0;; i++) {
		if (done(arg))
			return 1;
		if (i % 16 == 0 && now_ns() > until)
			return 0;
		sched_yield();
	}
}

/* a job after generation `seen` is published (a worker's wait) */
static int gen_moved(unsigned long seen)
{
	return __atomic_load_n(&pool.gen, __ATOMIC_ACQUIRE) != seen;
}

/* every worker's part of the job has ended (the caller's wait) */
static int parts_done(unsigned long unused)
{
	(void)unused;
	return __atomic_load_n(&pool.pending, __ATOMIC_ACQUIRE) <= 0;
}

static void *pool_worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	unsigned long seen = 0;
	long poll_end = 0; /* poll for the next job until then: POOL_SPIN_NS after a hot one */
	for (;;) {
		if (poll_end)
			poll_until(gen_moved, seen, poll_end);
		pthread_mutex_lock(&pool.mu);
		while (pool.gen == seen)
			pthread_cond_wait(&pool.go, &pool.mu);
		seen = pool.gen;
		int hot = pool.hot;
		if (id >= pool.nparts) {
			pthread_mutex_unlock(&pool.mu);
			continue;
		}
		size_t n = pool.n, p = (size_t)pool.nparts;
		lm_range_fn *fn = pool.fn;
		void *ctx = pool.ctx;
		pthread_mutex_unlock(&pool.mu);
		fn(ctx, n * (size_t)id / p, n * ((size_t)id + 1) / p, id);
		/* a job between two hot ones (attention between two products) keeps the polling */
		if (hot)
			poll_end = now_ns() + POOL_SPIN_NS;
		else if (poll_end && now_ns() > poll_end)
			poll_end = 0;
		pthread_mutex_lock(&pool.mu);
		/* release: the caller may read this part's results once it sees 0 */
		if (__atomic_sub_fetch(&pool.pending, 1, __ATOMIC_ACQ_REL) == 0)
			pthread_cond_signal(&pool.done);
		pthread_mutex_unlock(&pool.mu);
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

static int run(size_t n, size_t grain, int maxparts, lm_range_fn *fn, void *ctx, int hot)
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
	pool.n = n, pool.fn = fn, pool.ctx = ctx, pool.hot = hot;
	pool.nparts = (int)parts;
	__atomic_store_n(&pool.pending, (int)parts - 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&pool.gen, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&pool.go);
	pthread_mutex_unlock(&pool.mu);
	fn(ctx, 0, n / parts, 0);
	if (!poll_until(parts_done, 0, now_ns() + POOL_SPIN_NS)) {
		pthread_mutex_lock(&pool.mu);
		while (__atomic_load_n(&pool.pending, __ATOMIC_ACQUIRE) > 0)
			pthread_cond_wait(&pool.done, &pool.mu);
		pthread_mutex_unlock(&pool.mu);
	}
	pthread_mutex_unlock(&pool.busy);
	return (int)parts;
}

int lm_parallel_for(size_t n, size_t grain, int maxparts, lm_range_fn *fn, void *ctx)
{
	return run(n, grain, maxparts, fn, ctx, 0);
}

int lm_parallel_for_hot(size_t n, size_t grain, int maxparts, lm_range_fn *fn, void *ctx)
{
	return run(n, grain, maxparts, fn, ctx, 1);
}
