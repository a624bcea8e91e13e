/* SPDX-License-Identifier: MIT */
/*
 * io_uring rows (research/limits.md sections 4, 5 and 7).
 *
 * The workload is a 1-byte IORING_OP_READ from a pipe that already holds
 * data, so it completes inline and the cost measured is the ring's own.
 * A sample is one submit: from the first SQE prepared to the last CQE
 * consumed, per read, with every SQE, CQE and enter each side needs.
 *
 *   - 64 reads per submit, no deadline: cfd_uring_wait(CFD_WAIT_ALL) and
 *     a scope, against bare reads on the same ring (throughput ratio);
 *   - 64 reads sharing one deadline (1 s, never reached), against bare;
 *   - one read per submit with its own deadline, against the same read
 *     with a LINK_TIMEOUT;
 *   - trigger -> the pending op's -ECANCELED CQE, two pinned threads,
 *     against the raw path: eventfd write -> multishot poll CQE ->
 *     hand-issued ASYNC_CANCEL -> the op's CQE (section 5, design "ms").
 *
 * The library's side needs lib/uring.c; until it exists (HAVE_CFD_URING
 * is set by meson when it does) those columns say "pending: uring" and
 * only the baselines are measured.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cancelfd.h>

#include "bench.h" /* first: it says whether HAVE_CFD_URING */
#if HAVE_CFD_URING
#include <cancelfd-uring.h>
#endif

#define BATCH 64
#define UD_POLL 0x1000000u
#define UD_CANCEL 0x2000000u
#define UD_TIMEOUT 0x3000000u
#define UD_READ 0x4000000u

struct env {
	struct io_uring ring;
	int pipefd[2];
	char buf[BATCH];
#if HAVE_CFD_URING
	struct cfd_uring *cu;
	struct cfd_token *tok;
	struct cfd_scope *scope;
	struct io_uring_sqe ops[BATCH];
	struct cfd_op_result res[BATCH];
#endif
};

static void refill(struct env *e, size_t bytes)
{
	static char junk[8192];

	while (bytes) {
		size_t n = bytes < sizeof(junk) ? bytes : sizeof(junk);
		ssize_t w = write(e->pipefd[1], junk, n);

		if (w <= 0)
			die("pipe refill failed");
		bytes -= (size_t)w;
	}
}

#if HAVE_CFD_URING
/* A CQE the library put on the caller's ring: hand it over. */
static bool library_cqe(struct env *e, struct io_uring_cqe *cqe)
{
	uint64_t ud;

	if ((cqe->user_data >> 48) != CFD_URING_UDATA_TAG)
		return false;
	cfd_uring_cqe(e->cu, cqe, &ud);
	return true;
}
#else
static bool library_cqe(struct env *e, struct io_uring_cqe *cqe)
{
	(void)e;
	(void)cqe;
	return false;
}
#endif

/* Bare reads: b per submit.  ns per read. */
static double bare_batch(struct env *e, unsigned b)
{
	struct io_uring_cqe *cqe;
	unsigned got = 0;
	int64_t t0, t1;

	t0 = now_ns();
	for (unsigned i = 0; i < b; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);

		io_uring_prep_read(sqe, e->pipefd[0], e->buf + i, 1, 0);
		sqe->user_data = UD_READ + i;
	}
	if (io_uring_submit_and_wait(&e->ring, b) < 0)
		die("io_uring_submit_and_wait failed");
	while (got < b) {
		if (io_uring_wait_cqe(&e->ring, &cqe) < 0)
			die("io_uring_wait_cqe failed");
		if (!library_cqe(e, cqe)) {
			if (cqe->res != 1 || cqe->user_data - UD_READ >= b)
				die("bare read: res %d", cqe->res);
			got++;
		}
		io_uring_cqe_seen(&e->ring, cqe);
	}
	t1 = now_ns();
	return (double)(t1 - t0) / b;
}

/* One read linked to a 1 s LINK_TIMEOUT that never fires. */
static double link_timeout_op(struct env *e)
{
	struct __kernel_timespec ts = { .tv_sec = 1 };
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int got = 0;
	int64_t t0, t1;

	t0 = now_ns();
	sqe = io_uring_get_sqe(&e->ring);
	io_uring_prep_read(sqe, e->pipefd[0], e->buf, 1, 0);
	sqe->flags |= IOSQE_IO_LINK;
	sqe->user_data = UD_READ;
	sqe = io_uring_get_sqe(&e->ring);
	io_uring_prep_link_timeout(sqe, &ts, 0);
	sqe->user_data = UD_TIMEOUT;
	if (io_uring_submit_and_wait(&e->ring, 2) < 0)
		die("io_uring_submit_and_wait failed");
	while (got < 2) {
		if (io_uring_wait_cqe(&e->ring, &cqe) < 0)
			die("io_uring_wait_cqe failed");
		if (!library_cqe(e, cqe)) {
			if (cqe->user_data == UD_READ ? cqe->res != 1
						      : cqe->res != -ECANCELED)
				die("read+LINK_TIMEOUT: res %d", cqe->res);
			got++;
		}
		io_uring_cqe_seen(&e->ring, cqe);
	}
	t1 = now_ns();
	return (double)(t1 - t0);
}

#if HAVE_CFD_URING
/* cfd_uring_wait() over b reads; deadline_ns < 0: none. */
static double cfd_wait_batch(struct env *e, unsigned b, int64_t deadline_ns)
{
	struct cfd_wait_result wr;
	int64_t t0, t1;
	int r;

	t0 = now_ns();
	r = cfd_uring_wait(e->cu, e->tok, e->ops, b, deadline_ns,
			   b > 1 ? CFD_WAIT_ALL : 0, e->res, &wr);
	t1 = now_ns();
	if (r != CFD_BY_OP)
		die("cfd_uring_wait returned %d", r);
	for (unsigned i = 0; i < b; i++)
		if (e->res[i].res != 1)
			die("cfd_uring_wait: read %u res %d", i, e->res[i].res);
	return (double)(t1 - t0) / b;
}

/* b reads added to a scope, submitted and reaped by the caller. */
static double cfd_scope_batch(struct env *e, unsigned b)
{
	struct io_uring_cqe *cqe;
	unsigned got = 0;
	int64_t t0, t1;

	t0 = now_ns();
	for (unsigned i = 0; i < b; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);

		io_uring_prep_read(sqe, e->pipefd[0], e->buf + i, 1, 0);
		sqe->user_data = UD_READ + i;
		if (cfd_scope_add(e->scope, sqe, 0) < 0)
			die("cfd_scope_add failed");
	}
	if (io_uring_submit_and_wait(&e->ring, b) < 0)
		die("io_uring_submit_and_wait failed");
	while (got < b) {
		uint64_t ud;

		if (io_uring_wait_cqe(&e->ring, &cqe) < 0)
			die("io_uring_wait_cqe failed");
		if (cfd_uring_cqe(e->cu, cqe, &ud) == CFD_CQE_OP) {
			if (cqe->res != 1 || ud - UD_READ >= b)
				die("scope read: res %d", cqe->res);
			got++;
		}
		io_uring_cqe_seen(&e->ring, cqe);
	}
	t1 = now_ns();
	return (double)(t1 - t0) / b;
}

static void env_cfd_init(struct env *e)
{
	if (cfd_uring_new(&e->cu, &e->ring) < 0 ||
	    cfd_token_new(&e->tok, "bench") < 0 ||
	    cfd_scope_new(&e->scope, e->cu, e->tok) < 0)
		die("cancelfd-uring setup failed");
	for (unsigned i = 0; i < BATCH; i++) {
		memset(&e->ops[i], 0, sizeof(e->ops[i]));
		io_uring_prep_read(&e->ops[i], e->pipefd[0], e->buf + i, 1, 0);
		e->ops[i].user_data = UD_READ + i;
	}
}

static void env_cfd_fini(struct env *e)
{
	cfd_scope_unref(e->scope);
	cfd_uring_unref(e->cu);
	cfd_token_unref(e->tok);
}
#endif

static int env_init(struct env *e)
{
	int r = io_uring_queue_init(256, &e->ring, 0);

	if (r < 0)
		return r;
	if (pipe2(e->pipefd, O_CLOEXEC) < 0)
		die("pipe2 failed");
	fcntl(e->pipefd[1], F_SETPIPE_SZ, 1 << 20);
#if HAVE_CFD_URING
	env_cfd_init(e);
#endif
	return 0;
}

static void env_fini(struct env *e)
{
#if HAVE_CFD_URING
	env_cfd_fini(e);
#endif
	io_uring_queue_exit(&e->ring);
	close(e->pipefd[0]);
	close(e->pipefd[1]);
}

/* ---- throughput and per-op rows ---- */

enum umode { U_BARE, U_WAIT, U_SCOPE, U_WAIT_DL, U_MODES };

static void batch_rows(struct env *e)
{
	struct row *wait, *scope, *dl, *one, *floor1, *vsbare;
	const int rounds = Q(3, 50), per = Q(20, 100);
	const int rounds1 = Q(3, 50), per1 = Q(50, 200);

	wait =
	    row_new("uring", "read x64/submit, no deadline (wait)", "ns",
		    "bare reads, same ring", ROW_THROUGHPUT, TARGET_GE, 0.95);
	scope =
	    row_new("uring", "read x64/submit, no deadline (scope)", "ns",
		    "bare reads, same ring", ROW_THROUGHPUT, TARGET_GE, 0.95);
	dl = row_new("uring", "64 reads sharing one deadline (wait)", "ns",
		     "bare reads, same ring", ROW_THROUGHPUT, TARGET_GE, 0.9);
	one = row_new("uring", "1 read/submit, own deadline (wait)", "ns",
		      "read + LINK_TIMEOUT", ROW_TIME, TARGET_LE, 0.75);
	/* What the target is up against on this host: a bare read with no
	 * deadline at all, against the same LINK_TIMEOUT; and the wait
	 * against that bare read. */
	floor1 = row_new("uring", "  bare read, no deadline (the floor)", "ns",
			 "read + LINK_TIMEOUT", ROW_TIME, TARGET_NONE, 0);
	vsbare = row_new("uring", "  1 read/submit, own deadline (wait)", "ns",
			 "bare read, no deadline", ROW_TIME, TARGET_NONE, 0);
#if !HAVE_CFD_URING
	row_pending(wait, "uring");
	row_pending(scope, "uring");
	row_pending(dl, "uring");
	row_pending(one, "uring");
	row_pending(vsbare, "uring");
#endif
	row_note(wait,
		 "ns per read; 1-byte reads from a pipe holding data; %d "
		 "rounds x %d submits per side",
		 rounds, per);

	/* Warm-up, then rounds with the modes in rotating order. */
	refill(e, BATCH * (size_t)per * U_MODES);
	for (int k = 0; k < per; k++)
		bare_batch(e, BATCH);
	for (int i = 0; i < rounds; i++) {
		row_round_begin(wait);
		row_round_begin(scope);
		row_round_begin(dl);
		for (int s = 0; s < U_MODES; s++) {
			enum umode m = (enum umode)((s + i) % U_MODES);

			if (m != U_BARE && !HAVE_CFD_URING)
				continue;
			refill(e, BATCH * (size_t)per);
			for (int k = 0; k < per; k++) {
				double v = 0;

				switch (m) {
				case U_BARE:
					v = bare_batch(e, BATCH);
					row_base(wait, v);
					row_base(scope, v);
					row_base(dl, v);
					break;
#if HAVE_CFD_URING
				case U_WAIT:
					row_cfd(wait,
						cfd_wait_batch(e, BATCH,
							       CFD_FOREVER));
					break;
				case U_SCOPE:
					row_cfd(scope,
						cfd_scope_batch(e, BATCH));
					break;
				case U_WAIT_DL:
					row_cfd(dl, cfd_wait_batch(e, BATCH,
								   CFD_SEC(1)));
					break;
#endif
				default:
					(void)v;
					break;
				}
			}
		}
		row_round_end(wait);
		row_round_end(scope);
		row_round_end(dl);
	}

	/* One read per submit, each with its own deadline. */
	refill(e, (size_t)per1 * 2);
	for (int k = 0; k < per1; k++)
		link_timeout_op(e);
	for (int i = 0; i < rounds1; i++) {
		row_round_begin(one);
		row_round_begin(floor1);
		row_round_begin(vsbare);
		refill(e, (size_t)per1 * 3);
		for (int s = 0; s < 3; s++) {
			for (int k = 0; k < per1; k++) {
				double v;

				switch ((s + i) % 3) {
				case 0:
					v = link_timeout_op(e);
					row_base(one, v);
					row_base(floor1, v);
					break;
				case 1:
					v = bare_batch(e, 1);
					row_cfd(floor1, v);
					row_base(vsbare, v);
					break;
				default:
#if HAVE_CFD_URING
					v = cfd_wait_batch(e, 1, CFD_SEC(1));
					row_cfd(one, v);
					row_cfd(vsbare, v);
#endif
					break;
				}
			}
		}
		row_round_end(one);
		row_round_end(floor1);
		row_round_end(vsbare);
	}
}

/* ---- cancel latency ---- */

/*
 * W (cpu a) owns the ring and sleeps with a read pending on an empty pipe;
 * S (cpu b) waits until W is asleep (20 us after W said it is about to
 * wait), stamps t0 and fires.  W stamps t1 when the read's -ECANCELED CQE
 * is in its hands.
 */
enum cmode { C_RAW, C_WAIT, C_SCOPE, C_MODES };

struct clat {
	struct io_uring ring;  /* the raw path's */
	struct io_uring ring2; /* the library's, so that neither sees the
				  other's CQEs */
	int efd;
	int pipefd[2];
	enum cmode mode;
	int n;
	_Atomic int armed;
	int64_t *t0;
	struct cfd_token **tok;
#if HAVE_CFD_URING
	struct cfd_uring *cu;
#endif
};

static void *clat_s(void *arg)
{
	struct clat *c = arg;
	uint64_t one = 1;

	pin_self(cpu_b);
	for (int i = 0; i < c->n; i++) {
		while (atomic_load(&c->armed) != i + 1)
			;
		spin_for_ns(20000);
		c->t0[i] = now_ns();
		if (c->mode == C_RAW) {
			if (write(c->efd, &one, sizeof(one)) < 0)
				die("eventfd write failed");
		} else {
			cfd_token_trigger(c->tok[i]);
		}
	}
	return NULL;
}

static void arm_poll(struct clat *c)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);

	io_uring_prep_poll_multishot(sqe, c->efd, POLLIN);
	sqe->user_data = UD_POLL;
	io_uring_submit(&c->ring);
}

/* The raw path: eventfd -> multishot poll CQE -> ASYNC_CANCEL -> CQE. */
static int64_t clat_raw_one(struct clat *c, int i)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	bool got_read = false, got_cancel = false, rearm = false;
	int64_t t1 = 0;
	uint64_t v;

	atomic_store(&c->armed, i + 1);
	sqe = io_uring_get_sqe(&c->ring);
	io_uring_prep_read(sqe, c->pipefd[0], &v, 1, 0);
	sqe->user_data = UD_READ;
	io_uring_submit(&c->ring);
	while (!got_read || !got_cancel) {
		if (io_uring_submit_and_wait(&c->ring, 1) < 0 ||
		    io_uring_peek_cqe(&c->ring, &cqe) < 0)
			die("cancel latency: no CQE");
		switch (cqe->user_data) {
		case UD_POLL:
			if (!(cqe->flags & IORING_CQE_F_MORE))
				rearm = true;
			sqe = io_uring_get_sqe(&c->ring);
			io_uring_prep_cancel64(sqe, UD_READ, 0);
			sqe->user_data = UD_CANCEL;
			break;
		case UD_READ:
			t1 = now_ns();
			if (cqe->res != -ECANCELED)
				die("cancel latency: read res %d", cqe->res);
			got_read = true;
			break;
		case UD_CANCEL:
			got_cancel = true;
			break;
		default:
			die("cancel latency: stray CQE %llu",
			    (unsigned long long)cqe->user_data);
		}
		io_uring_cqe_seen(&c->ring, cqe);
	}
	if (read(c->efd, &v, sizeof(v)) < 0)
		die("eventfd reset failed");
	if (rearm)
		arm_poll(c);
	return t1;
}

#if HAVE_CFD_URING
/* cfd_uring_wait() on one pending read; the token fires. */
static int64_t clat_wait_one(struct clat *c, int i)
{
	struct io_uring_sqe op;
	struct cfd_op_result res;
	struct cfd_wait_result wr;
	uint64_t v;
	int r;

	memset(&op, 0, sizeof(op));
	io_uring_prep_read(&op, c->pipefd[0], &v, 1, 0);
	op.user_data = UD_READ;
	atomic_store(&c->armed, i + 1);
	r = cfd_uring_wait(c->cu, c->tok[i], &op, 1, CFD_FOREVER, 0, &res, &wr);
	/* Preempted for longer than S's 20 us before the submit (it happens
	 * on a VM): the token had fired, nothing was pending, nothing to
	 * time.  The sample is dropped. */
	if (r == CFD_BY_TOKEN && res.state == CFD_OP_NOT_SUBMITTED)
		return 0;
	if (r != CFD_BY_TOKEN || res.state != CFD_OP_CANCELLED)
		die("cancel latency: cfd_uring_wait %d, op state %d", r,
		    res.state);
	return now_ns();
}

/* A scope on the caller's own loop; the token fires. */
static int64_t clat_scope_one(struct clat *c, int i)
{
	struct cfd_scope *scope;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int64_t t1 = 0;
	uint64_t v, ud;

	if (cfd_scope_new(&scope, c->cu, c->tok[i]) < 0)
		die("cfd_scope_new failed");
	sqe = io_uring_get_sqe(&c->ring2);
	io_uring_prep_read(sqe, c->pipefd[0], &v, 1, 0);
	sqe->user_data = UD_READ;
	if (cfd_scope_add(scope, sqe, 0) < 0)
		die("cfd_scope_add failed");
	atomic_store(&c->armed, i + 1);
	io_uring_submit(&c->ring2);
	while (!t1) {
		int k;

		if (io_uring_submit_and_wait(&c->ring2, 1) < 0 ||
		    io_uring_peek_cqe(&c->ring2, &cqe) < 0)
			die("cancel latency: no CQE");
		k = cfd_uring_cqe(c->cu, cqe, &ud);
		if (k != CFD_CQE_OWN && ud == UD_READ) {
			t1 = now_ns();
			if (k != CFD_CQE_OP_CANCELLED)
				die("cancel latency: scope read res %d",
				    cqe->res);
		}
		io_uring_cqe_seen(&c->ring2, cqe);
	}
	cfd_scope_unref(scope);
	return t1;
}
#endif

static void clat_run(struct clat *c, enum cmode m, struct row *r,
		     struct row *r2, bool record)
{
	pthread_t s;

	c->mode = m;
	atomic_store(&c->armed, 0);
	/* Fresh tokens (one triggers once), fds made beforehand. */
	for (int i = 0; m != C_RAW && i < c->n; i++)
		if (cfd_token_new(&c->tok[i], "") < 0 ||
		    cfd_token_fd(c->tok[i]) < 0)
			die("cfd token with fd failed");
	if (pthread_create(&s, NULL, clat_s, c) != 0)
		die("pthread_create failed");
	for (int i = 0; i < c->n; i++) {
		int64_t t1 = 0;

		switch (m) {
		case C_RAW:
			t1 = clat_raw_one(c, i);
			break;
#if HAVE_CFD_URING
		case C_WAIT:
			t1 = clat_wait_one(c, i);
			break;
		case C_SCOPE:
			t1 = clat_scope_one(c, i);
			break;
#endif
		default:
			break;
		}
		/* S stamps t0 before it fires, so t0 is there by now. */
		if (!t1)
			continue; /* dropped: fired before the op was pending */
		if (record && m == C_RAW) {
			row_base(r, (double)(t1 - c->t0[i]));
			row_base(r2, (double)(t1 - c->t0[i]));
		} else if (record) {
			row_cfd(m == C_WAIT ? r : r2, (double)(t1 - c->t0[i]));
		}
	}
	pthread_join(s, NULL);
	for (int i = 0; m != C_RAW && i < c->n; i++)
		cfd_token_unref(c->tok[i]);
}

static void cancel_rows(void)
{
	struct row *r, *r2;
	struct clat c;
	const int rounds = Q(2, 10);

	r = row_new("uring", "trigger -> pending op's -ECANCELED (wait)", "ns",
		    "efd->poll CQE->ASYNC_CANCEL", ROW_TIME, TARGET_LE, 1.2);
	r2 =
	    row_new("uring", "trigger -> pending op's -ECANCELED (scope)", "ns",
		    "efd->poll CQE->ASYNC_CANCEL", ROW_TIME, TARGET_LE, 1.2);
#if !HAVE_CFD_URING
	row_pending(r, "uring");
	row_pending(r2, "uring");
#endif
	memset(&c, 0, sizeof(c));
	c.n = Q(30, 500);
	if (c.n > fds_available())
		c.n = fds_available();
	row_note(r,
		 "threads pinned to cpu %d (ring) and %d (trigger); the "
		 "trigger comes 20 us after the op is submitted",
		 cpu_a, cpu_b);
	if (io_uring_queue_init(64, &c.ring, 0) < 0 ||
	    io_uring_queue_init(64, &c.ring2, 0) < 0)
		die("io_uring_queue_init failed");
	c.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c.efd < 0 || pipe2(c.pipefd, O_CLOEXEC) < 0)
		die("cancel latency setup failed");
	c.t0 = calloc((size_t)c.n, sizeof(*c.t0));
	c.tok = calloc((size_t)c.n, sizeof(*c.tok));
	if (!c.t0 || !c.tok)
		die("out of memory");
#if HAVE_CFD_URING
	if (cfd_uring_new(&c.cu, &c.ring2) < 0)
		die("cfd_uring_new failed");
#endif
	arm_poll(&c);
	pin_self(cpu_a);
	for (int s = 0; s < C_MODES; s++) /* warm-up */
		if (s == C_RAW || HAVE_CFD_URING)
			clat_run(&c, (enum cmode)s, r, r2, false);
	for (int i = 0; i < rounds; i++) {
		row_round_begin(r);
		row_round_begin(r2);
		for (int s = 0; s < C_MODES; s++) {
			enum cmode m = (enum cmode)((s + i) % C_MODES);

			if (m == C_RAW || HAVE_CFD_URING)
				clat_run(&c, m, r, r2, true);
		}
		row_round_end(r);
		row_round_end(r2);
	}
	unpin_self();
#if HAVE_CFD_URING
	cfd_uring_unref(c.cu);
#endif
	io_uring_queue_exit(&c.ring);
	io_uring_queue_exit(&c.ring2);
	close(c.efd);
	close(c.pipefd[0]);
	close(c.pipefd[1]);
	free(c.t0);
	free(c.tok);
}

void rows_uring(void)
{
	struct env e;
	int r;

	memset(&e, 0, sizeof(e));
	r = env_init(&e);
	if (r < 0) {
		struct row *x = row_new("uring", "io_uring rows", "ns", "-",
					ROW_TIME, TARGET_NONE, 0);

		row_unavailable(x, "io_uring unavailable");
		row_note(x, "io_uring_queue_init: %s", strerror(-r));
		return;
	}
	batch_rows(&e);
	env_fini(&e);
	cancel_rows();
}
