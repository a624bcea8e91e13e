/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "helpers-watcher.h"

struct cfd_watcher *tw_new_watcher(void)
{
	struct cfd_watcher *w = NULL;

	ck_assert_int_eq(cfd_watcher_new(&w), 0);
	return w;
}

bool tw_never(struct cfd_token *tok, void *arg)
{
	(void)tok;
	(void)arg;
	return false;
}

bool tw_dispatch_until_fn(struct cfd_watcher *w, bool (*done)(void *),
			  void *arg)
{
	int64_t end = t_now_ns() + CFD_MSEC(T_WAIT_MS);

	while (!done(arg)) {
		int64_t left = end - t_now_ns();

		/* Dispatched only when its fd says so: a watcher whose fd
		 * stays quiet fails here. */
		if (left <= 0 || !t_fd_readable(cfd_watcher_fd(w),
						(int)(left / 1000000) + 1))
			return false;
		ck_assert_int_ge(cfd_watcher_dispatch(w), 0);
	}
	return true;
}

static bool token_done(void *tok)
{
	return cfd_token_triggered(tok);
}

bool tw_dispatch_until(struct cfd_watcher *w, struct cfd_token *tok)
{
	return tw_dispatch_until_fn(w, token_done, tok);
}

/* ---- signals ---- */

static size_t sigset_numbers(const sigset_t *set, int *out)
{
	size_t n = 0;

	for (int s = 1; s < _NSIG; s++)
		if (sigismember(set, s) == 1)
			out[n++] = s;
	return n;
}

int tw_add_signals(struct cfd_source **ret, struct cfd_token *tok,
		   struct cfd_watcher *w, const sigset_t *set)
{
	int sigs[_NSIG];

	return cfd_source_add_signals(ret, tok, w, sigs,
				      sigset_numbers(set, sigs));
}

int tw_block(const sigset_t *set)
{
	int sigs[_NSIG];

	return cfd_signals_block(sigs, sigset_numbers(set, sigs));
}

sigset_t tw_sigset(int first, ...)
{
	sigset_t set;
	va_list ap;

	sigemptyset(&set);
	va_start(ap, first);
	for (int s = first; s; s = va_arg(ap, int))
		sigaddset(&set, s);
	va_end(ap);
	return set;
}

void tw_block_test_signals(void)
{
	sigset_t set = tw_sigset(SIGUSR1, SIGUSR2, SIGTERM, SIGINT, 0);

	sigaddset(&set, SIGRTMIN + 1);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
}

/* ---- the default watcher ---- */

struct cfd_watcher *tw_default;

static void default_setup(void)
{
	tw_block_test_signals();
	ck_assert_int_eq(cfd_watcher_default(&tw_default), 0);
	t_fd_snapshot();
}

static bool always(struct cfd_token *tok, void *arg)
{
	(void)tok;
	(void)arg;
	return true;
}

void tw_quiesce(struct cfd_watcher *w)
{
	struct cfd_token *barrier;

	ck_assert_int_eq(cfd_token_new(&barrier, "quiesce"), 0);
	ck_assert_int_eq(cfd_source_add_condition(NULL, barrier, w, always,
						  NULL, CFD_SEC(1)),
			 0);
	ck_assert_int_eq(cfd_token_wait(barrier, CFD_MSEC(T_WAIT_MS)), 0);
	cfd_token_unref(barrier);
}

static void default_teardown(void)
{
	tw_quiesce(tw_default);
	tw_default = cfd_watcher_unref(tw_default);
}

TCase *tw_tcase_default(const char *name)
{
	TCase *tc = t_tcase(name);

	tcase_add_checked_fixture(tc, default_setup, default_teardown);
	return tc;
}

/* ---- threads and fds ---- */

bool tw_wait_thread_in_futex(pid_t tid)
{
	int64_t end = t_now_ns() + CFD_MSEC(T_WAIT_MS);
	char path[64], buf[128] = "";

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	while (t_now_ns() < end) {
		FILE *f = fopen(path, "re");

		buf[0] = '\0';
		if (f) {
			if (!fgets(buf, sizeof(buf), f))
				buf[0] = '\0';
			fclose(f);
		}
		if (buf[0] != '\0' && atol(buf) == SYS_futex)
			return true;
		usleep(200);
	}
	fprintf(stderr, "thread %d not seen in futex(); last: %s\n", (int)tid,
		buf[0] ? buf : "(gone)");
	return false;
}

void tw_eventfd_signal(int fd)
{
	uint64_t one = 1;

	ck_assert_int_eq(write(fd, &one, sizeof(one)), sizeof(one));
}

int tw_add_trigger(struct cfd_source **ret, struct cfd_token *tok,
		   struct cfd_watcher *w)
{
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	ck_assert_int_ge(efd, 0);
	ck_assert_int_eq(cfd_source_add_fd(ret, tok, w, efd), 0);
	return efd;
}
