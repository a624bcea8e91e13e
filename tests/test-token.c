/* SPDX-License-Identifier: MIT */
/*
 * Description: the token (lib/token.c): life cycle, trigger and the cause,
 * check, wait, the lazily made fd, argument errors, -ECHILD after fork, and
 * the examples (quick start, loop exit, raise-if-triggered, waiting for an
 * external signal) written in C.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

/* A pointer no constructor may write to a failed call's output. */
#define SENTINEL ((struct cfd_token *)0x5a5a5a5a)

/* ---- life cycle ---- */

START_TEST(test_new_and_name)
{
	struct cfd_token *tok = NULL;

	ck_assert_int_eq(cfd_token_new(&tok, "demo"), 0);
	ck_assert_ptr_nonnull(tok);
	ck_assert_str_eq(cfd_token_name(tok), "demo");
	ck_assert(!cfd_token_triggered(tok));
	ck_assert_int_eq(cfd_token_check(tok), 0);
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_NONE);
	ck_assert_ptr_null(cfd_token_origin(tok));
	ck_assert_ptr_null(cfd_token_unref(tok));
}
END_TEST

START_TEST(test_new_null_name_is_empty)
{
	struct cfd_token *tok = NULL;

	ck_assert_int_eq(cfd_token_new(&tok, NULL), 0);
	ck_assert_ptr_nonnull(cfd_token_name(tok));
	ck_assert_str_eq(cfd_token_name(tok), "");
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_new_name_is_copied)
{
	struct cfd_token *tok;
	char buf[16] = "original";

	ck_assert_int_eq(cfd_token_new(&tok, buf), 0);
	memcpy(buf, "changed!", 9);
	ck_assert_str_eq(cfd_token_name(tok), "original");
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_new_name_limit)
{
	char *name = malloc(4098);
	struct cfd_token *tok = SENTINEL;

	memset(name, 'n', 4097);
	name[4096] = '\0'; /* 4096 bytes: the longest name */
	ck_assert_int_eq(cfd_token_new(&tok, name), 0);
	ck_assert_uint_eq(strlen(cfd_token_name(tok)), 4096);
	ck_assert_str_eq(cfd_token_name(tok), name);
	cfd_token_unref(tok);

	name[4096] = 'n';
	name[4097] = '\0'; /* 4097: one too many */
	tok = SENTINEL;
	ck_assert_int_eq(cfd_token_new(&tok, name), -EINVAL);
	ck_assert_ptr_eq(tok, SENTINEL);
	free(name);
}
END_TEST

START_TEST(test_new_einval)
{
	ck_assert_int_eq(cfd_token_new(NULL, "x"), -EINVAL);
	ck_assert_int_eq(cfd_token_new(NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(test_ref_unref)
{
	struct cfd_token *tok;

	ck_assert_int_eq(cfd_token_new(&tok, "refs"), 0);
	ck_assert_ptr_eq(cfd_token_ref(tok), tok);
	ck_assert_ptr_eq(cfd_token_ref(tok), tok);
	/* unref always returns NULL, last reference or not */
	ck_assert_ptr_null(cfd_token_unref(tok));
	ck_assert_ptr_null(cfd_token_unref(tok));
	/* still alive: one reference left */
	ck_assert_str_eq(cfd_token_name(tok), "refs");
	ck_assert_int_eq(cfd_token_trigger(tok), 1);
	ck_assert(cfd_token_triggered(tok));
	ck_assert_ptr_null(cfd_token_unref(tok));

	ck_assert_ptr_null(cfd_token_ref(NULL));
	ck_assert_ptr_null(cfd_token_unref(NULL));
}
END_TEST

START_TEST(test_unrefp)
{
	struct cfd_token *tok, *none = NULL;

	ck_assert_int_eq(cfd_token_new(&tok, "p"), 0);
	cfd_token_unrefp(&tok);
	ck_assert_ptr_null(tok);
	cfd_token_unrefp(&none); /* a NULL token is fine */
	ck_assert_ptr_null(none);
}
END_TEST

START_TEST(test_unrefp_cleanup_attribute)
{
	int fd;

	{
		__attribute__((
		    cleanup(cfd_token_unrefp))) struct cfd_token *tok = NULL;

		ck_assert_int_eq(cfd_token_new(&tok, "scoped"), 0);
		fd = cfd_token_fd(tok);
		ck_assert_int_ge(fd, 0);
		ck_assert(t_fd_is_open(fd));
	}
	ck_assert(!t_fd_is_open(fd)); /* freed at the end of the scope */
}
END_TEST

START_TEST(test_free_closes_fd)
{
	struct cfd_token *tok;
	int fd;

	ck_assert_int_eq(cfd_token_new(&tok, "owner"), 0);
	fd = cfd_token_fd(tok);
	ck_assert_int_ge(fd, 0);
	cfd_token_ref(tok);
	cfd_token_unref(tok);
	ck_assert(t_fd_is_open(fd)); /* a reference is left */
	cfd_token_unref(tok);
	ck_assert(!t_fd_is_open(fd));
}
END_TEST

/* ---- trigger and the cause ---- */

START_TEST(test_trigger_first_wins)
{
	struct cfd_token *tok;

	ck_assert_int_eq(cfd_token_new(&tok, "demo"), 0);
	ck_assert_int_eq(cfd_token_trigger_msg(tok, "first"), 1);
	ck_assert_int_eq(cfd_token_trigger_msg(tok, "second"), 0);
	ck_assert_int_eq(cfd_token_trigger(tok), 0);
	ck_assert(cfd_token_triggered(tok));
	ck_assert_int_eq(cfd_token_check(tok), -ECANCELED);
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_MANUAL);
	ck_assert_ptr_eq(cfd_token_origin(tok), tok);
	ck_assert_str_eq(cfd_token_message(tok), "first");
	ck_assert_int_eq(cfd_token_signal(tok), 0);
	ck_assert_int_gt(cfd_token_trigger_time(tok), 0);
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_trigger_plain_has_no_message)
{
	struct cfd_token *tok;

	ck_assert_int_eq(cfd_token_new(&tok, "plain"), 0);
	ck_assert_int_eq(cfd_token_trigger(tok), 1);
	ck_assert_ptr_null(cfd_token_message(tok));
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_MANUAL);
	/* a later message does not attach itself */
	ck_assert_int_eq(cfd_token_trigger_msg(tok, "late"), 0);
	ck_assert_ptr_null(cfd_token_message(tok));
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_trigger_msg_null_message)
{
	struct cfd_token *tok;

	ck_assert_int_eq(cfd_token_new(&tok, "nullmsg"), 0);
	ck_assert_int_eq(cfd_token_trigger_msg(tok, NULL), 1);
	ck_assert(cfd_token_triggered(tok));
	ck_assert_ptr_null(cfd_token_message(tok));
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_trigger_msg_is_copied)
{
	struct cfd_token *tok;
	char msg[32] = "shutting down";

	ck_assert_int_eq(cfd_token_new(&tok, "copy"), 0);
	ck_assert_int_eq(cfd_token_trigger_msg(tok, msg), 1);
	memcpy(msg, "overwritten!!", 14);
	ck_assert_ptr_ne(cfd_token_message(tok), msg);
	ck_assert_str_eq(cfd_token_message(tok), "shutting down");
	cfd_token_unref(tok);
}
END_TEST

/* A token triggered because another (not its parent) did takes that
 * token's cause and keeps its origin alive. */
START_TEST(test_trigger_from_takes_the_cause)
{
	struct cfd_token *inner = t_new_token("inner");
	struct cfd_token *child = t_new_child(inner, "child");
	struct cfd_token *outer = t_new_token("outer");
	struct cfd_token *other = t_new_token("other");

	ck_assert_int_eq(cfd_token_trigger_from(outer, child), -EINVAL);
	ck_assert_int_eq(cfd_token_trigger_from(NULL, child), -EINVAL);
	ck_assert_int_eq(cfd_token_trigger_from(outer, NULL), -EINVAL);
	ck_assert_int_eq(cfd_token_trigger_msg(inner, "stop"), 1);
	ck_assert_int_eq(cfd_token_trigger_from(child, child), -EINVAL);
	ck_assert_int_eq(cfd_token_trigger_from(outer, child), 1);
	ck_assert_int_eq(cfd_token_trigger_from(outer, child), 0);
	ck_assert_int_eq(cfd_token_reason(outer), CFD_REASON_PARENT);
	ck_assert_ptr_eq(cfd_token_origin(outer), inner);
	ck_assert_str_eq(cfd_token_message(outer), "stop");
	/* the origin lives as long as outer does */
	cfd_token_unref(child);
	cfd_token_unref(inner);
	ck_assert_str_eq(cfd_token_name(cfd_token_origin(outer)), "inner");
	ck_assert_str_eq(cfd_token_message(outer), "stop");
	/* a token triggered already keeps its own cause */
	cfd_token_trigger(other);
	ck_assert_int_eq(cfd_token_trigger_from(other, outer), 0);
	ck_assert_ptr_eq(cfd_token_origin(other), other);
	cfd_token_unref(other);
	cfd_token_unref(outer);
}
END_TEST

START_TEST(test_trigger_einval)
{
	ck_assert_int_eq(cfd_token_trigger(NULL), -EINVAL);
	ck_assert_int_eq(cfd_token_trigger_msg(NULL, "x"), -EINVAL);
	ck_assert_int_eq(cfd_token_trigger_msg(NULL, NULL), -EINVAL);
}
END_TEST

/*
 * The trigger time is on the CLOCK_MONOTONIC timeline, but the library may
 * stamp it with CLOCK_MONOTONIC_COARSE (same timeline, the kernel tick's
 * resolution): it may then read earlier than a CLOCK_MONOTONIC reading
 * taken just before the trigger.  The coarse clock can lag by more than its
 * nominal resolution (5.2 ms against a 4 ms tick measured in a VM), so the
 * bound is generous: ten ticks, and at least 100 ms.
 */
START_TEST(test_trigger_time)
{
	struct cfd_token *tok;
	struct timespec res;
	int64_t before, after, at, tick;

	ck_assert_int_eq(cfd_token_new(&tok, "clock"), 0);
	ck_assert_int_eq(cfd_token_trigger_time(tok), 0); /* pending */
	before = t_now_ns();
	cfd_token_trigger(tok);
	after = t_now_ns();
	at = cfd_token_trigger_time(tok);
	ck_assert_int_eq(clock_getres(CLOCK_MONOTONIC_COARSE, &res), 0);
	tick = (int64_t)res.tv_sec * 1000000000 + res.tv_nsec;
	tick = 10 * tick > CFD_MSEC(100) ? 10 * tick : CFD_MSEC(100);
	ck_assert_int_ge(at, before - tick);
	ck_assert_int_le(at, after);
	/* the cause never changes */
	cfd_token_trigger_msg(tok, "again");
	ck_assert_int_eq(cfd_token_trigger_time(tok), at);
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_pending_cause)
{
	struct cfd_token *tok;

	ck_assert_int_eq(cfd_token_new(&tok, "pending"), 0);
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_NONE);
	ck_assert_ptr_null(cfd_token_origin(tok));
	ck_assert_ptr_null(cfd_token_message(tok));
	ck_assert_int_eq(cfd_token_signal(tok), 0);
	ck_assert_int_eq(cfd_token_trigger_time(tok), 0);
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_cause_null)
{
	ck_assert(!cfd_token_triggered(NULL));
	ck_assert_int_eq(cfd_token_check(NULL), -EINVAL);
	ck_assert_int_eq(cfd_token_reason(NULL), -EINVAL);
	ck_assert_ptr_null(cfd_token_origin(NULL));
	ck_assert_ptr_null(cfd_token_message(NULL));
	ck_assert_int_eq(cfd_token_signal(NULL), -EINVAL);
	ck_assert_int_eq(cfd_token_trigger_time(NULL), -EINVAL);
	ck_assert_ptr_null(cfd_token_name(NULL));
}
END_TEST

START_TEST(test_check)
{
	struct cfd_token *tok;

	ck_assert_int_eq(cfd_token_new(&tok, "check"), 0);
	ck_assert_int_eq(cfd_token_check(tok), 0);
	ck_assert(!cfd_token_triggered(tok));
	cfd_token_trigger(tok);
	ck_assert_int_eq(cfd_token_check(tok), -ECANCELED);
	ck_assert(cfd_token_triggered(tok));
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_reason_names)
{
	static const char *const want[] = {
		"none",	     "manual", "timeout", "signal", "fd",
		"condition", "parent", "all-of",  "gone",
	};

	ck_assert_str_eq(cfd_reason_name(CFD_REASON_NONE), "none");
	ck_assert_str_eq(cfd_reason_name(CFD_REASON_MANUAL), "manual");
	ck_assert_str_eq(cfd_reason_name(CFD_REASON_TIMEOUT), "timeout");
	ck_assert_str_eq(cfd_reason_name(CFD_REASON_SIGNAL), "signal");
	ck_assert_str_eq(cfd_reason_name(CFD_REASON_FD), "fd");
	ck_assert_str_eq(cfd_reason_name(CFD_REASON_CONDITION), "condition");
	ck_assert_str_eq(cfd_reason_name(CFD_REASON_PARENT), "parent");
	ck_assert_str_eq(cfd_reason_name(CFD_REASON_ALL_OF), "all-of");
	for (int i = 0; i < 9; i++)
		ck_assert_str_eq(cfd_reason_name(i), want[i]);
	/* total: never NULL, a printf("%s") stays safe */
	ck_assert_str_eq(cfd_reason_name(-1), "unknown");
	ck_assert_str_eq(cfd_reason_name(9), "unknown");
	ck_assert_str_eq(cfd_reason_name(INT_MAX), "unknown");
	ck_assert_str_eq(cfd_reason_name(INT_MIN), "unknown");
}
END_TEST

/* ---- wait ---- */

START_TEST(test_wait_poll)
{
	struct cfd_token *tok;
	int64_t t0;

	ck_assert_int_eq(cfd_token_new(&tok, "poll"), 0);
	t0 = t_now_ns();
	ck_assert_int_eq(cfd_token_wait(tok, 0), -ETIMEDOUT);
	ck_assert_int_lt(t_now_ns() - t0, CFD_SEC(1)); /* did not block */
	cfd_token_trigger(tok);
	ck_assert_int_eq(cfd_token_wait(tok, 0), 0);
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_wait_triggered_returns_at_once)
{
	struct cfd_token *tok;
	int64_t t0;

	ck_assert_int_eq(cfd_token_new(&tok, "done"), 0);
	cfd_token_trigger(tok);
	t0 = t_now_ns();
	ck_assert_int_eq(cfd_token_wait(tok, CFD_FOREVER), 0);
	ck_assert_int_eq(cfd_token_wait(tok, -12345), 0);
	ck_assert_int_eq(cfd_token_wait(tok, CFD_SEC(100)), 0);
	ck_assert_int_eq(cfd_token_wait(tok, INT64_MAX), 0);
	ck_assert_int_lt(t_now_ns() - t0, CFD_SEC(1));
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_wait_timeout)
{
	struct cfd_token *tok;
	int64_t t0, took;

	ck_assert_int_eq(cfd_token_new(&tok, "slow"), 0);
	t0 = t_now_ns();
	ck_assert_int_eq(cfd_token_wait(tok, CFD_MSEC(50)), -ETIMEDOUT);
	took = t_now_ns() - t0;
	ck_assert_int_ge(took, CFD_MSEC(50));
	ck_assert(!cfd_token_triggered(tok));
	/* 1 ns: still a timeout, never a hang */
	ck_assert_int_eq(cfd_token_wait(tok, 1), -ETIMEDOUT);
	cfd_token_unref(tok);
}
END_TEST

struct waiter {
	struct cfd_token *tok;
	int64_t timeout;
	_Atomic pid_t tid;
	int ret;
	pthread_t th;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;

	atomic_store(&w->tid, t_gettid());
	w->ret = cfd_token_wait(w->tok, w->timeout);
	return NULL;
}

static void waiter_start(struct waiter *w, struct cfd_token *tok,
			 int64_t timeout)
{
	w->tok = tok;
	w->timeout = timeout;
	atomic_init(&w->tid, 0);
	w->ret = 1;
	ck_assert_int_eq(pthread_create(&w->th, NULL, waiter_main, w), 0);
}

/* Let the waiter reach its sleep, to exercise the futex path (the verdict
 * never depends on it). */
static void waiter_settle(struct waiter *w)
{
	int64_t end = t_now_ns() + CFD_MSEC(T_WAIT_MS);

	while (!atomic_load(&w->tid) && t_now_ns() < end)
		sched_yield();
	t_thread_sleeping(atomic_load(&w->tid), 2000);
}

START_TEST(test_wait_woken_by_other_thread)
{
	static const int64_t timeouts[] = { CFD_FOREVER, INT64_MAX,
					    CFD_SEC(600) };
	struct waiter w[3];
	struct cfd_token *tok;

	ck_assert_int_eq(cfd_token_new(&tok, "wake"), 0);
	for (int i = 0; i < 3; i++)
		waiter_start(&w[i], tok, timeouts[i]);
	for (int i = 0; i < 3; i++)
		waiter_settle(&w[i]);
	ck_assert_int_eq(cfd_token_trigger(tok), 1);
	for (int i = 0; i < 3; i++) {
		pthread_join(w[i].th, NULL);
		ck_assert_int_eq(w[i].ret, 0);
	}
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_wait_needs_no_fd)
{
	struct cfd_token *tok;
	struct waiter w;
	int before = t_count_fds();

	ck_assert_int_eq(cfd_token_new(&tok, "nofd"), 0);
	ck_assert_int_eq(cfd_token_wait(tok, CFD_MSEC(1)), -ETIMEDOUT);
	waiter_start(&w, tok, CFD_FOREVER);
	waiter_settle(&w);
	ck_assert_int_eq(t_count_fds(), before);
	cfd_token_trigger(tok);
	pthread_join(w.th, NULL);
	ck_assert_int_eq(w.ret, 0);
	ck_assert_int_eq(t_count_fds(), before);
	cfd_token_unref(tok);
}
END_TEST

/* A signal delivered to the waiter (handler without SA_RESTART) neither
 * ends the wait early nor stretches its deadline much. */
static void on_sigusr1(int sig)
{
	(void)sig;
}

START_TEST(test_wait_survives_signals)
{
	struct sigaction sa = { .sa_handler = on_sigusr1 };
	struct cfd_token *tok;
	struct waiter w[2];
	int64_t t0;

	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "signalled"), 0);

	t0 = t_now_ns();
	waiter_start(&w[0], tok, CFD_MSEC(300));
	waiter_start(&w[1], tok, CFD_FOREVER);
	for (int i = 0; i < 2; i++)
		waiter_settle(&w[i]);
	for (int k = 0; k < 5; k++) {
		for (int i = 0; i < 2; i++)
			pthread_kill(w[i].th, SIGUSR1);
		t_thread_sleeping(atomic_load(&w[1].tid), 100);
	}
	pthread_join(w[0].th, NULL);
	ck_assert_int_eq(w[0].ret, -ETIMEDOUT);
	ck_assert_int_ge(t_now_ns() - t0, CFD_MSEC(300));
	ck_assert(!cfd_token_triggered(tok));
	/* the endless one is still waiting, and wakes on the trigger */
	pthread_kill(w[1].th, SIGUSR1);
	cfd_token_trigger(tok);
	pthread_join(w[1].th, NULL);
	ck_assert_int_eq(w[1].ret, 0);
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_wait_einval)
{
	ck_assert_int_eq(cfd_token_wait(NULL, 0), -EINVAL);
	ck_assert_int_eq(cfd_token_wait(NULL, CFD_FOREVER), -EINVAL);
	ck_assert_int_eq(cfd_token_wait(NULL, CFD_SEC(1)), -EINVAL);
}
END_TEST

/* ---- the fd ---- */

START_TEST(test_fd_lazy_and_stable)
{
	struct cfd_token *tok;
	int before = t_count_fds(), fd, fl;

	ck_assert_int_eq(cfd_token_new(&tok, "lazy"), 0);
	ck_assert_int_eq(t_count_fds(), before); /* no fd until asked */
	fd = cfd_token_fd(tok);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(t_count_fds(), before + 1);
	ck_assert(t_fd_is_eventfd(fd));
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(cfd_token_fd(tok), fd);
	ck_assert_int_eq(t_count_fds(), before + 1);
	fl = fcntl(fd, F_GETFD);
	ck_assert(fl & FD_CLOEXEC);
	fl = fcntl(fd, F_GETFL);
	ck_assert(fl & O_NONBLOCK);
	cfd_token_unref(tok);
	ck_assert_int_eq(t_count_fds(), before);
}
END_TEST

START_TEST(test_fd_readable_on_trigger_and_stays)
{
	struct cfd_token *tok;
	int fd;

	ck_assert_int_eq(cfd_token_new(&tok, "latch"), 0);
	fd = cfd_token_fd(tok);
	ck_assert(!t_fd_readable(fd, 0));
	ck_assert_int_eq(t_eventfd_count(fd), 0);
	cfd_token_trigger(tok);
	ck_assert(t_fd_readable(fd, 0));
	/* nothing the library does drains it */
	cfd_token_trigger(tok);
	cfd_token_trigger_msg(tok, "again");
	ck_assert_int_eq(cfd_token_wait(tok, CFD_FOREVER), 0);
	ck_assert_int_eq(cfd_token_check(tok), -ECANCELED);
	ck_assert_int_eq(cfd_token_fd(tok), fd);
	(void)cfd_token_reason(tok);
	(void)cfd_token_message(tok);
	(void)cfd_token_origin(tok);
	for (int i = 0; i < 100; i++)
		ck_assert(t_fd_readable(fd, 0));
	ck_assert_int_ge(t_eventfd_count(fd), 1);
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_fd_born_readable_after_trigger)
{
	struct cfd_token *tok;
	int fd;

	ck_assert_int_eq(cfd_token_new(&tok, "late-fd"), 0);
	cfd_token_trigger(tok);
	fd = cfd_token_fd(tok);
	ck_assert_int_ge(fd, 0);
	ck_assert(t_fd_readable(fd, 0));
	ck_assert_int_ge(t_eventfd_count(fd), 1);
	ck_assert_int_eq(cfd_token_fd(tok), fd); /* one fd per token */
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_fd_einval)
{
	ck_assert_int_eq(cfd_token_fd(NULL), -EINVAL);
}
END_TEST

/* A poll() on the fd wakes when another thread triggers. */
struct poller {
	int fd;
	_Atomic pid_t tid;
	int revents, ret;
};

static void *poller_main(void *arg)
{
	struct poller *p = arg;
	struct pollfd pfd = { .fd = p->fd, .events = POLLIN };

	atomic_store(&p->tid, t_gettid());
	do
		p->ret = poll(&pfd, 1, T_WAIT_MS);
	while (p->ret < 0 && errno == EINTR);
	p->revents = pfd.revents;
	return NULL;
}

START_TEST(test_fd_wakes_poll_in_other_thread)
{
	struct poller p = { .ret = -2 };
	struct cfd_token *tok;
	pthread_t th;

	ck_assert_int_eq(cfd_token_new(&tok, "poller"), 0);
	p.fd = cfd_token_fd(tok);
	atomic_init(&p.tid, 0);
	ck_assert_int_eq(pthread_create(&th, NULL, poller_main, &p), 0);
	while (!atomic_load(&p.tid))
		sched_yield();
	t_thread_sleeping(atomic_load(&p.tid), 2000);
	cfd_token_trigger(tok);
	pthread_join(th, NULL);
	ck_assert_int_eq(p.ret, 1);
	ck_assert(p.revents & POLLIN);
	cfd_token_unref(tok);
}
END_TEST

/* ---- -ECHILD: a token used in a process other than its creator ---- */

struct inherited {
	struct cfd_token *pending, *done;
	int pending_fd;
};

static int echild_child(void *arg)
{
	struct inherited *in = arg;
	struct cfd_token *mine, *p = in->pending;

	T_CHILD_CHECK(cfd_token_trigger(in->pending) == -ECHILD);
	T_CHILD_CHECK(cfd_token_trigger_msg(in->pending, "x") == -ECHILD);
	T_CHILD_CHECK(cfd_token_trigger(in->done) == -ECHILD);
	T_CHILD_CHECK(cfd_token_check(in->pending) == -ECHILD);
	T_CHILD_CHECK(cfd_token_check(in->done) == -ECHILD);
	T_CHILD_CHECK(cfd_token_wait(in->pending, 0) == -ECHILD);
	/* must not block: the trigger could never come */
	T_CHILD_CHECK(cfd_token_wait(in->pending, CFD_FOREVER) == -ECHILD);
	T_CHILD_CHECK(cfd_token_wait(in->done, CFD_FOREVER) == -ECHILD);
	T_CHILD_CHECK(cfd_token_fd(in->pending) == -ECHILD);
	T_CHILD_CHECK(cfd_token_fd(in->done) == -ECHILD);
	T_CHILD_CHECK(cfd_token_reason(in->done) == -ECHILD);
	T_CHILD_CHECK(cfd_token_signal(in->done) == -ECHILD);
	T_CHILD_CHECK(cfd_token_trigger_time(in->done) == -ECHILD);
	T_CHILD_CHECK(cfd_token_origin(in->done) == NULL);
	T_CHILD_CHECK(cfd_token_message(in->done) == NULL);
	/* the inherited fd itself is untouched by the failed trigger */
	T_CHILD_CHECK(!t_fd_readable(in->pending_fd, 0));

	/* unref of an inherited token is a no-op: dropping "the" reference
	 * several times frees nothing (freed memory would be poisoned by
	 * MALLOC_PERTURB_ or caught by ASan) */
	T_CHILD_CHECK(cfd_token_unref(in->pending) == NULL);
	T_CHILD_CHECK(cfd_token_unref(in->pending) == NULL);
	T_CHILD_CHECK(cfd_token_unref(in->done) == NULL);
	T_CHILD_CHECK(strcmp(cfd_token_name(in->pending), "inherited") == 0);
	T_CHILD_CHECK(strcmp(cfd_token_name(in->done), "done") == 0);
	T_CHILD_CHECK(t_fd_is_open(in->pending_fd));
	cfd_token_unrefp(&p);
	T_CHILD_CHECK(p == NULL);
	T_CHILD_CHECK(t_fd_is_open(in->pending_fd));

	/* the child's own tokens work */
	T_CHILD_CHECK(cfd_token_new(&mine, "child's own") == 0);
	T_CHILD_CHECK(cfd_token_check(mine) == 0);
	T_CHILD_CHECK(cfd_token_fd(mine) >= 0);
	T_CHILD_CHECK(cfd_token_trigger_msg(mine, "bye") == 1);
	T_CHILD_CHECK(cfd_token_wait(mine, CFD_FOREVER) == 0);
	T_CHILD_CHECK(t_fd_readable(cfd_token_fd(mine), 0));
	T_CHILD_CHECK(cfd_token_origin(mine) == mine);
	T_CHILD_CHECK(strcmp(cfd_token_message(mine), "bye") == 0);
	cfd_token_unref(mine);
	return 0;
}

START_TEST(test_echild_after_fork)
{
	struct inherited in;

	ck_assert_int_eq(cfd_token_new(&in.pending, "inherited"), 0);
	ck_assert_int_eq(cfd_token_new(&in.done, "done"), 0);
	in.pending_fd = cfd_token_fd(in.pending);
	ck_assert_int_ge(in.pending_fd, 0);
	ck_assert_int_eq(cfd_token_trigger_msg(in.done, "parent"), 1);

	ck_assert_int_eq(t_in_child(echild_child, &in), 0);

	/* the parent's tokens are as they were, and still work */
	ck_assert(!cfd_token_triggered(in.pending));
	ck_assert(!t_fd_readable(in.pending_fd, 0));
	ck_assert_int_eq(cfd_token_trigger(in.pending), 1);
	ck_assert(t_fd_readable(in.pending_fd, 0));
	ck_assert_str_eq(cfd_token_message(in.done), "parent");
	cfd_token_unref(in.pending);
	cfd_token_unref(in.done);
}
END_TEST

/* ---- the examples, in C ---- */

/*
 * Quick start: a worker prints "started task", blocks in poll() on the
 * token's fd, and prints "task cancelled" when main triggers the token.
 * stdout is captured in a memfd and compared.
 */
struct quick {
	struct cfd_token *token, *started;
	_Atomic pid_t tid;
	int poll_ret;
	char reason[16], origin[16];
};

static void *some_task(void *arg)
{
	struct quick *q = arg;
	struct pollfd pfd = { .events = POLLIN };

	atomic_store(&q->tid, t_gettid());
	printf("started task\n");
	fflush(stdout);
	pfd.fd = cfd_token_fd(q->token);
	cfd_token_trigger(q->started);
	do
		q->poll_ret = poll(&pfd, 1, T_WAIT_MS);
	while (q->poll_ret < 0 && errno == EINTR);
	if (q->poll_ret == 1 && cfd_token_triggered(q->token)) {
		printf("task cancelled\n");
		fflush(stdout);
	}
	snprintf(q->reason, sizeof(q->reason), "%s",
		 cfd_reason_name(cfd_token_reason(q->token)));
	snprintf(q->origin, sizeof(q->origin), "%s",
		 cfd_token_name(cfd_token_origin(q->token)));
	return NULL;
}

START_TEST(test_task_polling_the_token_fd_ends_on_trigger)
{
	struct quick q = { .poll_ret = -2 };
	char out[128] = "";
	int saved, mfd;
	ssize_t n;
	pthread_t th;

	mfd = memfd_create("stdout", MFD_CLOEXEC);
	ck_assert_int_ge(mfd, 0);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_eq(dup2(mfd, STDOUT_FILENO), STDOUT_FILENO);

	ck_assert_int_eq(cfd_token_new(&q.token, "demo"), 0);
	ck_assert_int_eq(cfd_token_new(&q.started, "started"), 0);
	atomic_init(&q.tid, 0);
	ck_assert_int_eq(pthread_create(&th, NULL, some_task, &q), 0);
	/* "give the task a moment to start": wait until it says so */
	ck_assert_int_eq(cfd_token_wait(q.started, CFD_MSEC(T_WAIT_MS)), 0);
	t_thread_sleeping(atomic_load(&q.tid), 2000); /* in poll(), likely */
	ck_assert_int_eq(cfd_token_trigger(q.token), 1);
	pthread_join(th, NULL);

	fflush(stdout);
	ck_assert_int_eq(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
	close(saved);
	n = pread(mfd, out, sizeof(out) - 1, 0);
	close(mfd);
	ck_assert_int_ge(n, 0);
	out[n] = '\0';

	ck_assert_int_eq(q.poll_ret, 1);
	ck_assert_str_eq(out, "started task\ntask cancelled\n");
	ck_assert_str_eq(q.reason, "manual");
	ck_assert_str_eq(q.origin, "demo");
	cfd_token_unref(q.token);
	cfd_token_unref(q.started);
}
END_TEST

/* Loop exit: while (!cfd_token_triggered(t)) { ... } */
struct looper {
	struct cfd_token *token, *running;
	long iterations;
};

static void *my_task_loop(void *arg)
{
	struct looper *l = arg;
	long n = 0;

	while (!cfd_token_triggered(l->token)) {
		n++; /* ... do something ... */
		if (n == 1000)
			cfd_token_trigger(l->running);
	}
	l->iterations = n;
	return NULL;
}

START_TEST(test_loop_until_triggered_exits_on_trigger)
{
	struct looper l = { .iterations = -1 };
	pthread_t th;

	ck_assert_int_eq(cfd_token_new(&l.token, "worker"), 0);
	ck_assert_int_eq(cfd_token_new(&l.running, "running"), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, my_task_loop, &l), 0);
	ck_assert_int_eq(cfd_token_wait(l.running, CFD_MSEC(T_WAIT_MS)), 0);
	cfd_token_trigger(l.token);
	pthread_join(th, NULL);
	ck_assert_int_ge(l.iterations, 1000);
	cfd_token_unref(l.token);
	cfd_token_unref(l.running);
}
END_TEST

/* Raise if triggered: each step starts with cfd_token_check(). */
static int do_steps(struct cfd_token *tok, int trigger_after, int *steps)
{
	for (;;) {
		int r = cfd_token_check(tok);

		if (r < 0)
			return r;
		/* ... do something; here the "something" cancels after
		 * trigger_after steps, as an outside event would */
		if (++*steps == trigger_after)
			cfd_token_trigger(tok);
	}
}

START_TEST(test_check_stops_the_steps_at_the_trigger)
{
	struct cfd_token *tok;
	int steps = 0;

	ck_assert_int_eq(cfd_token_new(&tok, "steps"), 0);
	ck_assert_int_eq(do_steps(tok, 5, &steps), -ECANCELED);
	ck_assert_int_eq(steps, 5);
	/* once triggered, not a single further step */
	steps = 0;
	ck_assert_int_eq(do_steps(tok, 1, &steps), -ECANCELED);
	ck_assert_int_eq(steps, 0);
	cfd_token_unref(tok);
}
END_TEST

struct raiser {
	struct cfd_token *token, *running;
	int ret;
	long steps;
};

static void *raising_task(void *arg)
{
	struct raiser *r = arg;

	for (;;) {
		r->ret = cfd_token_check(r->token);
		if (r->ret < 0)
			return NULL;
		if (++r->steps == 100)
			cfd_token_trigger(r->running);
	}
}

START_TEST(test_check_stops_a_thread_triggered_from_main)
{
	struct raiser r = { .ret = 1 };
	pthread_t th;

	ck_assert_int_eq(cfd_token_new(&r.token, "worker"), 0);
	ck_assert_int_eq(cfd_token_new(&r.running, "running"), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, raising_task, &r), 0);
	ck_assert_int_eq(cfd_token_wait(r.running, CFD_MSEC(T_WAIT_MS)), 0);
	cfd_token_trigger(r.token);
	pthread_join(th, NULL);
	ck_assert_int_eq(r.ret, -ECANCELED);
	ck_assert_int_ge(r.steps, 100);
	cfd_token_unref(r.token);
	cfd_token_unref(r.running);
}
END_TEST

/*
 * Waiting for an external signal: main waits on the token until a worker
 * has done its work and triggers it; the work is visible after the wait.
 */
struct work {
	struct cfd_token *token;
	long result;
};

static void *do_work(void *arg)
{
	struct work *w = arg;
	long sum = 0;

	for (long i = 1; i <= 100000; i++)
		sum += i;
	w->result = sum;
	cfd_token_trigger_msg(w->token, "work done");
	return NULL;
}

START_TEST(test_wait_returns_when_a_worker_triggers)
{
	struct work w = { .result = 0 };
	pthread_t th;

	ck_assert_int_eq(cfd_token_new(&w.token, "worker"), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, do_work, &w), 0);
	/* wait for work to be completed before proceeding */
	ck_assert_int_eq(cfd_token_wait(w.token, CFD_FOREVER), 0);
	ck_assert_int_eq(w.result, 5000050000L);
	ck_assert_str_eq(cfd_token_message(w.token), "work done");
	pthread_join(th, NULL);
	cfd_token_unref(w.token);
}
END_TEST

START_TEST(test_fd_is_readable_when_a_worker_triggers)
{
	struct work w = { .result = 0 };
	pthread_t th;
	int fd;

	ck_assert_int_eq(cfd_token_new(&w.token, "worker"), 0);
	fd = cfd_token_fd(w.token);
	ck_assert_int_eq(pthread_create(&th, NULL, do_work, &w), 0);
	ck_assert(t_fd_readable(fd, T_WAIT_MS));
	ck_assert(cfd_token_triggered(w.token));
	ck_assert_int_eq(w.result, 5000050000L);
	pthread_join(th, NULL);
	cfd_token_unref(w.token);
}
END_TEST

static Suite *token_suite(void)
{
	Suite *s = suite_create("token");
	TCase *tc;

	tc = t_tcase("life");
	tcase_add_test(tc, test_new_and_name);
	tcase_add_test(tc, test_new_null_name_is_empty);
	tcase_add_test(tc, test_new_name_is_copied);
	tcase_add_test(tc, test_new_name_limit);
	tcase_add_test(tc, test_new_einval);
	tcase_add_test(tc, test_ref_unref);
	tcase_add_test(tc, test_unrefp);
	tcase_add_test(tc, test_unrefp_cleanup_attribute);
	tcase_add_test(tc, test_free_closes_fd);
	suite_add_tcase(s, tc);

	tc = t_tcase("trigger");
	tcase_add_test(tc, test_trigger_first_wins);
	tcase_add_test(tc, test_trigger_plain_has_no_message);
	tcase_add_test(tc, test_trigger_msg_null_message);
	tcase_add_test(tc, test_trigger_msg_is_copied);
	tcase_add_test(tc, test_trigger_einval);
	tcase_add_test(tc, test_trigger_from_takes_the_cause);
	tcase_add_test(tc, test_trigger_time);
	tcase_add_test(tc, test_pending_cause);
	tcase_add_test(tc, test_cause_null);
	tcase_add_test(tc, test_check);
	tcase_add_test(tc, test_reason_names);
	suite_add_tcase(s, tc);

	tc = t_tcase("wait");
	tcase_add_test(tc, test_wait_poll);
	tcase_add_test(tc, test_wait_triggered_returns_at_once);
	tcase_add_test(tc, test_wait_timeout);
	tcase_add_test(tc, test_wait_woken_by_other_thread);
	tcase_add_test(tc, test_wait_needs_no_fd);
	tcase_add_test(tc, test_wait_survives_signals);
	tcase_add_test(tc, test_wait_einval);
	suite_add_tcase(s, tc);

	tc = t_tcase("fd");
	tcase_add_test(tc, test_fd_lazy_and_stable);
	tcase_add_test(tc, test_fd_readable_on_trigger_and_stays);
	tcase_add_test(tc, test_fd_born_readable_after_trigger);
	tcase_add_test(tc, test_fd_einval);
	tcase_add_test(tc, test_fd_wakes_poll_in_other_thread);
	suite_add_tcase(s, tc);

	tc = t_tcase("fork");
	tcase_add_test(tc, test_echild_after_fork);
	suite_add_tcase(s, tc);

	tc = t_tcase("examples");
	tcase_add_test(tc, test_task_polling_the_token_fd_ends_on_trigger);
	tcase_add_test(tc, test_loop_until_triggered_exits_on_trigger);
	tcase_add_test(tc, test_check_stops_the_steps_at_the_trigger);
	tcase_add_test(tc, test_check_stops_a_thread_triggered_from_main);
	tcase_add_test(tc, test_wait_returns_when_a_worker_triggers);
	tcase_add_test(tc, test_fd_is_readable_when_a_worker_triggers);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(token_suite());
}
