/* test_cli.c: thread counts from -j, and a program dying of an allocation failure while
 * OpenBLAS workers are stuck allocating their buffers (issue #23). */
#include "cli.h"
#include "kernels.h"
#include "unit.h"
#include "util.h"

#include <cblas.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_threads(void)
{
	int cores = lm_cores();
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	CHECK(cores >= 1);
	CHECKF(online < 1 || cores <= online, "%d usable of %ld online", cores, online);
	lm_cli_threads(cores + 31, 0);
	CHECKF(lm_threads() == cores, "-j %d on %d cores gave %d", cores + 31, cores, lm_threads());
	CHECK(openblas_get_num_threads() == cores);
	lm_cli_threads(0, 0);
	CHECK(lm_threads() == cores);
	lm_cli_threads(1, 0);
	CHECK(lm_threads() == 1);
}

/* The child limits its address space to what it uses plus 512 MiB, asks OpenBLAS for 64
 * threads (each wants a 128 MiB buffer, so some retry their allocation forever), then
 * fails an allocation. exit() would run OpenBLAS's destructor, which joins those threads:
 * the child hung until the alarm killed it. It must end at once, status 1. */
static void test_oom_exits(void)
{
#if defined(__SANITIZE_ADDRESS__)
	fprintf(stderr, "test_cli: address-space limit test skipped under ASan\n");
	return;
#else
	pid_t pid = fork();
	int st = 0;
	if (pid == 0) {
		long pages = 0;
		FILE *f = fopen("/proc/self/statm", "r");
		struct rlimit rl;
		if (!f || fscanf(f, "%ld", &pages) != 1)
			_exit(3);
		fclose(f);
		alarm(60); /* only a hang gets here */
		rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (512u << 20);
		if (setrlimit(RLIMIT_AS, &rl) < 0)
			_exit(3);
		openblas_set_num_threads(64);
		usleep(100000);
		freopen("/dev/null", "w", stderr);
		xmalloc((size_t)1 << 40);
		_exit(4);
	}
	CHECK(pid > 0);
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 1, "child: %s %d",
	       WIFSIGNALED(st) ? "killed by signal" : "exit status",
	       WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
#endif
}

int main(void)
{
	test_threads();
	test_oom_exits();
	return unit_done("test_cli");
}
