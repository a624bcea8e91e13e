/* SPDX-License-Identifier: MIT */
/*
 * Wake rows: a thread blocked in poll() on another CPU is woken by
 * cfd_token_trigger(), by a raw eventfd write, and by
 * g_cancellable_cancel() (research/limits.md section 1, wake.c).
 *
 * Ping-pong between two pinned threads: A stamps t0 and fires "ping"; B,
 * blocked in poll() on the ping fd, stamps tb and fires "pong"; A, blocked
 * in poll() on the pong fd, stamps t1.  rtt/2 = (t1 - t0) / 2; one-way =
 * tb - t0; the waker's cost = the time A spent inside the firing call.
 * A token triggers once, so every round trip uses a fresh ping and pong
 * object with its fd made beforehand, on every side alike (the raw side
 * uses fresh eventfds too, so no side pays a reset the other does not).
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cancelfd.h>

#include "bench.h"

enum wmode { W_RAW, W_CFD, W_GLIB, W_MODES };

struct wobj {
	void *obj;
	int fd;
};

static struct {
	enum wmode mode;
	size_t n;
	struct wobj *ping, *pong;
	int64_t *t0, *tb, *tw, *t1;
	pthread_barrier_t start, end;
	bool stop;
} w;

static void wobj_make(enum wmode m, struct wobj *o)
{
	struct cfd_token *t;

	switch (m) {
	case W_RAW:
		o->obj = NULL;
		o->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (o->fd < 0)
			die("eventfd failed");
		break;
	case W_CFD:
		if (cfd_token_new(&t, "") < 0 || (o->fd = cfd_token_fd(t)) < 0)
			die("cfd token with fd failed");
		o->obj = t;
		break;
	default:
		o->obj = glib_new_with_fd(&o->fd);
		break;
	}
}

static void wobj_free(enum wmode m, struct wobj *o)
{
	switch (m) {
	case W_RAW:
		close(o->fd);
		break;
	case W_CFD:
		cfd_token_unref(o->obj);
		break;
	default:
		glib_free(o->obj);
		break;
	}
}

static inline void fire(enum wmode m, struct wobj *o)
{
	uint64_t one = 1;

	switch (m) {
	case W_RAW:
		if (write(o->fd, &one, sizeof(one)) < 0)
			die("eventfd write failed");
		break;
	case W_CFD:
		cfd_token_trigger(o->obj);
		break;
	default:
		glib_cancel(o->obj);
		break;
	}
}

static inline void wait_fd(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	while (poll(&p, 1, -1) != 1)
		;
}

static void *thread_b(void *arg)
{
	(void)arg;
	pin_self(cpu_b);
	for (;;) {
		pthread_barrier_wait(&w.start);
		if (w.stop)
			break;
		for (size_t i = 0; i < w.n; i++) {
			wait_fd(w.ping[i].fd);
			w.tb[i] = now_ns();
			fire(w.mode, &w.pong[i]);
		}
		pthread_barrier_wait(&w.end);
	}
	return NULL;
}

/* n round trips in mode m; the samples land in the rows given. */
static void run_mode(enum wmode m, struct row *rtt, struct row *one,
		     struct row *waker, bool base)
{
	/* A's objects, then B's: objects that two CPUs write are not made
	 * next to each other (interleaved, a ping shares cache lines with
	 * the pong before it, and the wake measures false sharing too). */
	for (size_t i = 0; i < w.n; i++)
		wobj_make(m, &w.ping[i]);
	for (size_t i = 0; i < w.n; i++)
		wobj_make(m, &w.pong[i]);
	w.mode = m;
	pthread_barrier_wait(&w.start);
	for (size_t i = 0; i < w.n; i++) {
		w.t0[i] = now_ns();
		fire(m, &w.ping[i]);
		w.tw[i] = now_ns();
		wait_fd(w.pong[i].fd);
		w.t1[i] = now_ns();
	}
	pthread_barrier_wait(&w.end);
	for (size_t i = 0; i < w.n; i++) {
		wobj_free(m, &w.ping[i]);
		wobj_free(m, &w.pong[i]);
	}
	for (size_t i = 0; rtt && i < w.n; i++) {
		void (*add)(struct row *, double) = base ? row_base : row_cfd;

		add(rtt, (double)(w.t1[i] - w.t0[i]) / 2);
		if (one)
			add(one, (double)(w.tb[i] - w.t0[i]));
		if (waker)
			add(waker, (double)(w.tw[i] - w.t0[i]));
	}
}

void rows_wake(void)
{
	struct row *rtt, *one, *waker, *grtt;
	const int rounds = Q(2, 40);
	size_t per = Q(200, 2000);
	pthread_t b;

	rtt = row_new("wake", "trigger -> poll wake, cross-CPU (rtt/2)", "ns",
		      "eventfd write -> poll", ROW_TIME, TARGET_LE, 1.03);
	one = row_new("wake", "  one-way (trigger -> poll returns)", "ns",
		      "eventfd write -> poll", ROW_TIME, TARGET_NONE, 0);
	waker = row_new("wake", "  waker's cost (inside the trigger)", "ns",
			"eventfd write", ROW_TIME, TARGET_NONE, 0);
	grtt =
	    row_new("wake", "GLib: trigger -> poll wake (rtt/2)", "ns",
		    "g_cancellable_cancel -> poll", ROW_TIME, TARGET_LT, 1.0);
	if (!glib_available())
		row_unavailable(grtt, "GLib not found");
	if (cpu_a == cpu_b)
		row_note(rtt, "only one CPU: both threads on cpu %d", cpu_a);
	/* Two fds per round trip, all made before the round. */
	if (per > (size_t)fds_available() / 2)
		per = (size_t)fds_available() / 2;
	row_note(rtt,
		 "threads pinned to cpu %d and %d; %d rounds x %zu round "
		 "trips per side; fresh objects for every round trip, "
		 "each thread's made apart from the other's",
		 cpu_a, cpu_b, rounds, per);

	w.n = per;
	w.ping = calloc(w.n, sizeof(*w.ping));
	w.pong = calloc(w.n, sizeof(*w.pong));
	w.t0 = calloc(w.n, sizeof(int64_t));
	w.tb = calloc(w.n, sizeof(int64_t));
	w.tw = calloc(w.n, sizeof(int64_t));
	w.t1 = calloc(w.n, sizeof(int64_t));
	if (!w.ping || !w.pong || !w.t0 || !w.tb || !w.tw || !w.t1)
		die("out of memory");
	pthread_barrier_init(&w.start, NULL, 2);
	pthread_barrier_init(&w.end, NULL, 2);
	w.stop = false;
	if (pthread_create(&b, NULL, thread_b, NULL) != 0)
		die("pthread_create failed");
	pin_self(cpu_a);

	/* Warm-up, not recorded. */
	run_mode(W_RAW, NULL, NULL, NULL, false);
	run_mode(W_CFD, NULL, NULL, NULL, false);
	if (glib_available())
		run_mode(W_GLIB, NULL, NULL, NULL, false);

	for (int i = 0; i < rounds; i++) {
		row_round_begin(rtt);
		row_round_begin(one);
		row_round_begin(waker);
		row_round_begin(grtt);
		for (int s = 0; s < W_MODES; s++) {
			enum wmode m = (enum wmode)((s + i) % W_MODES);

			if (m == W_RAW) {
				run_mode(m, rtt, one, waker, true);
			} else if (m == W_CFD) {
				run_mode(m, rtt, one, waker, false);
				/* The same samples, against GLib. */
				for (size_t k = 0; k < w.n; k++)
					row_cfd(grtt,
						(double)(w.t1[k] - w.t0[k]) /
						    2);
			} else if (glib_available()) {
				run_mode(m, NULL, NULL, NULL, true);
				for (size_t k = 0; k < w.n; k++)
					row_base(grtt,
						 (double)(w.t1[k] - w.t0[k]) /
						     2);
			}
		}
		row_round_end(rtt);
		row_round_end(one);
		row_round_end(waker);
		row_round_end(grtt);
	}

	w.stop = true;
	pthread_barrier_wait(&w.start);
	pthread_join(b, NULL);
	pthread_barrier_destroy(&w.start);
	pthread_barrier_destroy(&w.end);
	unpin_self();
	free(w.ping);
	free(w.pong);
	free(w.t0);
	free(w.tb);
	free(w.tw);
	free(w.t1);
}
