/* SPDX-License-Identifier: MIT */
/*
 * Description: the cause and the deadline (lib/cause.c): codes and
 * messages on a token and its descendants, local causes that are not
 * remote, the reason names; a token's deadline from its timeout sources
 * and its ancestors' (child, chain, any-of, all-of), as sources come and
 * go, after the trigger, deep chains; bad input.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "helpers-watcher.h"
#include "helpers.h"

/* ---- codes and messages ---- */

START_TEST(test_code_and_message_reach_descendants)
{
	struct cfd_token *root = t_new_token("root");
	struct cfd_token *child = t_new_child(root, "child");
	struct cfd_token *grand = t_new_child(child, "grand");

	ck_assert_int_eq(cfd_token_code(root), 0); /* pending */
	ck_assert_int_eq(cfd_token_trigger_code(root, 503, "draining"), 1);
	ck_assert_int_eq(cfd_token_code(root), 503);
	ck_assert_int_eq(cfd_token_code(grand), 503);
	ck_assert_str_eq(cfd_token_message(grand), "draining");
	ck_assert_int_eq(cfd_token_reason(root), CFD_REASON_MANUAL);
	ck_assert_int_eq(cfd_token_reason(grand), CFD_REASON_PARENT);
	/* the first trigger wins: its cause never changes */
	ck_assert_int_eq(cfd_token_trigger_code(root, 1, "late"), 0);
	ck_assert_int_eq(cfd_token_trigger_code(child, 2, "late"), 0);
	ck_assert_int_eq(cfd_token_code(child), 503);
	ck_assert_str_eq(cfd_token_message(child), "draining");
	cfd_token_unref(grand);
	cfd_token_unref(child);
	cfd_token_unref(root);
}
END_TEST

START_TEST(test_code_alone_and_no_code)
{
	struct cfd_token *a = t_new_token("a"), *b = t_new_token("b");

	ck_assert_int_eq(cfd_token_trigger_code(a, -7, NULL), 1);
	ck_assert_int_eq(cfd_token_code(a), -7);
	ck_assert_ptr_null(cfd_token_message(a));
	ck_assert_int_eq(cfd_token_trigger_msg(b, "m"), 1);
	ck_assert_int_eq(cfd_token_code(b), 0); /* no code */
	cfd_token_unref(a);
	cfd_token_unref(b);
}
END_TEST

START_TEST(test_local_cause_is_not_remote)
{
	struct cfd_token *t = t_new_token("local");
	struct cfd_token *c = t_new_child(t, "c");

	ck_assert(!cfd_token_remote(t));
	ck_assert_int_eq(cfd_token_origin_pid(t), 0); /* pending */
	cfd_token_trigger(t);
	ck_assert(!cfd_token_remote(c));
	ck_assert_ptr_null(cfd_token_origin_path(c));
	ck_assert_int_eq(cfd_token_origin_pid(c), getpid());
	cfd_token_unref(c);
	cfd_token_unref(t);
}
END_TEST

START_TEST(test_cause_einval)
{
	ck_assert_int_eq(cfd_token_trigger_code(NULL, 1, "x"), -EINVAL);
	ck_assert_int_eq(cfd_token_code(NULL), 0);
	ck_assert(!cfd_token_remote(NULL));
	ck_assert_ptr_null(cfd_token_origin_path(NULL));
	ck_assert_int_eq(cfd_token_origin_pid(NULL), -EINVAL);
	ck_assert_int_eq(cfd_token_deadline(NULL), -EINVAL);
	ck_assert_int_eq(cfd_token_remaining(NULL), -EINVAL);
	ck_assert_str_eq(cfd_reason_name(CFD_REASON_GONE), "gone");
}
END_TEST

/* ---- deadlines ---- */

START_TEST(test_deadline_from_sources)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *t = t_new_token("t");
	struct cfd_source *far = NULL, *near = NULL;
	int64_t now = t_now_ns(), rem;

	ck_assert_int_eq(cfd_token_deadline(t), CFD_NO_DEADLINE);
	ck_assert_int_eq(cfd_token_remaining(t), CFD_NO_DEADLINE);
	ck_assert_int_eq(cfd_source_add_deadline(&far, t, w, now + CFD_SEC(90)),
			 0);
	ck_assert_int_eq(cfd_token_deadline(t), now + CFD_SEC(90));
	ck_assert_int_eq(
	    cfd_source_add_deadline(&near, t, w, now + CFD_SEC(30)), 0);
	ck_assert_int_eq(cfd_token_deadline(t), now + CFD_SEC(30));
	rem = cfd_token_remaining(t);
	ck_assert(rem > 0 && rem <= CFD_SEC(30));
	/* the earliest goes: the next one counts */
	near = cfd_source_free(near);
	ck_assert_int_eq(cfd_token_deadline(t), now + CFD_SEC(90));
	far = cfd_source_free(far);
	ck_assert_int_eq(cfd_token_deadline(t), CFD_NO_DEADLINE);
	cfd_token_unref(t);
	cfd_watcher_unref(w);
}
END_TEST

START_TEST(test_deadline_of_descendants)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *a = t_new_token("a"), *b = t_new_token("b");
	struct cfd_token *c = t_new_token("none");
	struct cfd_token *child, *chain, *any, *all, *all_none, *set[3];
	int64_t now = t_now_ns();

	ck_assert_int_eq(cfd_source_add_deadline(NULL, a, w, now + CFD_SEC(10)),
			 0);
	ck_assert_int_eq(cfd_source_add_deadline(NULL, b, w, now + CFD_SEC(20)),
			 0);
	child = t_new_child(a, "child");
	ck_assert_int_eq(cfd_token_chain(&chain, b, child), 0);
	set[0] = a, set[1] = b, set[2] = c;
	ck_assert_int_eq(cfd_token_any_of(&any, "any", set, 3), 0);
	ck_assert_int_eq(cfd_token_all_of(&all, "all", set, 2), 0);
	ck_assert_int_eq(cfd_token_all_of(&all_none, "all3", set, 3), 0);
	/* a child's deadline is its parent's; a chain, an any-of: the
	 * earliest; an all-of triggers with its last parent: the latest,
	 * and none while one parent has none */
	ck_assert_int_eq(cfd_token_deadline(child), now + CFD_SEC(10));
	ck_assert_int_eq(cfd_token_deadline(chain), now + CFD_SEC(10));
	ck_assert_int_eq(cfd_token_deadline(any), now + CFD_SEC(10));
	ck_assert_int_eq(cfd_token_deadline(all), now + CFD_SEC(20));
	ck_assert_int_eq(cfd_token_deadline(all_none), CFD_NO_DEADLINE);
	/* a source added to an ancestor later counts at once */
	ck_assert_int_eq(cfd_source_add_deadline(NULL, c, w, now + CFD_SEC(5)),
			 0);
	ck_assert_int_eq(cfd_token_deadline(any), now + CFD_SEC(5));
	ck_assert_int_eq(cfd_token_deadline(all_none), now + CFD_SEC(20));
	/* an own deadline earlier than the parents' */
	ck_assert_int_eq(
	    cfd_source_add_deadline(NULL, child, w, now + CFD_SEC(1)), 0);
	ck_assert_int_eq(cfd_token_deadline(child), now + CFD_SEC(1));
	ck_assert_int_eq(cfd_token_deadline(a), now + CFD_SEC(10));
	cfd_token_unref(all_none);
	cfd_token_unref(all);
	cfd_token_unref(any);
	cfd_token_unref(chain);
	cfd_token_unref(child);
	cfd_token_unref(c);
	cfd_token_unref(b);
	cfd_token_unref(a);
	cfd_watcher_unref(w);
}
END_TEST

/* Once triggered, the deadline has passed: it is the trigger time, for
 * the token and its descendants, and nothing is left. */
START_TEST(test_deadline_after_trigger)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *t = t_new_token("t"), *c;

	ck_assert_int_eq(cfd_source_add_timeout(NULL, t, w, CFD_SEC(60)), 0);
	c = t_new_child(t, "c");
	cfd_token_trigger(t);
	ck_assert_int_eq(cfd_token_deadline(t), cfd_token_trigger_time(t));
	ck_assert_int_eq(cfd_token_deadline(c), cfd_token_trigger_time(t));
	ck_assert_int_eq(cfd_token_remaining(c), 0);
	cfd_token_unref(c);
	cfd_token_unref(t);
	cfd_watcher_unref(w);
}
END_TEST

/* The deadline of a token deep down a chain is found by a loop: no stack,
 * no lock, no system call. */
START_TEST(test_deadline_deep_chain)
{
	enum { DEPTH = 100000 };
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *root = t_new_token("root"), *t = cfd_token_ref(root);
	int64_t at = t_now_ns() + CFD_SEC(30);

	ck_assert_int_eq(cfd_source_add_deadline(NULL, root, w, at), 0);
	for (int i = 0; i < DEPTH; i++) {
		struct cfd_token *c = t_new_child(t, "c");

		cfd_token_unref(t);
		t = c;
	}
	ck_assert_int_eq(cfd_token_deadline(t), at);
	cfd_token_unref(t);
	cfd_token_unref(root);
	cfd_watcher_unref(w);
}
END_TEST

/* A lattice of fan-ins, 48 levels of two tokens each made of both tokens
 * of the level above, has 2^48 paths to the top: the walk gives up on
 * most of them, and what it says is never earlier than the truth. */
START_TEST(test_deadline_of_a_lattice)
{
	enum { LEVELS = 48 };
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *lv[LEVELS][2];
	int64_t a = t_now_ns() + CFD_SEC(30), b = a + CFD_SEC(5);

	for (int all = 0; all < 2; all++) {
		lv[0][0] = t_new_token("x0");
		lv[0][1] = t_new_token("y0");
		ck_assert_int_eq(cfd_source_add_deadline(NULL, lv[0][0], w, a),
				 0);
		ck_assert_int_eq(cfd_source_add_deadline(NULL, lv[0][1], w, b),
				 0);
		for (int i = 1; i < LEVELS; i++)
			for (int j = 0; j < 2; j++)
				ck_assert_int_eq(
				    all ? cfd_token_all_of(&lv[i][j], "l",
							   lv[i - 1], 2)
					: cfd_token_any_of(&lv[i][j], "l",
							   lv[i - 1], 2),
				    0);
		/* any-of: the first path found reaches x0's; all-of: the
		 * latest, b, or none for want of looking */
		if (all)
			ck_assert_int_ge(cfd_token_deadline(lv[LEVELS - 1][0]),
					 b);
		else
			ck_assert_int_eq(cfd_token_deadline(lv[LEVELS - 1][0]),
					 a);
		for (int i = LEVELS - 1; i >= 0; i--)
			for (int j = 0; j < 2; j++)
				cfd_token_unref(lv[i][j]);
	}
	cfd_watcher_unref(w);
}
END_TEST

/* In a child: ask a token 10 levels deep for its deadline under seccomp's
 * strict mode, where any system call but read, write and exit kills the
 * process.  Its answer comes back through a pipe. */
static int deadline_in_strict_mode(void *arg)
{
	int out = *(int *)arg;
	struct cfd_watcher *w = NULL;
	struct cfd_token *root, *t;
	int64_t at = t_now_ns() + CFD_SEC(30), d[2];

	T_CHILD_CHECK(cfd_watcher_new(&w) == 0);
	T_CHILD_CHECK(cfd_token_new(&root, "root") == 0);
	T_CHILD_CHECK(cfd_source_add_deadline(NULL, root, w, at) == 0);
	t = cfd_token_ref(root);
	for (int i = 0; i < 10; i++) {
		struct cfd_token *c;

		T_CHILD_CHECK(cfd_token_child(&c, t, "c") == 0);
		cfd_token_unref(t);
		t = c;
	}
	T_CHILD_CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) == 0);
	d[0] = at;
	d[1] = cfd_token_deadline(t);
	if (write(out, d, sizeof(d)) != sizeof(d))
		syscall(SYS_exit, 2);
	/* exit_group(2), what _exit() calls, is not allowed */
	syscall(SYS_exit, 0);
	return 1;
}

START_TEST(test_deadline_makes_no_system_call)
{
	int64_t d[2] = { 0, 1 };
	int p[2];

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(t_in_child(deadline_in_strict_mode, &p[1]), 0);
	ck_assert_int_eq(read(p[0], d, sizeof(d)), sizeof(d));
	ck_assert_int_eq(d[1], d[0]);
	close(p[0]), close(p[1]);
}
END_TEST

/* ---- from any thread ---- */

/* Threads race to trigger one tree with different codes while others read
 * the cause of its leaves: whoever wins, every reader sees one cause,
 * whole (a code and its own message), and it never changes. */
enum { RACERS = 4, READERS = 2, ROUNDS = 200 };

struct race {
	struct cfd_token *root, *leaf;
	pthread_barrier_t go;
	int id;
};

static void *racer(void *arg)
{
	struct race *r = arg;
	char msg[32];
	int id = __atomic_fetch_add(&r->id, 1, __ATOMIC_RELAXED);

	snprintf(msg, sizeof(msg), "code %d", 100 + id);
	pthread_barrier_wait(&r->go);
	cfd_token_trigger_code(r->root, 100 + id, msg);
	return NULL;
}

static void *reader(void *arg)
{
	struct race *r = arg;
	int seen = 0;
	char want[32];

	pthread_barrier_wait(&r->go);
	for (;;) {
		bool was = cfd_token_triggered(r->leaf);
		int code = cfd_token_code(r->leaf);
		const char *msg = cfd_token_message(r->leaf);

		if (code == 0 && !msg) {
			if (was || seen)
				return (void *)"no cause after the trigger";
			continue;
		}
		/* pending at the first read, triggered at the second */
		if (!was && (code == 0 || !msg))
			continue;
		if (code < 100 || code >= 100 + RACERS || !msg)
			return (void *)"half a cause";
		snprintf(want, sizeof(want), "code %d", code);
		if (strcmp(msg, want) != 0)
			return (void *)"a code with another's message";
		if (seen && seen != code)
			return (void *)"the cause changed";
		seen = code;
		if (cfd_token_code(r->root) == code)
			return NULL;
	}
}

START_TEST(test_cause_read_from_any_thread)
{
	for (int round = 0; round < ROUNDS; round++) {
		struct race r = { .root = t_new_token("root") };
		struct cfd_token *mid = t_new_child(r.root, "mid");
		pthread_t th[RACERS + READERS];
		void *res;

		r.leaf = t_new_child(mid, "leaf");
		pthread_barrier_init(&r.go, NULL, RACERS + READERS);
		for (int i = 0; i < RACERS + READERS; i++)
			ck_assert_int_eq(
			    pthread_create(&th[i], NULL,
					   i < RACERS ? racer : reader, &r),
			    0);
		for (int i = 0; i < RACERS + READERS; i++) {
			pthread_join(th[i], &res);
			ck_assert_msg(res == NULL, "round %d: %s", round,
				      (const char *)res);
		}
		ck_assert_ptr_eq(cfd_token_origin(r.leaf), r.root);
		ck_assert_int_eq(cfd_token_code(r.leaf),
				 cfd_token_code(r.root));
		pthread_barrier_destroy(&r.go);
		cfd_token_unref(r.leaf);
		cfd_token_unref(mid);
		cfd_token_unref(r.root);
	}
}
END_TEST

static Suite *cause_suite(void)
{
	Suite *s = suite_create("cause");
	TCase *tc;

	tc = t_tcase("cause");
	tcase_add_test(tc, test_code_and_message_reach_descendants);
	tcase_add_test(tc, test_code_alone_and_no_code);
	tcase_add_test(tc, test_local_cause_is_not_remote);
	tcase_add_test(tc, test_cause_einval);
	suite_add_tcase(s, tc);

	tc = t_tcase("deadline");
	tcase_add_test(tc, test_deadline_from_sources);
	tcase_add_test(tc, test_deadline_of_descendants);
	tcase_add_test(tc, test_deadline_after_trigger);
	tcase_add_test(tc, test_deadline_deep_chain);
	tcase_add_test(tc, test_deadline_of_a_lattice);
	/* TSan's runtime makes system calls of its own (and a thread that
	 * outlives the child's exit(2)) */
	if (!T_TSAN)
		tcase_add_test(tc, test_deadline_makes_no_system_call);
	suite_add_tcase(s, tc);

	tc = t_tcase("threads");
	tcase_add_test(tc, test_cause_read_from_any_thread);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(cause_suite());
}
