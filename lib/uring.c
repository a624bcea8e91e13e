/* SPDX-License-Identifier: MIT */
/*
 * The io_uring binding: struct cfd_uring, its SQEs, the CQE dispatcher
 * shared by cfd_uring_cqe() and cfd_uring_wait(), the backlog of other
 * CQEs a wait reaped, and the history a released binding leaves for the
 * next binding of the same ring.
 *
 * Everything here runs in the thread that drives the ring; the only thing
 * another thread does is trigger a token, which writes its eventfd and so
 * completes the token's poll on the ring.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "uring-internal.h"

/* ---- the process ---- */

_Atomic uint32_t uring_fork_gen;
static pthread_once_t uring_once = PTHREAD_ONCE_INIT;

static void uring_after_fork_in_child(void)
{
	atomic_fetch_add_explicit(&uring_fork_gen, 1, memory_order_relaxed);
}

static void uring_process_setup(void)
{
	pthread_atfork(NULL, NULL, uring_after_fork_in_child);
}

int64_t uring_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

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

/* ---- a ring's history ---- */

/*
 * What a binding released with scope ops in flight leaves for the next
 * binding of the same ring: its user_data generations, and its op slots
 * with those ops as orphans.  The next binding continues the generations
 * and keeps the orphans' slots taken until their completions come (which
 * are then the library's own), so it can never take a forgotten op's
 * completion for one of its own ops.  A few histories are kept; a ring
 * that is never bound again leaves its history to be evicted.
 */
struct uring_history {
	struct uring_history *next;
	const struct io_uring *ring;
	int ring_fd;
	void *sq_ring;
	uint32_t ud_gen;
	uint32_t nslots;
	struct op_slot *slots;
};

#define HISTORY_MAX 64

static pthread_mutex_t history_lock = PTHREAD_MUTEX_INITIALIZER;
static struct uring_history *histories;

static void history_free(struct uring_history *h)
{
	free(h->slots);
	free(h);
}

/* Under history_lock: take the history of ring, if any. */
static struct uring_history *history_take(const struct io_uring *ring)
{
	for (struct uring_history **pp = &histories; *pp; pp = &(*pp)->next) {
		struct uring_history *h = *pp;

		if (h->ring == ring && h->ring_fd == ring->ring_fd &&
		    h->sq_ring == ring->sq.ring_ptr) {
			*pp = h->next;
			return h;
		}
	}
	return NULL;
}

/* The binding goes: keep its generations, and its slots if orphans are
 * among them, for the next binding.  The removals of its token polls are
 * in flight too, and their completions will carry its generations.
 * Without memory nothing is kept. */
static void history_leave(struct cfd_uring *cu)
{
	struct uring_history *h = malloc(sizeof(*h));
	unsigned n = 0;

	if (!h)
		return;
	h->ring = cu->ring;
	h->ring_fd = cu->ring->ring_fd;
	h->sq_ring = cu->ring->sq.ring_ptr;
	h->ud_gen = cu->ud_gen;
	h->nslots = 0;
	h->slots = NULL;
	for (uint32_t i = 0; i < cu->nslots; i++)
		if (cu->slots[i].meta & OPSLOT_ORPHAN) {
			h->nslots = cu->nslots;
			h->slots = cu->slots;
			cu->slots = NULL;
			cu->nslots = 0;
			break;
		}
	pthread_mutex_lock(&history_lock);
	free(history_take(cu->ring)); /* cannot be: a ring has one binding */
	h->next = histories;
	histories = h;
	for (struct uring_history *e = histories; e; e = e->next)
		if (++n == HISTORY_MAX && e->next) {
			struct uring_history *old = e->next;

			e->next = NULL;
			while (old) {
				struct uring_history *next = old->next;

				history_free(old);
				old = next;
			}
			break;
		}
	pthread_mutex_unlock(&history_lock);
}

/* A new binding takes its ring's history over: generations and slots. */
static int history_adopt(struct cfd_uring *cu)
{
	struct uring_history *h;
	uint32_t cap;

	pthread_mutex_lock(&history_lock);
	h = history_take(cu->ring);
	pthread_mutex_unlock(&history_lock);
	if (!h)
		return 0;
	cu->ud_gen = h->ud_gen;
	if (!h->slots) {
		free(h);
		return 0;
	}
	/* the free stack never holds more than the slot table's capacity,
	 * a power of two */
	for (cap = 64; cap < h->nslots; cap *= 2)
		;
	cu->free_slots = malloc(cap * sizeof(*cu->free_slots));
	if (!cu->free_slots) {
		pthread_mutex_lock(&history_lock);
		h->next = histories;
		histories = h;
		pthread_mutex_unlock(&history_lock);
		return -ENOMEM;
	}
	cu->slots = h->slots;
	cu->nslots = h->nslots;
	for (uint32_t i = h->nslots; i-- > 0;)
		if (!(cu->slots[i].meta & OPSLOT_ORPHAN))
			cu->free_slots[cu->nfree++] = i;
	free(h);
	return 0;
}

/* ---- life cycle ---- */

static bool probe_ok(struct io_uring *ring)
{
	static const int need[] = {
		IORING_OP_NOP,
		IORING_OP_POLL_ADD,
		IORING_OP_POLL_REMOVE,
		IORING_OP_ASYNC_CANCEL,
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
	/* NODROP: overflowed CQEs are kept, never lost (5.5).  EXT_ARG
	 * (5.11): a wait's deadline is its io_uring_enter() timeout.
	 * CQE_SKIP (5.17) stands for what 5.17 brought with it: multishot
	 * poll (5.13) and async cancel by user_data on every request. */
	const unsigned feats = IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG |
			       (1U << 11) /* IORING_FEAT_CQE_SKIP */;
	struct cfd_uring *cu;
	int r;

	/* A ring that was never set up (or was torn down) has no SQ. */
	if (!ret || !ring || ring->ring_fd < 0 || !ring->sq.ring_entries ||
	    !ring->sq.sqes || !ring->cq.cqes)
		return -EINVAL;
	/* SQPOLL consumes SQEs behind our back (a failed submit could not be
	 * taken back); IOPOLL rings refuse poll requests. */
	if (ring->flags & (IORING_SETUP_SQPOLL | IORING_SETUP_IOPOLL))
		return -EOPNOTSUPP;
	if ((ring->features & feats) != feats || !probe_ok(ring))
		return -EOPNOTSUPP;
	pthread_once(&uring_once, uring_process_setup);
	cu = calloc(1, sizeof(*cu));
	if (!cu)
		return -ENOMEM;
	atomic_init(&cu->refs, 1);
	cu->fork_gen = uring_fork_generation();
	cu->ring = ring;
	cu->cqe_size = (ring->flags & IORING_SETUP_CQE32) ? 32 : 16;
	cu->lazy_completions = ring->flags & (IORING_SETUP_DEFER_TASKRUN |
					      IORING_SETUP_COOP_TASKRUN);
	cu->poll_free = NIL;
	cu->last_poll = NIL;
	r = history_adopt(cu);
	if (r < 0) {
		free(cu);
		return r;
	}
	*ret = cu;
	return 0;
}

CFD_EXPORT struct cfd_uring *cfd_uring_ref(struct cfd_uring *cu)
{
	if (cu)
		atomic_fetch_add_explicit(&cu->refs, 1, memory_order_relaxed);
	return cu;
}

/*
 * The last reference: forget scope ops still in flight (orphans, which
 * the next binding of the ring will recognise), remove the token polls,
 * and leave the history.
 */
static void cu_destroy(struct cfd_uring *cu)
{
	for (uint32_t i = 0; i < cu->nslots; i++) {
		struct op_slot *o = &cu->slots[i];

		if (o->meta & OPSLOT_LIVE) {
			o->meta =
			    (o->meta & ~OPSLOT_STATE_MASK) | OPSLOT_ORPHAN;
			o->scope = NULL;
		}
	}
	while (cu->scopes)
		scope_destroy(cu->scopes);
	tpolls_free(cu);
	if (cu->dirty)
		cu_submit(cu);
	history_leave(cu);
	free(cu->polls);
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
		tpoll_cqe(cu, cqe);
		break;
	case UD_WAIT_OP:
	case UD_WAIT_CANCEL:
		if (cu->wait && ud_gen(ud) == cu->wait->ud_gen)
			wait_cqe(cu, cqe);
		break;
	default:
		/* removals, scope cancels, neutralised SQEs, failed links:
		 * the request they aimed at reports for itself */
		break;
	}
	return CFD_CQE_OWN;
}

/* Everything but the caller's own CQEs and a scope op's: owed cancels,
 * the library's polls and cancels, and what they submit.  Out of line, so
 * that cfd_uring_cqe()'s fast path stays a leaf. */
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
