/* SPDX-License-Identifier: MIT */
/*
 * poll.c: cancelfd in a poll() loop.
 *
 * A job serves requests from a pipe until its token is cancelled, here by a
 * 20 ms deadline.  The loop polls the requests, the watcher's fd (dispatch
 * when it is readable) and the token's fd (readable once cancelled).
 *
 *   cc poll.c $(pkg-config --cflags --libs cancelfd)
 */
#include <cancelfd.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int64_t now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return CFD_SEC(ts.tv_sec) + ts.tv_nsec;
}

int main(void)
{
	struct cfd_watcher *w;
	struct cfd_token *job;
	int requests[2], served = 0, reason;

	if (cfd_watcher_new(&w) < 0 || cfd_token_new(&job, "job") < 0)
		return 1;
	if (pipe(requests) < 0 || write(requests[1], "abc", 3) != 3)
		return 1;
	/* An absolute deadline on CLOCK_MONOTONIC */
	cfd_source_add_deadline(NULL, job, w, now() + CFD_MSEC(20));

	for (;;) {
		struct pollfd p[3] = {
			{ .fd = requests[0], .events = POLLIN },
			{ .fd = cfd_watcher_fd(w), .events = POLLIN },
			{ .fd = cfd_token_fd(job), .events = POLLIN },
		};
		char c;

		poll(p, 3, -1);
		if (p[2].revents)
			break; /* cancelled */
		if (p[1].revents)
			cfd_watcher_dispatch(w);
		if ((p[0].revents & POLLIN) && read(requests[0], &c, 1) == 1)
			served++;
	}
	reason = cfd_token_reason(job);
	printf("served %d requests, then cancelled: %s\n", served,
	       cfd_reason_name(reason));

	close(requests[0]);
	close(requests[1]);
	cfd_token_unref(job);
	cfd_watcher_unref(w);
	return served == 3 && reason == CFD_REASON_TIMEOUT ? 0 : 1;
}
