/* SPDX-License-Identifier: MIT */
/*
 * Scopes: a token bound to a ring.  An op added to a scope is tracked in a
 * slot of the binding's table (its SQE carries the slot's user_data, the
 * caller's own value is kept in the slot); when the token's poll sees the
 * token triggered, every unshielded op still pending gets an ASYNC_CANCEL.
 * Each op reaches the caller's loop once, through cfd_uring_cqe(), with the
 * caller's user_data: CFD_CQE_OP_CANCELLED when it ended -ECANCELED or
 * -EINTR after its scope asked to cancel it, CFD_CQE_OP otherwise (its own
 * result, a real error included, is never turned into a cancel).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "uring-internal.h"

/* ---- op slots ---- */

/* A new slot at the end of the table, growing it (and the stack of free
 * slots, which never holds more) in powers of two. */
static uint32_t opslot_grow(struct cfd_uring *cu)
{
	if ((cu->nslots & (cu->nslots - 1)) == 0) {
		uint32_t cap = cu->nslots ? cu->nslots * 2 : 64;
		struct op_slot *n;
		uint32_t *f;

		if (cap > UD_IDX_MASK + 1u)
			return NIL;
		f = realloc(cu->free_slots, cap * sizeof(*f));
		if (!f)
			return NIL;
		cu->free_slots = f;
		n = realloc(cu->slots, cap * sizeof(*n));
		if (!n)
			return NIL;
		cu->slots = n;
	}
	cu->slots[cu->nslots].meta = 0;
	cu->slots[cu->nslots].scope = NULL;
	return cu->nslots++;
}

/*
 * A UD_SCOPE_OP completion that matches no live op: an orphan's (an op of
 * a released binding, see struct uring_history), whose last completion
 * frees its slot, or a stray.  Either way the library's own.
 */
int scope_op_stray(struct cfd_uring *cu, const struct io_uring_cqe *cqe)
{
	uint32_t idx = ud_idx(cqe->user_data);
	struct op_slot *o = &cu->slots[idx];
	uint32_t gen = ud_gen(cqe->user_data);

	if ((o->meta & OPSLOT_ORPHAN) && (o->meta >> OPSLOT_GEN_SHIFT) == gen &&
	    !(cqe->flags & IORING_CQE_F_MORE))
		opslot_free(cu, idx);
	return CFD_CQE_OWN;
}

/*
 * The SQE's flags, read as the 32-bit word that holds them (opcode, flags,
 * ioprio): the caller has just written that word, often with one store,
 * and a narrower load at another offset can miss store-to-load forwarding
 * and wait for the store to retire (measured: 0.7% of a bare read's
 * throughput per op).
 */
static inline uint8_t sqe_flags(const struct io_uring_sqe *sqe)
{
	uint32_t head;

	memcpy(&head, sqe, sizeof(head));
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (uint8_t)(head >> 8);
#else
	return (uint8_t)(head >> 16);
#endif
}

/* ---- cancelling ---- */

/* The last SQE queued and not yet submitted links to the next one: an SQE
 * of ours placed now would join the caller's chain. */
static bool sq_tail_chained(struct cfd_uring *cu)
{
	const struct io_uring_sq *sq = &cu->ring->sq;

	if (sq->sqe_tail == sq->sqe_head)
		return false;
	return cu_sqe_at(cu, sq->sqe_tail - 1)->flags &
	       (IOSQE_IO_LINK | IOSQE_IO_HARDLINK);
}

/*
 * Queue an ASYNC_CANCEL for op slot idx.  A cancel that finds nothing
 * (-ENOENT: the op completed) posts a CQE the dispatcher ignores.  The
 * slot's generation in the target keeps a late cancel from hitting a
 * later op in the same slot.
 */
static bool queue_cancel(struct cfd_uring *cu, uint32_t idx, bool may_submit)
{
	struct op_slot *o = &cu->slots[idx];
	struct io_uring_sqe *sqe;

	if (sq_tail_chained(cu))
		return false;
	sqe = may_submit ? cu_get_sqe(cu) : io_uring_get_sqe(cu->ring);
	if (!sqe)
		return false;
	io_uring_prep_cancel64(sqe, opslot_ud(o, idx), 0);
	sqe->user_data =
	    ud_make(UD_SCOPE_CANCEL, o->meta >> OPSLOT_GEN_SHIFT, idx);
	cu->dirty = true;
	return true;
}

/* Cancel every unshielded op of s not yet asked to, and those owed. */
void scope_cancel_ops(struct cfd_uring *cu, struct cfd_scope *s)
{
	s->owed = false;
	for (uint32_t i = 0; i < cu->nslots; i++) {
		struct op_slot *o = &cu->slots[i];

		if (o->scope != s || (o->meta & OPSLOT_SHIELD))
			continue;
		if ((o->meta & OPSLOT_CANCELLED) && !(o->meta & OPSLOT_OWED))
			continue;
		o->meta |= OPSLOT_CANCELLED;
		if (queue_cancel(cu, i, true)) {
			o->meta &= ~OPSLOT_OWED;
		} else {
			o->meta |= OPSLOT_OWED;
			s->owed = cu->owed = true;
		}
	}
}

/* Issue the cancels that found no free SQE (or no safe place) earlier. */
void scopes_flush_owed(struct cfd_uring *cu, bool may_submit)
{
	bool still = false;

	for (struct cfd_scope *s = cu->scopes; s; s = s->next)
		s->owed = false;
	for (uint32_t i = 0; i < cu->nslots; i++) {
		struct op_slot *o = &cu->slots[i];

		if (!(o->meta & OPSLOT_OWED)) /* a free slot has none */
			continue;
		if (queue_cancel(cu, i, may_submit)) {
			o->meta &= ~OPSLOT_OWED;
		} else {
			o->scope->owed = true;
			still = true;
		}
	}
	cu->owed = still;
}

/*
 * An op added to a scope whose token has triggered never runs: it is moved
 * one SQE later, and in its place goes an ASYNC_CANCEL that finds nothing
 * and so fails, linked to it: the op completes -ECANCELED without being
 * issued, and a chain it belongs to is cut as a cancel would cut it, with
 * no later SQE or library call needed.  Possible when the op is the last
 * SQE queued and the SQ has room; false otherwise.
 */
static bool cancel_before_issue(struct cfd_uring *cu, struct io_uring_sqe *sqe)
{
	struct io_uring_sq *sq = &cu->ring->sq;
	struct io_uring_sqe *moved;
	size_t size = (cu->ring->flags & IORING_SETUP_SQE128) ? 128 : 64;

	if (sq->sqe_tail == sq->sqe_head ||
	    cu_sqe_at(cu, sq->sqe_tail - 1) != sqe)
		return false;
	moved = io_uring_get_sqe(cu->ring);
	if (!moved)
		return false;
	memcpy(moved, sqe, size);
	/* a target no request ever carries */
	io_uring_prep_cancel64(sqe, ud_make(UD_FAIL_LINK, 0, 1), 0);
	sqe->flags = IOSQE_IO_LINK;
	sqe->user_data = ud_make(UD_FAIL_LINK, 0, 0);
	return true;
}

/* ---- life cycle ---- */

static void poll_unlink_scope(struct cfd_uring *cu, struct cfd_scope *s)
{
	struct tpoll *p = &cu->polls[s->poll];

	if (s->pprev)
		s->pprev->pnext = s->pnext;
	else
		p->scopes = s->pnext;
	if (s->pnext)
		s->pnext->pprev = s->pprev;
	tpoll_put(cu, s->poll);
	s->poll = NIL;
	s->quiet = false;
}

static void links_free(struct cfd_scope *s)
{
	struct scope_link *l, *next;

	for (l = s->links; l; l = next) {
		next = l->next;
		cfd_registration_free(l->reg);
		cfd_token_unref(l->target);
		free(l);
	}
	s->links = NULL;
}

/*
 * Free a scope that nobody references and whose ops are all reaped, or
 * whose binding goes away (its ops are then orphans, marked already).
 */
void scope_destroy(struct cfd_scope *s)
{
	struct cfd_uring *cu = s->cu;

	for (uint32_t i = 0; i < cu->nslots; i++)
		if (cu->slots[i].scope == s)
			opslot_free(cu, i);
	if (s->poll != NIL)
		poll_unlink_scope(cu, s);
	if (s->prev)
		s->prev->next = s->next;
	else
		cu->scopes = s->next;
	if (s->next)
		s->next->prev = s->prev;
	links_free(s);
	cfd_token_unref(s->tok);
	free(s);
}

/* The last op of a detached scope is in: free the scope (out of line,
 * see scope_op_cqe()); submit: tell the kernel what that queued. */
__attribute__((noinline)) int
scope_op_last(struct cfd_uring *cu, struct cfd_scope *s, int kind, bool submit)
{
	scope_destroy(s);
	if (submit && cu->dirty)
		cu_submit(cu);
	return kind;
}

CFD_EXPORT int cfd_scope_new(struct cfd_scope **ret, struct cfd_uring *cu,
			     struct cfd_token *tok)
{
	struct cfd_scope *s;
	int r;

	if (!ret || !cu)
		return -EINVAL;
	if (!cu_check(cu))
		return -ECHILD;
	if (tok) {
		r = cfd_token_check(tok);
		if (r < 0 && r != -ECANCELED)
			return r;
		cfd_token_ref(tok);
	} else {
		r = cfd_token_new(&tok, "scope");
		if (r < 0)
			return r;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		cfd_token_unref(tok);
		return -ENOMEM;
	}
	atomic_init(&s->refs, 1);
	s->cu = cu;
	s->tok = tok;
	s->poll = NIL;
	/* A token that already triggered needs no poll: its ops are
	 * cancelled as they are added. */
	if (!cfd_token_triggered(tok)) {
		struct tpoll *p;

		r = tpoll_get(cu, tok, &s->poll);
		if (r == 0)
			r = tpoll_ensure_armed(cu, s->poll, true);
		if (r < 0) {
			if (s->poll != NIL)
				tpoll_put(cu, s->poll);
			cfd_token_unref(tok);
			free(s);
			return r;
		}
		p = &cu->polls[s->poll];
		s->pnext = p->scopes;
		if (s->pnext)
			s->pnext->pprev = s;
		p->scopes = s;
		s->quiet = p->armed && !p->saw_trigger;
	}
	s->next = cu->scopes;
	if (s->next)
		s->next->prev = s;
	cu->scopes = s;
	cfd_uring_ref(cu);
	*ret = s;
	return 0;
}

CFD_EXPORT struct cfd_scope *cfd_scope_ref(struct cfd_scope *scope)
{
	if (scope)
		atomic_fetch_add_explicit(&scope->refs, 1,
					  memory_order_relaxed);
	return scope;
}

/*
 * The last reference: a scope with ops in flight lives on, detached, until
 * they are reaped (its token still cancels them); the binding frees it if
 * it goes first.
 */
CFD_EXPORT struct cfd_scope *cfd_scope_unref(struct cfd_scope *scope)
{
	struct cfd_uring *cu;

	if (!scope)
		return NULL;
	cu = scope->cu;
	if (!cu_check(cu))
		return NULL;
	if (atomic_fetch_sub_explicit(&scope->refs, 1, memory_order_acq_rel) !=
	    1)
		return NULL;
	links_free(scope);
	if (scope->pending) {
		scope->pending |= SCOPE_DETACHED;
	} else {
		scope_destroy(scope);
		/* a poll removed by the scope's going: tell the kernel */
		if (cu->dirty)
			cu_submit(cu);
	}
	cfd_uring_unref(cu);
	return NULL;
}

CFD_EXPORT void cfd_scope_unrefp(struct cfd_scope **scopep)
{
	if (scopep)
		*scopep = cfd_scope_unref(*scopep);
}

CFD_EXPORT struct cfd_token *cfd_scope_token(struct cfd_scope *scope)
{
	return scope ? scope->tok : NULL;
}

/* What cfd_scope_add() rarely has to do, out of its way (and out of
 * line, so that the common path is a leaf): a scope whose token has
 * triggered, or a poll whose re-arm found no SQE. */
static __attribute__((noinline)) int scope_add_rare(struct cfd_uring *cu,
						    struct cfd_scope *scope,
						    struct op_slot *o,
						    struct io_uring_sqe *sqe)
{
	if (!(o->meta & OPSLOT_SHIELD) && cfd_token_triggered(scope->tok)) {
		o->meta |= OPSLOT_CANCELLED;
		if (cancel_before_issue(cu, sqe))
			return 0;
		/* Not the last SQE, or no room: submitted and cancelled
		 * after, so that it too arrives once, as CFD_CQE_OP_CANCELLED
		 * (or with its own result if it completed at once). */
		o->meta |= OPSLOT_OWED;
		scope->owed = cu->owed = true;
		scopes_flush_owed(cu, false);
	} else if (scope->poll != NIL && !cu->polls[scope->poll].armed) {
		tpoll_ensure_armed(cu, scope->poll, false);
	}
	return 0;
}

/* Track the op of sqe in slot idx (taken off the free list). */
static inline int scope_add_at(struct cfd_uring *cu, struct cfd_scope *scope,
			       struct io_uring_sqe *sqe, unsigned flags,
			       uint32_t idx)
{
	struct op_slot *o = &cu->slots[idx];
	/* the next generation (it wraps around in the top bits); flags is 0
	 * or CFD_SCOPE_SHIELD, which is OPSLOT_SHIELD */
	uint32_t gen =
	    (o->meta + (1u << OPSLOT_GEN_SHIFT)) & ~OPSLOT_STATE_MASK;

	o->user_data = sqe->user_data;
	o->scope = scope;
	o->meta = gen | OPSLOT_LIVE | flags;
	/* ud_make(UD_SCOPE_OP, generation, idx), the generation moved from
	 * meta's place to user_data's in one shift */
	sqe->user_data = ud_make(UD_SCOPE_OP, 0, idx) |
			 ((uint64_t)gen << (UD_GEN_SHIFT - OPSLOT_GEN_SHIFT));
	scope->pending++;
	/* Never submit here: the caller may hold SQEs it has not prepared
	 * yet.  A quiet scope (its poll armed, no trigger seen) needs
	 * nothing more: a trigger from now on completes the poll, and the
	 * cancels follow.  Anything else is rare. */
	if (!scope->quiet)
		return scope_add_rare(cu, scope, o, sqe);
	return 0;
}

/* No free slot: grow the table (out of line, like scope_add_rare()). */
static __attribute__((noinline)) int scope_add_grow(struct cfd_uring *cu,
						    struct cfd_scope *scope,
						    struct io_uring_sqe *sqe,
						    unsigned flags)
{
	uint32_t idx = opslot_grow(cu);

	if (idx == NIL)
		return -ENOMEM;
	return scope_add_at(cu, scope, sqe, flags, idx);
}

CFD_EXPORT int cfd_scope_add(struct cfd_scope *scope, struct io_uring_sqe *sqe,
			     unsigned flags)
{
	struct cfd_uring *cu;
	uint32_t idx;

	if (!scope)
		return -EINVAL;
	if (!sqe)
		return -EINVAL;
	if (flags & ~CFD_SCOPE_SHIELD)
		return -EINVAL;
	cu = scope->cu;
	if (!cu_check(cu))
		return -ECHILD;
	/* A skipped success CQE would leave the op pending forever; a tagged
	 * user_data is the library's (or this SQE was added already). */
	if ((sqe_flags(sqe) & IOSQE_CQE_SKIP_SUCCESS) ||
	    ud_is_own(sqe->user_data))
		return -EINVAL;
	if (!cu->nfree)
		return scope_add_grow(cu, scope, sqe, flags);
	idx = cu->free_slots[--cu->nfree];
	return scope_add_at(cu, scope, sqe, flags, idx);
}

CFD_EXPORT int cfd_scope_cancel(struct cfd_scope *scope)
{
	if (!scope)
		return -EINVAL;
	return cfd_token_trigger(scope->tok);
}

static void link_fire(struct cfd_token *tok, void *userdata)
{
	struct scope_link *l = userdata;

	/* The outer scope's token takes the inner cascade's cause.
	 * Idempotent: cancelling the outer scope twice is harmless. */
	cfd_token_trigger_from(l->target, tok);
}

CFD_EXPORT int cfd_scope_link(struct cfd_scope *inner, struct cfd_scope *outer)
{
	struct scope_link *l;
	int r;

	if (!inner || !outer || inner == outer)
		return -EINVAL;
	if (!cu_check(inner->cu) || !cu_check(outer->cu))
		return -ECHILD;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->target = cfd_token_ref(outer->tok);
	r = cfd_token_on_trigger(&l->reg, inner->tok, link_fire, l, 0);
	if (r < 0 || !l->reg) {
		/* failed, or inner had triggered and outer is triggered now */
		cfd_token_unref(l->target);
		free(l);
		return r < 0 ? r : 0;
	}
	l->next = inner->links;
	inner->links = l;
	return 0;
}

CFD_EXPORT int cfd_scope_pending(struct cfd_scope *scope)
{
	if (!scope)
		return -EINVAL;
	if (!cu_check(scope->cu))
		return -ECHILD;
	return (int)(scope->pending & ~SCOPE_DETACHED);
}
