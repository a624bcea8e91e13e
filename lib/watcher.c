/* SPDX-License-Identifier: MIT */
/*
 * The watcher: an epoll set that drives sources.  It holds
 *   - a doorbell eventfd (triggers from signal handlers, stop requests),
 *   - one timerfd armed for the earliest timed source (a min-heap), so that
 *     ten thousand timeouts cost one fd and adding or removing one costs
 *     O(log n), with no timer slack (timerfd has none),
 *   - one signalfd for the union of the signals its sources want,
 *   - the dups of fds that fd sources watch, each in a slot.
 * It runs inside the caller's loop (cfd_watcher_fd + cfd_watcher_dispatch)
 * or on its own thread; the default watcher is one of the latter.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

#include "watcher.h"

static _Thread_local char thread_marker;

const void *watcher_thread_marker(void)
{
	return &thread_marker;
}

int watcher_check(struct cfd_watcher *w)
{
	if (!w)
		return -EINVAL;
	return w->generation == cfd_generation() ? 0 : -ECHILD;
}

static uint64_t epoll_key(uint32_t slot, uint32_t gen)
{
	return ((uint64_t)gen << 32) | slot;
}

static int epoll_add(struct cfd_watcher *w, int fd, uint32_t events,
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
	r = epoll_add(w, w->bell, EPOLLIN, epoll_key(SLOT_BELL, 0));
	if (r == 0)
		/* Edge-triggered: an expired timerfd need not be read or
		 * disarmed; it is reported once, and arming it again for the
		 * next entry resets it. */
		r = epoll_add(w, w->timerfd, EPOLLIN | EPOLLET,
			      epoll_key(SLOT_TIMER, 0));
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
	    atomic_load(&w->thread_marker) == watcher_thread_marker()) {
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

/* ---- slots for fd sources ---- */

int watcher_slot_alloc(struct cfd_watcher *w, struct cfd_source *src,
		       uint32_t *gen)
{
	uint32_t i = w->free_slot;

	if (i == SLOT_NONE) {
		uint32_t n = w->nslots ? w->nslots * 2 : 16;
		struct watcher_slot *s;

		if (n >= SLOT_SIGNAL)
			return -ENOSPC;
		s = realloc(w->slots, n * sizeof(*s));
		if (!s)
			return -ENOMEM;
		for (uint32_t j = w->nslots; j < n; j++) {
			s[j].src = NULL;
			s[j].gen = 0;
			s[j].next_free = j + 1 < n ? j + 1 : SLOT_NONE;
		}
		w->slots = s;
		w->free_slot = w->nslots;
		w->nslots = n;
		i = w->free_slot;
	}
	w->free_slot = w->slots[i].next_free;
	w->slots[i].src = src;
	*gen = w->slots[i].gen;
	return (int)i;
}

void watcher_slot_free(struct cfd_watcher *w, uint32_t slot)
{
	w->slots[slot].src = NULL;
	w->slots[slot].gen++; /* events still queued for it are stale */
	w->slots[slot].next_free = w->free_slot;
	w->free_slot = slot;
}

/* ---- the timer heap ---- */

static void heap_set(struct cfd_watcher *w, uint32_t i, struct cfd_source *s)
{
	w->heap[i] = s;
	s->heap_idx = i;
}

static void heap_up(struct cfd_watcher *w, uint32_t i)
{
	struct cfd_source *s = w->heap[i];

	while (i > 0) {
		uint32_t p = (i - 1) / 2;

		if (w->heap[p]->when <= s->when)
			break;
		heap_set(w, i, w->heap[p]);
		i = p;
	}
	heap_set(w, i, s);
}

static void heap_down(struct cfd_watcher *w, uint32_t i)
{
	struct cfd_source *s = w->heap[i];

	for (;;) {
		uint32_t c = 2 * i + 1;

		if (c >= w->heap_len)
			break;
		if (c + 1 < w->heap_len &&
		    w->heap[c + 1]->when < w->heap[c]->when)
			c++;
		if (s->when <= w->heap[c]->when)
			break;
		heap_set(w, i, w->heap[c]);
		i = c;
	}
	heap_set(w, i, s);
}

/* Arm the timerfd for the earliest entry when it moved earlier.  A later
 * earliest entry leaves the timer early: it fires, finds nothing due, and
 * is re-armed, which is cheaper than moving it on every removal.
 * timer_armed is INT64_MIN after a fire, INT64_MAX when disarmed. */
static void timer_arm(struct cfd_watcher *w, int64_t when)
{
	struct itimerspec its = { 0 };

	if (when == w->timer_armed)
		return;
	w->timer_armed = when;
	if (when != INT64_MAX) {
		its.it_value.tv_sec = when / 1000000000;
		its.it_value.tv_nsec = when % 1000000000;
		/* tv == 0 would disarm: a deadline at the epoch is past. */
		if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
			its.it_value.tv_nsec = 1;
	}
	timerfd_settime(w->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Under w->lock.  The caller made room (heap_reserve). */
void watcher_heap_insert(struct cfd_watcher *w, struct cfd_source *src)
{
	heap_set(w, w->heap_len++, src);
	heap_up(w, src->heap_idx);
	if (src->when < w->timer_armed)
		timer_arm(w, src->when);
}

int watcher_heap_reserve(struct cfd_watcher *w)
{
	if (w->heap_len == w->heap_cap) {
		uint32_t n = w->heap_cap ? w->heap_cap * 2 : 16;
		struct cfd_source **h = realloc(w->heap, n * sizeof(*h));

		if (!h)
			return -ENOMEM;
		w->heap = h;
		w->heap_cap = n;
	}
	return 0;
}

void watcher_heap_remove(struct cfd_watcher *w, struct cfd_source *src)
{
	uint32_t i = src->heap_idx;
	struct cfd_source *last;

	if (i == UINT32_MAX)
		return;
	src->heap_idx = UINT32_MAX;
	last = w->heap[--w->heap_len];
	if (last == src)
		return;
	heap_set(w, i, last);
	heap_up(w, i);
	heap_down(w, last->heap_idx);
}

/* ---- signals ---- */

/* A signal read from a signalfd is gone for every other reader, so each
 * signal is watched by at most one watcher in the process. */
static pthread_mutex_t sig_owner_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cfd_watcher *sig_owner[_NSIG];

/* Under w->lock: claim every signal of set for w, or none (-EEXIST). */
int watcher_claim_signals(struct cfd_watcher *w, const sigset_t *set)
{
	int r = 0;

	pthread_mutex_lock(&sig_owner_lock);
	/* An owner from another fork generation is a copy the parent left:
	 * its watcher does not exist in this process. */
	for (int s = 1; s < _NSIG && r == 0; s++)
		if (sigismember(set, s) == 1 && sig_owner[s] &&
		    sig_owner[s] != w &&
		    sig_owner[s]->generation == cfd_generation())
			r = -EEXIST;
	for (int s = 1; s < _NSIG && r == 0; s++)
		if (sigismember(set, s) == 1)
			sig_owner[s] = w;
	pthread_mutex_unlock(&sig_owner_lock);
	return r;
}

/* Under w->lock: make the signalfd match the subscription counts. */
int watcher_signals_update(struct cfd_watcher *w)
{
	sigset_t mask;
	bool any = false;
	int fd;

	sigemptyset(&mask);
	pthread_mutex_lock(&sig_owner_lock);
	for (int s = 1; s < _NSIG; s++) {
		if (w->sig_count[s]) {
			sigaddset(&mask, s);
			sig_owner[s] = w;
			any = true;
		} else if (sig_owner[s] == w) {
			sig_owner[s] = NULL;
		}
	}
	pthread_mutex_unlock(&sig_owner_lock);
	if (!any) {
		if (w->sigfd >= 0) {
			epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->sigfd, NULL);
			close(w->sigfd);
			w->sigfd = -1;
		}
		w->sig_mask = mask;
		return 0;
	}
	fd = signalfd(w->sigfd, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (w->sigfd < 0) {
		int r = epoll_add(w, fd, EPOLLIN, epoll_key(SLOT_SIGNAL, 0));

		if (r < 0) {
			close(fd);
			return r;
		}
		w->sigfd = fd;
	}
	w->sig_mask = mask;
	return 0;
}

/* ---- dispatch ---- */

static void drain(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) > 0)
		;
}

struct fire_list {
	struct cfd_source *head, **tail;
};

/* Under w->lock: queue src to be fired outside the lock, holding it and
 * its token.  A token being freed (count zero) is skipped. */
static void fire_queue(struct fire_list *fl, struct cfd_source *src,
		       unsigned signo)
{
	if (!src->attached || !src->tok ||
	    (token_state(src->tok) & ST_TRIGGERED) || !token_try_ref(src->tok))
		return;
	source_ref(src);
	src->fire_tok = src->tok;
	src->fire_signo = signo;
	src->fire_next = NULL;
	*fl->tail = src;
	fl->tail = &src->fire_next;
	/* Mark the fire in progress while still under the lock, so that a
	 * cfd_source_free() that detaches after us waits for it. */
	atomic_store(&src->firing_in, watcher_thread_marker());
	atomic_store(&src->firing, FIRING);
}

static void fire_all(struct fire_list *fl)
{
	struct cfd_source *src, *next;

	for (src = fl->head; src; src = next) {
		struct cfd_token *tok = src->fire_tok;

		next = src->fire_next;
		source_fire(src, tok, src->fire_signo);
		cfd_token_unref(tok);
		source_unref(src);
	}
}

/*
 * Fire what is due, then (timer_rearm) arm the timerfd for the next entry.
 * The timerfd is never read: re-arming resets it, and with nothing left to
 * wait for it is left expired (it is edge-triggered in the epoll set).
 */
static void dispatch_timers(struct cfd_watcher *w, struct fire_list *fl)
{
	int64_t now = cfd_now();

	pthread_mutex_lock(&w->lock);
	w->timer_armed = INT64_MIN; /* it fired: must be set again */
	while (w->heap_len && w->heap[0]->when <= now) {
		struct cfd_source *src = w->heap[0];

		watcher_heap_remove(w, src);
		fire_queue(fl, src, 0);
		if (src->kind == SOURCE_CONDITION) {
			/* Next check one interval from now; the slot in the
			 * heap is free, so no allocation can fail here. */
			src->when = now + src->interval;
			watcher_heap_insert(w, src);
		}
	}
	pthread_mutex_unlock(&w->lock);
}

static void timer_rearm(struct cfd_watcher *w)
{
	pthread_mutex_lock(&w->lock);
	if (w->timer_armed == INT64_MIN) {
		if (w->heap_len)
			timer_arm(w, w->heap[0]->when);
		else
			w->timer_armed = INT64_MAX; /* left expired: no call */
	}
	pthread_mutex_unlock(&w->lock);
}

static void dispatch_signals(struct cfd_watcher *w, struct fire_list *fl)
{
	struct signalfd_siginfo si;
	sigset_t got;
	bool any = false;

	sigemptyset(&got);
	pthread_mutex_lock(&w->lock);
	while (w->sigfd >= 0 && read(w->sigfd, &si, sizeof(si)) == sizeof(si)) {
		sigaddset(&got, (int)si.ssi_signo);
		any = true;
	}
	/* Standard signals coalesce: one delivery fires every subscriber. */
	for (struct cfd_source *s = w->sig_sources; any && s; s = s->sig_next)
		for (int signo = 1; signo < _NSIG; signo++)
			if (sigismember(&got, signo) == 1 &&
			    sigismember(&s->signals, signo) == 1) {
				fire_queue(fl, s, (unsigned)signo);
				break;
			}
	pthread_mutex_unlock(&w->lock);
}

static void dispatch_slot(struct cfd_watcher *w, uint64_t key,
			  struct fire_list *fl)
{
	uint32_t slot = (uint32_t)key, gen = (uint32_t)(key >> 32);

	pthread_mutex_lock(&w->lock);
	if (slot < w->nslots && w->slots[slot].gen == gen && w->slots[slot].src)
		fire_queue(fl, w->slots[slot].src, 0);
	pthread_mutex_unlock(&w->lock);
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

static void dispatch_async(struct cfd_watcher *w)
{
	drain(w->bell);
	complete_async(w);
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
		uint32_t slot = (uint32_t)ev[i].data.u64;

		if (slot == SLOT_BELL)
			dispatch_async(w);
		else if (slot == SLOT_TIMER) {
			dispatch_timers(w, &fl);
			timers = true;
		} else if (slot == SLOT_SIGNAL)
			dispatch_signals(w, &fl);
		else
			dispatch_slot(w, ev[i].data.u64, &fl);
	}
	fire_all(&fl);
	if (timers)
		timer_rearm(w);
}

CFD_EXPORT int cfd_watcher_dispatch(struct cfd_watcher *w)
{
	struct epoll_event ev[64];
	int r = watcher_check(w);

	if (r < 0)
		return r;
	if (atomic_load(&w->dispatcher) == watcher_thread_marker())
		return -EDEADLK; /* from a callback inside dispatch */
	if (atomic_load(&w->running))
		return -EBUSY;
	pthread_mutex_lock(&w->dispatch_lock);
	atomic_store(&w->dispatcher, watcher_thread_marker());
	r = epoll_wait_events(w, ev, 64, 0);
	if (r > 0)
		dispatch_events(w, ev, r);
	atomic_store(&w->dispatcher, NULL);
	pthread_mutex_unlock(&w->dispatch_lock);
	return r;
}

/* ---- the own thread ---- */

static void *watcher_thread(void *arg)
{
	struct cfd_watcher *w = arg;

	atomic_store(&w->thread_marker, watcher_thread_marker());
	atomic_store(&w->dispatcher, watcher_thread_marker());
	while (!atomic_load(&w->stop)) {
		struct epoll_event ev[64];
		int n = epoll_wait_events(w, ev, 64, -1);

		if (n < 0)
			break;
		/* Sleep outside the dispatch lock, dispatch under it. */
		pthread_mutex_lock(&w->dispatch_lock);
		dispatch_events(w, ev, n);
		pthread_mutex_unlock(&w->dispatch_lock);
	}
	atomic_store(&w->dispatcher, NULL);
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
	if (atomic_load(&w->thread_marker) == watcher_thread_marker())
		return -EALREADY;
	pthread_mutex_lock(&w->thread_lock);
	if (w->running) {
		pthread_mutex_unlock(&w->thread_lock);
		return -EALREADY;
	}
	atomic_store(&w->stop, false);
	/* Signals go to the signalfd, never to this thread: block them
	 * before the thread exists, so it starts with them blocked. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&w->thread, NULL, watcher_thread, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r == 0)
		atomic_store(&w->running, true);
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

	atomic_store(&w->running, false);
	if (detach) {
		pthread_detach(thread);
		atomic_store(&w->free_on_exit, true);
	}
	atomic_store(&w->stop, true);
	if (write(w->bell, &one, sizeof(one)) < 0) {
		/* the counter is non-zero already: the thread will wake */
	}
	if (!detach)
		pthread_join(thread, NULL);
}

CFD_EXPORT int cfd_watcher_stop(struct cfd_watcher *w)
{
	int r = watcher_check(w);

	if (r < 0)
		return r;
	if (atomic_load(&w->thread_marker) == watcher_thread_marker() &&
	    w->running)
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
	memset(sig_owner, 0, sizeof(sig_owner));
	pthread_mutex_init(&sig_owner_lock, NULL);
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
