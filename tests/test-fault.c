/* SPDX-License-Identifier: MIT */
/*
 * Description: failure paths.  The library is linked statically with
 * malloc, calloc, realloc and free wrapped (-Wl,--wrap=...): the wrapper
 * fails the Nth allocation (or every one from the Nth on) and keeps the set
 * of live allocations made inside the window under test.  For each
 * allocating function, N = 0, 1, 2, ... until the call succeeds: every
 * failing call returns -ENOMEM, leaves its output untouched, and leaves no
 * memory and no fd behind; the successful one leaks nothing either once
 * undone.  Triggering, waiting and freeing need no memory at all.
 *
 * Then RLIMIT_NOFILE, lowered in a forked child (the runner's limit is
 * untouched): cfd_token_fd() returns -EMFILE, the token still works, and no
 * fd is left behind.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "helpers.h"

/* ---- the allocator wrapper ---- */

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void __real_free(void *p);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
void __wrap_free(void *p);

/* Only allocations made inside a window count: Check, linked statically
 * too, allocates through the same wrapper (so no ck_assert inside a window:
 * Check exits when its own allocation fails). */
static int window;
static long fail_at = -1; /* index of the allocation to fail; -1: none */
static bool fail_after;	  /* and every one after it */
static long seen;	  /* allocations made in the window since arming */

#define LIVE_MAX 65536
static void *live[LIVE_MAX];
static int nlive;

static bool should_fail(void)
{
	long k;

	if (!window || fail_at < 0)
		return false;
	k = seen++;
	return fail_after ? k >= fail_at : k == fail_at;
}

static void live_add(void *p)
{
	if (!p || !window)
		return;
	if (nlive == LIVE_MAX)
		abort();
	live[nlive++] = p;
}

static void live_del(void *p)
{
	for (int i = nlive - 1; i >= 0; i--)
		if (live[i] == p) {
			live[i] = live[--nlive];
			return;
		}
}

void *__wrap_malloc(size_t size)
{
	void *p;

	if (should_fail())
		return NULL;
	p = __real_malloc(size);
	live_add(p);
	return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
	void *p;

	if (should_fail())
		return NULL;
	p = __real_calloc(n, size);
	live_add(p);
	return p;
}

void *__wrap_realloc(void *old, size_t size)
{
	void *p;

	if (should_fail())
		return NULL;
	p = __real_realloc(old, size);
	if (p && old)
		live_del(old);
	live_add(p);
	return p;
}

void __wrap_free(void *p)
{
	if (p)
		live_del(p);
	__real_free(p);
}

static void lib_begin(void)
{
	window++;
}

static void lib_end(void)
{
	window--;
}

static void arm(long n, bool after)
{
	fail_at = n;
	fail_after = after;
	seen = 0;
	window++;
}

static long disarm(void)
{
	window--;
	fail_at = -1;
	return seen;
}

/* ---- the driver: N = 0, 1, 2, ... until the call succeeds ---- */

#define SENTINEL ((void *)0x5a5a5a5a)

struct op {
	const char *name;
	/* Set up what the call needs (parents); inside a window. */
	void (*setup)(struct op *op);
	/* The call under test; stores its product in op->out. */
	int (*call)(struct op *op);
	/* Undo a successful call. */
	void (*undo)(struct op *op);
	void (*teardown)(struct op *op);
	struct cfd_token *p[3];
	void *out;
	int calls; /* how often the test callback ran */
};

static void run_op(struct op *op, bool after)
{
	int fds, r = -1, failures = 0;
	long n;

	nlive = 0;
	lib_begin();
	if (op->setup)
		op->setup(op);
	lib_end();
	fds = t_count_fds();
	for (n = 0; n < 1000; n++) {
		int before = nlive;

		op->out = SENTINEL;
		arm(n, after);
		r = op->call(op);
		disarm();
		if (r == 0 || r == 1)
			break;
		failures++;
		ck_assert_msg(r == -ENOMEM, "%s: allocation %ld failed: %d",
			      op->name, n, r);
		ck_assert_msg(op->out == SENTINEL,
			      "%s: allocation %ld failed: output written",
			      op->name, n);
		ck_assert_msg(nlive == before,
			      "%s: allocation %ld failed: %d allocation(s) "
			      "leaked",
			      op->name, n, nlive - before);
		ck_assert_msg(t_count_fds() == fds,
			      "%s: allocation %ld failed: fd leaked", op->name,
			      n);
		ck_assert_msg(op->calls == 0,
			      "%s: allocation %ld failed: the callback ran",
			      op->name, n);
	}
	ck_assert_msg(r == 0 || r == 1, "%s never succeeded", op->name);
	ck_assert_msg(failures > 0, "%s allocated nothing?", op->name);
	lib_begin();
	if (op->undo)
		op->undo(op);
	lib_end();
	ck_assert_msg(t_count_fds() == fds, "%s: undo leaked an fd", op->name);
	lib_begin();
	if (op->teardown)
		op->teardown(op);
	lib_end();
	ck_assert_msg(nlive == 0, "%s: %d allocation(s) left after undo",
		      op->name, nlive);
}

/* Parents: p0 pending, p1 pending with an fd and a callback, p2 either
 * pending or triggered. */
static void parents_pending(struct op *op)
{
	cfd_token_new(&op->p[0], "p0");
	cfd_token_new(&op->p[1], "p1");
	cfd_token_new(&op->p[2], "p2");
	cfd_token_fd(op->p[1]);
	cfd_token_on_trigger(NULL, op->p[1], t_count_call, &op->calls, 0);
}

static void parents_some_triggered(struct op *op)
{
	parents_pending(op);
	cfd_token_trigger(op->p[2]);
}

static void parents_all_triggered(struct op *op)
{
	parents_pending(op);
	for (int i = 0; i < 3; i++)
		cfd_token_trigger(op->p[i]);
	op->calls = 0; /* p1's callback ran */
}

static void parents_free(struct op *op)
{
	/* the failed calls left no link and took no reference: triggering
	 * and freeing the parents frees everything */
	for (int i = 0; i < 3; i++) {
		cfd_token_trigger(op->p[i]);
		cfd_token_unref(op->p[i]);
	}
}

static void undo_token(struct op *op)
{
	cfd_token_unref(op->out);
}

static int call_new(struct op *op)
{
	return cfd_token_new((struct cfd_token **)&op->out, "a name");
}

static int call_new_null_name(struct op *op)
{
	return cfd_token_new((struct cfd_token **)&op->out, NULL);
}

static int call_child(struct op *op)
{
	return cfd_token_child((struct cfd_token **)&op->out, op->p[1], "c");
}

static int call_child_of_triggered(struct op *op)
{
	return cfd_token_child((struct cfd_token **)&op->out, op->p[2], "c");
}

static int call_chain(struct op *op)
{
	return cfd_token_chain((struct cfd_token **)&op->out, op->p[0],
			       op->p[2]);
}

static int call_any_of(struct op *op)
{
	return cfd_token_any_of((struct cfd_token **)&op->out, "any", op->p, 3);
}

static int call_all_of(struct op *op)
{
	return cfd_token_all_of((struct cfd_token **)&op->out, "all", op->p, 3);
}

static int call_on_trigger(struct op *op)
{
	return cfd_token_on_trigger((struct cfd_registration **)&op->out,
				    op->p[0], t_count_call, &op->calls, 0);
}

static void undo_registration(struct op *op)
{
	cfd_registration_free(op->out);
}

/* Floating: no output to check; success shows as the callback running. */
static int call_on_trigger_floating(struct op *op)
{
	return cfd_token_on_trigger(NULL, op->p[0], t_count_call, &op->calls,
				    0);
}

static void undo_floating(struct op *op)
{
	int before = op->calls;

	cfd_token_trigger(op->p[0]);
	if (op->calls != before + 1)
		abort(); /* registered, but did not run */
}

#define OP(n, s, c, u)                                       \
	{                                                    \
		.name = n, .setup = s, .call = c, .undo = u, \
		.teardown = parents_free                     \
	}

static const struct op ops[] = {
	OP("cfd_token_new", parents_pending, call_new, undo_token),
	OP("cfd_token_new(NULL name)", parents_pending, call_new_null_name,
	   undo_token),
	OP("cfd_token_child", parents_pending, call_child, undo_token),
	OP("cfd_token_child(triggered parent)", parents_some_triggered,
	   call_child_of_triggered, undo_token),
	OP("cfd_token_chain", parents_pending, call_chain, undo_token),
	OP("cfd_token_chain(one triggered)", parents_some_triggered, call_chain,
	   undo_token),
	OP("cfd_token_any_of", parents_pending, call_any_of, undo_token),
	OP("cfd_token_any_of(one triggered)", parents_some_triggered,
	   call_any_of, undo_token),
	OP("cfd_token_all_of", parents_pending, call_all_of, undo_token),
	OP("cfd_token_all_of(one triggered)", parents_some_triggered,
	   call_all_of, undo_token),
	OP("cfd_token_all_of(all triggered)", parents_all_triggered,
	   call_all_of, undo_token),
	OP("cfd_token_on_trigger", parents_pending, call_on_trigger,
	   undo_registration),
	OP("cfd_token_on_trigger(floating)", parents_pending,
	   call_on_trigger_floating, undo_floating),
};

#define N_OPS (sizeof(ops) / sizeof(ops[0]))

/* A loop test over the table of calls: each row (_i) names its call in
 * every failure.  One forked test per call, failing one allocation. */
START_TEST(test_each_failed_allocation_is_enomem_and_leaves_nothing)
{
	struct op op = ops[_i];

	run_op(&op, false);
}
END_TEST

/* ... and failing every allocation from the Nth on */
START_TEST(test_allocations_failing_from_the_nth_on_leave_nothing)
{
	struct op op = ops[_i];

	run_op(&op, true);
}
END_TEST

/* ---- what must not need memory ---- */

START_TEST(test_on_trigger_triggered_needs_no_memory)
{
	struct op op = { .name = "inline" };
	struct cfd_registration *reg = SENTINEL;
	struct cfd_token *t;
	int r[3];

	nlive = 0;
	lib_begin();
	cfd_token_new(&t, "t");
	cfd_token_trigger(t);
	lib_end();
	arm(0, true);
	r[0] = cfd_token_on_trigger(&reg, t, t_count_call, &op.calls, 0);
	r[1] = cfd_token_on_trigger(NULL, t, t_count_call, &op.calls, 0);
	r[2] = cfd_token_on_trigger(&reg, t, t_count_call, &op.calls,
				    CFD_CALLBACK_NO_INLINE);
	ck_assert_int_eq(disarm(), 0);
	ck_assert_int_eq(r[0], 1);
	ck_assert_int_eq(r[1], 1);
	ck_assert_int_eq(r[2], -ECANCELED);
	ck_assert_ptr_null(reg);
	ck_assert_int_eq(op.calls, 2);
	lib_begin();
	cfd_token_unref(t);
	lib_end();
	ck_assert_int_eq(nlive, 0);
}
END_TEST

START_TEST(test_trigger_msg_without_memory)
{
	struct cfd_token *t, *c;
	int fd, r;

	for (long n = 0; n < 2; n++) {
		nlive = 0;
		lib_begin();
		cfd_token_new(&t, "t");
		cfd_token_child(&c, t, "c");
		fd = cfd_token_fd(c);
		lib_end();
		/* the copy of the message cannot be made: the token still
		 * triggers, with no message */
		arm(0, n == 1);
		r = cfd_token_trigger_msg(t, "lost");
		ck_assert_int_eq(disarm(), 1); /* the copy was tried */
		ck_assert_int_eq(r, 1);
		ck_assert(cfd_token_triggered(t));
		ck_assert_ptr_null(cfd_token_message(t));
		ck_assert_int_eq(cfd_token_reason(t), CFD_REASON_MANUAL);
		ck_assert(cfd_token_triggered(c));
		ck_assert_ptr_null(cfd_token_message(c));
		ck_assert(t_fd_readable(fd, 0));
		lib_begin();
		cfd_token_unref(c);
		cfd_token_unref(t);
		lib_end();
		ck_assert_int_eq(nlive, 0);
	}
}
END_TEST

/* Trigger a tree with fds and callbacks, wait, check, make fds and free
 * it all with every allocation failing: none of it allocates. */
START_TEST(test_trigger_and_free_need_no_memory)
{
	struct cfd_token *t[40];
	struct cfd_registration *reg[40];
	struct op op = { .name = "tree" };
	int fds = t_count_fds(), r, bad = 0;

	nlive = 0;
	lib_begin();
	cfd_token_new(&t[0], "root");
	for (int i = 1; i < 40; i++)
		cfd_token_child(&t[i], t[(i - 1) / 3], "n");
	for (int i = 0; i < 40; i++) {
		cfd_token_on_trigger(&reg[i], t[i], t_count_call, &op.calls, 0);
		cfd_token_on_trigger(NULL, t[i], t_count_call, &op.calls, 0);
		if (i % 2)
			cfd_token_fd(t[i]);
	}
	lib_end();

	arm(0, true);
	r = cfd_token_trigger_msg(t[0], "no memory");
	for (int i = 0; i < 40; i++) {
		bad += cfd_token_wait(t[i], 0) != 0; /* no hang if not */
		bad += cfd_token_check(t[i]) != -ECANCELED;
		bad += !t_fd_readable(cfd_token_fd(t[i]), 0);
	}
	for (int i = 39; i >= 0; i--) {
		cfd_registration_free(reg[i]);
		cfd_token_unref(t[i]);
	}
	/* the copy of the message is the one allocation tried */
	ck_assert_int_eq(disarm(), 1);
	ck_assert_int_eq(r, 1);
	ck_assert_int_eq(op.calls, 80);
	ck_assert_int_eq(bad, 0);
	ck_assert_int_eq(nlive, 0);
	ck_assert_int_eq(t_count_fds(), fds);
}
END_TEST

/* ---- RLIMIT_NOFILE: -EMFILE, in a forked child ---- */

static void cb_flag(struct cfd_token *tok, void *userdata)
{
	(void)tok;
	++*(int *)userdata;
}

static int emfile_child(void *arg)
{
	struct cfd_token *tok, *child, *done, *had_fd;
	struct rlimit saved, low;
	int lowest, before, had, calls = 0, fd;

	(void)arg;
	T_CHILD_CHECK(cfd_token_new(&tok, "tok") == 0);
	T_CHILD_CHECK(cfd_token_child(&child, tok, "child") == 0);
	T_CHILD_CHECK(cfd_token_new(&done, "done") == 0);
	T_CHILD_CHECK(cfd_token_new(&had_fd, "had fd") == 0);
	T_CHILD_CHECK(cfd_token_trigger(done) == 1);
	T_CHILD_CHECK(cfd_token_on_trigger(NULL, child, cb_flag, &calls, 0) ==
		      0);
	had = cfd_token_fd(had_fd);
	T_CHILD_CHECK(had >= 0);
	before = t_count_fds();

	/* no fd number below the lowest free one is free */
	lowest = open("/dev/null", O_RDONLY | O_CLOEXEC);
	T_CHILD_CHECK(lowest >= 0);
	close(lowest);
	T_CHILD_CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
	low = saved;
	low.rlim_cur = (rlim_t)lowest;
	T_CHILD_CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
	T_CHILD_CHECK(open("/dev/null", O_RDONLY) == -1 && errno == EMFILE);

	T_CHILD_CHECK(cfd_token_fd(tok) == -EMFILE);
	T_CHILD_CHECK(cfd_token_fd(tok) == -EMFILE); /* tried again */
	T_CHILD_CHECK(cfd_token_fd(child) == -EMFILE);
	T_CHILD_CHECK(cfd_token_fd(done) == -EMFILE);
	T_CHILD_CHECK(cfd_token_fd(had_fd) == had); /* made before */
	/* the token works without its fd */
	T_CHILD_CHECK(cfd_token_wait(tok, 0) == -ETIMEDOUT);
	T_CHILD_CHECK(cfd_token_check(tok) == 0);
	T_CHILD_CHECK(cfd_token_trigger_msg(tok, "no fd") == 1);
	T_CHILD_CHECK(cfd_token_triggered(tok));
	T_CHILD_CHECK(cfd_token_triggered(child));
	T_CHILD_CHECK(calls == 1);
	T_CHILD_CHECK(cfd_token_wait(tok, 0) == 0);
	T_CHILD_CHECK(cfd_token_wait(child, CFD_FOREVER) == 0);
	T_CHILD_CHECK(cfd_token_check(child) == -ECANCELED);
	T_CHILD_CHECK(cfd_token_origin(child) == tok);
	T_CHILD_CHECK(cfd_token_fd(child) == -EMFILE);
	T_CHILD_CHECK(cfd_token_trigger(had_fd) == 1);
	T_CHILD_CHECK(t_fd_readable(had, 0));

	/* back under a normal limit: nothing was left open, and an fd made
	 * now is born readable */
	T_CHILD_CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
	T_CHILD_CHECK(t_count_fds() == before);
	fd = cfd_token_fd(child);
	T_CHILD_CHECK(fd >= 0);
	T_CHILD_CHECK(t_fd_readable(fd, 0));
	T_CHILD_CHECK(t_fd_readable(cfd_token_fd(tok), 0));
	T_CHILD_CHECK(t_fd_readable(cfd_token_fd(done), 0));
	T_CHILD_CHECK(t_count_fds() == before + 3);
	cfd_token_unref(child);
	cfd_token_unref(tok);
	cfd_token_unref(done);
	cfd_token_unref(had_fd);
	T_CHILD_CHECK(t_count_fds() == before - 1);
	return 0;
}

START_TEST(test_emfile)
{
	struct rlimit before, after;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &before), 0);
	ck_assert_int_eq(t_in_child(emfile_child, NULL), 0);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &after), 0);
	ck_assert_int_eq(after.rlim_cur, before.rlim_cur);
}
END_TEST

/* A pending token whose fd could not be made gets one later, which then
 * becomes readable on the trigger. */
static int emfile_then_pending_child(void *arg)
{
	struct cfd_token *tok;
	struct rlimit saved, low;
	int lowest, fd;

	(void)arg;
	T_CHILD_CHECK(cfd_token_new(&tok, "tok") == 0);
	lowest = open("/dev/null", O_RDONLY | O_CLOEXEC);
	T_CHILD_CHECK(lowest >= 0);
	close(lowest);
	T_CHILD_CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
	low = saved;
	low.rlim_cur = (rlim_t)lowest;
	T_CHILD_CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
	T_CHILD_CHECK(cfd_token_fd(tok) == -EMFILE);
	T_CHILD_CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
	fd = cfd_token_fd(tok);
	T_CHILD_CHECK(fd == lowest);
	T_CHILD_CHECK(!t_fd_readable(fd, 0));
	T_CHILD_CHECK(cfd_token_trigger(tok) == 1);
	T_CHILD_CHECK(t_fd_readable(fd, 0));
	cfd_token_unref(tok);
	T_CHILD_CHECK(!t_fd_is_open(fd));
	return 0;
}

START_TEST(test_emfile_then_fd)
{
	ck_assert_int_eq(t_in_child(emfile_then_pending_child, NULL), 0);
}
END_TEST

static Suite *fault_suite(void)
{
	Suite *s = suite_create("fault");
	TCase *tc;

	tc = t_tcase("enomem");
	tcase_add_loop_test(
	    tc, test_each_failed_allocation_is_enomem_and_leaves_nothing, 0,
	    N_OPS);
	tcase_add_loop_test(
	    tc, test_allocations_failing_from_the_nth_on_leave_nothing, 0,
	    N_OPS);
	tcase_add_test(tc, test_on_trigger_triggered_needs_no_memory);
	tcase_add_test(tc, test_trigger_msg_without_memory);
	tcase_add_test(tc, test_trigger_and_free_need_no_memory);
	suite_add_tcase(s, tc);

	tc = t_tcase("emfile");
	tcase_add_test(tc, test_emfile);
	tcase_add_test(tc, test_emfile_then_fd);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(fault_suite());
}
