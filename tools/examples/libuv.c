/* SPDX-License-Identifier: MIT */
/*
 * libuv.c: cancelfd in a libuv loop, with uv_poll_t.
 *
 * One uv_poll_t on the watcher's fd dispatches it; another on a token's fd
 * ends the job when the token is cancelled (here by a 20 ms timeout).
 *
 *   cc libuv.c $(pkg-config --cflags --libs cancelfd libuv)
 */
#include <cancelfd.h>
#include <stdio.h>
#include <uv.h>

static struct cfd_watcher *w;
static uv_poll_t watcher_poll, token_poll;

static void on_watcher(uv_poll_t *h, int status, int events)
{
	(void)h;
	(void)status;
	if (events & UV_READABLE)
		cfd_watcher_dispatch(w);
}

static void on_cancelled(uv_poll_t *h, int status, int events)
{
	struct cfd_token *job = h->data;

	(void)status;
	(void)events;
	printf("job cancelled: %s\n", cfd_reason_name(cfd_token_reason(job)));
	/* no more handles: uv_run() returns */
	uv_close((uv_handle_t *)&watcher_poll, NULL);
	uv_close((uv_handle_t *)&token_poll, NULL);
}

int main(void)
{
	uv_loop_t *loop = uv_default_loop();
	struct cfd_token *job;
	int reason;

	if (cfd_watcher_new(&w) < 0 || cfd_token_new(&job, "job") < 0)
		return 1;
	cfd_source_add_timeout(NULL, job, w, CFD_MSEC(20));

	uv_poll_init(loop, &watcher_poll, cfd_watcher_fd(w));
	uv_poll_start(&watcher_poll, UV_READABLE, on_watcher);
	uv_poll_init(loop, &token_poll, cfd_token_fd(job));
	token_poll.data = job;
	uv_poll_start(&token_poll, UV_READABLE, on_cancelled);
	uv_run(loop, UV_RUN_DEFAULT);

	reason = cfd_token_reason(job);
	uv_loop_close(loop);
	cfd_token_unref(job);
	cfd_watcher_unref(w);
	return reason == CFD_REASON_TIMEOUT ? 0 : 1;
}
