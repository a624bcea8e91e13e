/* SPDX-License-Identifier: MIT */
/*
 * Quick start: a worker blocked in poll() on a token's fd is cancelled.
 *
 * The seeds' Python quick start, in C: the worker prints "started task",
 * waits on its token, and prints "task cancelled" with the reason and the
 * origin of the cancellation.  Its token is a child of the "demo" token,
 * which main() triggers: the trigger travels down the tree.
 *
 *   cc quickstart.c $(pkg-config --cflags --libs cancelfd) -o quickstart
 */
#include <cancelfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct job {
	struct cfd_token *token;
	int started[2]; /* the worker tells main it is waiting */
};

static void *some_task(void *arg)
{
	struct job *job = arg;
	struct pollfd pfd = { .fd = cfd_token_fd(job->token),
			      .events = POLLIN };

	printf("started task\n");
	fflush(stdout);
	if (write(job->started[1], "s", 1) != 1)
		return NULL;
	/* Any loop can wait on the token: poll, epoll, io_uring, libuv,
	 * GLib.  Never read the fd: poll it. */
	while (poll(&pfd, 1, -1) < 0)
		;
	printf("task cancelled: reason=%s origin=%s message=\"%s\"\n",
	       cfd_reason_name(cfd_token_reason(job->token)),
	       cfd_token_name(cfd_token_origin(job->token)),
	       cfd_token_message(job->token));
	return NULL;
}

int main(void)
{
	struct cfd_token *demo = NULL;
	struct job job = { 0 };
	pthread_t worker;
	char c;
	int r;

	r = cfd_token_new(&demo, "demo");
	if (r == 0)
		r = cfd_token_child(&job.token, demo, "worker");
	if (r == 0 && cfd_token_fd(job.token) < 0)
		r = -1;
	if (r < 0 || pipe(job.started) < 0) {
		fprintf(stderr, "setup failed: %s\n", strerror(r < 0 ? -r : 0));
		return 1;
	}
	pthread_create(&worker, NULL, some_task, &job);
	/* Give the task a moment to start: wait until it says so. */
	if (read(job.started[0], &c, 1) != 1)
		return 1;
	/* Trigger the cancel token: its child, the worker's, triggers too. */
	cfd_token_trigger_msg(demo, "shutting down");
	pthread_join(worker, NULL);
	close(job.started[0]);
	close(job.started[1]);
	cfd_token_unref(job.token);
	cfd_token_unref(demo);
	return 0;
}
