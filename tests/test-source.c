/* SPDX-License-Identifier: MIT */
/*
 * Description: sources (lib/source.c): timeouts and deadlines, signals,
 * foreign fds and conditions; their errors and edge cases; when their fds
 * are closed; freeing a source while it fires; sources added and removed
 * from other threads and from callbacks; and the seed examples of
 * cancelable-basics.txt, in C.
 *
 * Tests that need the default watcher use tw_tcase_default(): it blocks the
 * test signals, makes the default watcher before the fd snapshot and waits
 * for its thread to be idle before the fd check.  Every other test drives
 * an embedded watcher itself, so nothing fires unless the test dispatches:
 * that is what makes the orders asserted here certain rather than likely.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers-watcher.h"
#include "helpers.h"

#define SENTINEL ((struct cfd_source *)(uintptr_t)0x5a5a)

static struct cfd_watcher *new_watcher(void)
{
	struct cfd_watcher *w = NULL;

	ck_assert_int_eq(cfd_watcher_new(&w), 0);
	return w;
}

/* Wait until the clock has passed t (bounded; the clock always moves). */
static void wait_past(int64_t t)
{
	while (t_now_ns() <= t) {
		struct timespec ts = { 0, 100000 };

		nanosleep(&ts, NULL);
	}
}

static int threads_in_process(void)
{
	char path[64];
	int n = 0;
	FILE *f;
	char line[256];

	snprintf(path, sizeof(path), "/proc/self/status");
	f = fopen(path, "re");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

/* ======================================================================
 * timeouts and deadlines
 * ==================================================================== */

START_TEST(test_timeout_einval)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = SENTINEL;

	ck_assert_int_eq(cfd_source_add_timeout(&src, tok, w, -1), -EINVAL);
	ck_assert_int_eq(cfd_source_add_timeout(&src, tok, w, INT64_MIN),
			 -EINVAL);
	/* now + timeout past INT64_MAX */
	ck_assert_int_eq(cfd_source_add_timeout(&src, tok, w, INT64_MAX),
			 -EINVAL);
	ck_assert_int_eq(
	    cfd_source_add_timeout(&src, tok, w, INT64_MAX - t_now_ns() + 1),
	    -EINVAL);
	ck_assert_int_eq(cfd_source_add_timeout(&src, NULL, w, CFD_SEC(1)),
			 -EINVAL);
	ck_assert_int_eq(cfd_source_add_deadline(&src, tok, w, -1), -EINVAL);
	ck_assert_int_eq(cfd_source_add_deadline(&src, tok, w, INT64_MIN),
			 -EINVAL);
	ck_assert_int_eq(cfd_source_add_deadline(&src, NULL, w, CFD_SEC(1)),
			 -EINVAL);
	ck_assert_ptr_eq(src, SENTINEL); /* untouched on failure */
	ck_assert(!cfd_token_triggered(tok));
	ck_assert_int_eq(cfd_watcher_dispatch(w), 0);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

static pthread_t fired_in;

static void record_thread(struct cfd_token *tok, void *arg)
{
	(void)tok;
	(void)arg;
	fired_in = pthread_self();
}

/* Zero fires at once, synchronously, in the calling thread: no source, no
 * fd, and with a NULL watcher not even the default watcher is made. */
START_TEST(test_timeout_zero_fires_at_once)
{
	struct cfd_token *tok = t_new_token("zero");
	struct cfd_source *src = SENTINEL;
	int fds = t_count_fds(), threads = threads_in_process();

	ck_assert_int_eq(
	    cfd_token_on_trigger(NULL, tok, record_thread, NULL, 0), 0);
	ck_assert_int_eq(cfd_source_add_timeout(&src, tok, NULL, 0), 0);
	ck_assert_ptr_null(src);
	ck_assert(cfd_token_triggered(tok));
	ck_assert(pthread_equal(fired_in, pthread_self()));
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_TIMEOUT);
	ck_assert_ptr_eq(cfd_token_origin(tok), tok);
	ck_assert_int_eq(t_count_fds(), fds);
	ck_assert_int_eq(threads_in_process(), threads); /* no default */
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_deadline_past_fires_at_once)
{
	struct cfd_watcher *w = new_watcher();
	int64_t past[] = { 0, 1, t_now_ns() - CFD_SEC(1), t_now_ns() };

	for (size_t i = 0; i < sizeof(past) / sizeof(past[0]); i++) {
		struct cfd_token *tok = t_new_token("past");
		struct cfd_source *src = SENTINEL;

		ck_assert_int_eq(cfd_source_add_deadline(&src, tok, w, past[i]),
				 0);
		ck_assert_ptr_null(src);
		ck_assert(cfd_token_triggered(tok));
		ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_TIMEOUT);
		cfd_token_unref(tok);
	}
	/* Nothing was put in the watcher. */
	ck_assert(!t_fd_readable(cfd_watcher_fd(w), 0));
	ck_assert_int_eq(cfd_watcher_dispatch(w), 0);
	cfd_watcher_unref(w);
}
END_TEST

START_TEST(test_timeout_fires)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = NULL;
	int64_t t0 = t_now_ns(), elapsed;
	int fds = t_count_fds();

	ck_assert_int_eq(cfd_source_add_timeout(&src, tok, w, CFD_MSEC(1)), 0);
	ck_assert_ptr_nonnull(src);
	ck_assert_int_eq(t_count_fds(), fds); /* the watcher's timerfd */
	/* An embedded watcher fires nothing until it is dispatched. */
	ck_assert(t_fd_readable(cfd_watcher_fd(w), T_WAIT_MS));
	ck_assert(!cfd_token_triggered(tok));
	ck_assert_int_eq(cfd_watcher_dispatch(w), 1);
	ck_assert(cfd_token_triggered(tok));
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_TIMEOUT);
	ck_assert_str_eq(cfd_reason_name(cfd_token_reason(tok)), "timeout");
	ck_assert_ptr_eq(cfd_token_origin(tok), tok);
	ck_assert_int_eq(cfd_token_signal(tok), 0);
	/* Not early: at least the timeout after the add (measured on the
	 * precise clock; the trigger time is the coarse one). */
	elapsed = t_now_ns() - t0;
	ck_assert_int_ge(elapsed, CFD_MSEC(1));
	ck_assert_int_lt(elapsed, CFD_SEC(T_WAIT_MS / 1000));
	ck_assert(!t_fd_readable(cfd_watcher_fd(w), 0));
	ck_assert_ptr_null(cfd_source_free(src)); /* after it fired */
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* The "deadline only shortens" rule: whichever order they are added in,
 * the earlier deadline fires and the later one changes nothing. */
START_TEST(test_deadline_only_shortens)
{
	struct cfd_watcher *w = new_watcher();

	for (int later_first = 0; later_first < 2; later_first++) {
		struct cfd_token *tok = t_new_token("shortens");
		struct cfd_source *early = NULL, *late = NULL;
		int64_t now = t_now_ns();
		int64_t late_at = now + CFD_SEC(3600);

		if (later_first)
			ck_assert_int_eq(
			    cfd_source_add_deadline(&late, tok, w, late_at), 0);
		ck_assert_int_eq(
		    cfd_source_add_timeout(&early, tok, w, CFD_MSEC(1)), 0);
		if (!later_first)
			ck_assert_int_eq(
			    cfd_source_add_deadline(&late, tok, w, late_at), 0);
		ck_assert(tw_dispatch_until(w, tok));
		ck_assert_int_lt(cfd_token_trigger_time(tok), late_at);
		ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_TIMEOUT);
		cfd_source_free(early);
		cfd_source_free(late);
		cfd_token_unref(tok);
	}
	cfd_watcher_unref(w);
}
END_TEST

/* A far deadline is accepted (and never fires); one at INT64_MAX too. */
START_TEST(test_deadline_far)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("far");
	struct cfd_source *a = NULL, *b = NULL;

	ck_assert_int_eq(cfd_source_add_deadline(&a, tok, w, INT64_MAX), 0);
	ck_assert_int_eq(cfd_source_add_deadline(&b, tok, w, INT64_MAX - 1), 0);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(cfd_watcher_dispatch(w), 0);
	ck_assert(!cfd_token_triggered(tok));
	cfd_source_free(a);
	cfd_source_free(b);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* Freed before its deadline: it never fires, even though the timer that
 * was armed for it may still go off. */
START_TEST(test_timeout_freed_never_fires)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("freed");
	struct cfd_source *src = NULL;
	int64_t at = t_now_ns() + CFD_MSEC(1);

	ck_assert_int_eq(cfd_source_add_deadline(&src, tok, w, at), 0);
	ck_assert_ptr_null(cfd_source_free(src));
	wait_past(at);
	t_fd_readable(cfd_watcher_fd(w), 100);
	ck_assert_int_ge(cfd_watcher_dispatch(w), 0);
	ck_assert(!cfd_token_triggered(tok));
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* Ten thousand timeouts with different deadlines, added in a shuffled
 * order: one fd for all of them, a third freed before they fire, and the
 * rest fire in deadline order. */
#define MANY 10000

struct many {
	struct cfd_token *tok[MANY];
	struct cfd_source *src[MANY];
	int64_t when[MANY];
	int order[MANY];
	int fired;
};

static struct many *many;

static void many_fired(struct cfd_token *tok, void *arg)
{
	(void)tok;
	many->order[many->fired++] = (int)(uintptr_t)arg;
}

static bool many_done(void *arg)
{
	int *expected = arg;

	return many->fired == *expected;
}

START_TEST(test_timeout_10000)
{
	struct cfd_watcher *w = new_watcher();
	uint32_t seed = 12345;
	int perm[MANY], fds, expected = 0;
	int64_t base;

	many = calloc(1, sizeof(*many));
	ck_assert_ptr_nonnull(many);
	for (int i = 0; i < MANY; i++)
		perm[i] = i;
	for (int i = MANY - 1; i > 0; i--) { /* Fisher-Yates, fixed seed */
		int j, t;

		seed = seed * 1103515245u + 12345u;
		j = (int)((seed >> 8) % (uint32_t)(i + 1));
		t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	fds = t_count_fds();
	/* Far enough ahead that no deadline has passed while adding, even
	 * on a slow host (a passed one would fire in this thread). */
	base = t_now_ns() + CFD_SEC(2);
	for (int i = 0; i < MANY; i++) {
		many->tok[i] = t_new_token("many");
		many->when[i] = base + (int64_t)perm[i] * CFD_USEC(10);
		ck_assert_int_eq(cfd_token_on_trigger(NULL, many->tok[i],
						      many_fired,
						      (void *)(uintptr_t)i, 0),
				 0);
		ck_assert_int_eq(cfd_source_add_deadline(&many->src[i],
							 many->tok[i], w,
							 many->when[i]),
				 0);
		ck_assert_ptr_nonnull(many->src[i]);
	}
	ck_assert_msg(many->fired == 0, "host too slow: a deadline passed");
	ck_assert_int_eq(t_count_fds(), fds); /* one timerfd for all */
	/* Remove a third of them, from all over the heap. */
	for (int i = 0; i < MANY; i += 3)
		many->src[i] = cfd_source_free(many->src[i]);
	expected = MANY - (MANY + 2) / 3;
	ck_assert(tw_dispatch_until_fn(w, many_done, &expected));
	for (int k = 1; k < many->fired; k++)
		ck_assert_int_le(many->when[many->order[k - 1]],
				 many->when[many->order[k]]);
	for (int i = 0; i < MANY; i++) {
		ck_assert(cfd_token_triggered(many->tok[i]) == (i % 3 != 0));
		if (i % 3)
			ck_assert_int_eq(cfd_token_reason(many->tok[i]),
					 CFD_REASON_TIMEOUT);
		cfd_source_free(many->src[i]);
		cfd_token_unref(many->tok[i]);
	}
	free(many);
	cfd_watcher_unref(w);
}
END_TEST

/* ======================================================================
 * signals
 * ==================================================================== */

START_TEST(test_signals_einval)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = SENTINEL;
	/* Each bad list: SIGKILL, SIGSTOP, the C library's 32 and 33, 0,
	 * negative, past the last signal. */
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
	ck_assert_ptr_eq(src, SENTINEL);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* A signal that is not blocked would be delivered (its default action may
 * kill the process), never read from the signalfd: -EBUSY until it is. */
START_TEST(test_signals_ebusy_until_blocked)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = SENTINEL;
	sigset_t usr2 = tw_sigset(SIGUSR2, 0), both;
	sigset_t usr1 = tw_sigset(SIGUSR1, 0), mask;

	ck_assert_int_eq(pthread_sigmask(SIG_UNBLOCK, &usr2, NULL), 0);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &usr1, NULL), 0);
	both = tw_sigset(SIGUSR1, SIGUSR2, 0);
	ck_assert_int_eq(tw_add_signals(&src, tok, w, &usr2), -EBUSY);
	ck_assert_int_eq(tw_add_signals(&src, tok, w, &both), -EBUSY);
	/* bad arguments come first: a NULL token is -EINVAL */
	ck_assert_int_eq(tw_add_signals(&src, NULL, w, &usr2), -EINVAL);
	ck_assert_ptr_eq(src, SENTINEL);
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

START_TEST(test_signals_fire_with_number)
{
	struct cfd_watcher *w = new_watcher();
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
START_TEST(test_signals_same_signal_two_tokens)
{
	struct cfd_watcher *w = new_watcher();
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
START_TEST(test_signals_two_watchers_eexist)
{
	struct cfd_watcher *w1 = new_watcher(), *w2 = new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *s1 = NULL, *s2 = SENTINEL, *s3 = NULL;
	sigset_t usr1 = tw_sigset(SIGUSR1, 0), usr2 = tw_sigset(SIGUSR2, 0);
	sigset_t both = tw_sigset(SIGUSR1, SIGUSR2, 0);

	tw_block_test_signals();
	ck_assert_int_eq(tw_add_signals(&s1, tok, w1, &usr1), 0);
	ck_assert_int_eq(tw_add_signals(&s2, tok, w2, &usr1), -EEXIST);
	ck_assert_int_eq(tw_add_signals(&s2, tok, w2, &both), -EEXIST);
	ck_assert_ptr_eq(s2, SENTINEL);
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

START_TEST(test_signals_trap_thread_before_block)
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
		if (pthread_sigmask(SIG_UNBLOCK, &usr1, NULL) ||
		    park_start(&th, &pk))
			_exit(2);
		if (tw_block(&usr1) || cfd_watcher_new(&w) ||
		    cfd_token_new(&tok, "t") ||
		    tw_add_signals(NULL, tok, w, &usr1))
			_exit(3);
		kill(getpid(), SIGUSR1);
		tw_dispatch_until(w, tok);
		_exit(4); /* not reached: the thread took the signal */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGUSR1,
		      "status %#x", status);
}
END_TEST

static void child_block_before_thread(void *arg)
{
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);
	struct cfd_watcher *w;
	struct cfd_token *tok;
	struct park pk;
	pthread_t th;

	(void)arg;
	/* The right order: block in main, then make threads. */
	TW_CHILD_CHECK(pthread_sigmask(SIG_UNBLOCK, &usr1, NULL) == 0);
	TW_CHILD_CHECK(tw_block(&usr1) == 0);
	TW_CHILD_CHECK(park_start(&th, &pk) == 0);
	TW_CHILD_CHECK(cfd_watcher_new(&w) == 0);
	TW_CHILD_CHECK(cfd_token_new(&tok, "t") == 0);
	TW_CHILD_CHECK(tw_add_signals(NULL, tok, w, &usr1) == 0);
	TW_CHILD_CHECK(kill(getpid(), SIGUSR1) == 0);
	TW_CHILD_CHECK(tw_dispatch_until(w, tok));
	TW_CHILD_CHECK(cfd_token_signal(tok) == SIGUSR1);
	close(pk.p[1]);
	TW_CHILD_CHECK(pthread_join(th, NULL) == 0);
}

START_TEST(test_signals_block_before_thread)
{
	tw_fork_check(child_block_before_thread, NULL);
}
END_TEST

/* ======================================================================
 * fds
 * ==================================================================== */

START_TEST(test_fd_errors)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = SENTINEL;
	int closed = eventfd(0, EFD_CLOEXEC), fds;
	FILE *regular = tmpfile();

	ck_assert_ptr_nonnull(regular);
	close(closed);
	fds = t_count_fds();
	ck_assert_int_eq(cfd_source_add_fd(&src, tok, w, -1), -EBADF);
	ck_assert_int_eq(cfd_source_add_fd(&src, tok, w, closed), -EBADF);
	ck_assert_int_eq(cfd_source_add_fd(&src, tok, w, INT32_MAX), -EBADF);
	/* epoll refuses regular files: they are always ready */
	ck_assert_int_eq(cfd_source_add_fd(&src, tok, w, fileno(regular)),
			 -EPERM);
	ck_assert_int_eq(cfd_source_add_fd(&src, NULL, w, cfd_watcher_fd(w)),
			 -EINVAL);
	/* a watcher cannot watch itself */
	ck_assert_int_eq(cfd_source_add_fd(&src, tok, w, cfd_watcher_fd(w)),
			 -EINVAL);
	ck_assert_ptr_eq(src, SENTINEL);
	ck_assert_int_eq(t_count_fds(), fds); /* the dup was closed */
	fclose(regular);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* Fire on hang-up: a pipe's writer leaving, and a socket peer leaving.  The
 * caller closes its own fd at once: the library watches a dup. */
START_TEST(test_fd_hangup)
{
	struct cfd_watcher *w = new_watcher();
	int fds = t_count_fds();

	for (int kind = 0; kind < 2; kind++) {
		struct cfd_token *tok = t_new_token("peer");
		struct cfd_source *src = NULL;
		int p[2];

		if (kind == 0)
			ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
		else
			ck_assert_int_eq(socketpair(AF_UNIX,
						    SOCK_STREAM | SOCK_CLOEXEC,
						    0, p),
					 0);
		ck_assert_int_eq(cfd_source_add_fd(&src, tok, w, p[0]), 0);
		close(p[0]);
		ck_assert_int_eq(t_count_fds(), fds + 2); /* p[1], the dup */
		ck_assert_int_eq(cfd_watcher_dispatch(w), 0);
		ck_assert(!cfd_token_triggered(tok));
		close(p[1]); /* the peer leaves */
		ck_assert(tw_dispatch_until(w, tok));
		ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_FD);
		ck_assert_str_eq(cfd_reason_name(CFD_REASON_FD), "fd");
		ck_assert_int_eq(t_count_fds(), fds); /* dup closed at fire */
		cfd_source_free(src);
		cfd_token_unref(tok);
	}
	cfd_watcher_unref(w);
}
END_TEST

/* Another watcher's fd is an epoll set like any other: a watcher can watch
 * one (it fires when that watcher has work), but not in a cycle. */
START_TEST(test_fd_nested_watcher)
{
	struct cfd_watcher *outer = new_watcher(), *inner = new_watcher();
	struct cfd_token *busy = t_new_token("inner has work");
	struct cfd_token *tick = t_new_token("tick");
	struct cfd_source *src = SENTINEL;

	ck_assert_int_eq(
	    cfd_source_add_fd(NULL, busy, outer, cfd_watcher_fd(inner)), 0);
	ck_assert_int_eq(
	    cfd_source_add_fd(&src, tick, inner, cfd_watcher_fd(outer)),
	    -ELOOP);
	ck_assert_ptr_eq(src, SENTINEL);
	int efd = tw_add_trigger(NULL, tick, inner);

	tw_eventfd_signal(efd);
	ck_assert(tw_dispatch_until(outer, busy));
	ck_assert_int_eq(cfd_token_reason(busy), CFD_REASON_FD);
	ck_assert(!cfd_token_triggered(tick)); /* inner not dispatched yet */
	ck_assert(tw_dispatch_until(inner, tick));
	close(efd);
	cfd_token_unref(busy);
	cfd_token_unref(tick);
	cfd_watcher_unref(outer);
	cfd_watcher_unref(inner);
}
END_TEST

/* A pidfd is readable when the process exits. */
START_TEST(test_fd_pidfd)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("child exited");
	int p[2], pidfd;
	pid_t pid;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char c;

		close(p[1]);
		_exit(read(p[0], &c, 1) == 0 ? 0 : 1); /* until told */
	}
	close(p[0]);
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	ck_assert_int_ge(pidfd, 0);
	ck_assert_int_eq(cfd_source_add_fd(NULL, tok, w, pidfd), 0);
	close(pidfd);
	ck_assert_int_eq(cfd_watcher_dispatch(w), 0);
	ck_assert(!cfd_token_triggered(tok));
	close(p[1]); /* the child exits */
	ck_assert(tw_dispatch_until(w, tok));
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_FD);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* Another process's token: it passes its token's fd over a socket
 * (SCM_RIGHTS) and triggers the token when told to. */
static int recv_fd(int sock)
{
	char data, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &data, 1 };
	struct msghdr msg = { .msg_iov = &iov,
			      .msg_iovlen = 1,
			      .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int fd;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

static void send_fd(int sock, int fd)
{
	char data = 'f', cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &data, 1 };
	struct msghdr msg = { .msg_iov = &iov,
			      .msg_iovlen = 1,
			      .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(sock, &msg, 0) != 1)
		_exit(2);
}

START_TEST(test_fd_other_process_token)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("remote");
	int sv[2], fd, status;
	pid_t pid;
	char go = 'g';

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cfd_token *theirs;
		char c;

		close(sv[0]);
		if (cfd_token_new(&theirs, "theirs"))
			_exit(2);
		send_fd(sv[1], cfd_token_fd(theirs));
		if (read(sv[1], &c, 1) != 1) /* told to cancel */
			_exit(3);
		_exit(cfd_token_trigger(theirs) == 1 ? 0 : 4);
	}
	close(sv[1]);
	fd = recv_fd(sv[0]);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(cfd_source_add_fd(NULL, tok, w, fd), 0);
	close(fd);
	ck_assert_int_eq(cfd_watcher_dispatch(w), 0);
	ck_assert_int_eq(write(sv[0], &go, 1), 1);
	ck_assert(tw_dispatch_until(w, tok));
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_FD);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(sv[0]);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* ======================================================================
 * conditions
 * ==================================================================== */

static bool never(struct cfd_token *tok, void *arg)
{
	(void)tok;
	(void)arg;
	return false;
}

START_TEST(test_condition_einval)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = SENTINEL;

	ck_assert_int_eq(
	    cfd_source_add_condition(&src, tok, w, NULL, NULL, CFD_MSEC(1)),
	    -EINVAL);
	ck_assert_int_eq(cfd_source_add_condition(&src, tok, w, never, NULL, 0),
			 -EINVAL);
	ck_assert_int_eq(
	    cfd_source_add_condition(&src, tok, w, never, NULL, -1), -EINVAL);
	ck_assert_int_eq(
	    cfd_source_add_condition(&src, tok, w, never, NULL, INT64_MAX),
	    -EINVAL);
	ck_assert_int_eq(
	    cfd_source_add_condition(&src, NULL, w, never, NULL, CFD_MSEC(1)),
	    -EINVAL);
	ck_assert_ptr_eq(src, SENTINEL);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

struct cond_ctx {
	_Atomic int calls;
	int true_at; /* return true on this call */
	struct cfd_token *tok;
	pthread_t thread;
	bool wrong_args;
};

static bool count_calls(struct cfd_token *tok, void *arg)
{
	struct cond_ctx *c = arg;
	int n = atomic_fetch_add(&c->calls, 1) + 1;

	if (tok != c->tok)
		c->wrong_args = true;
	c->thread = pthread_self();
	return n == c->true_at;
}

/* Checked at once, then every interval, until it returns true; with an
 * embedded watcher only when dispatched. */
START_TEST(test_condition_embedded)
{
	struct cfd_watcher *w = new_watcher();
	struct cond_ctx c = { .true_at = 3 };
	struct cfd_source *src = NULL;

	c.tok = t_new_token("cond");
	ck_assert_int_eq(cfd_source_add_condition(&src, c.tok, w, count_calls,
						  &c, CFD_MSEC(1)),
			 0);
	ck_assert_int_eq(atomic_load(&c.calls), 0); /* not in this call */
	ck_assert(t_fd_readable(cfd_watcher_fd(w), T_WAIT_MS)); /* at once */
	ck_assert_int_eq(cfd_watcher_dispatch(w), 1);
	ck_assert_int_eq(atomic_load(&c.calls), 1);
	ck_assert(!cfd_token_triggered(c.tok));
	ck_assert(tw_dispatch_until(w, c.tok));
	ck_assert_int_eq(atomic_load(&c.calls), 3);
	ck_assert(!c.wrong_args);
	ck_assert(pthread_equal(c.thread, pthread_self()));
	ck_assert_int_eq(cfd_token_reason(c.tok), CFD_REASON_CONDITION);
	ck_assert_str_eq(cfd_reason_name(CFD_REASON_CONDITION), "condition");
	/* It left the watcher: no more calls (the timer armed for its next
	 * check may still go off once, and find nothing to do). */
	wait_past(t_now_ns() + CFD_MSEC(2));
	t_fd_readable(cfd_watcher_fd(w), 0);
	ck_assert_int_ge(cfd_watcher_dispatch(w), 0);
	ck_assert_int_eq(atomic_load(&c.calls), 3);
	cfd_source_free(src);
	cfd_token_unref(c.tok);
	cfd_watcher_unref(w);
}
END_TEST

/* The predicate runs on the watcher's thread. */
START_TEST(test_condition_on_watcher_thread)
{
	struct cfd_watcher *w = new_watcher();
	struct cond_ctx c = { .true_at = 2 };

	c.tok = t_new_token("cond");
	ck_assert_int_eq(cfd_watcher_start(w), 0);
	ck_assert_int_eq(cfd_source_add_condition(NULL, c.tok, w, count_calls,
						  &c, CFD_USEC(100)),
			 0);
	ck_assert_int_eq(cfd_token_wait(c.tok, CFD_MSEC(T_WAIT_MS)), 0);
	ck_assert_int_eq(cfd_watcher_stop(w), 0);
	ck_assert(!pthread_equal(c.thread, pthread_self()));
	ck_assert_int_eq(atomic_load(&c.calls), 2);
	ck_assert_int_eq(cfd_token_reason(c.tok), CFD_REASON_CONDITION);
	cfd_token_unref(c.tok);
	cfd_watcher_unref(w);
}
END_TEST

/* Its token triggered for another reason: the predicate is not called
 * again. */
START_TEST(test_condition_stops_when_token_triggers)
{
	struct cfd_watcher *w = new_watcher();
	struct cond_ctx c = { .true_at = -1 };

	c.tok = t_new_token("cond");
	ck_assert_int_eq(cfd_source_add_condition(NULL, c.tok, w, count_calls,
						  &c, CFD_USEC(100)),
			 0);
	ck_assert(t_fd_readable(cfd_watcher_fd(w), T_WAIT_MS));
	ck_assert_int_eq(cfd_watcher_dispatch(w), 1);
	ck_assert_int_eq(atomic_load(&c.calls), 1);
	cfd_token_trigger(c.tok);
	wait_past(t_now_ns() + CFD_USEC(300));
	t_fd_readable(cfd_watcher_fd(w), 0);
	ck_assert_int_ge(cfd_watcher_dispatch(w), 0);
	ck_assert_int_eq(atomic_load(&c.calls), 1);
	ck_assert_int_eq(cfd_token_reason(c.tok), CFD_REASON_MANUAL);
	cfd_token_unref(c.tok);
	cfd_watcher_unref(w);
}
END_TEST

/* ======================================================================
 * life cycle: when fds close, already-triggered tokens, freeing
 * ==================================================================== */

START_TEST(test_source_free_null)
{
	ck_assert_ptr_null(cfd_source_free(NULL));
}
END_TEST

/* A token that has triggered needs no source: 0, *ret NULL, no fd opened,
 * nothing added to the watcher, no default watcher made. */
START_TEST(test_already_triggered_no_fd)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("done");
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);
	int efd = eventfd(0, EFD_CLOEXEC), fds, threads;

	tw_block_test_signals();
	cfd_token_trigger(tok);
	fds = t_count_fds();
	threads = threads_in_process();
	for (int i = 0; i < 2; i++) {
		struct cfd_watcher *ww = i ? NULL : w;
		struct cfd_source *src[6] = { SENTINEL, SENTINEL, SENTINEL,
					      SENTINEL, SENTINEL, SENTINEL };

		ck_assert_int_eq(
		    cfd_source_add_timeout(&src[0], tok, ww, CFD_SEC(1)), 0);
		ck_assert_int_eq(cfd_source_add_deadline(
				     &src[1], tok, ww, t_now_ns() + CFD_SEC(1)),
				 0);
		ck_assert_int_eq(tw_add_signals(&src[2], tok, ww, &usr1), 0);
		ck_assert_int_eq(cfd_source_add_fd(&src[3], tok, ww, efd), 0);
		ck_assert_int_eq(cfd_source_add_condition(&src[4], tok, ww,
							  never, NULL,
							  CFD_MSEC(1)),
				 0);
		ck_assert_int_eq(cfd_source_add_timeout(&src[5], tok, ww, 0),
				 0);
		for (int k = 0; k < 6; k++)
			ck_assert_ptr_null(src[k]);
		ck_assert_int_eq(t_count_fds(), fds);
	}
	ck_assert_int_eq(threads_in_process(), threads); /* no default */
	ck_assert_int_eq(cfd_watcher_dispatch(w), 0);
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_MANUAL);
	close(efd);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/*
 * A source's fd (the dup of an fd source; the watcher's signalfd for its
 * last signal subscriber) is closed at the first of: it fires, it is freed,
 * its token triggers for another reason, its token is freed.  _i: kind
 * (0 fd, 1 signal) * 4 + way.
 */
enum { WAY_FIRES, WAY_FREED, WAY_TOKEN_TRIGGERED, WAY_TOKEN_FREED };

START_TEST(test_source_fd_closed)
{
	int kind = _i / 4, way = _i % 4;
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = NULL, **ret = &src;
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), fds;

	tw_block_test_signals();
	fds = t_count_fds();
	if (way == WAY_TOKEN_FREED)
		ret = NULL; /* owned by its token and the watcher */
	if (kind == 0)
		ck_assert_int_eq(cfd_source_add_fd(ret, tok, w, efd), 0);
	else
		ck_assert_int_eq(tw_add_signals(ret, tok, w, &usr1), 0);
	ck_assert_int_eq(t_count_fds(), fds + 1);
	switch (way) {
	case WAY_FIRES:
		if (kind == 0)
			tw_eventfd_signal(efd);
		else
			kill(getpid(), SIGUSR1);
		ck_assert(tw_dispatch_until(w, tok));
		ck_assert_int_eq(cfd_token_reason(tok),
				 kind == 0 ? CFD_REASON_FD : CFD_REASON_SIGNAL);
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
	close(efd);
	cfd_watcher_unref(w);
}
END_TEST

/* One token, one source of each kind: the first to fire wins, every other
 * leaves the watcher at once. */
START_TEST(test_sources_on_one_token)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("multi");
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), fds;

	tw_block_test_signals();
	fds = t_count_fds();
	ck_assert_int_eq(cfd_source_add_timeout(NULL, tok, w, CFD_SEC(3600)),
			 0);
	ck_assert_int_eq(tw_add_signals(NULL, tok, w, &usr1), 0);
	ck_assert_int_eq(cfd_source_add_fd(NULL, tok, w, efd), 0);
	ck_assert_int_eq(
	    cfd_source_add_condition(NULL, tok, w, never, NULL, CFD_SEC(3600)),
	    0);
	ck_assert_int_eq(t_count_fds(), fds + 2);
	tw_eventfd_signal(efd);
	ck_assert(tw_dispatch_until(w, tok));
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_FD);
	ck_assert_int_eq(t_count_fds(), fds);
	close(efd);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* Freed from a callback of its own fire, on the same thread: returns at
 * once instead of waiting for itself. */
struct self_free {
	struct cfd_source *src;
	int calls;
};

static void free_own_source(struct cfd_token *tok, void *arg)
{
	struct self_free *s = arg;

	(void)tok;
	s->src = cfd_source_free(s->src);
}

static bool free_own_source_pred(struct cfd_token *tok, void *arg)
{
	struct self_free *s = arg;

	(void)tok;
	s->calls++;
	s->src = cfd_source_free(s->src);
	return false;
}

START_TEST(test_free_from_own_fire)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("t"), *tok2 = t_new_token("t2");
	struct self_free s = { 0 }, p = { 0 };
	int efd;

	ck_assert_int_eq(
	    cfd_token_on_trigger(NULL, tok, free_own_source, &s, 0), 0);
	efd = tw_add_trigger(&s.src, tok, w);
	ck_assert_ptr_nonnull(s.src);
	tw_eventfd_signal(efd);
	ck_assert(tw_dispatch_until(w, tok));
	ck_assert_ptr_null(s.src);
	close(efd);

	ck_assert_int_eq(cfd_source_add_condition(&p.src, tok2, w,
						  free_own_source_pred, &p,
						  CFD_USEC(100)),
			 0);
	ck_assert(t_fd_readable(cfd_watcher_fd(w), T_WAIT_MS));
	ck_assert_int_eq(cfd_watcher_dispatch(w), 1);
	ck_assert_int_eq(p.calls, 1);
	ck_assert_ptr_null(p.src);
	wait_past(t_now_ns() + CFD_USEC(300));
	t_fd_readable(cfd_watcher_fd(w), 0);
	ck_assert_int_ge(cfd_watcher_dispatch(w), 0);
	ck_assert_int_eq(p.calls, 1); /* freed: never called again */
	ck_assert(!cfd_token_triggered(tok2));
	cfd_token_unref(tok);
	cfd_token_unref(tok2);
	cfd_watcher_unref(w);
}
END_TEST

/*
 * Freed from another thread while it fires on the watcher's thread: the
 * fire (a callback of the trigger, or the predicate) blocks on an eventfd;
 * the freeing thread is seen asleep in the kernel before the fire is let
 * go, and cfd_source_free() must not return before the fire has.
 */
struct race {
	struct cfd_source *src;
	int entered, gate;
	_Atomic int finished;
	_Atomic pid_t freer;
	int finished_when_free_returned;
};

static void race_block(struct race *r)
{
	uint64_t one = 1;

	if (write(r->entered, &one, sizeof(one)) < 0)
		abort();
	t_fd_readable(r->gate, T_WAIT_MS);
	atomic_store(&r->finished, 1);
}

static void race_cb(struct cfd_token *tok, void *arg)
{
	(void)tok;
	race_block(arg);
}

static bool race_pred(struct cfd_token *tok, void *arg)
{
	(void)tok;
	race_block(arg);
	return false;
}

static void *race_freer(void *arg)
{
	struct race *r = arg;

	atomic_store(&r->freer, gettid());
	r->src = cfd_source_free(r->src);
	r->finished_when_free_returned = atomic_load(&r->finished);
	return NULL;
}

START_TEST(test_free_waits_for_fire)
{
	bool predicate = _i;
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("race");
	struct race r = { 0 };
	pthread_t th;
	int efd = -1;
	bool slept;

	r.entered = eventfd(0, EFD_CLOEXEC);
	r.gate = eventfd(0, EFD_CLOEXEC);
	ck_assert_int_eq(cfd_watcher_start(w), 0);
	if (predicate) {
		ck_assert_int_eq(cfd_source_add_condition(&r.src, tok, w,
							  race_pred, &r,
							  CFD_MSEC(1)),
				 0);
	} else {
		ck_assert_int_eq(
		    cfd_token_on_trigger(NULL, tok, race_cb, &r, 0), 0);
		efd = tw_add_trigger(&r.src, tok, w);
		tw_eventfd_signal(efd);
	}
	ck_assert_ptr_nonnull(r.src);
	ck_assert(t_fd_readable(r.entered, T_WAIT_MS)); /* the fire runs */
	ck_assert_int_eq(pthread_create(&th, NULL, race_freer, &r), 0);
	while (!atomic_load(&r.freer))
		sched_yield();
	slept = tw_wait_thread_in_futex(atomic_load(&r.freer));
	tw_eventfd_signal(r.gate);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_msg(r.finished_when_free_returned == 1,
		      "cfd_source_free() returned while the %s still ran",
		      predicate ? "predicate" : "callback");
	ck_assert(slept);
	ck_assert_ptr_null(r.src);
	ck_assert_int_eq(cfd_watcher_stop(w), 0);
	ck_assert(cfd_token_triggered(tok) == !predicate);
	close(r.entered);
	close(r.gate);
	if (efd >= 0)
		close(efd);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* From a callback running inside dispatch: add a source (it fires on a later
 * dispatch) and free another (it never fires). */
struct from_cb {
	struct cfd_watcher *w;
	struct cfd_token *next;
	struct cfd_source *added, *victim;
	int add_result;
};

static void add_and_free(struct cfd_token *tok, void *arg)
{
	struct from_cb *f = arg;

	(void)tok;
	f->add_result =
	    cfd_source_add_timeout(&f->added, f->next, f->w, CFD_MSEC(1));
	f->victim = cfd_source_free(f->victim);
}

START_TEST(test_add_remove_from_callback)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *first = t_new_token("first"),
			 *victim = t_new_token("v");
	struct from_cb f = { .w = w, .add_result = -99 };
	int efd;

	f.next = t_new_token("next");
	ck_assert_int_eq(cfd_token_on_trigger(NULL, first, add_and_free, &f, 0),
			 0);
	/* (a victim due in the same dispatch would fire anyway: see
	 * test_regression_freed_sibling_fires) */
	ck_assert_int_eq(
	    cfd_source_add_timeout(&f.victim, victim, w, CFD_SEC(3600)), 0);
	efd = tw_add_trigger(NULL, first, w);
	tw_eventfd_signal(efd);
	ck_assert(tw_dispatch_until(w, first));
	close(efd);
	ck_assert_int_eq(f.add_result, 0);
	ck_assert_ptr_nonnull(f.added);
	ck_assert_ptr_null(f.victim);
	ck_assert(!cfd_token_triggered(f.next));
	ck_assert(tw_dispatch_until(w, f.next));
	ck_assert_int_eq(cfd_token_reason(f.next), CFD_REASON_TIMEOUT);
	ck_assert(!cfd_token_triggered(victim));
	cfd_source_free(f.added);
	cfd_token_unref(first);
	cfd_token_unref(victim);
	cfd_token_unref(f.next);
	cfd_watcher_unref(w);
}
END_TEST

/* Threads add and remove sources of every kind while the watcher runs on
 * its own thread; sources fire, are freed before, during and after their
 * fire, and tokens are freed with sources still attached. */
#define CHURN_THREADS 3
#define CHURN_ROUNDS 1500

static _Atomic unsigned churn_pred_calls;

static bool churn_pred(struct cfd_token *tok, void *arg)
{
	(void)tok;
	(void)arg;
	return atomic_fetch_add(&churn_pred_calls, 1) % 3 == 0;
}

struct churn {
	struct cfd_watcher *w;
	unsigned seed;
	int failures;
};

static void *churn(void *arg)
{
	struct churn *c = arg;

	for (int i = 0; i < CHURN_ROUNDS; i++) {
		struct cfd_token *tok;
		struct cfd_source *src = NULL;
		unsigned r = (unsigned)rand_r(&c->seed);
		bool floating = r & 0x100;
		int efd = -1, rc = 0;

		if (cfd_token_new(&tok, "churn")) {
			c->failures++;
			continue;
		}
		switch (r % 4) {
		case 0:
			rc = cfd_source_add_timeout(floating ? NULL : &src, tok,
						    c->w, (r >> 9) % 30000);
			break;
		case 1:
			efd = eventfd(0, EFD_CLOEXEC);
			rc = cfd_source_add_fd(floating ? NULL : &src, tok,
					       c->w, efd);
			if (r & 0x200)
				tw_eventfd_signal(efd);
			close(efd);
			break;
		case 2:
			rc = cfd_source_add_condition(floating ? NULL : &src,
						      tok, c->w, churn_pred,
						      NULL, CFD_USEC(20));
			break;
		case 3:
			rc = cfd_source_add_deadline(
			    floating ? NULL : &src, tok, c->w,
			    t_now_ns() + (r >> 9) % 50000);
			break;
		}
		if (rc)
			c->failures++;
		if (r & 0x400)
			cfd_token_wait(tok, CFD_USEC(50));
		if (r & 0x800)
			cfd_token_trigger(tok);
		/* Free the handle, then the token (a floating source goes
		 * with its token).  The other order crashes today: see
		 * test_regression_free_after_token_freed. */
		cfd_source_free(src);
		cfd_token_unref(tok);
	}
	return NULL;
}

START_TEST(test_churn_while_running)
{
	struct cfd_watcher *w = new_watcher();
	struct churn c[CHURN_THREADS];
	pthread_t th[CHURN_THREADS];

	ck_assert_int_eq(cfd_watcher_start(w), 0);
	for (int i = 0; i < CHURN_THREADS; i++) {
		c[i] = (struct churn){ .w = w, .seed = 7u + (unsigned)i };
		ck_assert_int_eq(pthread_create(&th[i], NULL, churn, &c[i]), 0);
	}
	for (int i = 0; i < CHURN_THREADS; i++) {
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
		ck_assert_int_eq(c[i].failures, 0);
	}
	ck_assert_int_eq(cfd_watcher_stop(w), 0);
	cfd_watcher_unref(w);
}
END_TEST

/* In a child after fork, the parent's watcher refuses new sources (and its
 * sources are left alone); the child's own default watcher works. */
static struct cfd_watcher *fork_w;
static struct cfd_source *fork_src;

static void child_sources(void *arg)
{
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);
	struct cfd_token *tok, *parent_tok = arg;
	struct cfd_source *src = SENTINEL;
	int efd = eventfd(0, EFD_CLOEXEC), fds = t_count_fds();

	TW_CHILD_CHECK(cfd_token_new(&tok, "child") == 0);
	TW_CHILD_CHECK(cfd_source_add_timeout(&src, tok, fork_w, CFD_SEC(1)) ==
		       -ECHILD);
	TW_CHILD_CHECK(cfd_source_add_deadline(&src, tok, fork_w,
					       t_now_ns() + CFD_SEC(1)) ==
		       -ECHILD);
	TW_CHILD_CHECK(tw_add_signals(&src, tok, fork_w, &usr1) == -ECHILD);
	TW_CHILD_CHECK(cfd_source_add_fd(&src, tok, fork_w, efd) == -ECHILD);
	TW_CHILD_CHECK(cfd_source_add_condition(&src, tok, fork_w, never, NULL,
						CFD_MSEC(1)) == -ECHILD);
	TW_CHILD_CHECK(cfd_source_add_timeout(&src, parent_tok, NULL,
					      CFD_SEC(1)) == -ECHILD);
	TW_CHILD_CHECK(src == SENTINEL);
	TW_CHILD_CHECK(t_count_fds() == fds); /* the dup was closed */
	TW_CHILD_CHECK(cfd_source_free(fork_src) == NULL); /* no effect */
	/* the child's own default watcher */
	TW_CHILD_CHECK(cfd_source_add_timeout(NULL, tok, NULL, CFD_USEC(100)) ==
		       0);
	TW_CHILD_CHECK(cfd_token_wait(tok, CFD_MSEC(T_WAIT_MS)) == 0);
	TW_CHILD_CHECK(cfd_token_reason(tok) == CFD_REASON_TIMEOUT);
}

START_TEST(test_sources_after_fork)
{
	struct cfd_token *tok = t_new_token("parent");

	tw_block_test_signals();
	fork_w = new_watcher();
	ck_assert_int_eq(
	    cfd_source_add_timeout(&fork_src, tok, fork_w, CFD_MSEC(5)), 0);
	tw_fork_check(child_sources, tok);
	/* The parent's source is unharmed. */
	ck_assert(tw_dispatch_until(fork_w, tok));
	cfd_source_free(fork_src);
	cfd_token_unref(tok);
	cfd_watcher_unref(fork_w);
}
END_TEST

/* ======================================================================
 * out of file descriptors
 * ==================================================================== */

/* Lower RLIMIT_NOFILE so that only `spare` more fds can be opened. */
static void fd_limit_spare(int spare)
{
	struct rlimit rl;
	int probe = eventfd(0, EFD_CLOEXEC); /* the lowest free number */

	ck_assert_int_ge(probe, 0);
	close(probe);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = (rlim_t)(probe + spare);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static void fd_limit_restore(const struct rlimit *saved)
{
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, saved), 0);
}

/* -EMFILE from every step that opens an fd, and nothing left behind:
 * the watcher's three fds, an fd source's dup, the signalfd (whose signal
 * claim is rolled back: another watcher can take the signal after). */
START_TEST(test_emfile)
{
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);
	struct cfd_watcher *w = NULL, *w2;
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = SENTINEL;
	struct rlimit saved;
	int efd = eventfd(0, EFD_CLOEXEC), fds = t_count_fds();

	tw_block_test_signals();
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
	for (int spare = 0; spare < 3; spare++) {
		fd_limit_spare(spare);
		ck_assert_int_eq(cfd_watcher_new(&w), -EMFILE);
		fd_limit_restore(&saved);
		ck_assert_ptr_null(w);
		ck_assert_int_eq(t_count_fds(), fds);
	}
	w = new_watcher();
	w2 = new_watcher();
	fds = t_count_fds();
	fd_limit_spare(0);
	ck_assert_int_eq(cfd_source_add_fd(&src, tok, w, efd), -EMFILE);
	ck_assert_int_eq(tw_add_signals(&src, tok, w, &usr1), -EMFILE);
	fd_limit_restore(&saved);
	ck_assert_ptr_eq(src, SENTINEL);
	ck_assert_int_eq(t_count_fds(), fds);
	ck_assert_int_eq(tw_add_signals(&src, tok, w2, &usr1), 0);
	ck_assert_int_eq(tw_add_signals(NULL, tok, w, &usr1), -EEXIST);
	cfd_source_free(src);
	close(efd);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
	cfd_watcher_unref(w2);
}
END_TEST

/* ======================================================================
 * regressions: library bugs these tests found, fixed
 * ==================================================================== */

/* cfd_source_free() after the source's token was freed: the token's release
 * called the registration's on_release but left the registration in state
 * LISTED, so registration_remove() locks the freed token and unlinks a
 * node whose pprev is NULL (SEGV in listener_unlink). */
/* ======================================================================
 * lifetime races: source free, token unref and fire, in any order and in
 * any pair of threads
 * ==================================================================== */

enum { LT_TIMEOUT, LT_CONDITION, LT_FD, NLT_KINDS };

struct lt_round {
	struct cfd_token *_Atomic tok;
	struct cfd_source *_Atomic src;
	atomic_int go, done, quit;
	unsigned seed;
};

static bool lt_cond(struct cfd_token *tok, void *userdata)
{
	(void)tok;
	return (uintptr_t)userdata & 1;
}

static void lt_spin(unsigned *seed, int max)
{
	for (volatile int k = rand_r(seed) % max; k > 0; k--)
		;
}

/* The other thread: frees the source, after a random moment. */
static void *lt_freer(void *arg)
{
	struct lt_round *r = arg;
	unsigned seed = r->seed + 1;

	for (int seen = 0;;) {
		int g;

		while ((g = atomic_load(&r->go)) == seen) {
			if (atomic_load(&r->quit))
				return NULL;
			sched_yield();
		}
		seen = g;
		lt_spin(&seed, 300);
		cfd_source_free(atomic_load(&r->src));
		atomic_store(&r->done, g);
	}
}

/*
 * Each round: a token and a source on it; this thread drops the last
 * reference to the token while another frees the source, and (with
 * short times) the watcher's thread fires it, so each of the three comes
 * first, last, or at the same moment as another.  Kinds: timeout,
 * condition, fd.  Watchers: the default one, an own thread, and one this
 * thread dispatches (the fire then races from this thread).  Before the
 * fix a freed token was locked through the source's registration (use
 * after free in listener_unlink, token_lock_slow, source_detach).
 */
START_TEST(test_source_free_races_token_unref)
{
	int kind = _i % NLT_KINDS, wkind = _i / NLT_KINDS;
	int rounds = T_TSAN ? 300 : T_ASAN ? 1000 : 3000;
	struct lt_round r = { .seed = (unsigned)_i * 7919 };
	struct cfd_watcher *w = NULL;
	pthread_t th;
	int efd;

	if (wkind == 1) {
		w = new_watcher();
		ck_assert_int_eq(cfd_watcher_start(w), 0);
	} else if (wkind == 2) {
		w = new_watcher();
	}
	efd = eventfd(0, EFD_CLOEXEC);
	ck_assert_int_ge(efd, 0);
	ck_assert_int_eq(pthread_create(&th, NULL, lt_freer, &r), 0);
	for (int i = 1; i <= rounds; i++) {
		struct cfd_token *tok = t_new_token("t");
		struct cfd_source *src = NULL;
		bool soon = rand_r(&r.seed) & 1;
		int e = 0;

		switch (kind) {
		case LT_TIMEOUT:
			e = cfd_source_add_timeout(
			    &src, tok, w,
			    soon ? rand_r(&r.seed) % 20000 : CFD_SEC(100));
			break;
		case LT_CONDITION:
			e = cfd_source_add_condition(&src, tok, w, lt_cond,
						     (void *)(uintptr_t)soon,
						     CFD_USEC(5));
			break;
		case LT_FD:
			e = cfd_source_add_fd(&src, tok, w, efd);
			break;
		}
		ck_assert_int_eq(e, 0);
		atomic_store(&r.src, src);
		atomic_store(&r.go, i);
		if (kind == LT_FD && soon)
			eventfd_write(efd, 1);
		if (wkind == 2)
			cfd_watcher_dispatch(w);
		lt_spin(&r.seed, 300);
		cfd_token_unref(tok);
		while (atomic_load(&r.done) != i)
			if (wkind != 2 || cfd_watcher_dispatch(w) == 0)
				sched_yield();
		if (kind == LT_FD && soon) {
			eventfd_t v;

			eventfd_read(efd, &v);
		}
	}
	atomic_store(&r.quit, 1);
	pthread_join(th, NULL);
	close(efd);
	cfd_watcher_unref(w);
}
END_TEST

/* The watcher's own reference is the last: the token's other reference
 * goes in its own trigger's callback, while the fire still holds the
 * token, and the source is freed from a third thread meanwhile. */
struct drop_round {
	struct cfd_token *tok;
	atomic_int ran;
};

static void drop_in_callback(struct cfd_token *tok, void *userdata)
{
	struct drop_round *d = userdata;

	(void)tok;
	atomic_store(&d->ran, 1);
	cfd_token_unref(d->tok);
}

START_TEST(test_fire_drops_last_reference_while_freed)
{
	int rounds = T_TSAN ? 300 : T_ASAN ? 1000 : 3000;
	struct lt_round r = { .seed = 99 };
	struct cfd_watcher *w = new_watcher();
	pthread_t th;

	ck_assert_int_eq(cfd_watcher_start(w), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, lt_freer, &r), 0);
	for (int i = 1; i <= rounds; i++) {
		struct drop_round d = { .tok = t_new_token("t") };
		struct cfd_source *src = NULL;

		/* one reference, the callback's: dropped in the trigger */
		ck_assert_int_eq(
		    cfd_token_on_trigger(NULL, d.tok, drop_in_callback, &d, 0),
		    0);
		cfd_token_ref(d.tok); /* this thread's, for the add */
		ck_assert_int_eq(cfd_source_add_timeout(&src, d.tok, w,
							rand_r(&r.seed) % 5000),
				 0);
		atomic_store(&r.src, src);
		atomic_store(&r.go, i);
		cfd_token_unref(d.tok);
		while (atomic_load(&r.done) != i)
			sched_yield();
		if (!src) {
			/* It fired while it was being added: that trigger
			 * runs the callback, maybe still on the watcher's
			 * thread. */
			while (!atomic_load(&d.ran))
				sched_yield();
		} else if (!atomic_load(&d.ran)) {
			/* Freed before it fired: cfd_source_free() returned,
			 * so no fire is under way and none will come, and
			 * the token is alive with the callback's reference
			 * alone. */
			ck_assert_int_eq(cfd_token_trigger(d.tok), 1);
		}
		ck_assert(atomic_load(&d.ran));
	}
	atomic_store(&r.quit, 1);
	pthread_join(th, NULL);
	tw_quiesce(w);
	cfd_watcher_unref(w);
}
END_TEST

/*
 * A condition source whose token triggers while it is being added: when
 * the add returns without a source, its predicate is not running and is
 * never called again, so the caller may free its userdata at once.  Before
 * the fix the watcher could still be calling it.  A dispatcher thread runs
 * the watcher all along; a thread triggers the token at a varying moment.
 */
struct cond_data {
	atomic_int released, late;
};

static bool cond_check_released(struct cfd_token *tok, void *userdata)
{
	struct cond_data *d = userdata;

	(void)tok;
	if (atomic_load(&d->released))
		atomic_fetch_add(&d->late, 1);
	return false;
}

struct cond_race {
	struct cfd_watcher *w;
	struct cfd_token *_Atomic tok;
	atomic_int go, done, quit;
};

static void *cond_race_dispatch(void *arg)
{
	struct cond_race *c = arg;

	while (!atomic_load(&c->quit))
		if (cfd_watcher_dispatch(c->w) == 0)
			sched_yield();
	return NULL;
}

static void *cond_race_trigger(void *arg)
{
	struct cond_race *c = arg;

	for (int seen = 0;;) {
		int g;

		while ((g = atomic_load(&c->go)) == seen) {
			if (atomic_load(&c->quit))
				return NULL;
			sched_yield();
		}
		seen = g;
		for (volatile int k = (g * 37) % 3000; k > 0; k--)
			;
		cfd_token_trigger(atomic_load(&c->tok));
		atomic_store(&c->done, g);
	}
}

START_TEST(test_condition_add_racing_trigger)
{
	int rounds = T_TSAN ? 3000 : 30000;
	struct cond_race c = { .w = new_watcher() };
	struct cond_data *data = calloc((size_t)rounds + 1, sizeof(*data));
	pthread_t disp, trig;
	int late = 0;

	ck_assert_ptr_nonnull(data);
	ck_assert_int_eq(pthread_create(&disp, NULL, cond_race_dispatch, &c),
			 0);
	ck_assert_int_eq(pthread_create(&trig, NULL, cond_race_trigger, &c), 0);
	for (int i = 1; i <= rounds; i++) {
		struct cfd_token *tok = t_new_token("t");
		struct cfd_source *src = NULL;

		atomic_store(&c.tok, tok);
		atomic_store(&c.go, i);
		ck_assert_int_eq(cfd_source_add_condition(
				     &src, tok, c.w, cond_check_released,
				     &data[i], CFD_USEC(1)),
				 0);
		while (atomic_load(&c.done) != i)
			sched_yield();
		/* No source: its predicate is done with the userdata.  With
		 * one, the free says so. */
		src = cfd_source_free(src);
		atomic_store(&data[i].released, 1);
		cfd_token_unref(tok);
	}
	atomic_store(&c.quit, 1);
	pthread_join(trig, NULL);
	pthread_join(disp, NULL);
	for (int i = 1; i <= rounds; i++)
		late += atomic_load(&data[i].late);
	ck_assert_int_eq(late, 0);
	free(data);
	cfd_watcher_unref(c.w);
}
END_TEST

START_TEST(test_regression_free_after_token_freed)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = NULL;

	ck_assert_int_eq(cfd_source_add_timeout(&src, tok, w, CFD_SEC(10)), 0);
	cfd_token_unref(tok);
	ck_assert_ptr_null(cfd_source_free(src));
	cfd_watcher_unref(w);
}
END_TEST

/* A callback of one source's fire frees another source that the same
 * dispatch has already queued to fire: cfd_source_free() returns at once
 * (same thread), and then the freed source triggers its token anyway,
 * because fire_all() does not look at `attached` before firing. */
static struct cfd_source *sibling;

static void free_sibling(struct cfd_token *tok, void *arg)
{
	(void)tok;
	(void)arg;
	sibling = cfd_source_free(sibling);
}

START_TEST(test_regression_freed_sibling_fires)
{
	struct cfd_watcher *w = new_watcher();
	struct cfd_token *t1 = t_new_token("t1"), *t2 = t_new_token("t2");
	struct cfd_source *s1 = NULL;
	int64_t at = t_now_ns() + CFD_MSEC(2);

	ck_assert_int_eq(cfd_token_on_trigger(NULL, t1, free_sibling, NULL, 0),
			 0);
	ck_assert_int_eq(cfd_source_add_deadline(&s1, t1, w, at), 0);
	ck_assert_int_eq(cfd_source_add_deadline(&sibling, t2, w, at + 1), 0);
	wait_past(at + 1); /* both due: one dispatch queues both */
	ck_assert(t_fd_readable(cfd_watcher_fd(w), T_WAIT_MS));
	ck_assert_int_eq(cfd_watcher_dispatch(w), 1);
	ck_assert(cfd_token_triggered(t1));
	ck_assert_ptr_null(sibling);
	ck_assert_msg(!cfd_token_triggered(t2),
		      "a freed source triggered its token");
	cfd_source_free(s1);
	cfd_token_unref(t1);
	cfd_token_unref(t2);
	cfd_watcher_unref(w);
}
END_TEST

/* A watcher made in the parent (not the default one) owns SIGUSR1; in a
 * forked child that watcher is dead (-ECHILD), yet the child can never
 * watch SIGUSR1: sig_owner[] is only reset by the default watcher's atfork
 * handler, which is installed on first use of cfd_watcher_default(). */
static void child_claims_signal(void *arg)
{
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);
	struct cfd_watcher *w;
	struct cfd_token *tok;

	(void)arg;
	TW_CHILD_CHECK(cfd_watcher_new(&w) == 0);
	TW_CHILD_CHECK(cfd_token_new(&tok, "child") == 0);
	TW_CHILD_CHECK(tw_add_signals(NULL, tok, w, &usr1) == 0);
}

START_TEST(test_regression_signal_owned_after_fork)
{
	struct cfd_watcher *w;
	struct cfd_token *tok = t_new_token("parent");
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);

	tw_block_test_signals();
	w = new_watcher();
	ck_assert_int_eq(tw_add_signals(NULL, tok, w, &usr1), 0);
	tw_fork_check(child_claims_signal, NULL);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* ======================================================================
 * the seed examples (cancelable-basics.txt), in C
 * ==================================================================== */

/* "Cancelable.with_timeout(30.0, name="api_call")": the operation (here a
 * read that never completes) is abandoned when the timeout fires. */
START_TEST(seed_timeout)
{
	struct cfd_token *api_call = t_new_token("api_call");
	int never_ready[2];
	int64_t t0 = t_now_ns();
	struct pollfd p[2];

	ck_assert_int_eq(pipe2(never_ready, O_CLOEXEC), 0);
	ck_assert_int_eq(
	    cfd_source_add_timeout(NULL, api_call, NULL, CFD_MSEC(20)), 0);
	p[0] = (struct pollfd){ .fd = never_ready[0], .events = POLLIN };
	p[1] =
	    (struct pollfd){ .fd = cfd_token_fd(api_call), .events = POLLIN };
	ck_assert_int_eq(poll(p, 2, T_WAIT_MS), 1);
	ck_assert(p[1].revents & POLLIN);
	/* except anyio.get_cancelled_exc_class(): "timed out" */
	ck_assert_int_eq(cfd_token_check(api_call), -ECANCELED);
	ck_assert_int_eq(cfd_token_reason(api_call), CFD_REASON_TIMEOUT);
	ck_assert_str_eq(cfd_token_name(cfd_token_origin(api_call)),
			 "api_call");
	ck_assert_int_ge(t_now_ns() - t0, CFD_MSEC(20)); /* not early */
	close(never_ready[0]);
	close(never_ready[1]);
	cfd_token_unref(api_call);
}
END_TEST

/* "Manual Token": a worker processes items and sleeps between them; a
 * controller thread cancels the shared token ("cancel_sync ... from a
 * regular thread"); the worker stops at once, even mid-sleep. */
struct manual {
	struct cfd_token *token;
	int progress; /* eventfd: the worker processed three items */
};

static void *controller(void *arg)
{
	struct manual *m = arg;

	t_fd_readable(m->progress, T_WAIT_MS);
	cfd_token_trigger_msg(m->token, "Cancelled from thread");
	return NULL;
}

START_TEST(seed_manual_from_thread)
{
	struct manual m = { .token = t_new_token("worker") };
	int processed = 0, i;
	pthread_t th;

	m.progress = eventfd(0, EFD_CLOEXEC);
	ck_assert_int_eq(pthread_create(&th, NULL, controller, &m), 0);
	for (i = 0; i < 1000; i++) {
		/* async with Cancelable.with_token(token): check, then work */
		if (cfd_token_check(m.token) == -ECANCELED)
			break;
		if (++processed == 3)
			tw_eventfd_signal(m.progress);
		/* await anyio.sleep(0.1), cut short by the cancellation */
		t_fd_readable(cfd_token_fd(m.token), 100);
	}
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_lt(i, 1000);
	ck_assert_int_ge(processed, 3);
	ck_assert_int_eq(cfd_token_reason(m.token), CFD_REASON_MANUAL);
	ck_assert_str_eq(cfd_token_message(m.token), "Cancelled from thread");
	close(m.progress);
	cfd_token_unref(m.token);
}
END_TEST

/* "OS Signals - Graceful Shutdown": SIGTERM (a container orchestrator) or
 * SIGINT (Ctrl+C) cancels the server; cleanup still runs afterwards,
 * "shielded": under a fresh token with its own deadline, since anything
 * under the cancelled one is born cancelled. */
static const int shutdown_signals[] = { SIGTERM, SIGINT };

START_TEST(seed_graceful_shutdown)
{
	int signo = shutdown_signals[_i], served = 0, requests[2], state[2];
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
END_TEST

/* "Custom Conditions - Resource Monitoring": cancel when memory usage
 * passes 90%, checked every millisecond on the watcher's thread. */
struct resources {
	_Atomic int percent;
	_Atomic int checks;
};

static bool check_resources(struct cfd_token *tok, void *arg)
{
	struct resources *r = arg;

	(void)tok;
	atomic_fetch_add(&r->checks, 1);
	return atomic_load(&r->percent) > 90;
}

START_TEST(seed_condition)
{
	struct cfd_token *task = t_new_token("memory_intensive_task");
	struct resources r = { 50, 0 };
	int64_t end = t_now_ns() + CFD_MSEC(T_WAIT_MS);

	ck_assert_int_eq(cfd_source_add_condition(NULL, task, NULL,
						  check_resources, &r,
						  CFD_MSEC(1)),
			 0);
	/* process_large_dataset(): memory grows; checked, not yet over */
	while (atomic_load(&r.checks) < 3 && t_now_ns() < end)
		cfd_token_wait(task, CFD_MSEC(1));
	ck_assert_int_ge(atomic_load(&r.checks), 3);
	ck_assert(!cfd_token_triggered(task));
	atomic_store(&r.percent, 95);
	ck_assert_int_eq(cfd_token_wait(task, CFD_MSEC(T_WAIT_MS)), 0);
	ck_assert_int_eq(cfd_token_reason(task), CFD_REASON_CONDITION);
	cfd_token_unref(task);
}
END_TEST

/* "Combining Multiple Sources": any-of timeout + manual + SIGTERM, first
 * wins; the any-of's origin says which (its reason is _PARENT; the
 * origin's reason is the source's).  _i: 0 timeout, 1 manual, 2 signal. */
START_TEST(seed_any_of_first_wins)
{
	struct cfd_token *toks[3], *op, *origin;
	sigset_t term = tw_sigset(SIGTERM, 0);
	static const int reasons[] = { CFD_REASON_TIMEOUT, CFD_REASON_MANUAL,
				       CFD_REASON_SIGNAL };

	toks[0] = t_new_token("timeout");
	toks[1] = t_new_token("token");
	toks[2] = t_new_token("sigterm");
	ck_assert_int_eq(
	    cfd_source_add_timeout(NULL, toks[0], NULL,
				   _i == 0 ? CFD_MSEC(2) : CFD_SEC(3600)),
	    0);
	ck_assert_int_eq(tw_add_signals(NULL, toks[2], NULL, &term), 0);
	ck_assert_int_eq(
	    cfd_token_any_of(&op, "multi_source_operation", toks, 3), 0);
	if (_i == 1)
		cfd_token_trigger_msg(toks[1], "user pressed cancel");
	else if (_i == 2)
		ck_assert_int_eq(kill(getpid(), SIGTERM), 0);
	ck_assert_int_eq(cfd_token_wait(op, CFD_MSEC(T_WAIT_MS)), 0);
	origin = cfd_token_origin(op);
	ck_assert_ptr_eq(origin, toks[_i]);
	ck_assert_int_eq(cfd_token_reason(op), CFD_REASON_PARENT);
	ck_assert_int_eq(cfd_token_reason(origin), reasons[_i]);
	for (int k = 0; k < 3; k++)
		ck_assert(cfd_token_triggered(toks[k]) == (k == _i));
	if (_i == 1)
		ck_assert_str_eq(cfd_token_message(op), "user pressed cancel");
	if (_i == 2)
		ck_assert_int_eq(cfd_token_signal(op), SIGTERM);
	cfd_token_unref(op);
	for (int k = 0; k < 3; k++)
		cfd_token_unref(toks[k]);
}
END_TEST

/* "AND Logic": all-of a minimum time and a condition ("data complete");
 * neither alone triggers it.  Each source has its own embedded watcher, so
 * the test decides which one fires first, whatever the timing.
 * _i: 0 the minimum time first, 1 the condition first. */
static bool data_complete(struct cfd_token *tok, void *arg)
{
	(void)tok;
	return *(bool *)arg;
}

START_TEST(seed_all_of_neither_alone)
{
	struct cfd_watcher *wt = new_watcher(), *wc = new_watcher();
	struct cfd_token *min_time = t_new_token("min_time");
	struct cfd_token *ready = t_new_token("data_ready"), *both;
	struct cfd_token *toks[2] = { min_time, ready };
	bool complete = false;

	ck_assert_int_eq(
	    cfd_source_add_timeout(NULL, min_time, wt, CFD_MSEC(1)), 0);
	ck_assert_int_eq(cfd_source_add_condition(NULL, ready, wc,
						  data_complete, &complete,
						  CFD_USEC(200)),
			 0);
	ck_assert_int_eq(cfd_token_all_of(&both, "requires_both", toks, 2), 0);
	if (_i == 0) {
		ck_assert(tw_dispatch_until(wt, min_time));
		/* the condition is checked and still false */
		ck_assert(t_fd_readable(cfd_watcher_fd(wc), T_WAIT_MS));
		ck_assert_int_eq(cfd_watcher_dispatch(wc), 1);
		ck_assert(!cfd_token_triggered(ready));
		ck_assert(!cfd_token_triggered(both));
		complete = true;
		ck_assert(tw_dispatch_until(wc, ready));
	} else {
		complete = true;
		ck_assert(tw_dispatch_until(wc, ready));
		/* the minimum time may have passed, but its watcher has not
		 * been dispatched: it has not fired */
		ck_assert(!cfd_token_triggered(min_time));
		ck_assert(!cfd_token_triggered(both));
		ck_assert(tw_dispatch_until(wt, min_time));
	}
	ck_assert(cfd_token_triggered(both));
	ck_assert_int_eq(cfd_token_reason(both), CFD_REASON_ALL_OF);
	/* the origin is the parent that completed it */
	ck_assert_ptr_eq(cfd_token_origin(both), _i == 0 ? ready : min_time);
	cfd_token_unref(both);
	cfd_token_unref(min_time);
	cfd_token_unref(ready);
	cfd_watcher_unref(wt);
	cfd_watcher_unref(wc);
}
END_TEST

static Suite *source_suite(void)
{
	Suite *s = suite_create("source");
	TCase *tc;

	tc = t_tcase("timeout");
	tcase_add_test(tc, test_timeout_einval);
	tcase_add_test(tc, test_timeout_zero_fires_at_once);
	tcase_add_test(tc, test_deadline_past_fires_at_once);
	tcase_add_test(tc, test_timeout_fires);
	tcase_add_test(tc, test_deadline_only_shortens);
	tcase_add_test(tc, test_deadline_far);
	tcase_add_test(tc, test_timeout_freed_never_fires);
	tcase_add_test(tc, test_timeout_10000);
	suite_add_tcase(s, tc);

	tc = t_tcase("signal");
	tcase_add_test(tc, test_signals_einval);
	tcase_add_test(tc, test_signals_ebusy_until_blocked);
	tcase_add_test(tc, test_signals_fire_with_number);
	tcase_add_test(tc, test_signals_same_signal_two_tokens);
	tcase_add_test(tc, test_signals_two_watchers_eexist);
	tcase_add_test(tc, test_signals_trap_thread_before_block);
	tcase_add_test(tc, test_signals_block_before_thread);
	suite_add_tcase(s, tc);

	tc = t_tcase("fd");
	tcase_add_test(tc, test_fd_errors);
	tcase_add_test(tc, test_fd_hangup);
	tcase_add_test(tc, test_fd_nested_watcher);
	tcase_add_test(tc, test_fd_pidfd);
	tcase_add_test(tc, test_fd_other_process_token);
	suite_add_tcase(s, tc);

	tc = t_tcase("condition");
	tcase_add_test(tc, test_condition_einval);
	tcase_add_test(tc, test_condition_embedded);
	tcase_add_test(tc, test_condition_on_watcher_thread);
	tcase_add_test(tc, test_condition_stops_when_token_triggers);
	suite_add_tcase(s, tc);

	tc = t_tcase("lifecycle");
	tcase_add_test(tc, test_source_free_null);
	tcase_add_test(tc, test_already_triggered_no_fd);
	tcase_add_loop_test(tc, test_source_fd_closed, 0, 8);
	tcase_add_test(tc, test_sources_on_one_token);
	tcase_add_test(tc, test_free_from_own_fire);
	tcase_add_loop_test(tc, test_free_waits_for_fire, 0, 2);
	tcase_add_test(tc, test_add_remove_from_callback);
	tcase_add_test(tc, test_churn_while_running);
	tcase_add_test(tc, test_sources_after_fork);
	suite_add_tcase(s, tc);

	tc = t_tcase("limits");
	tcase_add_test(tc, test_emfile);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("lifetime races", 300);
	tcase_add_loop_test(tc, test_source_free_races_token_unref, NLT_KINDS,
			    3 * NLT_KINDS);
	tcase_add_test(tc, test_fire_drops_last_reference_while_freed);
	tcase_add_test(tc, test_condition_add_racing_trigger);
	suite_add_tcase(s, tc);

	tc = tw_tcase_default("lifetime races, default watcher");
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_source_free_races_token_unref, 0,
			    NLT_KINDS);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("regressions", 10);
	tcase_add_test(tc, test_regression_free_after_token_freed);
	tcase_add_test(tc, test_regression_freed_sibling_fires);
	tcase_add_test(tc, test_regression_signal_owned_after_fork);
	suite_add_tcase(s, tc);

	tc = tw_tcase_default("seeds");
	tcase_add_test(tc, seed_timeout);
	tcase_add_test(tc, seed_manual_from_thread);
	tcase_add_loop_test(tc, seed_graceful_shutdown, 0, 2);
	tcase_add_test(tc, seed_condition);
	tcase_add_loop_test(tc, seed_any_of_first_wins, 0, 3);
	tcase_add_loop_test(tc, seed_all_of_neither_alone, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(source_suite());
}
