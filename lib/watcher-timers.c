/* SPDX-License-Identifier: MIT */
/*
 * The watcher's timers: a min-heap of entries on one timerfd, armed
 * (absolute, CLOCK_MONOTONIC, no timer slack) for the earliest entry, so
 * that ten thousand timeouts cost one fd and adding, moving or removing
 * one costs O(log n).
 *
 * The timerfd is armed only when the earliest time moves earlier; a later
 * earliest time leaves it early (it fires, finds nothing due, and is armed
 * again), which is cheaper than moving it on every removal.  It is
 * edge-triggered in the epoll set and never read: due entries are offered
 * first and the timer re-armed after; with nothing left it is left
 * expired, which saves a system call on the way to the trigger.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/timerfd.h>

#include "watcher-engine.h"

static void heap_set(struct cfd_watcher *w, uint32_t i, struct wentry *e)
{
	w->heap[i] = e;
	e->timer.heap_idx = i;
}

static void heap_up(struct cfd_watcher *w, uint32_t i)
{
	struct wentry *e = w->heap[i];

	while (i > 0) {
		uint32_t p = (i - 1) / 2;

		if (w->heap[p]->timer.when <= e->timer.when)
			break;
		heap_set(w, i, w->heap[p]);
		i = p;
	}
	heap_set(w, i, e);
}

static void heap_down(struct cfd_watcher *w, uint32_t i)
{
	struct wentry *e = w->heap[i];

	for (;;) {
		uint32_t c = 2 * i + 1;

		if (c >= w->heap_len)
			break;
		if (c + 1 < w->heap_len &&
		    w->heap[c + 1]->timer.when < w->heap[c]->timer.when)
			c++;
		if (e->timer.when <= w->heap[c]->timer.when)
			break;
		heap_set(w, i, w->heap[c]);
		i = c;
	}
	heap_set(w, i, e);
}

/* Arm the timerfd for `when` if that is earlier than it is armed for.
 * timer_armed is INT64_MIN after a fire, INT64_MAX when disarmed. */
static void timer_arm_earlier(struct cfd_watcher *w, int64_t when)
{
	struct itimerspec its = { 0 };

	if (when >= w->timer_armed)
		return;
	w->timer_armed = when;
	its.it_value.tv_sec = when / 1000000000;
	its.it_value.tv_nsec = when % 1000000000;
	/* tv == 0 would disarm: a deadline at the epoch is past. */
	if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
		its.it_value.tv_nsec = 1;
	timerfd_settime(w->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

void watcher_timer_init(struct wentry *e, const struct wentry_ops *ops)
{
	e->ops = ops;
	e->timer.heap_idx = UINT32_MAX;
}

int watcher_timer_add(struct cfd_watcher *w, struct wentry *e, int64_t when)
{
	if (w->heap_len == w->heap_cap) {
		uint32_t n = w->heap_cap ? w->heap_cap * 2 : 16;
		struct wentry **h = realloc(w->heap, n * sizeof(*h));

		if (!h)
			return -ENOMEM;
		w->heap = h;
		w->heap_cap = n;
	}
	e->timer.when = when;
	heap_set(w, w->heap_len++, e);
	heap_up(w, e->timer.heap_idx);
	timer_arm_earlier(w, when);
	return 0;
}

void watcher_timer_move(struct cfd_watcher *w, struct wentry *e, int64_t when)
{
	int64_t was = e->timer.when;

	e->timer.when = when;
	if (when < was)
		heap_up(w, e->timer.heap_idx);
	else
		heap_down(w, e->timer.heap_idx);
	timer_arm_earlier(w, when);
}

void watcher_timer_remove(struct cfd_watcher *w, struct wentry *e)
{
	uint32_t i = e->timer.heap_idx;
	struct wentry *last;

	if (i == UINT32_MAX)
		return;
	e->timer.heap_idx = UINT32_MAX;
	last = w->heap[--w->heap_len];
	if (last == e)
		return;
	heap_set(w, i, last);
	heap_up(w, i);
	heap_down(w, last->timer.heap_idx);
}

/* The timerfd fired: offer every due entry (each leaves the heap first,
 * and may add itself again from its ready op). */
void timers_dispatch(struct cfd_watcher *w, struct fire_list *fl)
{
	int64_t now = cfd_now();

	watcher_lock(w);
	w->timer_armed = INT64_MIN; /* it fired: must be set again */
	while (w->heap_len && w->heap[0]->timer.when <= now) {
		struct wentry *e = w->heap[0];

		watcher_timer_remove(w, e);
		fire_list_offer(fl, e, 0);
	}
	watcher_unlock(w);
}

/* After the fires: arm the timerfd for the next entry, if any. */
void timers_rearm(struct cfd_watcher *w)
{
	watcher_lock(w);
	if (w->timer_armed == INT64_MIN) {
		w->timer_armed = INT64_MAX; /* left expired: no call */
		if (w->heap_len)
			timer_arm_earlier(w, w->heap[0]->timer.when);
	}
	watcher_unlock(w);
}
