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
 *     op's own result: CFD_OP_COMPLETED, reported as CFD_BY_OP.
 *   - The wait cancels only what is still running after it has let out
 *     every completion the kernel holds back (wait_settle()), and never an
 *     op whose own LINK_TIMEOUT fired: so a cancel of the wait's own never
 *     finds an op that someone else's cancel has ended already.
 *   - Nothing completed is discarded: after the wait decided TOKEN or
 *     TIMEOUT, an op that still completes by itself is CFD_OP_COMPLETED,
 *     and if that satisfies the mode, the wait returns CFD_BY_OP.
 *   - A cancel that finds nothing (-ENOENT) while the op's CQE has not come
 *     is retried: the op was waiting in a link, or its completion was still
 *     on its way.
 *   - The deadline is the timeout of the wait's own io_uring_enter() calls:
 *     no request on the ring.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "uring-internal.h"

/* Called by the dispatcher for the running wait's op and cancel CQEs. */
void wait_cqe(struct cfd_uring *cu, const struct io_uring_cqe *cqe)
{
	struct wait *wt = cu->wait;
	uint32_t i = ud_idx(cqe->user_data);
	struct wait_op *o;

	if (i >= wt->nops)
		return;
	if (ud_kind(cqe->user_data) == UD_WAIT_OP) {
		wait_op_cqe(wt, i, cqe);
		return;
	}
	o = &wt->ops[i];
	o->cancelling = 0;
	wt->cancels--;
	if (cqe->res == 0 || cqe->res == -EALREADY)
		o->hit = 1;
	else
		o->missed = 1;
}

/*
 * Consume every CQE the CQ holds now; returns how many, or a negative
 * errno.  The wait's own op CQEs (the bulk) are recognised by their
 * user_data prefix and handled inline; the rest go through the dispatcher.
 */
static int wait_reap(struct cfd_uring *cu, struct wait *wt)
{
	const uint64_t base = ud_make(UD_WAIT_OP, wt->ud_gen, 0);
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int r = 0;

	io_uring_for_each_cqe(cu->ring, head, cqe)
	{
		uint64_t ud = cqe->user_data;

		if ((ud & ~(uint64_t)UD_IDX_MASK) == base &&
		    ud_idx(ud) < wt->nops) {
			wait_op_cqe(wt, ud_idx(ud), cqe);
		} else {
			r = cu_reap_one(cu, cqe);
			if (r < 0)
				break;
		}
		n++;
	}
	io_uring_cq_advance(cu->ring, n);
	return r < 0 ? r : (int)n;
}

/*
 * On a ring whose completions can wait in the kernel for our next entry
 * (DEFER_TASKRUN, COOP_TASKRUN), an op that someone else's cancel, or its
 * own link timeout, has already ended may not have posted its CQE yet: a
 * cancel of ours would find it all the same and take the blame.  Let every
 * such completion out, and reap it, before deciding what to cancel.  Each
 * round can queue more (a link's next op): go on while rounds bring CQEs.
 */
static int wait_settle(struct cfd_uring *cu, struct wait *wt)
{
	for (int round = 0; round < 8; round++) {
		int r = io_uring_get_events(cu->ring);

		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
			return r;
		r = wait_reap(cu, wt);
		if (r <= 0)
			return r;
	}
	return 0;
}

/*
 * First time (retry false): every op still running that was not asked
 * yet, except one ended by its own link timeout and a link timeout itself
 * (it ends with its op).  Retry: the ops whose last cancel found nothing
 * although their CQE has not come (they waited in a link, or the CQE was
 * on its way).
 */
static bool wait_should_cancel(const struct wait_op *o, bool retry)
{
	if (o->done || o->cancelling || o->hit || o->timed_out || o->timer)
		return false;
	return retry ? o->missed : !o->asked;
}

/* Ask the kernel to cancel every op still running that was not asked yet
 * (an SQE shortage may have left some); retry=true: those whose last
 * cancel found nothing. */
static int wait_cancel(struct cfd_uring *cu, struct wait *wt, bool retry)
{
	bool any = false;
	int r;

	for (uint32_t i = 0; i < wt->nops && !any; i++)
		any = wait_should_cancel(&wt->ops[i], retry);
	if (!any)
		return 0;
	if (cu->lazy_completions) {
		r = wait_settle(cu, wt);
		if (r < 0)
			return r;
	}
	for (uint32_t i = 0; i < wt->nops; i++) {
		struct wait_op *o = &wt->ops[i];
		struct io_uring_sqe *sqe;

		if (!wait_should_cancel(o, retry))
			continue;
		sqe = cu_get_sqe(cu);
		if (!sqe)
			return 0; /* the next round tries again */
		io_uring_prep_cancel64(sqe, ud_make(UD_WAIT_OP, wt->ud_gen, i),
				       0);
		sqe->user_data = ud_make(UD_WAIT_CANCEL, wt->ud_gen, i);
		o->cancelling = 1;
		o->asked = 1;
		wt->asked_any = true;
		o->missed = 0;
		wt->cancels++;
		cu->dirty = true;
	}
	return 0;
}

static bool wait_needs_retry(const struct wait *wt)
{
	for (uint32_t i = 0; i < wt->nops; i++)
		if (wait_should_cancel(&wt->ops[i], true))
			return true;
	return false;
}

static int wait_decide(const struct wait *wt, struct cfd_token *tok,
		       unsigned flags)
{
	if (wt->nops && ((flags & CFD_WAIT_ALL) ? wt->inflight == 0 : wt->seq))
		return CFD_BY_OP;
	if (tok && cfd_token_triggered(tok))
		return CFD_BY_TOKEN;
	if (wt->has_deadline && uring_now() >= wt->deadline)
		return CFD_BY_TIMEOUT;
	return 0;
}

/* One trip into the kernel: submit what is queued, wait for a CQE (at
 * most timeout_ns if > 0; -ETIME when it passed is not an error). */
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
 * into a NOP, so that the next submit, whoever makes it, runs nothing of
 * this wait (their completions are the library's own).
 */
static void wait_neutralise(struct cfd_uring *cu, unsigned from, unsigned to)
{
	for (unsigned k = from; k != to; k++) {
		struct io_uring_sqe *sqe = cu_sqe_at(cu, k);

		io_uring_prep_nop(sqe);
		sqe->user_data = ud_make(UD_NOP, 0, 0);
	}
}

/*
 * Fill in the outcome.  Until the wait cancelled something, every result
 * is already final (CFD_OP_COMPLETED, in results[]); otherwise each
 * -ECANCELED/-EINTR is looked at: ours if a cancel of this wait found the
 * op, or if the op waited in a link behind one this wait cancelled.
 */
static void wait_results(const struct wait *wt, unsigned flags, int decided,
			 struct cfd_op_result *results,
			 struct cfd_wait_result *res)
{
	unsigned completed = wt->nops;
	int op = (flags & CFD_WAIT_ALL) ? wt->last : wt->first;

	if (wt->asked_any) {
		completed = 0;
		op = -1;
		for (unsigned i = 0; i < wt->nops; i++) {
			const struct wait_op *o = &wt->ops[i];
			struct cfd_op_result *r = &results[i];

			if ((r->res == -ECANCELED || r->res == -EINTR) &&
			    !o->timed_out &&
			    (o->hit ||
			     (i > 0 && wt->ops[i - 1].chained &&
			      results[i - 1].state == CFD_OP_CANCELLED)))
				r->state = CFD_OP_CANCELLED;
			if (r->state != CFD_OP_COMPLETED)
				continue;
			completed++;
			/* first mode: the first to complete; all: the last */
			if (op < 0 ||
			    ((flags & CFD_WAIT_ALL) ? o->seq > wt->ops[op].seq
						    : o->seq < wt->ops[op].seq))
				op = (int)i;
		}
	}
	if (decided != CFD_BY_OP && wt->nops &&
	    ((flags & CFD_WAIT_ALL) ? completed == wt->nops : completed > 0))
		decided = CFD_BY_OP; /* completed together with the cancel */
	res->by = decided;
	res->completed = completed;
	res->op = decided == CFD_BY_OP ? op : -1;
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

/* Before anything was submitted: every op CFD_OP_NOT_SUBMITTED (unless
 * nops itself is out of range), then an error (by < 0) or an early end. */
static int wait_early(struct cfd_token *tok, unsigned nops,
		      struct cfd_op_result *results, int by,
		      struct cfd_wait_result *out)
{
	struct cfd_wait_result res = { .by = by, .op = -1 };

	if (results && nops <= CFD_URING_WAIT_MAX)
		for (unsigned i = 0; i < nops; i++)
			results[i] =
			    (struct cfd_op_result){ 0, 0,
						    CFD_OP_NOT_SUBMITTED };
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

/*
 * The ops themselves: none may skip its success CQE (nothing would end
 * it), and the last may not leave a link chain open (the kernel would run
 * it in a worker thread, and an SQE of the library's could join it).
 */
static int wait_check_ops(const struct io_uring_sqe *ops, unsigned nops)
{
	for (unsigned i = 0; i < nops; i++)
		if (ops[i].flags & IOSQE_CQE_SKIP_SUCCESS)
			return -EINVAL;
	if (nops && (ops[nops - 1].flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK)))
		return -EINVAL;
	return 0;
}

static int wait_check_args(struct cfd_uring *cu, struct cfd_token *tok,
			   const struct io_uring_sqe *ops, unsigned nops,
			   int64_t timeout_ns, unsigned flags,
			   struct cfd_op_result *results)
{
	int r;

	if (!cu || (nops && (!ops || !results)) || nops > CFD_URING_WAIT_MAX ||
	    (flags & ~(CFD_WAIT_ALL | CFD_WAIT_ABS)))
		return -EINVAL;
	if (!nops && !tok && timeout_ns < 0 && !(flags & CFD_WAIT_ABS))
		return -EINVAL; /* it would never end */
	r = wait_check_ops(ops, nops);
	if (r < 0)
		return r;
	if (!cu_check(cu))
		return -ECHILD;
	/* A token polled on this ring belongs to this process already. */
	if (tok &&
	    !(cu->last_poll != NIL && cu->polls[cu->last_poll].tok == tok) &&
	    cfd_token_check(tok) == -ECHILD)
		return -ECHILD;
	if (cu->wait)
		return -EDEADLK; /* called from inside a wait on this ring */
	return 0;
}

/*
 * Copy the ops into the SQ with the wait's user_data; the caller made room
 * for all of them, so a link chain is never split across two submits.
 */
static void wait_queue_ops(struct cfd_uring *cu, struct wait *wt,
			   const struct io_uring_sqe *ops)
{
	unsigned tail = cu->ring->sq.sqe_tail;
	bool sqe128 = cu->ring->flags & IORING_SETUP_SQE128;

	for (unsigned i = 0; i < wt->nops; i++) {
		struct io_uring_sqe *sqe = cu_sqe_at(cu, tail + i);
		struct wait_op *o = &wt->ops[i];

		memcpy(sqe, &ops[i], sizeof(*sqe));
		if (sqe128)
			memset(sqe + 1, 0, sizeof(*sqe));
		sqe->user_data = ud_make(UD_WAIT_OP, wt->ud_gen, i);
		memset(o, 0, sizeof(*o));
		o->chained =
		    !!(ops[i].flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK));
		o->timer = i > 0 && ops[i].opcode == IORING_OP_LINK_TIMEOUT;
	}
	cu->ring->sq.sqe_tail = tail + wt->nops;
	wt->inflight = wt->nops;
	cu->dirty = true;
}

/*
 * What arming a wait did, to undo it if nothing gets submitted: the poll
 * it armed.  A reap in between may have re-armed the poll with an SQE
 * that is not the wait's, and that stays.
 */
struct undo {
	unsigned sq_from; /* the wait's SQEs start here */
	uint32_t poll;
	bool poll_was_armed;
	uint32_t poll_gen; /* after arming */
};

static void undo_state(struct cfd_uring *cu, const struct undo *u)
{
	struct tpoll *p = u->poll != NIL ? &cu->polls[u->poll] : NULL;

	if (p && !u->poll_was_armed && p->armed && p->ud_gen == u->poll_gen) {
		p->armed = 0;
		tpoll_mark(cu, u->poll);
	}
}

/* How long the next entry may sleep: the backoff of a retried cancel, or
 * the time left to the deadline while undecided; 0 is no limit. */
static int64_t wait_sleep(const struct wait *wt, int decided, int64_t backoff)
{
	int64_t left;

	if (decided || !wt->has_deadline)
		return backoff;
	left = wt->deadline - uring_now();
	if (left < 1)
		left = 1;
	return backoff && backoff < left ? backoff : left;
}

/*
 * First submit.  On a transient error, drain the CQ and try again; on a
 * hard one (or too many transient ones), take the wait's SQEs back and undo
 * what they would have armed.  io_uring_enter() reports an error only when
 * it consumed nothing, but a submit made meanwhile by the dispatcher
 * (re-arming a poll for a scope) may have taken them, which khead shows.
 */
static int wait_first_submit(struct cfd_uring *cu, struct wait *wt,
			     const struct undo *u)
{
	unsigned to = cu->ring->sq.sqe_tail;
	int r;

	for (int tries = 0; tries < 64; tries++) {
		r = wait_enter(cu, wait_sleep(wt, 0, 0));
		if (r >= 0)
			return 0;
		if (!enter_transient(r) || wait_reap(cu, wt) < 0)
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
static int wait_run(struct cfd_uring *cu, struct wait *wt,
		    struct cfd_token *tok, unsigned flags, int *decided)
{
	unsigned retries = 0;
	bool waited = false;
	int64_t backoff = 0;
	int r;

	for (;;) {
		r = wait_reap(cu, wt);
		if (r < 0)
			return r;
		if (!*decided)
			*decided = wait_decide(wt, tok, flags);
		if (*decided) {
			if (!wt->inflight && !wt->cancels)
				return 0;
			r = wait_cancel(cu, wt, false);
			if (r == 0 && !wt->cancels && wait_needs_retry(wt)) {
				/* Retry at once twice, then give the op's
				 * CQE a growing moment to arrive first (a
				 * link predecessor may take a while). */
				if (retries < 2 || waited) {
					r = wait_cancel(cu, wt, true);
					retries++;
					waited = false;
				} else {
					backoff =
					    CFD_USEC(10)
					    << (retries < 9 ? retries : 9);
				}
			}
			if (r < 0)
				return r;
			if (!wt->inflight && !wt->cancels)
				continue; /* settling ended it */
		}
		r = wait_enter(cu, wait_sleep(wt, *decided, backoff));
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
	struct wait wt = { .nops = nops, .results = results, .first = -1 };
	uint32_t poll = NIL;
	bool submitted = false;
	struct undo undo;
	unsigned need;
	int decided = 0, r;

	r = wait_check_args(cu, tok, ops, nops, timeout_ns, flags, results);
	if (r < 0)
		return wait_early(tok, nops, results, r, NULL);

	/* Before anything is submitted: the token, then the deadline. */
	if (tok && cfd_token_triggered(tok))
		return wait_early(tok, nops, results, CFD_BY_TOKEN, result);
	if ((flags & CFD_WAIT_ABS) || timeout_ns >= 0) {
		int64_t now = uring_now();

		wt.has_deadline =
		    wait_deadline(timeout_ns, flags, now, &wt.deadline);
		if (wt.has_deadline && wt.deadline <= now)
			return wait_early(tok, nops, results, CFD_BY_TIMEOUT,
					  result);
	}

	/* Room for everything in one submit: the poll and the ops. */
	need = nops + (tok ? 1 : 0);
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
		r = tpoll_get(cu, tok, &poll);
	if (r < 0)
		return wait_early(tok, nops, results, r, NULL);

	wt.ud_gen = cu_next_gen(cu);
	wt.ops = cu->wops;
	cu->wait = &wt;
	undo = (struct undo){ .sq_from = cu->ring->sq.sqe_tail,
			      .poll = poll,
			      .poll_was_armed =
				  poll != NIL && cu->polls[poll].armed };
	if (tok)
		tpoll_ensure_armed(cu, poll, false);
	if (poll != NIL)
		undo.poll_gen = cu->polls[poll].ud_gen;
	wait_queue_ops(cu, &wt, ops);
	r = wait_first_submit(cu, &wt, &undo);
	submitted = r == 0;
	if (submitted)
		r = wait_run(cu, &wt, tok, flags, &decided);
	cu->wait = NULL;
	if (poll != NIL) {
		tpoll_put(cu, poll);
		if (cu->dirty)
			cu_submit(cu);
	}
	/* After the ops went in, only a broken ring or a failed allocation
	 * ends here: results are not filled in, ops may be in flight. */
	if (r < 0)
		return submitted ? r : wait_early(tok, nops, results, r, NULL);
	wait_results(&wt, flags, decided, results, &res);
	return wait_return(tok, &res, result);
}
