/* SPDX-License-Identifier: MIT */
/*
 * Callbacks run once when a token triggers, in the triggering thread, after
 * the whole fan-out is done and with no lock of the library held.
 *
 * A registration moves LISTED -> QUEUED (taken off the token by the
 * fan-out, under the token's lock) -> RUNNING -> DONE, or QUEUED ->
 * CANCELLED when it is freed before its turn.  cfd_registration_free()
 * waits for a callback running in another thread, by sleeping on the state
 * word; the runner makes a futex call only when someone sleeps there, so a
 * trigger costs no system call per callback.
 */
#define _GNU_SOURCE
#include <stdlib.h>

#include "internal.h"

enum {
	REG_LISTED = 0,
	REG_QUEUED = 1,
	REG_RUNNING = 2,
	REG_DONE = 3,
	REG_CANCELLED = 4,
};
#define REG_STATE_MASK 7u
#define REG_WAITER (1u << 3)   /* a thread sleeps until DONE */
#define REG_FREE_REQ (1u << 4) /* freed from inside its own callback */

/* Any address unique to the thread will do to recognise it. */
static _Thread_local char thread_marker;

static struct cfd_token *reg_token(const struct cfd_registration *reg)
{
	return listener_owner(&reg->node);
}

void listener_insert(struct cfd_token *t, struct listener *n)
{
	struct listener *head =
	    atomic_load_explicit(&t->listeners, memory_order_relaxed);

	atomic_store_explicit(&n->next, head, memory_order_relaxed);
	atomic_store_explicit(&n->pprev, &t->listeners, memory_order_relaxed);
	if (head)
		atomic_store_explicit(&head->pprev, &n->next,
				      memory_order_relaxed);
	atomic_store_explicit(&t->listeners, n, memory_order_release);
}

void listener_unlink(struct listener *n)
{
	struct listener *next =
	    atomic_load_explicit(&n->next, memory_order_relaxed);
	struct listener *_Atomic *pprev =
	    atomic_load_explicit(&n->pprev, memory_order_relaxed);

	atomic_store_explicit(pprev, next, memory_order_relaxed);
	if (next)
		atomic_store_explicit(&next->pprev, pprev,
				      memory_order_relaxed);
	atomic_store_explicit(&n->pprev, NULL, memory_order_relaxed);
}

/* The end of a registration: drop what it holds, free what is ours. */
static void registration_destroy(struct cfd_registration *reg)
{
	struct cfd_token *t = reg_token(reg);
	bool ref = (reg->flags & REG_HOLDS_REF) || reg->queue_ref;

	if (reg->flags & REG_INTERNAL) {
		reg->queue_ref = false;
		if (ref)
			cfd_token_unref(t);
		if (reg->on_done)
			reg->on_done(reg);
		return;
	}
	free(reg);
	if (ref)
		cfd_token_unref(t);
}

void registration_queue(struct fanout *f, struct cfd_registration *reg)
{
	listener_unlink(&reg->node);
	if (!(reg->flags & REG_HOLDS_REF)) {
		/* The walker holds the token, so it is alive to count. */
		cfd_token_ref(reg_token(reg));
		reg->queue_ref = true;
	}
	reg->run_next = NULL;
	atomic_store_explicit(&reg->state, REG_QUEUED, memory_order_release);
	*f->run_tail = reg;
	f->run_tail = &reg->run_next;
}

void callbacks_run(struct cfd_registration *list)
{
	struct cfd_registration *reg, *next;

	for (reg = list; reg; reg = next) {
		uint32_t expected = REG_QUEUED, old;
		bool ours;

		next = reg->run_next;
		atomic_store_explicit(&reg->running_in, &thread_marker,
				      memory_order_relaxed);
		if (!atomic_compare_exchange_strong_explicit(
			&reg->state, &expected, REG_RUNNING,
			memory_order_acq_rel, memory_order_acquire)) {
			registration_destroy(reg); /* freed before its turn */
			continue;
		}
		/* Read before DONE is published: from then on a handle's
		 * owner may free the registration. */
		ours = reg->flags & (REG_FLOATING | REG_INTERNAL);
		reg->fn(reg_token(reg), reg->userdata);
		old = atomic_exchange_explicit(&reg->state, REG_DONE,
					       memory_order_acq_rel);
		if (old & REG_WAITER)
			cfd_futex_wake_all(&reg->state); /* the waiter frees */
		else if ((old & REG_FREE_REQ) || ours)
			registration_destroy(reg);
	}
}

/* The token is being freed with this registration still on it. */
void registration_release_listed(struct cfd_registration *reg)
{
	if (reg->flags & REG_INTERNAL) {
		/* Off the list for good: a later registration_remove() must
		 * not look for the token, which is being freed. */
		atomic_store_explicit(&reg->state, REG_DONE,
				      memory_order_relaxed);
		if (reg->on_release)
			reg->on_release(reg);
		return;
	}
	free(reg); /* floating: it never ran and never will */
}

int listener_add(struct cfd_token *t, struct listener *n, uint64_t add)
{
	uint64_t w;

	token_lock_add(t, add);
	if (token_state(t) & ST_TRIGGERED) {
		token_unlock(t);
		return 1;
	}
	listener_insert(t, n);
	/*
	 * Unlock only if t has not triggered: a trigger that came while we
	 * held the lock has not walked the list (its walk needs the lock), so
	 * n is taken back, untouched by it, and the caller handles t as
	 * triggered.  Deciding in the unlock's own compare-and-swap leaves no
	 * moment in which the walk could take n (and run and free it) before
	 * we look.  A trigger after the unlock reads the word it released and
	 * sees n.
	 */
	w = atomic_load_explicit(&t->word, memory_order_relaxed);
	do {
		if (w & ST_TRIGGERED) {
			listener_unlink(n);
			token_unlock(t);
			return 1;
		}
	} while (!atomic_compare_exchange_weak_explicit(
	    &t->word, &w, w & ~(uint64_t)(ST_LOCKED | ST_LOCK_WAITERS),
	    memory_order_release, memory_order_relaxed));
	if (w & ST_LOCK_WAITERS)
		token_wake_lock_waiter(t);
	return 0;
}

static void registration_init(struct cfd_registration *reg, struct cfd_token *t,
			      enum reg_kind kind, cfd_callback_fn fn,
			      void *userdata, uint16_t flags)
{
	reg->node.owner = (uintptr_t)t | LISTENER_REG;
	atomic_init(&reg->node.next, NULL);
	atomic_init(&reg->node.pprev, NULL);
	reg->fn = fn;
	reg->userdata = userdata;
	atomic_init(&reg->state, REG_LISTED);
	reg->flags = flags;
	reg->kind = (uint8_t)kind;
	reg->queue_ref = false;
	atomic_init(&reg->running_in, NULL);
	reg->run_next = NULL;
}

CFD_EXPORT int cfd_token_on_trigger(struct cfd_registration **ret,
				    struct cfd_token *tok, cfd_callback_fn fn,
				    void *userdata, unsigned flags)
{
	struct cfd_registration *reg;
	int r;

	if (!tok || !fn || (flags & ~CFD_CALLBACK_NO_INLINE))
		return -EINVAL;
	r = token_check_process(tok);
	if (r < 0)
		return r;
	if (!(token_state(tok) & ST_TRIGGERED)) {
		reg = calloc(1, sizeof(*reg));
		if (!reg)
			return -ENOMEM;
		registration_init(reg, tok, REG_CALLBACK, fn, userdata,
				  ret ? REG_HOLDS_REF : REG_FLOATING);
		if (ret)
			cfd_token_ref(tok);
		if (listener_add(tok, &reg->node, 0) == 0) {
			if (ret)
				*ret = reg;
			return 0;
		}
		registration_destroy(reg);
	}
	if (flags & CFD_CALLBACK_NO_INLINE)
		return -ECANCELED;
	if (ret)
		*ret = NULL;
	fn(tok, userdata);
	return 1;
}

/* What registration_stop() found; who destroys the registration. */
enum stop_result {
	STOP_UNLISTED, /* taken off its token: never ran; caller destroys */
	STOP_WAITED,   /* ran in another thread, waited for: caller destroys */
	STOP_DONE,     /* ran already: caller destroys a user registration;
			  the runner destroyed an internal or floating one */
	STOP_DEFERRED, /* queued or running in this thread: runner destroys */
};

/*
 * Make sure reg is off its token and its callback is not running and will
 * not run (unless it is running in this very thread, below us).
 */
static enum stop_result registration_stop(struct cfd_registration *reg)
{
	struct cfd_token *t = reg_token(reg);
	uint32_t s = atomic_load_explicit(&reg->state, memory_order_acquire);

	if (s == REG_LISTED) {
		token_lock(t);
		s = atomic_load_explicit(&reg->state, memory_order_acquire);
		if (s == REG_LISTED)
			listener_unlink(&reg->node);
		token_unlock(t);
		if (s == REG_LISTED)
			return STOP_UNLISTED;
	}
	for (;;) {
		switch (s & REG_STATE_MASK) {
		case REG_QUEUED:
			if (atomic_compare_exchange_weak_explicit(
				&reg->state, &s, REG_CANCELLED,
				memory_order_acq_rel, memory_order_acquire))
				return STOP_DEFERRED;
			continue;
		case REG_RUNNING:
			if (atomic_load_explicit(&reg->running_in,
						 memory_order_relaxed) ==
			    &thread_marker) {
				/* From inside the callback: do not wait for
				 * ourselves; the runner frees it on return. */
				if (atomic_compare_exchange_weak_explicit(
					&reg->state, &s, s | REG_FREE_REQ,
					memory_order_acq_rel,
					memory_order_acquire))
					return STOP_DEFERRED;
				continue;
			}
			if (!(s & REG_WAITER) &&
			    !atomic_compare_exchange_weak_explicit(
				&reg->state, &s, s | REG_WAITER,
				memory_order_acq_rel, memory_order_acquire))
				continue;
			do {
				cfd_futex(&reg->state, FUTEX_WAIT_PRIVATE,
					  s | REG_WAITER, NULL, 0);
				s = atomic_load_explicit(&reg->state,
							 memory_order_acquire);
			} while ((s & REG_STATE_MASK) == REG_RUNNING);
			return STOP_WAITED;
		default:
			return STOP_DONE;
		}
	}
}

CFD_EXPORT struct cfd_registration *
cfd_registration_free(struct cfd_registration *reg)
{
	enum stop_result r;

	if (!reg || (reg->flags & REG_INTERNAL))
		return NULL;
	if (token_check_process(reg_token(reg)) < 0)
		return NULL;
	r = registration_stop(reg);
	if (r != STOP_DEFERRED)
		registration_destroy(reg);
	return NULL;
}

/* ---- internal registrations (sources, export) ---- */

int registration_add(struct cfd_registration *reg, struct cfd_token *t,
		     enum reg_kind kind, cfd_callback_fn fn, void *userdata)
{
	registration_init(reg, t, kind, fn, userdata, REG_INTERNAL);
	return listener_add(t, &reg->node, 0) == 1;
}

struct cfd_registration *registration_find_locked(struct cfd_token *t,
						  enum reg_kind kind)
{
	for (struct listener *n =
		 atomic_load_explicit(&t->listeners, memory_order_relaxed);
	     n; n = atomic_load_explicit(&n->next, memory_order_relaxed)) {
		struct cfd_registration *reg =
		    container_of(n, struct cfd_registration, node);

		if (listener_kind(n) == LISTENER_REG && reg->kind == kind &&
		    (reg->flags & REG_INTERNAL))
			return reg;
	}
	return NULL;
}

void registration_remove(struct cfd_registration *reg)
{
	enum stop_result r = registration_stop(reg);

	/* An internal registration that ran was destroyed by its runner. */
	if (r == STOP_UNLISTED || r == STOP_WAITED)
		registration_destroy(reg);
}
