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
	if (ud_kind(cqe->user_data) == UD_WAIT_OP) {
		wait_op_cqe(w, i, cqe);
		return;
	}
	o = &w->ops[i];
	o->cancelling = 0;
	w->cancels--;
	if (cqe->res == 0 || cqe->res == -EALREADY)
		o->hit = 1;
	else
		o->missed = 1;
}

/*
 * Consume every CQE the CQ holds now.  The wait's own op CQEs (the bulk)
 * are recognised by their user_data prefix and handled inline; the rest go
 * through the dispatcher.
 */
static int wait_reap(struct cfd_uring *cu, struct wait *w)
{
	const uint64_t base = ud_make(UD_WAIT_OP, w->gen, 0);
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int r = 0;

	io_uring_for_each_cqe(cu->ring, head, cqe)
	{
		uint64_t ud = cqe->user_data;

		if ((ud & ~(uint64_t)UD_IDX_MASK) == base &&
		    ud_idx(ud) < w->nops) {
			wait_op_cqe(w, ud_idx(ud), cqe);
		} else {
			r = cu_reap_one(cu, cqe);
			if (r < 0)
				break;
		}
		n++;
	}
	io_uring_cq_advance(cu->ring, n);
	return r;
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
		w->asked_any = true;
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
	if (w->nops && ((flags & CFD_WAIT_ALL) ? w->inflight == 0 : w->seq))
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

/*
 * Fill in the outcome.  Until the wait cancelled something, every result
 * is already final (CFD_OP_COMPLETED, in results[]); otherwise each
 * -ECANCELED/-EINTR is looked at: ours if a cancel of this wait found the
 * op, or if the op waited in a link behind one this wait cancelled.
 */
static void wait_results(const struct wait *w, unsigned flags, int decided,
			 struct cfd_op_result *results,
			 struct cfd_wait_result *res)
{
	unsigned completed = w->nops;
	int op = (flags & CFD_WAIT_ALL) ? w->last : w->first;

	if (w->asked_any) {
		completed = 0;
		op = -1;
		for (unsigned i = 0; i < w->nops; i++) {
			const struct wait_op *o = &w->ops[i];
			struct cfd_op_result *r = &results[i];

			if ((r->res == -ECANCELED || r->res == -EINTR) &&
			    (o->hit ||
			     (i > 0 && w->ops[i - 1].linked &&
			      results[i - 1].state == CFD_OP_CANCELLED)))
				r->state = CFD_OP_CANCELLED;
			if (r->state != CFD_OP_COMPLETED)
				continue;
			completed++;
			/* first mode: the first to complete; all: the last */
			if (op < 0 ||
			    ((flags & CFD_WAIT_ALL) ? o->seq > w->ops[op].seq
						    : o->seq < w->ops[op].seq))
				op = (int)i;
		}
	}
	if (decided != CFD_WAIT_OP && w->nops &&
	    ((flags & CFD_WAIT_ALL) ? completed == w->nops : completed > 0))
		decided = CFD_WAIT_OP; /* completed together with the cancel */
	res->by = decided;
	res->completed = completed;
	res->op = decided == CFD_WAIT_OP ? op : -1;
	res->res = res->op >= 0 ? results[res->op].res : 0;
}

static int wait_return(struct cfd_token *tok, struct cfd_wait_result *res,
		       struct cfd_wait_result *out)
{
	if (out) {
		/* the token's state at return, whatever ended the wait */
		bool fired = tok && cfd_token_triggered(tok);

		res->reason = fired ? cfd_token_reason(tok) : CFD_REASON_NONE;
		res->origin = fired ? cfd_token_origin(tok) : NULL;
		*out = *res;
	}
	return res->by;
}

/* Before anything was submitted: every op CFD_OP_NOT_SUBMITTED. */
static int wait_early(struct cfd_token *tok, unsigned nops,
		      struct cfd_op_result *results, int by,
		      struct cfd_wait_result *out)
{
	struct cfd_wait_result res = { .by = by, .op = -1 };

	for (unsigned i = 0; i < nops; i++)
		results[i] =
		    (struct cfd_op_result){ 0, 0, CFD_OP_NOT_SUBMITTED };
	if (by < 0)
		return by;
	return wait_return(tok, &res, out);
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
	/* A token watched on this ring belongs to this process already. */
	if (tok &&
	    !(cu->last_watch != NIL &&
	      cu->watches[cu->last_watch].tok == tok) &&
	    cfd_token_check(tok) == -ECHILD)
		return -ECHILD;
	if (cu->wait)
		return -EDEADLK; /* called from inside a wait on this ring */
	return 0;
}

/*
 * Copy the ops into the SQ with the wait's user_data; the caller made room
 * for all of them, so a link chain is never split across two submits.
 * An op with IOSQE_CQE_SKIP_SUCCESS is refused (-EINVAL): its success
 * would post no CQE to end it.
 */
static int wait_queue_ops(struct cfd_uring *cu, struct wait *w,
			  const struct io_uring_sqe *ops)
{
	struct io_uring_sq *sq = &cu->ring->sq;
	unsigned shift = (cu->ring->flags & IORING_SETUP_SQE128) ? 1 : 0;
	unsigned tail = sq->sqe_tail;

	/* Room was made for all of them: address the SQ slots directly. */
	for (unsigned i = 0; i < w->nops; i++) {
		struct io_uring_sqe *sqe =
		    &sq->sqes[((tail + i) & sq->ring_mask) << shift];
		struct wait_op *o = &w->ops[i];

		if (ops[i].flags & IOSQE_CQE_SKIP_SUCCESS)
			return -EINVAL;
		memcpy(sqe, &ops[i], sizeof(*sqe));
		if (shift)
			memset(sqe + 1, 0, sizeof(*sqe));
		sqe->user_data = ud_make(UD_WAIT_OP, w->gen, i);
		memset(o, 0, sizeof(*o));
		o->linked =
		    !!(ops[i].flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK));
	}
	sq->sqe_tail = tail + w->nops;
	w->inflight = w->nops;
	cu->dirty = true;
	return 0;
}

/*
 * What arming a wait did, to undo it if nothing gets submitted: the poll
 * it armed, the timer it armed or moved.  Only what the wait's own SQEs
 * would have done is undone: a reap in between may have re-armed the timer
 * (the old one fired) with an SQE that is not the wait's, and that stays.
 */
struct undo {
	unsigned sq_from; /* the wait's SQEs start here */
	uint32_t watch;
	bool poll_was_armed;
	uint32_t poll_gen; /* after arming */
	bool timer_was_armed;
	bool timer_moved;	/* the wait queued an update */
	unsigned timer_updates; /* before */
	int64_t timer_at;	/* before */
	uint32_t timer_gen;	/* after arming */
};

static void undo_before(struct cfd_uring *cu, uint32_t watch, struct undo *u)
{
	memset(u, 0, sizeof(*u));
	u->sq_from = cu->ring->sq.sqe_tail;
	u->watch = watch;
	u->poll_was_armed = watch != NIL && cu->watches[watch].armed;
	u->timer_was_armed = cu->timer_armed;
	u->timer_at = cu->timer_at;
	u->timer_updates = cu->timer_updates;
}

static void undo_after(struct cfd_uring *cu, struct undo *u)
{
	if (u->watch != NIL)
		u->poll_gen = cu->watches[u->watch].gen;
	u->timer_gen = cu->timer_gen;
	u->timer_moved = cu->timer_updates > u->timer_updates;
}

static void undo_state(struct cfd_uring *cu, const struct undo *u)
{
	struct watch *w = u->watch != NIL ? &cu->watches[u->watch] : NULL;

	if (w && !u->poll_was_armed && w->armed && w->gen == u->poll_gen) {
		w->armed = 0;
		watch_mark(cu, u->watch);
	}
	if (u->timer_moved && cu->timer_updates)
		cu->timer_updates--; /* that update will post nothing */
	if (cu->timer_gen != u->timer_gen)
		return; /* re-armed meanwhile, by an SQE of its own */
	if (!u->timer_was_armed)
		cu->timer_armed = false;
	else if (u->timer_moved)
		cu->timer_at = u->timer_at;
}

/*
 * First submit.  On a transient error, drain the CQ and try again; on a
 * hard one (or too many transient ones), take the wait's SQEs back and undo
 * what they would have armed.  io_uring_enter() reports an error only when
 * it consumed nothing, but a submit made meanwhile by the dispatcher
 * (re-arming a poll for a scope) may have taken them, which khead shows.
 */
static int wait_first_submit(struct cfd_uring *cu, struct wait *w,
			     const struct undo *u)
{
	unsigned to = cu->ring->sq.sqe_tail;
	int r;

	for (int tries = 0; tries < 64; tries++) {
		r = wait_enter(cu, 0);
		if (r >= 0)
			return 0;
		if (!enter_transient(r) || wait_reap(cu, w) < 0)
			break;
		if ((int)(io_uring_smp_load_acquire(cu->ring->sq.khead) -
			  u->sq_from) > 0)
			return 0;
	}
	wait_neutralise(cu, u->sq_from, to);
	undo_state(cu, u);
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
		r = wait_reap(cu, w);
		if (r < 0)
			return r;
		if (!*decided)
			*decided = wait_decide(w, tok, flags);
		if (*decided) {
			if (!w->inflight && !w->cancels && !cu->timer_updates)
				return 0;
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

/* The absolute deadline, or false when there is none (or it is past the
 * end of time). */
static bool wait_deadline(int64_t timeout_ns, unsigned flags, int64_t now,
			  int64_t *deadline)
{
	if (flags & CFD_WAIT_ABS) {
		*deadline = timeout_ns;
		return true;
	}
	if (timeout_ns < 0 || timeout_ns > INT64_MAX - now)
		return false;
	*deadline = now + timeout_ns;
	return true;
}

CFD_EXPORT int cfd_uring_wait(struct cfd_uring *cu, struct cfd_token *tok,
			      const struct io_uring_sqe *ops, unsigned nops,
			      int64_t timeout_ns, unsigned flags,
			      struct cfd_op_result *results,
			      struct cfd_wait_result *result)
{
	struct cfd_wait_result res = { .op = -1 };
	struct wait w = { .nops = nops, .results = results, .first = -1 };
	uint32_t watch = NIL;
	bool submitted = false;
	struct undo undo;
	unsigned need;
	int decided = 0, r;

	r = wait_check_args(cu, tok, ops, nops, flags, results);
	if (r < 0)
		return r;
	if (!nops && !tok && timeout_ns < 0 && !(flags & CFD_WAIT_ABS))
		return -EINVAL; /* it would never end */

	/* Before anything is submitted: the token, then the deadline. */
	if (tok && cfd_token_triggered(tok))
		return wait_early(tok, nops, results, CFD_WAIT_TOKEN, result);
	if ((flags & CFD_WAIT_ABS) || timeout_ns >= 0) {
		int64_t now = cfd_now();

		w.has_deadline =
		    wait_deadline(timeout_ns, flags, now, &w.deadline);
		if (w.has_deadline && w.deadline <= now)
			return wait_early(tok, nops, results, CFD_WAIT_TIMEOUT,
					  result);
	}

	/* Room for everything in one submit: ops, poll, timer. */
	need = nops + (tok ? 1 : 0) + (w.has_deadline ? 1 : 0);
	if (need > cu->ring->sq.ring_entries)
		return wait_early(tok, nops, results, -EINVAL, NULL);
	if (io_uring_sq_space_left(cu->ring) < need) {
		r = cu_submit(cu);
		if (r >= 0 && io_uring_sq_space_left(cu->ring) < need)
			r = -EBUSY;
		if (r < 0)
			return wait_early(tok, nops, results, r, NULL);
	}
	r = wait_prepare_scratch(cu, nops);
	if (r == 0 && tok)
		r = watch_get(cu, tok, &watch);
	if (r < 0)
		return wait_early(tok, nops, results, r, NULL);

	w.gen = cu_next_gen(cu);
	w.ops = cu->wops;
	cu->wait = &w;
	undo_before(cu, watch, &undo);
	if (tok)
		watch_ensure_armed(cu, watch, false);
	if (w.has_deadline)
		timer_want(cu, w.deadline);
	undo_after(cu, &undo);
	r = wait_queue_ops(cu, &w, ops);
	if (r < 0) {
		/* nothing was flushed to the kernel yet: take it back */
		cu->ring->sq.sqe_tail = undo.sq_from;
		undo_state(cu, &undo);
	} else {
		r = wait_first_submit(cu, &w, &undo);
		submitted = r == 0;
		if (submitted)
			r = wait_run(cu, &w, tok, flags, &decided);
	}
	cu->wait = NULL;
	if (watch != NIL) {
		watch_put(cu, watch);
		if (cu->dirty)
			cu_submit(cu);
	}
	/* After the ops went in, only a broken ring or a failed allocation
	 * ends here: results are not filled in, ops may be in flight. */
	if (r < 0)
		return submitted ? r : wait_early(tok, nops, results, r, NULL);
	wait_results(&w, flags, decided, results, &res);
	return wait_return(tok, &res, result);
}
