/* SPDX-License-Identifier: MIT */
/*
 * The watcher: an epoll set that drives what it watches (the sources).  It
 * holds a doorbell eventfd (triggers from signal handlers, stop requests),
 * one timerfd for a heap of timers (watcher-timers.c), one signalfd for
 * the signals its entries want (watcher-signals.c), and the fds its
 * entries watch (watcher-io.c).  It runs inside the caller's loop
 * (cfd_watcher_fd + cfd_watcher_dispatch) or on its own thread; the
 * default watcher is one of the latter.
 *
 * Dispatch: every event is offered to its entry under the lock
 * (ops->ready); the entries that said yes are fired after, outside it
 * (ops->fire).  See watcher.h for what an entry is.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>

#include "watcher-engine.h"

static _Thread_local char thread_marker;

const void *watcher_thread_id(void)
{
	return &thread_marker;
}

int watcher_check(const struct cfd_watcher *w)
{
	if (!w)
		return -EINVAL;
	return w->generation == cfd_generation() ? 0 : -ECHILD;
}

void watcher_lock(struct cfd_watcher *w)
{
	pthread_mutex_lock(&w->lock);
}

void watcher_unlock(struct cfd_watcher *w)
{
	pthread_mutex_unlock(&w->lock);
}

bool watcher_is_dispatching(const struct cfd_watcher *w)
{
	return atomic_load(&w->dispatcher) == watcher_thread_id();
}

uint64_t epoll_key(uint32_t slot, uint32_t gen)
{
	return ((uint64_t)gen << 32) | slot;
}

int watcher_epoll_add(struct cfd_watcher *w, int fd, uint32_t events,
		      uint64_t key)
{
	struct epoll_event ev = { .events = events, .data.u64 = key };

	return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* ---- life cycle ---- */

static void watcher_close_fds(struct cfd_watcher *w)
{
	int *fds[] = { &w->epfd, &w->bell, &w->timerfd, &w->sigfd };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
}

static void complete_async(struct cfd_watcher *w);

static void watcher_free(struct cfd_watcher *w)
{
	/* Triggers from signal handlers not dispatched yet: finish them. */
	complete_async(w);
	watcher_close_fds(w);
	pthread_mutex_destroy(&w->lock);
	pthread_mutex_destroy(&w->dispatch_lock);
	pthread_mutex_destroy(&w->gate);
	pthread_cond_destroy(&w->gate_free);
	pthread_mutex_destroy(&w->thread_lock);
	free(w->slots);
	free(w->heap);
	free(w);
}

CFD_EXPORT int cfd_watcher_new(struct cfd_watcher **ret)
{
	struct cfd_watcher *w;
	int r;

	if (!ret)
		return -EINVAL;
	cfd_process_init();
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	atomic_init(&w->refs, 1);
	w->generation = cfd_generation();
	w->bell = w->timerfd = w->sigfd = -1;
	w->free_slot = SLOT_NONE;
	w->timer_armed = INT64_MAX;
	sigemptyset(&w->sig_mask);
	pthread_mutex_init(&w->lock, NULL);
	pthread_mutex_init(&w->dispatch_lock, NULL);
	pthread_mutex_init(&w->gate, NULL);
	pthread_cond_init(&w->gate_free, NULL);
	pthread_mutex_init(&w->thread_lock, NULL);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0)
		goto fail_errno;
	w->bell = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->bell < 0)
		goto fail_errno;
	w->timerfd =
	    timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (w->timerfd < 0)
		goto fail_errno;
	r = watcher_epoll_add(w, w->bell, EPOLLIN, epoll_key(KEY_BELL, 0));
	if (r == 0)
		/* Edge-triggered: an expired timerfd need not be read or
		 * disarmed; it is reported once, and arming it again for the
		 * next entry resets it. */
		r = watcher_epoll_add(w, w->timerfd, EPOLLIN | EPOLLET,
				      epoll_key(KEY_TIMER, 0));
	if (r < 0)
		goto fail;
	*ret = w;
	return 0;
fail_errno:
	r = -errno;
fail:
	watcher_free(w);
	return r;
}

CFD_EXPORT struct cfd_watcher *cfd_watcher_ref(struct cfd_watcher *w)
{
	if (w)
		atomic_fetch_add_explicit(&w->refs, 1, memory_order_relaxed);
	return w;
}

static void watcher_stop_thread(struct cfd_watcher *w, bool detach);

CFD_EXPORT struct cfd_watcher *cfd_watcher_unref(struct cfd_watcher *w)
{
	if (!w || watcher_check(w) < 0)
		return NULL;
	if (atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) != 1)
		return NULL;
	if (w->running &&
	    atomic_load(&w->thread_marker) == watcher_thread_id()) {
		/* The last reference went away on the watcher's own thread
		 * (a callback): it cannot join itself, so it frees the
		 * watcher on its way out. */
		watcher_stop_thread(w, true);
		return NULL;
	}
	if (w->running)
		watcher_stop_thread(w, false);
	watcher_free(w);
	return NULL;
}

CFD_EXPORT void cfd_watcher_unrefp(struct cfd_watcher **wp)
{
	if (wp)
		*wp = cfd_watcher_unref(*wp);
}

CFD_EXPORT int cfd_watcher_fd(struct cfd_watcher *w)
{
	int r = watcher_check(w);

	return r < 0 ? r : w->epfd;
}

/* ---- dispatch ---- */

void fire_list_offer(struct fire_list *fl, struct wentry *e, unsigned info)
{
	if (!e->ops->ready(e, info))
		return;
	e->fire_info = info;
	e->fire_next = NULL;
	*fl->tail = e;
	fl->tail = &e->fire_next;
}

static void fire_all(struct fire_list *fl)
{
	struct wentry *e, *next;

	for (e = fl->head; e; e = next) {
		next = e->fire_next;
		e->ops->fire(e, e->fire_info);
	}
}

static void drain(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) > 0)
		;
}

/* Complete the fan-out of tokens triggered from signal handlers. */
static void complete_async(struct cfd_watcher *w)
{
	struct cfd_token *t, *next;

	t = atomic_exchange(&w->async_head, NULL);
	for (; t; t = next) {
		struct fanout f;

		next = t->work_next;
		fanout_init(&f);
		fanout_run(&f, t, false);
		cfd_token_unref(t); /* the handler's reference */
	}
}

static int epoll_wait_events(struct cfd_watcher *w, struct epoll_event *ev,
			     int max, int timeout_ms)
{
	int n;

	do
		n = epoll_wait(w->epfd, ev, max, timeout_ms);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

/* Under the dispatch lock. */
static void dispatch_events(struct cfd_watcher *w, struct epoll_event *ev,
			    int n)
{
	struct fire_list fl = { NULL, &fl.head };
	bool timers = false;

	for (int i = 0; i < n; i++) {
		uint32_t key = (uint32_t)ev[i].data.u64;

		if (key == KEY_BELL) {
			drain(w->bell);
			complete_async(w);
		} else if (key == KEY_TIMER) {
			timers_dispatch(w, &fl);
			timers = true;
		} else if (key == KEY_SIGNAL) {
			signals_dispatch(w, &fl);
		} else {
			io_dispatch(w, ev[i].data.u64, ev[i].events, &fl);
		}
	}
	fire_all(&fl);
	if (timers)
		timers_rearm(w);
}

CFD_EXPORT int cfd_watcher_dispatch(struct cfd_watcher *w)
{
	struct epoll_event ev[64];
	int r = watcher_check(w);

	if (r < 0)
		return r;
	if (watcher_is_dispatching(w))
		return -EDEADLK; /* from a callback inside dispatch */
	pthread_mutex_lock(&w->gate);
	while (w->gate_busy && !atomic_load(&w->running))
		pthread_cond_wait(&w->gate_free, &w->gate);
	if (atomic_load(&w->running)) {
		pthread_mutex_unlock(&w->gate);
		return -EBUSY;
	}
	w->gate_busy = true;
	pthread_mutex_unlock(&w->gate);
	/* Past the gate, the lock is free or about to be: a thread started
	 * since waits for this one dispatch. */
	pthread_mutex_lock(&w->dispatch_lock);
	atomic_store(&w->dispatcher, watcher_thread_id());
	r = epoll_wait_events(w, ev, 64, 0);
	if (r > 0)
		dispatch_events(w, ev, r);
	atomic_store(&w->dispatcher, NULL);
	pthread_mutex_unlock(&w->dispatch_lock);
	pthread_mutex_lock(&w->gate);
	w->gate_busy = false;
	pthread_cond_signal(&w->gate_free);
	pthread_mutex_unlock(&w->gate);
	return r;
}

/* ---- the own thread ---- */

/*
 * The own thread is the watcher's only dispatcher for its whole life: it
 * holds the dispatch lock throughout, so that no cfd_watcher_dispatch()
 * in another thread can take an event from under it (the doorbell that is
 * to stop it, above all).  One that held the lock when the thread started
 * may have taken that doorbell already: the thread looks at the stop flag
 * once it holds the lock, before it first sleeps.
 */
static void *watcher_thread(void *arg)
{
	struct cfd_watcher *w = arg;

	atomic_store(&w->thread_marker, watcher_thread_id());
	pthread_mutex_lock(&w->dispatch_lock);
	atomic_store(&w->dispatcher, watcher_thread_id());
	while (!atomic_load(&w->stop)) {
		struct epoll_event ev[64];
		int n = epoll_wait_events(w, ev, 64, -1);

		if (n < 0)
			break;
		dispatch_events(w, ev, n);
	}
	atomic_store(&w->dispatcher, NULL);
	pthread_mutex_unlock(&w->dispatch_lock);
	if (atomic_load(&w->free_on_exit))
		watcher_free(w); /* released from its own thread */
	return NULL;
}

CFD_EXPORT int cfd_watcher_start(struct cfd_watcher *w)
{
	sigset_t all, old;
	int r = watcher_check(w);

	if (r < 0)
		return r;
	/* From a callback on its own thread it runs, by definition; and a
	 * stop in another thread may hold the lock while it joins us. */
	if (atomic_load(&w->thread_marker) == watcher_thread_id())
		return -EALREADY;
	pthread_mutex_lock(&w->thread_lock);
	if (w->running) {
		pthread_mutex_unlock(&w->thread_lock);
		return -EALREADY;
	}
	atomic_store(&w->stop, false);
	/* Running from now: cfd_watcher_dispatch() says -EBUSY, also to the
	 * callers waiting at its gate. */
	pthread_mutex_lock(&w->gate);
	atomic_store(&w->running, true);
	pthread_cond_broadcast(&w->gate_free);
	pthread_mutex_unlock(&w->gate);
	/* Signals go to the signalfd, never to this thread: block them
	 * before the thread exists, so it starts with them blocked. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&w->thread, NULL, watcher_thread, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0)
		atomic_store(&w->running, false);
	pthread_mutex_unlock(&w->thread_lock);
	return r;
}

/*
 * Stop the own thread.  detach is for the watcher's own thread dropping
 * the last reference (from a callback): it cannot join itself, so it
 * leaves the thread to free the watcher when its loop ends.
 */
static void watcher_stop_thread(struct cfd_watcher *w, bool detach)
{
	pthread_t thread = w->thread;
	uint64_t one = 1;

	if (detach) {
		pthread_detach(thread);
		atomic_store(&w->free_on_exit, true);
	}
	atomic_store(&w->stop, true);
	if (write(w->bell, &one, sizeof(one)) < 0) {
		/* the counter is non-zero already: the thread will wake */
	}
	if (detach)
		return;
	pthread_join(thread, NULL);
	atomic_store(&w->running, false);
}

CFD_EXPORT int cfd_watcher_stop(struct cfd_watcher *w)
{
	int r = watcher_check(w);

	if (r < 0)
		return r;
	if (atomic_load(&w->thread_marker) == watcher_thread_id() && w->running)
		return -EDEADLK;
	pthread_mutex_lock(&w->thread_lock);
	if (!w->running) {
		pthread_mutex_unlock(&w->thread_lock);
		return -EALREADY;
	}
	watcher_stop_thread(w, false);
	atomic_store(&w->thread_marker, NULL);
	pthread_mutex_unlock(&w->thread_lock);
	return 0;
}

/* ---- the default watcher ---- */

static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cfd_watcher *_Atomic default_watcher;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

/* In a child after fork the default watcher's thread does not exist and
 * its signal ownership is the parent's: forget both, close the copies of
 * its fds, and let first use in the child make a new one. */
static void watcher_after_fork_in_child(void)
{
	struct cfd_watcher *w = atomic_load(&default_watcher);

	if (w)
		watcher_close_fds(w);
	atomic_store(&default_watcher, NULL);
	signals_after_fork_in_child();
	pthread_mutex_init(&default_lock, NULL);
}

static void watcher_fork_setup(void)
{
	pthread_atfork(NULL, NULL, watcher_after_fork_in_child);
}

CFD_EXPORT int cfd_watcher_default(struct cfd_watcher **ret)
{
	struct cfd_watcher *w;
	int r = 0;

	if (!ret)
		return -EINVAL;
	pthread_once(&fork_once, watcher_fork_setup);
	pthread_mutex_lock(&default_lock);
	w = atomic_load(&default_watcher);
	if (!w) {
		r = cfd_watcher_new(&w);
		if (r == 0) {
			r = cfd_watcher_start(w);
			if (r < 0)
				w = cfd_watcher_unref(w);
			else
				atomic_store(&default_watcher, w);
		}
	}
	if (w)
		*ret = cfd_watcher_ref(w);
	pthread_mutex_unlock(&default_lock);
	return r;
}

int watcher_resolve(struct cfd_watcher **w)
{
	int r;

	if (!*w)
		return cfd_watcher_default(w);
	r = watcher_check(*w);
	if (r < 0)
		return r;
	cfd_watcher_ref(*w);
	return 0;
}

/* ---- the async-signal-safe trigger ---- */

CFD_EXPORT int cfd_token_trigger_async_safe(struct cfd_token *tok,
					    struct cfd_watcher *w, int signo)
{
	int saved_errno = errno;
	struct cfd_token *head;
	uint64_t one = 1;
	uint32_t won;

	if (!tok || signo < 0 || signo >= _NSIG)
		return -EINVAL;
	if (token_check_process(tok) < 0)
		return -ECHILD;
	if (!w) {
		w = atomic_load(&default_watcher);
		if (!w)
			return -ENXIO; /* cannot make one in a handler */
	}
	if (watcher_check(w) < 0)
		return -ECHILD;
	won = token_win(tok, signo ? CFD_REASON_SIGNAL : CFD_REASON_MANUAL,
			(unsigned)signo, false);
	if (!won)
		return 0;
	tok->time = cfd_now_coarse(); /* async-signal-safe */
	token_publish(tok, tok, won);
	/* The fan-out and the callbacks need locks: hand them to the
	 * watcher, holding the token until it is done. */
	atomic_fetch_add_explicit(&tok->word, REF_ONE, memory_order_relaxed);
	head = atomic_load(&w->async_head);
	do
		tok->work_next = head;
	while (!atomic_compare_exchange_weak(&w->async_head, &head, tok));
	if (write(w->bell, &one, sizeof(one)) < 0) {
		/* non-zero already: the watcher will look */
	}
	errno = saved_errno;
	return 1;
}
