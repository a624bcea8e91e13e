/* SPDX-License-Identifier: MIT */
#ifndef CFD_SOURCE_H
#define CFD_SOURCE_H

/*
 * Sources: what triggers a token when something happens outside the
 * program's own calls.  source.c keeps what every source has (its life
 * cycle, its registration on the token, the fire protocol); each kind is
 * one file with one struct source_kind (source-timeout.c, -signal.c,
 * -fd.c, -condition.c).  A kind uses the watcher's engine (watcher.h) for
 * its entry and source.c for everything else.
 *
 * Adding a kind: a file with its struct source_kind and its public add
 * function, which fills a struct cfd_source and calls source_add(); the
 * public header, the version script, a man page and tests.
 */

#include "watcher.h"

struct source_kind {
	const char *name; /* "timeout", "signal", ... */
	/* Under the watcher's lock: put the source's entry in the engine. */
	int (*attach)(struct cfd_source *src);
	/* Under the watcher's lock: take it out (idempotent). */
	void (*detach)(struct cfd_source *src);
	/* Under the watcher's lock, when the engine offers an event: whether
	 * to fire (NULL: always).  A timer is out of the heap here and may
	 * add itself again. */
	bool (*ready)(struct cfd_source *src, unsigned info);
	/* Outside every lock: trigger tok (pinned) for this event. */
	void (*fire)(struct cfd_source *src, struct cfd_token *tok,
		     unsigned info);
	/* Release what the kind holds (an fd), once, when the source goes.
	 * NULL: nothing to release. */
	void (*release)(struct cfd_source *src);
};

struct cfd_source {
	struct wentry entry; /* what the watcher keeps of it */
	const struct source_kind *kind;
	_Atomic uint32_t refs;
	/* In the watcher (its entry is there).  Under the watcher's lock,
	 * like tok. */
	bool attached;
	struct cfd_watcher *w; /* holds a reference */
	/* Weak: NULL once detached.  The token's release clears it (under
	 * the watcher's lock, from the registration's on_release) before the
	 * token's memory goes: a reference taken under the lock while it is
	 * not NULL is safe (token_try_ref()). */
	struct cfd_token *tok;
	/* Ends the source when its token triggers or is freed. */
	struct cfd_registration reg;
	/* A fire in progress (set under the watcher's lock while attached),
	 * and the thread doing it, so that cfd_source_free() can wait. */
	_Atomic uint32_t firing; /* FIRING, and FIRING_WAITER if waited for */
	const void *_Atomic firing_in;
	struct cfd_token *fire_tok; /* pinned by ready, for fire */
	/* The kind's own. */
	union {
		struct {
			cfd_condition_fn fn;
			void *userdata;
			int64_t interval;
		} cond;
		struct {
			int fd; /* our dup */
		} fd;
	};
};

#define FIRING 1u
#define FIRING_WAITER 2u

/*
 * Add src, filled by its kind (kind and the kind's fields), to w (NULL:
 * the default watcher) for tok.  Attaches first, then registers on the
 * token: a trigger in between is seen by the registration, which detaches.
 * On failure the kind's release runs.  *ret is the handle, or NULL for a
 * floating source (owned by token and watcher) and when tok triggered
 * meanwhile (no source needed).
 */
int source_add(struct cfd_source **ret, struct cfd_token *tok,
	       struct cfd_watcher *w, const struct cfd_source *proto);

/* The checks every add starts with: -errno, 1 when tok has triggered
 * (nothing to watch: *ret is set to NULL and the add returns 0), else 0. */
int source_check_token(struct cfd_token *tok, struct cfd_source **ret);

/* The wentry ops of every source (source.c), for the kinds' inits. */
extern const struct wentry_ops source_entry_ops;

#endif
