/* SPDX-License-Identifier: MIT */
#ifndef CFD_WATCHER_H
#define CFD_WATCHER_H

/*
 * The watcher and its sources, shared by watcher.c (the epoll set, the
 * timer heap, dispatch, threads, the async-signal-safe trigger) and
 * source.c (the kinds of sources and their life cycle).
 *
 * Locking: w->lock guards the slot table, the timer heap, the signal
 * subscriptions and every source's `attached`, `tok`, `when`, `heap_idx`.
 * It is never held while user code runs (predicates, callbacks) nor while a
 * token is triggered.
 */

#include <pthread.h>
#include <signal.h>

#include "internal.h"

enum source_kind {
	SOURCE_TIMEOUT,	  /* timeout or deadline: an entry in the timer heap */
	SOURCE_CONDITION, /* a predicate, re-armed in the heap each interval */
	SOURCE_SIGNAL,	  /* a subscription to the watcher's signalfd */
	SOURCE_FD,	  /* a dup of the caller's fd in the epoll set */
};

struct cfd_source {
	_Atomic uint32_t refs;
	enum source_kind kind;
	bool attached;	       /* still in the watcher */
	struct cfd_watcher *w; /* holds a reference */
	struct cfd_token *tok; /* weak; NULL once detached */
	/* Tears the source down when its token triggers or is freed. */
	struct cfd_registration reg;
	/* Timed kinds: the heap entry. */
	int64_t when;
	int64_t interval;
	uint32_t heap_idx;
	/* Conditions: the predicate. */
	cfd_condition_fn cond;
	void *userdata;
	/* A fire in progress (set under w->lock while attached), and the
	 * thread doing it, so that cfd_source_free() can wait for it. */
	_Atomic uint32_t firing; /* FIRING, and FIRING_WAITER if waited for */
	const void *_Atomic firing_in;
	/* Fd sources: the dup and its slot in the epoll set. */
	int fd;
	uint32_t slot;
	/* Signal sources. */
	sigset_t signals;
	struct cfd_source *sig_next;
	/* The dispatcher's list of sources to fire, outside the lock. */
	struct cfd_source *fire_next;
	struct cfd_token *fire_tok;
	unsigned fire_signo;
};

#define FIRING 1u
#define FIRING_WAITER 2u

/* Epoll data: a slot index and the slot's generation, so that an event for
 * a slot reused meanwhile is recognised as stale. */
struct watcher_slot {
	struct cfd_source *src;
	uint32_t gen;
	uint32_t next_free;
};

#define SLOT_BELL 0xffffffffu
#define SLOT_TIMER 0xfffffffeu
#define SLOT_SIGNAL 0xfffffffdu
#define SLOT_NONE 0xffffffffu

struct cfd_watcher {
	_Atomic uint32_t refs;
	uint32_t generation; /* fork generation at creation */
	int epfd;
	int bell;    /* eventfd: async triggers, stop requests */
	int timerfd; /* armed for the earliest entry of the heap */
	int sigfd;   /* signalfd for the union of subscribed signals, or -1 */
	pthread_mutex_t lock;

	struct watcher_slot *slots;
	uint32_t nslots, free_slot;

	struct cfd_source **heap; /* min-heap on `when` */
	uint32_t heap_len, heap_cap;
	int64_t timer_armed; /* deadline the timerfd is set to, or INT64_MAX */

	struct cfd_source *sig_sources;
	sigset_t sig_mask;
	unsigned sig_count[_NSIG];

	/* Tokens triggered from signal handlers, waiting for their fan-out:
	 * a lock-free stack through work_next. */
	struct cfd_token *_Atomic async_head;

	/* One dispatcher at a time. */
	pthread_mutex_t dispatch_lock;
	const void *_Atomic dispatcher;

	/* The own thread. */
	pthread_mutex_t thread_lock;
	pthread_t thread;
	_Atomic bool running;
	_Atomic bool stop;
	_Atomic bool free_on_exit; /* released from its own thread */
	const void *_Atomic thread_marker;
};

/* watcher.c */
const void *watcher_thread_marker(void);
int watcher_check(struct cfd_watcher *w);
int watcher_resolve(struct cfd_watcher **w); /* NULL -> default, ref'd */
int watcher_heap_reserve(struct cfd_watcher *w);
void watcher_heap_insert(struct cfd_watcher *w, struct cfd_source *src);
void watcher_heap_remove(struct cfd_watcher *w, struct cfd_source *src);
int watcher_slot_alloc(struct cfd_watcher *w, struct cfd_source *src,
		       uint32_t *gen);
void watcher_slot_free(struct cfd_watcher *w, uint32_t slot);
int watcher_signals_update(struct cfd_watcher *w);
int watcher_claim_signals(struct cfd_watcher *w, const sigset_t *set);

/* source.c */
struct cfd_source *source_ref(struct cfd_source *src);
void source_unref(struct cfd_source *src);
/* Under w->lock: leave the watcher (heap, slot, signal list), close fds. */
void source_detach_locked(struct cfd_source *src);
/* Outside any lock: trigger the token or call the predicate. */
void source_fire(struct cfd_source *src, struct cfd_token *tok, unsigned signo);

#endif /* CFD_WATCHER_H */
