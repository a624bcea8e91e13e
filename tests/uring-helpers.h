/* SPDX-License-Identifier: MIT */
#ifndef CFD_TEST_URING_HELPERS_H
#define CFD_TEST_URING_HELPERS_H

/*
 * Helpers of the io_uring suites: rings of every kind, the end-of-test
 * probe that proves nothing is left in flight, a caller's CQE loop, the
 * pending ops the tests cancel, and a helper thread that acts once the
 * ring has consumed a wait's SQEs (so no test depends on timing).
 */

#include <cancelfd-uring.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "helpers.h"

#define RING_DEFAULT 0
#define RING_DEFER 1 /* SINGLE_ISSUER | DEFER_TASKRUN */
#define RING_COOP 2  /* COOP_TASKRUN | TASKRUN_FLAG */
#define NRING_KINDS 3

struct fx {
	struct io_uring ring;
	struct cfd_uring *cu;
	int kind;
};

/* In a loop test over the ring kinds (tcase_add_loop_test(tc, test, 0,
 * NRING_KINDS)): the ring kind of this run. */
#define KIND (_i)

/* false: this kernel lacks the ring kind (the test passes vacuously) */
bool fx_open(struct fx *f, int kind, unsigned sq, unsigned cq);
/*
 * End of test: the backlog is empty; an ASYNC_CANCEL(ANY | ALL) finds only
 * the library's own requests (idle token polls, the ring timer), never a
 * caller's op; after cfd_uring_unref() a second one finds nothing at all;
 * then the ring is closed.
 */
void fx_close(struct fx *f);
/* ASYNC_CANCEL(ANY | ALL): how many requests it found (all the library's,
 * or the test fails). */
int fx_probe(struct fx *f);

/* What the caller's loop saw: CQEs passed through cfd_uring_cqe(). */
struct seen {
	uint64_t ud;
	int32_t res;
	uint32_t flags;
	int kind; /* CFD_CQE_OP or CFD_CQE_OP_CANCELLED */
};

struct loop_stats {
	unsigned own;	       /* CFD_CQE_OWN */
	unsigned own_terminal; /* ... without IORING_CQE_F_MORE */
};

/*
 * The caller's own CQE loop: submit, wait, pass each CQE through
 * cfd_uring_cqe(), record the caller's ones in out[] (at most max) until
 * `want` of them were seen or ms passed.  Returns how many were recorded.
 */
int fx_loop(struct fx *f, struct seen *out, int max, int want, int ms,
	    struct loop_stats *st);

/* The next CQE (submitting first), waiting at most ms; NULL if none came.
 * Fails the test on an error of the ring. */
struct io_uring_cqe *fx_wait_cqe(struct io_uring *ring, int ms);

/* Ops and pipes: an SQE that reads len bytes of fd; a byte written to fd;
 * how many SQEs the kernel has consumed. */
struct io_uring_sqe sqe_read(int fd, void *buf, unsigned len);
void fill_pipe(int fd);
unsigned sq_consumed(struct io_uring *ring);

/* Queue a 1-byte read of fd in scope s with user_data ud (no submit). */
void scope_read(struct fx *f, struct cfd_scope *s, int fd, char *buf,
		uint64_t ud, unsigned flags);
/* The caller's loop sees exactly one CQE of the caller's (within
 * T_WAIT_MS): it. */
struct seen expect_one(struct fx *f);

/* A pending op of one of several kinds, and a way to complete it. */
enum target_kind {
	T_PIPE,	   /* 1-byte read from an empty pipe */
	T_EVENTFD, /* 8-byte read from a zero eventfd */
	T_UNIX,	   /* recv from an AF_UNIX stream socket */
	T_ACCEPT,  /* accept on a loopback TCP listener */
	T_POLL,	   /* POLL_ADD(POLLIN) on an empty pipe */
	NTARGETS
};

struct target {
	int kind;
	int fd[2]; /* pipe, socketpair, or listener + client */
	int efd;   /* eventfd */
	uint64_t buf;
	struct sockaddr_in addr;
};

void target_open(struct target *t, int kind);
void target_prep(struct target *t, struct io_uring_sqe *sqe);
/* Make the pending op complete (from any thread).  0 or -errno. */
int target_complete(struct target *t);
void target_check_completed(struct target *t, int32_t res);
/* Close everything, and the fd an accept returned if res >= 0. */
void target_close(struct target *t, int32_t res);
const char *target_name(int kind);

/* ---- a helper thread that acts once the ring took a wait's SQEs ---- */

enum act {
	ACT_TRIGGER,	      /* cfd_token_trigger(tok) */
	ACT_COMPLETE,	      /* target_complete(target) */
	ACT_COMPLETE_TRIGGER, /* both, back to back */
	ACT_SIGNAL_ASYNC,     /* SIGUSR2 to the waiter, whose handler triggers
				 with cfd_token_trigger_async_safe() */
	ACT_SIGNAL_TRIGGER,   /* SIGUSR1 to the waiter, then trigger once the
			       handler ran */
	ACT_FN,		      /* fn(arg) */
};

struct actor {
	pthread_t th;
	struct io_uring *ring;
	unsigned until; /* act once the kernel's SQ head reaches this */
	int act;
	struct cfd_token *tok;
	struct target *target;
	pthread_t waiter;
	int (*fn)(void *arg);
	void *arg;
	int err;
};

/* Start a helper; call right before cfd_uring_wait() on that ring: it
 * acts once the kernel has consumed the wait's first SQE (so the whole
 * batch: one submit). */
void actor_start(struct actor *a, struct io_uring *ring, int act,
		 struct cfd_token *tok, struct target *target);
/* Same, acting once every SQE queued so far is consumed (scopes). */
void actor_start_queued(struct actor *a, struct io_uring *ring, int act,
			struct cfd_token *tok, struct target *target);
void actor_start_fn(struct actor *a, struct io_uring *ring,
		    int (*fn)(void *arg), void *arg);
/* Join it; fails the test if it could not act. */
void actor_join(struct actor *a);

/* Set by the SIGUSR1 handler the suite installs. */
extern _Atomic int t_sigusr1_seen; /* lock-free: signal-safe */
void t_install_sigusr1(void);

/* io_uring itself unusable here (-ENOSYS, -EPERM): the suite skips. */
bool t_uring_available(void);
/* main() of an io_uring suite: run make()'s suite (t_run_suite()), or say
 * that it is skipped and return 77 when io_uring is unusable. */
int t_uring_main(Suite *(*make)(void));

#endif
