/* SPDX-License-Identifier: MIT */
/*
 * signal-handler.c: cancel from a signal handler.
 *
 * When a signal must keep a handler (it cannot go to a signalfd), the
 * handler may call cfd_token_trigger_async_safe(): it only sets the
 * token's flag, writes its fd and rings the watcher, which then completes
 * the fan-out to children and runs the callbacks on its own thread.
 *
 *   cc signal-handler.c $(pkg-config --cflags --libs cancelfd)
 */
#include <cancelfd.h>
#include <signal.h>
#include <stdio.h>

static struct cfd_token *root;

static void on_sigusr1(int signo)
{
	cfd_token_trigger_async_safe(root, NULL, signo);
}

int main(void)
{
	struct sigaction sa = { .sa_handler = on_sigusr1 };
	struct cfd_watcher *dw;
	struct cfd_token *task;
	int r;

	/* The handler cannot make the default watcher: make it first. */
	if (cfd_watcher_default(&dw) < 0)
		return 1;
	if (cfd_token_new(&root, "root") < 0 ||
	    cfd_token_child(&task, root, "task") < 0)
		return 1;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	raise(SIGUSR1);

	/* root is cancelled already; its child (and any callbacks) are
	 * done by the watcher's thread, soon after. */
	r = cfd_token_wait(task, CFD_SEC(10));
	printf("%s cancelled by %s (signal %d)\n", cfd_token_name(task),
	       cfd_token_name(cfd_token_origin(task)), cfd_token_signal(task));

	cfd_token_unref(task);
	cfd_token_unref(root);
	cfd_watcher_unref(dw);
	return r == 0 ? 0 : 1;
}
