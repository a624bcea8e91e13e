/* SPDX-License-Identifier: MIT */
/*
 * Description: the io_uring binding (lib/uring.c) and its token polls
 * (lib/uring-poll.c): the backlog of CQEs a wait reaped (in order, whole
 * 32-byte CQEs, an SQ the caller left full, a CQ that overflows); a token's
 * poll that lives with its users, is re-armed after someone else cancels
 * it or a CQ overflow ends it; IOSQE_IO_DRAIN after waits; a new binding
 * of a ring whose old one left ops in flight; a submit the kernel refuses;
 * bad input, fork and rings it cannot serve.  The wait and scopes have
 * their own suites: test-uring-wait.c, test-uring-wait-races.c,
 * test-uring-scope.c.
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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uring-helpers.h"

/* ---- the backlog ---- */

/* CQEs of the caller's own ops and of scope ops reaped by a wait come
 * back, in order, from the backlog; each scope op reaches the caller once. */
START_TEST(test_backlog_hands_back_reaped_cqes_in_order)
{
	struct cfd_op_result res[1];
	struct cfd_wait_result wr;
	struct io_uring_sqe op, *sqe;
	struct io_uring_cqe cqe;
	struct cfd_token *tok;
	struct cfd_scope *s;
	struct target t;
	struct actor a;
	struct seen seen[4];
	int p[2], q[2], n = 0, kind;
	bool got45 = false;
	char b, c, d;
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "backlog"), 0);
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, tok), 0);
	/* the caller's: two NOPs; the scope's: a read that completes, and
	 * one that the token will cancel */
	for (int i = 0; i < 2; i++) {
		sqe = io_uring_get_sqe(&f.ring);
		io_uring_prep_nop(sqe);
		sqe->user_data = 41 + i;
	}
	fill_pipe(q[1]);
	sqe = io_uring_get_sqe(&f.ring);
	io_uring_prep_read(sqe, q[0], &c, 1, 0);
	sqe->user_data = 44;
	ck_assert_int_eq(cfd_scope_add(s, sqe, 0), 0);
	sqe = io_uring_get_sqe(&f.ring);
	io_uring_prep_read(sqe, p[0], &d, 1, 0);
	sqe->user_data = 45;
	ck_assert_int_eq(cfd_scope_add(s, sqe, 0), 0);
	ck_assert_int_eq(cfd_scope_pending(s), 2);
	io_uring_submit(&f.ring);

	/* the wait shares the scope's token */
	target_open(&t, T_PIPE);
	memset(&op, 0, sizeof(op));
	target_prep(&t, &op);
	actor_start(&a, &f.ring, ACT_TRIGGER, tok, NULL);
	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, &op, 1, -1, 0, res, &wr),
			 CFD_BY_TOKEN);
	actor_join(&a);
	(void)b;

	ck_assert_int_eq(cfd_uring_backlog(f.cu, &cqe), CFD_CQE_OP);
	ck_assert_uint_eq(cqe.user_data, 41);
	ck_assert_int_eq(cfd_uring_backlog(f.cu, &cqe), CFD_CQE_OP);
	ck_assert_uint_eq(cqe.user_data, 42);
	ck_assert_int_eq(cfd_uring_backlog(f.cu, &cqe), CFD_CQE_OP);
	ck_assert_uint_eq(cqe.user_data, 44);
	ck_assert_int_eq(cqe.res, 1);
	/* 45 was cancelled by the scope: in the backlog, or still to come */
	kind = cfd_uring_backlog(f.cu, &cqe);
	if (kind >= 0) {
		ck_assert_int_eq(kind, CFD_CQE_OP_CANCELLED);
		ck_assert_uint_eq(cqe.user_data, 45);
		got45 = true;
	} else {
		ck_assert_int_eq(kind, -EAGAIN);
		n = fx_loop(&f, seen, 4, 1, T_WAIT_MS, NULL);
		ck_assert_int_eq(n, 1);
		ck_assert_uint_eq(seen[0].ud, 45);
		ck_assert_int_eq(seen[0].kind, CFD_CQE_OP_CANCELLED);
		got45 = true;
	}
	ck_assert(got45);
	ck_assert_int_eq(cfd_uring_backlog(f.cu, &cqe), -EAGAIN);
	ck_assert_int_eq(cfd_scope_pending(s), 0);
	ck_assert_int_eq(fx_loop(&f, seen, 4, 1, 20, NULL), 0); /* once */

	cfd_scope_unref(s);
	cfd_token_unref(tok);
	target_close(&t, -1);
	close(p[0]), close(p[1]), close(q[0]), close(q[1]);
	fx_close(&f);
}
END_TEST

/* A ring with 32-byte CQEs: the backlog hands back whole CQEs. */
START_TEST(test_backlog_hands_back_whole_32_byte_cqes)
{
	uint64_t out[4]; /* a 32-byte CQE */
	struct io_uring_cqe *cqe = (struct io_uring_cqe *)out;
	struct io_uring_params prm;
	struct cfd_uring *cu;
	struct io_uring ring;
	struct io_uring_sqe *sqe;
	int r;

	memset(&prm, 0, sizeof(prm));
	prm.flags = IORING_SETUP_CQE32;
	r = io_uring_queue_init_params(4, &ring, &prm);
	if (r == -EINVAL)
		return;
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(cfd_uring_new(&cu, &ring), 0);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_nop(sqe);
	sqe->user_data = 7;
	io_uring_submit(&ring);
	ck_assert_int_eq(
	    cfd_uring_wait(cu, NULL, NULL, 0, CFD_MSEC(1), 0, NULL, NULL),
	    CFD_BY_TIMEOUT);
	memset(out, 0xaa, sizeof(out));
	ck_assert_int_eq(cfd_uring_backlog(cu, cqe), CFD_CQE_OP);
	ck_assert_uint_eq(cqe->user_data, 7);
	ck_assert_uint_eq(out[2], 0); /* the big half, copied */
	ck_assert_uint_eq(out[3], 0);
	cfd_uring_unref(cu);
	io_uring_queue_exit(&ring);
}
END_TEST

/* The caller left the SQ full: the wait submits those first (their CQEs
 * come back through the backlog). */
START_TEST(test_sq_left_full_is_submitted_first)
{
	struct cfd_op_result res[1];
	struct io_uring_sqe op, *sqe;
	struct io_uring_cqe cqe;
	int p[2], n = 0;
	char b;
	struct fx f;

	if (!fx_open(&f, KIND, 4, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	while ((sqe = io_uring_get_sqe(&f.ring))) {
		io_uring_prep_nop(sqe);
		sqe->user_data = 70 + n++;
	}
	fill_pipe(p[1]);
	op = sqe_read(p[0], &b, 1);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, NULL, &op, 1, CFD_SEC(10), 0, res, NULL),
	    CFD_BY_OP);
	ck_assert_int_eq(res[0].res, 1);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(cfd_uring_backlog(f.cu, &cqe), CFD_CQE_OP);
		ck_assert_uint_eq(cqe.user_data, 70 + i);
	}
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/* The wait's own CQEs overflow the CQ (the caller's NOPs fill it first):
 * every result arrives, the NOPs come back in order. */
START_TEST(test_wait_cqes_overflowing_the_cq_all_arrive)
{
	enum { N = 30, NNOP = 40 };
	struct io_uring_sqe ops[N], *sqe;
	struct cfd_op_result res[N];
	struct cfd_wait_result wr;
	struct io_uring_cqe cqe;
	int p[2];
	char b[N];
	struct fx f;

	if (!fx_open(&f, KIND, 32, 32))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	for (int i = 0; i < NNOP; i++) {
		sqe = io_uring_get_sqe(&f.ring);
		if (!sqe) {
			io_uring_submit(&f.ring);
			sqe = io_uring_get_sqe(&f.ring);
		}
		io_uring_prep_nop(sqe);
		sqe->user_data = 300 + i;
	}
	io_uring_submit(&f.ring);
	for (int i = 0; i < N; i++) {
		fill_pipe(p[1]);
		ops[i] = sqe_read(p[0], &b[i], 1);
	}
	ck_assert_int_eq(cfd_uring_wait(f.cu, NULL, ops, N, CFD_SEC(10),
					CFD_WAIT_ALL, res, &wr),
			 CFD_BY_OP);
	ck_assert_uint_eq(wr.completed, N);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(res[i].res, 1);
	for (int i = 0; i < NNOP; i++) {
		ck_assert_int_eq(cfd_uring_backlog(f.cu, &cqe), CFD_CQE_OP);
		ck_assert_uint_eq(cqe.user_data, 300 + i);
	}
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/* ---- token polls ---- */

/*
 * A token's poll lives while a wait or a scope uses it: a wait on a token
 * arms it with its op and removes it on return (so nothing of the
 * library's stays in flight, and no token's eventfd is kept); with a
 * scope on the token, waits share the scope's poll and submit only their
 * op.
 */
START_TEST(test_token_poll_lives_with_its_users)
{
	struct cfd_op_result res[1];
	struct cfd_token *toks[40];
	struct io_uring_sqe op;
	struct cfd_scope *s;
	unsigned h0;
	int p[2], fds0;
	char b;
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&toks[0], "shared"), 0);
	for (int i = 0; i < 3; i++) {
		fill_pipe(p[1]);
		op = sqe_read(p[0], &b, 1);
		h0 = sq_consumed(&f.ring);
		ck_assert_int_eq(
		    cfd_uring_wait(f.cu, toks[0], &op, 1, -1, 0, res, NULL),
		    CFD_BY_OP);
		/* poll and op, then the poll's removal */
		ck_assert_uint_eq(sq_consumed(&f.ring) - h0, 3);
	}
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, toks[0]), 0);
	io_uring_submit(&f.ring); /* the scope's poll */
	for (int i = 0; i < 3; i++) {
		fill_pipe(p[1]);
		op = sqe_read(p[0], &b, 1);
		h0 = sq_consumed(&f.ring);
		ck_assert_int_eq(
		    cfd_uring_wait(f.cu, toks[0], &op, 1, -1, 0, res, NULL),
		    CFD_BY_OP);
		ck_assert_uint_eq(sq_consumed(&f.ring) - h0, 1);
	}
	cfd_scope_unref(s);
	cfd_token_unref(toks[0]);

	fds0 = t_count_fds();
	for (int i = 0; i < 40; i++) {
		ck_assert_int_eq(cfd_token_new(&toks[i], "many"), 0);
		fill_pipe(p[1]);
		op = sqe_read(p[0], &b, 1);
		ck_assert_int_eq(
		    cfd_uring_wait(f.cu, toks[i], &op, 1, -1, 0, res, NULL),
		    CFD_BY_OP);
		cfd_token_unref(toks[i]);
	}
	/* no token's eventfd is kept once its wait returned */
	ck_assert_int_eq(t_count_fds(), fds0);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/* Someone else cancels the library's token poll (ASYNC_CANCEL by fd):
 * the library re-arms it, and the caller's cancel op is the caller's. */
START_TEST(test_token_poll_cancelled_from_outside_is_rearmed)
{
	struct io_uring_sqe *sqe;
	struct cfd_token *tok;
	struct cfd_scope *s;
	struct seen got[2];
	int p[2];
	char b;
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "outside"), 0);
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, tok), 0);
	scope_read(&f, s, p[0], &b, 1, 0);
	io_uring_submit(&f.ring);
	sqe = io_uring_get_sqe(&f.ring);
	io_uring_prep_cancel_fd(sqe, cfd_token_fd(tok), 0);
	sqe->user_data = 99;
	io_uring_submit(&f.ring);
	got[0] = expect_one(&f);
	ck_assert_uint_eq(got[0].ud, 99);
	ck_assert_int_eq(got[0].res, 0);
	cfd_token_trigger(tok);
	got[0] = expect_one(&f);
	ck_assert_uint_eq(got[0].ud, 1);
	ck_assert_int_eq(got[0].kind, CFD_CQE_OP_CANCELLED);
	cfd_scope_unref(s);
	cfd_token_unref(tok);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/*
 * A ring whose CQ is tiny: a CQ overflow ends the token's multishot poll
 * (a CQE without IORING_CQE_F_MORE); the library re-arms it, no CQE is
 * lost, and the trigger still cancels the scope.  Then a wait on the same
 * ring while the CQ overflows hands the caller's CQEs back in order.
 */
START_TEST(test_cq_overflow_ends_the_token_poll_and_it_is_rearmed)
{
	enum { NNOP = 24 };
	struct cfd_op_result res[2];
	struct cfd_wait_result wr;
	struct io_uring_sqe *sqe, ops[2];
	struct io_uring_cqe cqe;
	struct loop_stats st = { 0, 0 };
	struct seen got[NNOP + 4];
	struct cfd_token *tok;
	struct cfd_scope *s;
	struct actor a;
	uint64_t one = 1;
	int p[2], n, nop = 0, cancelled = 0;
	char b[4];
	struct fx f;

	if (!fx_open(&f, KIND, 4, 8))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "tiny"), 0);
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, tok), 0);
	scope_read(&f, s, p[0], &b[0], 1000, 0);
	scope_read(&f, s, p[0], &b[1], 1001, 0);
	io_uring_submit(&f.ring);
	/* overflow the CQ with the caller's NOPs, reaping nothing */
	for (int i = 0; i < NNOP; i++) {
		sqe = io_uring_get_sqe(&f.ring);
		if (!sqe) {
			io_uring_submit(&f.ring);
			sqe = io_uring_get_sqe(&f.ring);
		}
		io_uring_prep_nop(sqe);
		sqe->user_data = i;
	}
	io_uring_submit(&f.ring);
	ck_assert(io_uring_cq_has_overflow(&f.ring));
	/* an outside write to the token's eventfd: the poll's CQE meets the
	 * overflow and the poll ends; the token has not triggered */
	ck_assert_int_eq(write(cfd_token_fd(tok), &one, 8), 8);
	n = fx_loop(&f, got, NNOP + 4, NNOP, T_WAIT_MS, &st);
	ck_assert_int_eq(n, NNOP);
	for (int i = 0; i < NNOP; i++) {
		ck_assert_uint_eq(got[i].ud, i); /* all, in order */
		ck_assert_int_eq(got[i].kind, CFD_CQE_OP);
	}
	/* the poll's last CQE sits behind the NOPs: read on a little */
	ck_assert_int_eq(fx_loop(&f, got, NNOP + 4, 1, 100, &st), 0);
	ck_assert_uint_ge(st.own_terminal, 1); /* the poll did end */
	ck_assert_int_eq(cfd_scope_pending(s), 2);
	/* re-armed: the trigger still reaches the scope */
	cfd_token_trigger(tok);
	n = fx_loop(&f, got, NNOP + 4, 2, T_WAIT_MS, &st);
	ck_assert_int_eq(n, 2);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(got[i].kind, CFD_CQE_OP_CANCELLED);
	cfd_scope_unref(s);
	cfd_token_unref(tok);

	/* a wait while the caller's NOPs overflow the CQ */
	ck_assert_int_eq(cfd_token_new(&tok, "tiny-wait"), 0);
	for (int i = 0; i < NNOP; i++) {
		sqe = io_uring_get_sqe(&f.ring);
		if (!sqe) {
			io_uring_submit(&f.ring);
			sqe = io_uring_get_sqe(&f.ring);
		}
		io_uring_prep_nop(sqe);
		sqe->user_data = 500 + i;
	}
	io_uring_submit(&f.ring);
	ops[0] = sqe_read(p[0], &b[2], 1);
	ops[1] = sqe_read(p[0], &b[3], 1);
	actor_start(&a, &f.ring, ACT_TRIGGER, tok, NULL);
	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, ops, 2, -1, 0, res, &wr),
			 CFD_BY_TOKEN);
	actor_join(&a);
	for (int i = 0; i < 2; i++)
		cancelled += res[i].state == CFD_OP_CANCELLED;
	ck_assert_int_eq(cancelled, 2);
	while (cfd_uring_backlog(f.cu, &cqe) == CFD_CQE_OP) {
		ck_assert_uint_eq(cqe.user_data, 500 + nop);
		nop++;
	}
	ck_assert_int_eq(nop, NNOP);
	cfd_token_unref(tok);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/* ---- drains, bindings, refused submits ---- */

/* Submit the caller's drained NOP (user_data ud). */
static void drain_nop(struct fx *f, uint64_t ud)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&f->ring);

	io_uring_prep_nop(sqe);
	sqe->flags |= IOSQE_IO_DRAIN;
	sqe->user_data = ud;
	io_uring_submit(&f->ring);
}

/* The res of the caller's op ud, passing the library's CQEs, or 1 when
 * it did not complete within ms. */
static int op_result_within(struct fx *f, uint64_t ud, int ms)
{
	int64_t end = t_now_ns() + (int64_t)ms * 1000000;

	do {
		struct io_uring_cqe *cqe = fx_wait_cqe(&f->ring, 5);
		uint64_t got;

		if (!cqe)
			continue;
		if (cfd_uring_cqe(f->cu, cqe, &got) == CFD_CQE_OP) {
			int res = cqe->res;

			ck_assert_uint_eq(got, ud);
			io_uring_cqe_seen(&f->ring, cqe);
			return res;
		}
		io_uring_cqe_seen(&f->ring, cqe);
	} while (t_now_ns() < end);
	return 1;
}

/*
 * IOSQE_IO_DRAIN works on a bound ring: once its waits have returned and
 * no scope lives, the library has nothing in flight that a drain would
 * wait for (nor has it ever used IOSQE_CQE_SKIP_SUCCESS, with which the
 * kernel refuses drains).  A later wait with a deadline returns at it.
 * (While a scope lives, its token's multishot poll never completes by
 * itself, and a drain would wait for it for ever: cancelfd-uring(7).)
 */
START_TEST(test_drain_works_once_the_waits_returned)
{
	struct cfd_op_result res;
	struct cfd_wait_result why;
	struct io_uring_sqe op;
	struct cfd_token *tok;
	struct cfd_scope *s;
	int p[2];
	char c;
	struct fx f;

	if (!fx_open(&f, KIND, 16, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "t"), 0);
	memset(&op, 0, sizeof(op));
	io_uring_prep_nop(&op);
	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, &op, 1, -1, 0, &res, &why),
			 CFD_BY_OP);
	/* a wait that a token's trigger ended, and one its deadline did */
	op = sqe_read(p[0], &c, 1);
	cfd_token_unref(tok);
	ck_assert_int_eq(cfd_token_new(&tok, "t2"), 0);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, tok, &op, 1, CFD_MSEC(1), 0, &res, &why),
	    CFD_BY_TIMEOUT);
	drain_nop(&f, 3);
	ck_assert_int_eq(op_result_within(&f, 3, T_WAIT_MS), 0);
	op = sqe_read(p[0], &c, 1);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, NULL, &op, 1, CFD_MSEC(50), 0, &res, &why),
	    CFD_BY_TIMEOUT);
	ck_assert_int_eq(res.state, CFD_OP_CANCELLED);

	/* and once a scope has come and gone */
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, tok), 0);
	io_uring_submit(&f.ring);
	cfd_scope_unref(s);
	drain_nop(&f, 4);
	ck_assert_int_eq(op_result_within(&f, 4, T_WAIT_MS), 0);
	cfd_token_unref(tok);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/*
 * A binding released with a scope op in flight, and a new binding on the
 * same ring: the old op's completion is the library's (CFD_CQE_OWN) for the
 * new binding, never taken for an op of its own, and the new op is
 * reported once, when it completes.
 */
START_TEST(test_new_binding_ignores_forgotten_ops)
{
	struct cfd_scope *s;
	struct seen got[2];
	struct loop_stats st = { 0 };
	int p[2], q[2];
	char b = 0, c = 0;
	struct fx f;

	if (!fx_open(&f, KIND, 16, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, NULL), 0);
	scope_read(&f, s, p[0], &b, 1, 0);
	io_uring_submit(&f.ring);
	cfd_scope_unref(s);
	f.cu = cfd_uring_unref(f.cu);

	ck_assert_int_eq(cfd_uring_new(&f.cu, &f.ring), 0);
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, NULL), 0);
	scope_read(&f, s, q[0], &c, 2, 0);
	io_uring_submit(&f.ring);
	fill_pipe(p[1]); /* the forgotten read completes */
	ck_assert_int_eq(fx_loop(&f, got, 2, 1, 100, &st), 0);
	ck_assert_uint_ge(st.own, 1);
	ck_assert_int_eq(cfd_scope_pending(s), 1);
	fill_pipe(q[1]);
	ck_assert_int_eq(fx_loop(&f, got, 2, 1, T_WAIT_MS, NULL), 1);
	ck_assert_uint_eq(got[0].ud, 2);
	ck_assert_int_eq(got[0].kind, CFD_CQE_OP);
	ck_assert_int_eq(got[0].res, 1);
	ck_assert_int_eq(c, 'x');
	ck_assert_int_eq(cfd_scope_pending(s), 0);
	cfd_scope_unref(s);
	close(p[0]), close(p[1]), close(q[0]), close(q[1]);
	fx_close(&f);
}
END_TEST

struct wrong_thread {
	struct fx *f;
	struct cfd_token *tok;
	struct io_uring_sqe op;
	struct cfd_op_result res[1];
	int64_t timeout;
	int r;
};

static void *wrong_thread_main(void *arg)
{
	struct wrong_thread *wt = arg;

	wt->r = cfd_uring_wait(wt->f->cu, wt->tok, &wt->op, 1, wt->timeout, 0,
			       wt->res, NULL);
	return NULL;
}

static void refused_wait(struct wrong_thread *wt, int64_t timeout)
{
	pthread_t th;

	wt->timeout = timeout;
	ck_assert_int_eq(pthread_create(&th, NULL, wrong_thread_main, wt), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert_int_eq(wt->r, -EEXIST);
	ck_assert_int_eq(wt->res[0].state, CFD_OP_NOT_SUBMITTED);
}

/*
 * The kernel refuses the submit (a SINGLE_ISSUER ring entered from another
 * thread: -EEXIST): nothing of the wait runs, its SQEs are taken back, and
 * what they would have armed (the token's poll, the timer, or a move of
 * the timer) is undone, so that the owner's next waits arm them for real.
 */
START_TEST(test_refused_submit_undoes_what_it_would_have_armed)
{
	struct cfd_op_result res[1];
	struct wrong_thread wt;
	struct io_uring_sqe op;
	struct target t;
	struct actor a;
	int64_t t0;
	int p[2];
	char b;
	struct fx f;

	if (!fx_open(&f, RING_DEFER, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	target_open(&t, T_PIPE);
	memset(&wt, 0, sizeof(wt));
	wt.f = &f;
	ck_assert_int_eq(cfd_token_new(&wt.tok, "refused"), 0);
	wt.op = sqe_read(p[0], &b, 1);

	/* the poll and the timer it would have armed: armed for real by the
	 * owner's waits (a deadline must end the second one) */
	refused_wait(&wt, CFD_SEC(10));
	memset(&op, 0, sizeof(op));
	target_prep(&t, &op);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, wt.tok, &op, 1, CFD_MSEC(5), 0, res, NULL),
	    CFD_BY_TIMEOUT);
	actor_start(&a, &f.ring, ACT_TRIGGER, wt.tok, NULL);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, wt.tok, &wt.op, 1, CFD_SEC(10), 0, res, NULL),
	    CFD_BY_TOKEN);
	actor_join(&a);
	ck_assert_int_eq(res[0].state, CFD_OP_CANCELLED);
	cfd_token_unref(wt.tok);

	/* a move of the timer it would have made: the timer is at +10 s;
	 * the refused wait would move it to +5 ms; the owner's +20 ms wait
	 * must move it itself (or it would wait 10 s) */
	wt.tok = NULL;
	fill_pipe(p[1]);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, NULL, &wt.op, 1, CFD_SEC(10), 0, res, NULL),
	    CFD_BY_OP);
	refused_wait(&wt, CFD_MSEC(5));
	t0 = t_now_ns();
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, NULL, &op, 1, CFD_MSEC(20), 0, res, NULL),
	    CFD_BY_TIMEOUT);
	ck_assert_int_lt(t_now_ns() - t0, CFD_SEC(5));

	target_close(&t, -1);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/* ---- bad input, fork, unsupported rings ---- */

START_TEST(test_bad_arguments_are_einval)
{
	struct cfd_op_result res[1];
	struct io_uring_sqe op, *sqe;
	struct io_uring_cqe cqe = { 0 };
	struct cfd_uring *cu = (struct cfd_uring *)0x1;
	struct cfd_scope *s = (struct cfd_scope *)0x1;
	uint64_t ud;
	int p[2];
	char b;
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	op = sqe_read(p[0], &b, 1);
	ck_assert_int_eq(cfd_uring_new(NULL, &f.ring), -EINVAL);
	ck_assert_int_eq(cfd_uring_new(&cu, NULL), -EINVAL);
	ck_assert_ptr_eq(cu, (struct cfd_uring *)0x1); /* untouched */
	ck_assert_int_eq(cfd_uring_wait(NULL, NULL, &op, 1, -1, 0, res, NULL),
			 -EINVAL);
	ck_assert_int_eq(cfd_uring_wait(f.cu, NULL, NULL, 1, -1, 0, res, NULL),
			 -EINVAL);
	ck_assert_int_eq(cfd_uring_wait(f.cu, NULL, &op, 1, -1, 0, NULL, NULL),
			 -EINVAL);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, NULL, &op, 1, -1, 1u << 7, res, NULL),
	    -EINVAL);
	ck_assert_int_eq(cfd_uring_wait(f.cu, NULL, &op, CFD_URING_WAIT_MAX + 1,
					-1, 0, res, NULL),
			 -EINVAL);
	/* more ops (and the token's poll) than the SQ holds */
	{
		struct io_uring_sqe ops[8];
		struct cfd_op_result r8[8];
		struct cfd_token *tok = t_new_token("t");

		for (int i = 0; i < 8; i++)
			ops[i] = op;
		ck_assert_int_eq(
		    cfd_uring_wait(f.cu, tok, ops, 8, CFD_MSEC(1), 0, r8, NULL),
		    -EINVAL);
		ck_assert_int_eq(r8[7].state, CFD_OP_NOT_SUBMITTED);
		cfd_token_unref(tok);
	}
	op.flags |= IOSQE_CQE_SKIP_SUCCESS;
	ck_assert_int_eq(cfd_uring_wait(f.cu, NULL, &op, 1, -1, 0, res, NULL),
			 -EINVAL);
	ck_assert_int_eq(cfd_uring_cqe(NULL, &cqe, &ud), -EINVAL);
	ck_assert_int_eq(cfd_uring_cqe(f.cu, NULL, &ud), -EINVAL);
	ck_assert_int_eq(cfd_uring_cqe(f.cu, &cqe, NULL), -EINVAL);
	ck_assert_int_eq(cfd_uring_backlog(NULL, &cqe), -EINVAL);
	ck_assert_int_eq(cfd_uring_backlog(f.cu, NULL), -EINVAL);
	ck_assert_int_eq(cfd_scope_new(NULL, f.cu, NULL), -EINVAL);
	ck_assert_int_eq(cfd_scope_new(&s, NULL, NULL), -EINVAL);
	ck_assert_ptr_eq(s, (struct cfd_scope *)0x1);
	ck_assert_int_eq(cfd_scope_add(NULL, &op, 0), -EINVAL);
	ck_assert_int_eq(cfd_scope_cancel(NULL), -EINVAL);
	ck_assert_int_eq(cfd_scope_pending(NULL), -EINVAL);
	ck_assert_int_eq(cfd_scope_link(NULL, NULL), -EINVAL);
	ck_assert_ptr_null(cfd_scope_token(NULL));
	ck_assert_ptr_null(cfd_scope_unref(NULL));
	ck_assert_ptr_null(cfd_uring_unref(NULL));
	ck_assert_ptr_null(cfd_uring_ref(NULL));
	ck_assert_ptr_null(cfd_scope_ref(NULL));

	ck_assert_int_eq(cfd_scope_new(&s, f.cu, NULL), 0);
	sqe = io_uring_get_sqe(&f.ring);
	io_uring_prep_nop(sqe);
	sqe->user_data = 5;
	ck_assert_int_eq(cfd_scope_add(s, NULL, 0), -EINVAL);
	ck_assert_int_eq(cfd_scope_add(s, sqe, 1u << 5), -EINVAL);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	ck_assert_int_eq(cfd_scope_add(s, sqe, 0), -EINVAL);
	sqe->flags = 0;
	sqe->user_data = (uint64_t)CFD_URING_UDATA_TAG << 48;
	ck_assert_int_eq(cfd_scope_add(s, sqe, 0), -EINVAL);
	sqe->user_data = 5; /* never added: it is the caller's NOP */
	io_uring_submit(&f.ring);
	ck_assert_int_eq(
	    fx_loop(&f, (struct seen[1]){ { 0 } }, 1, 1, T_WAIT_MS, NULL), 1);
	ck_assert_int_eq(cfd_scope_pending(s), 0);
	cfd_scope_unref(s);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/* A ring that was never set up is bad input (-EINVAL), not a kernel that
 * lacks something; an early -EINVAL marks every op not submitted. */
START_TEST(test_unset_ring_is_einval_and_early_errors_submit_nothing)
{
	struct cfd_op_result res[2] = { { 0, 0, 77 }, { 0, 0, 77 } };
	struct cfd_uring *cu = (struct cfd_uring *)0x1;
	struct io_uring_sqe ops[2];
	struct io_uring zero;
	int p[2];
	char b;
	struct fx f;

	memset(&zero, 0, sizeof(zero));
	ck_assert_int_eq(cfd_uring_new(&cu, &zero), -EINVAL);
	ck_assert_ptr_eq(cu, (struct cfd_uring *)0x1);
	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ops[0] = sqe_read(p[0], &b, 1);
	ops[1] = ops[0];
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, NULL, ops, 2, CFD_MSEC(1), 1u << 7, res, NULL),
	    -EINVAL);
	ck_assert_int_eq(res[0].state, CFD_OP_NOT_SUBMITTED);
	ck_assert_int_eq(res[1].state, CFD_OP_NOT_SUBMITTED);
	res[0].state = res[1].state = 77;
	ops[1].flags |= IOSQE_CQE_SKIP_SUCCESS;
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, NULL, ops, 2, CFD_MSEC(1), 0, res, NULL),
	    -EINVAL);
	ck_assert_int_eq(res[0].state, CFD_OP_NOT_SUBMITTED);
	ck_assert_int_eq(res[1].state, CFD_OP_NOT_SUBMITTED);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/* In the child: the ring's memory is shared with the parent, so nothing
 * here may touch it. */
struct fork_child {
	struct fx *f;
	struct cfd_scope *s;
	struct io_uring_sqe op;
};

static int fork_child(void *arg)
{
	struct fork_child *fc = arg;
	struct io_uring_cqe cqe = { 0 };
	struct cfd_op_result res[1];
	struct cfd_scope *s2;
	uint64_t ud;

	T_CHILD_CHECK(cfd_uring_wait(fc->f->cu, NULL, &fc->op, 1, -1, 0, res,
				     NULL) == -ECHILD);
	T_CHILD_CHECK(cfd_uring_cqe(fc->f->cu, &cqe, &ud) == -ECHILD);
	T_CHILD_CHECK(cfd_uring_backlog(fc->f->cu, &cqe) == -ECHILD);
	T_CHILD_CHECK(cfd_scope_new(&s2, fc->f->cu, NULL) == -ECHILD);
	T_CHILD_CHECK(cfd_scope_add(fc->s, &fc->op, 0) == -ECHILD);
	T_CHILD_CHECK(cfd_scope_pending(fc->s) == -ECHILD);
	T_CHILD_CHECK(cfd_scope_link(fc->s, fc->s) == -EINVAL);
	T_CHILD_CHECK(cfd_scope_cancel(fc->s) == -ECHILD);
	T_CHILD_CHECK(cfd_scope_unref(fc->s) == NULL);
	T_CHILD_CHECK(cfd_uring_unref(fc->f->cu) == NULL);
	return 0;
}

START_TEST(test_binding_in_a_forked_child_is_echild)
{
	struct cfd_op_result res[1];
	struct fork_child fc;
	struct cfd_token *tok;
	int p[2];
	char b;
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "fork"), 0);
	fc.f = &f;
	ck_assert_int_eq(cfd_scope_new(&fc.s, f.cu, tok), 0);
	fc.op = sqe_read(p[0], &b, 1);
	ck_assert_int_eq(t_in_child(fork_child, &fc), 0);
	/* the parent's are intact */
	ck_assert_int_eq(cfd_scope_pending(fc.s), 0);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, tok, &fc.op, 1, CFD_MSEC(1), 0, res, NULL),
	    CFD_BY_TIMEOUT);
	cfd_scope_unref(fc.s);
	cfd_token_unref(tok);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

START_TEST(test_sqpoll_and_iopoll_rings_are_refused)
{
	struct io_uring_params prm;
	struct cfd_uring *cu = NULL;
	struct io_uring ring;

	memset(&prm, 0, sizeof(prm));
	prm.flags = IORING_SETUP_SQPOLL;
	if (io_uring_queue_init_params(4, &ring, &prm) == 0) {
		ck_assert_int_eq(cfd_uring_new(&cu, &ring), -EOPNOTSUPP);
		ck_assert_ptr_null(cu);
		io_uring_queue_exit(&ring);
	}
	memset(&prm, 0, sizeof(prm));
	prm.flags = IORING_SETUP_IOPOLL;
	if (io_uring_queue_init_params(4, &ring, &prm) == 0) {
		ck_assert_int_eq(cfd_uring_new(&cu, &ring), -EOPNOTSUPP);
		io_uring_queue_exit(&ring);
	}
}
END_TEST

static Suite *uring_suite(void)
{
	Suite *s = suite_create("uring");
	TCase *tc;

	tc = t_tcase("backlog");
	tcase_add_loop_test(tc, test_backlog_hands_back_reaped_cqes_in_order, 0,
			    NRING_KINDS);
	tcase_add_test(tc, test_backlog_hands_back_whole_32_byte_cqes);
	tcase_add_loop_test(tc, test_sq_left_full_is_submitted_first, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_wait_cqes_overflowing_the_cq_all_arrive, 0,
			    NRING_KINDS);
	suite_add_tcase(s, tc);

	tc = t_tcase("token polls");
	tcase_add_loop_test(tc, test_token_poll_lives_with_its_users, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc,
			    test_token_poll_cancelled_from_outside_is_rearmed,
			    0, NRING_KINDS);
	tcase_add_loop_test(
	    tc, test_cq_overflow_ends_the_token_poll_and_it_is_rearmed, 0,
	    NRING_KINDS);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("drains, bindings", 120);
	tcase_add_loop_test(tc, test_drain_works_once_the_waits_returned, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_new_binding_ignores_forgotten_ops, 0,
			    NRING_KINDS);
	tcase_add_test(tc, test_refused_submit_undoes_what_it_would_have_armed);
	suite_add_tcase(s, tc);

	tc = t_tcase("errors");
	tcase_add_loop_test(tc, test_bad_arguments_are_einval, 0, NRING_KINDS);
	tcase_add_loop_test(
	    tc, test_unset_ring_is_einval_and_early_errors_submit_nothing, 0,
	    NRING_KINDS);
	tcase_add_loop_test(tc, test_binding_in_a_forked_child_is_echild, 0,
			    NRING_KINDS);
	tcase_add_test(tc, test_sqpoll_and_iopoll_rings_are_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_uring_main(uring_suite);
}
