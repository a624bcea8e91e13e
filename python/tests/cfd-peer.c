/* SPDX-License-Identifier: MIT */
/*
 * cfd-peer: the C side of the Python package's cross-process tests.
 *
 *   cfd-peer wait MS
 *	takes its token from CANCELFD (cfd_token_from_env) and waits for it
 *	for at most MS milliseconds; prints "cancelled reason=R" and exits 0
 *	when it triggers, prints "timed out" and exits 1 otherwise.
 *
 *   cfd-peer run MS MESSAGE COMMAND [ARG]...
 *	runs COMMAND with a token of its own in CANCELFD, triggers that
 *	token with MESSAGE after MS milliseconds, and exits with COMMAND's
 *	status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cancelfd.h>

static int do_wait(long ms)
{
	struct cfd_token *tok;
	int r = cfd_token_from_env(&tok, "c-peer", NULL);

	if (r < 0) {
		fprintf(stderr, "cfd-peer: CANCELFD: %s\n", strerror(-r));
		return 2;
	}
	r = cfd_token_wait(tok, CFD_MSEC(ms));
	if (r == 0)
		printf("cancelled reason=%s\n",
		       cfd_reason_name(cfd_token_reason(tok)));
	else
		printf("timed out\n");
	fflush(stdout);
	cfd_token_unref(tok);
	return r == 0 ? 0 : 1;
}

static int do_run(long ms, const char *message, char **argv)
{
	struct timespec delay = { ms / 1000, (ms % 1000) * 1000000 };
	struct cfd_token *tok;
	char num[16];
	int fd, status;
	pid_t pid;

	if (cfd_token_new(&tok, "c-parent") < 0)
		return 2;
	fd = cfd_token_export_fd(tok, NULL, CFD_EXPORT_INHERIT);
	if (fd < 0)
		return 2;
	snprintf(num, sizeof(num), "%d", fd);
	/* Set before the fork: this process has no other thread, but the
	 * child may not be the only user of the environment. */
	setenv(CFD_ENV, num, 1);
	pid = fork();
	if (pid < 0)
		return 2;
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	unsetenv(CFD_ENV);
	close(fd);
	nanosleep(&delay, NULL);
	cfd_token_trigger_msg(tok, message);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	cfd_token_unref(tok);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "wait") == 0)
		return do_wait(atol(argv[2]));
	if (argc >= 5 && strcmp(argv[1], "run") == 0)
		return do_run(atol(argv[2]), argv[3], argv + 4);
	fprintf(stderr,
		"usage: cfd-peer wait MS | run MS MESSAGE COMMAND...\n");
	return 2;
}
