/* SPDX-License-Identifier: MIT */
/*
 * Timeout rows: how late a 1 ms and a 10 ms timeout fire (research/
 * limits.md section 6), pinned to one CPU.
 *
 * raw: timerfd_settime() + a blocking read(); late by = (return - the
 * moment before arming) - requested.  cancelfd: cfd_source_add_timeout()
 * on a token, the watcher's fd in poll(), cfd_watcher_dispatch() until the
 * token reads triggered; late by = (that moment - the moment before adding
 * the source) - requested.  Samples alternate one by one.  For 10 ms, an
 * own-cost row gives the library's lateness above timerfd's in us.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cancelfd.h>

#include "bench.h"

static int64_t raw_late(int tfd, int64_t ns)
{
	struct itimerspec its = { .it_value = { .tv_sec = ns / 1000000000,
						.tv_nsec = ns % 1000000000 } };
	uint64_t ticks;
	int64_t t0, t1;

	t0 = now_ns();
	if (timerfd_settime(tfd, 0, &its, NULL) < 0)
		die("timerfd_settime failed");
	if (read(tfd, &ticks, sizeof(ticks)) != sizeof(ticks))
		die("timerfd read failed");
	t1 = now_ns();
	return t1 - t0 - ns;
}

static int64_t cfd_late(struct cfd_watcher *w, int64_t ns)
{
	struct pollfd p = { .fd = cfd_watcher_fd(w), .events = POLLIN };
	struct cfd_source *src;
	struct cfd_token *tok;
	int64_t t0, t1;

	if (cfd_token_new(&tok, "timeout") < 0)
		die("cfd_token_new failed");
	t0 = now_ns();
	if (cfd_source_add_timeout(&src, tok, w, ns) < 0)
		die("cfd_source_add_timeout failed");
	while (!cfd_token_triggered(tok)) {
		if (poll(&p, 1, -1) < 0)
			die("poll failed");
		cfd_watcher_dispatch(w);
	}
	t1 = now_ns();
	cfd_source_free(src);
	cfd_token_unref(tok);
	return t1 - t0 - ns;
}

void rows_timer(void)
{
	static const struct {
		int64_t ns;
		int rounds, quick_rounds, per, quick_per;
	} cases[] = {
		{ 1000000, 20, 2, 50, 5 },
		{ 10000000, 10, 2, 20, 2 },
	};
	struct cfd_watcher *w;
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);

	if (tfd < 0)
		die("timerfd_create failed");
	if (cfd_watcher_new(&w) < 0)
		die("cfd_watcher_new failed");
	pin_self(cpu_a);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		int64_t ns = cases[c].ns;
		int rounds = Q(cases[c].quick_rounds, cases[c].rounds);
		int per = Q(cases[c].quick_per, cases[c].per);
		char name[64];
		struct row *r;

		snprintf(name, sizeof(name), "timeout %d ms fires late by",
			 (int)(ns / 1000000));
		r = row_new("timer", name, "ns", "timerfd", ROW_TIME, TARGET_LE,
			    1.1);
		if (ns == 10000000)
			row_own(r,
				"  own cost: 10 ms timeout lateness above "
				"timerfd",
				"us", OWN_ABOVE_BASE, 7);
		if (c == 0)
			row_note(r,
				 "pinned to cpu %d; %d x %d samples per "
				 "side, alternating",
				 cpu_a, rounds, per);
		raw_late(tfd, ns); /* warm-up */
		for (int i = 0; i < rounds; i++) {
			row_round_begin(r);
			for (int k = 0; k < 2 * per; k++) {
				/* Alternate sides, the first one too. */
				if ((k + i) % 2 == 0)
					row_base(r, (double)raw_late(tfd, ns));
				else
					row_cfd(r, (double)cfd_late(w, ns));
			}
			row_round_end(r);
		}
	}
	unpin_self();
	cfd_watcher_unref(w);
	close(tfd);
}
