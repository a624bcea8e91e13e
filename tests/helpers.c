/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

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
			char path[64], target[256] = "?";
			ssize_t n;

			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			n = readlink(path, target, sizeof(target) - 1);
			if (n >= 0)
				target[n] = '\0';
			ck_abort_msg("fd %d (%s) leaked by the test", fd,
				     target);
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

int t_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
