/* SPDX-License-Identifier: MIT */
/*
 * glib.c: cancelfd in a GLib main loop, with g_unix_fd_add().
 *
 * One fd source dispatches the watcher; another quits the loop when a
 * token is cancelled (here by a 20 ms timeout).
 *
 *   cc glib.c $(pkg-config --cflags --libs cancelfd glib-2.0)
 */
#include <cancelfd.h>
#include <glib-unix.h>
#include <glib.h>
#include <stdio.h>

static GMainLoop *loop;

static gboolean on_watcher(gint fd, GIOCondition cond, gpointer w)
{
	(void)fd;
	(void)cond;
	cfd_watcher_dispatch(w);
	return G_SOURCE_CONTINUE;
}

static gboolean on_cancelled(gint fd, GIOCondition cond, gpointer job)
{
	(void)fd;
	(void)cond;
	printf("job cancelled: %s\n", cfd_reason_name(cfd_token_reason(job)));
	g_main_loop_quit(loop);
	return G_SOURCE_REMOVE;
}

int main(void)
{
	struct cfd_watcher *w;
	struct cfd_token *job;
	guint watch;
	int reason;

	if (cfd_watcher_new(&w) < 0 || cfd_token_new(&job, "job") < 0)
		return 1;
	cfd_source_add_timeout(NULL, job, w, CFD_MSEC(20));

	loop = g_main_loop_new(NULL, FALSE);
	watch = g_unix_fd_add(cfd_watcher_fd(w), G_IO_IN, on_watcher, w);
	g_unix_fd_add(cfd_token_fd(job), G_IO_IN, on_cancelled, job);
	g_main_loop_run(loop);

	reason = cfd_token_reason(job);
	g_source_remove(watch);
	g_main_loop_unref(loop);
	cfd_token_unref(job);
	cfd_watcher_unref(w);
	return reason == CFD_REASON_TIMEOUT ? 0 : 1;
}
