/* SPDX-License-Identifier: MIT */
#ifndef CFD_URING_INTERNAL_H
#define CFD_URING_INTERNAL_H

/*
 * Shared by lib/uring.c (the binding, token watches, the ring timer, CQE
 * dispatch, the backlog), lib/uring-wait.c (cfd_uring_wait) and
 * lib/uring-scope.c (scopes).  Only the public token API and the core's
 * process/clock helpers are used from the core.
 */

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "cancelfd-uring.h"
#include "internal.h"

/* ---- what liburing 2.3 lacks ---- */

#ifndef IORING_CQE_F_MORE
#define IORING_CQE_F_MORE (1U << 1)
#endif
#ifndef IOSQE_CQE_SKIP_SUCCESS
#define IOSQE_CQE_SKIP_SUCCESS (1U << 6)
#endif
#ifndef IORING_FEAT_CQE_SKIP
#define IORING_FEAT_CQE_SKIP (1U << 11)
#endif

/* ---- user_data of the library's SQEs ---- */

/*
 * tag (16 bits) | kind (4) | generation (20) | index (24).  The generation
 * makes a CQE (or a cancel still in flight) that belongs to an earlier
 * life of a slot harmless: it matches nothing.
 */
enum ud_kind {
	UD_NOP = 1,	     /* a neutralised SQE: posts nothing */
	UD_POLL = 2,	     /* a token watch's multishot poll */
	UD_POLL_REMOVE = 3,  /* its removal (skip-success) */
	UD_TIMER = 4,	     /* the ring timer */
	UD_TIMER_UPDATE = 5, /* moving it (reaped by the wait) */
	UD_TIMER_REMOVE = 6, /* removing it (teardown, skip-success) */
	UD_WAIT_OP = 7,	     /* an op of the running wait */
	UD_WAIT_CANCEL = 8,  /* the wait cancelling one of its ops */
	UD_SCOPE_OP = 9,     /* an op tracked by a scope */
	UD_SCOPE_CANCEL = 10 /* a scope cancelling one (skip-success) */
};

#define UD_GEN_MASK 0xfffffu
#define UD_IDX_MASK 0xffffffu
#define UD_IDX_MAX UD_IDX_MASK

static inline uint64_t ud_make(unsigned kind, uint32_t gen, uint32_t idx)
{
	return ((uint64_t)CFD_URING_UDATA_TAG << 48) | ((uint64_t)kind << 44) |
	       ((uint64_t)(gen & UD_GEN_MASK) << 24) | (idx & UD_IDX_MASK);
}

static inline bool ud_is_own(uint64_t ud)
{
	return (ud >> 48) == CFD_URING_UDATA_TAG;
}

static inline unsigned ud_kind(uint64_t ud)
{
	return (unsigned)(ud >> 44) & 0xf;
}

static inline uint32_t ud_gen(uint64_t ud)
{
	return (uint32_t)(ud >> 24) & UD_GEN_MASK;
}

static inline uint32_t ud_idx(uint64_t ud)
{
	return (uint32_t)ud & UD_IDX_MASK;
}

/* Tag and kind at once: a scope op's CQE is the hot case. */
static inline bool ud_is_scope_op(uint64_t ud)
{
	return (ud >> 44) ==
	       (((uint64_t)CFD_URING_UDATA_TAG << 4) | UD_SCOPE_OP);
}

/* ---- token watches: one multishot poll per token and ring ---- */

#define NIL UINT32_MAX

/*
 * How many watches with no user (no scope, no running wait) stay armed so
 * that the next wait on the same token costs no extra SQE.  Each holds a
 * reference to its token (and so its eventfd) until evicted or until the
 * cfd_uring is released.
 */
#define WATCH_IDLE_MAX 16

struct watch {
	struct cfd_token *tok; /* referenced; NULL when the slot is free */
	uint32_t gen;	       /* generation of the armed poll */
	uint32_t users;	       /* scopes + the running wait */
	uint32_t hnext;	       /* hash chain, or free list */
	uint32_t idle_prev, idle_next;
	struct cfd_scope *scopes; /* scopes on this token */
	uint8_t armed;		  /* a poll is in flight */
	uint8_t fired;		  /* the token was seen triggered */
	uint8_t idle;		  /* on the idle list */
	uint8_t errors;		  /* poll failures in a row */
};

/* ---- scope ops ---- */

/* op_slot.meta: the generation of the slot's op, and its state */
#define SLOT_SHIELD (1u << 0)
#define SLOT_CANCELLED (1u << 1) /* the scope asked to cancel it */
#define SLOT_OWED (1u << 2)	 /* ... but no SQE was free yet */
#define SLOT_LIVE (1u << 3)	 /* an op is in flight */
#define SLOT_GEN_SHIFT 12	 /* 20 bits, as in user_data */
#define SLOT_STATE_MASK ((1u << SLOT_GEN_SHIFT) - 1)

/* 24 bytes: what an op in flight costs in cache is what its CQE waits on. */
struct op_slot {
	uint64_t user_data;	 /* the caller's */
	struct cfd_scope *scope; /* NULL when free */
	uint32_t meta;		 /* generation << SLOT_GEN_SHIFT | SLOT_* */
};

/* The user_data the slot's op carries on the ring. */
static inline uint64_t slot_ud(const struct op_slot *o, uint32_t idx)
{
	return ud_make(UD_SCOPE_OP, o->meta >> SLOT_GEN_SHIFT, idx);
}

/* Is ud (a UD_SCOPE_OP of this slot's index) the op in flight in it?
 * One compare: ud's generation lands where meta keeps it. */
static inline bool slot_matches(const struct op_slot *o, uint64_t ud)
{
	uint32_t want =
	    ((uint32_t)(ud >> (24 - SLOT_GEN_SHIFT)) & ~SLOT_STATE_MASK) |
	    SLOT_LIVE;

	return (o->meta & ~(SLOT_STATE_MASK & ~SLOT_LIVE)) == want;
}

#define SCOPE_DETACHED (1u << 31)

struct scope_link {
	struct scope_link *next;
	struct cfd_registration *reg;
	struct cfd_token *target;
};

struct cfd_scope {
	_Atomic uint32_t refs; /* the caller's references */
	struct cfd_uring *cu;  /* referenced while refs > 0 */
	struct cfd_token *tok; /* referenced */
	uint32_t watch;	       /* index, or NIL when the token had fired */
	/* The watch's poll is armed and has not seen the trigger: an op
	 * added needs nothing more (kept by watch_mark()). */
	bool quiet;
	/* ops in flight, | SCOPE_DETACHED once no caller holds it: it is
	 * freed with its last op (one compare on each op's CQE) */
	uint32_t pending;
	bool owed; /* some ops wait for a free SQE to be cancelled */
	struct cfd_scope *wprev, *wnext; /* on the watch's list */
	struct cfd_scope *prev, *next;	 /* on the ring's list */
	struct scope_link *links;
};

/* ---- the running wait (uring-wait.c) ---- */

struct wait_op {
	uint32_t seq;	    /* order of its first CQE */
	uint8_t seen;	    /* a CQE arrived (its result is in results[]) */
	uint8_t done;	    /* its last CQE arrived */
	uint8_t cancelling; /* a cancel of ours is in flight */
	uint8_t asked;	    /* a cancel of ours was issued */
	uint8_t hit;	    /* a cancel of ours found it (0 or -EALREADY) */
	uint8_t missed;	    /* the last cancel found nothing (-ENOENT) */
	uint8_t linked;	    /* it has IOSQE_IO_LINK / IO_HARDLINK */
};

struct wait {
	uint32_t gen;
	unsigned nops;
	struct wait_op *ops;
	struct cfd_op_result *results; /* the caller's, filled as CQEs come */
	unsigned inflight;	       /* ops whose last CQE has not arrived */
	unsigned cancels;	       /* cancel CQEs still to come */
	unsigned seq;
	int first, last; /* ops whose first CQE came first, and last */
	bool asked_any;	 /* some cancel was issued */
	bool expired;	 /* the ring timer found the deadline passed */
	bool has_deadline;
	int64_t deadline;
};

/* ---- the binding ---- */

struct backlog_entry {
	uint64_t cqe[4]; /* room for a 32-byte CQE */
	int kind;	 /* CFD_CQE_OP or CFD_CQE_OP_CANCELLED */
};

struct cfd_uring {
	/* What every cfd_scope_add() and cfd_uring_cqe() reads, in the
	 * first cache line. */
	uint32_t fork_gen;
	/* Work for the next call that may submit; cfd_uring_cqe()'s fast
	 * path tests both flags with one compare. */
	union {
		struct {
			bool dirty; /* SQEs prepared that must be submitted */
			bool owed;  /* some scope has cancels owed */
		};
		uint16_t work;
	};
	/* scope ops: the slots, and the free ones as a stack of indices
	 * (taking one is a load and a decrement; a linked free list made a
	 * chain of dependent loads from one op to the next).  A scope's ops
	 * are found by scanning the slots, on the rare paths that need
	 * them. */
	uint32_t nslots, nfree;
	struct op_slot *slots;
	uint32_t *free_slots;

	_Atomic uint32_t refs;
	struct io_uring *ring;
	size_t cqe_size;
	uint32_t gen; /* source of user_data generations */

	/* token watches, hashed by token address */
	struct watch *watches;
	uint32_t nwatches, watch_free;
	uint32_t *buckets;
	uint32_t nbuckets, hcount;
	uint32_t idle_head, idle_tail, nidle;
	uint32_t last_watch; /* the watch found last: waits reuse tokens */

	/* the ring timer */
	bool timer_armed;
	uint32_t timer_gen;
	int64_t timer_at;
	unsigned timer_updates; /* update CQEs still to come */
	struct __kernel_timespec ts_arm, ts_update;

	struct wait *wait; /* the running wait, if any */

	struct cfd_scope *scopes;

	/* CQEs of other ops reaped during a wait */
	struct backlog_entry *backlog;
	size_t bl_head, bl_len, bl_cap;

	/* scratch for the wait */
	struct wait_op *wops;
	unsigned wops_cap;
};

/* uring.c */
static inline bool cu_check(const struct cfd_uring *cu)
{
	return cu->fork_gen == cfd_generation();
}
struct io_uring_sqe *cu_get_sqe(struct cfd_uring *cu);
int cu_submit(struct cfd_uring *cu);
int cu_dispatch(struct cfd_uring *cu, const struct io_uring_cqe *cqe,
		uint64_t *user_data);
int cu_backlog_push(struct cfd_uring *cu, const struct io_uring_cqe *cqe,
		    uint64_t user_data, int kind);
int cu_reap(struct cfd_uring *cu);
int cu_reap_one(struct cfd_uring *cu, const struct io_uring_cqe *cqe);

static inline uint32_t cu_next_gen(struct cfd_uring *cu)
{
	return ++cu->gen & UD_GEN_MASK;
}

int watch_get_slow(struct cfd_uring *cu, struct cfd_token *tok, uint32_t *idx);
void watch_put_slow(struct cfd_uring *cu, uint32_t idx);
int watch_arm(struct cfd_uring *cu, uint32_t idx, bool may_submit);
void watch_mark(struct cfd_uring *cu, uint32_t idx);
void timer_set(struct cfd_uring *cu, int64_t deadline);

/* The watch of tok, with one more user (made if needed, not armed).  A
 * ring mostly sees the same token again: that case is a compare. */
static inline int watch_get(struct cfd_uring *cu, struct cfd_token *tok,
			    uint32_t *idx)
{
	uint32_t last = cu->last_watch;

	if (last != NIL && cu->watches[last].tok == tok) {
		cu->watches[last].users++;
		*idx = last;
		return 0;
	}
	return watch_get_slow(cu, tok, idx);
}

/* One user fewer; a watch left idle stays armed (see watch_put_slow()). */
static inline void watch_put(struct cfd_uring *cu, uint32_t idx)
{
	struct watch *w = &cu->watches[idx];

	/* still in use, or idle already at the end of the idle list */
	if (w->users > 1 || (w->idle && cu->idle_tail == idx && w->armed &&
			     !w->fired && !cfd_token_triggered(w->tok))) {
		w->users--;
		return;
	}
	watch_put_slow(cu, idx);
}

/* Queue the watch's multishot poll unless it is in flight or the token has
 * been seen triggered.  may_submit: free SQ room by submitting if needed. */
static inline int watch_ensure_armed(struct cfd_uring *cu, uint32_t idx,
				     bool may_submit)
{
	struct watch *w = &cu->watches[idx];

	return (w->armed || w->fired) ? 0 : watch_arm(cu, idx, may_submit);
}

/* Make sure the ring timer fires no later than deadline (see timer_set()):
 * a timer armed for an earlier time is left alone. */
static inline void timer_want(struct cfd_uring *cu, int64_t deadline)
{
	if (!cu->timer_armed || deadline < cu->timer_at)
		timer_set(cu, deadline);
}

/* uring-scope.c */
void scope_cancel_ops(struct cfd_uring *cu, struct cfd_scope *s);
void scopes_flush_owed(struct cfd_uring *cu, bool may_submit);
void scope_destroy(struct cfd_scope *s);

/* uring-wait.c */
void wait_cqe(struct cfd_uring *cu, const struct io_uring_cqe *cqe);

/*
 * An op CQE of the running wait (the wait's reap loop inlines it).  Until
 * the wait cancels something, every op result is its own: it goes
 * straight into the caller's array as CFD_OP_COMPLETED.
 */
static inline void wait_op_cqe(struct wait *w, uint32_t i,
			       const struct io_uring_cqe *cqe)
{
	struct wait_op *o = &w->ops[i];

	if (o->done)
		return;
	if (!o->seen) {
		struct cfd_op_result *r = &w->results[i];

		o->seen = 1;
		o->seq = w->seq++;
		r->res = cqe->res;
		r->flags = cqe->flags;
		r->state = CFD_OP_COMPLETED;
		if (w->first < 0)
			w->first = (int)i;
		w->last = (int)i;
	}
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		o->done = 1;
		w->inflight--;
	}
}

/* ---- the hot path of a scope op's CQE (inline: one per op) ---- */

static inline void slot_free(struct cfd_uring *cu, uint32_t idx)
{
	struct op_slot *o = &cu->slots[idx];

	o->meta &= ~SLOT_STATE_MASK; /* the generation stays */
	o->scope = NULL;
	cu->free_slots[cu->nfree++] = idx;
}

int scope_op_last(struct cfd_uring *cu, struct cfd_scope *s, int kind,
		  bool submit);

/*
 * A scope op's CQE: CFD_CQE_OP or CFD_CQE_OP_CANCELLED with the caller's
 * user_data, or CFD_CQE_OWN for a CQE of no op in flight (one forgotten
 * with its cfd_uring).  The last op of a scope nobody holds frees the
 * scope, and with submit, submits what that queues.  Written so that
 * cfd_uring_cqe()'s fast path makes no call but a tail call: no registers
 * to save on the way in.
 */
static inline int scope_op_cqe(struct cfd_uring *cu,
			       const struct io_uring_cqe *cqe,
			       uint64_t *user_data, bool submit)
{
	uint64_t ud = cqe->user_data;
	uint32_t idx = ud_idx(ud);
	struct cfd_scope *s;
	struct op_slot *o;
	int kind = CFD_CQE_OP;

	if (idx >= cu->nslots)
		return CFD_CQE_OWN;
	o = &cu->slots[idx];
	if (!slot_matches(o, ud))
		return CFD_CQE_OWN;
	*user_data = o->user_data;
	/* -ECANCELED or -EINTR is the scope's doing only if the scope asked;
	 * otherwise something else cancelled the op, and that is its own
	 * result (a link predecessor failed, an outside ASYNC_CANCEL). */
	if ((o->meta & SLOT_CANCELLED) &&
	    (cqe->res == -ECANCELED || cqe->res == -EINTR))
		kind = CFD_CQE_OP_CANCELLED;
	if (cqe->flags & IORING_CQE_F_MORE)
		return kind; /* a multishot op goes on */
	s = o->scope;
	slot_free(cu, idx);
	if (--s->pending != SCOPE_DETACHED)
		return kind;
	return scope_op_last(cu, s, kind, submit);
}

#endif
