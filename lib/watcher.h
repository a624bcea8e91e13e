/* SPDX-License-Identifier: MIT */
#ifndef CFD_WATCHER_H
#define CFD_WATCHER_H

/*
 * The watcher as an engine, and what it offers to the things it watches
 * for (the source kinds).  The engine (watcher*.c) owns the epoll set, the
 * doorbell, the timer heap and its timerfd, the signalfd and its mask, the
 * fd slots, dispatch and the own thread.  It knows what it watches only as
 * entries: a struct wentry embedded in the watched object, with an ops
 * table.  Calls go one way: a kind calls the engine to add, move and remove
 * its entry; the engine calls back only through the entry's ops.
 *
 * Locking: watcher_lock() guards every entry's engine fields and the
 * engine's tables.  Entries are added, moved and removed under it.  It is
 * never held while ops->fire runs, nor while any user code runs.
 */

#include <pthread.h>
#include <signal.h>

#include "internal.h"

struct wentry;

struct wentry_ops {
	/*
	 * Under the watcher's lock: an event for e (info: the signal number
	 * for a signal, the epoll events for an fd, 0 for a timer).  Return
	 * true to have fire() called outside the lock.  A timer entry is out
	 * of the heap when this is called: it may add itself again.
	 */
	bool (*ready)(struct wentry *e, unsigned info);
	/* Outside every lock of the library. */
	void (*fire)(struct wentry *e, unsigned info);
};

/* What the engine keeps of a watched thing: one of the three. */
struct wentry {
	const struct wentry_ops *ops;
	/* the dispatcher's list of entries to fire, outside the lock */
	struct wentry *fire_next;
	unsigned fire_info;
	union {
		struct { /* a timer: an entry of the heap */
			int64_t when;
			uint32_t heap_idx; /* UINT32_MAX when out of the heap */
		} timer;
		struct { /* an fd in the epoll set */
			int fd;
			uint32_t slot; /* SLOT_NONE when not in the set */
		} io;
		struct { /* a subscription to signals */
			sigset_t set;
			struct wentry *next;
			bool added;
		} sig;
	};
};

#define SLOT_NONE 0xffffffffu

void watcher_lock(struct cfd_watcher *w);
void watcher_unlock(struct cfd_watcher *w);

/* -EINVAL for NULL, -ECHILD for a watcher of another process, else 0. */
int watcher_check(const struct cfd_watcher *w);
/* A referenced watcher: *w itself, or the default one when *w is NULL. */
int watcher_resolve(struct cfd_watcher **w);
/* This thread is the watcher's dispatcher right now (running its fires). */
bool watcher_is_dispatching(const struct cfd_watcher *w);
/* Something unique to the calling thread, to recognise it later. */
const void *watcher_thread_id(void);

/* Timers (under the lock).  add may fail (-ENOMEM); move and remove never
 * do; move re-arms the timerfd only when the earliest time moved earlier,
 * and costs O(log n). */
void watcher_timer_init(struct wentry *e, const struct wentry_ops *ops);
int watcher_timer_add(struct cfd_watcher *w, struct wentry *e, int64_t when);
void watcher_timer_move(struct cfd_watcher *w, struct wentry *e, int64_t when);
void watcher_timer_remove(struct cfd_watcher *w, struct wentry *e);
static inline bool watcher_timer_added(const struct wentry *e)
{
	return e->timer.heap_idx != UINT32_MAX;
}

/* File descriptors (under the lock): fd in the epoll set with events
 * (EPOLLONESHOT is added: an entry fires once, until added again). */
void watcher_io_init(struct wentry *e, const struct wentry_ops *ops);
int watcher_io_add(struct cfd_watcher *w, struct wentry *e, int fd,
		   uint32_t events);
void watcher_io_remove(struct cfd_watcher *w, struct wentry *e);

/* Signals (under the lock).  A signal is watched by at most one watcher
 * of the process (a signalfd read takes it away from every other): add
 * fails with -EEXIST when another watcher has one of them. */
void watcher_signals_init(struct wentry *e, const struct wentry_ops *ops,
			  const sigset_t *set);
int watcher_signals_add(struct cfd_watcher *w, struct wentry *e);
void watcher_signals_remove(struct cfd_watcher *w, struct wentry *e);

#endif
