/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cancelfd.h>

#include "helpers.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define MAX_FDS 65536
static unsigned char open_before[MAX_FDS / 8];

static void fd_set_now(unsigned char *set)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int self;

	ck_assert_ptr_nonnull(d);
	self = dirfd(d);
	memset(set, 0, MAX_FDS / 8);
	while ((e = readdir(d))) {
		int fd;

		if (e->d_name[0] == '.')
			continue;
		fd = atoi(e->d_name);
		if (fd != self && fd < MAX_FDS)
			set[fd / 8] |= (unsigned char)(1u << (fd % 8));
	}
	closedir(d);
}

void t_fd_snapshot(void)
{
	fd_set_now(open_before);
}

void t_fd_check(void)
{
	unsigned char now[MAX_FDS / 8];

	fd_set_now(now);
	for (int fd = 0; fd < MAX_FDS; fd++) {
		bool was = open_before[fd / 8] & (1u << (fd % 8));
		bool is = now[fd / 8] & (1u << (fd % 8));

		if (is && !was) {
			char target[256];

			ck_abort_msg("fd %d (%s) leaked by the test", fd,
				     t_fd_target(fd, target, sizeof(target)));
		}
	}
}

int t_count_fds(void)
{
	unsigned char now[MAX_FDS / 8];
	int n = 0;

	fd_set_now(now);
	for (int fd = 0; fd < MAX_FDS; fd++)
		n += !!(now[fd / 8] & (1u << (fd % 8)));
	return n;
}

TCase *t_tcase_timeout(const char *name, double seconds)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, t_fd_snapshot, t_fd_check);
	tcase_set_timeout(tc, seconds);
	return tc;
}

TCase *t_tcase(const char *name)
{
	return t_tcase_timeout(name, 60);
}

bool t_fd_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;

	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	return r == 1;
}

int64_t t_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void t_wait_past(int64_t t)
{
	while (t_now_ns() <= t) {
		struct timespec ts = { 0, 100000 };

		nanosleep(&ts, NULL);
	}
}

int t_threads_in_process(void)
{
	char line[256];
	int n = 0;
	FILE *f = fopen("/proc/self/status", "re");

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

int t_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

bool t_fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0 || errno != EBADF;
}

const char *t_fd_target(int fd, char *buf, size_t size)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, buf, size - 1);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

bool t_fd_is(int fd, const char *target)
{
	char buf[256];

	return strcmp(t_fd_target(fd, buf, sizeof(buf)), target) == 0;
}

bool t_fd_is_eventfd(int fd)
{
	return t_fd_is(fd, "anon_inode:[eventfd]");
}

int64_t t_eventfd_count(int fd)
{
	char path[64], line[256];
	long long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "eventfd-count: %llx", &v) == 1)
			break;
	fclose(f);
	return v;
}

pid_t t_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

int t_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static char thread_state(pid_t tid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return '?';
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return '?';
	buf[n] = '\0';
	/* "tid (comm) S ...": comm may hold spaces and parentheses. */
	p = strrchr(buf, ')');
	return (p && p[1] == ' ') ? p[2] : '?';
}

bool t_thread_sleeping(pid_t tid, int ms)
{
	int64_t end = t_now_ns() + (int64_t)ms * 1000000;

	do {
		if (thread_state(tid) == 'S')
			return true;
		sched_yield();
	} while (t_now_ns() < end);
	return false;
}

/* In a child of t_in_child(): the write end of the pipe that takes a
 * failed T_CHILD_CHECK() to the test. */
static int child_report = -1;

void t_child_failed(const char *file, int line, const char *expr)
{
	char msg[512];
	int n;

	/* Neither stdio nor malloc: the child of a process with threads may
	 * have inherited their locks held. */
	n = snprintf(msg, sizeof(msg), "%s:%d: in the forked child %d: %s\n",
		     file, line, (int)getpid(), expr);
	if (n > (int)sizeof(msg) - 1)
		n = (int)sizeof(msg) - 1;
	/* (If a write fails, the exit status still says that it failed.) */
	if (write(STDERR_FILENO, msg, (size_t)n) < 0) {
	}
	if (child_report >= 0 && write(child_report, msg, (size_t)n) < 0) {
	}
	_exit(1 + line % 250);
}

int t_in_child(int (*fn)(void *), void *arg)
{
	char report[512];
	int status, p[2];
	ssize_t n;
	pid_t pid, w;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		child_report = p[1];
		_exit(fn(arg));
	}
	close(p[1]);
	do
		w = waitpid(pid, &status, 0);
	while (w < 0 && errno == EINTR);
	ck_assert_int_eq(w, pid);
	/* Whatever the child said, without blocking: a process it made may
	 * still hold the pipe. */
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	n = read(p[0], report, sizeof(report) - 1);
	close(p[0]);
	if (n > 0) {
		report[n - (report[n - 1] == '\n')] = '\0';
		ck_abort_msg("%s", report);
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

void t_count_call(struct cfd_token *tok, void *counter)
{
	(void)tok;
	++*(int *)counter;
}

struct cfd_token *t_new_token(const char *name)
{
	struct cfd_token *t = NULL;

	ck_assert_int_eq(cfd_token_new(&t, name), 0);
	return t;
}

struct cfd_token *t_new_child(struct cfd_token *parent, const char *name)
{
	struct cfd_token *t = NULL;

	ck_assert_int_eq(cfd_token_child(&t, parent, name), 0);
	ck_assert_ptr_nonnull(t);
	return t;
}
