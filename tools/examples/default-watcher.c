/* SPDX-License-Identifier: MIT */
/*
 * default-watcher.c: graceful shutdown with the default watcher.
 *
 * Passing NULL as the watcher means the process-wide default watcher,
 * which runs on its own thread from first use.  The application's token
 * is cancelled by SIGTERM or SIGINT, or after a time limit; the server
 * loop waits on the token's fd; cleanup then runs under a fresh token (a
 * child of the cancelled one would be born cancelled).
 *
 * Here the program sends itself SIGTERM, as an orchestrator would.
 *
 *   cc default-watcher.c $(pkg-config --cflags --libs cancelfd)
 */
#include <cancelfd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	struct cfd_token *app, *cleanup;
	const int shutdown[] = { SIGTERM, SIGINT };
	struct pollfd p;
	int reason, signo;

	/* First thing in main, before any thread exists: signals read from a
	 * signalfd must be blocked in every thread. */
	if (cfd_signals_block(shutdown, 2) < 0)
		return 1;

	if (cfd_token_new(&app, "application") < 0)
		return 1;
	cfd_source_add_signals(NULL, app, NULL, shutdown, 2);
	cfd_source_add_timeout(NULL, app, NULL, CFD_SEC(60));

	kill(getpid(), SIGTERM); /* "docker stop" */

	/* run_server(): here, just wait until cancelled */
	p = (struct pollfd){ .fd = cfd_token_fd(app), .events = POLLIN };
	poll(&p, 1, -1);
	reason = cfd_token_reason(app);
	signo = cfd_token_signal(app);
	printf("shutting down: %s %d\n", cfd_reason_name(reason), signo);

	/* Cleanup, shielded from the cancellation: a fresh token with its
	 * own deadline. */
	if (cfd_token_new(&cleanup, "cleanup") < 0)
		return 1;
	cfd_source_add_timeout(NULL, cleanup, NULL, CFD_SEC(5));
	if (cfd_token_check(cleanup) == 0)
		printf("state saved\n");

	cfd_token_unref(cleanup);
	cfd_token_unref(app);
	return reason == CFD_REASON_SIGNAL && signo == SIGTERM ? 0 : 1;
}
