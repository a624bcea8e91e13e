/* SPDX-License-Identifier: MIT */
#ifndef CFD_WATCHER_ENGINE_H
#define CFD_WATCHER_ENGINE_H

/*
 * Private to the engine's files: watcher.c (life cycle, dispatch, the own
 * thread, the default watcher, the async-signal-safe trigger),
 * watcher-timers.c (the heap and its timerfd), watcher-io.c (fd slots)
 * and watcher-signals.c (the signalfd).  Kinds see only watcher.h.
 */

#include "watcher.h"

/* Epoll data of the engine's own fds; an fd entry's is its slot index and
 * the slot's generation, so that an event for a slot reused meanwhile is
 * recognised as stale. */
#define KEY_BELL 0xffffffffu
#define KEY_TIMER 0xfffffffeu
#define KEY_SIGNAL 0xfffffffdu
#define KEY_SLOTS_MAX 0xfffffff0u /* slot indices stay below */

struct io_slot {
	struct wentry *e;
	uint32_t gen;
	uint32_t next_free;
};

struct cfd_watcher {
	_Atomic uint32_t refs;
	uint32_t generation; /* fork generation at creation */
	int epfd;
	int bell;    /* eventfd: async triggers, stop requests */
	int timerfd; /* armed for the earliest entry of the heap */
	int sigfd;   /* signalfd for the union of subscribed signals, or -1 */
	pthread_mutex_t lock;

	struct io_slot *slots;
	uint32_t nslots, free_slot;

	struct wentry **heap; /* min-heap on timer.when */
	uint32_t heap_len, heap_cap;
	int64_t timer_armed; /* deadline the timerfd is set to, or INT64_MAX */

	struct wentry *sig_entries;
	sigset_t sig_mask;
	unsigned sig_count[_NSIG];

	/* Tokens triggered from signal handlers, waiting for their fan-out:
	 * a lock-free stack through work_next. */
	struct cfd_token *_Atomic async_head;

	/* One dispatcher at a time: the own thread, for its whole life, or
	 * one cfd_watcher_dispatch() call.  Callers queue at the gate, not on
	 * the lock, so that one waiting there when the thread starts is told
	 * -EBUSY instead of waiting for the thread to stop. */
	pthread_mutex_t dispatch_lock;
	const void *_Atomic dispatcher;
	pthread_mutex_t gate;
	pthread_cond_t gate_free;
	bool gate_busy; /* a cfd_watcher_dispatch() is past the gate */

	/* The own thread. */
	pthread_mutex_t thread_lock;
	pthread_t thread;
	_Atomic bool running;
	_Atomic bool stop;
	_Atomic bool free_on_exit; /* released from its own thread */
	const void *_Atomic thread_marker;
};

/* The entries to fire after a dispatch round, outside the lock. */
struct fire_list {
	struct wentry *head, **tail;
};

/* Under the lock: ask e whether to fire, and queue it if so. */
void fire_list_offer(struct fire_list *fl, struct wentry *e, unsigned info);

uint64_t epoll_key(uint32_t slot, uint32_t gen);
int watcher_epoll_add(struct cfd_watcher *w, int fd, uint32_t events,
		      uint64_t key);

/* watcher-timers.c */
void timers_dispatch(struct cfd_watcher *w, struct fire_list *fl);
void timers_rearm(struct cfd_watcher *w);
/* watcher-io.c */
void io_dispatch(struct cfd_watcher *w, uint64_t key, uint32_t events,
		 struct fire_list *fl);
/* watcher-signals.c */
void signals_dispatch(struct cfd_watcher *w, struct fire_list *fl);
void signals_after_fork_in_child(void);

#endif
