/* SPDX-License-Identifier: MIT */
/*
 * The single-threaded C++ baseline.  libstdc++'s std::stop_callback is
 * only cheap in a process that has never started a thread, and this bench
 * has threads, so the figure is measured in a helper: this same executable
 * run again (exec, so nothing of the parent's threads is inherited) with
 * HELPER_ARG, answering requests on its stdin/stdout.  It checks
 * __libc_single_threaded and reports it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

enum { REQ_HELLO = 1, REQ_FANOUT = 2, REQ_QUIT = 3 };

struct req {
	uint32_t op;
	uint64_t n, trees;
};

struct rep {
	double ns;
	int32_t single_threaded;
};

#if !HAVE_CXX
bool cxx_available(void)
{
	return false;
}

const char *cxx_compiler(void)
{
	return "none (C++ rows not measured)";
}

double cxx_fanout(size_t n, size_t trees)
{
	(void)n;
	(void)trees;
	return NAN;
}

double cxx_life(size_t k)
{
	(void)k;
	return NAN;
}
#endif

static int full_io(int fd, void *buf, size_t len, bool wr)
{
	char *p = buf;

	while (len) {
		ssize_t r = wr ? write(fd, p, len) : read(fd, p, len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

int helper_main(void)
{
	struct req q;
	struct rep a;

	while (full_io(0, &q, sizeof(q), false) == 0) {
		a.single_threaded = process_single_threaded();
		switch (q.op) {
		case REQ_HELLO:
			a.ns = 0;
			break;
		case REQ_FANOUT:
			a.ns = cxx_fanout(q.n, q.trees);
			break;
		default:
			return 0;
		}
		if (full_io(1, &a, sizeof(a), true) < 0)
			return 1;
	}
	return 0;
}

static pid_t helper_pid = -1;
static int to_helper = -1, from_helper = -1;
static int helper_st = -1;

int helper_start(void)
{
	extern char **environ;
	int req[2], rep[2];
	posix_spawn_file_actions_t fa;
	char *argv[] = { (char *)opt.argv0, (char *)HELPER_ARG, NULL };
	struct req q = { .op = REQ_HELLO };
	struct rep a;

	if (!cxx_available())
		return -1;
	if (pipe2(req, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(rep, O_CLOEXEC) < 0) {
		close(req[0]);
		close(req[1]);
		return -1;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, req[0], 0);
	posix_spawn_file_actions_adddup2(&fa, rep[1], 1);
	if (posix_spawn(&helper_pid, "/proc/self/exe", &fa, NULL, argv,
			environ) != 0)
		helper_pid = -1;
	posix_spawn_file_actions_destroy(&fa);
	close(req[0]);
	close(rep[1]);
	to_helper = req[1];
	from_helper = rep[0];
	if (helper_pid < 0 || full_io(to_helper, &q, sizeof(q), true) < 0 ||
	    full_io(from_helper, &a, sizeof(a), false) < 0) {
		helper_stop();
		return -1;
	}
	helper_st = a.single_threaded;
	return 0;
}

bool helper_single_threaded(void)
{
	return helper_st == 1;
}

double helper_fanout(size_t n, size_t trees)
{
	struct req q = { .op = REQ_FANOUT, .n = n, .trees = trees };
	struct rep a;

	if (helper_pid < 0 || full_io(to_helper, &q, sizeof(q), true) < 0 ||
	    full_io(from_helper, &a, sizeof(a), false) < 0)
		return NAN;
	return a.ns;
}

void helper_stop(void)
{
	struct req q = { .op = REQ_QUIT };

	if (to_helper >= 0) {
		if (full_io(to_helper, &q, sizeof(q), true) < 0) {
			/* it is gone already */
		}
		close(to_helper);
	}
	if (from_helper >= 0)
		close(from_helper);
	if (helper_pid > 0)
		waitpid(helper_pid, NULL, 0);
	to_helper = from_helper = -1;
	helper_pid = -1;
}
