/* SPDX-License-Identifier: MIT */
/*
 * Description: the race rules of cfd_uring_wait() (lib/uring-wait.c): an
 * op cancelled by someone else (an ASYNC_CANCEL, its own LINK_TIMEOUT, one
 * of the wait's own ops), even just before the token triggers, is the
 * op's own result, never the token's; results completed together with the
 * cancel, or after it, are kept; the successor of an op the wait cancelled
 * is cancelled by the wait, that of an op that failed by itself is not.
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
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uring-helpers.h"

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

/* ---- cancelled by someone else: the op's own result ---- */

/*
 * The answer to own-cancel-vs-child-cancel: an op cancelled by something
 * else (here an ASYNC_CANCEL on its fd, then its own LINK_TIMEOUT) is
 * CFD_BY_OP with res -ECANCELED, never CFD_BY_TOKEN.
 */
static void check_outside_cancel_is_op(int kind, unsigned flags)
{
	struct __kernel_timespec ts = { 0, 1000000 };
	struct cfd_op_result res[2];
	struct cfd_wait_result wr;
	struct io_uring_sqe ops[2];
	struct cfd_token *tok;
	int p[2];
	char b;
	struct fx f;

	if (!fx_open(&f, kind, 8, 0))
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

START_TEST(test_outside_cancel_is_the_ops_result_first_completed_mode)
{
	check_outside_cancel_is_op(KIND, 0);
}
END_TEST

START_TEST(test_outside_cancel_is_the_ops_result_all_mode)
{
	check_outside_cancel_is_op(KIND, CFD_WAIT_ALL);
}
END_TEST

/*
 * The wait cancels some ops while another was cancelled by someone else
 * (an ASYNC_CANCEL on its fd, one of the ops): only the wait's are
 * CFD_OP_CANCELLED; the other's -ECANCELED is its own result.
 */
START_TEST(test_outside_cancel_beside_the_waits_own_is_the_ops_result)
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

/*
 * One of the wait's own ops is an ASYNC_CANCEL(ANY | ALL): it cancels the
 * other op (its result, not the wait's doing), the token's poll and the
 * ring timer.  The library re-arms what it still needs; the next waits on
 * the same token and deadline machinery work.
 */
START_TEST(test_cancel_any_among_the_waits_ops_is_the_ops_result)
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
START_TEST(test_outside_cancel_just_before_the_trigger_is_the_ops_result)
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
START_TEST(test_result_completed_with_the_cancel_is_never_discarded)
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

/*
 * Decided TOKEN, then an op completes by itself: a hard link runs the
 * successor after the head's cancel, and it reads its byte.  Its result is
 * kept; in first-completed mode the wait returns CFD_BY_OP (with the
 * token's reason beside it), in all mode CFD_BY_TOKEN with completed 1.
 */
START_TEST(test_op_completed_after_the_cancel_is_kept)
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

/* ---- link chains ---- */

/* Link chains: the successor of an op this wait cancelled is cancelled by
 * this wait; the successor of an op that failed by itself is not. */
START_TEST(test_successor_cancelled_only_behind_an_op_the_wait_cancelled)
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

static Suite *uring_wait_races_suite(void)
{
	Suite *s = suite_create("uring-wait-races");
	TCase *tc;

	tc = t_tcase("outside cancels");
	tcase_add_loop_test(
	    tc, test_outside_cancel_is_the_ops_result_first_completed_mode, 0,
	    NRING_KINDS);
	tcase_add_loop_test(tc, test_outside_cancel_is_the_ops_result_all_mode,
			    0, NRING_KINDS);
	tcase_add_loop_test(
	    tc, test_outside_cancel_beside_the_waits_own_is_the_ops_result, 0,
	    NRING_KINDS);
	tcase_add_loop_test(
	    tc, test_cancel_any_among_the_waits_ops_is_the_ops_result, 0,
	    NRING_KINDS);
	suite_add_tcase(s, tc);

	tc = t_tcase("results with the cancel");
	tcase_add_loop_test(tc, test_op_completed_after_the_cancel_is_kept, 0,
			    NRING_KINDS);
	tcase_add_loop_test(
	    tc, test_successor_cancelled_only_behind_an_op_the_wait_cancelled,
	    0, NRING_KINDS);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("races", 120);
	tcase_add_loop_test(
	    tc, test_result_completed_with_the_cancel_is_never_discarded, 0,
	    NRING_KINDS);
	suite_add_tcase(s, tc);

	tc = t_tcase_timeout("ring kinds", 120);
	tcase_add_loop_test(tc, test_own_link_timeout_is_the_ops_result, 0,
			    NRING_KINDS);
	tcase_add_loop_test(
	    tc, test_outside_cancel_just_before_the_trigger_is_the_ops_result,
	    0, NRING_KINDS);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_uring_main(uring_wait_races_suite);
}
