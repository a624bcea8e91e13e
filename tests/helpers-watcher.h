/* SPDX-License-Identifier: MIT */
#ifndef CFD_TEST_HELPERS_WATCHER_H
#define CFD_TEST_HELPERS_WATCHER_H

/*
 * Shared by the watcher and source suites: driving an embedded watcher until
 * something happens (bounded, never sleeping and hoping), the default
 * watcher fixture, signal sets, running checks in a forked child, and
 * waiting until another thread is asleep in the kernel (to force a race
 * instead of hoping for it).
 */

#include <cancelfd.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

/* Dispatch w whenever its fd is readable until done(arg) is true; false
 * if T_WAIT_MS passed first. */
static inline bool tw_dispatch_until_fn(struct cfd_watcher *w,
					bool (*done)(void *), void *arg)
{
	int64_t end = t_now_ns() + CFD_MSEC(T_WAIT_MS);

	while (!done(arg)) {
		int64_t left = end - t_now_ns();

		if (left <= 0)
			return false;
		t_fd_readable(cfd_watcher_fd(w), (int)(left / 1000000) + 1);
		ck_assert_int_ge(cfd_watcher_dispatch(w), 0);
	}
	return true;
}

static inline bool tw_token_done(void *tok)
{
	return cfd_token_triggered(tok);
}

static inline bool tw_dispatch_until(struct cfd_watcher *w,
				     struct cfd_token *tok)
{
	return tw_dispatch_until_fn(w, tw_token_done, tok);
}

/* A signal set from a 0-terminated list. */
/* The library takes signal numbers; these tests keep sets (they also
 * make masks of them).  Both helpers pass the set's members as numbers. */
static inline size_t tw_sigset_numbers(const sigset_t *set, int *out)
{
	size_t n = 0;

	for (int s = 1; s < _NSIG; s++)
		if (sigismember(set, s) == 1)
			out[n++] = s;
	return n;
}

static inline int tw_add_signals(struct cfd_source **ret, struct cfd_token *tok,
				 struct cfd_watcher *w, const sigset_t *set)
{
	int sigs[_NSIG];

	return cfd_source_add_signals(ret, tok, w, sigs,
				      tw_sigset_numbers(set, sigs));
}

static inline int tw_block(const sigset_t *set)
{
	int sigs[_NSIG];

	return cfd_signals_block(sigs, tw_sigset_numbers(set, sigs));
}

static inline sigset_t tw_sigset(int first, ...)
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

/* The signals the tests use, blocked in the calling thread: call it before
 * any thread exists (fixtures do). */
static inline void tw_block_test_signals(void)
{
	sigset_t set = tw_sigset(SIGUSR1, SIGUSR2, SIGTERM, SIGINT, 0);

	sigaddset(&set, SIGRTMIN + 1);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
}

/* The default watcher for the tests of a TCase: made in the setup, after
 * the signals are blocked and before the fd snapshot, since it keeps its
 * fds (and its thread) for the life of the process. */
static struct cfd_watcher *tw_default;

static inline void tw_default_setup(void)
{
	tw_block_test_signals();
	ck_assert_int_eq(cfd_watcher_default(&tw_default), 0);
	t_fd_snapshot();
}

static inline bool tw_true(struct cfd_token *tok, void *arg)
{
	(void)tok;
	(void)arg;
	return true;
}

/* Return once w's thread has finished whatever it was doing: fires on a
 * watcher thread close their fds (and free their tokens) after the token
 * the test waited for has triggered.  A predicate is called in a later
 * round of the thread's loop than any fire already under way. */
static inline void tw_quiesce(struct cfd_watcher *w)
{
	struct cfd_token *barrier;

	ck_assert_int_eq(cfd_token_new(&barrier, "quiesce"), 0);
	ck_assert_int_eq(cfd_source_add_condition(NULL, barrier, w, tw_true,
						  NULL, CFD_SEC(1)),
			 0);
	ck_assert_int_eq(cfd_token_wait(barrier, CFD_MSEC(T_WAIT_MS)), 0);
	cfd_token_unref(barrier);
}

static inline void tw_default_teardown(void)
{
	tw_quiesce(tw_default);
	tw_default = cfd_watcher_unref(tw_default);
}

static inline TCase *tw_tcase_default(const char *name)
{
	TCase *tc = t_tcase(name);

	tcase_add_checked_fixture(tc, tw_default_setup, tw_default_teardown);
	return tc;
}

/* Wait until thread tid sleeps in the kernel in futex() (a lock or a
 * wait of the library): the race a test wants is then certain, not hoped
 * for. */
static inline bool tw_wait_thread_in_futex(pid_t tid)
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

static inline void tw_eventfd_signal(int fd)
{
	uint64_t one = 1;

	ck_assert_int_eq(write(fd, &one, sizeof(one)), sizeof(one));
}

/* A source that fires when the test says so (tw_eventfd_signal() on the
 * eventfd returned, which the test closes): an fd source.  Unlike a short
 * timeout, it can never fire inside the add, in the calling thread, on a
 * host slow enough that the timeout has passed by then. */
static inline int tw_add_trigger(struct cfd_source **ret, struct cfd_token *tok,
				 struct cfd_watcher *w)
{
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	ck_assert_int_ge(efd, 0);
	ck_assert_int_eq(cfd_source_add_fd(ret, tok, w, efd), 0);
	return efd;
}

#endif
