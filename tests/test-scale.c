/* SPDX-License-Identifier: MIT */
/*
 * Description: scale.  A chain one million deep triggers and frees without
 * recursion (both run on a thread with a small stack, so any recursion over
 * the depth would overflow it); a root with one million children triggers
 * them all; ten million child create/release cycles under one live root
 * leave resident memory where it was; any-of and all-of accept
 * CFD_MAX_PARENTS parents.  The figures (times, RSS) are printed for the
 * CI log.
 *
 * Under AddressSanitizer the counts are reduced, and the RSS assertion is
 * skipped (its quarantine holds freed memory); the output says so.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define DEEP (T_ASAN ? 100000 : 1000000)
#define WIDE (T_ASAN ? 100000 : 1000000)
#define CYCLES (T_ASAN ? 1000000L : 10000000L)
/* Small next to what a recursion over DEEP levels would need (tens of
 * MiB), big enough for the library's iterative walk and the sanitizers. */
#define SMALL_STACK (T_ASAN ? 1024 * 1024 : 256 * 1024)
#define RSS_SLACK (4L << 20) /* "within a few MiB" */

static const char *asan_note = T_ASAN ? " (reduced: AddressSanitizer)" : "";

static double ms_since(int64_t t0)
{
	return (double)(t_now_ns() - t0) / 1e6;
}

static long rss_bytes(void)
{
	long size, resident = -1;
	FILE *f = fopen("/proc/self/statm", "re");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%ld %ld", &size, &resident), 2);
	fclose(f);
	return resident * sysconf(_SC_PAGESIZE);
}

/* Run fn(arg) on a thread whose stack is SMALL_STACK bytes. */
static void on_small_stack(void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	pthread_t th;

	ck_assert_int_eq(pthread_attr_init(&attr), 0);
	ck_assert_int_eq(pthread_attr_setstacksize(&attr, SMALL_STACK), 0);
	ck_assert_int_eq(pthread_create(&th, &attr, fn, arg), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	pthread_attr_destroy(&attr);
}

static void *do_trigger(void *arg)
{
	cfd_token_trigger(arg);
	return NULL;
}

static void *do_unref(void *arg)
{
	cfd_token_unref(arg);
	return NULL;
}

/* ---- a chain a million deep ---- */

/* root -> c1 -> c2 -> ... -> leaf; only root and leaf are held by the
 * test, every other token by its child. */
static struct cfd_token *build_chain(struct cfd_token *root, int depth)
{
	struct cfd_token *prev = root, *c = NULL;

	/* no ck_assert in the hot loops: each passing one writes to
	 * Check's pipe */
	for (int i = 0; i < depth; i++) {
		if (cfd_token_child(&c, prev, NULL) != 0)
			ck_abort_msg("depth %d: cfd_token_child failed", i);
		if (prev != root)
			cfd_token_unref(prev);
		prev = c;
	}
	return c;
}

START_TEST(test_million_deep_chain)
{
	struct cfd_token *root = NULL, *leaf;
	int64_t t0;
	double built, triggered, freed;
	int calls = 0, leaf_fd, root_fd;

	ck_assert_int_eq(cfd_token_new(&root, "root"), 0);
	root_fd = cfd_token_fd(root);
	t0 = t_now_ns();
	leaf = build_chain(root, DEEP);
	built = ms_since(t0);
	leaf_fd = cfd_token_fd(leaf);
	ck_assert_int_eq(
	    cfd_token_on_trigger(NULL, leaf, t_count_call, &calls, 0), 0);

	t0 = t_now_ns();
	on_small_stack(do_trigger, root);
	triggered = ms_since(t0);

	ck_assert(cfd_token_triggered(leaf));
	ck_assert_ptr_eq(cfd_token_origin(leaf), root);
	ck_assert_int_eq(cfd_token_reason(leaf), CFD_REASON_PARENT);
	ck_assert(t_fd_readable(leaf_fd, 0));
	ck_assert_int_eq(calls, 1);

	/* the root's last reference goes with the chain: free it all from
	 * the leaf, iteratively */
	cfd_token_unref(root);
	ck_assert(t_fd_is_open(root_fd));
	t0 = t_now_ns();
	on_small_stack(do_unref, leaf);
	freed = ms_since(t0);
	ck_assert(!t_fd_is_open(root_fd));
	ck_assert(!t_fd_is_open(leaf_fd));

	printf("scale: chain %d deep%s: built in %.1f ms, triggered in %.1f "
	       "ms (%.1f ns per token), freed in %.1f ms\n",
	       DEEP, asan_note, built, triggered, triggered * 1e6 / DEEP,
	       freed);
}
END_TEST

START_TEST(test_million_deep_chain_freed_pending)
{
	struct cfd_token *root = NULL, *leaf;
	int calls = 0;

	ck_assert_int_eq(cfd_token_new(&root, "root"), 0);
	leaf = build_chain(root, DEEP);
	ck_assert_int_eq(
	    cfd_token_on_trigger(NULL, root, t_count_call, &calls, 0), 0);
	/* the whole chain goes; the root, still held, stays */
	on_small_stack(do_unref, leaf);
	ck_assert_str_eq(cfd_token_name(root), "root");
	ck_assert_int_eq(cfd_token_trigger(root), 1);
	ck_assert_int_eq(calls, 1);
	cfd_token_unref(root);
}
END_TEST

/* Triggering a middle token of the chain reaches the leaf, not the root. */
START_TEST(test_million_deep_chain_from_middle)
{
	struct cfd_token *root = NULL, *mid, *leaf;

	ck_assert_int_eq(cfd_token_new(&root, "root"), 0);
	mid = build_chain(root, DEEP / 2);
	leaf = build_chain(mid, DEEP / 2);
	on_small_stack(do_trigger, mid);
	ck_assert(cfd_token_triggered(leaf));
	ck_assert_ptr_eq(cfd_token_origin(leaf), mid);
	ck_assert(!cfd_token_triggered(root));
	on_small_stack(do_unref, leaf);
	cfd_token_unref(mid);
	cfd_token_unref(root);
}
END_TEST

/* ---- a million children ---- */

START_TEST(test_million_children)
{
	struct cfd_token *root = NULL, **c = malloc(WIDE * sizeof(*c));
	int fd[100], calls = 0;
	int64_t t0;
	double built, triggered, freed;

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(cfd_token_new(&root, "root"), 0);
	t0 = t_now_ns();
	for (int i = 0; i < WIDE; i++)
		if (cfd_token_child(&c[i], root, NULL) != 0)
			ck_abort_msg("child %d: cfd_token_child failed", i);
	built = ms_since(t0);
	for (int k = 0; k < 100; k++)
		fd[k] = cfd_token_fd(c[k * (WIDE / 100)]);
	for (int k = 0; k < 1000; k++)
		ck_assert_int_eq(cfd_token_on_trigger(NULL,
						      c[k * (WIDE / 1000)],
						      t_count_call, &calls, 0),
				 0);

	t0 = t_now_ns();
	on_small_stack(do_trigger, root);
	triggered = ms_since(t0);

	for (int i = 0; i < WIDE; i++)
		if (!cfd_token_triggered(c[i]))
			ck_abort_msg("child %d pending", i);
	for (int k = 0; k < 100; k++)
		ck_assert(t_fd_readable(fd[k], 0));
	ck_assert_int_eq(calls, 1000);
	ck_assert_ptr_eq(cfd_token_origin(c[WIDE - 1]), root);

	t0 = t_now_ns();
	for (int i = 0; i < WIDE; i++)
		cfd_token_unref(c[i]);
	freed = ms_since(t0);
	cfd_token_unref(root);
	free(c);
	printf("scale: root with %d children%s: built in %.1f ms, triggered "
	       "in %.1f ms (%.1f ns per child), freed in %.1f ms\n",
	       WIDE, asan_note, built, triggered, triggered * 1e6 / WIDE,
	       freed);
}
END_TEST

/* ---- ten million short-lived children under one root ---- */

static void cycle(struct cfd_token *root, long i, int *calls)
{
	struct cfd_token *c = NULL;

	if (cfd_token_child(&c, root, (i & 7) ? NULL : "worker") < 0)
		ck_abort_msg("cycle %ld: cfd_token_child failed", i);
	if (i % 1000 == 0 && cfd_token_fd(c) < 0)
		ck_abort_msg("cycle %ld: cfd_token_fd failed", i);
	if (i % 100 == 0 &&
	    cfd_token_on_trigger(NULL, c, t_count_call, calls, 0) != 0)
		ck_abort_msg("cycle %ld: cfd_token_on_trigger failed", i);
	cfd_token_unref(c);
}

START_TEST(test_ten_million_cycles_flat_rss)
{
	struct cfd_token *root = NULL, *keep = NULL;
	long before, after, peak = 0;
	int calls = 0;
	int64_t t0;
	double took;

	ck_assert_int_eq(cfd_token_new(&root, "root"), 0);
	/* a long-lived child too, so the root's list is never empty */
	ck_assert_int_eq(cfd_token_child(&keep, root, "keep"), 0);
	for (long i = 0; i < 100000; i++) /* let malloc settle */
		cycle(root, i, &calls);
	before = rss_bytes();
	t0 = t_now_ns();
	for (long i = 0; i < CYCLES; i++) {
		cycle(root, i, &calls);
		if (i % 1000000 == 0) {
			long now = rss_bytes();

			peak = now > peak ? now : peak;
		}
	}
	took = ms_since(t0);
	after = rss_bytes();

	/* released children never run their floating callbacks, and the
	 * root's trigger finds only the child still alive */
	ck_assert_int_eq(calls, 0);
	ck_assert_int_eq(cfd_token_trigger(root), 1);
	ck_assert(cfd_token_triggered(keep));
	ck_assert_int_eq(calls, 0);

	printf("scale: %ld child create/release cycles%s in %.0f ms (%.0f ns "
	       "each): RSS before %.2f MiB, after %.2f MiB (%+ld KiB), peak "
	       "%.2f MiB\n",
	       CYCLES, asan_note, took, took * 1e6 / CYCLES, before / 1048576.0,
	       after / 1048576.0, (after - before) / 1024, peak / 1048576.0);
	if (T_ASAN) {
		printf("scale: RSS not asserted under AddressSanitizer (its "
		       "quarantine keeps freed memory resident)\n");
	} else {
		ck_assert_msg(after - before <= RSS_SLACK,
			      "RSS grew by %ld KiB over %ld cycles",
			      (after - before) / 1024, CYCLES);
		ck_assert_msg(peak - before <= RSS_SLACK,
			      "RSS peaked %ld KiB above the start",
			      (peak - before) / 1024);
	}
	cfd_token_unref(keep);
	cfd_token_unref(root);
}
END_TEST

/* ---- CFD_MAX_PARENTS parents ---- */

#define POOL 1024

START_TEST(test_max_parents)
{
	struct cfd_token *pool[POOL], *any = NULL, *all = NULL, *r = NULL;
	struct cfd_token **set = malloc(CFD_MAX_PARENTS * sizeof(*set));
	int64_t t0;
	double made;

	ck_assert_ptr_nonnull(set);
	for (int i = 0; i < POOL; i++)
		ck_assert_int_eq(cfd_token_new(&pool[i], "p"), 0);
	for (size_t i = 0; i < CFD_MAX_PARENTS; i++)
		set[i] = pool[i % POOL];
	t0 = t_now_ns();
	ck_assert_int_eq(cfd_token_any_of(&any, "any", set, CFD_MAX_PARENTS),
			 0);
	ck_assert_int_eq(cfd_token_all_of(&all, "all", set, CFD_MAX_PARENTS),
			 0);
	made = ms_since(t0);
	ck_assert_int_eq(
	    cfd_token_any_of(&r, "too many", set, (size_t)CFD_MAX_PARENTS + 1),
	    -EINVAL);
	ck_assert_ptr_null(r);

	cfd_token_trigger(pool[7]);
	ck_assert(cfd_token_triggered(any));
	ck_assert_ptr_eq(cfd_token_origin(any), pool[7]);
	ck_assert(!cfd_token_triggered(all));
	for (int i = 0; i < POOL; i++) {
		if (i == 7)
			continue;
		ck_assert(!cfd_token_triggered(all));
		cfd_token_trigger(pool[i]);
	}
	ck_assert(cfd_token_triggered(all));
	ck_assert_int_eq(cfd_token_reason(all), CFD_REASON_ALL_OF);
	/* the origin of the parent that triggered last */
	ck_assert_ptr_eq(cfd_token_origin(all), pool[POOL - 1]);

	cfd_token_unref(any);
	cfd_token_unref(all);
	for (int i = 0; i < POOL; i++)
		cfd_token_unref(pool[i]);
	free(set);
	printf("scale: any-of and all-of over CFD_MAX_PARENTS (%u) parents "
	       "made in %.1f ms\n",
	       CFD_MAX_PARENTS, made);
}
END_TEST

static Suite *scale_suite(void)
{
	Suite *s = suite_create("scale");
	TCase *tc;

	tc = t_tcase_timeout("deep", 300);
	tcase_add_test(tc, test_million_deep_chain);
	tcase_add_test(tc, test_million_deep_chain_freed_pending);
	tcase_add_test(tc, test_million_deep_chain_from_middle);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("wide", 300);
	tcase_add_test(tc, test_million_children);
	tcase_add_test(tc, test_max_parents);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("churn", 300);
	tcase_add_test(tc, test_ten_million_cycles_flat_rss);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(scale_suite());
}
