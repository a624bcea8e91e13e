/* SPDX-License-Identifier: MIT */
/*
 * cfd_uring_wait(): submit ops, wait until the first (or every) op
 * completes, the token triggers or the deadline passes, cancel the rest and
 * reap every CQE the call caused before returning.
 *
 * The race rules (cancelfd-uring(7) has them for users):
 *   - The wait decides after looking at every CQE posted so far, in
 *     batches.  In one batch, an op's completion beats the token, and the
 *     token beats the deadline.
 *   - An op's CQE is the truth about the op.  -ECANCELED/-EINTR is
 *     CFD_OP_CANCELLED only if a cancel of this wait found the op (the
 *     cancel's own CQE says 0 or -EALREADY), or the op was waiting in a link
 *     behind an op this wait cancelled.  Any other -ECANCELED (an outside
 *     ASYNC_CANCEL, the op's own LINK_TIMEOUT, a failed predecessor) is the
 *     op's own result: CFD_OP_COMPLETED, reported as CFD_WAIT_OP.
 *   - Nothing completed is discarded: after the wait decided TOKEN or
 *     TIMEOUT, an op that still completes by itself is CFD_OP_COMPLETED,
 *     and if that satisfies the mode, the wait returns CFD_WAIT_OP.
 *   - The cancels are not skip-success: the wait needs their results (and
 *     must reap them).  A cancel that finds nothing (-ENOENT) while the
 *     op's CQE has not come is retried: the op was waiting in a link, or
 *     its completion was still on its way.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "uring-internal.h"

/* Called by the dispatcher for the running wait's op and cancel CQEs. */
void wait_cqe(struct cfd_uring *cu, const struct io_uring_cqe *cqe)
{
	struct wait *w = cu->wait;
	uint32_t i = ud_idx(cqe->user_data);
	struct wait_op *o;

	if (i >= w->nops)
		return;
	o = &w->ops[i];
	if (ud_kind(cqe->user_data) == UD_WAIT_CANCEL) {
		o->cancelling = 0;
		w->cancels--;
		if (cqe->res == 0 || cqe->res == -EALREADY)
			o->hit = 1;
		else
			o->missed = 1;
		return;
	}
	if (o->done)
		return;
	if (!o->seen) {
		o->seen = 1;
		o->res = cqe->res;
		o->flags = cqe->flags;
		o->seq = w->seq++;
		w->any_seen = true;
	}
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		o->done = 1;
		w->inflight--;
	}
}

/* Ask the kernel to cancel every op still running that was not asked yet
 * (an SQE shortage may have left some); retry=true: those whose last
 * cancel found nothing. */
static void wait_cancel(struct cfd_uring *cu, struct wait *w, bool retry)
{
	for (uint32_t i = 0; i < w->nops; i++) {
		struct wait_op *o = &w->ops[i];
		struct io_uring_sqe *sqe;

		if (o->done || o->cancelling || o->hit)
			continue;
		if (retry ? !o->missed : o->asked)
			continue;
		sqe = cu_get_sqe(cu);
		if (!sqe)
			return; /* the next round tries again */
		io_uring_prep_cancel64(sqe, ud_make(UD_WAIT_OP, w->gen, i), 0);
		sqe->user_data = ud_make(UD_WAIT_CANCEL, w->gen, i);
		o->cancelling = 1;
		o->asked = 1;
		o->missed = 0;
		w->cancels++;
		cu->dirty = true;
	}
}

static bool wait_needs_retry(const struct wait *w)
{
	for (uint32_t i = 0; i < w->nops; i++) {
		const struct wait_op *o = &w->ops[i];

		if (!o->done && !o->cancelling && !o->hit && o->missed)
			return true;
	}
	return false;
}

static int wait_decide(const struct wait *w, struct cfd_token *tok,
		       unsigned flags)
{
	if (w->nops &&
	    ((flags & CFD_WAIT_ALL) ? w->inflight == 0 : w->any_seen))
		return CFD_WAIT_OP;
	if (tok && cfd_token_triggered(tok))
		return CFD_WAIT_TOKEN;
	if (w->expired)
		return CFD_WAIT_TIMEOUT;
	return 0;
}

/* One trip into the kernel: submit what is queued, wait for a CQE (at
 * most timeout_ns if > 0). */
static int wait_enter(struct cfd_uring *cu, int64_t timeout_ns)
{
	struct io_uring_cqe *cqe;
	int r;

	if (timeout_ns > 0) {
		struct __kernel_timespec ts = {
			.tv_sec = timeout_ns / 1000000000,
			.tv_nsec = timeout_ns % 1000000000,
		};

		r = io_uring_submit_and_wait_timeout(cu->ring, &cqe, 1, &ts,
						     NULL);
		if (r == -ETIME)
			r = 0;
	} else {
		r = io_uring_submit_and_wait(cu->ring, 1);
	}
	if (r >= 0)
		cu->dirty = false;
	return r;
}

/* Errors of io_uring_enter() that pass once the CQ is drained. */
static bool enter_transient(int r)
{
	return r == -EINTR || r == -EAGAIN || r == -EBUSY || r == -ETIME;
}

/*
 * The submit failed and nothing was consumed (io_uring_enter() reports an
 * error only then): our SQEs are still in the SQ, published.  Turn each
 * into a NOP that posts nothing, so that the next submit, whoever makes it,
 * runs nothing of this wait.
 */
static void wait_neutralise(struct cfd_uring *cu, unsigned from, unsigned to)
{
	struct io_uring_sq *sq = &cu->ring->sq;
	unsigned shift = (cu->ring->flags & IORING_SETUP_SQE128) ? 1 : 0;

	for (unsigned k = from; k != to; k++) {
		struct io_uring_sqe *sqe =
		    &sq->sqes[(k & sq->ring_mask) << shift];

		io_uring_prep_nop(sqe);
		sqe->flags = IOSQE_CQE_SKIP_SUCCESS;
		sqe->user_data = ud_make(UD_NOP, 0, 0);
	}
}

struct timer_state {
	bool armed;
	uint32_t gen;
	int64_t at;
	unsigned updates;
};

static void wait_results(const struct wait *w, unsigned flags, int decided,
			 struct cfd_op_result *results,
			 struct cfd_wait_result *res)
{
	unsigned completed = 0;
	int op = -1;

	for (unsigned i = 0; i < w->nops; i++) {
		const struct wait_op *o = &w->ops[i];
		int state = CFD_OP_COMPLETED;

		if (o->res == -ECANCELED || o->res == -EINTR) {
			if (o->hit)
				state = CFD_OP_CANCELLED;
			else if (i > 0 && w->ops[i - 1].linked &&
				 results[i - 1].state == CFD_OP_CANCELLED)
				state = CFD_OP_CANCELLED;
		}
		results[i].res = o->res;
		results[i].flags = o->flags;
		results[i].state = state;
		if (state != CFD_OP_COMPLETED)
			continue;
		completed++;
		/* first mode: the first to complete; all mode: the last */
		if (op < 0 ||
		    ((flags & CFD_WAIT_ALL) ? o->seq > w->ops[op].seq
					    : o->seq < w->ops[op].seq))
			op = (int)i;
	}
	if (decided != CFD_WAIT_OP) {
		/* an op that completed together with the cancel wins */
		bool mode_met = (flags & CFD_WAIT_ALL) ? completed == w->nops
						       : completed > 0;
		if (w->nops && mode_met)
			decided = CFD_WAIT_OP;
	}
	res->by = decided;
	res->completed = completed;
	res->op = decided == CFD_WAIT_OP ? op : -1;
	res->res = res->op >= 0 ? results[res->op].res : 0;
}

static int wait_return(struct cfd_token *tok, struct cfd_wait_result *res,
		       struct cfd_wait_result *out)
{
	res->reason = tok ? cfd_token_reason(tok) : CFD_REASON_NONE;
	res->origin = tok ? cfd_token_origin(tok) : NULL;
	if (out)
		*out = *res;
	return res->by;
}

static int wait_prepare_scratch(struct cfd_uring *cu, unsigned nops)
{
	struct wait_op *n;
	unsigned cap;

	if (nops <= cu->wops_cap)
		return 0;
	cap = nops < 16 ? 16 : nops;
	n = realloc(cu->wops, cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	cu->wops = n;
	cu->wops_cap = cap;
	return 0;
}

static int wait_check_args(struct cfd_uring *cu, struct cfd_token *tok,
			   const struct io_uring_sqe *ops, unsigned nops,
			   unsigned flags, struct cfd_op_result *results)
{
	if (!cu || (nops && (!ops || !results)) || nops > CFD_URING_WAIT_MAX ||
	    (flags & ~(CFD_WAIT_ALL | CFD_WAIT_ABS)))
		return -EINVAL;
	if (!cu_check(cu))
		return -ECHILD;
	if (tok && cfd_token_check(tok) == -ECHILD)
		return -ECHILD;
	/* a skipped success CQE would never arrive to end the op */
	for (unsigned i = 0; i < nops; i++)
		if (ops[i].flags & IOSQE_CQE_SKIP_SUCCESS)
			return -EINVAL;
	if (cu->wait)
		return -EDEADLK; /* called from inside a wait on this ring */
	return 0;
}

/* Copy the ops into the SQ with the wait's user_data; the caller checked
 * that there is room for all of them, so a link chain is never split
 * across two submits. */
static void wait_queue_ops(struct cfd_uring *cu, struct wait *w,
			   const struct io_uring_sqe *ops)
{
	bool big = cu->ring->flags & IORING_SETUP_SQE128;

	for (unsigned i = 0; i < w->nops; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(cu->ring);

		memcpy(sqe, &ops[i], sizeof(*sqe));
		if (big)
			memset(sqe + 1, 0, sizeof(*sqe));
		sqe->user_data = ud_make(UD_WAIT_OP, w->gen, i);
		memset(&w->ops[i], 0, sizeof(w->ops[i]));
		w->ops[i].linked =
		    !!(ops[i].flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK));
	}
	w->inflight = w->nops;
	cu->dirty = true;
}

/*
 * First submit.  On a transient error, drain the CQ and try again; on a
 * hard one (or too many transient ones), take the wait's SQEs [from, to)
 * back and undo what they would have armed.  io_uring_enter() reports an
 * error only when it consumed nothing; a submit made meanwhile by the
 * dispatcher (re-arming a poll for a scope) may have taken them, which
 * khead shows.
 */
static int wait_first_submit(struct cfd_uring *cu, unsigned from, unsigned to,
			     uint32_t watch, bool watch_was_armed,
			     const struct timer_state *ts)
{
	int r;

	for (int tries = 0; tries < 64; tries++) {
		r = wait_enter(cu, 0);
		if (r >= 0)
			return 0;
		if (!enter_transient(r))
			break;
		if (cu_reap(cu) < 0)
			break;
		if ((int)(io_uring_smp_load_acquire(cu->ring->sq.khead) -
			  from) > 0)
			return 0;
	}
	wait_neutralise(cu, from, to);
	if (watch != NIL && !watch_was_armed)
		cu->watches[watch].armed = 0;
	cu->timer_armed = ts->armed;
	cu->timer_gen = ts->gen;
	cu->timer_at = ts->at;
	cu->timer_updates = ts->updates;
	return r;
}

/* The loop: reap, decide, cancel, until nothing of the wait is left. */
static int wait_run(struct cfd_uring *cu, struct wait *w, struct cfd_token *tok,
		    unsigned flags, int *decided)
{
	unsigned retries = 0;
	bool waited = false;
	int64_t backoff = 0;
	int r;

	for (;;) {
		r = cu_reap(cu);
		if (r < 0)
			return r;
		if (!*decided)
			*decided = wait_decide(w, tok, flags);
		if (*decided) {
			wait_cancel(cu, w, false);
			if (!w->cancels && wait_needs_retry(w)) {
				/* Retry at once twice, then give the op's
				 * CQE a growing moment to arrive first (a
				 * link predecessor may take a while). */
				if (retries < 2 || waited) {
					wait_cancel(cu, w, true);
					retries++;
					waited = false;
				} else {
					backoff =
					    CFD_USEC(10)
					    << (retries < 9 ? retries : 9);
				}
			}
			if (!w->inflight && !w->cancels && !cu->timer_updates)
				return 0;
		}
		r = wait_enter(cu, backoff);
		if (backoff) {
			waited = true;
			backoff = 0;
		}
		if (r < 0 && !enter_transient(r))
			return r;
	}
}

CFD_EXPORT int cfd_uring_wait(struct cfd_uring *cu, struct cfd_token *tok,
			      const struct io_uring_sqe *ops, unsigned nops,
			      int64_t timeout_ns, unsigned flags,
			      struct cfd_op_result *results,
			      struct cfd_wait_result *result)
{
	struct cfd_wait_result res = { .op = -1 };
	struct wait w = { .nops = nops };
	bool has_deadline = (flags & CFD_WAIT_ABS) || timeout_ns >= 0;
	uint32_t watch = NIL;
	struct timer_state ts;
	bool watch_was_armed = false;
	unsigned need, sq_from;
	int decided = 0, r;

	r = wait_check_args(cu, tok, ops, nops, flags, results);
	if (r < 0)
		return r;
	if (!nops && !tok && !has_deadline)
		return -EINVAL; /* it would never end */
	for (unsigned i = 0; i < nops; i++)
		results[i] =
		    (struct cfd_op_result){ 0, 0, CFD_OP_NOT_SUBMITTED };

	/* Before anything is submitted: the token, then the deadline. */
	if (tok && cfd_token_triggered(tok)) {
		res.by = CFD_WAIT_TOKEN;
		return wait_return(tok, &res, result);
	}
	if (has_deadline) {
		int64_t now = cfd_now();

		if (flags & CFD_WAIT_ABS)
			w.deadline = timeout_ns;
		else if (timeout_ns <= INT64_MAX - now)
			w.deadline = now + timeout_ns;
		else
			has_deadline = false; /* past the end of time */
		if (has_deadline && w.deadline <= now) {
			res.by = CFD_WAIT_TIMEOUT;
			return wait_return(tok, &res, result);
		}
	}
	w.has_deadline = has_deadline;

	/* Room for everything in one submit: ops, poll, timer. */
	need = nops + (tok ? 1 : 0) + (has_deadline ? 1 : 0);
	if (need > cu->ring->sq.ring_entries)
		return -EINVAL;
	if (io_uring_sq_space_left(cu->ring) < need) {
		r = cu_submit(cu);
		if (r < 0)
			return r;
		if (io_uring_sq_space_left(cu->ring) < need)
			return -EBUSY;
	}
	r = wait_prepare_scratch(cu, nops);
	if (r < 0)
		return r;
	if (tok) {
		r = watch_get(cu, tok, &watch);
		if (r < 0)
			return r;
		watch_was_armed = cu->watches[watch].armed;
	}

	w.gen = cu_next_gen(cu);
	w.ops = cu->wops;
	cu->wait = &w;
	sq_from = cu->ring->sq.sqe_tail;
	ts = (struct timer_state){ cu->timer_armed, cu->timer_gen, cu->timer_at,
				   cu->timer_updates };
	if (tok)
		watch_ensure_armed(cu, watch, false);
	if (has_deadline)
		timer_want(cu, w.deadline);
	wait_queue_ops(cu, &w, ops);

	r = wait_first_submit(cu, sq_from, cu->ring->sq.sqe_tail, watch,
			      watch_was_armed, &ts);
	if (r == 0)
		r = wait_run(cu, &w, tok, flags, &decided);
	cu->wait = NULL;
	if (watch != NIL) {
		watch_put(cu, watch);
		if (cu->dirty)
			cu_submit(cu);
	}
	if (r < 0)
		return r;
	wait_results(&w, flags, decided, results, &res);
	return wait_return(tok, &res, result);
}
