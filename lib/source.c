/* SPDX-License-Identifier: MIT */
/*
 * What every source has: its life cycle, its registration on its token,
 * and the fire protocol.  The kinds are in source-*.c.
 *
 * A source lives in a watcher ("attached") and on its token, through an
 * internal registration.  It leaves the watcher, releasing what its kind
 * holds, at the first of: it fires (its token triggers, which runs the
 * registration), it is freed, its token is freed.  References: one for the
 * caller's handle (if asked for), one while attached, one while the
 * registration is on the token or about to run, one during a fire.
 *
 * The fire protocol: the engine offers an event under the watcher's lock;
 * source_ready() pins the token and marks the fire in progress (FIRING),
 * still under the lock, so that a cfd_source_free() that detaches after it
 * waits for the fire; source_fire() runs the kind's fire outside the lock
 * and clears FIRING.
 */
#define _GNU_SOURCE
#include <stdlib.h>

#include "source.h"

static struct cfd_source *source_ref(struct cfd_source *src)
{
	atomic_fetch_add_explicit(&src->refs, 1, memory_order_relaxed);
	return src;
}

static void source_unref(struct cfd_source *src)
{
	if (atomic_fetch_sub_explicit(&src->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (src->kind->release)
		src->kind->release(src);
	cfd_watcher_unref(src->w);
	free(src);
}

/* Leave the watcher; drops the attachment's reference.  Idempotent. */
static void source_detach(struct cfd_source *src)
{
	bool was;

	watcher_lock(src->w);
	was = src->attached;
	if (was) {
		src->attached = false;
		src->tok = NULL;
		src->kind->detach(src);
	}
	watcher_unlock(src->w);
	if (was)
		source_unref(src);
}

/* ---- the registration on the token ---- */

static void source_token_triggered(struct cfd_token *tok, void *userdata)
{
	(void)tok;
	source_detach(userdata);
}

static void source_token_released(struct cfd_registration *reg)
{
	struct cfd_source *src = container_of(reg, struct cfd_source, reg);

	source_detach(src);
	source_unref(src); /* the registration's */
}

static void source_registration_done(struct cfd_registration *reg)
{
	source_unref(container_of(reg, struct cfd_source, reg));
}

/* ---- firing, and waiting for a fire in progress ---- */

static bool source_ready(struct wentry *e, unsigned info)
{
	struct cfd_source *src = container_of(e, struct cfd_source, entry);

	if (!src->attached || !src->tok ||
	    (token_state(src->tok) & ST_TRIGGERED))
		return false;
	if (src->kind->ready && !src->kind->ready(src, info))
		return false;
	/* A token being freed (count zero) is left to its release. */
	if (!token_try_ref(src->tok))
		return false;
	source_ref(src);
	src->fire_tok = src->tok;
	atomic_store(&src->firing_in, watcher_thread_id());
	atomic_store(&src->firing, FIRING);
	return true;
}

static void fire_done(struct cfd_source *src)
{
	if (atomic_exchange(&src->firing, 0) & FIRING_WAITER)
		cfd_futex_wake_all(&src->firing);
}

/* The fire ends when the kind's fire (a trigger, with its callbacks) has
 * returned. */
static void source_fire(struct wentry *e, unsigned info)
{
	struct cfd_source *src = container_of(e, struct cfd_source, entry);
	struct cfd_token *tok = src->fire_tok;
	bool attached;

	/* Freed since it was offered, by a callback of an earlier fire of
	 * this same dispatch (another thread's free waits for us instead). */
	watcher_lock(src->w);
	attached = src->attached;
	watcher_unlock(src->w);
	if (attached)
		src->kind->fire(src, tok, info);
	fire_done(src);
	cfd_token_unref(tok);
	source_unref(src);
}

const struct wentry_ops source_entry_ops = {
	.ready = source_ready,
	.fire = source_fire,
};

/* After detaching: return once no fire of src is in progress, unless it is
 * this thread's (freed from a callback or predicate of that fire). */
static void source_wait_idle(struct cfd_source *src)
{
	uint32_t c;

	if (atomic_load(&src->firing_in) == watcher_thread_id())
		return;
	while ((c = atomic_load(&src->firing)) != 0) {
		if (!(c & FIRING_WAITER) &&
		    !atomic_compare_exchange_weak(&src->firing, &c,
						  c | FIRING_WAITER))
			continue;
		cfd_futex(&src->firing, FUTEX_WAIT_PRIVATE, c | FIRING_WAITER,
			  NULL, 0);
	}
}

/* ---- adding ---- */

int source_check_token(struct cfd_token *tok, struct cfd_source **ret)
{
	int r = token_validate(tok);

	if (r < 0)
		return r;
	if (token_state(tok) & ST_TRIGGERED) {
		/* Nothing to watch, nothing opened. */
		if (ret)
			*ret = NULL;
		return 1;
	}
	return 0;
}

int source_add(struct cfd_source **ret, struct cfd_token *tok,
	       struct cfd_watcher *w, const struct cfd_source *proto)
{
	struct cfd_source *src;
	int r;

	r = watcher_resolve(&w);
	if (r < 0)
		goto fail;
	src = malloc(sizeof(*src));
	if (!src) {
		cfd_watcher_unref(w);
		r = -ENOMEM;
		goto fail;
	}
	*src = *proto;
	atomic_init(&src->refs, 1); /* the handle, or this function's */
	atomic_init(&src->firing, 0);
	atomic_init(&src->firing_in, NULL);
	src->w = w;
	src->tok = tok;
	src->attached = false;

	/* Attach first, register on the token second: a trigger in
	 * between is seen by the registration, which then detaches. */
	watcher_lock(w);
	r = src->kind->attach(src);
	if (r == 0)
		src->attached = true;
	watcher_unlock(w);
	if (r < 0) {
		source_unref(src); /* releases the kind's resources */
		return r;
	}
	source_ref(src); /* the attachment's */
	source_ref(src); /* the registration's */
	src->reg.on_release = source_token_released;
	src->reg.on_done = source_registration_done;
	if (registration_add(&src->reg, tok, REG_SOURCE, source_token_triggered,
			     src)) {
		/* The token triggered meanwhile: no source needed.  It was
		 * attached for a moment, so a fire may be under way: the
		 * caller gets no handle to wait with, so wait here (a
		 * predicate must be done with its userdata on return). */
		source_detach(src);
		source_wait_idle(src);
		source_unref(src); /* the registration's */
		source_unref(src);
		if (ret)
			*ret = NULL;
		return 0;
	}
	if (ret)
		*ret = src;
	else
		source_unref(src); /* floating: owned by token and watcher */
	return 0;
fail:
	if (proto->kind->release) {
		struct cfd_source tmp = *proto;

		proto->kind->release(&tmp);
	}
	return r;
}

/* ---- freeing ---- */

/*
 * Free a source at any time, from any thread: before or after it fired,
 * before, after or while its token is freed.  The source's registration
 * is taken off the token only with the token pinned (see tok in
 * source.h); a token found dying is left to finish its release, which
 * ends the registration itself.
 */
CFD_EXPORT struct cfd_source *cfd_source_free(struct cfd_source *src)
{
	struct cfd_token *tok;

	if (!src || watcher_check(src->w) < 0)
		return NULL;
	watcher_lock(src->w);
	tok = src->tok;
	if (tok && !token_try_ref(tok))
		tok = NULL;
	watcher_unlock(src->w);
	if (tok)
		registration_remove(&src->reg);
	source_detach(src);
	source_wait_idle(src);
	if (tok)
		cfd_token_unref(tok);
	source_unref(src);
	return NULL;
}
