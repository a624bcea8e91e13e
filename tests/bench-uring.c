/* SPDX-License-Identifier: MIT */
/*
 * Description: ratios of cfd_uring_wait() and scopes against the raw
 * io_uring paths they wrap, measured side by side in one process (the
 * workload of research/limits.md sections 4, 5 and 7: 1-byte
 * IORING_OP_READs from a pipe that already holds data, so they complete
 * inline).  Modes are interleaved round by round; each ratio is the median
 * over rounds of (this mode's median / the baseline's median in the same
 * round), which stays put when the shared host changes speed.
 *
 *   bench-uring [rounds] [-d]      -d: SINGLE_ISSUER | DEFER_TASKRUN ring
 *
 * Targets (issue 4):
 *   64 ops, no deadline, one wait    >= 0.95x bare throughput
 *   64 ops sharing one deadline      >= 0.90x bare throughput
 *   1 op per wait, its own deadline  <= 0.75x the time of read+LINK_TIMEOUT
 *   trigger -> -ECANCELED (scope)    <= 1.2x the raw path
 */
#define _GNU_SOURCE
#include <cancelfd-uring.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define SAMPLES 200 /* batches (or single ops) per mode per round */

static struct io_uring ring;
static struct cfd_uring *cu;
static struct cfd_token *tok;
static int pfd[2];
static char buf[BATCH];

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what, int r)
{
	fprintf(stderr, "bench-uring: %s: %d (%s)\n", what, r, strerror(-r));
	exit(1);
}

static void refill(unsigned n)
{
	static char data[BATCH];

	if (write(pfd[1], data, n) != (ssize_t)n)
		die("refill", -errno);
}

static void reap(unsigned n)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;

	while (seen < n) {
		unsigned count = 0;
		int r = io_uring_wait_cqe(&ring, &cqe);

		if (r < 0)
			die("wait_cqe", r);
		io_uring_for_each_cqe(&ring, head, cqe)
		{
			if (cqe->res != 1 && cqe->user_data < BATCH)
				die("read", cqe->res);
			count++;
		}
		io_uring_cq_advance(&ring, count);
		seen += count;
	}
}

/* ---- the modes: each returns the ns of one batch (or one op) ---- */

static int64_t bare64(void)
{
	int64_t t0;

	refill(BATCH);
	t0 = now_ns();
	for (unsigned i = 0; i < BATCH; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

		io_uring_prep_read(sqe, pfd[0], &buf[i], 1, 0);
		sqe->user_data = i;
	}
	io_uring_submit_and_wait(&ring, BATCH);
	reap(BATCH);
	return now_ns() - t0; /* the whole batch: no rounding */
}

static int64_t wait64(int64_t timeout)
{
	struct io_uring_sqe ops[BATCH];
	struct cfd_op_result res[BATCH];
	int64_t t0;
	int r;

	refill(BATCH);
	t0 = now_ns();
	for (unsigned i = 0; i < BATCH; i++)
		io_uring_prep_read(&ops[i], pfd[0], &buf[i], 1, 0);
	r = cfd_uring_wait(cu, tok, ops, BATCH, timeout, CFD_WAIT_ALL, res,
			   NULL);
	if (r != CFD_WAIT_OP)
		die("wait64", r);
	return now_ns() - t0;
}

static int64_t wait64_nodl(void)
{
	return wait64(-1);
}

static int64_t wait64_dl(void)
{
	return wait64(1000000000); /* one deadline shared by the 64 */
}

static int64_t bare1(void)
{
	struct io_uring_sqe *sqe;
	int64_t t0;

	refill(1);
	t0 = now_ns();
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_read(sqe, pfd[0], buf, 1, 0);
	sqe->user_data = 0;
	io_uring_submit_and_wait(&ring, 1);
	reap(1);
	return now_ns() - t0;
}

static int64_t read_lt1(void)
{
	struct __kernel_timespec ts = { 1, 0 };
	struct io_uring_sqe *sqe;
	int64_t t0;

	refill(1);
	t0 = now_ns();
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_read(sqe, pfd[0], buf, 1, 0);
	sqe->flags |= IOSQE_IO_LINK;
	sqe->user_data = 0;
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_link_timeout(sqe, &ts, 0);
	sqe->user_data = BATCH; /* its -ECANCELED is expected */
	io_uring_submit_and_wait(&ring, 2);
	reap(2);
	return now_ns() - t0;
}

static int64_t wait1(int64_t timeout)
{
	struct io_uring_sqe op;
	struct cfd_op_result res;
	int64_t t0;
	int r;

	refill(1);
	t0 = now_ns();
	io_uring_prep_read(&op, pfd[0], buf, 1, 0);
	r = cfd_uring_wait(cu, tok, &op, 1, timeout, 0, &res, NULL);
	if (r != CFD_WAIT_OP)
		die("wait1", r);
	return now_ns() - t0;
}

static int64_t wait1_dl(void)
{
	return wait1(1000000000); /* a new deadline, its own, every time */
}

static int64_t wait1_nodl(void)
{
	return wait1(-1);
}

/* ---- trigger -> -ECANCELED: a scope's path against the raw one ---- */

struct firer {
	pthread_t th;
	int efd;		 /* raw: the eventfd to write */
	struct cfd_token *token; /* library: the token to trigger */
	_Atomic int go;
	_Atomic int64_t t0;
};

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set); /* best effort */
}

static void *firer_main(void *arg)
{
	struct firer *f = arg;
	uint64_t one = 1;
	int64_t t;

	pin(1);
	while (!atomic_load(&f->go))
		;
	t = now_ns() + 20000; /* let the waiter fall asleep */
	while (now_ns() < t)
		;
	atomic_store(&f->t0, now_ns());
	if (f->token)
		cfd_token_trigger(f->token);
	else if (write(f->efd, &one, 8) != 8)
		die("efd write", -errno);
	return NULL;
}

static int64_t raw_cancel(void)
{
	struct firer f = { .efd = eventfd(0, EFD_CLOEXEC) };
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int64_t t1 = 0;

	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_poll_multishot(sqe, f.efd, POLLIN);
	sqe->user_data = 1000;
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_read(sqe, pfd[0], buf, 1, 0);
	sqe->user_data = 1001;
	io_uring_submit(&ring);
	pthread_create(&f.th, NULL, firer_main, &f);
	atomic_store(&f.go, 1);
	while (!t1) {
		io_uring_wait_cqe(&ring, &cqe);
		if (cqe->user_data == 1000 &&
		    (cqe->flags & IORING_CQE_F_MORE)) {
			sqe = io_uring_get_sqe(&ring);
			io_uring_prep_cancel64(sqe, 1001, 0);
			sqe->user_data = 1002;
			sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
			io_uring_submit(&ring);
		} else if (cqe->user_data == 1001) {
			t1 = now_ns();
		}
		io_uring_cqe_seen(&ring, cqe);
	}
	pthread_join(f.th, NULL);
	/* remove the poll and reap its end */
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_poll_remove(sqe, 1000);
	sqe->user_data = 1003;
	io_uring_submit(&ring);
	for (int left = 2; left;) {
		io_uring_wait_cqe(&ring, &cqe);
		left -= cqe->user_data == 1003 ||
			(cqe->user_data == 1000 &&
			 !(cqe->flags & IORING_CQE_F_MORE));
		io_uring_cqe_seen(&ring, cqe);
	}
	close(f.efd);
	return t1 - atomic_load(&f.t0);
}

static int64_t scope_cancel(void)
{
	struct firer f = { .efd = -1 };
	struct cfd_scope *s;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int64_t t1 = 0;
	uint64_t ud;
	int r;

	if (cfd_token_new(&f.token, "bench") < 0)
		die("token", -ENOMEM);
	r = cfd_scope_new(&s, cu, f.token);
	if (r < 0)
		die("scope", r);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_read(sqe, pfd[0], buf, 1, 0);
	sqe->user_data = 2001;
	cfd_scope_add(s, sqe, 0);
	io_uring_submit(&ring);
	pthread_create(&f.th, NULL, firer_main, &f);
	atomic_store(&f.go, 1);
	while (!t1) {
		io_uring_wait_cqe(&ring, &cqe);
		r = cfd_uring_cqe(cu, cqe, &ud);
		if (r == CFD_CQE_OP_CANCELLED && ud == 2001)
			t1 = now_ns();
		io_uring_cqe_seen(&ring, cqe);
	}
	pthread_join(f.th, NULL);
	cfd_scope_unref(s);
	cfd_token_unref(f.token);
	/* the watch's removal: let it land outside the timing */
	while (io_uring_peek_cqe(&ring, &cqe) == 0) {
		cfd_uring_cqe(cu, cqe, &ud);
		io_uring_cqe_seen(&ring, cqe);
	}
	return t1 - atomic_load(&f.t0);
}

/* ---- rounds and ratios ---- */

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static double median(int64_t *v, int n)
{
	qsort(v, n, sizeof(*v), cmp64);
	return n % 2 ? (double)v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static double mediand(double *v, int n)
{
	int64_t tmp[n];

	for (int i = 0; i < n; i++)
		tmp[i] = (int64_t)(v[i] * 1e6);
	return median(tmp, n) / 1e6;
}

struct mode {
	const char *name;
	int64_t (*fn)(void);
	int samples;
};

int main(int argc, char **argv)
{
	static const struct mode modes[] = {
		{ "bare64", bare64, SAMPLES },
		{ "wait64_nodl", wait64_nodl, SAMPLES },
		{ "wait64_dl", wait64_dl, SAMPLES },
		{ "bare1", bare1, SAMPLES * 8 },
		{ "read_lt1", read_lt1, SAMPLES * 8 },
		{ "wait1_nodl", wait1_nodl, SAMPLES * 8 },
		{ "wait1_dl", wait1_dl, SAMPLES * 8 },
		{ "raw_cancel", raw_cancel, 100 },
		{ "scope_cancel", scope_cancel, 100 },
	};
	enum { NM = sizeof(modes) / sizeof(modes[0]) };
	int rounds = argc > 1 ? atoi(argv[1]) : 15;
	bool defer = argc > 2 && !strcmp(argv[2], "-d");
	struct io_uring_params p;
	double med[NM][rounds > 0 ? rounds : 1];
	double r64n[rounds], r64d[rounds], r1d[rounds], r1n[rounds],
	    rlat[rounds], rfloor[rounds];
	int r;

	if (rounds < 1)
		rounds = 1;
	memset(&p, 0, sizeof(p));
	if (defer)
		p.flags =
		    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	pin(0);
	r = io_uring_queue_init_params(256, &ring, &p);
	if (r == -ENOSYS || r == -EPERM)
		return 77;
	if (r < 0)
		die("ring", r);
	if (pipe2(pfd, O_CLOEXEC) < 0)
		die("pipe", -errno);
	r = cfd_uring_new(&cu, &ring);
	if (r < 0)
		die("cfd_uring_new", r);
	if (cfd_token_new(&tok, "bench") < 0)
		die("token", -ENOMEM);

	for (int round = 0; round < rounds; round++) {
		for (int m = 0; m < NM; m++) {
			int n = modes[m].samples;
			int64_t *v = malloc(n * sizeof(*v));

			for (int i = 0; i < n; i++)
				v[i] = modes[m].fn();
			med[m][round] = median(v, n);
			free(v);
		}
		r64n[round] = med[0][round] / med[1][round];
		r64d[round] = med[0][round] / med[2][round];
		r1n[round] = med[5][round] / med[3][round];
		r1d[round] = med[6][round] / med[4][round];
		rlat[round] = med[8][round] / med[7][round];
		rfloor[round] = med[3][round] / med[4][round];
	}
	printf("ring: %s, %d rounds\n",
	       defer ? "SINGLE_ISSUER|DEFER_TASKRUN" : "default", rounds);
	for (int m = 0; m < NM; m++) {
		double c[rounds];

		memcpy(c, med[m], sizeof(c));
		printf("  %-13s median %8.1f ns%s\n", modes[m].name,
		       mediand(c, rounds) / (m < 3 ? BATCH : 1),
		       m < 3   ? " per read"
		       : m < 7 ? " per op"
			       : " trigger->CQE");
	}
	printf(
	    "64 ops, no deadline:   throughput %.3fx bare   (target >= 0.95)\n",
	    mediand(r64n, rounds));
	printf(
	    "64 ops, one deadline:  throughput %.3fx bare   (target >= 0.90)\n",
	    mediand(r64d, rounds));
	printf("1 op, no deadline:     time %.3fx bare read\n",
	       mediand(r1n, rounds));
	printf(
	    "1 op, own deadline:    time %.3fx read+LINK_TIMEOUT (target <= 0.75)\n",
	    mediand(r1d, rounds));
	printf("  (floor: a bare read takes %.3fx read+LINK_TIMEOUT here)\n",
	       mediand(rfloor, rounds));
	printf(
	    "trigger -> ECANCELED:  time %.3fx raw path     (target <= 1.2)\n",
	    mediand(rlat, rounds));
	cfd_token_unref(tok);
	cfd_uring_unref(cu);
	io_uring_queue_exit(&ring);
	return 0;
}
