/* SPDX-License-Identifier: MIT */
/*
 * Description: the core under threads (run under ThreadSanitizer in CI):
 * many threads triggering one token (exactly one winner); building the
 * graph and registering callbacks while the root triggers; releasing
 * children while it triggers; fds made and waits begun while it triggers;
 * overlapping subtrees triggered at once; cfd_registration_free() racing
 * the callback (it never returns while the callback runs, and the callback
 * never starts after it returned); callbacks that free their own
 * registration, drop the last reference to their own token, trigger other
 * tokens and register new callbacks.
 *
 * Verdicts never depend on timing: a thread that must wait for another
 * waits on a token or a join, with generous bounds.  Where a guarantee can
 * only be probed (a free that returns too early), a slow machine probes it
 * less well, but never fails a correct library.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

/* ThreadSanitizer runs everything 5-15 times slower. */
#define ROUNDS(n) (T_TSAN ? ((n) / 2 > 0 ? (n) / 2 : 1) : (n))
#define NTHREADS 4

static void start_threads(pthread_t *th, int n, void *(*fn)(void *), void *args,
			  size_t size)
{
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(
		    pthread_create(&th[i], NULL, fn, (char *)args + i * size),
		    0);
}

static void join_threads(pthread_t *th, int n)
{
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
}

/* Spin (yielding) until *v >= want, for at most T_WAIT_MS. */
static bool await_count(atomic_int *v, int want)
{
	int64_t end = t_now_ns() + CFD_MSEC(T_WAIT_MS);

	while (atomic_load(v) < want) {
		if (t_now_ns() > end)
			return false;
		sched_yield();
	}
	return true;
}

/* ---- one token, many triggers: exactly one winner ---- */

struct race {
	pthread_barrier_t *start, *end;
	struct cfd_token *_Atomic *tok;
	int id, rounds;
	int *wins;
	char msg[16];
};

static void *race_main(void *arg)
{
	struct race *r = arg;

	for (int i = 0; i < r->rounds; i++) {
		int ret;

		pthread_barrier_wait(r->start);
		ret = cfd_token_trigger_msg(atomic_load(r->tok), r->msg);
		r->wins[i] += ret == 1;
		if (ret != 0 && ret != 1)
			r->wins[i] += 100; /* an error: fails the count */
		pthread_barrier_wait(r->end);
	}
	return NULL;
}

START_TEST(test_many_triggers_one_winner)
{
	int rounds = ROUNDS(2000);
	pthread_barrier_t start, end;
	struct cfd_token *_Atomic tok = NULL;
	struct race r[NTHREADS];
	pthread_t th[NTHREADS];

	pthread_barrier_init(&start, NULL, NTHREADS + 1);
	pthread_barrier_init(&end, NULL, NTHREADS + 1);
	for (int i = 0; i < NTHREADS; i++) {
		r[i] = (struct race){ .start = &start,
				      .end = &end,
				      .tok = &tok,
				      .id = i,
				      .rounds = rounds,
				      .wins = calloc(rounds, sizeof(int)) };
		snprintf(r[i].msg, sizeof(r[i].msg), "thread %d", i);
	}
	start_threads(th, NTHREADS, race_main, r, sizeof(r[0]));
	for (int i = 0; i < rounds; i++) {
		int winners = 0, winner = -1;

		atomic_store(&tok, t_new_token("contended"));
		pthread_barrier_wait(&start);
		pthread_barrier_wait(&end);
		for (int k = 0; k < NTHREADS; k++) {
			winners += r[k].wins[i];
			if (r[k].wins[i])
				winner = k;
		}
		ck_assert_msg(winners == 1, "round %d: %d winners", i, winners);
		/* the cause is the winner's */
		ck_assert_str_eq(cfd_token_message(tok), r[winner].msg);
		ck_assert_ptr_eq(cfd_token_origin(tok), tok);
		ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_MANUAL);
		cfd_token_unref(tok);
	}
	join_threads(th, NTHREADS);
	for (int i = 0; i < NTHREADS; i++)
		free(r[i].wins);
	pthread_barrier_destroy(&start);
	pthread_barrier_destroy(&end);
}
END_TEST

/*
 * ---- the fd, wait and trigger at once ----
 *
 * The new fd is published with a release store: a trigger that finds it
 * writes it after its creation (ThreadSanitizer checks that edge).
 */

enum { ROLE_TRIGGER, ROLE_FD, ROLE_CHILD_FD, ROLE_WAIT, NROLES };

struct fdrace {
	pthread_barrier_t *start, *end;
	struct cfd_token *_Atomic *root, *_Atomic *child;
	int role, rounds;
	int *fd;  /* ROLE_FD / ROLE_CHILD_FD: the fd made, per round */
	int *bad; /* ROLE_WAIT: wait did not return 0 */
};

static void *fdrace_main(void *arg)
{
	struct fdrace *f = arg;

	for (int i = 0; i < f->rounds; i++) {
		pthread_barrier_wait(f->start);
		switch (f->role) {
		case ROLE_TRIGGER:
			cfd_token_trigger(atomic_load(f->root));
			break;
		case ROLE_FD:
			f->fd[i] = cfd_token_fd(atomic_load(f->root));
			break;
		case ROLE_CHILD_FD:
			f->fd[i] = cfd_token_fd(atomic_load(f->child));
			break;
		case ROLE_WAIT:
			f->bad[i] = cfd_token_wait(atomic_load(f->child),
						   CFD_FOREVER) != 0;
			break;
		}
		pthread_barrier_wait(f->end);
	}
	return NULL;
}

START_TEST(test_fd_and_wait_race_trigger)
{
	int rounds = ROUNDS(2000);
	pthread_barrier_t start, end;
	struct cfd_token *_Atomic root = NULL, *_Atomic child = NULL;
	struct fdrace f[NROLES];
	pthread_t th[NROLES];

	pthread_barrier_init(&start, NULL, NROLES + 1);
	pthread_barrier_init(&end, NULL, NROLES + 1);
	for (int i = 0; i < NROLES; i++)
		f[i] = (struct fdrace){ &start,
					&end,
					&root,
					&child,
					i,
					rounds,
					calloc(rounds, sizeof(int)),
					calloc(rounds, sizeof(int)) };
	start_threads(th, NROLES, fdrace_main, f, sizeof(f[0]));
	for (int i = 0; i < rounds; i++) {
		atomic_store(&root, t_new_token("root"));
		atomic_store(&child, t_new_child(root, "child"));
		pthread_barrier_wait(&start);
		pthread_barrier_wait(&end);
		/* an fd made while the token triggered is readable once
		 * both calls returned, whichever came first */
		ck_assert_int_ge(f[ROLE_FD].fd[i], 0);
		ck_assert_int_ge(f[ROLE_CHILD_FD].fd[i], 0);
		ck_assert_msg(t_fd_readable(f[ROLE_FD].fd[i], 0),
			      "round %d: root fd not readable", i);
		ck_assert_msg(t_fd_readable(f[ROLE_CHILD_FD].fd[i], 0),
			      "round %d: child fd not readable", i);
		ck_assert(!f[ROLE_WAIT].bad[i]);
		ck_assert_int_eq(cfd_token_fd(root), f[ROLE_FD].fd[i]);
		cfd_token_unref(child);
		cfd_token_unref(root);
	}
	join_threads(th, NROLES);
	for (int i = 0; i < NROLES; i++) {
		free(f[i].fd);
		free(f[i].bad);
	}
	pthread_barrier_destroy(&start);
	pthread_barrier_destroy(&end);
}
END_TEST

/*
 * This thread triggers a token while another makes its fd: once the
 * trigger returned, an fd this thread asks for is readable at once,
 * whoever made it and when (it was not, for a few microseconds, in about
 * 2 of 1,000 rounds before the fix: the maker had published the fd and not
 * yet written it).  Also for a child triggered by the fan-out.
 */
struct fd_maker {
	struct cfd_token *_Atomic tok;
	atomic_int go, done, quit;
};

static void *fd_maker_main(void *arg)
{
	struct fd_maker *m = arg;

	for (int seen = 0;;) {
		int g;

		while ((g = atomic_load(&m->go)) == seen) {
			if (atomic_load(&m->quit))
				return NULL;
			sched_yield();
		}
		seen = g;
		cfd_token_fd(atomic_load(&m->tok));
		atomic_store(&m->done, g);
	}
}

START_TEST(test_fd_readable_once_trigger_returned)
{
	int rounds = T_TSAN ? 5000 : 100000;
	struct fd_maker m = { 0 };
	unsigned seed = 11;
	pthread_t th;

	ck_assert_int_eq(pthread_create(&th, NULL, fd_maker_main, &m), 0);
	for (int i = 1; i <= rounds; i++) {
		struct cfd_token *root = t_new_token("root");
		struct cfd_token *child = t_new_child(root, "child");
		struct cfd_token *made = (i & 1) ? root : child;
		int fd;

		atomic_store(&m.tok, made);
		atomic_store(&m.go, i);
		for (volatile int k = rand_r(&seed) % 2000; k > 0; k--)
			;
		ck_assert_int_eq(cfd_token_trigger(root), 1);
		fd = cfd_token_fd(made);
		ck_assert_int_ge(fd, 0);
		ck_assert_msg(t_fd_readable(fd, 0),
			      "round %d: the %s's fd is not readable after the "
			      "trigger returned",
			      i, made == root ? "token" : "child");
		while (atomic_load(&m.done) != i)
			sched_yield();
		cfd_token_unref(child);
		cfd_token_unref(root);
	}
	atomic_store(&m.quit, 1);
	pthread_join(th, NULL);
}
END_TEST

/*
 * A registration, a child link or an all-of link added while another
 * thread triggers the token.  Before the fix, the adder looked at its
 * floating registration after the trigger had run and freed it, and an
 * all-of's count was decremented twice (by the trigger's walk and by the
 * adder taking its link back), so it stayed pending for ever.
 */
struct add_race {
	struct cfd_token *_Atomic tok;
	atomic_int go, done, quit;
};

static void *add_race_trigger(void *arg)
{
	struct add_race *a = arg;

	for (int seen = 0;;) {
		int g;

		while ((g = atomic_load(&a->go)) == seen) {
			if (atomic_load(&a->quit))
				return NULL;
			sched_yield();
		}
		seen = g;
		for (volatile int k = g % 64; k > 0; k--)
			;
		cfd_token_trigger(atomic_load(&a->tok));
		atomic_store(&a->done, g);
	}
}

static void count_call(struct cfd_token *tok, void *userdata)
{
	(void)tok;
	atomic_fetch_add((atomic_int *)userdata, 1);
}

START_TEST(test_add_while_triggering)
{
	int rounds = T_TSAN ? 5000 : 100000;
	struct add_race a = { 0 };
	pthread_t th;

	ck_assert_int_eq(pthread_create(&th, NULL, add_race_trigger, &a), 0);
	for (int i = 1; i <= rounds; i++) {
		struct cfd_token *p = t_new_token("p"), *all = NULL;
		atomic_int calls = 0;
		int kind = i % 3, r = 0;

		atomic_store(&a.tok, p);
		atomic_store(&a.go, i);
		if (kind == 0)
			r = cfd_token_on_trigger(NULL, p, count_call, &calls,
						 0);
		else if (kind == 1)
			r = cfd_token_all_of(&all, "all", &p, 1);
		else
			r = cfd_token_child(&all, p, "child");
		ck_assert_int_ge(r, 0);
		while (atomic_load(&a.done) != i)
			sched_yield();
		/* The trigger returned: the callback ran once (here, or in
		 * the trigger), the all-of or child is triggered. */
		if (kind == 0)
			ck_assert_int_eq(atomic_load(&calls), 1);
		else
			ck_assert_msg(cfd_token_triggered(all),
				      "round %d: the %s of a triggered parent "
				      "is pending",
				      i, kind == 1 ? "all-of" : "child");
		cfd_token_unref(all);
		cfd_token_unref(p);
	}
	atomic_store(&a.quit, 1);
	pthread_join(th, NULL);
}
END_TEST

/* ---- building the graph while the root triggers ---- */

/* One callback's record: how often it ran, and whether it was freed. */
struct slot {
	atomic_int calls;
	atomic_int freed; /* cfd_registration_free() returned */
	atomic_int late;  /* ran after its free returned */
};

static void cb_slot(struct cfd_token *tok, void *userdata)
{
	struct slot *s = userdata;

	(void)tok;
	if (atomic_load(&s->freed))
		atomic_fetch_add(&s->late, 1);
	atomic_fetch_add(&s->calls, 1);
}

#define BUILD_N 300

struct builder {
	struct cfd_token *root;
	atomic_int *made;
	int id;
	/* per iteration: the tokens made, and the callbacks' records */
	struct cfd_token *tok[BUILD_N][4];
	struct slot slot[BUILD_N][3];
	struct cfd_registration *reg[BUILD_N];
	struct cfd_token *own; /* a pending token of this thread */
};

static void *builder_main(void *arg)
{
	struct builder *b = arg;

	for (int i = 0; i < BUILD_N; i++) {
		struct cfd_token *c = NULL, *ch = NULL, *any = NULL;
		struct cfd_token *all = NULL, *set[2];
		struct cfd_token *parent =
		    (i > 0 && i % 3) ? b->tok[i - 1][0] : b->root;

		/* a child of the root, or of the previous child */
		if (cfd_token_child(&c, parent, "c") < 0)
			abort();
		if (cfd_token_chain(&ch, b->own, c) < 0)
			abort();
		set[0] = b->own;
		set[1] = ch;
		if (cfd_token_any_of(&any, "any", set, 2) < 0)
			abort();
		set[0] = b->root;
		set[1] = c;
		if (cfd_token_all_of(&all, "all", set, 2) < 0)
			abort();
		b->tok[i][0] = c;
		b->tok[i][1] = ch;
		b->tok[i][2] = any;
		b->tok[i][3] = all;
		if (i % 5 == 0)
			cfd_token_fd(c);
		/* a kept handle; a floating one; one freed at once */
		if (cfd_token_on_trigger(&b->reg[i], any, cb_slot,
					 &b->slot[i][0], 0) < 0)
			abort();
		if (cfd_token_on_trigger(NULL, all, cb_slot, &b->slot[i][1],
					 0) < 0)
			abort();
		{
			struct cfd_registration *r = NULL;

			if (cfd_token_on_trigger(&r, c, cb_slot, &b->slot[i][2],
						 0) < 0)
				abort();
			cfd_registration_free(r);
			atomic_store(&b->slot[i][2].freed, 1);
		}
		atomic_fetch_add(b->made, 1);
	}
	return NULL;
}

START_TEST(test_build_while_triggering)
{
	struct cfd_token *root = t_new_token("root");
	struct builder *b = calloc(NTHREADS, sizeof(*b));
	atomic_int made = 0;
	pthread_t th[NTHREADS];
	bool some_before;

	for (int k = 0; k < NTHREADS; k++) {
		b[k].root = root;
		b[k].made = &made;
		b[k].id = k;
		b[k].own = t_new_token("own");
	}
	start_threads(th, NTHREADS, builder_main, b, sizeof(*b));
	/* trigger in the middle of the building (a bound, not a verdict) */
	some_before = await_count(&made, NTHREADS * BUILD_N / 3);
	ck_assert_int_eq(cfd_token_trigger_msg(root, "stop"), 1);
	join_threads(th, NTHREADS);
	(void)some_before;

	for (int k = 0; k < NTHREADS; k++) {
		ck_assert(!cfd_token_triggered(b[k].own)); /* never upward */
		for (int i = 0; i < BUILD_N; i++) {
			for (int j = 0; j < 4; j++) {
				struct cfd_token *t = b[k].tok[i][j];

				ck_assert_msg(cfd_token_triggered(t),
					      "thread %d token %d.%d pending",
					      k, i, j);
				ck_assert_ptr_eq(cfd_token_origin(t), root);
				ck_assert_str_eq(cfd_token_message(t), "stop");
			}
			ck_assert_int_eq(atomic_load(&b[k].slot[i][0].calls),
					 1);
			ck_assert_int_eq(atomic_load(&b[k].slot[i][1].calls),
					 1);
			ck_assert_int_le(atomic_load(&b[k].slot[i][2].calls),
					 1);
			ck_assert_int_eq(atomic_load(&b[k].slot[i][2].late), 0);
		}
	}
	for (int k = 0; k < NTHREADS; k++) {
		for (int i = BUILD_N - 1; i >= 0; i--) {
			cfd_registration_free(b[k].reg[i]);
			for (int j = 3; j >= 0; j--)
				cfd_token_unref(b[k].tok[i][j]);
		}
		cfd_token_unref(b[k].own);
	}
	free(b);
	cfd_token_unref(root);
}
END_TEST

/* ---- releasing children while the root triggers ---- */

#define RELEASE_N 2000

struct releaser {
	struct cfd_token *root;
	atomic_int *made;
	struct slot *slot; /* RELEASE_N of them */
	int triggered_seen;
};

static void *releaser_main(void *arg)
{
	struct releaser *r = arg;

	for (int i = 0; i < RELEASE_N; i++) {
		struct cfd_token *c = NULL, *gc = NULL;

		if (cfd_token_child(&c, r->root, "brief") < 0)
			abort();
		if (i % 4 == 0)
			cfd_token_fd(c);
		if (i % 3 == 0 && cfd_token_child(&gc, c, "briefer") < 0)
			abort();
		if (i % 2 == 0 &&
		    cfd_token_on_trigger(NULL, gc ? gc : c, cb_slot,
					 &r->slot[i], 0) < 0)
			abort();
		r->triggered_seen += cfd_token_triggered(c);
		/* release in either order */
		if (i % 6 == 0) {
			cfd_token_unref(c);
			cfd_token_unref(gc);
		} else {
			cfd_token_unref(gc);
			cfd_token_unref(c);
		}
		atomic_fetch_add(r->made, 1);
	}
	return NULL;
}

START_TEST(test_release_while_triggering)
{
	int rounds = ROUNDS(10);

	for (int round = 0; round < rounds; round++) {
		struct cfd_token *root = t_new_token("root");
		struct releaser r[NTHREADS];
		atomic_int made = 0;
		pthread_t th[NTHREADS];
		int root_fd = cfd_token_fd(root);

		for (int k = 0; k < NTHREADS; k++)
			r[k] = (struct releaser){
				root, &made,
				calloc(RELEASE_N, sizeof(struct slot)), 0
			};
		start_threads(th, NTHREADS, releaser_main, r, sizeof(r[0]));
		await_count(&made, NTHREADS * RELEASE_N / 2);
		ck_assert_int_eq(cfd_token_trigger(root), 1);
		ck_assert(t_fd_readable(root_fd, 0));
		join_threads(th, NTHREADS);
		for (int k = 0; k < NTHREADS; k++) {
			for (int i = 0; i < RELEASE_N; i++)
				ck_assert_int_le(
				    atomic_load(&r[k].slot[i].calls), 1);
			free(r[k].slot);
		}
		/* every child is gone: the root is alone again, and its
		 * release frees all (the fixture checks every child fd was
		 * closed; LeakSanitizer checks the memory) */
		cfd_token_unref(root);
	}
}
END_TEST

/* ---- overlapping subtrees triggered at once ---- */

#define OV_W 6
#define OV_N (1 + OV_W + OV_W * OV_W + OV_W * OV_W * OV_W)

static int ov_parent(int i)
{
	return (i - 1) / OV_W;
}

/* Is i in the subtree under (and including) top? */
static bool ov_under(int i, int top)
{
	if (top < 0)
		return false;
	while (i > top)
		i = ov_parent(i);
	return i == top;
}

struct ovthread {
	pthread_barrier_t *start;
	struct cfd_token **t;
	int *fd;
	int target, other1, other2;
	int ret;
	int missing; /* nodes this call alone triggers, still pending */
};

static void *ov_main(void *arg)
{
	struct ovthread *o = arg;

	pthread_barrier_wait(o->start);
	o->ret = cfd_token_trigger(o->t[o->target]);
	if (o->ret != 1)
		return NULL;
	/* When this call returns, the part it triggered is complete: every
	 * node under the target and outside the others' subtrees. */
	for (int i = 0; i < OV_N; i++)
		if (ov_under(i, o->target) && !ov_under(i, o->other1) &&
		    !ov_under(i, o->other2) &&
		    (!cfd_token_triggered(o->t[i]) ||
		     !t_fd_readable(o->fd[i], 0)))
			o->missing++;
	return NULL;
}

START_TEST(test_overlapping_subtrees)
{
	/* root, a child of it, a grandchild under that child */
	static const int targets[3] = { 0, 2, 2 * OV_W + 1 };
	int rounds = ROUNDS(200);

	ck_assert(ov_under(targets[2], targets[1]));
	for (int round = 0; round < rounds; round++) {
		struct cfd_token *t[OV_N];
		int fd[OV_N];
		pthread_barrier_t start;
		struct ovthread o[3];
		pthread_t th[3];

		t[0] = t_new_token("root");
		for (int i = 1; i < OV_N; i++)
			t[i] = t_new_child(t[ov_parent(i)], "n");
		for (int i = 0; i < OV_N; i++)
			fd[i] = cfd_token_fd(t[i]);
		pthread_barrier_init(&start, NULL, 3);
		for (int k = 0; k < 3; k++)
			o[k] = (struct ovthread){ &start,
						  t,
						  fd,
						  targets[k],
						  targets[(k + 1) % 3],
						  targets[(k + 2) % 3],
						  -1,
						  0 };
		/* each call answers for its target's subtree minus the
		 * subtrees of the targets below it */
		o[1].other1 = o[1].other2 = targets[2];
		o[2].other1 = o[2].other2 = -1;
		start_threads(th, 3, ov_main, o, sizeof(o[0]));
		join_threads(th, 3);
		pthread_barrier_destroy(&start);
		for (int k = 0; k < 3; k++)
			ck_assert_msg(o[k].missing == 0,
				      "round %d: trigger of node %d returned "
				      "with %d of its nodes pending",
				      round, targets[k], o[k].missing);
		ck_assert_int_eq(o[0].ret, 1); /* nobody else reaches root */
		for (int i = 0; i < OV_N; i++) {
			struct cfd_token *org = cfd_token_origin(t[i]);

			ck_assert(cfd_token_triggered(t[i]));
			ck_assert(t_fd_readable(fd[i], 0));
			/* the origin is an ancestor that was a target */
			ck_assert(org == t[0] || org == t[targets[1]] ||
				  org == t[targets[2]]);
			if (!ov_under(i, targets[1]))
				ck_assert_ptr_eq(org, t[0]);
		}
		for (int i = OV_N - 1; i >= 0; i--)
			cfd_token_unref(t[i]);
	}
}
END_TEST

/* ---- an all-of whose parents trigger at once ---- */

struct alltrig {
	pthread_barrier_t *start, *end;
	struct cfd_token *_Atomic *parents;
	int id, rounds;
};

static void *alltrig_main(void *arg)
{
	struct alltrig *a = arg;

	for (int i = 0; i < a->rounds; i++) {
		pthread_barrier_wait(a->start);
		cfd_token_trigger(atomic_load(&a->parents[a->id]));
		pthread_barrier_wait(a->end);
	}
	return NULL;
}

START_TEST(test_all_of_parents_at_once)
{
	int rounds = ROUNDS(1000);
	pthread_barrier_t start, end;
	struct cfd_token *_Atomic parents[NTHREADS];
	struct alltrig a[NTHREADS];
	pthread_t th[NTHREADS];

	pthread_barrier_init(&start, NULL, NTHREADS + 1);
	pthread_barrier_init(&end, NULL, NTHREADS + 1);
	for (int k = 0; k < NTHREADS; k++)
		a[k] = (struct alltrig){ &start, &end, parents, k, rounds };
	start_threads(th, NTHREADS, alltrig_main, a, sizeof(a[0]));
	for (int i = 0; i < rounds; i++) {
		struct cfd_token *p[NTHREADS], *all = NULL, *org;
		struct slot s = { 0 };
		bool is_parent = false;

		for (int k = 0; k < NTHREADS; k++) {
			p[k] = t_new_token("p");
			atomic_store(&parents[k], p[k]);
		}
		ck_assert_int_eq(cfd_token_all_of(&all, "all", p, NTHREADS), 0);
		ck_assert_int_eq(
		    cfd_token_on_trigger(NULL, all, cb_slot, &s, 0), 0);
		pthread_barrier_wait(&start);
		pthread_barrier_wait(&end);
		ck_assert(cfd_token_triggered(all));
		ck_assert_int_eq(cfd_token_reason(all), CFD_REASON_ALL_OF);
		ck_assert_int_eq(atomic_load(&s.calls), 1);
		org = cfd_token_origin(all);
		for (int k = 0; k < NTHREADS; k++)
			is_parent |= org == p[k];
		ck_assert(is_parent);
		cfd_token_unref(all);
		for (int k = 0; k < NTHREADS; k++)
			cfd_token_unref(p[k]);
	}
	join_threads(th, NTHREADS);
	pthread_barrier_destroy(&start);
	pthread_barrier_destroy(&end);
}
END_TEST

/* ---- registering and freeing while the token triggers ---- */

#define REG_N 500

struct regrace {
	pthread_barrier_t *start;
	struct cfd_token *tok;
	struct slot slot[REG_N];
	struct cfd_registration *kept[REG_N];
	int inline_runs;
};

static void *regrace_main(void *arg)
{
	struct regrace *r = arg;

	pthread_barrier_wait(r->start);
	for (int i = 0; i < REG_N; i++) {
		struct cfd_registration *reg = NULL;
		int ret = cfd_token_on_trigger(i % 3 ? &reg : NULL, r->tok,
					       cb_slot, &r->slot[i], 0);

		if (ret < 0)
			abort();
		r->inline_runs += ret == 1;
		/* i % 3 == 0: floating */
		if (i % 3 == 1) {
			/* free at once: the callback may have run, but
			 * never after this returns */
			cfd_registration_free(reg);
			atomic_store(&r->slot[i].freed, 1);
		} else if (i % 3) {
			r->kept[i] = reg; /* freed after the join */
		}
	}
	return NULL;
}

START_TEST(test_register_and_free_while_triggering)
{
	int rounds = ROUNDS(20);

	for (int round = 0; round < rounds; round++) {
		struct cfd_token *tok = t_new_token("t");
		struct regrace *r = calloc(NTHREADS, sizeof(*r));
		pthread_barrier_t start;
		pthread_t th[NTHREADS];

		pthread_barrier_init(&start, NULL, NTHREADS + 1);
		for (int k = 0; k < NTHREADS; k++)
			r[k].start = &start, r[k].tok = tok;
		start_threads(th, NTHREADS, regrace_main, r, sizeof(*r));
		pthread_barrier_wait(&start);
		for (int spin = 0; spin < 200 * round; spin++)
			sched_yield(); /* vary the moment (not a verdict) */
		cfd_token_trigger(tok);
		join_threads(th, NTHREADS);
		for (int k = 0; k < NTHREADS; k++) {
			for (int i = 0; i < REG_N; i++) {
				int calls = atomic_load(&r[k].slot[i].calls);

				if (i % 3 == 1)
					ck_assert_int_le(calls, 1);
				else
					ck_assert_int_eq(calls, 1);
				ck_assert_int_eq(
				    atomic_load(&r[k].slot[i].late), 0);
				cfd_registration_free(r[k].kept[i]);
			}
		}
		pthread_barrier_destroy(&start);
		free(r);
		cfd_token_unref(tok);
	}
}
END_TEST

/*
 * cfd_registration_free() from another thread while the callback runs: it
 * must not return before the callback has.  The callback waits until the
 * freeing thread is inside cfd_registration_free() (seen asleep, bounded),
 * then keeps running for a while; if the free returned meanwhile, that is
 * the failure.  A correct library always passes; a broken one is caught
 * unless the machine is too slow to get the freer into its call in time.
 */
struct freerace {
	struct cfd_registration *reg;
	struct cfd_token *in_fn;	 /* the callback started */
	struct cfd_token *free_returned; /* the free returned */
	atomic_int about_to_free;
	_Atomic pid_t freer_tid;
	atomic_int fn_done;
	atomic_int returned_early; /* free returned while fn ran */
	atomic_int done_on_return; /* fn_done when free returned */
	atomic_int freer_seen_asleep;
};

static void cb_slow(struct cfd_token *tok, void *userdata)
{
	struct freerace *f = userdata;
	int64_t end = t_now_ns() + CFD_MSEC(T_WAIT_MS);

	(void)tok;
	cfd_token_trigger(f->in_fn);
	while (!atomic_load(&f->about_to_free) && t_now_ns() < end)
		sched_yield();
	if (t_thread_sleeping(atomic_load(&f->freer_tid), 2000))
		atomic_store(&f->freer_seen_asleep, 1);
	/* still running: the free must not return now */
	if (cfd_token_wait(f->free_returned, CFD_MSEC(30)) == 0)
		atomic_store(&f->returned_early, 1);
	atomic_store(&f->fn_done, 1);
}

static void *freer_main(void *arg)
{
	struct freerace *f = arg;

	atomic_store(&f->freer_tid, t_gettid());
	if (cfd_token_wait(f->in_fn, CFD_MSEC(T_WAIT_MS)) != 0)
		return NULL;
	atomic_store(&f->about_to_free, 1);
	cfd_registration_free(f->reg);
	atomic_store(&f->done_on_return, atomic_load(&f->fn_done));
	cfd_token_trigger(f->free_returned);
	return NULL;
}

START_TEST(test_free_waits_for_running_callback)
{
	int rounds = ROUNDS(20) < 5 ? 5 : ROUNDS(20), asleep = 0;

	for (int round = 0; round < rounds; round++) {
		struct cfd_token *tok = t_new_token("t");
		struct freerace f = { 0 };
		pthread_t th;

		f.in_fn = t_new_token("in fn");
		f.free_returned = t_new_token("free returned");
		ck_assert_int_eq(
		    cfd_token_on_trigger(&f.reg, tok, cb_slow, &f, 0), 0);
		ck_assert_int_eq(pthread_create(&th, NULL, freer_main, &f), 0);
		cfd_token_trigger(tok); /* runs cb_slow here */
		pthread_join(th, NULL);
		ck_assert(cfd_token_triggered(f.free_returned));
		ck_assert_msg(!atomic_load(&f.returned_early),
			      "round %d: cfd_registration_free() returned "
			      "while the callback ran",
			      round);
		ck_assert_msg(atomic_load(&f.done_on_return),
			      "round %d: cfd_registration_free() returned "
			      "before the callback finished",
			      round);
		asleep += atomic_load(&f.freer_seen_asleep);
		cfd_token_unref(f.in_fn);
		cfd_token_unref(f.free_returned);
		cfd_token_unref(tok);
	}
	printf("free-while-running: the freer was seen waiting in %d of %d "
	       "rounds\n",
	       asleep, rounds);
}
END_TEST

/*
 * Free a registration queued behind a running callback, from another
 * thread: it returns at once (nothing to wait for) and the callback never
 * runs.
 */
struct queued {
	struct cfd_registration *victim;
	struct slot victim_slot;
	struct cfd_token *in_first, *freed;
	int first_ok;
};

static void cb_first(struct cfd_token *tok, void *userdata)
{
	struct queued *q = userdata;

	(void)tok;
	cfd_token_trigger(q->in_first);
	/* hold the run list here until the other thread freed the victim */
	q->first_ok = cfd_token_wait(q->freed, CFD_MSEC(T_WAIT_MS)) == 0;
}

static void *free_victim_main(void *arg)
{
	struct queued *q = arg;

	if (cfd_token_wait(q->in_first, CFD_MSEC(T_WAIT_MS)) == 0) {
		cfd_registration_free(q->victim);
		atomic_store(&q->victim_slot.freed, 1);
	}
	cfd_token_trigger(q->freed);
	return NULL;
}

START_TEST(test_free_queued_from_other_thread)
{
	int rounds = ROUNDS(100);

	for (int round = 0; round < rounds; round++) {
		struct cfd_token *tok = t_new_token("t");
		struct queued q = { 0 };
		struct cfd_registration *first;
		pthread_t th;

		q.in_first = t_new_token("in first");
		q.freed = t_new_token("freed");
		ck_assert_int_eq(cfd_token_on_trigger(&q.victim, tok, cb_slot,
						      &q.victim_slot, 0),
				 0);
		/* registered last, runs first */
		ck_assert_int_eq(
		    cfd_token_on_trigger(&first, tok, cb_first, &q, 0), 0);
		ck_assert_int_eq(
		    pthread_create(&th, NULL, free_victim_main, &q), 0);
		cfd_token_trigger(tok);
		pthread_join(th, NULL);
		ck_assert(q.first_ok);
		ck_assert_int_eq(atomic_load(&q.victim_slot.freed), 1);
		ck_assert_int_eq(atomic_load(&q.victim_slot.calls), 0);
		cfd_registration_free(first);
		cfd_token_unref(q.in_first);
		cfd_token_unref(q.freed);
		cfd_token_unref(tok);
	}
}
END_TEST

/*
 * The free races the end of the callback: the freer starts its free as the
 * callback is about to return, so it finds it running or done.  Either way
 * it must return only once the callback finished, and touch nothing freed.
 *
 * The runner reads what it needs of the registration before publishing
 * DONE: from then on its owner may free it (ThreadSanitizer checks it).
 */
struct endrace {
	struct cfd_registration *reg;
	atomic_int ending, done;
	int done_on_return;
};

static void cb_ending(struct cfd_token *tok, void *userdata)
{
	struct endrace *e = userdata;

	(void)tok;
	atomic_store(&e->ending, 1);
	atomic_store(&e->done, 1);
}

static void *end_freer_main(void *arg)
{
	struct endrace *e = arg;
	int64_t end = t_now_ns() + CFD_MSEC(T_WAIT_MS);

	while (!atomic_load(&e->ending) && t_now_ns() < end)
		;
	cfd_registration_free(e->reg);
	e->done_on_return = atomic_load(&e->done);
	return NULL;
}

START_TEST(test_free_races_callback_end)
{
	int rounds = ROUNDS(3000);

	for (int round = 0; round < rounds; round++) {
		struct cfd_token *tok = t_new_token("t");
		struct endrace e = { 0 };
		pthread_t th;

		ck_assert_int_eq(
		    cfd_token_on_trigger(&e.reg, tok, cb_ending, &e, 0), 0);
		ck_assert_int_eq(pthread_create(&th, NULL, end_freer_main, &e),
				 0);
		cfd_token_trigger(tok);
		pthread_join(th, NULL);
		ck_assert(e.done_on_return);
		cfd_token_unref(tok);
	}
}
END_TEST

/* ---- callbacks that free themselves and drop their token ---- */

#define SELF_N 200

struct selfer {
	struct cfd_registration *reg;
	atomic_int calls;
	bool drop_token; /* also drop the last reference to the token */
};

static void cb_free_self(struct cfd_token *tok, void *userdata)
{
	struct selfer *s = userdata;

	atomic_fetch_add(&s->calls, 1);
	cfd_registration_free(s->reg);
	if (s->drop_token)
		cfd_token_unref(tok);
}

struct multitrig {
	pthread_barrier_t *start;
	struct cfd_token **tok;
	int n, reverse, wins;
};

static void *multitrig_main(void *arg)
{
	struct multitrig *m = arg;

	pthread_barrier_wait(m->start);
	for (int i = 0; i < m->n; i++) {
		int k = m->reverse ? m->n - 1 - i : i;

		m->wins += cfd_token_trigger(m->tok[k]) == 1;
		cfd_token_unref(m->tok[k]); /* this thread's reference */
	}
	return NULL;
}

START_TEST(test_callbacks_free_self_and_drop_token)
{
	int rounds = ROUNDS(20);

	for (int round = 0; round < rounds; round++) {
		struct cfd_token *root = t_new_token("root");
		struct cfd_token *tok[SELF_N], *tok2[SELF_N];
		struct selfer *s = calloc(SELF_N, sizeof(*s));
		struct slot *fl = calloc(SELF_N, sizeof(*fl));
		pthread_barrier_t start;
		struct multitrig m[2];
		pthread_t th[2];

		for (int i = 0; i < SELF_N; i++) {
			tok[i] = t_new_child(root, "self");
			cfd_token_fd(tok[i]);
			s[i].drop_token = i % 2;
			ck_assert_int_eq(cfd_token_on_trigger(&s[i].reg, tok[i],
							      cb_free_self,
							      &s[i], 0),
					 0);
			ck_assert_int_eq(cfd_token_on_trigger(
					     NULL, tok[i], cb_slot, &fl[i], 0),
					 0);
			/* each trigger thread holds its own reference; the
			 * test's goes to the callback (odd) or is dropped
			 * below (even) */
			tok2[i] = cfd_token_ref(tok[i]);
			cfd_token_ref(tok[i]);
		}
		pthread_barrier_init(&start, NULL, 3);
		m[0] = (struct multitrig){ &start, tok, SELF_N, 0, 0 };
		m[1] = (struct multitrig){ &start, tok2, SELF_N, 1, 0 };
		start_threads(th, 2, multitrig_main, m, sizeof(m[0]));
		pthread_barrier_wait(&start);
		if (round % 2)
			cfd_token_trigger(root); /* a third way in */
		join_threads(th, 2);
		pthread_barrier_destroy(&start);
		if (round % 2)
			ck_assert_int_le(m[0].wins + m[1].wins, SELF_N);
		else
			ck_assert_int_eq(m[0].wins + m[1].wins, SELF_N);
		for (int i = 0; i < SELF_N; i++) {
			ck_assert_int_eq(atomic_load(&s[i].calls), 1);
			ck_assert_int_eq(atomic_load(&fl[i].calls), 1);
			if (!s[i].drop_token)
				cfd_token_unref(tok[i]);
		}
		/* every token is gone now (the fixture checks the fds) */
		free(s);
		free(fl);
		cfd_token_unref(root);
	}
}
END_TEST

/* ---- callbacks that trigger other tokens and register new ones ---- */

#define RING 64

struct ring {
	struct cfd_token *tok[RING];
	atomic_int calls[RING];	 /* the first callback of each token */
	atomic_int second[RING]; /* callbacks registered by callbacks */
	atomic_int registered;
};

struct ring_arg {
	struct ring *r;
	int i;
};

static struct ring_arg ring_args[RING];

static void cb_ring_second(struct cfd_token *tok, void *userdata)
{
	struct ring_arg *a = userdata;

	(void)tok;
	atomic_fetch_add(&a->r->second[a->i], 1);
}

static void cb_ring(struct cfd_token *tok, void *userdata)
{
	struct ring_arg *a = userdata;
	struct ring *r = a->r;
	int next = (a->i + 1) % RING, later = (a->i + 2) % RING;

	(void)tok;
	atomic_fetch_add(&r->calls[a->i], 1);
	/* register on a token that may or may not have triggered yet: it
	 * runs either later or inline, exactly once */
	if (cfd_token_on_trigger(NULL, r->tok[later], cb_ring_second,
				 &ring_args[later], 0) >= 0)
		atomic_fetch_add(&r->registered, 1);
	cfd_token_trigger(r->tok[next]);
}

struct ringtrig {
	pthread_barrier_t *start;
	struct cfd_token *tok;
};

static void *ringtrig_main(void *arg)
{
	struct ringtrig *t = arg;

	pthread_barrier_wait(t->start);
	cfd_token_trigger(t->tok);
	return NULL;
}

START_TEST(test_callbacks_trigger_and_register)
{
	int rounds = ROUNDS(100);

	for (int round = 0; round < rounds; round++) {
		struct ring *r = calloc(1, sizeof(*r));
		struct cfd_registration *reg[RING];
		pthread_barrier_t start;
		struct ringtrig t[3];
		pthread_t th[3];

		for (int i = 0; i < RING; i++) {
			r->tok[i] = t_new_token("ring");
			ring_args[i] = (struct ring_arg){ r, i };
		}
		for (int i = 0; i < RING; i++)
			ck_assert_int_eq(
			    cfd_token_on_trigger(&reg[i], r->tok[i], cb_ring,
						 &ring_args[i], 0),
			    0);
		pthread_barrier_init(&start, NULL, 3);
		for (int k = 0; k < 3; k++)
			t[k] =
			    (struct ringtrig){ &start, r->tok[k * RING / 3] };
		start_threads(th, 3, ringtrig_main, t, sizeof(t[0]));
		join_threads(th, 3);
		pthread_barrier_destroy(&start);
		ck_assert_int_eq(atomic_load(&r->registered), RING);
		for (int i = 0; i < RING; i++) {
			ck_assert(cfd_token_triggered(r->tok[i]));
			ck_assert_int_eq(atomic_load(&r->calls[i]), 1);
			ck_assert_int_eq(atomic_load(&r->second[i]), 1);
		}
		for (int i = 0; i < RING; i++) {
			cfd_registration_free(reg[i]);
			cfd_token_unref(r->tok[i]);
		}
		free(r);
	}
}
END_TEST

/* ---- references taken and dropped from many threads ---- */

struct refs {
	pthread_barrier_t *start;
	struct cfd_token *tok;
};

static void *refs_main(void *arg)
{
	struct refs *r = arg;

	pthread_barrier_wait(r->start);
	for (int i = 0; i < 20000; i++) {
		cfd_token_ref(r->tok);
		if (i % 1000 == 0)
			cfd_token_fd(r->tok);
		cfd_token_unref(r->tok);
	}
	cfd_token_unref(r->tok); /* the reference the test gave */
	return NULL;
}

START_TEST(test_refs_from_many_threads)
{
	struct cfd_token *tok = t_new_token("shared");
	pthread_barrier_t start;
	struct refs r[NTHREADS];
	pthread_t th[NTHREADS];
	int fd = cfd_token_fd(tok);

	pthread_barrier_init(&start, NULL, NTHREADS);
	for (int k = 0; k < NTHREADS; k++)
		r[k] = (struct refs){ &start, cfd_token_ref(tok) };
	cfd_token_unref(tok);
	start_threads(th, NTHREADS, refs_main, r, sizeof(r[0]));
	join_threads(th, NTHREADS);
	pthread_barrier_destroy(&start);
	ck_assert(!t_fd_is_open(fd)); /* the last unref freed it */
}
END_TEST

static Suite *concurrency_suite(void)
{
	Suite *s = suite_create("concurrency");
	TCase *tc;

	tc = t_tcase_timeout("trigger", 120);
	tcase_add_test(tc, test_many_triggers_one_winner);
	tcase_add_test(tc, test_fd_and_wait_race_trigger);
	tcase_add_test(tc, test_fd_readable_once_trigger_returned);
	tcase_add_test(tc, test_add_while_triggering);
	tcase_add_test(tc, test_overlapping_subtrees);
	tcase_add_test(tc, test_all_of_parents_at_once);
	tcase_add_test(tc, test_refs_from_many_threads);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("graph", 120);
	tcase_add_test(tc, test_build_while_triggering);
	tcase_add_test(tc, test_release_while_triggering);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("callbacks", 120);
	tcase_add_test(tc, test_register_and_free_while_triggering);
	tcase_add_test(tc, test_free_waits_for_running_callback);
	tcase_add_test(tc, test_free_queued_from_other_thread);
	tcase_add_test(tc, test_free_races_callback_end);
	tcase_add_test(tc, test_callbacks_free_self_and_drop_token);
	tcase_add_test(tc, test_callbacks_trigger_and_register);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	return t_run_suite(concurrency_suite());
}
