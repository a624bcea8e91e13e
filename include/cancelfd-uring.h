/* SPDX-License-Identifier: MIT */
#ifndef CANCELFD_URING_H
#define CANCELFD_URING_H

/*
 * cancelfd-uring: cancel io_uring operations that are already pending in
 * the kernel, with a cancelfd token and/or a deadline.
 *
 * A struct cfd_uring binds the library to one of the caller's rings.  On
 * that ring the library keeps one poll per token that a running wait or a
 * live scope uses (so an op costs nothing extra to be cancellable), and
 * nothing else: a wait's deadline is the timeout of its own entries into
 * the kernel.
 *
 * Two ways to use it:
 *   - cfd_uring_wait(): submit ops, return when the first (or every) op
 *     completes, the token triggers, or the deadline passes; everything
 *     else is cancelled and every CQE the call caused is reaped before it
 *     returns.
 *   - scopes: a scope binds a token to the ring; ops added to it are
 *     cancelled when the token triggers, and each still reaches the
 *     caller's own CQE loop once.  cfd_uring_cqe() tells that loop which
 *     CQEs are the library's own.
 *
 * See cancelfd-uring(7) for the race rules and the precedence of results.
 */

#include <liburing.h>

#include <cancelfd.h>

#ifdef __cplusplus
extern "C" {
#endif

struct cfd_uring;
struct cfd_scope;

/*
 * user_data values whose top 16 bits are CFD_URING_UDATA_TAG are the
 * library's; the caller's own ops must not use them.  cfd_uring_cqe()
 * recognises them; CFD_URING_UDATA_IS_OWN() does too without a cfd_uring
 * (for CQEs that arrive after it was released).
 */
#define CFD_URING_UDATA_TAG 0xcfd0u
#define CFD_URING_UDATA_IS_OWN(ud) \
	((uint16_t)((uint64_t)(ud) >> 48) == CFD_URING_UDATA_TAG)

/*
 * Threads: every call below is made from the thread that drives the ring
 * (the ring's only submitter), except cfd_scope_cancel() and
 * cfd_scope_token(), which touch only the token.  Any thread may trigger
 * a token.  Calls that may submit the SQ (submitting the caller's prepared
 * SQEs with the library's): cfd_uring_wait(), cfd_uring_cqe(),
 * cfd_scope_new(), cfd_scope_unref(), cfd_uring_unref(); cfd_scope_add()
 * never submits.  Release the cfd_uring before io_uring_queue_exit().
 */

int cfd_uring_new(struct cfd_uring **ret, struct io_uring *ring);
struct cfd_uring *cfd_uring_ref(struct cfd_uring *cu);
struct cfd_uring *cfd_uring_unref(struct cfd_uring *cu);
void cfd_uring_unrefp(struct cfd_uring **cup);

/* ---- cancellable wait ---- */

/* Who ended a wait: what cfd_uring_wait() returns (never a flag) */
enum cfd_wait_end {
	CFD_BY_OP = 1,	   /* an op completed (in CFD_WAIT_ALL: every op) */
	CFD_BY_TOKEN = 2,  /* the token triggered */
	CFD_BY_TIMEOUT = 3 /* the deadline passed */
};

/* cfd_uring_wait() flags */
#define CFD_WAIT_ALL (1u << 0) /* wait for every op, not the first */
#define CFD_WAIT_ABS (1u << 1) /* timeout_ns is an absolute deadline */

/* What happened to one op of a wait */
#define CFD_OP_NOT_SUBMITTED 0 /* never reached the kernel */
#define CFD_OP_COMPLETED 1     /* ended by itself: res is its own result */
/* cancelled by this wait: res is -ECANCELED or -EINTR */
#define CFD_OP_CANCELLED 2

struct cfd_op_result {
	int32_t res;	/* the op's CQE res */
	uint32_t flags; /* the op's CQE flags */
	int state;	/* CFD_OP_* */
};

struct cfd_wait_result {
	int by;			  /* CFD_BY_OP, _TOKEN or _TIMEOUT */
	int op;			  /* the op that ended the wait, else -1 */
	int32_t res;		  /* its res */
	unsigned completed;	  /* ops that ended by themselves */
	int reason;		  /* the token's reason at return */
	struct cfd_token *origin; /* the token's origin (borrowed) or NULL */
};

/*
 * tok may be NULL (a deadline only); timeout_ns < 0 is no deadline, unless
 * CFD_WAIT_ABS; nops may be 0 (wait for the token or the deadline);
 * results (one per op) may be NULL only with nops 0; result may be NULL.
 * A token already triggered (then a deadline already passed) returns
 * before anything is submitted.  See cfd_uring_wait(3).
 */
int cfd_uring_wait(struct cfd_uring *cu, struct cfd_token *tok,
		   const struct io_uring_sqe *ops, unsigned nops,
		   int64_t timeout_ns, unsigned flags,
		   struct cfd_op_result *results,
		   struct cfd_wait_result *result);

/* The most ops one cfd_uring_wait() takes (also: nops + 2 <= SQ size). */
#define CFD_URING_WAIT_MAX 4096u

/*
 * CQEs of other ops reaped while a wait ran, handed back in order, one per
 * call: returns CFD_CQE_OP or CFD_CQE_OP_CANCELLED as cfd_uring_cqe() would
 * (scope bookkeeping already done, out->user_data is the caller's value),
 * or -EAGAIN when the backlog is empty.  On a ring with 32-byte CQEs, out
 * must have room for one.
 */
int cfd_uring_backlog(struct cfd_uring *cu, struct io_uring_cqe *out);

/* ---- scopes ---- */

/* cfd_scope_add() flags */
#define CFD_SCOPE_SHIELD (1u << 0) /* not cancelled with the scope */

/* tok NULL: a new token of the scope's own (cfd_scope_cancel() triggers it).
 * A scope released with ops in flight keeps tracking them until reaped. */
int cfd_scope_new(struct cfd_scope **ret, struct cfd_uring *cu,
		  struct cfd_token *tok);
struct cfd_scope *cfd_scope_ref(struct cfd_scope *scope);
struct cfd_scope *cfd_scope_unref(struct cfd_scope *scope);
void cfd_scope_unrefp(struct cfd_scope **scopep);
struct cfd_token *cfd_scope_token(struct cfd_scope *scope);
int cfd_scope_add(struct cfd_scope *scope, struct io_uring_sqe *sqe,
		  unsigned flags);
int cfd_scope_cancel(struct cfd_scope *scope);
int cfd_scope_link(struct cfd_scope *inner, struct cfd_scope *outer);
int cfd_scope_pending(struct cfd_scope *scope);

/* What cfd_uring_cqe() found */
#define CFD_CQE_OP 0	       /* the caller's: *user_data is its value */
#define CFD_CQE_OWN 1	       /* the library's own: skip it */
#define CFD_CQE_OP_CANCELLED 2 /* the caller's, ended by its scope's cancel */

int cfd_uring_cqe(struct cfd_uring *cu, const struct io_uring_cqe *cqe,
		  uint64_t *user_data);

#ifdef __cplusplus
}
#endif

#endif /* CANCELFD_URING_H */
