/* SPDX-License-Identifier: MIT */
#ifndef CFD_URING_INTERNAL_H
#define CFD_URING_INTERNAL_H

/*
 * Shared by the files of the io_uring layer:
 *   uring.c        the binding, SQEs, CQE dispatch, the backlog, and the
 *                  history a released binding leaves to the next one
 *   uring-poll.c   token polls: one single-shot poll per token and ring
 *   uring-wait.c   cfd_uring_wait()
 *   uring-scope.c  scopes and their op slots
 * The layer uses only the public API of <cancelfd.h>: it hears a trigger
 * through the token's fd, and it keeps nothing of its own in the core.
 *
 * What the layer keeps in flight on the caller's ring, and no more: while
 * a wait runs, its ops, its cancels and a poll on its token; while a scope
 * lives, a poll on its token.  It never uses IOSQE_CQE_SKIP_SUCCESS (the
 * kernel refuses IOSQE_IO_DRAIN on a ring once it has seen it) and never a
 * timeout request (a wait's deadline is its io_uring_enter() timeout), so
 * a caller's drain waits for the caller's own ops and live scopes' polls.
 */

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "cancelfd-uring.h"
#include "common.h"

/* ---- what liburing 2.3 lacks ---- */

#ifndef IORING_CQE_F_MORE
#define IORING_CQE_F_MORE (1U << 1)
#endif
#ifndef IOSQE_CQE_SKIP_SUCCESS
#define IOSQE_CQE_SKIP_SUCCESS (1U << 6)
#endif

/* ---- the process the binding belongs to ---- */

/* Advanced in a forked child (pthread_atfork), so that a binding used in
 * another process is detected with one compare, not a getpid() call. */
extern _Atomic uint32_t uring_fork_gen;

static inline uint32_t uring_fork_generation(void)
{
	return atomic_load_explicit(&uring_fork_gen, memory_order_relaxed);
}

int64_t uring_now(void);

/* ---- user_data of the library's SQEs ---- */

/*
 * tag (16 bits) | kind (4) | generation (20) | index (24).  The generation
 * makes a completion that belongs to an earlier life of an index harmless:
 * it matches nothing.  Generations continue from one binding of a ring to
 * the next (see struct uring_history), so a new binding never takes a
 * released one's completions for its own.
 */
enum ud_kind {
	UD_NOP = 1,	     /* a neutralised SQE of a refused submit */
	UD_POLL = 2,	     /* a token poll (POLL_ADD) */
	UD_POLL_REMOVE = 3,  /* its removal */
	UD_WAIT_OP = 4,	     /* an op of the running wait */
	UD_WAIT_CANCEL = 5,  /* the wait cancelling one of its ops */
	UD_SCOPE_OP = 6,     /* an op tracked by a scope */
	UD_SCOPE_CANCEL = 7, /* a scope cancelling one */
	UD_FAIL_LINK = 8,    /* fails at once, so the op linked behind it is
				cancelled without running */
};

#define UD_KIND_SHIFT 44
#define UD_GEN_SHIFT 24
#define UD_GEN_BITS 20
#define UD_IDX_BITS 24
#define UD_GEN_MASK ((1u << UD_GEN_BITS) - 1)
#define UD_IDX_MASK ((1u << UD_IDX_BITS) - 1)

_Static_assert(UD_GEN_SHIFT == UD_IDX_BITS, "generation right above index");
_Static_assert(UD_KIND_SHIFT == UD_GEN_SHIFT + UD_GEN_BITS,
	       "kind right above generation");
_Static_assert(UD_KIND_SHIFT + 4 == 48, "tag in the top 16 bits");

static inline uint64_t ud_make(unsigned kind, uint32_t gen, uint32_t idx)
{
	return ((uint64_t)CFD_URING_UDATA_TAG << 48) |
	       ((uint64_t)kind << UD_KIND_SHIFT) |
	       ((uint64_t)(gen & UD_GEN_MASK) << UD_GEN_SHIFT) |
	       (idx & UD_IDX_MASK);
}

static inline bool ud_is_own(uint64_t ud)
{
	return (ud >> 48) == CFD_URING_UDATA_TAG;
}

static inline unsigned ud_kind(uint64_t ud)
{
	return (unsigned)(ud >> UD_KIND_SHIFT) & 0xf;
}

static inline uint32_t ud_gen(uint64_t ud)
{
	return (uint32_t)(ud >> UD_GEN_SHIFT) & UD_GEN_MASK;
}

static inline uint32_t ud_idx(uint64_t ud)
{
	return (uint32_t)ud & UD_IDX_MASK;
}

/* Tag and kind at once: a scope op's CQE is the hot case. */
static inline bool ud_is_scope_op(uint64_t ud)
{
	return (ud >> UD_KIND_SHIFT) ==
	       (((uint64_t)CFD_URING_UDATA_TAG << 4) | UD_SCOPE_OP);
}

#define NIL UINT32_MAX

/* ---- token polls (uring-poll.c) ---- */

/* One poll per token and ring, shared by the waits and scopes that use
 * the token.  It lives while it has users. */
struct tpoll {
	struct cfd_token *tok;	  /* referenced; NULL when the entry is free */
	uint32_t ud_gen;	  /* the armed poll's user_data generation */
	uint32_t users;		  /* scopes + the running wait */
	uint32_t hnext;		  /* hash chain, or free list */
	struct cfd_scope *scopes; /* scopes on this token */
	uint8_t armed;		  /* a poll is in flight */
	uint8_t saw_trigger;	  /* the token was seen triggered */
	uint8_t errors;		  /* poll failures in a row */
};

int tpoll_get_slow(struct cfd_uring *cu, struct cfd_token *tok, uint32_t *idx);
void tpoll_put(struct cfd_uring *cu, uint32_t idx);
int tpoll_arm(struct cfd_uring *cu, uint32_t idx, bool may_submit);
void tpoll_mark(struct cfd_uring *cu, uint32_t idx);
void tpoll_cqe(struct cfd_uring *cu, const struct io_uring_cqe *cqe);
void tpolls_free(struct cfd_uring *cu);

/* ---- scope op slots (uring-scope.c) ---- */

/*
 * An op slot's meta word: the generation of the slot's op (as in its
 * user_data) and its state.  An orphan is an op of a released binding
 * still in flight: its slot stays taken until its completion comes, which
 * the next binding reports as the library's own.
 */
#define OPSLOT_SHIELD (1u << 0)
#define OPSLOT_CANCELLED (1u << 1) /* the scope asked to cancel it */
#define OPSLOT_OWED (1u << 2)	   /* ... but no SQE could carry it yet */
#define OPSLOT_LIVE (1u << 3)	   /* an op is in flight */
#define OPSLOT_ORPHAN (1u << 4)	   /* a released binding's op in flight */
#define OPSLOT_GEN_SHIFT 12
#define OPSLOT_STATE_MASK ((1u << OPSLOT_GEN_SHIFT) - 1)

_Static_assert(OPSLOT_GEN_SHIFT + UD_GEN_BITS == 32,
	       "an op slot's generation is its user_data generation");
_Static_assert(CFD_SCOPE_SHIELD == OPSLOT_SHIELD,
	       "cfd_scope_add() flags go into the slot as is");

/* 24 bytes: what an op in flight costs in cache is what its CQE waits on. */
struct op_slot {
	uint64_t user_data;	 /* the caller's */
	struct cfd_scope *scope; /* NULL when free or orphaned */
	uint32_t meta;		 /* generation << OPSLOT_GEN_SHIFT | OPSLOT_* */
};

/* The user_data the slot's op carries on the ring. */
static inline uint64_t opslot_ud(const struct op_slot *o, uint32_t idx)
{
	return ud_make(UD_SCOPE_OP, o->meta >> OPSLOT_GEN_SHIFT, idx);
}

/* Is ud (a UD_SCOPE_OP of this slot's index) the live op in it?  One
 * compare: ud's generation lands where meta keeps it. */
static inline bool opslot_matches(const struct op_slot *o, uint64_t ud)
{
	uint32_t want = ((uint32_t)(ud >> (UD_GEN_SHIFT - OPSLOT_GEN_SHIFT)) &
			 ~OPSLOT_STATE_MASK) |
			OPSLOT_LIVE;

	return (o->meta & ~(OPSLOT_STATE_MASK & ~OPSLOT_LIVE)) == want;
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
	uint32_t poll;	       /* token poll index, or NIL */
	/* The token poll is armed and has not seen the trigger: an op added
	 * needs nothing more (kept by tpoll_mark()). */
	bool quiet;
	/* ops in flight, | SCOPE_DETACHED once no caller holds it: it is
	 * freed with its last op (one compare on each op's CQE) */
	uint32_t pending;
	bool owed; /* some ops wait for an SQE to carry their cancel */
	struct cfd_scope *pprev, *pnext; /* on the token poll's list */
	struct cfd_scope *prev, *next;	 /* on the binding's list */
	struct scope_link *links;
};

void scope_cancel_ops(struct cfd_uring *cu, struct cfd_scope *s);
void scopes_flush_owed(struct cfd_uring *cu, bool may_submit);
void scope_destroy(struct cfd_scope *s);
int scope_op_last(struct cfd_uring *cu, struct cfd_scope *s, int kind,
		  bool submit);
int scope_op_stray(struct cfd_uring *cu, const struct io_uring_cqe *cqe);

/* ---- the running wait (uring-wait.c) ---- */

struct wait_op {
	uint32_t seq;	    /* order of its first CQE */
	uint8_t seen;	    /* a CQE arrived (its result is in results[]) */
	uint8_t done;	    /* its last CQE arrived */
	uint8_t cancelling; /* a cancel of ours is in flight */
	uint8_t asked;	    /* a cancel of ours was issued */
	uint8_t hit;	    /* a cancel of ours found it (0 or -EALREADY) */
	uint8_t missed;	    /* the last cancel found nothing (-ENOENT) */
	uint8_t chained;    /* it has IOSQE_IO_LINK / IO_HARDLINK */
	uint8_t timer;	    /* it is a LINK_TIMEOUT: it ends with its op */
	uint8_t timed_out;  /* its own LINK_TIMEOUT fired: the kernel is
			       cancelling it, the result is its own */
};

struct wait {
	uint32_t ud_gen;
	unsigned nops;
	struct wait_op *ops;
	struct cfd_op_result *results; /* the caller's, filled as CQEs come */
	unsigned inflight;	       /* ops whose last CQE has not arrived */
	unsigned cancels;	       /* cancel CQEs still to come */
	unsigned seq;
	int first, last; /* ops whose first CQE came first, and last */
	bool asked_any;	 /* some cancel was issued */
	bool has_deadline;
	int64_t deadline;
};

void wait_cqe(struct cfd_uring *cu, const struct io_uring_cqe *cqe);

/* ---- the binding (uring.c) ---- */

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
	 * (taking one is a load and a decrement).  A scope's ops are found
	 * by scanning the slots, on the rare paths that need them. */
	uint32_t nslots, nfree;
	struct op_slot *slots;
	uint32_t *free_slots;

	_Atomic uint32_t refs;
	struct io_uring *ring;
	size_t cqe_size;
	uint32_t ud_gen; /* source of user_data generations */
	/* Completions can wait in the kernel for the ring's next entry
	 * (DEFER_TASKRUN, COOP_TASKRUN): a wait lets them out before it
	 * issues a cancel of its own (see wait_settle()). */
	bool lazy_completions;

	/* token polls, hashed by token address */
	struct tpoll *polls;
	uint32_t npolls, poll_free;
	uint32_t *buckets;
	uint32_t nbuckets, hcount;
	uint32_t last_poll; /* the poll found last: rings reuse tokens */

	struct wait *wait; /* the running wait, if any */

	struct cfd_scope *scopes;

	/* CQEs of other ops reaped during a wait */
	struct backlog_entry *backlog;
	size_t bl_head, bl_len, bl_cap;

	/* scratch for the wait */
	struct wait_op *wops;
	unsigned wops_cap;
};

static inline bool cu_check(const struct cfd_uring *cu)
{
	return cu->fork_gen == uring_fork_generation();
}

static inline uint32_t cu_next_gen(struct cfd_uring *cu)
{
	return ++cu->ud_gen & UD_GEN_MASK;
}

struct io_uring_sqe *cu_get_sqe(struct cfd_uring *cu);
int cu_submit(struct cfd_uring *cu);
int cu_dispatch(struct cfd_uring *cu, const struct io_uring_cqe *cqe,
		uint64_t *user_data);
int cu_backlog_push(struct cfd_uring *cu, const struct io_uring_cqe *cqe,
		    uint64_t user_data, int kind);
int cu_reap(struct cfd_uring *cu);
int cu_reap_one(struct cfd_uring *cu, const struct io_uring_cqe *cqe);

/* The SQE at position pos of the SQ (an SQE index as in sqe_tail). */
static inline struct io_uring_sqe *cu_sqe_at(struct cfd_uring *cu, unsigned pos)
{
	struct io_uring_sq *sq = &cu->ring->sq;
	unsigned shift = (cu->ring->flags & IORING_SETUP_SQE128) ? 1 : 0;

	return &sq->sqes[(pos & sq->ring_mask) << shift];
}

/* The token poll of tok, with one more user (made if needed, not armed).
 * A ring mostly sees the same token again: that case is a compare. */
static inline int tpoll_get(struct cfd_uring *cu, struct cfd_token *tok,
			    uint32_t *idx)
{
	uint32_t last = cu->last_poll;

	if (last != NIL && cu->polls[last].tok == tok) {
		cu->polls[last].users++;
		*idx = last;
		return 0;
	}
	return tpoll_get_slow(cu, tok, idx);
}

/* Queue the poll unless it is in flight or the token has been seen
 * triggered.  may_submit: free SQ room by submitting if needed. */
static inline int tpoll_ensure_armed(struct cfd_uring *cu, uint32_t idx,
				     bool may_submit)
{
	struct tpoll *p = &cu->polls[idx];

	return (p->armed || p->saw_trigger) ? 0
					    : tpoll_arm(cu, idx, may_submit);
}

/*
 * An op CQE of the running wait (the wait's reap loop inlines it).  Until
 * the wait cancels something, every op result is its own: it goes
 * straight into the caller's array as CFD_OP_COMPLETED.  A LINK_TIMEOUT
 * that fired (-ETIME) marks the op it covers: the kernel is cancelling
 * that op, which is the op's own result and no cancel of the wait's.
 */
static inline void wait_op_cqe(struct wait *wt, uint32_t i,
			       const struct io_uring_cqe *cqe)
{
	struct wait_op *o = &wt->ops[i];

	if (o->done)
		return;
	if (!o->seen) {
		struct cfd_op_result *r = &wt->results[i];

		o->seen = 1;
		o->seq = wt->seq++;
		r->res = cqe->res;
		r->flags = cqe->flags;
		r->state = CFD_OP_COMPLETED;
		if (wt->first < 0)
			wt->first = (int)i;
		wt->last = (int)i;
		if (o->timer && cqe->res == -ETIME)
			wt->ops[i - 1].timed_out = 1;
	}
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		o->done = 1;
		wt->inflight--;
	}
}

/* ---- the hot path of a scope op's CQE (inline: one per op) ---- */

static inline void opslot_free(struct cfd_uring *cu, uint32_t idx)
{
	struct op_slot *o = &cu->slots[idx];

	o->meta &= ~OPSLOT_STATE_MASK; /* the generation stays */
	o->scope = NULL;
	cu->free_slots[cu->nfree++] = idx;
}

/*
 * A scope op's CQE: CFD_CQE_OP or CFD_CQE_OP_CANCELLED with the caller's
 * user_data, or CFD_CQE_OWN for a CQE of no op in flight (an orphan's).
 * The last op of a scope nobody holds frees the scope, and with submit,
 * submits what that queues.  Written so that cfd_uring_cqe()'s fast path
 * makes no call but a tail call: no registers to save on the way in.
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
	if (!opslot_matches(o, ud))
		return scope_op_stray(cu, cqe);
	*user_data = o->user_data;
	/* -ECANCELED or -EINTR is the scope's doing only if the scope asked;
	 * otherwise something else cancelled the op, and that is its own
	 * result (a link predecessor failed, an outside ASYNC_CANCEL). */
	if ((o->meta & OPSLOT_CANCELLED) &&
	    (cqe->res == -ECANCELED || cqe->res == -EINTR))
		kind = CFD_CQE_OP_CANCELLED;
	if (cqe->flags & IORING_CQE_F_MORE)
		return kind; /* a multishot op goes on */
	s = o->scope;
	opslot_free(cu, idx);
	if (--s->pending != SCOPE_DETACHED)
		return kind;
	return scope_op_last(cu, s, kind, submit);
}

#endif
