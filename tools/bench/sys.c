/* SPDX-License-Identifier: MIT */
/*
 * System helpers: CPU pinning, the idle thread that makes the process
 * multi-threaded, RSS, and the fd budget.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define HAVE_SINGLE_THREADED 1
#endif
#endif

#include "bench.h"

int cpu_a, cpu_b;
static cpu_set_t allowed;

void sys_init(void)
{
	struct rlimit rl;
	int found = 0;

	if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
		die("sched_getaffinity failed");
	cpu_a = cpu_b = -1;
	for (int c = 0; c < CPU_SETSIZE && found < 2; c++) {
		if (!CPU_ISSET(c, &allowed))
			continue;
		if (found++ == 0)
			cpu_a = c;
		else
			cpu_b = c;
	}
	if (cpu_b < 0)
		cpu_b = cpu_a;
	/* The soft fd limit may be raised up to the hard one. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

void pin_self(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

void unpin_self(void)
{
	pthread_setaffinity_np(pthread_self(), sizeof(allowed), &allowed);
}

static int idle_pipe[2] = { -1, -1 };

static void *idle_main(void *arg)
{
	char c;

	(void)arg;
	/* Sleeps until the process exits (nobody writes). */
	while (read(idle_pipe[0], &c, 1) < 0)
		;
	return NULL;
}

void start_idle_thread(void)
{
	pthread_t t;

	if (pipe2(idle_pipe, O_CLOEXEC) < 0 ||
	    pthread_create(&t, NULL, idle_main, NULL) != 0)
		die("cannot start the idle thread");
	pthread_detach(t);
}

int process_single_threaded(void)
{
#ifdef HAVE_SINGLE_THREADED
	return __libc_single_threaded ? 1 : 0;
#else
	return -1;
#endif
}

long rss_bytes(void)
{
	long pages = -1, resident = -1;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
		resident = -1;
	fclose(f);
	return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

int fds_open(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

int nofile_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur > INT32_MAX)
		return 1024;
	return (int)rl.rlim_cur;
}

int fds_available(void)
{
	int n = nofile_limit() - fds_open() - 64;

	return n > 0 ? n : 0;
}

void spin_for_ns(int64_t ns)
{
	int64_t end = now_ns() + ns;

	while (now_ns() < end)
		;
}
