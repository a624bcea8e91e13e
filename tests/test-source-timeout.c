/* SPDX-License-Identifier: MIT */
/*
 * Description: timeout and deadline sources (lib/source-timeout.c): their
 * errors, zero and past deadlines firing at once in the calling thread,
 * firing not early, the "deadline only shortens" rule, far deadlines,
 * freed before they fire, and ten thousand of them on one timer fd in
 * deadline order; and the "with_timeout" example of cancelable-basics.txt.
 *
 * Every test but the example drives an embedded watcher itself, so nothing
 * fires unless the test dispatches.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "helpers-watcher.h"
#include "helpers.h"

START_TEST(test_timeout_and_deadline_refuse_bad_values)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = TW_SENTINEL;

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
	ck_assert_ptr_eq(src, TW_SENTINEL); /* untouched on failure */
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
	struct cfd_source *src = TW_SENTINEL;
	int fds = t_count_fds(), threads = t_threads_in_process();

	ck_assert_int_eq(
	    cfd_token_on_trigger(NULL, tok, record_thread, NULL, 0), 0);
	ck_assert_int_eq(cfd_source_add_timeout(&src, tok, NULL, 0), 0);
	ck_assert_ptr_null(src);
	ck_assert(cfd_token_triggered(tok));
	ck_assert(pthread_equal(fired_in, pthread_self()));
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_TIMEOUT);
	ck_assert_ptr_eq(cfd_token_origin(tok), tok);
	ck_assert_int_eq(t_count_fds(), fds);
	ck_assert_int_eq(t_threads_in_process(), threads); /* no default */
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_deadline_past_fires_at_once)
{
	struct cfd_watcher *w = tw_new_watcher();
	int64_t past[] = { 0, 1, t_now_ns() - CFD_SEC(1), t_now_ns() };

	for (size_t i = 0; i < sizeof(past) / sizeof(past[0]); i++) {
		struct cfd_token *tok = t_new_token("past");
		struct cfd_source *src = TW_SENTINEL;

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

/* It fires when dispatched, with its reason, and not early. */
START_TEST(test_timeout_fires_when_dispatched_not_early)
{
	struct cfd_watcher *w = tw_new_watcher();
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
	struct cfd_watcher *w = tw_new_watcher();

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
START_TEST(test_far_deadline_is_accepted_and_never_fires)
{
	struct cfd_watcher *w = tw_new_watcher();
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
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *tok = t_new_token("freed");
	struct cfd_source *src = NULL;
	int64_t at = t_now_ns() + CFD_MSEC(1);

	ck_assert_int_eq(cfd_source_add_deadline(&src, tok, w, at), 0);
	ck_assert_ptr_null(cfd_source_free(src));
	t_wait_past(at);
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

START_TEST(test_10000_timeouts_share_one_fd_and_fire_in_order)
{
	struct cfd_watcher *w = tw_new_watcher();
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
 * the example of cancelable-basics.txt
 * ==================================================================== */

/* "Cancelable.with_timeout(30.0, name="api_call")": the operation (here a
 * read that never completes) is abandoned when the timeout fires. */
START_TEST(test_timeout_abandons_a_read_that_never_completes)
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

static Suite *source_timeout_suite(void)
{
	Suite *s = suite_create("source-timeout");
	TCase *tc;

	tc = t_tcase("timeout");
	tcase_add_test(tc, test_timeout_and_deadline_refuse_bad_values);
	tcase_add_test(tc, test_timeout_zero_fires_at_once);
	tcase_add_test(tc, test_deadline_past_fires_at_once);
	tcase_add_test(tc, test_timeout_fires_when_dispatched_not_early);
	tcase_add_test(tc, test_deadline_only_shortens);
	tcase_add_test(tc, test_far_deadline_is_accepted_and_never_fires);
	tcase_add_test(tc, test_timeout_freed_never_fires);
	tcase_add_test(tc, test_10000_timeouts_share_one_fd_and_fire_in_order);
	suite_add_tcase(s, tc);

	tc = tw_tcase_default("example");
	tcase_add_test(tc, test_timeout_abandons_a_read_that_never_completes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(source_timeout_suite());
}
