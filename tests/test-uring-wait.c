/* SPDX-License-Identifier: MIT */
/*
 * Description: cfd_uring_wait() (lib/uring-wait.c): a wait ended by the
 * token, by its deadline and by the op itself, on five kinds of pending
 * op; ops completed at submit; the all-completed mode; a wait decided
 * before anything is submitted; zero ops; an op's own error; a deadline
 * that needs no request on the ring; 200 ops cancelled in batches bigger
 * than the SQ; open link chains refused; a trigger from a signal handler,
 * and a signal that interrupts the wait.  The race rules are in
 * test-uring-wait-races.c.
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uring-helpers.h"

/* ---- each kind of pending op, ended by token, deadline, itself ---- */

enum { END_TOKEN, END_TIMEOUT, END_SELF, NENDERS };

static void check_target(int kind, int tk, int ender)
{
	struct cfd_op_result res[1];
	struct cfd_wait_result wr;
	struct io_uring_sqe op;
	struct cfd_token *tok;
	struct target t;
	struct actor a;
	struct fx f;
	int r;

	if (!fx_open(&f, kind, 8, 0))
		return;
	target_open(&t, tk);
	ck_assert_int_eq(cfd_token_new(&tok, target_name(tk)), 0);
	memset(&op, 0, sizeof(op));
	target_prep(&t, &op);
	if (ender != END_TIMEOUT)
		actor_start(&a, &f.ring,
			    ender == END_TOKEN ? ACT_TRIGGER : ACT_COMPLETE,
			    tok, &t);
	r = cfd_uring_wait(f.cu, tok, &op, 1,
			   ender == END_TIMEOUT ? CFD_MSEC(5)
						: CFD_MSEC(T_WAIT_MS),
			   0, res, &wr);
	if (ender != END_TIMEOUT)
		actor_join(&a);
	ck_assert_int_eq(wr.by, r);
	switch (ender) {
	case END_TOKEN:
		ck_assert_int_eq(r, CFD_BY_TOKEN);
		ck_assert_int_eq(res[0].state, CFD_OP_CANCELLED);
		ck_assert(res[0].res == -ECANCELED || res[0].res == -EINTR);
		ck_assert_int_eq(wr.reason, CFD_REASON_MANUAL);
		ck_assert_ptr_eq(wr.origin, tok);
		ck_assert_int_eq(wr.op, -1);
		ck_assert_uint_eq(wr.completed, 0);
		break;
	case END_TIMEOUT:
		ck_assert_int_eq(r, CFD_BY_TIMEOUT);
		ck_assert_int_eq(res[0].state, CFD_OP_CANCELLED);
		ck_assert(res[0].res == -ECANCELED || res[0].res == -EINTR);
		ck_assert_int_eq(wr.reason, CFD_REASON_NONE);
		ck_assert_ptr_null(wr.origin);
		break;
	case END_SELF:
		ck_assert_int_eq(r, CFD_BY_OP);
		ck_assert_int_eq(res[0].state, CFD_OP_COMPLETED);
		target_check_completed(&t, res[0].res);
		ck_assert_int_eq(wr.op, 0);
		ck_assert_int_eq(wr.res, res[0].res);
		ck_assert_uint_eq(wr.completed, 1);
		break;
	}
	target_close(&t, ender == END_SELF ? res[0].res : -1);
	cfd_token_unref(tok);
	fx_close(&f);
}

START_TEST(test_pipe_read_cancelled_by_the_token)
{
	check_target(KIND, T_PIPE, END_TOKEN);
}
END_TEST

START_TEST(test_pipe_read_cancelled_by_the_deadline)
{
	check_target(KIND, T_PIPE, END_TIMEOUT);
}
END_TEST

START_TEST(test_pipe_read_completing_ends_the_wait)
{
	check_target(KIND, T_PIPE, END_SELF);
}
END_TEST

START_TEST(test_eventfd_read_cancelled_by_the_token)
{
	check_target(KIND, T_EVENTFD, END_TOKEN);
}
END_TEST

START_TEST(test_eventfd_read_cancelled_by_the_deadline)
{
	check_target(KIND, T_EVENTFD, END_TIMEOUT);
}
END_TEST

START_TEST(test_eventfd_read_completing_ends_the_wait)
{
	check_target(KIND, T_EVENTFD, END_SELF);
}
END_TEST

START_TEST(test_unix_recv_cancelled_by_the_token)
{
	check_target(KIND, T_UNIX, END_TOKEN);
}
END_TEST

START_TEST(test_unix_recv_cancelled_by_the_deadline)
{
	check_target(KIND, T_UNIX, END_TIMEOUT);
}
END_TEST

START_TEST(test_unix_recv_completing_ends_the_wait)
{
	check_target(KIND, T_UNIX, END_SELF);
}
END_TEST

START_TEST(test_accept_cancelled_by_the_token)
{
	check_target(KIND, T_ACCEPT, END_TOKEN);
}
END_TEST

START_TEST(test_accept_cancelled_by_the_deadline)
{
	check_target(KIND, T_ACCEPT, END_TIMEOUT);
}
END_TEST

START_TEST(test_accept_completing_ends_the_wait)
{
	check_target(KIND, T_ACCEPT, END_SELF);
}
END_TEST

START_TEST(test_poll_cancelled_by_the_token)
{
	check_target(KIND, T_POLL, END_TOKEN);
}
END_TEST

START_TEST(test_poll_cancelled_by_the_deadline)
{
	check_target(KIND, T_POLL, END_TIMEOUT);
}
END_TEST

START_TEST(test_poll_completing_ends_the_wait)
{
	check_target(KIND, T_POLL, END_SELF);
}
END_TEST

/* ---- what a wait returns ---- */

/* Ops that complete at submit: nothing to cancel, every result kept. */
START_TEST(test_ops_done_at_submit_keep_every_result)
{
	struct cfd_op_result res[2];
	struct cfd_wait_result wr;
	struct io_uring_sqe ops[2];
	struct cfd_token *tok;
	int p[2], q[2];
	char b[2];
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "inline"), 0);
	fill_pipe(p[1]);
	fill_pipe(q[1]);
	ops[0] = sqe_read(p[0], &b[0], 1);
	ops[1] = sqe_read(q[0], &b[1], 1);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, tok, ops, 2, CFD_SEC(10), 0, res, &wr),
	    CFD_BY_OP);
	/* First-completed mode, but both had completed: both reported. */
	ck_assert_uint_eq(wr.completed, 2);
	ck_assert_int_eq(res[0].state, CFD_OP_COMPLETED);
	ck_assert_int_eq(res[1].state, CFD_OP_COMPLETED);
	ck_assert_int_eq(res[0].res, 1);
	ck_assert_int_eq(res[1].res, 1);
	ck_assert(wr.op == 0 || wr.op == 1);
	ck_assert_int_eq(wr.res, 1);
	cfd_token_unref(tok);
	close(p[0]), close(p[1]), close(q[0]), close(q[1]);
	fx_close(&f);
}
END_TEST

/* All-completed mode, deterministic: two done, one cancelled. */
START_TEST(test_all_mode_keeps_the_completed_and_cancels_the_rest)
{
	struct cfd_op_result res[3];
	struct cfd_wait_result wr;
	struct io_uring_sqe ops[3];
	struct cfd_token *tok;
	struct target t;
	struct actor a;
	int p[2][2];
	char b[2];
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(cfd_token_new(&tok, "all"), 0);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(pipe2(p[i], O_CLOEXEC), 0);
		fill_pipe(p[i][1]);
		ops[i] = sqe_read(p[i][0], &b[i], 1);
	}
	target_open(&t, T_PIPE);
	memset(&ops[2], 0, sizeof(ops[2]));
	target_prep(&t, &ops[2]);

	/* the token cancels the group: the two completed keep their data */
	actor_start(&a, &f.ring, ACT_TRIGGER, tok, NULL);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, tok, ops, 3, -1, CFD_WAIT_ALL, res, &wr),
	    CFD_BY_TOKEN);
	actor_join(&a);
	ck_assert_uint_eq(wr.completed, 2);
	ck_assert_int_eq(res[0].state, CFD_OP_COMPLETED);
	ck_assert_int_eq(res[1].state, CFD_OP_COMPLETED);
	ck_assert_int_eq(res[2].state, CFD_OP_CANCELLED);
	ck_assert_int_eq(wr.op, -1);
	cfd_token_unref(tok);

	/* every op completes: CFD_BY_OP, and op is the last one */
	ck_assert_int_eq(cfd_token_new(&tok, "all2"), 0);
	for (int i = 0; i < 2; i++)
		fill_pipe(p[i][1]);
	actor_start(&a, &f.ring, ACT_COMPLETE, NULL, &t);
	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, ops, 3, CFD_SEC(10),
					CFD_WAIT_ALL, res, &wr),
			 CFD_BY_OP);
	actor_join(&a);
	ck_assert_uint_eq(wr.completed, 3);
	ck_assert_int_eq(wr.op, 2);
	ck_assert_int_eq(wr.res, 1);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(res[i].state, CFD_OP_COMPLETED);

	/* the deadline cancels the group */
	fill_pipe(p[0][1]);
	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, ops, 3, CFD_MSEC(5),
					CFD_WAIT_ALL, res, &wr),
			 CFD_BY_TIMEOUT);
	ck_assert_uint_eq(wr.completed, 1);
	ck_assert_int_eq(res[0].state, CFD_OP_COMPLETED);
	ck_assert_int_eq(res[1].state, CFD_OP_CANCELLED);
	ck_assert_int_eq(res[2].state, CFD_OP_CANCELLED);

	cfd_token_unref(tok);
	target_close(&t, -1);
	for (int i = 0; i < 2; i++)
		close(p[i][0]), close(p[i][1]);
	fx_close(&f);
}
END_TEST

START_TEST(test_wait_on_no_op_ends_by_token_or_deadline)
{
	struct cfd_wait_result wr;
	struct cfd_token *tok;
	struct actor a;
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(cfd_token_new(&tok, "zero"), 0);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, NULL, NULL, 0, CFD_MSEC(2), 0, NULL, &wr),
	    CFD_BY_TIMEOUT);
	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, NULL, 0, CFD_MSEC(2),
					CFD_WAIT_ALL, NULL, NULL),
			 CFD_BY_TIMEOUT);
	ck_assert_int_eq(cfd_uring_wait(f.cu, NULL, NULL, 0, -1, 0, NULL, &wr),
			 -EINVAL);
	/* the token's poll is armed already: the wait submits nothing, so
	 * the helper does not wait for an SQE (before or during the wait,
	 * the answer is the same) */
	actor_start_queued(&a, &f.ring, ACT_TRIGGER, tok, NULL);
	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, NULL, 0, -1, 0, NULL, &wr),
			 CFD_BY_TOKEN);
	actor_join(&a);
	ck_assert_uint_eq(wr.completed, 0);
	ck_assert_int_eq(wr.reason, CFD_REASON_MANUAL);
	cfd_token_unref(tok);
	fx_close(&f);
}
END_TEST

/* Already triggered, or deadline already passed: nothing is submitted. */
START_TEST(test_wait_decided_before_submit_submits_nothing)
{
	struct cfd_op_result res[1] = { { 5, 5, 5 } };
	struct cfd_wait_result wr;
	struct io_uring_sqe op;
	struct cfd_token *tok;
	unsigned tail;
	int p[2];
	char b;
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "early"), 0);
	op = sqe_read(p[0], &b, 1);
	tail = f.ring.sq.sqe_tail;

	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, &op, 1, 0, 0, res, &wr),
			 CFD_BY_TIMEOUT);
	ck_assert_int_eq(res[0].state, CFD_OP_NOT_SUBMITTED);
	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, &op, 1,
					t_now_ns() - CFD_MSEC(1), CFD_WAIT_ABS,
					res, &wr),
			 CFD_BY_TIMEOUT);
	cfd_token_trigger_msg(tok, "before");
	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, &op, 1, -1, 0, res, &wr),
			 CFD_BY_TOKEN);
	/* the token wins over a passed deadline */
	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, &op, 1, 0, 0, res, &wr),
			 CFD_BY_TOKEN);
	ck_assert_int_eq(res[0].state, CFD_OP_NOT_SUBMITTED);
	ck_assert_int_eq(wr.op, -1);
	ck_assert_int_eq(wr.reason, CFD_REASON_MANUAL);
	ck_assert_ptr_eq(wr.origin, tok);
	ck_assert_uint_eq(f.ring.sq.sqe_tail, tail); /* ring untouched */
	ck_assert_uint_eq(io_uring_cq_ready(&f.ring), 0);
	cfd_token_unref(tok);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/* An op that fails by itself is an op result. */
START_TEST(test_op_failing_by_itself_is_the_ops_result)
{
	struct cfd_op_result res[1];
	struct cfd_wait_result wr;
	struct io_uring_sqe op;
	struct fx f;
	char b;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	op = sqe_read(-1, &b, 1);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, NULL, &op, 1, CFD_SEC(10), 0, res, &wr),
	    CFD_BY_OP);
	ck_assert_int_eq(res[0].state, CFD_OP_COMPLETED);
	ck_assert_int_eq(res[0].res, -EBADF);
	ck_assert_int_eq(wr.res, -EBADF);
	fx_close(&f);
}
END_TEST

/*
 * A wait's deadline is the timeout of its own entries into the kernel: no
 * request on the ring.  A wait with a deadline that its op beats submits
 * the op alone; one ended by its deadline, the op and the op's cancel.
 * Deadlines of successive waits are independent.
 */
START_TEST(test_deadline_needs_no_request_on_the_ring)
{
	struct cfd_op_result res[1];
	struct cfd_wait_result wr;
	struct io_uring_sqe op;
	struct target t;
	unsigned h0;
	int64_t t0;
	int p[2];
	char b;
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	target_open(&t, T_PIPE);

	fill_pipe(p[1]);
	op = sqe_read(p[0], &b, 1);
	h0 = sq_consumed(&f.ring);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, NULL, &op, 1, CFD_SEC(10), 0, res, &wr),
	    CFD_BY_OP);
	ck_assert_uint_eq(sq_consumed(&f.ring) - h0, 1);

	/* a pending op, +30 ms: the earlier wait's +10 s has no say */
	memset(&op, 0, sizeof(op));
	target_prep(&t, &op);
	h0 = sq_consumed(&f.ring);
	t0 = t_now_ns();
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, NULL, &op, 1, CFD_MSEC(30), 0, res, &wr),
	    CFD_BY_TIMEOUT);
	ck_assert_int_ge(t_now_ns() - t0, CFD_MSEC(30));
	ck_assert_int_lt(t_now_ns() - t0, CFD_SEC(5));
	ck_assert_int_eq(res[0].state, CFD_OP_CANCELLED);
	ck_assert_uint_eq(sq_consumed(&f.ring) - h0, 2); /* op + cancel */

	/* an absolute deadline */
	memset(&op, 0, sizeof(op));
	target_prep(&t, &op);
	t0 = t_now_ns();
	ck_assert_int_eq(cfd_uring_wait(f.cu, NULL, &op, 1, t0 + CFD_MSEC(5),
					CFD_WAIT_ABS, res, &wr),
			 CFD_BY_TIMEOUT);
	ck_assert_int_ge(t_now_ns() - t0, CFD_MSEC(5));
	ck_assert_int_lt(t_now_ns() - t0, CFD_SEC(5));

	target_close(&t, -1);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/* Many ops in one wait: the first completes, the rest are cancelled in
 * batches bigger than the SQ; then all cancelled by the token. */
START_TEST(test_200_ops_cancelled_in_batches_bigger_than_the_sq)
{
	enum { N = 200 };
	static struct io_uring_sqe ops[N];
	static struct cfd_op_result res[N];
	struct cfd_wait_result wr;
	struct cfd_token *tok;
	struct actor a;
	int p[2], q[2];
	char b[N];
	struct fx f;

	if (!fx_open(&f, KIND, 256, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "many"), 0);
	for (int i = 0; i < N; i++)
		ops[i] = sqe_read(p[0], &b[i], 1);
	ops[N / 2] = sqe_read(q[0], &b[N / 2], 1);
	fill_pipe(q[1]);
	/* 199 cancels in one batch (nops <= SQ size - 2, so they fit) */
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, tok, ops, N, CFD_SEC(10), 0, res, &wr),
	    CFD_BY_OP);
	ck_assert_int_eq(wr.op, N / 2);
	ck_assert_uint_eq(wr.completed, 1);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(res[i].state, i == N / 2 ? CFD_OP_COMPLETED
							  : CFD_OP_CANCELLED);
	actor_start(&a, &f.ring, ACT_TRIGGER, tok, NULL);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, tok, ops, N, -1, CFD_WAIT_ALL, res, &wr),
	    CFD_BY_TOKEN);
	actor_join(&a);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(res[i].state, CFD_OP_CANCELLED);
	cfd_token_unref(tok);
	close(p[0]), close(p[1]), close(q[0]), close(q[1]);
	fx_close(&f);
}
END_TEST

/* A wait whose last op leaves a link chain open is refused: the kernel
 * would run the open chain in a worker thread, and nothing of the wait's
 * may join a chain of the caller's.  Nothing is submitted. */
START_TEST(test_wait_leaving_a_link_chain_open_is_refused)
{
	struct cfd_op_result res[2] = { { 0, 0, 77 }, { 0, 0, 77 } };
	struct io_uring_sqe ops[2];
	struct cfd_token *tok;
	unsigned head;
	int p[2];
	char b[2];
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "t"), 0);
	ops[0] = sqe_read(p[0], &b[0], 1);
	ops[1] = sqe_read(p[0], &b[1], 1);
	head = sq_consumed(&f.ring);
	for (unsigned fl = IOSQE_IO_LINK; fl;
	     fl = fl == IOSQE_IO_LINK ? IOSQE_IO_HARDLINK : 0) {
		ops[1].flags = (uint8_t)fl;
		ck_assert_int_eq(cfd_uring_wait(f.cu, tok, ops, 2, CFD_MSEC(10),
						0, res, NULL),
				 -EINVAL);
		ck_assert_int_eq(res[0].state, CFD_OP_NOT_SUBMITTED);
		ck_assert_int_eq(res[1].state, CFD_OP_NOT_SUBMITTED);
		ck_assert_uint_eq(sq_consumed(&f.ring), head);
	}
	/* a chain closed inside the wait is fine */
	ops[0].flags = IOSQE_IO_LINK;
	ops[1].flags = 0;
	fill_pipe(p[1]);
	fill_pipe(p[1]);
	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, ops, 2, CFD_MSEC(T_WAIT_MS),
					CFD_WAIT_ALL, res, NULL),
			 CFD_BY_OP);
	ck_assert_int_eq(res[0].res, 1);
	ck_assert_int_eq(res[1].res, 1);
	cfd_token_unref(tok);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/* ---- signals ---- */

/* The token is triggered from a signal handler, on the waiting thread
 * itself, while it sits in io_uring_enter(): the handler's eventfd write
 * completes the token's poll, and the wait returns TOKEN. */
static struct cfd_token *handler_tok;
static struct cfd_watcher *handler_w;

static void on_sigusr2(int sig)
{
	cfd_token_trigger_async_safe(handler_tok, handler_w, sig);
}

START_TEST(test_trigger_from_a_signal_handler_on_the_waiting_thread)
{
	struct sigaction sa = { .sa_handler = on_sigusr2 };
	struct cfd_op_result res[1];
	struct cfd_wait_result wr;
	struct io_uring_sqe op;
	struct actor a;
	int p[2];
	char b;
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(cfd_watcher_new(&handler_w), 0);
	ck_assert_int_eq(cfd_token_new(&handler_tok, "signal"), 0);
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR2, &sa, NULL), 0);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	op = sqe_read(p[0], &b, 1);
	actor_start(&a, &f.ring, ACT_SIGNAL_ASYNC, handler_tok, NULL);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, handler_tok, &op, 1, -1, 0, res, &wr),
	    CFD_BY_TOKEN);
	actor_join(&a);
	ck_assert_int_eq(res[0].state, CFD_OP_CANCELLED);
	ck_assert_int_eq(wr.reason, CFD_REASON_SIGNAL);
	ck_assert_int_eq(cfd_token_signal(handler_tok), SIGUSR2);
	/* the watcher completes the fan-out (nothing here) when freed */
	handler_w = cfd_watcher_unref(handler_w);
	handler_tok = cfd_token_unref(handler_tok);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/*
 * A real signal lands on the waiting thread (io_uring_enter() returns
 * -EINTR, which the wait rides out); the trigger then comes from a thread.
 */
START_TEST(test_signal_interrupting_the_wait_is_ridden_out)
{
	struct cfd_op_result res[1];
	struct cfd_wait_result wr;
	struct io_uring_sqe op;
	struct cfd_token *tok;
	struct actor a;
	int p[2];
	char b;
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	t_install_sigusr1();
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "signal"), 0);
	op = sqe_read(p[0], &b, 1);
	actor_start(&a, &f.ring, ACT_SIGNAL_TRIGGER, tok, NULL);
	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, &op, 1, -1, 0, res, &wr),
			 CFD_BY_TOKEN);
	actor_join(&a);
	ck_assert(t_sigusr1_seen);
	ck_assert_int_eq(res[0].state, CFD_OP_CANCELLED);
	cfd_token_unref(tok);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

static Suite *uring_wait_suite(void)
{
	Suite *s = suite_create("uring-wait");
	TCase *tc;

	tc = t_tcase("targets");
	tcase_add_loop_test(tc, test_pipe_read_cancelled_by_the_token, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_pipe_read_cancelled_by_the_deadline, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_pipe_read_completing_ends_the_wait, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_eventfd_read_cancelled_by_the_token, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_eventfd_read_cancelled_by_the_deadline, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_eventfd_read_completing_ends_the_wait, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_unix_recv_cancelled_by_the_token, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_unix_recv_cancelled_by_the_deadline, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_unix_recv_completing_ends_the_wait, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_accept_cancelled_by_the_token, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_accept_cancelled_by_the_deadline, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_accept_completing_ends_the_wait, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_poll_cancelled_by_the_token, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_poll_cancelled_by_the_deadline, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_poll_completing_ends_the_wait, 0,
			    NRING_KINDS);
	suite_add_tcase(s, tc);

	tc = t_tcase("wait");
	tcase_add_loop_test(tc, test_ops_done_at_submit_keep_every_result, 0,
			    NRING_KINDS);
	tcase_add_loop_test(
	    tc, test_all_mode_keeps_the_completed_and_cancels_the_rest, 0,
	    NRING_KINDS);
	tcase_add_loop_test(tc, test_wait_on_no_op_ends_by_token_or_deadline, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_wait_decided_before_submit_submits_nothing,
			    0, NRING_KINDS);
	tcase_add_loop_test(tc, test_op_failing_by_itself_is_the_ops_result, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_deadline_needs_no_request_on_the_ring, 0,
			    NRING_KINDS);
	tcase_add_loop_test(
	    tc, test_200_ops_cancelled_in_batches_bigger_than_the_sq, 0,
	    NRING_KINDS);
	tcase_add_loop_test(
	    tc, test_trigger_from_a_signal_handler_on_the_waiting_thread, 0,
	    NRING_KINDS);
	tcase_add_loop_test(tc, test_signal_interrupting_the_wait_is_ridden_out,
			    0, NRING_KINDS);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("ring kinds", 120);
	tcase_add_loop_test(tc, test_wait_leaving_a_link_chain_open_is_refused,
			    0, NRING_KINDS);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_uring_main(uring_wait_suite);
}
