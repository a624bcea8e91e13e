/* SPDX-License-Identifier: MIT */
/*
 * Description: io_uring (lib/uring*.c).  cfd_uring_wait() ended by the
 * token, by the deadline and by the op itself, on five kinds of pending op;
 * the race rules (the op's own cancel versus ours, results completed
 * together with the cancel, link chains); scopes (nested, shielded, linked,
 * 10,000 ops, a tiny CQ, freed with ops in flight); the backlog; the ring
 * timer; bad input and fork.  Both ring kinds (default, and SINGLE_ISSUER |
 * DEFER_TASKRUN) where it matters.  Every test ends with a probe proving
 * that no op is left in flight; the fixture proves that no fd leaked.
 * Helper threads act only once the kernel has consumed a wait's SQEs, so no
 * result depends on timing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "uring-helpers.h"

#define KIND (_i % NRING_KINDS)

static struct io_uring_sqe sqe_read(int fd, void *buf, unsigned len)
{
	struct io_uring_sqe sqe;

	memset(&sqe, 0, sizeof(sqe));
	io_uring_prep_read(&sqe, fd, buf, len, 0);
	return sqe;
}

static void fill_pipe(int fd)
{
	ck_assert_int_eq(write(fd, "x", 1), 1);
}

static bool pipe_has_byte(int fd)
{
	char c;
	int fl = fcntl(fd, F_GETFL);
	ssize_t n;

	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	n = read(fd, &c, 1);
	fcntl(fd, F_SETFL, fl);
	return n == 1;
}

static unsigned sq_consumed(struct io_uring *ring)
{
	return *ring->sq.khead;
}

/* ---- each kind of pending op, ended by token, deadline, itself ---- */

enum { END_TOKEN, END_TIMEOUT, END_SELF, NENDERS };

START_TEST(test_target)
{
	int kind = KIND, ender = (_i / NRING_KINDS) % NENDERS;
	int tk = _i / (NRING_KINDS * NENDERS);
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
END_TEST

/* Ops that complete at submit: nothing to cancel, every result kept. */
START_TEST(test_inline_completions)
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

/*
 * The answer to own-cancel-vs-child-cancel: an op cancelled by something
 * else (here an ASYNC_CANCEL on its fd, then its own LINK_TIMEOUT) is
 * CFD_BY_OP with res -ECANCELED, never CFD_BY_TOKEN.
 */
START_TEST(test_outside_cancel_is_op)
{
	struct __kernel_timespec ts = { 0, 1000000 };
	struct cfd_op_result res[2];
	struct cfd_wait_result wr;
	struct io_uring_sqe ops[2];
	struct cfd_token *tok;
	unsigned flags = (_i / NRING_KINDS) ? CFD_WAIT_ALL : 0;
	int p[2];
	char b;
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "mine"), 0);

	ops[0] = sqe_read(p[0], &b, 1);
	memset(&ops[1], 0, sizeof(ops[1]));
	io_uring_prep_cancel_fd(&ops[1], p[0], 0);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, tok, ops, 2, CFD_SEC(10), flags, res, &wr),
	    CFD_BY_OP);
	ck_assert_int_eq(res[0].state, CFD_OP_COMPLETED);
	ck_assert_int_eq(res[0].res, -ECANCELED);
	ck_assert_int_eq(res[1].state, CFD_OP_COMPLETED);
	ck_assert_int_ge(res[1].res, 0);
	ck_assert_int_eq(wr.reason, CFD_REASON_NONE);
	ck_assert(!cfd_token_triggered(tok));

	/* the op's own deadline, linked to it */
	ops[0] = sqe_read(p[0], &b, 1);
	ops[0].flags |= IOSQE_IO_LINK;
	memset(&ops[1], 0, sizeof(ops[1]));
	io_uring_prep_link_timeout(&ops[1], &ts, 0);
	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, ops, 2, CFD_SEC(10),
					CFD_WAIT_ALL, res, &wr),
			 CFD_BY_OP);
	ck_assert_int_eq(res[0].state, CFD_OP_COMPLETED);
	ck_assert_int_eq(res[0].res, -ECANCELED);
	ck_assert_int_eq(res[1].state, CFD_OP_COMPLETED);
	ck_assert_int_eq(res[1].res, -ETIME);
	ck_assert_uint_eq(wr.completed, 2);

	cfd_token_unref(tok);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/* The token is triggered from a signal handler, on the waiting thread
 * itself, while it sits in io_uring_enter(): the handler's eventfd write
 * completes the token's poll, and the wait returns TOKEN. */
static struct cfd_token *handler_tok;
static struct cfd_watcher *handler_w;

static void on_sigusr2(int sig)
{
	cfd_token_trigger_async_safe(handler_tok, handler_w, sig);
}

START_TEST(test_signal_handler_trigger)
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
START_TEST(test_signal_interrupts_wait)
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

/* ---- results completed together with the cancel ---- */

struct race {
	int w[4]; /* pipe write ends */
	int nwrite;
	struct cfd_token *tok;
};

static int race_act(void *arg)
{
	struct race *rc = arg;

	for (int i = 0; i < rc->nwrite; i++)
		if (write(rc->w[i], "x", 1) != 1)
			return -errno;
	cfd_token_trigger(rc->tok);
	return 0;
}

/*
 * Two reads get their data as the token triggers, in a loop.  Whatever the
 * order, no completed read is discarded: a read is CFD_OP_COMPLETED with its
 * byte, or CFD_OP_CANCELLED and its byte is still in the pipe.
 */
START_TEST(test_complete_with_cancel_race)
{
	struct fx f;

	if (!fx_open(&f, KIND, 16, 0))
		return;
	for (int round = 0; round < 200; round++) {
		struct cfd_op_result res[4];
		struct cfd_wait_result wr;
		struct io_uring_sqe ops[4];
		struct race rc = { .nwrite = 2 };
		int p[4][2], r;
		char b[4];
		unsigned completed = 0;
		struct actor a;

		ck_assert_int_eq(cfd_token_new(&rc.tok, "race"), 0);
		for (int i = 0; i < 4; i++) {
			ck_assert_int_eq(pipe2(p[i], O_CLOEXEC), 0);
			rc.w[i] = p[i][1];
			ops[i] = sqe_read(p[i][0], &b[i], 1);
		}
		actor_start_fn(&a, &f.ring, race_act, &rc);
		r = cfd_uring_wait(f.cu, rc.tok, ops, 4, CFD_SEC(10),
				   (round & 1) ? CFD_WAIT_ALL : 0, res, &wr);
		actor_join(&a);
		for (int i = 0; i < 4; i++) {
			if (res[i].state == CFD_OP_COMPLETED) {
				ck_assert_int_lt(i, 2);
				ck_assert_int_eq(res[i].res, 1);
				ck_assert(!pipe_has_byte(p[i][0]));
				completed++;
			} else {
				ck_assert_int_eq(res[i].state,
						 CFD_OP_CANCELLED);
				if (i < 2)
					ck_assert(pipe_has_byte(p[i][0]));
			}
		}
		ck_assert_uint_eq(wr.completed, completed);
		if (round & 1) /* all mode: two reads can never complete */
			ck_assert_int_eq(r, CFD_BY_TOKEN);
		else
			ck_assert_int_eq(r,
					 completed ? CFD_BY_OP : CFD_BY_TOKEN);
		if (r == CFD_BY_TOKEN)
			ck_assert_int_eq(wr.reason, CFD_REASON_MANUAL);
		for (int i = 0; i < 4; i++)
			close(p[i][0]), close(p[i][1]);
		cfd_token_unref(rc.tok);
	}
	fx_close(&f);
}
END_TEST

/* All-completed mode, deterministic: two done, one cancelled. */
START_TEST(test_all_mode)
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

/* Link chains: the successor of an op this wait cancelled is cancelled by
 * this wait; the successor of an op that failed by itself is not. */
START_TEST(test_link_chains)
{
	struct cfd_op_result res[2];
	struct cfd_wait_result wr;
	struct io_uring_sqe ops[2];
	struct cfd_token *tok;
	struct actor a;
	int p[2], q[2];
	char b[2];
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);

	for (int hard = 0; hard < 2; hard++) {
		ck_assert_int_eq(cfd_token_new(&tok, "chain"), 0);
		ops[0] = sqe_read(p[0], &b[0], 1);
		ops[0].flags |= hard ? IOSQE_IO_HARDLINK : IOSQE_IO_LINK;
		ops[1] = sqe_read(q[0], &b[1], 1);
		actor_start(&a, &f.ring, ACT_TRIGGER, tok, NULL);
		ck_assert_int_eq(cfd_uring_wait(f.cu, tok, ops, 2, -1,
						CFD_WAIT_ALL, res, &wr),
				 CFD_BY_TOKEN);
		actor_join(&a);
		/* with a hard link the successor runs after the head's
		 * cancel: the wait's first cancel of it finds nothing and is
		 * retried until it does */
		ck_assert_int_eq(res[0].state, CFD_OP_CANCELLED);
		ck_assert_int_eq(res[1].state, CFD_OP_CANCELLED);
		ck_assert_uint_eq(wr.completed, 0);
		cfd_token_unref(tok);
	}

	/* the head fails by itself: the successor's -ECANCELED is its own */
	ck_assert_int_eq(cfd_token_new(&tok, "chain-fail"), 0);
	ops[0] = sqe_read(-1, &b[0], 1);
	ops[0].flags |= IOSQE_IO_LINK;
	ops[1] = sqe_read(q[0], &b[1], 1);
	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, ops, 2, CFD_SEC(10),
					CFD_WAIT_ALL, res, &wr),
			 CFD_BY_OP);
	ck_assert_int_eq(res[0].state, CFD_OP_COMPLETED);
	ck_assert_int_eq(res[0].res, -EBADF);
	ck_assert_int_eq(res[1].state, CFD_OP_COMPLETED);
	ck_assert_int_eq(res[1].res, -ECANCELED);
	cfd_token_unref(tok);

	close(p[0]), close(p[1]), close(q[0]), close(q[1]);
	fx_close(&f);
}
END_TEST

/*
 * Decided TOKEN, then an op completes by itself: a hard link runs the
 * successor after the head's cancel, and it reads its byte.  Its result is
 * kept; in first-completed mode the wait returns CFD_BY_OP (with the
 * token's reason beside it), in all mode CFD_BY_TOKEN with completed 1.
 */
START_TEST(test_completed_after_cancel_wins)
{
	struct cfd_op_result res[2];
	struct cfd_wait_result wr;
	struct io_uring_sqe ops[2];
	struct cfd_token *tok;
	struct actor a;
	int p[2], q[2];
	char b[2];
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
	for (int all = 0; all < 2; all++) {
		ck_assert_int_eq(cfd_token_new(&tok, "after"), 0);
		fill_pipe(q[1]);
		ops[0] = sqe_read(p[0], &b[0], 1);
		ops[0].flags |= IOSQE_IO_HARDLINK;
		ops[1] = sqe_read(q[0], &b[1], 1);
		actor_start(&a, &f.ring, ACT_TRIGGER, tok, NULL);
		ck_assert_int_eq(cfd_uring_wait(f.cu, tok, ops, 2, -1,
						all ? CFD_WAIT_ALL : 0, res,
						&wr),
				 all ? CFD_BY_TOKEN : CFD_BY_OP);
		actor_join(&a);
		ck_assert_int_eq(res[0].state, CFD_OP_CANCELLED);
		ck_assert_int_eq(res[1].state, CFD_OP_COMPLETED);
		ck_assert_int_eq(res[1].res, 1);
		ck_assert_uint_eq(wr.completed, 1);
		ck_assert_int_eq(wr.op, all ? -1 : 1);
		ck_assert_int_eq(wr.reason, CFD_REASON_MANUAL);
		cfd_token_unref(tok);
	}
	close(p[0]), close(p[1]), close(q[0]), close(q[1]);
	fx_close(&f);
}
END_TEST

/*
 * The wait cancels some ops while another was cancelled by someone else
 * (an ASYNC_CANCEL on its fd, one of the ops): only the wait's are
 * CFD_OP_CANCELLED; the other's -ECANCELED is its own result.
 */
START_TEST(test_outside_and_own_cancel_together)
{
	struct cfd_op_result res[3];
	struct cfd_wait_result wr;
	struct io_uring_sqe ops[3];
	struct cfd_token *tok;
	struct actor a;
	int p[2], q[2];
	char b[2];
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(q, O_CLOEXEC), 0);
	for (int all = 0; all < 2; all++) {
		ck_assert_int_eq(cfd_token_new(&tok, "both"), 0);
		ops[0] = sqe_read(p[0], &b[0], 1);
		ops[1] = sqe_read(q[0], &b[1], 1);
		memset(&ops[2], 0, sizeof(ops[2]));
		io_uring_prep_cancel_fd(&ops[2], q[0], 0);
		if (all)
			actor_start(&a, &f.ring, ACT_TRIGGER, tok, NULL);
		ck_assert_int_eq(cfd_uring_wait(f.cu, tok, ops, 3, CFD_SEC(10),
						all ? CFD_WAIT_ALL : 0, res,
						&wr),
				 all ? CFD_BY_TOKEN : CFD_BY_OP);
		if (all)
			actor_join(&a);
		ck_assert_int_eq(res[0].state, CFD_OP_CANCELLED);
		ck_assert_int_eq(res[1].state, CFD_OP_COMPLETED);
		ck_assert_int_eq(res[1].res, -ECANCELED);
		ck_assert_int_eq(res[2].state, CFD_OP_COMPLETED);
		ck_assert_uint_eq(wr.completed, 2);
		cfd_token_unref(tok);
	}
	close(p[0]), close(p[1]), close(q[0]), close(q[1]);
	fx_close(&f);
}
END_TEST

START_TEST(test_zero_ops)
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
START_TEST(test_decided_before_submit)
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
START_TEST(test_op_error_is_op)
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
START_TEST(test_deadline_needs_no_request)
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

/* CQEs of the caller's own ops and of scope ops reaped by a wait come
 * back, in order, from the backlog; each scope op reaches the caller once. */
START_TEST(test_backlog)
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
START_TEST(test_backlog_cqe32)
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

/* ---- scopes ---- */

/* Queue a read of fd in scope s with user_data ud (no submit). */
static void scope_read(struct fx *f, struct cfd_scope *s, int fd, char *buf,
		       uint64_t ud, unsigned flags)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&f->ring);

	if (!sqe) {
		io_uring_submit(&f->ring);
		sqe = io_uring_get_sqe(&f->ring);
	}
	ck_assert_ptr_nonnull(sqe);
	io_uring_prep_read(sqe, fd, buf, 1, 0);
	sqe->user_data = ud;
	ck_assert_int_eq(cfd_scope_add(s, sqe, flags), 0);
}

static struct seen expect_one(struct fx *f)
{
	struct seen s[2];

	ck_assert_int_eq(fx_loop(f, s, 2, 1, T_WAIT_MS, NULL), 1);
	return s[0];
}

START_TEST(test_scope_basic)
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
START_TEST(test_scope_outside_cancel)
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
START_TEST(test_scope_targets_from_thread)
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
START_TEST(test_scope_nested)
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

START_TEST(test_scope_shield)
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
/* A linked outer scope holds the origin of the cascade that cancelled the
 * inner one: the origin outlives the inner scope and its tokens. */
START_TEST(test_scope_link_origin_outlives_inner)
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

START_TEST(test_scope_link)
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

/* Added after the token triggered: submitted and cancelled at once, or its
 * own result if it completed inline; a link chain is cancelled whole. */
START_TEST(test_scope_add_after_trigger)
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
START_TEST(test_scope_released_in_flight)
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

/*
 * A ring whose CQ is tiny: a CQ overflow ends the token's multishot poll
 * (a CQE without IORING_CQE_F_MORE); the library re-arms it, no CQE is
 * lost, and the trigger still cancels the scope.  Then a wait on the same
 * ring while the CQ overflows hands the caller's CQEs back in order.
 */
START_TEST(test_tiny_cq)
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

/* 10,000 pending ops in one scope, one trigger (from another thread): all
 * cancelled, each reaped once, through a CQ far smaller than that. */
START_TEST(test_scope_10000)
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

/* Someone else cancels the library's token poll (ASYNC_CANCEL by fd):
 * the library re-arms it, and the caller's cancel op is the caller's. */
START_TEST(test_poll_cancelled_from_outside)
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

/* ---- more race and resource paths ---- */

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
START_TEST(test_submit_refused)
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

/* The caller left the SQ full: the wait submits those first (their CQEs
 * come back through the backlog). */
START_TEST(test_sq_full_at_entry)
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

/*
 * One of the wait's own ops is an ASYNC_CANCEL(ANY | ALL): it cancels the
 * other op (its result, not the wait's doing), the token's poll and the
 * ring timer.  The library re-arms what it still needs; the next waits on
 * the same token and deadline machinery work.
 */
START_TEST(test_cancel_any_inside_wait)
{
	struct cfd_op_result res[2];
	struct cfd_wait_result wr;
	struct io_uring_sqe ops[2];
	struct cfd_token *tok;
	struct target t;
	struct actor a;
	int p[2];
	char b;
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "any"), 0);
	/* arm the token's poll and the timer first */
	fill_pipe(p[1]);
	ops[0] = sqe_read(p[0], &b, 1);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, tok, ops, 1, CFD_SEC(10), 0, res, NULL),
	    CFD_BY_OP);
	ops[0] = sqe_read(p[0], &b, 1);
	memset(&ops[1], 0, sizeof(ops[1]));
	io_uring_prep_cancel64(
	    &ops[1], 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
	ck_assert_int_eq(cfd_uring_wait(f.cu, tok, ops, 2, CFD_SEC(10),
					CFD_WAIT_ALL, res, &wr),
			 CFD_BY_OP);
	ck_assert_int_eq(res[0].state, CFD_OP_COMPLETED);
	ck_assert_int_eq(res[0].res, -ECANCELED);
	ck_assert_int_ge(res[1].res, 1);

	/* the deadline still works... */
	target_open(&t, T_PIPE);
	memset(&ops[0], 0, sizeof(ops[0]));
	target_prep(&t, &ops[0]);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, tok, ops, 1, CFD_MSEC(5), 0, res, NULL),
	    CFD_BY_TIMEOUT);
	/* ...and so does the token */
	actor_start(&a, &f.ring, ACT_TRIGGER, tok, NULL);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, tok, ops, 1, CFD_SEC(10), 0, res, NULL),
	    CFD_BY_TOKEN);
	actor_join(&a);
	ck_assert_int_eq(res[0].state, CFD_OP_CANCELLED);
	target_close(&t, -1);
	cfd_token_unref(tok);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

/* Two scopes on one token share its poll; one goes, the other still
 * cancels. */
START_TEST(test_scopes_share_token)
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

/* Many ops in one wait: the first completes, the rest are cancelled in
 * batches bigger than the SQ; then all cancelled by the token. */
START_TEST(test_many_ops)
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

/* The wait's own CQEs overflow the CQ (the caller's NOPs fill it first):
 * every result arrives, the NOPs come back in order. */
START_TEST(test_wait_overflow)
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

/* ---- bad input, fork, unsupported rings ---- */

START_TEST(test_einval)
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

START_TEST(test_fork)
{
	struct cfd_op_result res[1];
	struct io_uring_sqe op;
	struct io_uring_cqe cqe = { 0 };
	struct cfd_token *tok;
	struct cfd_scope *s, *s2;
	uint64_t ud;
	int p[2], status;
	pid_t pid;
	char b;
	struct fx f;

	if (!fx_open(&f, KIND, 8, 0))
		return;
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "fork"), 0);
	ck_assert_int_eq(cfd_scope_new(&s, f.cu, tok), 0);
	op = sqe_read(p[0], &b, 1);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int bad = 0;

		/* The ring's memory is shared with the parent: nothing here
		 * may touch it. */
		bad |= cfd_uring_wait(f.cu, NULL, &op, 1, -1, 0, res, NULL) !=
		       -ECHILD;
		bad |= cfd_uring_cqe(f.cu, &cqe, &ud) != -ECHILD;
		bad |= cfd_uring_backlog(f.cu, &cqe) != -ECHILD;
		bad |= cfd_scope_new(&s2, f.cu, NULL) != -ECHILD;
		bad |= cfd_scope_add(s, &op, 0) != -ECHILD;
		bad |= cfd_scope_pending(s) != -ECHILD;
		bad |= cfd_scope_link(s, s) != -EINVAL;
		bad |= cfd_scope_cancel(s) != -ECHILD;
		bad |= cfd_scope_unref(s) != NULL;
		bad |= cfd_uring_unref(f.cu) != NULL;
		_exit(bad ? 1 : 0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	/* the parent's are intact */
	ck_assert_int_eq(cfd_scope_pending(s), 0);
	ck_assert_int_eq(
	    cfd_uring_wait(f.cu, tok, &op, 1, CFD_MSEC(1), 0, res, NULL),
	    CFD_BY_TIMEOUT);
	cfd_scope_unref(s);
	cfd_token_unref(tok);
	close(p[0]), close(p[1]);
	fx_close(&f);
}
END_TEST

START_TEST(test_unsupported_rings)
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

/* ---- regressions: ring kinds, drains, bindings, open chains ---- */

/*
 * A read ended by its own LINK_TIMEOUT is the read's own result, on every
 * ring kind: the timeout's -ETIME may be reaped before the read's
 * -ECANCELED (a DEFER_TASKRUN ring posts it later), and the wait must not
 * cancel, and so blame itself for, an op its own timeout is cancelling.
 */
START_TEST(test_own_link_timeout_is_the_ops_result)
{
	struct __kernel_timespec ts = { 0, 2 * 1000 * 1000 };
	struct cfd_token *tok;
	int sv[2];
	char c;
	struct fx f;

	if (!fx_open(&f, KIND, 16, 0))
		return;
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	ck_assert_int_eq(cfd_token_new(&tok, "t"), 0);
	for (int i = 0; i < 20; i++) {
		struct io_uring_sqe ops[2];
		struct cfd_op_result res[2];
		struct cfd_wait_result why;

		memset(ops, 0, sizeof(ops));
		io_uring_prep_recv(&ops[0], sv[0], &c, 1, 0);
		ops[0].flags |= IOSQE_IO_LINK;
		io_uring_prep_link_timeout(&ops[1], &ts, 0);
		ck_assert_int_eq(cfd_uring_wait(f.cu, tok, ops, 2,
						CFD_MSEC(T_WAIT_MS), 0, res,
						&why),
				 CFD_BY_OP);
		ck_assert_int_eq(res[0].res, -ECANCELED);
		ck_assert_int_eq(res[0].state, CFD_OP_COMPLETED);
		ck_assert_int_eq(res[1].res, -ETIME);
		ck_assert_int_eq(res[1].state, CFD_OP_COMPLETED);
		ck_assert_uint_eq(why.completed, 2);
	}
	cfd_token_unref(tok);
	close(sv[0]), close(sv[1]);
	fx_close(&f);
}
END_TEST

struct late_trigger {
	struct cfd_token *tok;
	int64_t at;
};

static void *trigger_at(void *arg)
{
	struct late_trigger *lt = arg;

	while (t_now_ns() < lt->at)
		;
	cfd_token_trigger(lt->tok);
	return NULL;
}

/*
 * The caller's own ASYNC_CANCEL finds a recv (it completes with 0) shortly
 * before the token triggers.  Whatever the schedule, the recv's -ECANCELED
 * is the caller's doing, never the wait's: on a DEFER_TASKRUN ring the
 * recv's completion may still sit in the ring's deferred work when the wait
 * sees the token, and a cancel of the wait's own would find the recv a
 * second time.  Before the fix 4-10% of these rounds blamed the wait.
 */
START_TEST(test_outside_cancel_just_before_trigger_is_op)
{
	struct __kernel_timespec ts = { 0, 300 * 1000 };
	unsigned seed = 7;
	int sv[2], found = 0;
	char c;
	struct fx f;

	if (!fx_open(&f, KIND, 16, 0))
		return;
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	for (int i = 0; i < 200; i++) {
		struct io_uring_sqe ops[3];
		struct cfd_op_result res[3];
		struct cfd_wait_result why;
		struct late_trigger lt;
		pthread_t th;
		int r;

		ck_assert_int_eq(cfd_token_new(&lt.tok, "t"), 0);
		memset(ops, 0, sizeof(ops));
		io_uring_prep_recv(&ops[0], sv[0], &c, 1, 0);
		io_uring_prep_timeout(&ops[1], &ts, 0, 0);
		ops[1].flags |= IOSQE_IO_HARDLINK;
		io_uring_prep_cancel_fd(&ops[2], sv[0], 0);
		lt.at = t_now_ns() + 250 * 1000 + rand_r(&seed) % (500 * 1000);
		ck_assert_int_eq(pthread_create(&th, NULL, trigger_at, &lt), 0);
		r = cfd_uring_wait(f.cu, lt.tok, ops, 3, CFD_MSEC(T_WAIT_MS),
				   CFD_WAIT_ALL, res, &why);
		pthread_join(th, NULL);
		ck_assert(r == CFD_BY_OP || r == CFD_BY_TOKEN);
		if (res[2].state == CFD_OP_COMPLETED && res[2].res == 0) {
			/* the caller's cancel found the recv first */
			found++;
			ck_assert_int_eq(res[0].res, -ECANCELED);
			ck_assert_msg(res[0].state == CFD_OP_COMPLETED,
				      "round %d: the caller's cancel found the "
				      "recv, but the wait took the blame",
				      i);
			ck_assert_int_eq(r, CFD_BY_OP);
		}
		cfd_token_unref(lt.tok);
	}
	ck_assert_int_gt(found, 0);
	close(sv[0]), close(sv[1]);
	fx_close(&f);
}
END_TEST

/* A wait whose last op leaves a link chain open is refused: the kernel
 * would run the open chain in a worker thread, and nothing of the wait's
 * may join a chain of the caller's.  Nothing is submitted. */
START_TEST(test_open_chain_is_refused)
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

static struct io_uring_cqe *next_cqe_ms(struct io_uring *ring, int ms)
{
	struct __kernel_timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	struct io_uring_cqe *cqe = NULL;
	int r;

	do
		r = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
	while (r == -EINTR);
	return r < 0 && r != -ETIME ? NULL : cqe;
}

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
		struct io_uring_cqe *cqe = next_cqe_ms(&f->ring, 5);
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
START_TEST(test_drain_after_wait)
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

/* A ring that was never set up is bad input (-EINVAL), not a kernel that
 * lacks something; an early -EINVAL marks every op not submitted. */
START_TEST(test_bad_ring_and_early_errors)
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

static Suite *uring_suite(void)
{
	Suite *s = suite_create("uring");
	TCase *tc;

	tc = t_tcase("wait-targets");
	tcase_add_loop_test(tc, test_target, 0,
			    NRING_KINDS * NENDERS * NTARGETS);
	suite_add_tcase(s, tc);

	tc = t_tcase("wait");
	tcase_add_loop_test(tc, test_inline_completions, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_outside_cancel_is_op, 0, 2 * NRING_KINDS);
	tcase_add_loop_test(tc, test_signal_handler_trigger, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_signal_interrupts_wait, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_all_mode, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_link_chains, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_completed_after_cancel_wins, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_outside_and_own_cancel_together, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_zero_ops, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_decided_before_submit, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_op_error_is_op, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_deadline_needs_no_request, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_token_poll_lives_with_its_users, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_backlog, 0, NRING_KINDS);
	tcase_add_test(tc, test_backlog_cqe32);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("races", 120);
	tcase_add_loop_test(tc, test_complete_with_cancel_race, 0, NRING_KINDS);
	suite_add_tcase(s, tc);

	tc = t_tcase("scope");
	tcase_add_loop_test(tc, test_scope_basic, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_scope_outside_cancel, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_scope_targets_from_thread, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_scope_nested, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_scope_shield, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_scope_link, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_scope_link_origin_outlives_inner, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_scope_add_after_trigger, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_scope_released_in_flight, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_tiny_cq, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_poll_cancelled_from_outside, 0,
			    NRING_KINDS);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("scope-10000", 240);
	tcase_add_loop_test(tc, test_scope_10000, 0, NRING_KINDS);
	suite_add_tcase(s, tc);

	tc = t_tcase("paths");
	tcase_add_test(tc, test_submit_refused);
	tcase_add_loop_test(tc, test_sq_full_at_entry, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_cancel_any_inside_wait, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_scopes_share_token, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_many_ops, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_wait_overflow, 0, NRING_KINDS);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("ring kinds, drains, bindings", 120);
	tcase_add_loop_test(tc, test_own_link_timeout_is_the_ops_result, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_outside_cancel_just_before_trigger_is_op,
			    0, NRING_KINDS);
	tcase_add_loop_test(tc, test_open_chain_is_refused, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_drain_after_wait, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_new_binding_ignores_forgotten_ops, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_cancelled_scope_op_linked_to_outside_op, 0,
			    NRING_KINDS);
	tcase_add_loop_test(tc, test_bad_ring_and_early_errors, 0, NRING_KINDS);
	suite_add_tcase(s, tc);

	tc = t_tcase("errors");
	tcase_add_loop_test(tc, test_einval, 0, NRING_KINDS);
	tcase_add_loop_test(tc, test_fork, 0, NRING_KINDS);
	tcase_add_test(tc, test_unsupported_rings);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (!t_uring_available()) {
		printf("io_uring unavailable here: skipped\n");
		return 77;
	}
	return t_run_suite(uring_suite());
}
