/* SPDX-License-Identifier: MIT */
/*
 * epoll.c: cancelfd in an epoll loop.
 *
 * The loop watches two fds besides its own work: the watcher's (readable
 * when it has work: call cfd_watcher_dispatch(), which is where timeouts,
 * signals and foreign fds fire) and a token's (readable once the token is
 * cancelled: stop the job).  Here a 20 ms timeout cancels the job.
 *
 *   cc epoll.c $(pkg-config --cflags --libs cancelfd)
 */
#include <cancelfd.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

int main(void)
{
	struct cfd_watcher *w;
	struct cfd_token *job;
	struct epoll_event ev = { .events = EPOLLIN };
	bool running = true;
	int ep, reason;

	if (cfd_watcher_new(&w) < 0 || cfd_token_new(&job, "job") < 0)
		return 1;
	if (cfd_source_add_timeout(NULL, job, w, CFD_MSEC(20)) < 0)
		return 1;

	ep = epoll_create1(EPOLL_CLOEXEC);
	ev.data.ptr = w;
	epoll_ctl(ep, EPOLL_CTL_ADD, cfd_watcher_fd(w), &ev);
	ev.data.ptr = job;
	epoll_ctl(ep, EPOLL_CTL_ADD, cfd_token_fd(job), &ev);

	while (running) {
		struct epoll_event got[8];
		int n = epoll_wait(ep, got, 8, -1);

		for (int i = 0; i < n; i++) {
			if (got[i].data.ptr == w)
				cfd_watcher_dispatch(w); /* never blocks */
			else
				running = false; /* the job was cancelled */
		}
	}
	reason = cfd_token_reason(job);
	printf("job cancelled: %s\n", cfd_reason_name(reason));

	close(ep);
	cfd_token_unref(job);
	cfd_watcher_unref(w);
	return reason == CFD_REASON_TIMEOUT ? 0 : 1;
}
