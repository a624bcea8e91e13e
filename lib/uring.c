/* SPDX-License-Identifier: MIT */
/*
 * The io_uring binding: struct cfd_uring, the token watches (one multishot
 * poll per token and ring), the ring timer (one pure IORING_OP_TIMEOUT for
 * the earliest deadline), the CQE dispatcher shared by cfd_uring_cqe() and
 * cfd_uring_wait(), and the backlog of other CQEs a wait reaped.
 *
 * Everything here runs in the thread that drives the ring; the only thing
 * another thread does is trigger a token, which writes its eventfd and so
 * completes the watch's poll on the ring.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "uring-internal.h"

/* ---- SQEs ---- */

/*
 * An SQE for the library.  When the SQ is full, submit what is queued
 * (the caller's prepared SQEs too, in order) to make room.
 */
struct io_uring_sqe *cu_get_sqe(struct cfd_uring *cu)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(cu->ring);

	if (!sqe && cu_submit(cu) >= 0)
		sqe = io_uring_get_sqe(cu->ring);
	return sqe;
}

int cu_submit(struct cfd_uring *cu)
{
	int r;

	do
		r = io_uring_submit(cu->ring);
	while (r == -EINTR);
	if (r >= 0)
		cu->dirty = false;
	return r;
}

/* ---- life cycle ---- */

static bool probe_ok(struct io_uring *ring)
{
	static const int need[] = {
		IORING_OP_NOP,	       IORING_OP_POLL_ADD,
		IORING_OP_POLL_REMOVE, IORING_OP_ASYNC_CANCEL,
		IORING_OP_TIMEOUT,     IORING_OP_TIMEOUT_REMOVE,
	};
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	bool ok = p != NULL;

	for (size_t i = 0; ok && i < sizeof(need) / sizeof(need[0]); i++)
		ok = io_uring_opcode_supported(p, need[i]);
	if (p)
		io_uring_free_probe(p);
	return ok;
}

CFD_EXPORT int cfd_uring_new(struct cfd_uring **ret, struct io_uring *ring)
{
	/* NODROP: overflowed CQEs are kept, never lost (5.5).  CQE_SKIP
	 * (5.17) also implies multishot poll (5.13) and timeout update
	 * (5.11).  EXT_ARG (5.11): timed waits without a timeout SQE. */
	const unsigned feats =
	    IORING_FEAT_NODROP | IORING_FEAT_CQE_SKIP | IORING_FEAT_EXT_ARG;
	struct cfd_uring *cu;

	if (!ret || !ring || ring->ring_fd < 0)
		return -EINVAL;
	/* SQPOLL consumes SQEs behind our back (a failed submit could not be
	 * taken back); IOPOLL rings refuse poll and timeout requests. */
	if (ring->flags & (IORING_SETUP_SQPOLL | IORING_SETUP_IOPOLL))
		return -EOPNOTSUPP;
	if ((ring->features & feats) != feats || !probe_ok(ring))
		return -EOPNOTSUPP;
	cfd_process_init();
	cu = calloc(1, sizeof(*cu));
	if (!cu)
		return -ENOMEM;
	atomic_init(&cu->refs, 1);
	cu->fork_gen = cfd_generation();
	cu->ring = ring;
	cu->cqe_size = (ring->flags & IORING_SETUP_CQE32) ? 32 : 16;
	cu->watch_free = NIL;
	cu->idle_head = cu->idle_tail = NIL;
	cu->last_watch = NIL;
	*ret = cu;
	return 0;
}

CFD_EXPORT struct cfd_uring *cfd_uring_ref(struct cfd_uring *cu)
{
	if (cu)
		atomic_fetch_add_explicit(&cu->refs, 1, memory_order_relaxed);
	return cu;
}

static void watch_free(struct cfd_uring *cu, uint32_t idx);

/*
 * The last reference: remove every request the library keeps on the ring
 * (token polls, the timer) and forget scope ops still in flight.  Their
 * CQEs, if the ring lives on, carry CFD_URING_UDATA_TAG.
 */
static void cu_destroy(struct cfd_uring *cu)
{
	while (cu->scopes)
		scope_destroy(cu->scopes);
	for (uint32_t i = 0; i < cu->nwatches; i++)
		if (cu->watches[i].tok)
			watch_free(cu, i);
	if (cu->timer_armed) {
		struct io_uring_sqe *sqe = cu_get_sqe(cu);

		if (sqe) {
			io_uring_prep_timeout_remove(
			    sqe, ud_make(UD_TIMER, cu->timer_gen, 0), 0);
			sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
			sqe->user_data = ud_make(UD_TIMER_REMOVE, 0, 0);
			cu->dirty = true;
		}
	}
	if (cu->dirty)
		cu_submit(cu);
	free(cu->watches);
	free(cu->buckets);
	free(cu->slots);
	free(cu->free_slots);
	free(cu->backlog);
	free(cu->wops);
	free(cu);
}

CFD_EXPORT struct cfd_uring *cfd_uring_unref(struct cfd_uring *cu)
{
	if (!cu)
		return NULL;
	/* After fork the ring's memory is shared with the parent: leave it. */
	if (!cu_check(cu))
		return NULL;
	if (atomic_fetch_sub_explicit(&cu->refs, 1, memory_order_acq_rel) == 1)
		cu_destroy(cu);
	return NULL;
}

CFD_EXPORT void cfd_uring_unrefp(struct cfd_uring **cup)
{
	if (cup)
		*cup = cfd_uring_unref(*cup);
}

/* ---- token watches ---- */

static uint32_t hash_ptr(const void *p, uint32_t nbuckets)
{
	uint64_t x = (uint64_t)(uintptr_t)p;

	x ^= x >> 29;
	x *= 0x9e3779b97f4a7c15ull;
	return (uint32_t)(x >> 32) & (nbuckets - 1);
}

static uint32_t watch_lookup(struct cfd_uring *cu, const struct cfd_token *tok)
{
	if (cu->last_watch != NIL && cu->watches[cu->last_watch].tok == tok)
		return cu->last_watch;
	if (!cu->nbuckets)
		return NIL;
	for (uint32_t i = cu->buckets[hash_ptr(tok, cu->nbuckets)]; i != NIL;
	     i = cu->watches[i].hnext)
		if (cu->watches[i].tok == tok)
			return i;
	return NIL;
}

static int hash_grow(struct cfd_uring *cu)
{
	uint32_t nb = cu->nbuckets ? cu->nbuckets * 2 : 16;
	uint32_t *b = malloc(nb * sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (uint32_t i = 0; i < nb; i++)
		b[i] = NIL;
	for (uint32_t i = 0; i < cu->nwatches; i++) {
		struct watch *w = &cu->watches[i];
		uint32_t h;

		if (!w->tok)
			continue;
		h = hash_ptr(w->tok, nb);
		w->hnext = b[h];
		b[h] = i;
	}
	free(cu->buckets);
	cu->buckets = b;
	cu->nbuckets = nb;
	return 0;
}

static void hash_remove(struct cfd_uring *cu, uint32_t idx)
{
	uint32_t *pp =
	    &cu->buckets[hash_ptr(cu->watches[idx].tok, cu->nbuckets)];

	while (*pp != idx)
		pp = &cu->watches[*pp].hnext;
	*pp = cu->watches[idx].hnext;
	cu->hcount--;
}

static void idle_remove(struct cfd_uring *cu, uint32_t idx)
{
	struct watch *w = &cu->watches[idx];

	if (w->idle_prev != NIL)
		cu->watches[w->idle_prev].idle_next = w->idle_next;
	else
		cu->idle_head = w->idle_next;
	if (w->idle_next != NIL)
		cu->watches[w->idle_next].idle_prev = w->idle_prev;
	else
		cu->idle_tail = w->idle_prev;
	w->idle = 0;
	cu->nidle--;
}

static void idle_push(struct cfd_uring *cu, uint32_t idx)
{
	struct watch *w = &cu->watches[idx];

	w->idle_next = NIL;
	w->idle_prev = cu->idle_tail;
	if (cu->idle_tail != NIL)
		cu->watches[cu->idle_tail].idle_next = idx;
	else
		cu->idle_head = idx;
	cu->idle_tail = idx;
	w->idle = 1;
	cu->nidle++;
}

static uint32_t watch_alloc(struct cfd_uring *cu)
{
	uint32_t idx = cu->watch_free;

	if (idx != NIL) {
		cu->watch_free = cu->watches[idx].hnext;
		return idx;
	}
	if ((cu->nwatches & (cu->nwatches - 1)) == 0) {
		uint32_t cap = cu->nwatches ? cu->nwatches * 2 : 8;
		struct watch *n;

		if (cap > UD_IDX_MAX)
			return NIL;
		n = realloc(cu->watches, cap * sizeof(*n));
		if (!n)
			return NIL;
		cu->watches = n;
	}
	return cu->nwatches++;
}

/* watch_get() when tok is not the last token seen. */
int watch_get_slow(struct cfd_uring *cu, struct cfd_token *tok, uint32_t *ret)
{
	uint32_t idx = watch_lookup(cu, tok);
	struct watch *w;
	uint32_t h;
	int fd;

	if (idx != NIL) {
		/* An idle watch stays on the idle list while used: the list
		 * is tidied when it is next put, or when evicting. */
		cu->watches[idx].users++;
		cu->last_watch = idx;
		*ret = idx;
		return 0;
	}
	fd = cfd_token_fd(tok); /* made now, so that arming cannot fail */
	if (fd < 0)
		return fd;
	if (cu->hcount >= cu->nbuckets && hash_grow(cu) < 0)
		return -ENOMEM;
	idx = watch_alloc(cu);
	if (idx == NIL)
		return -ENOMEM;
	w = &cu->watches[idx];
	memset(w, 0, sizeof(*w));
	w->tok = cfd_token_ref(tok);
	w->users = 1;
	w->idle_prev = w->idle_next = NIL;
	h = hash_ptr(tok, cu->nbuckets);
	w->hnext = cu->buckets[h];
	cu->buckets[h] = idx;
	cu->hcount++;
	cu->last_watch = idx;
	*ret = idx;
	return 0;
}

/* The watch's armed or fired changed: tell its scopes (cfd_scope_add()
 * reads one flag of its own). */
void watch_mark(struct cfd_uring *cu, uint32_t idx)
{
	struct watch *w = &cu->watches[idx];
	bool quiet = w->armed && !w->fired;

	for (struct cfd_scope *s = w->scopes; s; s = s->wnext)
		s->quiet = quiet;
}

/* Queue the watch's multishot poll (see watch_ensure_armed()). */
int watch_arm(struct cfd_uring *cu, uint32_t idx, bool may_submit)
{
	struct watch *w = &cu->watches[idx];
	struct io_uring_sqe *sqe;

	sqe = may_submit ? cu_get_sqe(cu) : io_uring_get_sqe(cu->ring);
	if (!sqe)
		return -EBUSY;
	w->gen = cu_next_gen(cu);
	/* Never read: the eventfd stays readable once triggered, so a poll
	 * armed after the trigger completes at once. */
	io_uring_prep_poll_multishot(sqe, cfd_token_fd(w->tok), POLLIN);
	sqe->user_data = ud_make(UD_POLL, w->gen, idx);
	w->armed = 1;
	watch_mark(cu, idx);
	cu->dirty = true;
	return 0;
}

/* Forget a watch: remove its poll (if any), drop its token. */
static void watch_free(struct cfd_uring *cu, uint32_t idx)
{
	struct watch *w = &cu->watches[idx];

	if (w->armed) {
		struct io_uring_sqe *sqe = cu_get_sqe(cu);

		/* Without an SQE the poll stays until the ring goes; its CQE
		 * would carry a generation that matches nothing. */
		if (sqe) {
			io_uring_prep_poll_remove(
			    sqe, ud_make(UD_POLL, w->gen, idx));
			sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
			sqe->user_data = ud_make(UD_POLL_REMOVE, w->gen, idx);
			cu->dirty = true;
		}
		w->armed = 0;
		watch_mark(cu, idx);
	}
	if (w->idle)
		idle_remove(cu, idx);
	if (cu->last_watch == idx)
		cu->last_watch = NIL;
	hash_remove(cu, idx);
	cfd_token_unref(w->tok);
	w->tok = NULL;
	w->hnext = cu->watch_free;
	cu->watch_free = idx;
}

/*
 * One user fewer.  A watch nobody uses stays armed (idle) so that the next
 * wait on the same token needs no poll of its own; the least recently used
 * idle watch goes when there are too many, and a fired one goes at once.
 * The idle list may hold watches that are in use again (watch_get() leaves
 * them there, so that a wait costs no list edits): they move to its end
 * when put, and leave it when met during an eviction.
 */
void watch_put_slow(struct cfd_uring *cu, uint32_t idx)
{
	struct watch *w = &cu->watches[idx];

	if (--w->users)
		return;
	if (w->fired || !w->armed || cfd_token_triggered(w->tok)) {
		watch_free(cu, idx);
		return;
	}
	if (w->idle && cu->idle_tail == idx)
		return; /* most recently used already */
	if (w->idle)
		idle_remove(cu, idx);
	idle_push(cu, idx);
	while (cu->nidle > WATCH_IDLE_MAX) {
		uint32_t old = cu->idle_head;

		if (cu->watches[old].users)
			idle_remove(cu, old);
		else
			watch_free(cu, old);
	}
}

/*
 * The token was seen triggered: cancel the ops of every scope on it.  The
 * poll has nothing left to say (a token triggers once), but removing it
 * now would put a second request in the submit that carries the cancels
 * and delay them; it goes when the watch's last user does.
 */
static void watch_fire(struct cfd_uring *cu, uint32_t idx)
{
	cu->watches[idx].fired = 1;
	watch_mark(cu, idx);
	for (struct cfd_scope *s = cu->watches[idx].scopes; s; s = s->wnext)
		scope_cancel_ops(cu, s);
	if (cu->watches[idx].users == 0)
		watch_free(cu, idx);
}

/*
 * A CQE of a watch's poll.  The eventfd says "look", the token's state
 * says what happened: an outside write to a shared eventfd is not a
 * trigger (the token's watcher turns it into one, and that trigger writes
 * the fd again, so another CQE follows).  A CQE without IORING_CQE_F_MORE
 * means the poll is gone (removed, cancelled from outside, or ended by a CQ
 * overflow): re-arm it while someone needs it.
 */
static void watch_cqe(struct cfd_uring *cu, const struct io_uring_cqe *cqe)
{
	uint32_t idx = ud_idx(cqe->user_data);
	struct watch *w;

	if (idx >= cu->nwatches)
		return;
	w = &cu->watches[idx];
	if (!w->tok || !w->armed || w->gen != ud_gen(cqe->user_data))
		return; /* an earlier poll of this slot */
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		w->armed = 0;
		watch_mark(cu, idx);
	}
	if (w->fired)
		return;
	if (cfd_token_triggered(w->tok)) {
		watch_fire(cu, idx);
		return;
	}
	/* A poll that fails by itself (its fd closed under it) must not be
	 * re-armed forever. */
	if (cqe->res < 0 && cqe->res != -ECANCELED)
		w->errors++;
	else
		w->errors = 0;
	if (w->armed)
		return;
	if (w->users == 0)
		watch_free(cu, idx);
	else if (w->errors < 3)
		watch_ensure_armed(cu, idx, true);
}

/* ---- the ring timer ---- */

static void ts_from_ns(struct __kernel_timespec *ts, int64_t ns)
{
	if (ns < 0)
		ns = 0;
	ts->tv_sec = ns / 1000000000;
	ts->tv_nsec = ns % 1000000000;
}

/*
 * Make sure the ring timer fires no later than deadline (absolute,
 * CLOCK_MONOTONIC).  A timer armed for an earlier time is left alone: it
 * fires early, finds nothing expired and is re-armed, which costs less
 * than moving it for every wait.  Only a new earliest deadline moves it,
 * with IORING_TIMEOUT_UPDATE in the same submit as the wait's ops.
 */
void timer_set(struct cfd_uring *cu, int64_t deadline)
{
	struct io_uring_sqe *sqe = cu_get_sqe(cu);

	if (!sqe)
		return;
	if (!cu->timer_armed) {
		cu->timer_gen = cu_next_gen(cu);
		ts_from_ns(&cu->ts_arm, deadline);
		/* count 0: a pure timer.  The count form would also count
		 * the multishot polls' CQEs and fire early. */
		io_uring_prep_timeout(sqe, &cu->ts_arm, 0, IORING_TIMEOUT_ABS);
		sqe->user_data = ud_make(UD_TIMER, cu->timer_gen, 0);
		cu->timer_armed = true;
	} else {
		/* -ENOENT or -EALREADY if it fired meanwhile: its -ETIME
		 * is then processed and re-arms for the deadline. */
		ts_from_ns(&cu->ts_update, deadline);
		io_uring_prep_timeout_update(
		    sqe, &cu->ts_update, ud_make(UD_TIMER, cu->timer_gen, 0),
		    IORING_TIMEOUT_ABS);
		sqe->user_data = ud_make(UD_TIMER_UPDATE, cu->timer_gen, 0);
		cu->timer_updates++;
	}
	cu->timer_at = deadline;
	cu->dirty = true;
}

static void timer_cqe(struct cfd_uring *cu, const struct io_uring_cqe *cqe)
{
	struct wait *w = cu->wait;

	if (!cu->timer_armed || ud_gen(cqe->user_data) != cu->timer_gen)
		return;
	/* -ETIME, or -ECANCELED if someone cancelled it: either way it is
	 * gone.  Deadlines exist only while a wait runs. */
	cu->timer_armed = false;
	if (!w || !w->has_deadline || w->expired)
		return;
	if (w->deadline <= cfd_now())
		w->expired = true;
	else
		timer_want(cu, w->deadline);
}

/* ---- dispatch ---- */

int cu_dispatch(struct cfd_uring *cu, const struct io_uring_cqe *cqe,
		uint64_t *user_data)
{
	uint64_t ud = cqe->user_data;

	*user_data = ud;
	if (!ud_is_own(ud))
		return CFD_CQE_OP;
	switch (ud_kind(ud)) {
	case UD_SCOPE_OP:
		return scope_op_cqe(cu, cqe, user_data, false);
	case UD_POLL:
		watch_cqe(cu, cqe);
		break;
	case UD_TIMER:
		timer_cqe(cu, cqe);
		break;
	case UD_TIMER_UPDATE:
		if (cu->timer_updates)
			cu->timer_updates--;
		break;
	case UD_WAIT_OP:
	case UD_WAIT_CANCEL:
		if (cu->wait && ud_gen(ud) == cu->wait->gen)
			wait_cqe(cu, cqe);
		break;
	default:
		/* failed removals and cancels of skip-success SQEs: the
		 * request they aimed at reports for itself */
		break;
	}
	return CFD_CQE_OWN;
}

/* Everything but the caller's own CQEs and a scope op's: owed cancels,
 * the library's polls, timers and cancels, and what they submit.  Out of
 * line, so that cfd_uring_cqe()'s fast path stays a leaf. */
static __attribute__((noinline)) int cqe_slow(struct cfd_uring *cu,
					      const struct io_uring_cqe *cqe,
					      uint64_t *user_data)
{
	int r;

	if (cu->owed)
		scopes_flush_owed(cu, true);
	r = cu_dispatch(cu, cqe, user_data);
	/* Cancels and re-arms go out now: trigger -> -ECANCELED latency
	 * must not wait for the caller's next submit. */
	if (cu->dirty)
		cu_submit(cu);
	return r;
}

CFD_EXPORT int cfd_uring_cqe(struct cfd_uring *cu,
			     const struct io_uring_cqe *cqe,
			     uint64_t *user_data)
{
	uint64_t ud;

	if (!cu || !cqe || !user_data)
		return -EINVAL;
	if (!cu_check(cu))
		return -ECHILD;
	if (cu->work)
		return cqe_slow(cu, cqe, user_data);
	/* The two common cases, one per CQE of a busy loop: an op of a
	 * scope, and the caller's own op. */
	ud = cqe->user_data;
	if (ud_is_scope_op(ud))
		return scope_op_cqe(cu, cqe, user_data, true);
	if (!ud_is_own(ud)) {
		*user_data = ud;
		return CFD_CQE_OP;
	}
	return cqe_slow(cu, cqe, user_data);
}

/* ---- the backlog ---- */

static int backlog_reserve(struct cfd_uring *cu)
{
	struct backlog_entry *n;
	size_t cap;

	if (cu->bl_head + cu->bl_len < cu->bl_cap)
		return 0;
	if (cu->bl_head) {
		memmove(cu->backlog, cu->backlog + cu->bl_head,
			cu->bl_len * sizeof(*n));
		cu->bl_head = 0;
		if (cu->bl_len < cu->bl_cap)
			return 0;
	}
	cap = cu->bl_cap ? cu->bl_cap * 2 : 64;
	n = realloc(cu->backlog, cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	cu->backlog = n;
	cu->bl_cap = cap;
	return 0;
}

int cu_backlog_push(struct cfd_uring *cu, const struct io_uring_cqe *cqe,
		    uint64_t user_data, int kind)
{
	struct backlog_entry *e;

	if (backlog_reserve(cu) < 0)
		return -ENOMEM;
	e = &cu->backlog[cu->bl_head + cu->bl_len++];
	memcpy(e->cqe, cqe, cu->cqe_size);
	memcpy(e->cqe, &user_data, sizeof(user_data));
	e->kind = kind;
	return 0;
}

CFD_EXPORT int cfd_uring_backlog(struct cfd_uring *cu, struct io_uring_cqe *out)
{
	struct backlog_entry *e;

	if (!cu || !out)
		return -EINVAL;
	if (!cu_check(cu))
		return -ECHILD;
	if (!cu->bl_len)
		return -EAGAIN;
	e = &cu->backlog[cu->bl_head];
	memcpy(out, e->cqe, cu->cqe_size);
	if (--cu->bl_len)
		cu->bl_head++;
	else
		cu->bl_head = 0;
	return e->kind;
}

/*
 * One CQE reaped by a wait: the library's are processed, the others go to
 * the backlog (scope ops with their bookkeeping done and the caller's
 * user_data restored).  Room is reserved before a CQE that may need it is
 * dispatched, so that none is processed and then lost.
 */
int cu_reap_one(struct cfd_uring *cu, const struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;
	int kind;

	if ((!ud_is_own(ud) || ud_kind(ud) == UD_SCOPE_OP) &&
	    backlog_reserve(cu) < 0)
		return -ENOMEM;
	kind = cu_dispatch(cu, cqe, &ud);
	if (kind != CFD_CQE_OWN)
		cu_backlog_push(cu, cqe, ud, kind);
	return 0;
}

/* Consume every CQE the CQ holds now. */
int cu_reap(struct cfd_uring *cu)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int r = 0;

	io_uring_for_each_cqe(cu->ring, head, cqe)
	{
		r = cu_reap_one(cu, cqe);
		if (r < 0)
			break;
		n++;
	}
	io_uring_cq_advance(cu->ring, n);
	return r < 0 ? r : (int)n;
}
