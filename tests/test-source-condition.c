/* SPDX-License-Identifier: MIT */
/*
 * Description: condition sources (lib/source-condition.c): bad arguments,
 * checked at once and then every interval, on the watcher's thread, not
 * called again once the token triggered, nor once an add lost the race
 * with a trigger; and the "custom conditions" example of
 * cancelable-basics.txt.
 *
 * Every test but the example drives a watcher the test owns.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "helpers-watcher.h"
#include "helpers.h"

START_TEST(test_condition_refuses_bad_arguments)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = TW_SENTINEL;

	ck_assert_int_eq(
	    cfd_source_add_condition(&src, tok, w, NULL, NULL, CFD_MSEC(1)),
	    -EINVAL);
	ck_assert_int_eq(
	    cfd_source_add_condition(&src, tok, w, tw_never, NULL, 0), -EINVAL);
	ck_assert_int_eq(
	    cfd_source_add_condition(&src, tok, w, tw_never, NULL, -1),
	    -EINVAL);
	ck_assert_int_eq(
	    cfd_source_add_condition(&src, tok, w, tw_never, NULL, INT64_MAX),
	    -EINVAL);
	ck_assert_int_eq(cfd_source_add_condition(&src, NULL, w, tw_never, NULL,
						  CFD_MSEC(1)),
			 -EINVAL);
	ck_assert_ptr_eq(src, TW_SENTINEL);
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
START_TEST(test_condition_checked_at_once_then_every_interval)
{
	struct cfd_watcher *w = tw_new_watcher();
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
	t_wait_past(t_now_ns() + CFD_MSEC(2));
	t_fd_readable(cfd_watcher_fd(w), 0);
	ck_assert_int_ge(cfd_watcher_dispatch(w), 0);
	ck_assert_int_eq(atomic_load(&c.calls), 3);
	cfd_source_free(src);
	cfd_token_unref(c.tok);
	cfd_watcher_unref(w);
}
END_TEST

/* The predicate runs on the watcher's thread. */
START_TEST(test_condition_runs_on_the_watcher_thread)
{
	struct cfd_watcher *w = tw_new_watcher();
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
	struct cfd_watcher *w = tw_new_watcher();
	struct cond_ctx c = { .true_at = -1 };

	c.tok = t_new_token("cond");
	ck_assert_int_eq(cfd_source_add_condition(NULL, c.tok, w, count_calls,
						  &c, CFD_USEC(100)),
			 0);
	ck_assert(t_fd_readable(cfd_watcher_fd(w), T_WAIT_MS));
	ck_assert_int_eq(cfd_watcher_dispatch(w), 1);
	ck_assert_int_eq(atomic_load(&c.calls), 1);
	cfd_token_trigger(c.tok);
	t_wait_past(t_now_ns() + CFD_USEC(300));
	t_fd_readable(cfd_watcher_fd(w), 0);
	ck_assert_int_ge(cfd_watcher_dispatch(w), 0);
	ck_assert_int_eq(atomic_load(&c.calls), 1);
	ck_assert_int_eq(cfd_token_reason(c.tok), CFD_REASON_MANUAL);
	cfd_token_unref(c.tok);
	cfd_watcher_unref(w);
}
END_TEST

/* ======================================================================
 * lifetime races
 * ==================================================================== */

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

START_TEST(test_predicate_not_called_once_add_lost_to_trigger)
{
	int rounds = T_TSAN ? 3000 : 30000;
	struct cond_race c = { .w = tw_new_watcher() };
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

/* ======================================================================
 * the example of cancelable-basics.txt
 * ==================================================================== */

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

START_TEST(test_condition_cancels_when_memory_use_passes_limit)
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

static Suite *source_condition_suite(void)
{
	Suite *s = suite_create("source-condition");
	TCase *tc;

	tc = t_tcase("condition");
	tcase_add_test(tc, test_condition_refuses_bad_arguments);
	tcase_add_test(tc, test_condition_checked_at_once_then_every_interval);
	tcase_add_test(tc, test_condition_runs_on_the_watcher_thread);
	tcase_add_test(tc, test_condition_stops_when_token_triggers);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("lifetime races", 300);
	tcase_add_test(tc, test_predicate_not_called_once_add_lost_to_trigger);
	suite_add_tcase(s, tc);

	tc = tw_tcase_default("example");
	tcase_add_test(tc, test_condition_cancels_when_memory_use_passes_limit);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(source_condition_suite());
}
