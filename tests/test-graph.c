/* SPDX-License-Identifier: MIT */
/*
 * Description: the token graph (lib/graph.c): child, chain, any-of and
 * all-of tokens; triggers travel down and never up; born triggered under a
 * triggered parent; children held weakly and parents strongly; the cause a
 * descendant reports; the Python CancelToken chain semantics, nested chains
 * included; argument errors and -ECHILD after fork.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define SENTINEL ((struct cfd_token *)0x5a5a5a5a)

static struct cfd_token *new_chain(struct cfd_token *a, struct cfd_token *b)
{
	struct cfd_token *t = NULL;

	ck_assert_int_eq(cfd_token_chain(&t, a, b), 0);
	ck_assert_ptr_nonnull(t);
	return t;
}

/* Triggered by a parent: reason, origin and the origin's cause. */
static void assert_cascaded(struct cfd_token *t, struct cfd_token *origin,
			    int reason)
{
	ck_assert(cfd_token_triggered(t));
	ck_assert_int_eq(cfd_token_check(t), -ECANCELED);
	ck_assert_int_eq(cfd_token_reason(t), reason);
	ck_assert_ptr_eq(cfd_token_origin(t), origin);
	ck_assert_int_eq(cfd_token_trigger_time(t),
			 cfd_token_trigger_time(origin));
	ck_assert_ptr_eq(cfd_token_message(t), cfd_token_message(origin));
	ck_assert_int_eq(cfd_token_signal(t), cfd_token_signal(origin));
	ck_assert_int_eq(cfd_token_wait(t, 0), 0);
}

static void assert_pending(struct cfd_token *t)
{
	ck_assert(!cfd_token_triggered(t));
	ck_assert_int_eq(cfd_token_check(t), 0);
	ck_assert_int_eq(cfd_token_reason(t), CFD_REASON_NONE);
	ck_assert_ptr_null(cfd_token_origin(t));
	ck_assert_int_eq(cfd_token_wait(t, 0), -ETIMEDOUT);
}

/* ---- child ---- */

START_TEST(test_child_follows_parent)
{
	struct cfd_token *root = t_new_token("root");
	struct cfd_token *c = t_new_child(root, "child");

	ck_assert_str_eq(cfd_token_name(c), "child");
	assert_pending(c);
	ck_assert_int_eq(cfd_token_trigger_msg(root, "stop"), 1);
	assert_cascaded(c, root, CFD_REASON_PARENT);
	ck_assert_str_eq(cfd_token_message(c), "stop");
	/* the child was triggered by its parent: its own trigger loses */
	ck_assert_int_eq(cfd_token_trigger(c), 0);
	cfd_token_unref(c);
	cfd_token_unref(root);
}
END_TEST

START_TEST(test_child_alone_leaves_parent)
{
	struct cfd_token *root = t_new_token("root");
	struct cfd_token *c = t_new_child(root, "child");
	struct cfd_token *sib = t_new_child(root, "sibling");
	struct cfd_token *gc = t_new_child(c, "grandchild");

	ck_assert_int_eq(cfd_token_trigger_msg(c, "mine"), 1);
	ck_assert_int_eq(cfd_token_reason(c), CFD_REASON_MANUAL);
	ck_assert_ptr_eq(cfd_token_origin(c), c);
	assert_cascaded(gc, c, CFD_REASON_PARENT);
	ck_assert_str_eq(cfd_token_message(gc), "mine");
	/* never upward, never sideways */
	assert_pending(root);
	assert_pending(sib);
	cfd_token_unref(gc);
	cfd_token_unref(sib);
	cfd_token_unref(c);
	cfd_token_unref(root);
}
END_TEST

START_TEST(test_grandchild_origin_is_root)
{
	struct cfd_token *root = t_new_token("root");
	struct cfd_token *c = t_new_child(root, "c");
	struct cfd_token *gc = t_new_child(c, "gc");
	struct cfd_token *ggc = t_new_child(gc, "ggc");

	cfd_token_trigger_msg(root, "from the top");
	assert_cascaded(c, root, CFD_REASON_PARENT);
	assert_cascaded(gc, root, CFD_REASON_PARENT);
	assert_cascaded(ggc, root, CFD_REASON_PARENT);
	ck_assert_str_eq(cfd_token_message(ggc), "from the top");
	cfd_token_unref(ggc);
	cfd_token_unref(gc);
	cfd_token_unref(c);
	cfd_token_unref(root);
}
END_TEST

START_TEST(test_child_born_triggered)
{
	struct cfd_token *root = t_new_token("root");
	struct cfd_token *c = t_new_child(root, "c"), *late, *later;
	int fd;

	cfd_token_trigger_msg(root, "early");
	late = t_new_child(root, "late");
	assert_cascaded(late, root, CFD_REASON_PARENT);
	/* under a child triggered by the root: the origin is still root */
	later = t_new_child(c, "later");
	assert_cascaded(later, root, CFD_REASON_PARENT);
	ck_assert_str_eq(cfd_token_message(later), "early");
	fd = cfd_token_fd(later);
	ck_assert(t_fd_readable(fd, 0));
	ck_assert_int_eq(cfd_token_trigger(late), 0);
	cfd_token_unref(later);
	cfd_token_unref(late);
	cfd_token_unref(c);
	cfd_token_unref(root);
}
END_TEST

START_TEST(test_child_names)
{
	struct cfd_token *root = t_new_token("root"), *c;
	char *name = malloc(4098);

	c = t_new_child(root, NULL);
	ck_assert_str_eq(cfd_token_name(c), "");
	cfd_token_unref(c);
	memset(name, 'c', 4097);
	name[4096] = '\0';
	c = t_new_child(root, name);
	ck_assert_str_eq(cfd_token_name(c), name);
	cfd_token_unref(c);
	name[4096] = 'c';
	name[4097] = '\0';
	c = SENTINEL;
	ck_assert_int_eq(cfd_token_child(&c, root, name), -EINVAL);
	ck_assert_ptr_eq(c, SENTINEL);
	free(name);
	cfd_token_unref(root);
}
END_TEST

START_TEST(test_child_einval)
{
	struct cfd_token *root = t_new_token("root"), *c = SENTINEL;

	ck_assert_int_eq(cfd_token_child(NULL, root, "x"), -EINVAL);
	ck_assert_int_eq(cfd_token_child(&c, NULL, "x"), -EINVAL);
	ck_assert_int_eq(cfd_token_child(NULL, NULL, NULL), -EINVAL);
	ck_assert_ptr_eq(c, SENTINEL);
	cfd_token_unref(root);
}
END_TEST

/* ---- chain: the Python CancelToken.chain ---- */

/* The example: token_b = CancelToken('token-b').chain(token_a) */
START_TEST(test_chain_triggers_when_the_chained_token_does)
{
	struct cfd_token *token_a = t_new_token("token-a");
	struct cfd_token *b0 = t_new_token("token-b");
	struct cfd_token *token_b = new_chain(b0, token_a);

	ck_assert_str_eq(cfd_token_name(token_b), "token-b:token-a");
	ck_assert(!cfd_token_triggered(token_a));
	ck_assert(!cfd_token_triggered(token_b));
	cfd_token_trigger(token_a);
	ck_assert(cfd_token_triggered(token_a));
	ck_assert(cfd_token_triggered(token_b));
	ck_assert_ptr_eq(cfd_token_origin(token_b), token_a);
	ck_assert(!cfd_token_triggered(b0));
	cfd_token_unref(token_b);
	cfd_token_unref(b0);
	cfd_token_unref(token_a);
}
END_TEST

/* "token_b can be triggered independently, not effecting token_a" */
START_TEST(test_chain_triggers_alone_leaving_the_chained_token)
{
	struct cfd_token *token_a = t_new_token("token-a");
	struct cfd_token *b0 = t_new_token("token-b");
	struct cfd_token *token_b = new_chain(b0, token_a);

	ck_assert_int_eq(cfd_token_trigger(token_b), 1);
	ck_assert(cfd_token_triggered(token_b));
	ck_assert_ptr_eq(cfd_token_origin(token_b), token_b);
	ck_assert(!cfd_token_triggered(token_a));
	ck_assert(!cfd_token_triggered(b0));
	cfd_token_unref(token_b);
	cfd_token_unref(b0);
	cfd_token_unref(token_a);
}
END_TEST

START_TEST(test_chain_either_side)
{
	for (int side = 0; side < 2; side++) {
		struct cfd_token *a = t_new_token("a"), *b = t_new_token("b");
		struct cfd_token *ab = new_chain(a, b);
		struct cfd_token *hit = side ? b : a, *other = side ? a : b;

		ck_assert_str_eq(cfd_token_name(ab), "a:b");
		cfd_token_trigger_msg(hit, "hit");
		assert_cascaded(ab, hit, CFD_REASON_PARENT);
		assert_pending(other);
		cfd_token_unref(ab);
		cfd_token_unref(a);
		cfd_token_unref(b);
	}
}
END_TEST

START_TEST(test_chain_born_triggered)
{
	struct cfd_token *a = t_new_token("a"), *b = t_new_token("b"), *ab, *ba;

	cfd_token_trigger(b);
	ab = new_chain(a, b);
	assert_cascaded(ab, b, CFD_REASON_PARENT);
	ba = new_chain(b, a);
	assert_cascaded(ba, b, CFD_REASON_PARENT);
	assert_pending(a);
	ck_assert(t_fd_readable(cfd_token_fd(ab), 0));
	cfd_token_unref(ab);
	cfd_token_unref(ba);
	cfd_token_unref(a);
	cfd_token_unref(b);
}
END_TEST

START_TEST(test_chain_of_itself)
{
	struct cfd_token *a = t_new_token("a");
	struct cfd_token *aa = new_chain(a, a);

	ck_assert_str_eq(cfd_token_name(aa), "a:a");
	ck_assert_int_eq(cfd_token_trigger(a), 1);
	assert_cascaded(aa, a, CFD_REASON_PARENT);
	cfd_token_unref(aa);
	cfd_token_unref(a);
}
END_TEST

START_TEST(test_chain_long_names)
{
	char *name = malloc(4097);
	struct cfd_token *a, *b, *ab;

	memset(name, 'a', 4096);
	name[4096] = '\0';
	a = t_new_token(name);
	b = t_new_token("b");
	/* "a:b" would pass the limit: the chain is still made, its name
	 * starts with a's */
	ab = new_chain(a, b);
	ck_assert_uint_le(strlen(cfd_token_name(ab)), 4096);
	ck_assert(strncmp(cfd_token_name(ab), name, 100) == 0);
	cfd_token_unref(ab);
	ab = new_chain(b, a);
	ck_assert_uint_le(strlen(cfd_token_name(ab)), 4096);
	ck_assert(strncmp(cfd_token_name(ab), "b:aaaa", 6) == 0);
	cfd_token_unref(ab);
	cfd_token_unref(a);
	cfd_token_unref(b);
	free(name);
}
END_TEST

START_TEST(test_chain_einval)
{
	struct cfd_token *a = t_new_token("a"), *c = SENTINEL;

	ck_assert_int_eq(cfd_token_chain(NULL, a, a), -EINVAL);
	ck_assert_int_eq(cfd_token_chain(&c, NULL, a), -EINVAL);
	ck_assert_int_eq(cfd_token_chain(&c, a, NULL), -EINVAL);
	ck_assert_int_eq(cfd_token_chain(&c, NULL, NULL), -EINVAL);
	ck_assert_ptr_eq(c, SENTINEL);
	cfd_token_unref(a);
}
END_TEST

/*
 * Nested chain a:b:c = chain(chain(a, b), c).  Trigger one of a, b, c, a:b
 * or a:b:c (one per test) and check exactly which tokens end triggered
 * (a bit per token), with what origin and reason.
 */
enum { A, B, C, AB, ABC, N_NESTED };

static void check_nested_chain(int target, unsigned triggered)
{
	const char *names[N_NESTED] = { "a", "b", "c", "a:b", "a:b:c" };
	struct cfd_token *t[N_NESTED];
	int fds[N_NESTED];

	t[A] = t_new_token("a");
	t[B] = t_new_token("b");
	t[C] = t_new_token("c");
	t[AB] = new_chain(t[A], t[B]);
	t[ABC] = new_chain(t[AB], t[C]);
	for (int i = 0; i < N_NESTED; i++) {
		ck_assert_str_eq(cfd_token_name(t[i]), names[i]);
		fds[i] = cfd_token_fd(t[i]);
	}

	ck_assert_int_eq(cfd_token_trigger_msg(t[target], names[target]), 1);

	for (int i = 0; i < N_NESTED; i++) {
		if (!(triggered & (1u << i))) {
			assert_pending(t[i]);
			ck_assert(!t_fd_readable(fds[i], 0));
			continue;
		}
		ck_assert(t_fd_readable(fds[i], 0));
		if (i == target) {
			ck_assert_int_eq(cfd_token_reason(t[i]),
					 CFD_REASON_MANUAL);
			ck_assert_ptr_eq(cfd_token_origin(t[i]), t[i]);
		} else {
			assert_cascaded(t[i], t[target], CFD_REASON_PARENT);
		}
		/* origin names the token whose trigger started it */
		ck_assert_str_eq(cfd_token_name(cfd_token_origin(t[i])),
				 names[target]);
		ck_assert_str_eq(cfd_token_message(t[i]), names[target]);
	}
	for (int i = N_NESTED - 1; i >= 0; i--)
		cfd_token_unref(t[i]);
}

START_TEST(test_nested_chain_trigger_of_a_reaches_a_b_and_a_b_c)
{
	check_nested_chain(A, 1u << A | 1u << AB | 1u << ABC);
}
END_TEST

START_TEST(test_nested_chain_trigger_of_b_reaches_a_b_and_a_b_c)
{
	check_nested_chain(B, 1u << B | 1u << AB | 1u << ABC);
}
END_TEST

START_TEST(test_nested_chain_trigger_of_c_reaches_a_b_c_alone)
{
	check_nested_chain(C, 1u << C | 1u << ABC);
}
END_TEST

START_TEST(test_nested_chain_trigger_of_a_b_reaches_a_b_c_alone)
{
	check_nested_chain(AB, 1u << AB | 1u << ABC);
}
END_TEST

START_TEST(test_nested_chain_trigger_of_a_b_c_reaches_no_other)
{
	check_nested_chain(ABC, 1u << ABC);
}
END_TEST

/* ---- any-of ---- */

START_TEST(test_any_of_each_member)
{
	for (int hit = 0; hit < 4; hit++) {
		struct cfd_token *t[4], *any = NULL;

		for (int i = 0; i < 4; i++)
			t[i] = t_new_token("m");
		ck_assert_int_eq(cfd_token_any_of(&any, "any", t, 4), 0);
		ck_assert_str_eq(cfd_token_name(any), "any");
		assert_pending(any);
		cfd_token_trigger(t[hit]);
		assert_cascaded(any, t[hit], CFD_REASON_PARENT);
		for (int i = 0; i < 4; i++)
			if (i != hit)
				assert_pending(t[i]);
		cfd_token_unref(any);
		for (int i = 0; i < 4; i++)
			cfd_token_unref(t[i]);
	}
}
END_TEST

START_TEST(test_any_of_one_and_born)
{
	struct cfd_token *t[3], *any = NULL;

	t[0] = t_new_token("p0");
	t[1] = t_new_child(t[0], "p1");
	t[2] = t_new_token("p2");
	ck_assert_int_eq(cfd_token_any_of(&any, NULL, &t[2], 1), 0);
	ck_assert_str_eq(cfd_token_name(any), "");
	cfd_token_trigger(t[2]);
	assert_cascaded(any, t[2], CFD_REASON_PARENT);
	cfd_token_unref(any);

	/* born triggered: origin of the triggered parent, at any index */
	cfd_token_trigger_msg(t[0], "zero");
	ck_assert_int_eq(cfd_token_any_of(&any, "born", &t[1], 1), 0);
	assert_cascaded(any, t[0], CFD_REASON_PARENT);
	cfd_token_unref(any);
	cfd_token_unref(t[2]);
	t[2] = t_new_token("p2");
	{
		struct cfd_token *order[3] = { t[2], t[2], t[1] };

		ck_assert_int_eq(cfd_token_any_of(&any, "born", order, 3), 0);
		assert_cascaded(any, t[0], CFD_REASON_PARENT);
		cfd_token_unref(any);
	}
	for (int i = 0; i < 3; i++)
		cfd_token_unref(t[i]);
}
END_TEST

static void check_set_errors(int (*fn)(struct cfd_token **, const char *,
				       struct cfd_token *const *, size_t))
{
	struct cfd_token *t[3], *r = SENTINEL;
	char *name = malloc(4098);

	t[0] = t_new_token("a");
	t[1] = t_new_token("b");
	t[2] = NULL;
	ck_assert_int_eq(fn(NULL, "x", t, 2), -EINVAL);
	ck_assert_int_eq(fn(&r, "x", NULL, 2), -EINVAL);
	ck_assert_int_eq(fn(&r, "x", NULL, 0), -EINVAL);
	ck_assert_int_eq(fn(&r, "x", t, 0), -EINVAL);
	ck_assert_int_eq(fn(&r, "x", t, 3), -EINVAL); /* NULL element */
	t[2] = t[0];
	t[0] = NULL;
	ck_assert_int_eq(fn(&r, "x", t, 3), -EINVAL); /* NULL first */
	t[0] = t[2];
	/* more than CFD_MAX_PARENTS: refused before the array is read */
	ck_assert_int_eq(fn(&r, "x", t, (size_t)CFD_MAX_PARENTS + 1), -EINVAL);
	ck_assert_int_eq(fn(&r, "x", t, SIZE_MAX), -EINVAL);
	memset(name, 'n', 4097);
	name[4097] = '\0';
	ck_assert_int_eq(fn(&r, name, t, 2), -EINVAL);
	ck_assert_ptr_eq(r, SENTINEL);
	name[4096] = '\0';
	ck_assert_int_eq(fn(&r, name, t, 2), 0);
	ck_assert_str_eq(cfd_token_name(r), name);
	cfd_token_unref(r);
	/* the failed calls took no reference and left no link */
	cfd_token_trigger(t[0]);
	cfd_token_unref(t[0]);
	cfd_token_unref(t[1]);
	free(name);
}

START_TEST(test_any_of_einval)
{
	check_set_errors(cfd_token_any_of);
}
END_TEST

/* ---- all-of ---- */

START_TEST(test_all_of_needs_every_parent)
{
	/* order 0: trigger 0,1,2; order 1: 2,1,0; order 2: 1,0,2 */
	static const int orders[3][3] = { { 0, 1, 2 },
					  { 2, 1, 0 },
					  { 1, 0, 2 } };

	for (int o = 0; o < 3; o++) {
		struct cfd_token *t[3], *all = NULL;
		int fd;

		for (int i = 0; i < 3; i++)
			t[i] = t_new_token("p");
		ck_assert_int_eq(cfd_token_all_of(&all, "all", t, 3), 0);
		ck_assert_str_eq(cfd_token_name(all), "all");
		fd = cfd_token_fd(all);
		for (int k = 0; k < 3; k++) {
			assert_pending(all);
			ck_assert(!t_fd_readable(fd, 0));
			cfd_token_trigger_msg(t[orders[o][k]], "p");
		}
		/* origin: the origin of the parent that triggered last */
		assert_cascaded(all, t[orders[o][2]], CFD_REASON_ALL_OF);
		ck_assert(t_fd_readable(fd, 0));
		cfd_token_unref(all);
		for (int i = 0; i < 3; i++)
			cfd_token_unref(t[i]);
	}
}
END_TEST

static int64_t coarse_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Make the next trigger's time strictly later than t's, whether the
 * library stamps times with CLOCK_MONOTONIC or its coarse variant (which
 * never runs ahead of it). */
static void tick_past(struct cfd_token *t)
{
	while (coarse_now() <= cfd_token_trigger_time(t))
		;
}

START_TEST(test_all_of_born)
{
	struct cfd_token *root = t_new_token("root"), *t[3], *all;

	t[0] = t_new_token("p0");
	t[1] = t_new_child(root, "p1");
	t[2] = t_new_token("p2");

	/* some parents triggered already: born pending */
	cfd_token_trigger(t[0]);
	tick_past(t[0]);
	all = NULL;
	ck_assert_int_eq(cfd_token_all_of(&all, "all", t, 3), 0);
	assert_pending(all);
	cfd_token_trigger(t[2]);
	tick_past(t[2]);
	assert_pending(all);
	cfd_token_trigger_msg(root, "root last");
	assert_cascaded(all, root, CFD_REASON_ALL_OF);
	ck_assert_str_eq(cfd_token_message(all), "root last");
	cfd_token_unref(all);

	/* all triggered already: born triggered, origin = the latest */
	all = NULL;
	ck_assert_int_eq(cfd_token_all_of(&all, "all2", t, 3), 0);
	assert_cascaded(all, root, CFD_REASON_ALL_OF);
	ck_assert(t_fd_readable(cfd_token_fd(all), 0));
	cfd_token_unref(all);
	for (int i = 0; i < 3; i++)
		cfd_token_unref(t[i]);
	cfd_token_unref(root);
}
END_TEST

/*
 * An all-of made after all its parents triggered takes the origin of the
 * parent with the latest trigger time.  Trigger times have the coarse
 * clock's resolution: parents triggered within one tick tie, and the later
 * of them in the array wins (the order of the triggers is not recorded).
 */
START_TEST(test_all_of_born_same_tick)
{
	struct cfd_token *t[3], *all = NULL;
	int64_t start = coarse_now();

	for (int i = 0; i < 3; i++)
		t[i] = t_new_token("p");
	/* at the start of a fresh tick, three triggers in a row */
	while (coarse_now() == start)
		;
	cfd_token_trigger(t[0]);
	cfd_token_trigger(t[2]);
	cfd_token_trigger(t[1]);
	ck_assert_int_eq(cfd_token_all_of(&all, "all", t, 3), 0);
	ck_assert_int_eq(cfd_token_reason(all), CFD_REASON_ALL_OF);
	/* The rule, whatever the ticks did: the latest trigger time wins,
	 * and a tie goes to the later parent in the array.  Usually all
	 * three share a tick, so t[2] is the origin although t[1] fired
	 * last. */
	{
		struct cfd_token *want = t[0];

		for (int i = 1; i < 3; i++)
			if (cfd_token_trigger_time(t[i]) >=
			    cfd_token_trigger_time(want))
				want = t[i];
		ck_assert_ptr_eq(cfd_token_origin(all), want);
	}
	cfd_token_unref(all);
	for (int i = 0; i < 3; i++)
		cfd_token_unref(t[i]);
}
END_TEST

START_TEST(test_all_of_repeated_parent)
{
	struct cfd_token *a = t_new_token("a"), *b = t_new_token("b");
	struct cfd_token *t[3] = { a, a, b }, *all = NULL;

	ck_assert_int_eq(cfd_token_all_of(&all, "aab", t, 3), 0);
	cfd_token_trigger(a);
	assert_pending(all);
	cfd_token_trigger(b);
	assert_cascaded(all, b, CFD_REASON_ALL_OF);
	cfd_token_unref(all);
	cfd_token_unref(a);
	cfd_token_unref(b);
}
END_TEST

START_TEST(test_all_of_one_and_manual)
{
	struct cfd_token *a = t_new_token("a"), *b = t_new_token("b");
	struct cfd_token *t[2] = { a, b }, *one = NULL, *both = NULL;

	ck_assert_int_eq(cfd_token_all_of(&one, NULL, &a, 1), 0);
	ck_assert_str_eq(cfd_token_name(one), "");
	ck_assert_int_eq(cfd_token_all_of(&both, "both", t, 2), 0);
	/* an all-of can be triggered by hand; the parents' later triggers
	 * change nothing */
	ck_assert_int_eq(cfd_token_trigger(both), 1);
	cfd_token_trigger(a);
	assert_cascaded(one, a, CFD_REASON_ALL_OF);
	cfd_token_trigger(b);
	ck_assert_int_eq(cfd_token_reason(both), CFD_REASON_MANUAL);
	ck_assert_ptr_eq(cfd_token_origin(both), both);
	cfd_token_unref(one);
	cfd_token_unref(both);
	cfd_token_unref(a);
	cfd_token_unref(b);
}
END_TEST

START_TEST(test_all_of_einval)
{
	check_set_errors(cfd_token_all_of);
}
END_TEST

/* ---- the shape of the graph ---- */

START_TEST(test_diamond)
{
	struct cfd_token *root = t_new_token("root");
	struct cfd_token *l = t_new_child(root, "l"),
			 *r = t_new_child(root, "r");
	struct cfd_token *lr[2] = { l, r }, *any = NULL, *all = NULL, *leaf;

	ck_assert_int_eq(cfd_token_any_of(&any, "any", lr, 2), 0);
	ck_assert_int_eq(cfd_token_all_of(&all, "all", lr, 2), 0);
	leaf = new_chain(any, all);
	ck_assert_str_eq(cfd_token_name(leaf), "any:all");
	cfd_token_trigger_msg(root, "diamond");
	assert_cascaded(l, root, CFD_REASON_PARENT);
	assert_cascaded(r, root, CFD_REASON_PARENT);
	assert_cascaded(any, root, CFD_REASON_PARENT);
	assert_cascaded(all, root, CFD_REASON_ALL_OF);
	assert_cascaded(leaf, root, CFD_REASON_PARENT);
	cfd_token_unref(leaf);
	cfd_token_unref(any);
	cfd_token_unref(all);
	cfd_token_unref(l);
	cfd_token_unref(r);
	cfd_token_unref(root);
}
END_TEST

/* When trigger returns, every descendant reads triggered and every
 * descendant fd is readable: a tree 4 wide and 5 deep, fds on half. */
#define TREE_N (1 + 4 + 16 + 64 + 256 + 1024)

START_TEST(test_tree_complete_on_return)
{
	struct cfd_token **t = calloc(TREE_N, sizeof(*t));
	int *fd = calloc(TREE_N, sizeof(*fd));

	t[0] = t_new_token("root");
	for (int i = 1; i < TREE_N; i++) {
		t[i] = t_new_child(t[(i - 1) / 4], "node");
		fd[i] = (i % 2) ? cfd_token_fd(t[i]) : -1;
	}
	cfd_token_trigger(t[0]);
	for (int i = 1; i < TREE_N; i++) {
		ck_assert(cfd_token_triggered(t[i]));
		if (fd[i] >= 0)
			ck_assert(t_fd_readable(fd[i], 0));
	}
	for (int i = 1; i < TREE_N; i++) {
		ck_assert_ptr_eq(cfd_token_origin(t[i]), t[0]);
		/* an fd made now is born readable */
		if (fd[i] < 0)
			ck_assert(t_fd_readable(cfd_token_fd(t[i]), 0));
	}
	for (int i = TREE_N - 1; i >= 0; i--)
		cfd_token_unref(t[i]);
	free(t);
	free(fd);
}
END_TEST

START_TEST(test_subtree_trigger)
{
	struct cfd_token **t = calloc(TREE_N, sizeof(*t));
	int mid = 2; /* the second child of the root */

	t[0] = t_new_token("root");
	for (int i = 1; i < TREE_N; i++)
		t[i] = t_new_child(t[(i - 1) / 4], "node");
	cfd_token_trigger_msg(t[mid], "mid");
	for (int i = 0; i < TREE_N; i++) {
		/* is i in mid's subtree? */
		int j = i;

		while (j > mid)
			j = (j - 1) / 4;
		if (j == mid && i != mid)
			assert_cascaded(t[i], t[mid], CFD_REASON_PARENT);
		else if (i != mid)
			assert_pending(t[i]);
	}
	for (int i = TREE_N - 1; i >= 0; i--)
		cfd_token_unref(t[i]);
	free(t);
}
END_TEST

/* ---- ownership: children weakly, parents strongly ---- */

START_TEST(test_child_released_at_once)
{
	struct cfd_token *root = t_new_token("root"), *c;
	int fd;

	c = t_new_child(root, "short-lived");
	fd = cfd_token_fd(c);
	cfd_token_unref(c);
	/* the parent does not keep it alive */
	ck_assert(!t_fd_is_open(fd));
	ck_assert_int_eq(cfd_token_trigger(root), 1);
	cfd_token_unref(root);
}
END_TEST

START_TEST(test_child_holds_parent)
{
	struct cfd_token *root = t_new_token("root"), *c, *gc;
	int root_fd;

	root_fd = cfd_token_fd(root);
	c = t_new_child(root, "c");
	gc = t_new_child(c, "gc");
	cfd_token_unref(root);
	cfd_token_unref(c);
	/* both live on through gc */
	ck_assert(t_fd_is_open(root_fd));
	ck_assert(!t_fd_readable(root_fd, 0));
	ck_assert_int_eq(cfd_token_trigger(gc), 1);
	ck_assert(!t_fd_readable(root_fd, 0));
	cfd_token_unref(gc);
	ck_assert(!t_fd_is_open(root_fd));
}
END_TEST

START_TEST(test_origin_outlives_user_reference)
{
	struct cfd_token *root = t_new_token("root"),
			 *c = t_new_child(root, "c");

	cfd_token_trigger_msg(root, "borrowed");
	cfd_token_unref(root);
	/* borrowed from c's ancestry: valid as long as c is */
	ck_assert_str_eq(cfd_token_name(cfd_token_origin(c)), "root");
	ck_assert_str_eq(cfd_token_message(c), "borrowed");
	ck_assert(cfd_token_triggered(cfd_token_origin(c)));
	cfd_token_unref(c);
}
END_TEST

START_TEST(test_chain_holds_both)
{
	struct cfd_token *a = t_new_token("a"), *b = t_new_token("b"), *ab;
	int fa = cfd_token_fd(a), fb = cfd_token_fd(b);

	ab = new_chain(a, b);
	cfd_token_unref(a);
	cfd_token_unref(b);
	ck_assert(t_fd_is_open(fa));
	ck_assert(t_fd_is_open(fb));
	cfd_token_unref(ab);
	ck_assert(!t_fd_is_open(fa));
	ck_assert(!t_fd_is_open(fb));
}
END_TEST

START_TEST(test_release_middle_of_chain)
{
	struct cfd_token *root = t_new_token("root"), *t[100];
	int fd[100];

	t[0] = t_new_child(root, "0");
	for (int i = 1; i < 100; i++)
		t[i] = t_new_child(t[i - 1], "i");
	for (int i = 0; i < 100; i++)
		fd[i] = cfd_token_fd(t[i]);
	/* drop the user's hold on the middle: t[99] keeps them */
	for (int i = 0; i < 99; i++)
		cfd_token_unref(t[i]);
	for (int i = 0; i < 100; i++)
		ck_assert(t_fd_is_open(fd[i]));
	cfd_token_trigger(root);
	for (int i = 0; i < 100; i++)
		ck_assert(t_fd_readable(fd[i], 0));
	assert_cascaded(t[99], root, CFD_REASON_PARENT);
	cfd_token_unref(t[99]);
	for (int i = 0; i < 100; i++)
		ck_assert(!t_fd_is_open(fd[i]));
	cfd_token_unref(root);
}
END_TEST

/* ---- -ECHILD ---- */

struct inherited {
	struct cfd_token *pending, *done;
};

static int echild_graph_child(void *arg)
{
	struct inherited *in = arg;
	struct cfd_token *mine, *r = SENTINEL, *set[2];

	T_CHILD_CHECK(cfd_token_new(&mine, "mine") == 0);
	T_CHILD_CHECK(cfd_token_child(&r, in->pending, "c") == -ECHILD);
	T_CHILD_CHECK(cfd_token_child(&r, in->done, "c") == -ECHILD);
	T_CHILD_CHECK(cfd_token_chain(&r, in->pending, mine) == -ECHILD);
	T_CHILD_CHECK(cfd_token_chain(&r, mine, in->pending) == -ECHILD);
	set[0] = mine;
	set[1] = in->pending;
	T_CHILD_CHECK(cfd_token_any_of(&r, "x", set, 2) == -ECHILD);
	T_CHILD_CHECK(cfd_token_all_of(&r, "x", set, 2) == -ECHILD);
	set[0] = in->done;
	set[1] = mine;
	T_CHILD_CHECK(cfd_token_any_of(&r, "x", set, 2) == -ECHILD);
	T_CHILD_CHECK(cfd_token_all_of(&r, "x", set, 2) == -ECHILD);
	T_CHILD_CHECK(r == SENTINEL);
	/* nothing was linked under the child's own token */
	T_CHILD_CHECK(cfd_token_trigger(mine) == 1);
	cfd_token_unref(mine);
	return 0;
}

START_TEST(test_echild_after_fork)
{
	struct inherited in = { t_new_token("pending"), t_new_token("done") };
	struct cfd_token *c;

	cfd_token_trigger(in.done);
	ck_assert_int_eq(t_in_child(echild_graph_child, &in), 0);
	c = t_new_child(in.pending, "after");
	cfd_token_trigger(in.pending);
	assert_cascaded(c, in.pending, CFD_REASON_PARENT);
	cfd_token_unref(c);
	cfd_token_unref(in.pending);
	cfd_token_unref(in.done);
}
END_TEST

static Suite *graph_suite(void)
{
	Suite *s = suite_create("graph");
	TCase *tc;

	tc = t_tcase("child");
	tcase_add_test(tc, test_child_follows_parent);
	tcase_add_test(tc, test_child_alone_leaves_parent);
	tcase_add_test(tc, test_grandchild_origin_is_root);
	tcase_add_test(tc, test_child_born_triggered);
	tcase_add_test(tc, test_child_names);
	tcase_add_test(tc, test_child_einval);
	suite_add_tcase(s, tc);

	tc = t_tcase("chain");
	tcase_add_test(tc, test_chain_triggers_when_the_chained_token_does);
	tcase_add_test(tc, test_chain_triggers_alone_leaving_the_chained_token);
	tcase_add_test(tc, test_chain_either_side);
	tcase_add_test(tc, test_chain_born_triggered);
	tcase_add_test(tc, test_chain_of_itself);
	tcase_add_test(tc, test_chain_long_names);
	tcase_add_test(tc, test_chain_einval);
	tcase_add_test(tc,
		       test_nested_chain_trigger_of_a_reaches_a_b_and_a_b_c);
	tcase_add_test(tc,
		       test_nested_chain_trigger_of_b_reaches_a_b_and_a_b_c);
	tcase_add_test(tc, test_nested_chain_trigger_of_c_reaches_a_b_c_alone);
	tcase_add_test(tc,
		       test_nested_chain_trigger_of_a_b_reaches_a_b_c_alone);
	tcase_add_test(tc, test_nested_chain_trigger_of_a_b_c_reaches_no_other);
	suite_add_tcase(s, tc);

	tc = t_tcase("any-of");
	tcase_add_test(tc, test_any_of_each_member);
	tcase_add_test(tc, test_any_of_one_and_born);
	tcase_add_test(tc, test_any_of_einval);
	suite_add_tcase(s, tc);

	tc = t_tcase("all-of");
	tcase_add_test(tc, test_all_of_needs_every_parent);
	tcase_add_test(tc, test_all_of_born);
	tcase_add_test(tc, test_all_of_born_same_tick);
	tcase_add_test(tc, test_all_of_repeated_parent);
	tcase_add_test(tc, test_all_of_one_and_manual);
	tcase_add_test(tc, test_all_of_einval);
	suite_add_tcase(s, tc);

	tc = t_tcase("shape");
	tcase_add_test(tc, test_diamond);
	tcase_add_test(tc, test_tree_complete_on_return);
	tcase_add_test(tc, test_subtree_trigger);
	suite_add_tcase(s, tc);

	tc = t_tcase("ownership");
	tcase_add_test(tc, test_child_released_at_once);
	tcase_add_test(tc, test_child_holds_parent);
	tcase_add_test(tc, test_origin_outlives_user_reference);
	tcase_add_test(tc, test_chain_holds_both);
	tcase_add_test(tc, test_release_middle_of_chain);
	suite_add_tcase(s, tc);

	tc = t_tcase("fork");
	tcase_add_test(tc, test_echild_after_fork);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(graph_suite());
}
