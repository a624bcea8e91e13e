/* SPDX-License-Identifier: MIT */
/*
 * Description: what every source has (lib/source.c): its life cycle (no
 * source for a triggered token; freed from its own fire, or while it fires
 * on another thread; added and freed from callbacks and threads; after
 * fork), the fire protocol, sources on one token, -EMFILE, the lifetime
 * races of free, unref and fire; and the "combining sources" examples of
 * cancelable-basics.txt (any-of, all-of).  Each kind has its own suite,
 * with when it lets go of what it holds: test-source-timeout.c,
 * test-source-signal.c, test-source-fd.c, test-source-condition.c.
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
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "helpers-watcher.h"
#include "helpers.h"

/* ======================================================================
 * life cycle: already-triggered tokens, freeing, threads, fork
 * ==================================================================== */

START_TEST(test_free_of_null_returns_null)
{
	ck_assert_ptr_null(cfd_source_free(NULL));
}
END_TEST

/* A token that has triggered needs no source: 0, *ret NULL, no fd opened,
 * nothing added to the watcher, no default watcher made. */
START_TEST(test_triggered_token_gets_no_source_and_no_fd)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *tok = t_new_token("done");
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);
	int efd = eventfd(0, EFD_CLOEXEC), fds, threads;

	tw_block_test_signals();
	cfd_token_trigger(tok);
	fds = t_count_fds();
	threads = t_threads_in_process();
	for (int i = 0; i < 2; i++) {
		struct cfd_watcher *ww = i ? NULL : w;
		struct cfd_source *src[6] = { TW_SENTINEL, TW_SENTINEL,
					      TW_SENTINEL, TW_SENTINEL,
					      TW_SENTINEL, TW_SENTINEL };

		ck_assert_int_eq(
		    cfd_source_add_timeout(&src[0], tok, ww, CFD_SEC(1)), 0);
		ck_assert_int_eq(cfd_source_add_deadline(
				     &src[1], tok, ww, t_now_ns() + CFD_SEC(1)),
				 0);
		ck_assert_int_eq(tw_add_signals(&src[2], tok, ww, &usr1), 0);
		ck_assert_int_eq(cfd_source_add_fd(&src[3], tok, ww, efd), 0);
		ck_assert_int_eq(cfd_source_add_condition(&src[4], tok, ww,
							  tw_never, NULL,
							  CFD_MSEC(1)),
				 0);
		ck_assert_int_eq(cfd_source_add_timeout(&src[5], tok, ww, 0),
				 0);
		for (int k = 0; k < 6; k++)
			ck_assert_ptr_null(src[k]);
		ck_assert_int_eq(t_count_fds(), fds);
	}
	ck_assert_int_eq(t_threads_in_process(), threads); /* no default */
	ck_assert_int_eq(cfd_watcher_dispatch(w), 0);
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_MANUAL);
	close(efd);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* One token, one source of each kind: the first to fire wins, every other
 * leaves the watcher at once. */
START_TEST(test_first_source_to_fire_wins_the_others_leave)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *tok = t_new_token("multi");
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), fds;

	tw_block_test_signals();
	fds = t_count_fds();
	ck_assert_int_eq(cfd_source_add_timeout(NULL, tok, w, CFD_SEC(3600)),
			 0);
	ck_assert_int_eq(tw_add_signals(NULL, tok, w, &usr1), 0);
	ck_assert_int_eq(cfd_source_add_fd(NULL, tok, w, efd), 0);
	ck_assert_int_eq(cfd_source_add_condition(NULL, tok, w, tw_never, NULL,
						  CFD_SEC(3600)),
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

START_TEST(test_free_from_own_fire_returns_at_once)
{
	struct cfd_watcher *w = tw_new_watcher();
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
	t_wait_past(t_now_ns() + CFD_USEC(300));
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

	atomic_store(&r->freer, t_gettid());
	r->src = cfd_source_free(r->src);
	r->finished_when_free_returned = atomic_load(&r->finished);
	return NULL;
}

static void check_free_waits_for_fire(bool predicate)
{
	struct cfd_watcher *w = tw_new_watcher();
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

START_TEST(test_free_waits_for_a_running_callback)
{
	check_free_waits_for_fire(false);
}
END_TEST

START_TEST(test_free_waits_for_a_running_predicate)
{
	check_free_waits_for_fire(true);
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

START_TEST(test_callback_adds_and_frees_sources)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *first = t_new_token("first"),
			 *victim = t_new_token("v");
	struct from_cb f = { .w = w, .add_result = -99 };
	int efd;

	f.next = t_new_token("next");
	ck_assert_int_eq(cfd_token_on_trigger(NULL, first, add_and_free, &f, 0),
			 0);
	/* (a victim due in the same dispatch: see
	 * test_source_freed_by_a_sibling_fire_does_not_fire) */
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
		 * with its token).  The other order is
		 * test_free_after_token_freed's. */
		cfd_source_free(src);
		cfd_token_unref(tok);
	}
	return NULL;
}

START_TEST(test_threads_add_and_free_sources_while_it_runs)
{
	struct cfd_watcher *w = tw_new_watcher();
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

static int child_sources(void *arg)
{
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);
	struct cfd_token *tok, *parent_tok = arg;
	struct cfd_source *src = TW_SENTINEL;
	int efd = eventfd(0, EFD_CLOEXEC), fds = t_count_fds();

	T_CHILD_CHECK(cfd_token_new(&tok, "child") == 0);
	T_CHILD_CHECK(cfd_source_add_timeout(&src, tok, fork_w, CFD_SEC(1)) ==
		      -ECHILD);
	T_CHILD_CHECK(cfd_source_add_deadline(&src, tok, fork_w,
					      t_now_ns() + CFD_SEC(1)) ==
		      -ECHILD);
	T_CHILD_CHECK(tw_add_signals(&src, tok, fork_w, &usr1) == -ECHILD);
	T_CHILD_CHECK(cfd_source_add_fd(&src, tok, fork_w, efd) == -ECHILD);
	T_CHILD_CHECK(cfd_source_add_condition(&src, tok, fork_w, tw_never,
					       NULL, CFD_MSEC(1)) == -ECHILD);
	T_CHILD_CHECK(cfd_source_add_timeout(&src, parent_tok, NULL,
					     CFD_SEC(1)) == -ECHILD);
	T_CHILD_CHECK(src == TW_SENTINEL);
	T_CHILD_CHECK(t_count_fds() == fds); /* the dup was closed */
	T_CHILD_CHECK(cfd_source_free(fork_src) == NULL); /* no effect */
	/* the child's own default watcher */
	T_CHILD_CHECK(cfd_source_add_timeout(NULL, tok, NULL, CFD_USEC(100)) ==
		      0);
	T_CHILD_CHECK(cfd_token_wait(tok, CFD_MSEC(T_WAIT_MS)) == 0);
	T_CHILD_CHECK(cfd_token_reason(tok) == CFD_REASON_TIMEOUT);
	return 0;
}

START_TEST(test_parent_watcher_refuses_sources_after_fork)
{
	struct cfd_token *tok = t_new_token("parent");

	tw_block_test_signals();
	fork_w = tw_new_watcher();
	ck_assert_int_eq(
	    cfd_source_add_timeout(&fork_src, tok, fork_w, CFD_MSEC(5)), 0);
	ck_assert_int_eq(t_in_child(child_sources, tok), 0);
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
START_TEST(test_emfile_from_every_fd_leaves_nothing_behind)
{
	sigset_t usr1 = tw_sigset(SIGUSR1, 0);
	struct cfd_watcher *w = NULL, *w2;
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = TW_SENTINEL;
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
	w = tw_new_watcher();
	w2 = tw_new_watcher();
	fds = t_count_fds();
	fd_limit_spare(0);
	ck_assert_int_eq(cfd_source_add_fd(&src, tok, w, efd), -EMFILE);
	ck_assert_int_eq(tw_add_signals(&src, tok, w, &usr1), -EMFILE);
	fd_limit_restore(&saved);
	ck_assert_ptr_eq(src, TW_SENTINEL);
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
enum { LT_DEFAULT, LT_OWN_THREAD, LT_DISPATCHED };

static void check_free_races_unref(int kind, int wkind)
{
	int rounds = T_TSAN ? 300 : T_ASAN ? 1000 : 3000;
	struct lt_round r = { .seed =
				  (unsigned)(wkind * NLT_KINDS + kind) * 7919 };
	struct cfd_watcher *w = NULL;
	pthread_t th;
	int efd;

	if (wkind == LT_OWN_THREAD) {
		w = tw_new_watcher();
		ck_assert_int_eq(cfd_watcher_start(w), 0);
	} else if (wkind == LT_DISPATCHED) {
		w = tw_new_watcher();
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
		if (wkind == LT_DISPATCHED)
			cfd_watcher_dispatch(w);
		lt_spin(&r.seed, 300);
		cfd_token_unref(tok);
		while (atomic_load(&r.done) != i)
			if (wkind != LT_DISPATCHED ||
			    cfd_watcher_dispatch(w) == 0)
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

START_TEST(test_timeout_free_races_token_unref_default_watcher)
{
	check_free_races_unref(LT_TIMEOUT, LT_DEFAULT);
}
END_TEST

START_TEST(test_condition_free_races_token_unref_default_watcher)
{
	check_free_races_unref(LT_CONDITION, LT_DEFAULT);
}
END_TEST

START_TEST(test_fd_free_races_token_unref_default_watcher)
{
	check_free_races_unref(LT_FD, LT_DEFAULT);
}
END_TEST

START_TEST(test_timeout_free_races_token_unref_own_thread)
{
	check_free_races_unref(LT_TIMEOUT, LT_OWN_THREAD);
}
END_TEST

START_TEST(test_condition_free_races_token_unref_own_thread)
{
	check_free_races_unref(LT_CONDITION, LT_OWN_THREAD);
}
END_TEST

START_TEST(test_fd_free_races_token_unref_own_thread)
{
	check_free_races_unref(LT_FD, LT_OWN_THREAD);
}
END_TEST

START_TEST(test_timeout_free_races_token_unref_dispatching_thread)
{
	check_free_races_unref(LT_TIMEOUT, LT_DISPATCHED);
}
END_TEST

START_TEST(test_condition_free_races_token_unref_dispatching_thread)
{
	check_free_races_unref(LT_CONDITION, LT_DISPATCHED);
}
END_TEST

START_TEST(test_fd_free_races_token_unref_dispatching_thread)
{
	check_free_races_unref(LT_FD, LT_DISPATCHED);
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
	struct cfd_watcher *w = tw_new_watcher();
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

/* ======================================================================
 * regressions: library bugs these tests found, fixed
 * ==================================================================== */

/* cfd_source_free() after the source's token was freed.  Before the fix the
 * token's release called the registration's on_release but left the
 * registration in state LISTED, so registration_remove() locked the freed
 * token and unlinked a node whose pprev was NULL (SEGV in listener_unlink). */
START_TEST(test_free_after_token_freed)
{
	struct cfd_watcher *w = tw_new_watcher();
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
 * (same thread), and the freed source must not fire.  Before the fix it
 * triggered its token anyway: fire_all() did not look at `attached`. */
static struct cfd_source *sibling;

static void free_sibling(struct cfd_token *tok, void *arg)
{
	(void)tok;
	(void)arg;
	sibling = cfd_source_free(sibling);
}

START_TEST(test_source_freed_by_a_sibling_fire_does_not_fire)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *t1 = t_new_token("t1"), *t2 = t_new_token("t2");
	struct cfd_source *s1 = NULL;
	int64_t at = t_now_ns() + CFD_MSEC(2);

	ck_assert_int_eq(cfd_token_on_trigger(NULL, t1, free_sibling, NULL, 0),
			 0);
	ck_assert_int_eq(cfd_source_add_deadline(&s1, t1, w, at), 0);
	ck_assert_int_eq(cfd_source_add_deadline(&sibling, t2, w, at + 1), 0);
	t_wait_past(at + 1); /* both due: one dispatch queues both */
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

/* ======================================================================
 * the examples of cancelable-basics.txt: sources combined
 * ==================================================================== */

/* "Combining Multiple Sources": any-of timeout + manual + SIGTERM, first
 * wins; the any-of's origin says which (its reason is _PARENT; the
 * origin's reason is the source's). */
enum { FIRST_TIMEOUT, FIRST_MANUAL, FIRST_SIGNAL };

static void check_any_of_first_wins(int first)
{
	struct cfd_token *toks[3], *op, *origin;
	sigset_t term = tw_sigset(SIGTERM, 0);
	static const int reasons[] = { CFD_REASON_TIMEOUT, CFD_REASON_MANUAL,
				       CFD_REASON_SIGNAL };

	toks[0] = t_new_token("timeout");
	toks[1] = t_new_token("token");
	toks[2] = t_new_token("sigterm");
	ck_assert_int_eq(cfd_source_add_timeout(NULL, toks[0], NULL,
						first == FIRST_TIMEOUT
						    ? CFD_MSEC(2)
						    : CFD_SEC(3600)),
			 0);
	ck_assert_int_eq(tw_add_signals(NULL, toks[2], NULL, &term), 0);
	ck_assert_int_eq(
	    cfd_token_any_of(&op, "multi_source_operation", toks, 3), 0);
	if (first == FIRST_MANUAL)
		cfd_token_trigger_msg(toks[1], "user pressed cancel");
	else if (first == FIRST_SIGNAL)
		ck_assert_int_eq(kill(getpid(), SIGTERM), 0);
	ck_assert_int_eq(cfd_token_wait(op, CFD_MSEC(T_WAIT_MS)), 0);
	origin = cfd_token_origin(op);
	ck_assert_ptr_eq(origin, toks[first]);
	ck_assert_int_eq(cfd_token_reason(op), CFD_REASON_PARENT);
	ck_assert_int_eq(cfd_token_reason(origin), reasons[first]);
	for (int k = 0; k < 3; k++)
		ck_assert(cfd_token_triggered(toks[k]) == (k == first));
	if (first == FIRST_MANUAL)
		ck_assert_str_eq(cfd_token_message(op), "user pressed cancel");
	if (first == FIRST_SIGNAL)
		ck_assert_int_eq(cfd_token_signal(op), SIGTERM);
	cfd_token_unref(op);
	for (int k = 0; k < 3; k++)
		cfd_token_unref(toks[k]);
}

START_TEST(test_any_of_sources_timeout_first_is_the_origin)
{
	check_any_of_first_wins(FIRST_TIMEOUT);
}
END_TEST

START_TEST(test_any_of_sources_manual_trigger_first_is_the_origin)
{
	check_any_of_first_wins(FIRST_MANUAL);
}
END_TEST

START_TEST(test_any_of_sources_signal_first_is_the_origin)
{
	check_any_of_first_wins(FIRST_SIGNAL);
}
END_TEST

/* "AND Logic": all-of a minimum time and a condition ("data complete");
 * neither alone triggers it.  Each source has its own embedded watcher, so
 * the test decides which one fires first, whatever the timing. */
static bool data_complete(struct cfd_token *tok, void *arg)
{
	(void)tok;
	return *(bool *)arg;
}

static void check_all_of_needs_both(bool condition_first)
{
	struct cfd_watcher *wt = tw_new_watcher(), *wc = tw_new_watcher();
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
	if (!condition_first) {
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
	ck_assert_ptr_eq(cfd_token_origin(both),
			 condition_first ? min_time : ready);
	cfd_token_unref(both);
	cfd_token_unref(min_time);
	cfd_token_unref(ready);
	cfd_watcher_unref(wt);
	cfd_watcher_unref(wc);
}

START_TEST(test_all_of_sources_fires_when_condition_follows_timeout)
{
	check_all_of_needs_both(false);
}
END_TEST

START_TEST(test_all_of_sources_fires_when_timeout_follows_condition)
{
	check_all_of_needs_both(true);
}
END_TEST

static Suite *source_suite(void)
{
	Suite *s = suite_create("source");
	TCase *tc;

	tc = t_tcase("lifecycle");
	tcase_add_test(tc, test_free_of_null_returns_null);
	tcase_add_test(tc, test_triggered_token_gets_no_source_and_no_fd);
	tcase_add_test(tc, test_first_source_to_fire_wins_the_others_leave);
	tcase_add_test(tc, test_free_from_own_fire_returns_at_once);
	tcase_add_test(tc, test_free_waits_for_a_running_callback);
	tcase_add_test(tc, test_free_waits_for_a_running_predicate);
	tcase_add_test(tc, test_callback_adds_and_frees_sources);
	tcase_add_test(tc, test_threads_add_and_free_sources_while_it_runs);
	tcase_add_test(tc, test_parent_watcher_refuses_sources_after_fork);
	suite_add_tcase(s, tc);

	tc = t_tcase("limits");
	tcase_add_test(tc, test_emfile_from_every_fd_leaves_nothing_behind);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("lifetime races", 300);
	tcase_add_test(tc, test_timeout_free_races_token_unref_own_thread);
	tcase_add_test(tc, test_condition_free_races_token_unref_own_thread);
	tcase_add_test(tc, test_fd_free_races_token_unref_own_thread);
	tcase_add_test(tc,
		       test_timeout_free_races_token_unref_dispatching_thread);
	tcase_add_test(
	    tc, test_condition_free_races_token_unref_dispatching_thread);
	tcase_add_test(tc, test_fd_free_races_token_unref_dispatching_thread);
	tcase_add_test(tc, test_fire_drops_last_reference_while_freed);
	suite_add_tcase(s, tc);

	tc = tw_tcase_default("lifetime races, default watcher");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_timeout_free_races_token_unref_default_watcher);
	tcase_add_test(tc,
		       test_condition_free_races_token_unref_default_watcher);
	tcase_add_test(tc, test_fd_free_races_token_unref_default_watcher);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("regressions", 10);
	tcase_add_test(tc, test_free_after_token_freed);
	tcase_add_test(tc, test_source_freed_by_a_sibling_fire_does_not_fire);
	suite_add_tcase(s, tc);

	tc = tw_tcase_default("examples");
	tcase_add_test(tc, test_any_of_sources_timeout_first_is_the_origin);
	tcase_add_test(tc,
		       test_any_of_sources_manual_trigger_first_is_the_origin);
	tcase_add_test(tc, test_any_of_sources_signal_first_is_the_origin);
	tcase_add_test(
	    tc, test_all_of_sources_fires_when_condition_follows_timeout);
	tcase_add_test(
	    tc, test_all_of_sources_fires_when_timeout_follows_condition);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(source_suite());
}
