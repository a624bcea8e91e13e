/* SPDX-License-Identifier: MIT */
/*
 * Description: signal sources (lib/source-signal.c): bad signal lists,
 * -EBUSY until the signals are blocked, the signal's number, one delivery
 * for every subscribed token, a signal owned by one watcher at a time, the
 * signalfd trap of a thread made before the block, after fork; and the
 * "graceful shutdown" example of cancelable-basics.txt.
 *
 * Every test but the examples drives an embedded watcher itself, so
 * nothing fires unless the test dispatches.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers-watcher.h"
#include "helpers.h"

/* SIGKILL, SIGSTOP, the C library's 32 and 33, 0, negative, past the last
 * signal, and lists that are empty or too long. */
START_TEST(test_signals_refuse_bad_numbers_and_lists)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = TW_SENTINEL;
	static const int bad[][2] = {
		{ SIGKILL, SIGUSR1 }, { SIGUSR1, SIGSTOP }, { 32, SIGUSR1 },
		{ 33, SIGUSR1 },      { 0, SIGUSR1 },	    { -1, SIGUSR1 },
		{ _NSIG, SIGUSR1 },   { 1000, SIGUSR1 },
	};
	int usr1 = SIGUSR1;

	tw_block_test_signals();
	ck_assert_int_eq(cfd_source_add_signals(&src, tok, w, NULL, 1),
			 -EINVAL);
	ck_assert_int_eq(cfd_source_add_signals(&src, tok, w, &usr1, 0),
			 -EINVAL);
	ck_assert_int_eq(cfd_source_add_signals(&src, tok, w, &usr1, 100000),
			 -EINVAL); /* more numbers than any set can hold */
	ck_assert_int_eq(cfd_signals_block(NULL, 1), -EINVAL);
	ck_assert_int_eq(cfd_signals_block(&usr1, 0), -EINVAL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(
		    cfd_source_add_signals(&src, tok, w, bad[i], 2), -EINVAL);
		ck_assert_int_eq(cfd_signals_block(bad[i], 2), -EINVAL);
	}
	ck_assert_int_eq(cfd_source_add_signals(&src, NULL, w, &usr1, 1),
			 -EINVAL);
	ck_assert_ptr_eq(src, TW_SENTINEL);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* A signal that is not blocked would be delivered (its default action may
 * kill the process), never read from the signalfd: -EBUSY until it is. */
START_TEST(test_signals_ebusy_until_blocked)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = TW_SENTINEL;
	sigset_t usr2 = tw_sigset(SIGUSR2, 0), both;
	sigset_t usr1 = tw_sigset(SIGUSR1, 0), mask;

	ck_assert_int_eq(pthread_sigmask(SIG_UNBLOCK, &usr2, NULL), 0);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &usr1, NULL), 0);
	both = tw_sigset(SIGUSR1, SIGUSR2, 0);
	ck_assert_int_eq(tw_add_signals(&src, tok, w, &usr2), -EBUSY);
	ck_assert_int_eq(tw_add_signals(&src, tok, w, &both), -EBUSY);
	/* bad arguments come first: a NULL token is -EINVAL */
	ck_assert_int_eq(tw_add_signals(&src, NULL, w, &usr2), -EINVAL);
	ck_assert_ptr_eq(src, TW_SENTINEL);
	ck_assert_int_eq(tw_block(&usr2), 0);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, NULL, &mask), 0);
	ck_assert_int_eq(sigismember(&mask, SIGUSR2), 1);
	ck_assert_int_eq(tw_add_signals(&src, tok, w, &both), 0);
	ck_assert_ptr_nonnull(src);
	cfd_source_free(src);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

START_TEST(test_signal_fires_with_its_number)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *tok = t_new_token("sig");
	struct cfd_source *src = NULL;
	sigset_t set = tw_sigset(SIGUSR1, SIGUSR2, 0);
	int fds;

	sigaddset(&set, SIGRTMIN + 1);
	tw_block_test_signals();
	fds = t_count_fds();
	ck_assert_int_eq(tw_add_signals(&src, tok, w, &set), 0);
	ck_assert_int_eq(t_count_fds(), fds + 1); /* the signalfd */
	ck_assert_int_eq(kill(getpid(), SIGRTMIN + 1), 0);
	ck_assert(tw_dispatch_until(w, tok));
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_SIGNAL);
	ck_assert_int_eq(cfd_token_signal(tok), SIGRTMIN + 1);
	ck_assert_ptr_eq(cfd_token_origin(tok), tok);
	ck_assert_int_eq(t_count_fds(), fds); /* closed when it fired */
	cfd_source_free(src);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* One signalfd per watcher; one delivery fires every token subscribed to
 * the signal, even when the signal was sent three times and coalesced. */
START_TEST(test_one_delivery_fires_every_subscribed_token)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *a = t_new_token("a"), *b = t_new_token("b");
	struct cfd_token *c = t_new_token("c");
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);
	sigset_t both = tw_sigset(SIGUSR1, SIGUSR2, 0);
	sigset_t usr2 = tw_sigset(SIGUSR2, 0);
	int fds;

	tw_block_test_signals();
	fds = t_count_fds();
	ck_assert_int_eq(tw_add_signals(NULL, a, w, &usr1), 0);
	ck_assert_int_eq(tw_add_signals(NULL, b, w, &both), 0);
	ck_assert_int_eq(tw_add_signals(NULL, c, w, &usr2), 0);
	ck_assert_int_eq(t_count_fds(), fds + 1);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
	ck_assert(t_fd_readable(cfd_watcher_fd(w), T_WAIT_MS));
	ck_assert_int_eq(cfd_watcher_dispatch(w), 1);
	ck_assert(cfd_token_triggered(a));
	ck_assert(cfd_token_triggered(b));
	ck_assert(!cfd_token_triggered(c));
	ck_assert_int_eq(cfd_token_signal(a), SIGUSR1);
	ck_assert_int_eq(cfd_token_signal(b), SIGUSR1);
	ck_assert_int_eq(t_count_fds(), fds + 1);	 /* c still listens */
	ck_assert(!t_fd_readable(cfd_watcher_fd(w), 0)); /* coalesced */
	cfd_token_trigger(c); /* last subscriber leaves: fd closed */
	ck_assert_int_eq(t_count_fds(), fds);
	cfd_token_unref(a);
	cfd_token_unref(b);
	cfd_token_unref(c);
	cfd_watcher_unref(w);
}
END_TEST

/* A signalfd read dequeues the signal: two watchers would steal it from
 * each other, so a signal belongs to one watcher at a time. */
START_TEST(test_signal_belongs_to_one_watcher_at_a_time)
{
	struct cfd_watcher *w1 = tw_new_watcher(), *w2 = tw_new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *s1 = NULL, *s2 = TW_SENTINEL, *s3 = NULL;
	sigset_t usr1 = tw_sigset(SIGUSR1, 0), usr2 = tw_sigset(SIGUSR2, 0);
	sigset_t both = tw_sigset(SIGUSR1, SIGUSR2, 0);

	tw_block_test_signals();
	ck_assert_int_eq(tw_add_signals(&s1, tok, w1, &usr1), 0);
	ck_assert_int_eq(tw_add_signals(&s2, tok, w2, &usr1), -EEXIST);
	ck_assert_int_eq(tw_add_signals(&s2, tok, w2, &both), -EEXIST);
	ck_assert_ptr_eq(s2, TW_SENTINEL);
	/* All or nothing: the failed set did not claim SIGUSR2 for w2. */
	ck_assert_int_eq(tw_add_signals(&s3, tok, w1, &usr2), 0);
	cfd_source_free(s3);
	/* The same watcher may take it again; once w1 lets it go, w2 may. */
	ck_assert_int_eq(tw_add_signals(&s3, tok, w1, &usr1), 0);
	cfd_source_free(s3);
	cfd_source_free(s1);
	ck_assert_int_eq(tw_add_signals(&s2, tok, w2, &both), 0);
	ck_assert_int_eq(tw_add_signals(&s1, tok, w1, &usr2), -EEXIST);
	cfd_source_free(s2);
	cfd_token_unref(tok);
	cfd_watcher_unref(w1);
	cfd_watcher_unref(w2);
}
END_TEST

/* The trap of signalfd: a thread created before the signal was blocked
 * has it unblocked, receives it, and its default action kills the whole
 * process.  Run in a child, which must die of the signal. */
struct park {
	int p[2];  /* the thread waits until p[1] closes */
	int ready; /* eventfd: the thread runs (its signal mask is set) */
};

static void *park(void *arg)
{
	struct park *pk = arg;
	uint64_t one = 1;
	char c;

	if (write(pk->ready, &one, sizeof(one)) < 0)
		abort();
	if (read(pk->p[0], &c, 1) < 0) {
		/* nothing */
	}
	return NULL;
}

/* Start a parked thread and wait until it runs: a thread that was created
 * but has not run yet may still have every signal blocked. */
static int park_start(pthread_t *th, struct park *pk)
{
	if (pipe(pk->p) < 0)
		return -1;
	pk->ready = eventfd(0, EFD_CLOEXEC);
	if (pk->ready < 0 || pthread_create(th, NULL, park, pk) != 0)
		return -1;
	return t_fd_readable(pk->ready, T_WAIT_MS) ? 0 : -1;
}

START_TEST(test_thread_made_before_the_block_takes_the_signal)
{
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		sigset_t usr1 = tw_sigset(SIGUSR1, 0);
		struct cfd_watcher *w;
		struct cfd_token *tok;
		struct park pk;
		pthread_t th;

		/* The wrong order: a thread first, then the block. */
		T_CHILD_CHECK(pthread_sigmask(SIG_UNBLOCK, &usr1, NULL) == 0);
		T_CHILD_CHECK(park_start(&th, &pk) == 0);
		T_CHILD_CHECK(tw_block(&usr1) == 0);
		T_CHILD_CHECK(cfd_watcher_new(&w) == 0);
		T_CHILD_CHECK(cfd_token_new(&tok, "t") == 0);
		T_CHILD_CHECK(tw_add_signals(NULL, tok, w, &usr1) == 0);
		kill(getpid(), SIGUSR1);
		tw_dispatch_until(w, tok);
		_exit(4); /* not reached: the thread took the signal */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGUSR1,
		      "status %#x", status);
}
END_TEST

static int child_block_before_thread(void *arg)
{
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);
	struct cfd_watcher *w;
	struct cfd_token *tok;
	struct park pk;
	pthread_t th;

	(void)arg;
	/* The right order: block in main, then make threads. */
	T_CHILD_CHECK(pthread_sigmask(SIG_UNBLOCK, &usr1, NULL) == 0);
	T_CHILD_CHECK(tw_block(&usr1) == 0);
	T_CHILD_CHECK(park_start(&th, &pk) == 0);
	T_CHILD_CHECK(cfd_watcher_new(&w) == 0);
	T_CHILD_CHECK(cfd_token_new(&tok, "t") == 0);
	T_CHILD_CHECK(tw_add_signals(NULL, tok, w, &usr1) == 0);
	T_CHILD_CHECK(kill(getpid(), SIGUSR1) == 0);
	T_CHILD_CHECK(tw_dispatch_until(w, tok));
	T_CHILD_CHECK(cfd_token_signal(tok) == SIGUSR1);
	close(pk.p[1]);
	T_CHILD_CHECK(pthread_join(th, NULL) == 0);
	return 0;
}

START_TEST(test_signal_fires_when_blocked_before_threads)
{
	ck_assert_int_eq(t_in_child(child_block_before_thread, NULL), 0);
}
END_TEST

/* ======================================================================
 * when the signalfd is closed
 * ==================================================================== */

/*
 * The watcher's signalfd, held for its last signal subscriber, is closed at
 * the first of: the source fires, it is freed, its token triggers for
 * another reason, its token is freed.
 */
enum { WAY_FIRES, WAY_FREED, WAY_TOKEN_TRIGGERED, WAY_TOKEN_FREED };

static void check_signalfd_closed(int way)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = NULL, **ret = &src;
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);
	int fds;

	tw_block_test_signals();
	fds = t_count_fds();
	if (way == WAY_TOKEN_FREED)
		ret = NULL; /* owned by its token and the watcher */
	ck_assert_int_eq(tw_add_signals(ret, tok, w, &usr1), 0);
	ck_assert_int_eq(t_count_fds(), fds + 1);
	switch (way) {
	case WAY_FIRES:
		kill(getpid(), SIGUSR1);
		ck_assert(tw_dispatch_until(w, tok));
		ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_SIGNAL);
		break;
	case WAY_FREED:
		src = cfd_source_free(src);
		break;
	case WAY_TOKEN_TRIGGERED:
		cfd_token_trigger(tok);
		break;
	case WAY_TOKEN_FREED:
		tok = cfd_token_unref(tok);
		break;
	}
	ck_assert_int_eq(t_count_fds(), fds);
	cfd_source_free(src);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}

START_TEST(test_signalfd_closed_when_it_fires)
{
	check_signalfd_closed(WAY_FIRES);
}
END_TEST

START_TEST(test_signalfd_closed_when_it_is_freed)
{
	check_signalfd_closed(WAY_FREED);
}
END_TEST

START_TEST(test_signalfd_closed_when_its_token_triggers)
{
	check_signalfd_closed(WAY_TOKEN_TRIGGERED);
}
END_TEST

START_TEST(test_signalfd_closed_when_its_token_is_freed)
{
	check_signalfd_closed(WAY_TOKEN_FREED);
}
END_TEST

/* ======================================================================
 * regressions: library bugs these tests found, fixed
 * ==================================================================== */

/* A watcher made in the parent (not the default one) owns SIGUSR1; in a
 * forked child that watcher is dead (-ECHILD), yet the child can never
 * watch SIGUSR1: sig_owner[] is only reset by the default watcher's atfork
 * handler, which is installed on first use of cfd_watcher_default(). */
static int child_claims_signal(void *arg)
{
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);
	struct cfd_watcher *w;
	struct cfd_token *tok;

	(void)arg;
	T_CHILD_CHECK(cfd_watcher_new(&w) == 0);
	T_CHILD_CHECK(cfd_token_new(&tok, "child") == 0);
	T_CHILD_CHECK(tw_add_signals(NULL, tok, w, &usr1) == 0);
	return 0;
}

START_TEST(test_child_can_watch_a_signal_a_parent_watcher_owned)
{
	struct cfd_watcher *w;
	struct cfd_token *tok = t_new_token("parent");
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);

	tw_block_test_signals();
	w = tw_new_watcher();
	ck_assert_int_eq(tw_add_signals(NULL, tok, w, &usr1), 0);
	ck_assert_int_eq(t_in_child(child_claims_signal, NULL), 0);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* ======================================================================
 * the example of cancelable-basics.txt
 * ==================================================================== */

/* "OS Signals - Graceful Shutdown": SIGTERM (a container orchestrator) or
 * SIGINT (Ctrl+C) cancels the server; cleanup still runs afterwards,
 * "shielded": under a fresh token with its own deadline, since anything
 * under the cancelled one is born cancelled. */
static void check_graceful_shutdown(int signo)
{
	int served = 0, requests[2], state[2];
	sigset_t set = tw_sigset(SIGTERM, SIGINT, 0);
	struct cfd_token *app = t_new_token("application"), *under, *shield;
	bool cleanup_ran = false;
	char c = 'r';

	/* In main() before any thread: the fixture did; this is the call. */
	ck_assert_int_eq(tw_block(&set), 0);
	ck_assert_int_eq(tw_add_signals(NULL, app, NULL, &set), 0);
	ck_assert_int_eq(pipe2(requests, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(state, O_CLOEXEC), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(write(requests[1], &c, 1), 1);
	/* run_server(): serve requests until the token is cancelled */
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = cfd_token_fd(app), .events = POLLIN },
			{ .fd = requests[0], .events = POLLIN },
		};

		ck_assert_int_ge(poll(p, 2, T_WAIT_MS), 1);
		if (p[0].revents)
			break;
		ck_assert_int_eq(read(requests[0], &c, 1), 1);
		if (++served == 3) /* the orchestrator says stop */
			ck_assert_int_eq(kill(getpid(), signo), 0);
	}
	ck_assert_int_eq(served, 3);
	ck_assert_int_eq(cfd_token_reason(app), CFD_REASON_SIGNAL);
	ck_assert_int_eq(cfd_token_signal(app), signo);
	/* finally: cleanup.  Not under the cancelled token ... */
	ck_assert_int_eq(cfd_token_child(&under, app, "cleanup"), 0);
	ck_assert(cfd_token_triggered(under));
	/* ... but shielded: a fresh token that only its own deadline can
	 * cancel ("Shutting down gracefully..."). */
	ck_assert_int_eq(cfd_token_new(&shield, "shutdown"), 0);
	ck_assert_int_eq(
	    cfd_source_add_timeout(NULL, shield, NULL, CFD_SEC(30)), 0);
	ck_assert_int_eq(write(state[1], "saved", 5), 5); /* save_state() */
	{
		struct pollfd p[2] = {
			{ .fd = cfd_token_fd(shield), .events = POLLIN },
			{ .fd = state[0], .events = POLLIN },
		};

		ck_assert_int_eq(poll(p, 2, T_WAIT_MS), 1);
		ck_assert(p[1].revents & POLLIN);
		cleanup_ran = !cfd_token_triggered(shield);
	}
	ck_assert(cleanup_ran); /* "Shutdown complete" */
	ck_assert(cfd_token_triggered(app));
	close(requests[0]);
	close(requests[1]);
	close(state[0]);
	close(state[1]);
	cfd_token_unref(shield);
	cfd_token_unref(under);
	cfd_token_unref(app);
}

START_TEST(test_sigterm_stops_the_server_and_shielded_cleanup_runs)
{
	check_graceful_shutdown(SIGTERM);
}
END_TEST

START_TEST(test_sigint_stops_the_server_and_shielded_cleanup_runs)
{
	check_graceful_shutdown(SIGINT);
}
END_TEST

static Suite *source_signal_suite(void)
{
	Suite *s = suite_create("source-signal");
	TCase *tc;

	tc = t_tcase("signal");
	tcase_add_test(tc, test_signals_refuse_bad_numbers_and_lists);
	tcase_add_test(tc, test_signals_ebusy_until_blocked);
	tcase_add_test(tc, test_signal_fires_with_its_number);
	tcase_add_test(tc, test_one_delivery_fires_every_subscribed_token);
	tcase_add_test(tc, test_signal_belongs_to_one_watcher_at_a_time);
	tcase_add_test(tc, test_thread_made_before_the_block_takes_the_signal);
	tcase_add_test(tc, test_signal_fires_when_blocked_before_threads);
	tcase_add_test(tc, test_signalfd_closed_when_it_fires);
	tcase_add_test(tc, test_signalfd_closed_when_it_is_freed);
	tcase_add_test(tc, test_signalfd_closed_when_its_token_triggers);
	tcase_add_test(tc, test_signalfd_closed_when_its_token_is_freed);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("regressions", 10);
	tcase_add_test(tc,
		       test_child_can_watch_a_signal_a_parent_watcher_owned);
	suite_add_tcase(s, tc);

	tc = tw_tcase_default("example");
	tcase_add_test(tc,
		       test_sigterm_stops_the_server_and_shielded_cleanup_runs);
	tcase_add_test(tc,
		       test_sigint_stops_the_server_and_shielded_cleanup_runs);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(source_signal_suite());
}
