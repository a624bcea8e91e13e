/* SPDX-License-Identifier: MIT */
/*
 * Description: scopes (lib/uring-scope.c): an op ends by itself or is
 * cancelled, and reaches the caller's CQE loop once; cancels by someone
 * else; every kind of op cancelled from another thread; nested, shielded
 * and linked scopes; ops added after the trigger; scopes released with ops
 * in flight; scopes sharing a token; 10,000 ops through a small CQ.
 *
 Every test runs on every ring kind (default; SINGLE_ISSUER |
 * DEFER_TASKRUN; COOP_TASKRUN | TASKRUN_FLAG) unless it says otherwise,
 * and ends with a probe proving that no op is left in flight; the fixture
 * proves that no fd leaked.  Helper threads act only once the kernel has
 * consumed a wait's SQEs, so no result depends on timing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uring-helpers.h"

START_TEST(test_scope_op_ends_by_itself_or_is_cancelled_once)
{
	struct cfd_token *tok;
	struct cfd_scope *s;
	struct seen got;
	int p[2], q[2];
	char b[2];
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "scope"), 0);
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, tok), 0);
	ck_assert_ptr_eq(cfd_scope_token(s), tok);
	scope_read(&f, s, p[0], &b[0], 1, 0);
	scope_read(&f, s, q[0], &b[1], 2, 0);
	io_uring_submit(&f.ring);
	ck_assert_int_eq(cfd_scope_pending(s), 2);

	/* an op that ends by itself: its own result, the caller's ud */
	fill_pipe(q[1]);
	got = expect_one(&f);
	ck_assert_uint_eq(got.ud, 2);
	ck_assert_int_eq(got.kind, CFD_CQE_OP);
	ck_assert_int_eq(got.res, 1);
	ck_assert_int_eq(cfd_scope_pending(s), 1);

	/* the token: the other is cancelled, and arrives once */
	ck_assert_int_eq(cfd_scope_cancel(s), 1);
	ck_assert_int_eq(cfd_scope_cancel(s), 0); /* twice: harmless */
	got = expect_one(&f);
	ck_assert_uint_eq(got.ud, 1);
	ck_assert_int_eq(got.kind, CFD_CQE_OP_CANCELLED);
	ck_assert(got.res == -ECANCELED || got.res == -EINTR);
	ck_assert_int_eq(cfd_scope_pending(s), 0);
	ck_assert_int_eq(fx_loop(&f, &got, 1, 1, 20, NULL), 0);

	cfd_scope_unref(s);
	cfd_token_unref(tok);
	close(p[0]), close(p[1]), close(q[0]), close(q[1]);
	fx_close(&f);
}
END_TEST

/* A scope op that someone else cancels is CFD_CQE_OP with -ECANCELED: the
 * scope did not cancel it.  Likewise a shielded op behind a cancelled one
 * in a link chain (io_uring fails the chain). */
START_TEST(test_scope_op_cancelled_by_someone_else_is_the_ops_result)
{
	struct io_uring_sqe *sqe;
	struct cfd_scope *s;
	struct seen got[4];
	int p[2], q[2], n;
	char b[2];
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, NULL), 0);
	scope_read(&f, s, p[0], &b[0], 1, 0);
	io_uring_submit(&f.ring);
	sqe = io_uring_get_sqe(&f.ring);
	io_uring_prep_cancel_fd(sqe, p[0], 0);
	sqe->user_data = 9;
	io_uring_submit(&f.ring);
	n = fx_loop(&f, got, 4, 2, T_WAIT_MS, NULL);
	ck_assert_int_eq(n, 2);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(got[i].kind, CFD_CQE_OP);
		if (got[i].ud == 1)
			ck_assert_int_eq(got[i].res, -ECANCELED);
		else
			ck_assert_uint_eq(got[i].ud, 9);
	}
	/* a chain: unshielded head, shielded tail */
	sqe = io_uring_get_sqe(&f.ring);
	io_uring_prep_read(sqe, p[0], &b[0], 1, 0);
	sqe->flags |= IOSQE_IO_LINK;
	sqe->user_data = 2;
	ck_assert_int_eq(cfd_scope_add(s, sqe, 0), 0);
	scope_read(&f, s, q[0], &b[1], 3, CFD_SCOPE_SHIELD);
	io_uring_submit(&f.ring);
	cfd_scope_cancel(s);
	n = fx_loop(&f, got, 4, 2, T_WAIT_MS, NULL);
	ck_assert_int_eq(n, 2);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(got[i].res, -ECANCELED);
		ck_assert_int_eq(got[i].kind, got[i].ud == 2
						  ? CFD_CQE_OP_CANCELLED
						  : CFD_CQE_OP);
	}
	cfd_scope_unref(s);
	close(p[0]), close(p[1]), close(q[0]), close(q[1]);
	fx_close(&f);
}
END_TEST

/* Triggered from another thread, the cancel reaches ops of every kind. */
START_TEST(test_scope_cancel_from_a_thread_reaches_every_kind_of_op)
{
	struct target t[NTARGETS];
	struct seen got[NTARGETS];
	struct cfd_scope *s;
	struct actor a;
	struct fx f;
	int n;

	if (!fx_open(&f, KIND, 16, 0))
		return;
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, NULL), 0);
	for (int k = 0; k < NTARGETS; k++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&f.ring);

		target_open(&t[k], k);
		target_prep(&t[k], sqe);
		sqe->user_data = 100 + k;
		ck_assert_int_eq(cfd_scope_add(s, sqe, 0), 0);
	}
	actor_start_queued(&a, &f.ring, ACT_TRIGGER, cfd_scope_token(s), NULL);
	io_uring_submit(&f.ring);
	n = fx_loop(&f, got, NTARGETS, NTARGETS, T_WAIT_MS, NULL);
	actor_join(&a);
	ck_assert_int_eq(n, NTARGETS);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(got[i].kind, CFD_CQE_OP_CANCELLED);
		ck_assert(got[i].ud >= 100 && got[i].ud < 100 + NTARGETS);
	}
	for (int k = 0; k < NTARGETS; k++)
		target_close(&t[k], -1);
	cfd_scope_unref(s);
	fx_close(&f);
}
END_TEST

/* Child scopes see their own token fire; a parent's trigger reaches them
 * through the token graph. */
START_TEST(test_nested_scopes_follow_the_token_graph)
{
	struct cfd_token *tp, *tc1, *tc2;
	struct cfd_scope *p, *c1, *c2;
	struct seen got[3];
	int fd[3][2], n;
	char b[4];
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(pipe2(fd[i], O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tp, "parent"), 0);
	ck_assert_int_eq(cfd_token_child(&tc1, tp, "child1"), 0);
	ck_assert_int_eq(cfd_token_child(&tc2, tp, "child2"), 0);
	ck_assert_int_eq(cfd_scope_new(&p, f.cu, tp), 0);
	ck_assert_int_eq(cfd_scope_new(&c1, f.cu, tc1), 0);
	ck_assert_int_eq(cfd_scope_new(&c2, f.cu, tc2), 0);
	scope_read(&f, p, fd[0][0], &b[0], 10, 0);
	scope_read(&f, c1, fd[1][0], &b[1], 11, 0);
	scope_read(&f, c2, fd[2][0], &b[2], 12, 0);
	io_uring_submit(&f.ring);

	/* the child alone */
	cfd_token_trigger(tc1);
	got[0] = expect_one(&f);
	ck_assert_uint_eq(got[0].ud, 11);
	ck_assert_int_eq(got[0].kind, CFD_CQE_OP_CANCELLED);
	ck_assert_int_eq(cfd_scope_pending(p), 1);
	ck_assert_int_eq(cfd_scope_pending(c2), 1);
	/* an op added to the cancelled child: submitted and cancelled */
	scope_read(&f, c1, fd[1][0], &b[3], 13, 0);
	io_uring_submit(&f.ring);
	got[0] = expect_one(&f);
	ck_assert_uint_eq(got[0].ud, 13);
	ck_assert_int_eq(got[0].kind, CFD_CQE_OP_CANCELLED);

	/* the parent: its own op and the other child's */
	cfd_token_trigger(tp);
	n = fx_loop(&f, got, 3, 2, T_WAIT_MS, NULL);
	ck_assert_int_eq(n, 2);
	ck_assert_uint_eq(got[0].ud + got[1].ud, 10 + 12);
	ck_assert_int_eq(got[0].kind, CFD_CQE_OP_CANCELLED);
	ck_assert_int_eq(got[1].kind, CFD_CQE_OP_CANCELLED);
	ck_assert_int_eq(cfd_token_reason(tc2), CFD_REASON_PARENT);

	cfd_scope_unref(c2);
	cfd_scope_unref(c1);
	cfd_scope_unref(p);
	cfd_token_unref(tc2);
	cfd_token_unref(tc1);
	cfd_token_unref(tp);
	for (int i = 0; i < 3; i++)
		close(fd[i][0]), close(fd[i][1]);
	fx_close(&f);
}
END_TEST

/* Shielded ops are not cancelled, even added after the cancel. */
START_TEST(test_shielded_scope_op_is_not_cancelled)
{
	struct cfd_scope *s;
	struct seen got, two[2];
	int p[2], q[2];
	char b[2];
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, NULL), 0);
	scope_read(&f, s, p[0], &b[0], 1, 0);
	scope_read(&f, s, q[0], &b[1], 2, CFD_SCOPE_SHIELD);
	io_uring_submit(&f.ring);
	cfd_scope_cancel(s);
	got = expect_one(&f);
	ck_assert_uint_eq(got.ud, 1);
	ck_assert_int_eq(got.kind, CFD_CQE_OP_CANCELLED);
	ck_assert_int_eq(cfd_scope_pending(s), 1);
	/* the shielded op is not cancelled; it ends by itself */
	ck_assert_int_eq(fx_loop(&f, &got, 1, 1, 20, NULL), 0);
	/* and a shielded op added after the cancel runs too */
	scope_read(&f, s, q[0], &b[0], 3, CFD_SCOPE_SHIELD);
	io_uring_submit(&f.ring);
	fill_pipe(q[1]);
	fill_pipe(q[1]);
	ck_assert_int_eq(fx_loop(&f, two, 2, 2, T_WAIT_MS, NULL), 2);
	for (int i = 0; i < 2; i++) {
		ck_assert(two[i].ud == 2 || two[i].ud == 3);
		ck_assert_int_eq(two[i].kind, CFD_CQE_OP);
		ck_assert_int_eq(two[i].res, 1);
	}
	ck_assert_int_eq(cfd_scope_pending(s), 0);
	cfd_scope_unref(s);
	close(p[0]), close(p[1]), close(q[0]), close(q[1]);
	fx_close(&f);
}
END_TEST

/*
 * Linked scopes (asyncio_cancel_scope's parent link): cancelling the inner
 * scope cancels the outer one; cancelling twice is harmless; an op of the
 * outer scope that failed by itself keeps its error.  The link goes one
 * way only.
 */
START_TEST(test_linked_scopes_cancel_outward_only)
{
	struct cfd_scope *inner, *outer, *other;
	struct io_uring_sqe *sqe;
	struct seen got[4];
	int p[3][2], n, ok = 0;
	char b[3];
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(pipe2(p[i], O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_scope_new(&inner, f.cu, NULL), 0);
	ck_assert_int_eq(cfd_scope_new(&outer, f.cu, NULL), 0);
	ck_assert_int_eq(cfd_scope_new(&other, f.cu, NULL), 0);
	ck_assert_int_eq(cfd_scope_link(inner, outer), 0);
	ck_assert_int_eq(cfd_scope_link(other, inner), 0);
	ck_assert_int_eq(cfd_scope_link(inner, inner), -EINVAL);

	scope_read(&f, inner, p[0][0], &b[0], 1, 0);
	scope_read(&f, outer, p[1][0], &b[1], 2, 0);
	sqe = io_uring_get_sqe(&f.ring);
	io_uring_prep_read(sqe, -1, &b[2], 1, 0); /* fails: -EBADF */
	sqe->user_data = 3;
	ck_assert_int_eq(cfd_scope_add(outer, sqe, 0), 0);
	scope_read(&f, other, p[2][0], &b[2], 4, 0);

	ck_assert_int_eq(cfd_scope_cancel(inner), 1);
	ck_assert_int_eq(cfd_scope_cancel(inner), 0);
	ck_assert_int_eq(cfd_scope_cancel(outer), 0); /* done by the link */
	ck_assert(!cfd_token_triggered(cfd_scope_token(other)));
	/* The outer token takes the inner cascade's cause. */
	ck_assert_int_eq(cfd_token_reason(cfd_scope_token(outer)),
			 CFD_REASON_PARENT);
	ck_assert_ptr_eq(cfd_token_origin(cfd_scope_token(outer)),
			 cfd_scope_token(inner));
	io_uring_submit(&f.ring);
	n = fx_loop(&f, got, 4, 3, T_WAIT_MS, NULL);
	ck_assert_int_eq(n, 3);
	for (int i = 0; i < n; i++) {
		if (got[i].ud == 3) {
			ck_assert_int_eq(got[i].kind, CFD_CQE_OP);
			ck_assert_int_eq(got[i].res, -EBADF);
		} else {
			ck_assert(got[i].ud == 1 || got[i].ud == 2);
			ck_assert_int_eq(got[i].kind, CFD_CQE_OP_CANCELLED);
		}
		ok++;
	}
	ck_assert_int_eq(ok, 3);
	ck_assert_int_eq(cfd_scope_pending(other), 1);
	/* a link made after inner was cancelled cancels at once */
	cfd_scope_unref(outer);
	ck_assert_int_eq(cfd_scope_link(inner, other), 0);
	ck_assert(cfd_token_triggered(cfd_scope_token(other)));
	got[0] = expect_one(&f);
	ck_assert_uint_eq(got[0].ud, 4);
	ck_assert_int_eq(got[0].kind, CFD_CQE_OP_CANCELLED);

	cfd_scope_unref(other);
	cfd_scope_unref(inner);
	for (int i = 0; i < 3; i++)
		close(p[i][0]), close(p[i][1]);
	fx_close(&f);
}
END_TEST

/* A linked outer scope holds the origin of the cascade that cancelled the
 * inner one: the origin outlives the inner scope and its tokens. */
START_TEST(test_linked_outer_scope_keeps_the_origin_of_the_cascade)
{
	struct cfd_token *root, *inner_tok;
	struct cfd_scope *inner, *outer;
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(cfd_token_new(&root, "root"), 0);
	ck_assert_int_eq(cfd_token_child(&inner_tok, root, "inner"), 0);
	ck_assert_int_eq(cfd_scope_new(&inner, f.cu, inner_tok), 0);
	ck_assert_int_eq(cfd_scope_new(&outer, f.cu, NULL), 0);
	ck_assert_int_eq(cfd_scope_link(inner, outer), 0);
	cfd_token_trigger_msg(root, "from the root");
	inner = cfd_scope_unref(inner);
	inner_tok = cfd_token_unref(inner_tok);
	root = cfd_token_unref(root); /* only the outer token holds it now */
	ck_assert_int_eq(cfd_token_reason(cfd_scope_token(outer)),
			 CFD_REASON_PARENT);
	ck_assert_str_eq(
	    cfd_token_name(cfd_token_origin(cfd_scope_token(outer))), "root");
	ck_assert_str_eq(cfd_token_message(cfd_scope_token(outer)),
			 "from the root");
	cfd_scope_unref(outer);
	fx_close(&f);
}
END_TEST

/* Added after the token triggered: submitted and cancelled at once, or its
 * own result if it completed inline; a link chain is cancelled whole. */
START_TEST(test_scope_op_added_after_trigger_is_cancelled)
{
	struct io_uring_sqe *sqe;
	struct cfd_scope *s;
	struct seen got[4];
	int p[2], q[2], n;
	char b[4];
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, NULL), 0);
	cfd_scope_cancel(s);
	fill_pipe(q[1]);
	scope_read(&f, s, p[0], &b[0], 1, 0);
	scope_read(&f, s, q[0], &b[1], 2, 0);
	io_uring_submit(&f.ring);
	n = fx_loop(&f, got, 4, 2, T_WAIT_MS, NULL);
	ck_assert_int_eq(n, 2);
	for (int i = 0; i < 2; i++) {
		if (got[i].ud == 1) {
			ck_assert_int_eq(got[i].kind, CFD_CQE_OP_CANCELLED);
		} else {
			ck_assert_uint_eq(got[i].ud, 2);
			ck_assert_int_eq(got[i].kind, CFD_CQE_OP);
			ck_assert_int_eq(got[i].res, 1);
		}
	}
	/* a chain: the head's cancel cannot sit inside the chain, so it is
	 * queued after the chain's last op */
	sqe = io_uring_get_sqe(&f.ring);
	io_uring_prep_read(sqe, p[0], &b[2], 1, 0);
	sqe->flags |= IOSQE_IO_LINK;
	sqe->user_data = 3;
	ck_assert_int_eq(cfd_scope_add(s, sqe, 0), 0);
	scope_read(&f, s, p[0], &b[3], 4, 0);
	io_uring_submit(&f.ring);
	n = fx_loop(&f, got, 4, 2, T_WAIT_MS, NULL);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(got[0].kind, CFD_CQE_OP_CANCELLED);
	ck_assert_int_eq(got[1].kind, CFD_CQE_OP_CANCELLED);
	ck_assert_uint_eq(got[0].ud + got[1].ud, 3 + 4);
	ck_assert_int_eq(cfd_scope_pending(s), 0);
	cfd_scope_unref(s);
	close(p[0]), close(p[1]), close(q[0]), close(q[1]);
	fx_close(&f);
}
END_TEST

/* A scope released with ops in flight keeps tracking (and cancelling)
 * them; a cfd_uring released with scope ops in flight forgets them, and
 * their CQEs carry the library's tag. */
START_TEST(test_scope_released_with_ops_in_flight_still_cancels_them)
{
	struct io_uring_cqe *cqe;
	struct cfd_token *tok;
	struct cfd_scope *s;
	struct seen got[2];
	int p[2], q[2];
	char b[3];
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "detached"), 0);
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, tok), 0);
	scope_read(&f, s, p[0], &b[0], 1, 0);
	scope_read(&f, s, q[0], &b[1], 2, 0);
	io_uring_submit(&f.ring);
	s = cfd_scope_unref(s);
	fill_pipe(q[1]);
	got[0] = expect_one(&f);
	ck_assert_uint_eq(got[0].ud, 2);
	ck_assert_int_eq(got[0].kind, CFD_CQE_OP);
	cfd_token_trigger(tok);
	got[0] = expect_one(&f);
	ck_assert_uint_eq(got[0].ud, 1);
	ck_assert_int_eq(got[0].kind, CFD_CQE_OP_CANCELLED);
	cfd_token_unref(tok);

	/* released binding: the op's CQE comes tagged */
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, NULL), 0);
	scope_read(&f, s, p[0], &b[2], 3, 0);
	io_uring_submit(&f.ring);
	cfd_scope_unref(s);
	f.cu = cfd_uring_unref(f.cu);
	fill_pipe(p[1]);
	ck_assert_int_eq(io_uring_wait_cqe(&f.ring, &cqe), 0);
	while (!(cqe->user_data != 0 && cqe->res == 1)) {
		/* the removal of the scope's token poll may come first */
		ck_assert(CFD_URING_UDATA_IS_OWN(cqe->user_data));
		io_uring_cqe_seen(&f.ring, cqe);
		ck_assert_int_eq(io_uring_wait_cqe(&f.ring, &cqe), 0);
	}
	ck_assert(CFD_URING_UDATA_IS_OWN(cqe->user_data));
	io_uring_cqe_seen(&f.ring, cqe);
	close(p[0]), close(p[1]), close(q[0]), close(q[1]);
	fx_close(&f);
}
END_TEST

/* Two scopes on one token share its poll; one goes, the other still
 * cancels. */
START_TEST(test_scopes_on_one_token_share_its_poll)
{
	struct cfd_scope *s1, *s2;
	struct cfd_token *tok;
	struct seen got[2];
	int p[2];
	char b[2];
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "shared"), 0);
	ck_assert_int_eq(cfd_scope_new(&s1, f.cu, tok), 0);
	ck_assert_int_eq(cfd_scope_new(&s2, f.cu, tok), 0);
	scope_read(&f, s2, p[0], &b[1], 2, 0);
	io_uring_submit(&f.ring);
	s1 = cfd_scope_unref(s1);
	cfd_token_trigger(tok);
	got[0] = expect_one(&f);
	ck_assert_uint_eq(got[0].ud, 2);
	ck_assert_int_eq(got[0].kind, CFD_CQE_OP_CANCELLED);
	cfd_scope_unref(s2);
	cfd_token_unref(tok);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/*
 * An op added to a scope whose token triggered before the scope was made,
 * linked to a caller's op outside the scope: it is cancelled without a
 * completion or a library call to wait for, the caller's linked op fails
 * -ECANCELED as behind any cancelled op, and the scope drains.
 */
START_TEST(test_cancelled_scope_op_linked_to_outside_op)
{
	struct io_uring_sqe *sqe;
	struct cfd_token *tok;
	struct cfd_scope *s;
	struct seen got[2];
	int p[2], n;
	char b;
	struct fx f;

	if (!fx_open(&f, KIND, 32, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "gone"), 0);
	cfd_token_trigger(tok);
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, tok), 0);
	sqe = io_uring_get_sqe(&f.ring);
	io_uring_prep_read(sqe, p[0], &b, 1, 0);
	sqe->user_data = 1;
	sqe->flags |= IOSQE_IO_LINK;
	ck_assert_int_eq(cfd_scope_add(s, sqe, 0), 0);
	sqe = io_uring_get_sqe(&f.ring);
	io_uring_prep_nop(sqe);
	sqe->user_data = 2;
	io_uring_submit(&f.ring);
	n = fx_loop(&f, got, 2, 2, T_WAIT_MS, NULL);
	ck_assert_int_eq(n, 2);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(got[i].res, -ECANCELED);
		ck_assert_int_eq(got[i].kind, got[i].ud == 1
						  ? CFD_CQE_OP_CANCELLED
						  : CFD_CQE_OP);
	}
	ck_assert_uint_eq(got[0].ud + got[1].ud, 3);
	ck_assert_int_eq(cfd_scope_pending(s), 0);
	cfd_scope_unref(s);
	cfd_token_unref(tok);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/* 10,000 pending ops in one scope, one trigger (from another thread): all
 * cancelled, each reaped once, through a CQ far smaller than that. */
START_TEST(test_10000_scope_ops_cancelled_through_a_small_cq)
{
	enum { N = 10000 };
	static struct seen got[N + 1];
	static unsigned char hit[N];
	struct cfd_scope *s;
	struct actor a;
	int p[2], n;
	char b;
	struct fx f;

	if (!fx_open(&f, KIND, 256, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, NULL), 0);
	for (int i = 0; i < N; i++)
		scope_read(&f, s, p[0], &b, i, 0);
	io_uring_submit(&f.ring);
	ck_assert_int_eq(cfd_scope_pending(s), N);
	actor_start_queued(&a, &f.ring, ACT_TRIGGER, cfd_scope_token(s), NULL);
	n = fx_loop(&f, got, N + 1, N, 120000, NULL);
	actor_join(&a);
	ck_assert_int_eq(n, N);
	memset(hit, 0, sizeof(hit));
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(got[i].kind, CFD_CQE_OP_CANCELLED);
		ck_assert_uint_lt(got[i].ud, N);
		ck_assert(!hit[got[i].ud]);
		hit[got[i].ud] = 1;
	}
	ck_assert_int_eq(cfd_scope_pending(s), 0);
	ck_assert_int_eq(fx_loop(&f, got, N + 1, 1, 20, NULL), 0);
	cfd_scope_unref(s);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

static Suite *uring_scope_suite(void)
{
	Suite *s = suite_create("uring-scope");
	TCase *tc;

	tc = t_tcase("scope");
	tcase_add_loop_test(tc,
			    test_scope_op_ends_by_itself_or_is_cancelled_once,
			    0, NRING_KINDS);
	tcase_add_loop_test(
	    tc, test_scope_op_cancelled_by_someone_else_is_the_ops_result, 0,
	    NRING_KINDS);
	tcase_add_loop_test(
	    tc, test_scope_cancel_from_a_thread_reaches_every_kind_of_op, 0,
	    NRING_KINDS);
	tcase_add_loop_test(tc, test_nested_scopes_follow_the_token_graph, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_shielded_scope_op_is_not_cancelled, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_linked_scopes_cancel_outward_only, 0,
			    NRING_KINDS);
	tcase_add_loop_test(
	    tc, test_linked_outer_scope_keeps_the_origin_of_the_cascade, 0,
	    NRING_KINDS);
	tcase_add_loop_test(tc, test_scope_op_added_after_trigger_is_cancelled,
			    0, NRING_KINDS);
	tcase_add_loop_test(
	    tc, test_scope_released_with_ops_in_flight_still_cancels_them, 0,
	    NRING_KINDS);
	tcase_add_loop_test(tc, test_scopes_on_one_token_share_its_poll, 0,
			    NRING_KINDS);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("ring kinds", 120);
	tcase_add_loop_test(tc, test_cancelled_scope_op_linked_to_outside_op, 0,
			    NRING_KINDS);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("scope-10000", 240);
	tcase_add_loop_test(tc,
			    test_10000_scope_ops_cancelled_through_a_small_cq,
			    0, NRING_KINDS);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_uring_main(uring_scope_suite);
}
