/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uring-helpers.h"

#define PROBE_UD 0x70726f6265000000ull

/* ---- rings ---- */

bool t_uring_available(void)
{
	struct io_uring ring;
	int r = io_uring_queue_init(4, &ring, 0);

	if (r == -ENOSYS || r == -EPERM)
		return false;
	if (r == 0)
		io_uring_queue_exit(&ring);
	return true;
}

int t_uring_main(Suite *(*make)(void))
{
	if (!t_uring_available()) {
		printf("io_uring unavailable here: skipped\n");
		return 77;
	}
	return t_run_suite(make());
}

bool fx_open(struct fx *f, int kind, unsigned sq, unsigned cq)
{
	struct io_uring_params p;
	int r;

	memset(&p, 0, sizeof(p));
	memset(f, 0, sizeof(*f));
	f->kind = kind;
	if (kind == RING_DEFER)
		p.flags |=
		    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	if (kind == RING_COOP)
		p.flags |=
		    IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
	if (cq) {
		p.flags |= IORING_SETUP_CQSIZE;
		p.cq_entries = cq;
	}
	r = io_uring_queue_init_params(sq, &f->ring, &p);
	if (r == -EINVAL && kind != RING_DEFAULT)
		return false;
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(cfd_uring_new(&f->cu, &f->ring), 0);
	return true;
}

struct io_uring_cqe *fx_wait_cqe(struct io_uring *ring, int ms)
{
	struct __kernel_timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	struct io_uring_cqe *cqe = NULL;
	int r;

	do
		r = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
	while (r == -EINTR);
	if (r < 0 && r != -ETIME)
		ck_abort_msg("io_uring wait: %d", r);
	if (!cqe)
		io_uring_peek_cqe(ring, &cqe);
	return cqe;
}

/* Only the last CQE of a request the probe can have found counts: the
 * library's removals, cancels, neutralised SQEs and failed links complete
 * at once and are no pending requests (kinds 1, 3, 5, 7, 8 in
 * lib/uring-internal.h). */
static bool probe_counts(const struct io_uring_cqe *cqe)
{
	unsigned kind = (unsigned)(cqe->user_data >> 44) & 0xf;

	if (cqe->flags & IORING_CQE_F_MORE)
		return false;
	return kind != 1 && kind != 3 && kind != 5 && kind != 7 && kind != 8;
}

/* Cancel everything on the ring; returns how many requests were found.
 * Every CQE seen meanwhile must be the library's. */
int fx_probe(struct fx *f)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&f->ring);
	int found = -1, seen = 0;

	if (!sqe) {
		io_uring_submit(&f->ring);
		sqe = io_uring_get_sqe(&f->ring);
	}
	ck_assert_ptr_nonnull(sqe);
	io_uring_prep_cancel64(
	    sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
	sqe->user_data = PROBE_UD;
	io_uring_submit(&f->ring);
	while (found < 0 || seen < found) {
		struct io_uring_cqe *cqe = fx_wait_cqe(&f->ring, T_WAIT_MS);
		uint64_t ud;

		ck_assert_msg(cqe, "probe: CQEs missing (%d of %d)", seen,
			      found);
		if (cqe->user_data == PROBE_UD) {
			ck_assert_int_ge(cqe->res, 0);
			found = cqe->res;
		} else {
			ck_assert_msg(CFD_URING_UDATA_IS_OWN(cqe->user_data),
				      "op left in flight: ud %llx res %d",
				      (unsigned long long)cqe->user_data,
				      cqe->res);
			if (f->cu)
				ck_assert_int_eq(cfd_uring_cqe(f->cu, cqe, &ud),
						 CFD_CQE_OWN);
			/* On a DEFER_TASKRUN ring a poll being removed is
			 * still found, and its own CQE comes with the next
			 * entry. */
			if (probe_counts(cqe))
				seen++;
		}
		io_uring_cqe_seen(&f->ring, cqe);
	}
	return found;
}

void fx_close(struct fx *f)
{
	struct io_uring_cqe cqe;
	struct io_uring_cqe *c;

	if (f->cu)
		ck_assert_int_eq(cfd_uring_backlog(f->cu, &cqe), -EAGAIN);
	fx_probe(f);
	f->cu = cfd_uring_unref(f->cu);
	ck_assert_int_eq(fx_probe(f), 0);
	/* stragglers: failed removals of requests the probe took */
	while ((c = fx_wait_cqe(&f->ring, 1))) {
		ck_assert(CFD_URING_UDATA_IS_OWN(c->user_data));
		io_uring_cqe_seen(&f->ring, c);
	}
	io_uring_queue_exit(&f->ring);
}

int fx_loop(struct fx *f, struct seen *out, int max, int want, int ms,
	    struct loop_stats *st)
{
	int64_t end = t_now_ns() + (int64_t)ms * 1000000;
	int n = 0;

	while (n < want && t_now_ns() < end) {
		struct io_uring_cqe *cqe;
		unsigned head, count = 0;

		fx_wait_cqe(&f->ring, 10);
		io_uring_for_each_cqe(&f->ring, head, cqe)
		{
			uint64_t ud;
			int kind = cfd_uring_cqe(f->cu, cqe, &ud);

			count++;
			ck_assert_int_ge(kind, 0);
			if (kind == CFD_CQE_OWN) {
				if (st) {
					st->own++;
					if (!(cqe->flags & IORING_CQE_F_MORE))
						st->own_terminal++;
				}
				continue;
			}
			ck_assert_int_lt(n, max);
			out[n++] =
			    (struct seen){ ud, cqe->res, cqe->flags, kind };
		}
		io_uring_cq_advance(&f->ring, count);
	}
	return n;
}

/* ---- ops and scopes ---- */

struct io_uring_sqe sqe_read(int fd, void *buf, unsigned len)
{
	struct io_uring_sqe sqe;

	memset(&sqe, 0, sizeof(sqe));
	io_uring_prep_read(&sqe, fd, buf, len, 0);
	return sqe;
}

void fill_pipe(int fd)
{
	ck_assert_int_eq(write(fd, "x", 1), 1);
}

unsigned sq_consumed(struct io_uring *ring)
{
	return *ring->sq.khead;
}

/* Queue a read of fd in scope s with user_data ud (no submit). */
void scope_read(struct fx *f, struct cfd_scope *s, int fd, char *buf,
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

struct seen expect_one(struct fx *f)
{
	struct seen s[2];

	ck_assert_int_eq(fx_loop(f, s, 2, 1, T_WAIT_MS, NULL), 1);
	return s[0];
}

/* ---- targets ---- */

const char *target_name(int kind)
{
	static const char *const names[] = { "pipe", "eventfd", "unix",
					     "accept", "poll" };
	return names[kind];
}

void target_open(struct target *t, int kind)
{
	socklen_t len = sizeof(t->addr);

	memset(t, 0, sizeof(*t));
	t->kind = kind;
	t->fd[0] = t->fd[1] = t->efd = -1;
	switch (kind) {
	case T_PIPE:
	case T_POLL:
		ck_assert_int_eq(pipe2(t->fd, O_CLOEXEC), 0);
		break;
	case T_EVENTFD:
		t->efd = eventfd(0, EFD_CLOEXEC);
		ck_assert_int_ge(t->efd, 0);
		break;
	case T_UNIX:
		ck_assert_int_eq(
		    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, t->fd),
		    0);
		break;
	case T_ACCEPT:
		t->fd[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ck_assert_int_ge(t->fd[0], 0);
		t->addr.sin_family = AF_INET;
		t->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		ck_assert_int_eq(bind(t->fd[0], (struct sockaddr *)&t->addr,
				      sizeof(t->addr)),
				 0);
		ck_assert_int_eq(listen(t->fd[0], 4), 0);
		ck_assert_int_eq(
		    getsockname(t->fd[0], (struct sockaddr *)&t->addr, &len),
		    0);
		break;
	}
}

void target_prep(struct target *t, struct io_uring_sqe *sqe)
{
	switch (t->kind) {
	case T_PIPE:
		io_uring_prep_read(sqe, t->fd[0], &t->buf, 1, 0);
		break;
	case T_EVENTFD:
		io_uring_prep_read(sqe, t->efd, &t->buf, 8, 0);
		break;
	case T_UNIX:
		io_uring_prep_recv(sqe, t->fd[0], &t->buf, 1, 0);
		break;
	case T_ACCEPT:
		io_uring_prep_accept(sqe, t->fd[0], NULL, NULL, SOCK_CLOEXEC);
		break;
	case T_POLL:
		io_uring_prep_poll_add(sqe, t->fd[0], POLLIN);
		break;
	}
	sqe->user_data = 0;
}

int target_complete(struct target *t)
{
	uint64_t one = 1;
	ssize_t n = 0;

	switch (t->kind) {
	case T_PIPE:
	case T_POLL:
		n = write(t->fd[1], "x", 1);
		break;
	case T_EVENTFD:
		n = write(t->efd, &one, sizeof(one));
		break;
	case T_UNIX:
		n = send(t->fd[1], "x", 1, MSG_NOSIGNAL);
		break;
	case T_ACCEPT:
		t->fd[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (t->fd[1] < 0)
			return -errno;
		if (connect(t->fd[1], (struct sockaddr *)&t->addr,
			    sizeof(t->addr)) < 0)
			return -errno;
		return 0;
	}
	return n < 0 ? -errno : 0;
}

void target_check_completed(struct target *t, int32_t res)
{
	switch (t->kind) {
	case T_PIPE:
	case T_UNIX:
		ck_assert_int_eq(res, 1);
		ck_assert_int_eq(((char *)&t->buf)[0], 'x');
		break;
	case T_EVENTFD:
		ck_assert_int_eq(res, 8);
		ck_assert_uint_eq(t->buf, 1);
		break;
	case T_ACCEPT:
		ck_assert_int_ge(res, 0);
		break;
	case T_POLL:
		ck_assert(res & POLLIN);
		break;
	}
}

void target_close(struct target *t, int32_t res)
{
	if (t->kind == T_ACCEPT && res >= 0)
		close(res);
	for (int i = 0; i < 2; i++)
		if (t->fd[i] >= 0)
			close(t->fd[i]);
	if (t->efd >= 0)
		close(t->efd);
}

/* ---- the helper thread ---- */

_Atomic int t_sigusr1_seen;

static void on_sigusr1(int sig)
{
	(void)sig;
	/* async-signal-safe: a lock-free atomic store, nothing else */
	atomic_store(&t_sigusr1_seen, 1);
}

void t_install_sigusr1(void)
{
	struct sigaction sa;
	sigset_t set;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigusr1; /* no SA_RESTART: the waiter sees EINTR */
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/* Wait until the kernel consumed the SQEs up to `until`: the ops are then
 * issued (pending), not merely prepared. */
static int wait_consumed(struct actor *a)
{
	int64_t end = t_now_ns() + (int64_t)T_WAIT_MS * 1000000;

	while ((int)(__atomic_load_n(a->ring->sq.khead, __ATOMIC_ACQUIRE) -
		     a->until) < 0) {
		if (t_now_ns() > end)
			return -ETIMEDOUT;
		usleep(200);
	}
	return 0;
}

static void *actor_main(void *arg)
{
	struct actor *a = arg;
	int64_t end;

	a->err = wait_consumed(a);
	if (a->err)
		return NULL;
	switch (a->act) {
	case ACT_TRIGGER:
		cfd_token_trigger(a->tok);
		break;
	case ACT_COMPLETE:
		a->err = target_complete(a->target);
		break;
	case ACT_COMPLETE_TRIGGER:
		a->err = target_complete(a->target);
		cfd_token_trigger(a->tok);
		break;
	case ACT_SIGNAL_TRIGGER:
		/* The waiter sits in io_uring_enter(): the signal makes it
		 * return -EINTR, which the wait must ride out. */
		end = t_now_ns() + (int64_t)T_WAIT_MS * 1000000;
		pthread_kill(a->waiter, SIGUSR1);
		while (!t_sigusr1_seen && t_now_ns() < end)
			usleep(100);
		if (!t_sigusr1_seen)
			a->err = -ETIMEDOUT;
		cfd_token_trigger(a->tok);
		break;
	case ACT_SIGNAL_ASYNC:
		/* The handler does the trigger, in the waiter's thread. */
		pthread_kill(a->waiter, SIGUSR2);
		break;
	case ACT_FN:
		a->err = a->fn(a->arg);
		break;
	}
	return NULL;
}

static void actor_go(struct actor *a, struct io_uring *ring, int act,
		     struct cfd_token *tok, struct target *target,
		     unsigned until)
{
	memset(a, 0, sizeof(*a));
	a->ring = ring;
	a->until = until;
	a->act = act;
	a->tok = tok;
	a->target = target;
	a->waiter = pthread_self();
	ck_assert_int_eq(pthread_create(&a->th, NULL, actor_main, a), 0);
}

void actor_start(struct actor *a, struct io_uring *ring, int act,
		 struct cfd_token *tok, struct target *target)
{
	actor_go(a, ring, act, tok, target, ring->sq.sqe_tail + 1);
}

void actor_start_queued(struct actor *a, struct io_uring *ring, int act,
			struct cfd_token *tok, struct target *target)
{
	actor_go(a, ring, act, tok, target, ring->sq.sqe_tail);
}

void actor_start_fn(struct actor *a, struct io_uring *ring,
		    int (*fn)(void *arg), void *arg)
{
	memset(a, 0, sizeof(*a));
	a->ring = ring;
	a->until = ring->sq.sqe_tail + 1;
	a->act = ACT_FN;
	a->fn = fn;
	a->arg = arg;
	ck_assert_int_eq(pthread_create(&a->th, NULL, actor_main, a), 0);
}

void actor_join(struct actor *a)
{
	ck_assert_int_eq(pthread_join(a->th, NULL), 0);
	ck_assert_msg(a->err == 0, "actor failed: %d", a->err);
}
