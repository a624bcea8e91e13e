/* SPDX-License-Identifier: MIT */
/*
 * Description: callbacks (lib/callback.c): run once, in the triggering
 * thread, after the whole fan-out, most recent first; inline when already
 * triggered (or -ECANCELED with CFD_CALLBACK_NO_INLINE); floating
 * registrations; cfd_registration_free() before, after and from inside the
 * callback; what a callback may do (trigger, register, free, drop the last
 * reference to its own token); argument errors and -ECHILD after fork.
 * The cross-thread guarantees are in test-concurrency.c.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define SENTINEL ((struct cfd_registration *)0x5a5a5a5a)

/* The order callbacks ran in, by id; each test starts it afresh. */
#define LOG_MAX 20000
static int run_log[LOG_MAX];
static int run_n;

struct cb {
	int id;
	int calls;
	pthread_t thread;
	struct cfd_token *tok;
	/* what some callbacks act on */
	struct cfd_token *other;
	struct cfd_registration *reg, *reg2;
	struct cb *inner;
	int ret;
	bool ok;
};

static void cb_count(struct cfd_token *tok, void *userdata)
{
	struct cb *c = userdata;

	c->calls++;
	c->thread = pthread_self();
	c->tok = tok;
	if (run_n < LOG_MAX)
		run_log[run_n++] = c->id;
}

static struct cfd_registration *reg_on(struct cfd_token *t, struct cb *c)
{
	struct cfd_registration *reg = SENTINEL;

	ck_assert_int_eq(cfd_token_on_trigger(&reg, t, cb_count, c, 0), 0);
	ck_assert_ptr_nonnull(reg);
	ck_assert_ptr_ne(reg, SENTINEL);
	return reg;
}

/* ---- basics ---- */

START_TEST(test_runs_once_on_trigger)
{
	struct cfd_token *t = t_new_token("t");
	struct cb c = { .id = 1 };
	struct cfd_registration *reg;

	run_n = 0;
	reg = reg_on(t, &c);
	ck_assert_int_eq(c.calls, 0);
	ck_assert_int_eq(cfd_token_trigger(t), 1);
	ck_assert_int_eq(c.calls, 1); /* before trigger returned */
	ck_assert_ptr_eq(c.tok, t);
	ck_assert(pthread_equal(c.thread, pthread_self()));
	cfd_token_trigger(t);
	cfd_token_trigger_msg(t, "again");
	ck_assert_int_eq(c.calls, 1);
	ck_assert_ptr_null(cfd_registration_free(reg));
	ck_assert_int_eq(c.calls, 1);
	cfd_token_unref(t);
}
END_TEST

struct trigger_thread {
	struct cfd_token *tok;
	struct cb *c;
	int calls_on_return;
	pthread_t self;
};

static void *trigger_main(void *arg)
{
	struct trigger_thread *tt = arg;

	tt->self = pthread_self();
	cfd_token_trigger(tt->tok);
	tt->calls_on_return = tt->c->calls;
	return NULL;
}

START_TEST(test_runs_in_triggering_thread)
{
	struct cfd_token *root = t_new_token("root"),
			 *c = t_new_child(root, "c");
	struct cb cr = { .id = 1 }, cc = { .id = 2 };
	struct cfd_registration *r1 = reg_on(root, &cr), *r2 = reg_on(c, &cc);
	struct trigger_thread tt = { .tok = root, .c = &cc };
	pthread_t th;

	ck_assert_int_eq(pthread_create(&th, NULL, trigger_main, &tt), 0);
	pthread_join(th, NULL);
	ck_assert_int_eq(tt.calls_on_return, 1);
	ck_assert_int_eq(cr.calls, 1);
	ck_assert_int_eq(cc.calls, 1);
	ck_assert(pthread_equal(cr.thread, tt.self));
	/* a descendant's callback runs in the thread that triggered the
	 * root */
	ck_assert(pthread_equal(cc.thread, tt.self));
	ck_assert_ptr_eq(cc.tok, c);
	cfd_registration_free(r1);
	cfd_registration_free(r2);
	cfd_token_unref(c);
	cfd_token_unref(root);
}
END_TEST

START_TEST(test_inline_when_triggered)
{
	struct cfd_token *t = t_new_token("t");
	struct cb c = { .id = 1 };
	struct cfd_registration *reg = SENTINEL;

	cfd_token_trigger(t);
	ck_assert_int_eq(cfd_token_on_trigger(&reg, t, cb_count, &c, 0), 1);
	ck_assert_ptr_null(reg);
	ck_assert_int_eq(c.calls, 1);
	ck_assert(pthread_equal(c.thread, pthread_self()));
	ck_assert_ptr_eq(c.tok, t);
	ck_assert_ptr_null(cfd_registration_free(reg));
	/* a triggered child: inline too */
	{
		struct cfd_token *ch = t_new_child(t, "ch");

		reg = SENTINEL;
		ck_assert_int_eq(
		    cfd_token_on_trigger(&reg, ch, cb_count, &c, 0), 1);
		ck_assert_ptr_null(reg);
		ck_assert_int_eq(c.calls, 2);
		ck_assert_ptr_eq(c.tok, ch);
		cfd_token_unref(ch);
	}
	cfd_token_unref(t);
}
END_TEST

START_TEST(test_no_inline_flag)
{
	struct cfd_token *t = t_new_token("t");
	struct cb c = { .id = 1 };
	struct cfd_registration *reg = SENTINEL;

	/* pending: registers as usual */
	ck_assert_int_eq(
	    cfd_token_on_trigger(&reg, t, cb_count, &c, CFD_CALLBACK_NO_INLINE),
	    0);
	ck_assert_ptr_ne(reg, SENTINEL);
	cfd_token_trigger(t);
	ck_assert_int_eq(c.calls, 1);
	cfd_registration_free(reg);

	/* triggered: -ECANCELED, no call, output untouched */
	reg = SENTINEL;
	ck_assert_int_eq(
	    cfd_token_on_trigger(&reg, t, cb_count, &c, CFD_CALLBACK_NO_INLINE),
	    -ECANCELED);
	ck_assert_ptr_eq(reg, SENTINEL);
	ck_assert_int_eq(
	    cfd_token_on_trigger(NULL, t, cb_count, &c, CFD_CALLBACK_NO_INLINE),
	    -ECANCELED);
	ck_assert_int_eq(c.calls, 1);
	cfd_token_unref(t);
}
END_TEST

START_TEST(test_einval)
{
	struct cfd_token *t = t_new_token("t"), *done = t_new_token("done");
	struct cfd_registration *reg = SENTINEL;
	struct cb c = { .id = 1 };
	static const unsigned bad[] = { 1u << 1, 1u << 31, ~0u,
					CFD_CALLBACK_NO_INLINE | 1u << 5 };

	cfd_token_trigger(done);
	ck_assert_int_eq(cfd_token_on_trigger(&reg, NULL, cb_count, &c, 0),
			 -EINVAL);
	ck_assert_int_eq(cfd_token_on_trigger(&reg, t, NULL, &c, 0), -EINVAL);
	ck_assert_int_eq(cfd_token_on_trigger(&reg, done, NULL, &c, 0),
			 -EINVAL);
	ck_assert_int_eq(cfd_token_on_trigger(NULL, NULL, NULL, NULL, 0),
			 -EINVAL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(
		    cfd_token_on_trigger(&reg, t, cb_count, &c, bad[i]),
		    -EINVAL);
		ck_assert_int_eq(
		    cfd_token_on_trigger(&reg, done, cb_count, &c, bad[i]),
		    -EINVAL);
		ck_assert_int_eq(
		    cfd_token_on_trigger(NULL, t, cb_count, &c, bad[i]),
		    -EINVAL);
	}
	ck_assert_ptr_eq(reg, SENTINEL);
	ck_assert_int_eq(c.calls, 0);
	cfd_token_trigger(t);
	ck_assert_int_eq(c.calls, 0); /* nothing was registered */
	cfd_token_unref(t);
	cfd_token_unref(done);
}
END_TEST

START_TEST(test_free_null)
{
	ck_assert_ptr_null(cfd_registration_free(NULL));
}
END_TEST

START_TEST(test_free_before_trigger)
{
	struct cfd_token *t = t_new_token("t");
	struct cb a = { .id = 1 }, b = { .id = 2 };
	struct cfd_registration *ra = reg_on(t, &a), *rb = reg_on(t, &b);

	ck_assert_ptr_null(cfd_registration_free(ra));
	ck_assert_int_eq(cfd_token_trigger(t), 1);
	ck_assert_int_eq(a.calls, 0);
	ck_assert_int_eq(b.calls, 1);
	cfd_registration_free(rb);
	cfd_token_unref(t);
}
END_TEST

START_TEST(test_floating)
{
	struct cfd_token *t = t_new_token("t");
	struct cb c = { .id = 1 };

	ck_assert_int_eq(cfd_token_on_trigger(NULL, t, cb_count, &c, 0), 0);
	ck_assert_int_eq(c.calls, 0);
	cfd_token_trigger(t);
	ck_assert_int_eq(c.calls, 1); /* and freed by the library */
	/* on a triggered token: inline, nothing to free */
	ck_assert_int_eq(cfd_token_on_trigger(NULL, t, cb_count, &c, 0), 1);
	ck_assert_int_eq(c.calls, 2);
	cfd_token_unref(t);
}
END_TEST

START_TEST(test_floating_freed_with_token)
{
	struct cfd_token *t = t_new_token("t"), *root = t_new_token("root");
	struct cfd_token *ch = t_new_child(root, "ch");
	struct cb c = { .id = 1 };

	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(cfd_token_on_trigger(NULL, t, cb_count, &c, 0),
				 0);
		ck_assert_int_eq(
		    cfd_token_on_trigger(NULL, ch, cb_count, &c, 0), 0);
	}
	/* a floating registration does not keep its token: freeing the
	 * token frees them (LeakSanitizer checks), without a call */
	cfd_token_unref(t);
	cfd_token_unref(ch);
	cfd_token_trigger(root);
	ck_assert_int_eq(c.calls, 0);
	cfd_token_unref(root);
}
END_TEST

START_TEST(test_registration_holds_token)
{
	struct cfd_token *root = t_new_token("root"),
			 *ch = t_new_child(root, "ch");
	struct cb c = { .id = 1 };
	struct cfd_registration *reg = reg_on(ch, &c);
	int fd = cfd_token_fd(ch);

	/* a registration handle keeps its token (and so its link) alive */
	cfd_token_unref(ch);
	ck_assert(t_fd_is_open(fd));
	cfd_token_trigger_msg(root, "held");
	ck_assert_int_eq(c.calls, 1);
	ck_assert_ptr_eq(c.tok, ch);
	ck_assert_str_eq(cfd_token_name(c.tok), "ch");
	ck_assert(t_fd_readable(fd, 0));
	cfd_registration_free(reg);
	ck_assert(!t_fd_is_open(fd));
	cfd_token_unref(root);
}
END_TEST

START_TEST(test_order_most_recent_first)
{
	struct cfd_token *t = t_new_token("t");
	struct cb c[6];
	struct cfd_registration *reg[6];

	run_n = 0;
	for (int i = 0; i < 6; i++) {
		c[i] = (struct cb){ .id = i };
		reg[i] = reg_on(t, &c[i]);
	}
	cfd_registration_free(reg[2]);
	reg[2] = NULL;
	cfd_token_trigger(t);
	ck_assert_int_eq(run_n, 5);
	ck_assert_int_eq(run_log[0], 5);
	ck_assert_int_eq(run_log[1], 4);
	ck_assert_int_eq(run_log[2], 3);
	ck_assert_int_eq(run_log[3], 1);
	ck_assert_int_eq(run_log[4], 0);
	for (int i = 0; i < 6; i++)
		cfd_registration_free(reg[i]);
	cfd_token_unref(t);
}
END_TEST

START_TEST(test_many_callbacks)
{
	enum { N = 10000 };
	struct cfd_token *t = t_new_token("t");
	struct cb *c = calloc(N, sizeof(*c));
	struct cfd_registration **reg = calloc(N, sizeof(*reg));

	run_n = 0;
	for (int i = 0; i < N; i++) {
		c[i].id = i;
		if (i % 2)
			reg[i] = reg_on(t, &c[i]);
		else
			ck_assert_int_eq(
			    cfd_token_on_trigger(NULL, t, cb_count, &c[i], 0),
			    0);
	}
	cfd_token_trigger(t);
	ck_assert_int_eq(run_n, N);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(c[i].calls, 1);
		ck_assert_int_eq(run_log[i], N - 1 - i);
	}
	for (int i = 0; i < N; i++)
		cfd_registration_free(reg[i]);
	free(reg);
	free(c);
	cfd_token_unref(t);
}
END_TEST

/* Every callback of a trigger sees the whole fan-out done. */
#define TREE_N 341 /* 1 + 4 + 16 + 64 + 256 */
static struct cfd_token *tree[TREE_N];
static int tree_fd[TREE_N];

static void cb_sees_tree(struct cfd_token *tok, void *userdata)
{
	struct cb *c = userdata;

	c->calls++;
	c->ok = true;
	for (int i = 0; i < TREE_N; i++) {
		if (!cfd_token_triggered(tree[i]))
			c->ok = false;
		if (tree_fd[i] >= 0 && !t_fd_readable(tree_fd[i], 0))
			c->ok = false;
	}
	if (cfd_token_origin(tok) != tree[0])
		c->ok = false;
}

START_TEST(test_after_whole_fanout)
{
	static const int watched[] = { 0, 1, 4, 5, 21, 85, 200, 340 };
	struct cb c[8];
	struct cfd_registration *reg[8];

	tree[0] = t_new_token("root");
	tree_fd[0] = -1;
	for (int i = 1; i < TREE_N; i++) {
		tree[i] = t_new_child(tree[(i - 1) / 4], "n");
		tree_fd[i] = (i % 3 == 0) ? cfd_token_fd(tree[i]) : -1;
	}
	for (int k = 0; k < 8; k++) {
		c[k] = (struct cb){ .id = k };
		ck_assert_int_eq(cfd_token_on_trigger(&reg[k], tree[watched[k]],
						      cb_sees_tree, &c[k], 0),
				 0);
	}
	cfd_token_trigger(tree[0]);
	for (int k = 0; k < 8; k++) {
		ck_assert_int_eq(c[k].calls, 1);
		ck_assert_msg(c[k].ok, "callback on node %d ran too early",
			      watched[k]);
		cfd_registration_free(reg[k]);
	}
	for (int i = TREE_N - 1; i >= 0; i--)
		cfd_token_unref(tree[i]);
}
END_TEST

static void cb_sees_cause(struct cfd_token *tok, void *userdata)
{
	struct cb *c = userdata;

	c->calls++;
	c->ok = cfd_token_triggered(tok) &&
		cfd_token_reason(tok) == CFD_REASON_PARENT &&
		cfd_token_origin(tok) == c->other &&
		strcmp(cfd_token_message(tok), "why") == 0 &&
		cfd_token_check(tok) == -ECANCELED;
}

START_TEST(test_callback_sees_cause)
{
	struct cfd_token *root = t_new_token("root"),
			 *ch = t_new_child(root, "c");
	struct cb c = { .other = root };
	struct cfd_registration *reg;

	ck_assert_int_eq(cfd_token_on_trigger(&reg, ch, cb_sees_cause, &c, 0),
			 0);
	cfd_token_trigger_msg(root, "why");
	ck_assert_int_eq(c.calls, 1);
	ck_assert(c.ok);
	cfd_registration_free(reg);
	cfd_token_unref(ch);
	cfd_token_unref(root);
}
END_TEST

/* ---- what a callback may do: no library lock is held ---- */

/* Uses its own token in every way that takes the token's lock. */
static void cb_uses_own_token(struct cfd_token *tok, void *userdata)
{
	struct cb *c = userdata;
	struct cfd_token *ch = NULL, *chain = NULL;
	struct cfd_registration *r = SENTINEL;
	int fd;

	c->calls++;
	c->ok = true;
	fd = cfd_token_fd(tok);
	if (fd < 0 || !t_fd_readable(fd, 0))
		c->ok = false;
	if (cfd_token_wait(tok, CFD_FOREVER) != 0)
		c->ok = false;
	if (cfd_token_trigger(tok) != 0)
		c->ok = false;
	if (cfd_token_child(&ch, tok, "late") != 0 || !cfd_token_triggered(ch))
		c->ok = false;
	if (cfd_token_chain(&chain, c->other, tok) != 0 ||
	    !cfd_token_triggered(chain) || cfd_token_origin(chain) != tok)
		c->ok = false;
	/* registering on its own (triggered) token runs inline */
	if (cfd_token_on_trigger(&r, tok, cb_count, c->inner, 0) != 1 ||
	    r != NULL || c->inner->calls != 1)
		c->ok = false;
	if (cfd_token_on_trigger(&r, tok, cb_count, c->inner,
				 CFD_CALLBACK_NO_INLINE) != -ECANCELED)
		c->ok = false;
	/* and on a pending token it registers */
	if (cfd_token_on_trigger(&c->reg2, c->other, cb_count, c->inner, 0) !=
	    0)
		c->ok = false;
	cfd_token_unref(chain);
	cfd_token_unref(ch);
}

START_TEST(test_cb_uses_own_token)
{
	struct cfd_token *t = t_new_token("t"), *other = t_new_token("other");
	struct cb inner = { .id = 9 }, c = { .other = other, .inner = &inner };
	struct cfd_registration *reg;

	ck_assert_int_eq(
	    cfd_token_on_trigger(&reg, t, cb_uses_own_token, &c, 0), 0);
	cfd_token_trigger(t);
	ck_assert_int_eq(c.calls, 1);
	ck_assert(c.ok);
	ck_assert_int_eq(inner.calls, 1);
	cfd_token_trigger(other);
	ck_assert_int_eq(inner.calls, 2);
	cfd_registration_free(c.reg2);
	cfd_registration_free(reg);
	cfd_token_unref(other);
	cfd_token_unref(t);
}
END_TEST

/* Triggers another token: that token's callbacks run nested, at once. */
static void cb_trigger_other(struct cfd_token *tok, void *userdata)
{
	struct cb *c = userdata;

	(void)tok;
	cb_count(tok, c);
	c->ret = cfd_token_trigger(c->other);
	if (run_n < LOG_MAX)
		run_log[run_n++] = -c->id; /* after the nested ones */
}

START_TEST(test_cb_triggers_other_tokens)
{
	struct cfd_token *a = t_new_token("a"), *b = t_new_token("b");
	struct cfd_token *bc = t_new_child(b, "bc"), *c3 = t_new_token("c");
	struct cb ca = { .id = 1, .other = b }, cb2 = { .id = 2, .other = c3 };
	struct cb cc = { .id = 3 };
	struct cfd_registration *ra, *rb, *rc;

	run_n = 0;
	ck_assert_int_eq(cfd_token_on_trigger(&ra, a, cb_trigger_other, &ca, 0),
			 0);
	ck_assert_int_eq(
	    cfd_token_on_trigger(&rb, bc, cb_trigger_other, &cb2, 0), 0);
	rc = reg_on(c3, &cc);
	ck_assert_int_eq(cfd_token_trigger(a), 1);
	/* a's callback, b's fan-out reached bc, whose callback triggered c */
	ck_assert_int_eq(run_n, 5);
	ck_assert_int_eq(run_log[0], 1);
	ck_assert_int_eq(run_log[1], 2);
	ck_assert_int_eq(run_log[2], 3);
	ck_assert_int_eq(run_log[3], -2);
	ck_assert_int_eq(run_log[4], -1);
	ck_assert_int_eq(ca.ret, 1);
	ck_assert_int_eq(cb2.ret, 1);
	ck_assert_ptr_eq(cfd_token_origin(bc), b);
	cfd_registration_free(ra);
	cfd_registration_free(rb);
	cfd_registration_free(rc);
	cfd_token_unref(a);
	cfd_token_unref(bc);
	cfd_token_unref(b);
	cfd_token_unref(c3);
}
END_TEST

static void cb_free_own(struct cfd_token *tok, void *userdata)
{
	struct cb *c = userdata;

	cb_count(tok, c);
	/* from inside: returns at once, and the registration is freed once
	 * the callback returns (ASan checks no use after free or leak) */
	if (cfd_registration_free(c->reg) != NULL)
		c->ok = false;
	c->reg = NULL;
}

START_TEST(test_cb_frees_own_registration)
{
	struct cfd_token *t = t_new_token("t");
	struct cb c = { .id = 1, .ok = true };

	ck_assert_int_eq(cfd_token_on_trigger(&c.reg, t, cb_free_own, &c, 0),
			 0);
	cfd_token_trigger(t);
	ck_assert_int_eq(c.calls, 1);
	ck_assert(c.ok);
	ck_assert_ptr_null(c.reg);
	cfd_token_unref(t);
}
END_TEST

/* Frees another registration: one queued behind it never runs. */
static void cb_free_reg(struct cfd_token *tok, void *userdata)
{
	struct cb *c = userdata;

	cb_count(tok, c);
	c->reg = cfd_registration_free(c->reg);
}

START_TEST(test_cb_frees_queued_registration)
{
	struct cfd_token *t = t_new_token("t");
	struct cb a = { .id = 1 }, b = { .id = 2 };
	struct cfd_registration *ra = reg_on(t, &a);

	/* b registered last, runs first, and frees a before its turn */
	b.reg = ra;
	ck_assert_int_eq(cfd_token_on_trigger(NULL, t, cb_free_reg, &b, 0), 0);
	cfd_token_trigger(t);
	ck_assert_int_eq(b.calls, 1);
	ck_assert_int_eq(a.calls, 0);
	ck_assert_ptr_null(b.reg);
	cfd_token_unref(t);
}
END_TEST

START_TEST(test_cb_frees_registration_elsewhere)
{
	struct cfd_token *t = t_new_token("t"), *d = t_new_token("d");
	struct cb a = { .id = 1 }, b = { .id = 2 };
	struct cfd_registration *rd = reg_on(d, &a);

	b.reg = rd;
	ck_assert_int_eq(cfd_token_on_trigger(NULL, t, cb_free_reg, &b, 0), 0);
	cfd_token_trigger(t);
	ck_assert_int_eq(b.calls, 1);
	cfd_token_trigger(d);
	ck_assert_int_eq(a.calls, 0);
	cfd_token_unref(t);
	cfd_token_unref(d);
}
END_TEST

/*
 * A's callback triggers B; B's callback frees A's registration while A's
 * callback is still running, on the same thread: it must not wait.
 */
START_TEST(test_cb_nested_frees_outer)
{
	struct cfd_token *a = t_new_token("a"), *b = t_new_token("b");
	struct cb ca = { .id = 1, .other = b }, cb2 = { .id = 2 };
	struct cfd_registration *ra;

	ck_assert_int_eq(cfd_token_on_trigger(&ra, a, cb_trigger_other, &ca, 0),
			 0);
	cb2.reg = ra;
	ck_assert_int_eq(cfd_token_on_trigger(NULL, b, cb_free_reg, &cb2, 0),
			 0);
	cfd_token_trigger(a); /* a hang here is the failure (test timeout) */
	ck_assert_int_eq(ca.calls, 1);
	ck_assert_int_eq(cb2.calls, 1);
	ck_assert_ptr_null(cb2.reg);
	cfd_token_unref(a);
	cfd_token_unref(b);
}
END_TEST

/* Drop the last reference to its own token. */
static void cb_unref_own(struct cfd_token *tok, void *userdata)
{
	struct cb *c = userdata;

	cb_count(tok, c);
	if (c->reg)
		c->reg = cfd_registration_free(c->reg);
	cfd_token_unref(tok);
	/* tok may be gone now: do not touch it */
}

START_TEST(test_cb_drops_last_ref_floating)
{
	struct cfd_token *root = t_new_token("root"),
			 *ch = t_new_child(root, "c");
	struct cb c = { .id = 1 };
	int fd = cfd_token_fd(ch);

	/* the callback owns ch's only reference */
	ck_assert_int_eq(cfd_token_on_trigger(NULL, ch, cb_unref_own, &c, 0),
			 0);
	cfd_token_trigger(root);
	ck_assert_int_eq(c.calls, 1);
	ck_assert(!t_fd_is_open(fd)); /* freed once the callback returned */
	cfd_token_unref(root);
}
END_TEST

START_TEST(test_cb_drops_last_ref_with_handle)
{
	struct cfd_token *root = t_new_token("root"),
			 *ch = t_new_child(root, "c");
	struct cb c = { .id = 1 };
	int fd = cfd_token_fd(ch);

	ck_assert_int_eq(cfd_token_on_trigger(&c.reg, ch, cb_unref_own, &c, 0),
			 0);
	cfd_token_trigger(root);
	ck_assert_int_eq(c.calls, 1);
	ck_assert_ptr_null(c.reg);
	ck_assert(!t_fd_is_open(fd));
	cfd_token_unref(root);
}
END_TEST

START_TEST(test_cb_drops_last_ref_direct)
{
	struct cfd_token *t = t_new_token("t");
	struct cb c = { .id = 1 };
	int fd = cfd_token_fd(t);

	/* the caller's reference is handed to the callback: the token may
	 * be freed before cfd_token_trigger() returns */
	ck_assert_int_eq(cfd_token_on_trigger(NULL, t, cb_unref_own, &c, 0), 0);
	ck_assert_int_eq(cfd_token_trigger(t), 1);
	ck_assert_int_eq(c.calls, 1);
	ck_assert(!t_fd_is_open(fd));
}
END_TEST

START_TEST(test_cb_drops_last_ref_inline)
{
	struct cfd_token *t = t_new_token("t");
	struct cb c = { .id = 1 };
	int fd = cfd_token_fd(t);

	cfd_token_trigger(t);
	ck_assert_int_eq(cfd_token_on_trigger(NULL, t, cb_unref_own, &c, 0), 1);
	ck_assert_int_eq(c.calls, 1);
	ck_assert(!t_fd_is_open(fd));
}
END_TEST

/* Drops the last reference to other tokens of the same fan-out. */
static void cb_unref_other(struct cfd_token *tok, void *userdata)
{
	struct cb *c = userdata;

	cb_count(tok, c);
	c->other = cfd_token_unref(c->other);
}

START_TEST(test_cb_drops_descendants)
{
	struct cfd_token *root = t_new_token("root"),
			 *ch = t_new_child(root, "c");
	struct cfd_token *gc = t_new_child(ch, "gc");
	struct cb c1 = { .id = 1, .other = gc }, c2 = { .id = 2, .other = ch };
	int fd = cfd_token_fd(gc);

	ck_assert_int_eq(
	    cfd_token_on_trigger(NULL, root, cb_unref_other, &c2, 0), 0);
	ck_assert_int_eq(cfd_token_on_trigger(NULL, ch, cb_unref_other, &c1, 0),
			 0);
	cfd_token_trigger(root);
	ck_assert_int_eq(c1.calls, 1);
	ck_assert_int_eq(c2.calls, 1);
	ck_assert(!t_fd_is_open(fd));
	cfd_token_unref(root);
}
END_TEST

/* ---- -ECHILD ---- */

struct inherited {
	struct cfd_token *pending, *done;
	struct cfd_registration *reg;
	struct cb *c;
};

static int echild_cb_child(void *arg)
{
	struct inherited *in = arg;
	struct cfd_registration *r = SENTINEL;

	T_CHILD_CHECK(cfd_token_on_trigger(&r, in->pending, cb_count, in->c,
					   0) == -ECHILD);
	T_CHILD_CHECK(cfd_token_on_trigger(NULL, in->pending, cb_count, in->c,
					   0) == -ECHILD);
	/* not run inline either: the token is not this process's */
	T_CHILD_CHECK(cfd_token_on_trigger(&r, in->done, cb_count, in->c, 0) ==
		      -ECHILD);
	T_CHILD_CHECK(r == SENTINEL);
	T_CHILD_CHECK(in->c->calls == 0);
	/* freeing an inherited registration is a no-op */
	T_CHILD_CHECK(cfd_registration_free(in->reg) == NULL);
	return 0;
}

START_TEST(test_echild_after_fork)
{
	struct cb c = { .id = 1 };
	struct inherited in = { t_new_token("pending"), t_new_token("done"),
				NULL, &c };

	cfd_token_trigger(in.done);
	in.reg = reg_on(in.pending, &c);
	ck_assert_int_eq(t_in_child(echild_cb_child, &in), 0);
	/* in the parent the registration is still there */
	cfd_token_trigger(in.pending);
	ck_assert_int_eq(c.calls, 1);
	cfd_registration_free(in.reg);
	cfd_token_unref(in.pending);
	cfd_token_unref(in.done);
}
END_TEST

static Suite *callback_suite(void)
{
	Suite *s = suite_create("callback");
	TCase *tc;

	tc = t_tcase("basics");
	tcase_add_test(tc, test_runs_once_on_trigger);
	tcase_add_test(tc, test_runs_in_triggering_thread);
	tcase_add_test(tc, test_inline_when_triggered);
	tcase_add_test(tc, test_no_inline_flag);
	tcase_add_test(tc, test_einval);
	tcase_add_test(tc, test_free_null);
	tcase_add_test(tc, test_free_before_trigger);
	tcase_add_test(tc, test_floating);
	tcase_add_test(tc, test_floating_freed_with_token);
	tcase_add_test(tc, test_registration_holds_token);
	tcase_add_test(tc, test_order_most_recent_first);
	tcase_add_test(tc, test_many_callbacks);
	tcase_add_test(tc, test_after_whole_fanout);
	tcase_add_test(tc, test_callback_sees_cause);
	suite_add_tcase(s, tc);

	tc = t_tcase("reentrancy");
	tcase_add_test(tc, test_cb_uses_own_token);
	tcase_add_test(tc, test_cb_triggers_other_tokens);
	tcase_add_test(tc, test_cb_frees_own_registration);
	tcase_add_test(tc, test_cb_frees_queued_registration);
	tcase_add_test(tc, test_cb_frees_registration_elsewhere);
	tcase_add_test(tc, test_cb_nested_frees_outer);
	tcase_add_test(tc, test_cb_drops_last_ref_floating);
	tcase_add_test(tc, test_cb_drops_last_ref_with_handle);
	tcase_add_test(tc, test_cb_drops_last_ref_direct);
	tcase_add_test(tc, test_cb_drops_last_ref_inline);
	tcase_add_test(tc, test_cb_drops_descendants);
	suite_add_tcase(s, tc);

	tc = t_tcase("fork");
	tcase_add_test(tc, test_echild_after_fork);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(callback_suite());
}
