/* SPDX-License-Identifier: MIT */
/*
 * Description: the watcher (lib/watcher.c): life cycle and argument errors,
 * dispatch, its own thread, the default watcher, fork, the async-signal-safe
 * trigger from a real signal handler, and the watcher driven by real event
 * loops: epoll, poll, io_uring POLL_ADD, libuv, GLib, its own thread and the
 * default watcher (tools/examples/ holds short readable versions of these).
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#ifdef CFD_HAVE_URING
#include <liburing.h>
#endif
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#ifdef CFD_HAVE_LIBUV
#include <uv.h>
#endif
#ifdef CFD_HAVE_GLIB
#include <glib-unix.h>
#include <glib.h>
#endif

#include "helpers-watcher.h"
#include "helpers.h"

/* ======================================================================
 * life cycle, errors, dispatch
 * ==================================================================== */

START_TEST(test_new_ref_unref)
{
	struct cfd_watcher *w = NULL, *w2;
	int fds = t_count_fds();

	ck_assert_int_eq(cfd_watcher_new(&w), 0);
	ck_assert_ptr_nonnull(w);
	/* an epoll set, a doorbell eventfd and one timerfd */
	ck_assert_int_eq(t_count_fds(), fds + 3);
	ck_assert(t_fd_is(cfd_watcher_fd(w), "anon_inode:[eventpoll]"));
	ck_assert_int_eq(cfd_watcher_fd(w), cfd_watcher_fd(w));
	ck_assert_ptr_eq(cfd_watcher_ref(w), w);
	ck_assert_ptr_null(cfd_watcher_unref(w));
	ck_assert_int_ge(cfd_watcher_fd(w), 0); /* still one reference */
	w2 = w;
	cfd_watcher_unrefp(&w2);
	ck_assert_ptr_null(w2);
	ck_assert_int_eq(t_count_fds(), fds);
	/* NULL-safe */
	ck_assert_ptr_null(cfd_watcher_ref(NULL));
	ck_assert_ptr_null(cfd_watcher_unref(NULL));
	cfd_watcher_unrefp(NULL);
	cfd_watcher_unrefp(&w2);
}
END_TEST

START_TEST(test_einval)
{
	struct cfd_token *tok = t_new_token("t");

	ck_assert_int_eq(cfd_watcher_new(NULL), -EINVAL);
	ck_assert_int_eq(cfd_watcher_default(NULL), -EINVAL);
	ck_assert_int_eq(cfd_watcher_fd(NULL), -EINVAL);
	ck_assert_int_eq(cfd_watcher_dispatch(NULL), -EINVAL);
	ck_assert_int_eq(cfd_watcher_start(NULL), -EINVAL);
	ck_assert_int_eq(cfd_watcher_stop(NULL), -EINVAL);
	ck_assert_int_eq(cfd_token_trigger_async_safe(NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(cfd_token_trigger_async_safe(tok, NULL, -1), -EINVAL);
	ck_assert_int_eq(cfd_token_trigger_async_safe(tok, NULL, _NSIG),
			 -EINVAL);
	ck_assert(!cfd_token_triggered(tok));
	cfd_token_unref(tok);
}
END_TEST

/* The watcher fd is readable exactly when dispatch has work; dispatch never
 * blocks and returns the number of events it handled. */
START_TEST(test_dispatch_counts)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *a = t_new_token("a"), *b = t_new_token("b");
	int pa[2], pb[2];

	ck_assert(!t_fd_readable(cfd_watcher_fd(w), 0));
	ck_assert_int_eq(cfd_watcher_dispatch(w), 0);
	ck_assert_int_eq(pipe2(pa, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(pb, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_source_add_fd(NULL, a, w, pa[0]), 0);
	ck_assert_int_eq(cfd_source_add_fd(NULL, b, w, pb[0]), 0);
	ck_assert(!t_fd_readable(cfd_watcher_fd(w), 0));
	ck_assert_int_eq(cfd_watcher_dispatch(w), 0);
	close(pa[1]);
	close(pb[1]);
	ck_assert(t_fd_readable(cfd_watcher_fd(w), T_WAIT_MS));
	ck_assert(!cfd_token_triggered(a)); /* only dispatch fires */
	ck_assert_int_eq(cfd_watcher_dispatch(w), 2);
	ck_assert(cfd_token_triggered(a));
	ck_assert(cfd_token_triggered(b));
	ck_assert(!t_fd_readable(cfd_watcher_fd(w), 0));
	ck_assert_int_eq(cfd_watcher_dispatch(w), 0);
	close(pa[0]);
	close(pb[0]);
	cfd_token_unref(a);
	cfd_token_unref(b);
	cfd_watcher_unref(w);
}
END_TEST

/* Two threads dispatching the same embedded watcher take turns. */
struct two_dispatchers {
	struct cfd_watcher *w;
	struct cfd_token *toks[64];
	_Atomic int bad;
};

static bool all_triggered(void *arg)
{
	struct two_dispatchers *d = arg;

	for (int i = 0; i < 64; i++)
		if (!cfd_token_triggered(d->toks[i]))
			return false;
	return true;
}

static void *dispatcher(void *arg)
{
	struct two_dispatchers *d = arg;
	int64_t end = t_now_ns() + CFD_MSEC(T_WAIT_MS);

	while (!all_triggered(d) && t_now_ns() < end) {
		t_fd_readable(cfd_watcher_fd(d->w), 1);
		if (cfd_watcher_dispatch(d->w) < 0)
			atomic_store(&d->bad, 1);
	}
	return NULL;
}

START_TEST(test_dispatch_two_threads)
{
	struct two_dispatchers d = { .w = tw_new_watcher() };
	pthread_t th[2];

	for (int i = 0; i < 64; i++) {
		d.toks[i] = t_new_token("t");
		ck_assert_int_eq(cfd_source_add_timeout(NULL, d.toks[i], d.w,
							CFD_USEC(20 * i + 1)),
				 0);
	}
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, dispatcher, &d),
				 0);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
	ck_assert(all_triggered(&d));
	ck_assert_int_eq(atomic_load(&d.bad), 0);
	for (int i = 0; i < 64; i++)
		cfd_token_unref(d.toks[i]);
	cfd_watcher_unref(d.w);
}
END_TEST

/* From a callback running inside dispatch, dispatch would recurse: it
 * refuses with -EDEADLK.  Sources may still be added there (source suite). */
struct reentry {
	struct cfd_watcher *w;
	bool own_thread;
	int gate; /* if >= 0: wait for it before calling start */
	int done; /* eventfd written when the callback returns, or -1 */
	int dispatch, stop, start;
	pthread_t thread;
};

static void reenter(struct cfd_token *tok, void *arg)
{
	struct reentry *r = arg;
	uint64_t one = 1;

	(void)tok;
	r->thread = pthread_self();
	r->dispatch = cfd_watcher_dispatch(r->w);
	r->stop = cfd_watcher_stop(r->w);
	if (r->own_thread) {
		if (r->gate >= 0)
			t_fd_readable(r->gate, T_WAIT_MS);
		r->start = cfd_watcher_start(r->w);
	}
	if (r->done >= 0 && write(r->done, &one, sizeof(one)) < 0)
		abort();
}

START_TEST(test_dispatch_from_callback)
{
	struct reentry r = { .w = tw_new_watcher(), .gate = -1, .done = -1 };
	struct cfd_token *tok = t_new_token("t");
	int efd;

	ck_assert_int_eq(cfd_token_on_trigger(NULL, tok, reenter, &r, 0), 0);
	efd = tw_add_trigger(NULL, tok, r.w);
	tw_eventfd_signal(efd);
	ck_assert(tw_dispatch_until(r.w, tok));
	ck_assert(pthread_equal(r.thread, pthread_self()));
	ck_assert_int_eq(r.dispatch, -EDEADLK);
	ck_assert_int_eq(r.stop, -EALREADY); /* it was never started */
	close(efd);
	cfd_token_unref(tok);
	cfd_watcher_unref(r.w);
}
END_TEST

/* ======================================================================
 * the own thread
 * ==================================================================== */

START_TEST(test_start_stop)
{
	struct cfd_watcher *w = tw_new_watcher();

	ck_assert_int_eq(cfd_watcher_stop(w), -EALREADY);
	for (int round = 0; round < 3; round++) {
		struct cfd_token *tok = t_new_token("t");

		ck_assert_int_eq(cfd_watcher_start(w), 0);
		ck_assert_int_eq(cfd_watcher_start(w), -EALREADY);
		ck_assert_int_eq(cfd_watcher_dispatch(w), -EBUSY);
		ck_assert_int_eq(
		    cfd_source_add_timeout(NULL, tok, w, CFD_USEC(100)), 0);
		ck_assert_int_eq(cfd_token_wait(tok, CFD_MSEC(T_WAIT_MS)), 0);
		ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_TIMEOUT);
		ck_assert_int_eq(cfd_watcher_stop(w), 0);
		ck_assert_int_eq(cfd_watcher_stop(w), -EALREADY);
		ck_assert_int_ge(cfd_watcher_dispatch(w), 0); /* embedded */
		cfd_token_unref(tok);
	}
	cfd_watcher_unref(w);
}
END_TEST

/* Start and stop while another thread calls cfd_watcher_dispatch() all
 * along (it gets -EBUSY while the thread runs).  Before the fix, a dispatch
 * during the stop drained the doorbell meant to wake the thread, and the
 * stop waited for it for ever (the test's timeout would say so). */
struct stop_race {
	struct cfd_watcher *w;
	atomic_int quit, bad;
};

static void *dispatch_all_along(void *arg)
{
	struct stop_race *r = arg;

	while (!atomic_load_explicit(&r->quit, memory_order_relaxed)) {
		int d = cfd_watcher_dispatch(r->w);

		if (d < 0 && d != -EBUSY)
			atomic_store(&r->bad, d);
	}
	return NULL;
}

/* A dispatch that waits for another one must not, once that one ends,
 * wait on for a thread started meanwhile: it returns -EBUSY.  (The
 * fuzzer's thread sat in cfd_watcher_dispatch() behind the own thread,
 * which holds the dispatch for its whole life.) */
struct gate_race {
	struct cfd_watcher *w;
	sem_t in_cb, release;
	_Atomic pid_t tid;
	atomic_int result;
	atomic_bool done;
};

static void hold_dispatch(struct cfd_token *tok, void *arg)
{
	struct gate_race *g = arg;

	(void)tok;
	sem_post(&g->in_cb);
	sem_wait(&g->release);
}

static void *first_dispatcher(void *arg)
{
	struct gate_race *g = arg;

	cfd_watcher_dispatch(g->w);
	return NULL;
}

static void *second_dispatcher(void *arg)
{
	struct gate_race *g = arg;

	atomic_store(&g->tid, t_gettid());
	atomic_store(&g->result, cfd_watcher_dispatch(g->w));
	atomic_store(&g->done, true);
	return NULL;
}

START_TEST(test_dispatch_waiting_when_the_thread_starts)
{
	for (int round = 0; round < 20; round++) {
		struct gate_race g = { .tid = 0 };
		struct cfd_token *tok = t_new_token("held");
		int efd = eventfd(1, EFD_CLOEXEC);
		pthread_t c, b;
		int64_t end;
		int res;

		ck_assert_int_eq(cfd_watcher_new(&g.w), 0);
		sem_init(&g.in_cb, 0, 0);
		sem_init(&g.release, 0, 0);
		ck_assert_int_eq(cfd_source_add_fd(NULL, tok, g.w, efd), 0);
		ck_assert_int_eq(
		    cfd_token_on_trigger(NULL, tok, hold_dispatch, &g, 0), 0);
		/* c dispatches, and stays in the callback */
		ck_assert_int_eq(pthread_create(&c, NULL, first_dispatcher, &g),
				 0);
		sem_wait(&g.in_cb);
		/* b waits for c's dispatch */
		ck_assert_int_eq(
		    pthread_create(&b, NULL, second_dispatcher, &g), 0);
		while (!atomic_load(&g.tid))
			sched_yield();
		ck_assert(t_thread_sleeping(atomic_load(&g.tid), T_WAIT_MS));
		/* the own thread starts, then c's dispatch ends */
		ck_assert_int_eq(cfd_watcher_start(g.w), 0);
		sem_post(&g.release);
		end = t_now_ns() + CFD_MSEC(T_WAIT_MS);
		while (!atomic_load(&g.done) && t_now_ns() < end)
			usleep(1000);
		ck_assert_msg(atomic_load(&g.done),
			      "round %d: a dispatch waits for the own thread",
			      round);
		res = atomic_load(&g.result);
		ck_assert_int_eq(res, -EBUSY);
		pthread_join(b, NULL);
		pthread_join(c, NULL);
		ck_assert_int_eq(cfd_watcher_stop(g.w), 0);
		sem_destroy(&g.in_cb);
		sem_destroy(&g.release);
		close(efd);
		cfd_token_unref(tok);
		cfd_watcher_unref(g.w);
	}
}
END_TEST

START_TEST(test_stop_while_dispatching)
{
	struct stop_race r = { .w = tw_new_watcher() };
	pthread_t th;

	ck_assert_int_eq(pthread_create(&th, NULL, dispatch_all_along, &r), 0);
	for (int i = 0; i < (T_TSAN ? 2000 : 20000); i++) {
		ck_assert_int_eq(cfd_watcher_start(r.w), 0);
		ck_assert_int_eq(cfd_watcher_stop(r.w), 0);
	}
	atomic_store(&r.quit, 1);
	pthread_join(th, NULL);
	ck_assert_int_eq(atomic_load(&r.bad), 0);
	cfd_watcher_unref(r.w);
}
END_TEST

/* From a callback on the watcher's own thread: stop cannot join itself
 * (-EDEADLK), dispatch would recurse (-EDEADLK), start is -EALREADY. */
START_TEST(test_own_thread_calls)
{
	struct reentry r = { .w = tw_new_watcher(),
			     .own_thread = true,
			     .gate = -1,
			     .done = eventfd(0, EFD_CLOEXEC) };
	struct cfd_token *tok = t_new_token("t");
	int efd;

	ck_assert_int_eq(cfd_watcher_start(r.w), 0);
	ck_assert_int_eq(cfd_token_on_trigger(NULL, tok, reenter, &r, 0), 0);
	efd = tw_add_trigger(NULL, tok, r.w);
	tw_eventfd_signal(efd);
	/* (stopping while the callback still runs deadlocks today: see
	 * test_regression_start_from_own_thread_while_stopping) */
	ck_assert(t_fd_readable(r.done, T_WAIT_MS));
	ck_assert_int_eq(cfd_watcher_stop(r.w), 0);
	close(r.done); /* after the join: TSan sees no order in an fd */
	ck_assert(!pthread_equal(r.thread, pthread_self()));
	ck_assert_int_eq(r.dispatch, -EDEADLK);
	ck_assert_int_eq(r.stop, -EDEADLK);
	ck_assert_int_eq(r.start, -EALREADY);
	close(efd);
	cfd_token_unref(tok);
	cfd_watcher_unref(r.w);
}
END_TEST

/* The last reference dropped by a callback on the watcher's own thread:
 * the thread cannot join itself; it frees the watcher on its way out. */
static void drop_watcher(struct cfd_token *tok, void *arg)
{
	(void)tok;
	cfd_watcher_unref(arg);
}

START_TEST(test_last_unref_on_own_thread)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *tok = t_new_token("t");
	int fds = t_count_fds() - 3; /* without the watcher's fds */
	int64_t end = t_now_ns() + CFD_MSEC(T_WAIT_MS);

	ck_assert_int_eq(cfd_watcher_start(w), 0);
	ck_assert_int_eq(cfd_token_on_trigger(NULL, tok, drop_watcher, w, 0),
			 0);
	/* No source holds the watcher: the async trigger hands the
	 * callbacks to the watcher thread. */
	ck_assert_int_eq(cfd_token_trigger_async_safe(tok, w, 0), 1);
	while (t_count_fds() != fds && t_now_ns() < end)
		usleep(100);
	ck_assert_int_eq(t_count_fds(), fds);
	cfd_token_unref(tok);
}
END_TEST

/* ======================================================================
 * the default watcher
 * ==================================================================== */

START_TEST(test_default)
{
	struct cfd_watcher *d = NULL;
	struct cfd_token *tok = t_new_token("t");
	int fds = t_count_fds();

	ck_assert_int_eq(cfd_watcher_default(&d), 0);
	ck_assert_ptr_eq(d, tw_default); /* one per process */
	ck_assert_int_eq(t_count_fds(), fds);
	ck_assert_int_eq(cfd_watcher_dispatch(d), -EBUSY); /* own thread */
	ck_assert_int_eq(cfd_watcher_start(d), -EALREADY);
	/* NULL means the default watcher */
	ck_assert_int_eq(cfd_source_add_timeout(NULL, tok, NULL, CFD_USEC(50)),
			 0);
	ck_assert_int_eq(cfd_token_wait(tok, CFD_MSEC(T_WAIT_MS)), 0);
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_TIMEOUT);
	cfd_watcher_unref(d);
	cfd_token_unref(tok);
}
END_TEST

/* The default watcher's thread starts with every signal blocked, so that a
 * signal meant for a signalfd is never delivered to it. */
struct mask_probe {
	sigset_t mask;
	pthread_t thread;
};

static bool probe_mask(struct cfd_token *tok, void *arg)
{
	struct mask_probe *p = arg;

	(void)tok;
	pthread_sigmask(SIG_BLOCK, NULL, &p->mask);
	p->thread = pthread_self();
	return true;
}

START_TEST(test_default_blocks_all_signals)
{
	struct mask_probe p;
	struct cfd_token *tok = t_new_token("probe");

	ck_assert_int_eq(
	    cfd_source_add_condition(NULL, tok, NULL, probe_mask, &p, 1), 0);
	ck_assert_int_eq(cfd_token_wait(tok, CFD_MSEC(T_WAIT_MS)), 0);
	ck_assert(!pthread_equal(p.thread, pthread_self()));
	for (int s = 1; s < SIGRTMIN; s++)
		if (s != SIGKILL && s != SIGSTOP && s < 32)
			ck_assert_msg(sigismember(&p.mask, s) == 1,
				      "signal %d not blocked", s);
	for (int s = SIGRTMIN; s <= SIGRTMAX; s++)
		ck_assert_msg(sigismember(&p.mask, s) == 1,
			      "signal %d not blocked", s);
	cfd_token_unref(tok);
}
END_TEST

/* ======================================================================
 * fork
 * ==================================================================== */

static struct cfd_watcher *parent_w;

static int child_uses_parent_watcher(void *arg)
{
	struct cfd_token *tok;
	struct cfd_watcher *d = NULL;

	(void)arg;
	T_CHILD_CHECK(cfd_token_new(&tok, "child") == 0);
	T_CHILD_CHECK(cfd_watcher_fd(parent_w) == -ECHILD);
	T_CHILD_CHECK(cfd_watcher_dispatch(parent_w) == -ECHILD);
	T_CHILD_CHECK(cfd_watcher_start(parent_w) == -ECHILD);
	T_CHILD_CHECK(cfd_watcher_stop(parent_w) == -ECHILD);
	T_CHILD_CHECK(cfd_token_trigger_async_safe(tok, parent_w, 0) ==
		      -ECHILD);
	T_CHILD_CHECK(!cfd_token_triggered(tok));
	T_CHILD_CHECK(cfd_source_add_timeout(NULL, tok, parent_w, CFD_SEC(1)) ==
		      -ECHILD);
	T_CHILD_CHECK(cfd_watcher_unref(parent_w) == NULL); /* left alone */
	/* No default watcher was made in the parent: the child makes its
	 * own on first use. */
	T_CHILD_CHECK(cfd_watcher_default(&d) == 0);
	T_CHILD_CHECK(cfd_watcher_fd(d) >= 0);
	cfd_watcher_unref(d);
	return 0;
}

START_TEST(test_after_fork_echild)
{
	struct cfd_token *tok = t_new_token("parent");

	parent_w = tw_new_watcher();
	ck_assert_int_eq(
	    cfd_source_add_timeout(NULL, tok, parent_w, CFD_USEC(100)), 0);
	ck_assert_int_eq(t_in_child(child_uses_parent_watcher, NULL), 0);
	/* the parent's watcher is unharmed by the child's calls */
	ck_assert(tw_dispatch_until(parent_w, tok));
	cfd_token_unref(tok);
	cfd_watcher_unref(parent_w);
}
END_TEST

/* The parent's default watcher (and its thread) does not exist in a child:
 * first use in the child makes a new one, which works. */
static int child_default(void *arg)
{
	struct cfd_watcher *parent_default = arg, *d = NULL;
	struct cfd_token *tok;

	T_CHILD_CHECK(cfd_watcher_fd(parent_default) == -ECHILD);
	T_CHILD_CHECK(cfd_watcher_default(&d) == 0);
	T_CHILD_CHECK(d != parent_default);
	T_CHILD_CHECK(cfd_watcher_dispatch(d) == -EBUSY); /* runs */
	T_CHILD_CHECK(cfd_token_new(&tok, "child") == 0);
	T_CHILD_CHECK(cfd_source_add_timeout(NULL, tok, NULL, CFD_USEC(100)) ==
		      0);
	T_CHILD_CHECK(cfd_token_wait(tok, CFD_MSEC(T_WAIT_MS)) == 0);
	T_CHILD_CHECK(cfd_token_reason(tok) == CFD_REASON_TIMEOUT);
	/* an async trigger lands on the child's default watcher */
	T_CHILD_CHECK(cfd_token_new(&tok, "async") == 0);
	T_CHILD_CHECK(cfd_token_trigger_async_safe(tok, NULL, SIGUSR1) == 1);
	cfd_watcher_unref(d);
	return 0;
}

START_TEST(test_default_after_fork)
{
	struct cfd_token *settle;

	/* ThreadSanitizer cannot start threads in a child forked from a
	 * process that has threads (it dies). */
	if (T_TSAN) {
		fprintf(stderr,
			"test_default_after_fork: skipped under TSan\n");
		return;
	}
	/* Fork only once the default watcher's thread has run a dispatch
	 * and sleeps in epoll_wait(): a fork while a thread is still being
	 * set up can leave the sanitizers' runtime locks held in the child
	 * (gcc 12's ASan), which has nothing to do with the library. */
	ck_assert_int_eq(cfd_token_new(&settle, "settle"), 0);
	ck_assert_int_eq(
	    cfd_source_add_timeout(NULL, settle, NULL, CFD_USEC(100)), 0);
	ck_assert_int_eq(cfd_token_wait(settle, CFD_MSEC(T_WAIT_MS)), 0);
	cfd_token_unref(settle);
	ck_assert_int_eq(t_in_child(child_default, tw_default), 0);
}
END_TEST

/* ======================================================================
 * the async-signal-safe trigger
 * ==================================================================== */

static struct {
	struct cfd_token *tok;
	struct cfd_watcher *w;
	int result;
	int errno_after;
} handler;

static void on_signal(int signo)
{
	int saved = errno;

	errno = 4242;
	handler.result =
	    cfd_token_trigger_async_safe(handler.tok, handler.w, signo);
	handler.errno_after = errno;
	errno = saved;
}

static void install_handler(int signo)
{
	struct sigaction sa = { .sa_handler = on_signal,
				.sa_flags = SA_RESTART };
	sigset_t set = tw_sigset(signo, 0);

	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(signo, &sa, NULL), 0);
	ck_assert_int_eq(pthread_sigmask(SIG_UNBLOCK, &set, NULL), 0);
}

struct ran {
	int count;
	pthread_t thread;
};

static void count_run(struct cfd_token *tok, void *arg)
{
	struct ran *r = arg;

	(void)tok;
	r->count++;
	r->thread = pthread_self();
}

/* From a real handler: the flag, the cause and the token's fd are set at
 * once; the fan-out to children and the callbacks wait for the watcher,
 * and dispatch completes them. */
START_TEST(test_async_from_signal_handler)
{
	struct cfd_token *child;
	struct ran on_tok = { 0 }, on_child = { 0 };
	int tok_fd, child_fd;

	handler.w = tw_new_watcher();
	handler.tok = t_new_token("handled");
	ck_assert_int_eq(cfd_token_child(&child, handler.tok, "child"), 0);
	ck_assert_int_eq(
	    cfd_token_on_trigger(NULL, handler.tok, count_run, &on_tok, 0), 0);
	ck_assert_int_eq(
	    cfd_token_on_trigger(NULL, child, count_run, &on_child, 0), 0);
	tok_fd = cfd_token_fd(handler.tok);
	child_fd = cfd_token_fd(child);
	install_handler(SIGUSR1);
	ck_assert_int_eq(raise(SIGUSR1), 0); /* the handler has run */
	ck_assert_int_eq(handler.result, 1);
	ck_assert_int_eq(handler.errno_after, 4242);
	ck_assert(cfd_token_triggered(handler.tok));
	ck_assert_int_eq(cfd_token_reason(handler.tok), CFD_REASON_SIGNAL);
	ck_assert_int_eq(cfd_token_signal(handler.tok), SIGUSR1);
	ck_assert_ptr_eq(cfd_token_origin(handler.tok), handler.tok);
	ck_assert_int_gt(cfd_token_trigger_time(handler.tok), 0);
	ck_assert(t_fd_readable(tok_fd, 0));
	/* the rest waits for the watcher */
	ck_assert(!cfd_token_triggered(child));
	ck_assert(!t_fd_readable(child_fd, 0));
	ck_assert_int_eq(on_tok.count, 0);
	ck_assert(t_fd_readable(cfd_watcher_fd(handler.w), 0));
	ck_assert_int_eq(cfd_watcher_dispatch(handler.w), 1);
	ck_assert(cfd_token_triggered(child));
	ck_assert(t_fd_readable(child_fd, 0));
	ck_assert_int_eq(cfd_token_reason(child), CFD_REASON_PARENT);
	ck_assert_ptr_eq(cfd_token_origin(child), handler.tok);
	ck_assert_int_eq(cfd_token_signal(child), SIGUSR1);
	ck_assert_int_eq(on_tok.count, 1);
	ck_assert_int_eq(on_child.count, 1);
	ck_assert(pthread_equal(on_tok.thread, pthread_self()));
	/* again: already triggered */
	ck_assert_int_eq(raise(SIGUSR1), 0);
	ck_assert_int_eq(handler.result, 0);
	ck_assert_int_eq(cfd_watcher_dispatch(handler.w), 0);
	ck_assert_int_eq(on_tok.count, 1);
	signal(SIGUSR1, SIG_DFL);
	cfd_token_unref(child);
	handler.tok = cfd_token_unref(handler.tok);
	handler.w = cfd_watcher_unref(handler.w);
}
END_TEST

/* errno is preserved even when a write inside fails: here the token's
 * eventfd counter is made full first (a test may; a program must never
 * touch a token's fd), so the library's write gets EAGAIN. */
START_TEST(test_async_preserves_errno)
{
	uint64_t max = 0xfffffffffffffffeull;
	struct cfd_token *tok = t_new_token("full");
	struct cfd_watcher *w = tw_new_watcher();

	ck_assert_int_eq(write(cfd_token_fd(tok), &max, sizeof(max)),
			 sizeof(max));
	errno = 4242;
	ck_assert_int_eq(cfd_token_trigger_async_safe(tok, w, 0), 1);
	ck_assert_int_eq(errno, 4242);
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_MANUAL);
	ck_assert_int_eq(cfd_token_signal(tok), 0);
	ck_assert_int_eq(cfd_token_trigger_async_safe(tok, w, 0), 0);
	ck_assert_int_eq(cfd_watcher_dispatch(w), 1);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* The handler wakes a thread sleeping in cfd_token_wait() itself, before any
 * dispatch. */
struct sleeper {
	struct cfd_token *tok;
	_Atomic pid_t tid;
};

static void *sleeper(void *arg)
{
	struct sleeper *s = arg;

	atomic_store(&s->tid, t_gettid());
	return (void *)(intptr_t)cfd_token_wait(s->tok, CFD_FOREVER);
}

START_TEST(test_async_wakes_waiters)
{
	struct sleeper sl = { 0 };
	pthread_t th;
	void *ret;

	handler.w = tw_new_watcher();
	handler.tok = sl.tok = t_new_token("waited");
	install_handler(SIGUSR2);
	ck_assert_int_eq(pthread_create(&th, NULL, sleeper, &sl), 0);
	while (!atomic_load(&sl.tid))
		sched_yield();
	ck_assert(tw_wait_thread_in_futex(atomic_load(&sl.tid)));
	ck_assert_int_eq(raise(SIGUSR2), 0);
	ck_assert_int_eq(pthread_join(th, &ret), 0);
	ck_assert_int_eq((int)(intptr_t)ret, 0);
	ck_assert_int_eq(cfd_token_signal(handler.tok), SIGUSR2);
	ck_assert_int_eq(cfd_watcher_dispatch(handler.w), 1);
	signal(SIGUSR2, SIG_DFL);
	handler.tok = cfd_token_unref(handler.tok);
	handler.w = cfd_watcher_unref(handler.w);
}
END_TEST

/* NULL means the default watcher, which a handler cannot make: -ENXIO
 * until it exists (this test process never made it). */
START_TEST(test_async_enxio_without_default)
{
	struct cfd_token *tok = t_new_token("t");

	ck_assert_int_eq(cfd_token_trigger_async_safe(tok, NULL, 0), -ENXIO);
	ck_assert(!cfd_token_triggered(tok));
	cfd_token_unref(tok);
}
END_TEST

/* With the default watcher, its thread completes the fan-out and runs the
 * callbacks. */
START_TEST(test_async_default_watcher)
{
	struct cfd_token *child;
	struct ran on_child = { 0 };

	handler.w = NULL;
	handler.tok = t_new_token("handled");
	ck_assert_int_eq(cfd_token_child(&child, handler.tok, "child"), 0);
	ck_assert_int_eq(
	    cfd_token_on_trigger(NULL, child, count_run, &on_child, 0), 0);
	install_handler(SIGUSR1);
	ck_assert_int_eq(raise(SIGUSR1), 0);
	ck_assert_int_eq(handler.result, 1);
	ck_assert_int_eq(cfd_token_wait(child, CFD_MSEC(T_WAIT_MS)), 0);
	tw_quiesce(tw_default); /* the callbacks run after the trigger */
	ck_assert_int_eq(on_child.count, 1);
	ck_assert(!pthread_equal(on_child.thread, pthread_self()));
	ck_assert_int_eq(cfd_token_signal(child), SIGUSR1);
	signal(SIGUSR1, SIG_DFL);
	cfd_token_unref(child);
	handler.tok = cfd_token_unref(handler.tok);
}
END_TEST

/* ======================================================================
 * event loops
 *
 * Every loop runs the same case: a job token with a 1 ms timeout on an
 * embedded watcher.  The loop watches the watcher's fd (dispatch when it is
 * readable) and the job token's fd (the job is cancelled when it is).
 * ==================================================================== */

struct loop_case {
	struct cfd_watcher *w;
	struct cfd_token *job;
	int wfd, tfd;
	int dispatches;
	bool done;
};

static void case_init(struct loop_case *c)
{
	memset(c, 0, sizeof(*c));
	c->w = tw_new_watcher();
	c->job = t_new_token("job");
	ck_assert_int_eq(
	    cfd_source_add_timeout(NULL, c->job, c->w, CFD_MSEC(1)), 0);
	c->wfd = cfd_watcher_fd(c->w);
	c->tfd = cfd_token_fd(c->job);
	ck_assert_int_ge(c->wfd, 0);
	ck_assert_int_ge(c->tfd, 0);
}

static void case_dispatch(struct loop_case *c)
{
	ck_assert_int_ge(cfd_watcher_dispatch(c->w), 0);
	c->dispatches++;
}

static void case_finish(struct loop_case *c)
{
	ck_assert(c->done);
	ck_assert_int_ge(c->dispatches, 1);
	ck_assert_int_eq(cfd_token_reason(c->job), CFD_REASON_TIMEOUT);
	cfd_token_unref(c->job);
	cfd_watcher_unref(c->w);
}

START_TEST(test_loop_epoll)
{
	struct loop_case c;
	struct epoll_event ev;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	case_init(&c);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u32 = 1 };
	ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, c.wfd, &ev), 0);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u32 = 2 };
	ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, c.tfd, &ev), 0);
	while (!c.done) {
		struct epoll_event got[2];
		int n = epoll_wait(ep, got, 2, T_WAIT_MS);

		ck_assert_int_ge(n, 1);
		for (int i = 0; i < n; i++) {
			if (got[i].data.u32 == 1)
				case_dispatch(&c);
			else
				c.done = true;
		}
	}
	close(ep);
	case_finish(&c);
}
END_TEST

START_TEST(test_loop_poll)
{
	struct loop_case c;

	case_init(&c);
	while (!c.done) {
		struct pollfd p[2] = { { .fd = c.wfd, .events = POLLIN },
				       { .fd = c.tfd, .events = POLLIN } };

		ck_assert_int_ge(poll(p, 2, T_WAIT_MS), 1);
		if (p[0].revents & POLLIN)
			case_dispatch(&c);
		if (p[1].revents & POLLIN)
			c.done = true;
	}
	case_finish(&c);
}
END_TEST

#ifdef CFD_HAVE_URING
static void uring_poll(struct io_uring *ring, int fd, uint64_t ud)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	ck_assert_ptr_nonnull(sqe);
	io_uring_prep_poll_add(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud);
}

START_TEST(test_loop_io_uring)
{
	struct loop_case c;
	struct io_uring ring;
	int r = io_uring_queue_init(8, &ring, 0);

	if (r == -EPERM || r == -ENOSYS) {
		fprintf(stderr, "io_uring unavailable (%d): skipped\n", r);
		return;
	}
	ck_assert_int_eq(r, 0);
	case_init(&c);
	/* one-shot polls: the watcher's is re-armed after each dispatch */
	uring_poll(&ring, c.wfd, 1);
	uring_poll(&ring, c.tfd, 2);
	while (!c.done) {
		struct __kernel_timespec ts = { .tv_sec = T_WAIT_MS / 1000 };
		struct io_uring_cqe *cqe;
		uint64_t ud;

		ck_assert_int_ge(io_uring_submit(&ring), 0);
		ck_assert_int_eq(io_uring_wait_cqe_timeout(&ring, &cqe, &ts),
				 0);
		ud = io_uring_cqe_get_data64(cqe);
		ck_assert_int_gt(cqe->res, 0);
		ck_assert(cqe->res & POLLIN);
		io_uring_cqe_seen(&ring, cqe);
		if (ud == 1) {
			case_dispatch(&c);
			uring_poll(&ring, c.wfd, 1);
		} else {
			c.done = true;
		}
	}
	io_uring_queue_exit(&ring); /* cancels the watcher's poll */
	case_finish(&c);
}
END_TEST
#endif

#ifdef CFD_HAVE_LIBUV
/* libuv keeps a process-wide pipe from its first loop on: make it before
 * the fd snapshot. */
static void libuv_setup(void)
{
	uv_loop_t l;

	ck_assert_int_eq(uv_loop_init(&l), 0);
	ck_assert_int_eq(uv_loop_close(&l), 0);
	t_fd_snapshot();
}

struct uv_case {
	struct loop_case c;
	uv_poll_t watcher, token;
	uv_timer_t guard;
};

static void uv_close_all(struct uv_case *u)
{
	uv_close((uv_handle_t *)&u->watcher, NULL);
	uv_close((uv_handle_t *)&u->token, NULL);
	uv_close((uv_handle_t *)&u->guard, NULL);
}

static void on_uv_watcher(uv_poll_t *h, int status, int events)
{
	struct uv_case *u = h->data;

	ck_assert_int_eq(status, 0);
	if (events & UV_READABLE)
		case_dispatch(&u->c);
}

static void on_uv_token(uv_poll_t *h, int status, int events)
{
	struct uv_case *u = h->data;

	ck_assert_int_eq(status, 0);
	ck_assert(events & UV_READABLE);
	u->c.done = true;
	uv_close_all(u);
}

static void on_uv_guard(uv_timer_t *t)
{
	uv_close_all(t->data); /* the job never ended: case_finish fails */
}

START_TEST(test_loop_libuv)
{
	struct uv_case u;
	uv_loop_t loop;

	case_init(&u.c);
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	ck_assert_int_eq(uv_poll_init(&loop, &u.watcher, u.c.wfd), 0);
	ck_assert_int_eq(uv_poll_init(&loop, &u.token, u.c.tfd), 0);
	ck_assert_int_eq(uv_timer_init(&loop, &u.guard), 0);
	u.watcher.data = u.token.data = u.guard.data = &u;
	ck_assert_int_eq(uv_poll_start(&u.watcher, UV_READABLE, on_uv_watcher),
			 0);
	ck_assert_int_eq(uv_poll_start(&u.token, UV_READABLE, on_uv_token), 0);
	ck_assert_int_eq(uv_timer_start(&u.guard, on_uv_guard, T_WAIT_MS, 0),
			 0);
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	case_finish(&u.c);
}
END_TEST
#endif

#ifdef CFD_HAVE_GLIB
/* g_unix_fd_add() uses the default main context, whose wakeup fd lives as
 * long as the process: make it before the fd snapshot. */
static void glib_setup(void)
{
	g_main_context_default();
	g_main_context_iteration(NULL, FALSE);
	t_fd_snapshot();
}

struct glib_case {
	struct loop_case c;
	GMainLoop *loop;
};

static gboolean on_glib_watcher(gint fd, GIOCondition cond, gpointer data)
{
	struct glib_case *g = data;

	(void)fd;
	if (cond & G_IO_IN)
		case_dispatch(&g->c);
	return G_SOURCE_CONTINUE;
}

static gboolean on_glib_token(gint fd, GIOCondition cond, gpointer data)
{
	struct glib_case *g = data;

	(void)fd;
	(void)cond;
	g->c.done = true;
	g_main_loop_quit(g->loop);
	return G_SOURCE_REMOVE;
}

static gboolean on_glib_guard(gpointer data)
{
	g_main_loop_quit(((struct glib_case *)data)->loop);
	return G_SOURCE_REMOVE;
}

START_TEST(test_loop_glib)
{
	struct glib_case g;
	guint ws, guard;

	case_init(&g.c);
	g.loop = g_main_loop_new(NULL, FALSE);
	ws = g_unix_fd_add(g.c.wfd, G_IO_IN, on_glib_watcher, &g);
	g_unix_fd_add(g.c.tfd, G_IO_IN, on_glib_token, &g);
	guard = g_timeout_add(T_WAIT_MS, on_glib_guard, &g);
	g_main_loop_run(g.loop);
	g_source_remove(ws);
	if (g.c.done)
		g_source_remove(guard);
	g_main_loop_unref(g.loop);
	case_finish(&g.c);
}
END_TEST
#endif

/* Own-thread mode: no loop to integrate; the token fd (or
 * cfd_token_wait()) is all the program waits on. */
START_TEST(test_loop_own_thread)
{
	struct loop_case c;
	struct pollfd p;

	case_init(&c);
	ck_assert_int_eq(cfd_watcher_start(c.w), 0);
	p = (struct pollfd){ .fd = c.tfd, .events = POLLIN };
	ck_assert_int_eq(poll(&p, 1, T_WAIT_MS), 1);
	c.done = true;
	c.dispatches = 1; /* done by the watcher's thread */
	ck_assert_int_eq(cfd_watcher_stop(c.w), 0);
	case_finish(&c);
}
END_TEST

/* The default watcher: pass NULL, wait on the token. */
START_TEST(test_loop_default)
{
	struct cfd_token *job = t_new_token("job");

	ck_assert_int_eq(cfd_source_add_timeout(NULL, job, NULL, CFD_MSEC(1)),
			 0);
	ck_assert_int_eq(cfd_token_wait(job, CFD_MSEC(T_WAIT_MS)), 0);
	ck_assert_int_eq(cfd_token_reason(job), CFD_REASON_TIMEOUT);
	cfd_token_unref(job);
}
END_TEST

/* ======================================================================
 * regressions: library bugs these tests found, fixed
 * ==================================================================== */

/* The last cfd_watcher_unref() of a running watcher from another thread:
 * unref joins the thread, but the thread, seeing refs == 0 on its way out,
 * frees the watcher itself; unref then frees it again (double free). */
START_TEST(test_regression_unref_running)
{
	struct cfd_watcher *w = tw_new_watcher();

	ck_assert_int_eq(cfd_watcher_start(w), 0);
	ck_assert_ptr_null(cfd_watcher_unref(w));
}
END_TEST

/* cfd_watcher_start() called on the watcher's own thread (from a callback)
 * while another thread is in cfd_watcher_stop(): start takes thread_lock
 * before looking at `running`, and the stopper holds thread_lock while it
 * joins the watcher's thread: deadlock.  It should return -EALREADY (or
 * -EDEADLK) without taking the lock, as cfd_watcher_stop() does. */
struct stopper {
	struct cfd_watcher *w;
	_Atomic pid_t tid;
	int result;
};

static void *stop_it(void *arg)
{
	struct stopper *s = arg;

	atomic_store(&s->tid, t_gettid());
	s->result = cfd_watcher_stop(s->w);
	return NULL;
}

START_TEST(test_regression_start_from_own_thread_while_stopping)
{
	struct reentry r = { .w = tw_new_watcher(),
			     .own_thread = true,
			     .gate = eventfd(0, EFD_CLOEXEC),
			     .done = eventfd(0, EFD_CLOEXEC) };
	struct stopper st = { .w = r.w };
	struct cfd_token *tok = t_new_token("t");
	pthread_t th;
	int efd;

	ck_assert_int_eq(cfd_watcher_start(r.w), 0);
	ck_assert_int_eq(cfd_token_on_trigger(NULL, tok, reenter, &r, 0), 0);
	efd = tw_add_trigger(NULL, tok, r.w);
	tw_eventfd_signal(efd);
	ck_assert_int_eq(cfd_token_wait(tok, CFD_MSEC(T_WAIT_MS)), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, stop_it, &st), 0);
	while (!atomic_load(&st.tid))
		sched_yield();
	ck_assert(tw_wait_thread_in_futex(atomic_load(&st.tid))); /* joins */
	tw_eventfd_signal(r.gate); /* the callback calls start now */
	ck_assert_msg(t_fd_readable(r.done, 3000),
		      "deadlock: start on the watcher thread vs stop");
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(st.result, 0);
	ck_assert_int_eq(r.start, -EALREADY);
	close(r.gate);
	close(r.done);
	close(efd);
	cfd_token_unref(tok);
	cfd_watcher_unref(r.w);
}
END_TEST

/* A token triggered by cfd_token_trigger_async_safe() is held by the
 * watcher until a dispatch completes its fan-out; a watcher freed before
 * that never releases it: the token and its eventfd leak. */
START_TEST(test_regression_async_pending_at_free)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *tok = t_new_token("t");
	int fds = t_count_fds(); /* before the token's fd */

	ck_assert_int_ge(cfd_token_fd(tok), 0);
	ck_assert_int_eq(cfd_token_trigger_async_safe(tok, w, 0), 1);
	cfd_watcher_unref(w);
	cfd_token_unref(tok);
	/* the watcher's three fds are gone, and so must be the token's */
	ck_assert_int_eq(t_count_fds(), fds - 3);
}
END_TEST

static Suite *watcher_suite(void)
{
	Suite *s = suite_create("watcher");
	TCase *tc;

	tc = t_tcase("lifecycle");
	tcase_add_test(tc, test_new_ref_unref);
	tcase_add_test(tc, test_einval);
	tcase_add_test(tc, test_dispatch_counts);
	tcase_add_test(tc, test_dispatch_two_threads);
	tcase_add_test(tc, test_dispatch_from_callback);
	suite_add_tcase(s, tc);

	tc = t_tcase("thread");
	tcase_add_test(tc, test_start_stop);
	tcase_add_test(tc, test_stop_while_dispatching);
	tcase_add_test(tc, test_dispatch_waiting_when_the_thread_starts);
	tcase_add_test(tc, test_own_thread_calls);
	tcase_add_test(tc, test_last_unref_on_own_thread);
	suite_add_tcase(s, tc);

	tc = tw_tcase_default("default");
	tcase_add_test(tc, test_default);
	tcase_add_test(tc, test_default_blocks_all_signals);
	tcase_add_test(tc, test_default_after_fork);
	tcase_add_test(tc, test_async_default_watcher);
	tcase_add_test(tc, test_loop_default);
	suite_add_tcase(s, tc);

	tc = t_tcase("fork");
	tcase_add_test(tc, test_after_fork_echild);
	suite_add_tcase(s, tc);

	tc = t_tcase("async");
	tcase_add_test(tc, test_async_from_signal_handler);
	tcase_add_test(tc, test_async_preserves_errno);
	tcase_add_test(tc, test_async_wakes_waiters);
	tcase_add_test(tc, test_async_enxio_without_default);
	suite_add_tcase(s, tc);

	tc = t_tcase("loops");
	tcase_add_test(tc, test_loop_epoll);
	tcase_add_test(tc, test_loop_poll);
#ifdef CFD_HAVE_URING
	tcase_add_test(tc, test_loop_io_uring);
#endif
	tcase_add_test(tc, test_loop_own_thread);
	suite_add_tcase(s, tc);
#ifdef CFD_HAVE_LIBUV
	tc = t_tcase("libuv");
	tcase_add_checked_fixture(tc, libuv_setup, NULL);
	tcase_add_test(tc, test_loop_libuv);
	suite_add_tcase(s, tc);
#endif
#ifdef CFD_HAVE_GLIB
	tc = t_tcase("glib");
	tcase_add_checked_fixture(tc, glib_setup, NULL);
	tcase_add_test(tc, test_loop_glib);
	suite_add_tcase(s, tc);
#endif

	tc = t_tcase_timeout("regressions", 10);
	tcase_add_test(tc, test_regression_unref_running);
	tcase_add_test(tc,
		       test_regression_start_from_own_thread_while_stopping);
	tcase_add_test(tc, test_regression_async_pending_at_free);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(watcher_suite());
}
