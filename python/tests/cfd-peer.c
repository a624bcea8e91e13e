/* SPDX-License-Identifier: MIT */
/*
 * cfd-peer: the C side of the Python package's cross-process tests.
 *
 *   cfd-peer wait MS
 *	takes its token from CANCELFD (cfd_token_from_env) and waits for it
 *	for at most MS milliseconds; prints "cancelled reason=R" and exits 0
 *	when it triggers, prints "timed out" and exits 1 otherwise.
 *
 *   cfd-peer cause MS
 *	takes its token from CANCELFD and CANCELFD_DEADLINE, prints
 *	"remaining=N" (milliseconds) or "remaining=none", waits as wait
 *	does, and prints the cause on one line:
 *	"reason=R code=C remote=0|1 pid=P path=PATH message=MESSAGE"
 *	(PATH and MESSAGE "-" when there is none; MESSAGE last).
 *
 *   cfd-peer run [-c CODE] [-d MS] [-g] MS MESSAGE COMMAND [ARG]...
 *	runs COMMAND with a token of its own in CANCELFD (and its deadline
 *	in CANCELFD_DEADLINE: cfd_token_export_env), triggers that token
 *	with MESSAGE (and CODE) after MS milliseconds, and exits with
 *	COMMAND's status.  -d gives the token a timeout of MS milliseconds
 *	first, so that it has a deadline; -g frees the token untriggered
 *	after MS milliseconds instead (the child sees it gone); a negative
 *	MS does neither, and frees the token once COMMAND has ended.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
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

static const char *or_dash(const char *s)
{
	return s ? s : "-";
}

static int do_cause(long ms)
{
	struct cfd_token *tok;
	int64_t left;
	int r = cfd_token_from_env(&tok, "c-peer", NULL);

	if (r < 0) {
		fprintf(stderr, "cfd-peer: CANCELFD: %s\n", strerror(-r));
		return 2;
	}
	left = cfd_token_remaining(tok);
	if (left == CFD_NO_DEADLINE)
		printf("remaining=none\n");
	else
		printf("remaining=%lld\n", (long long)(left / 1000000));
	fflush(stdout);
	r = cfd_token_wait(tok, CFD_MSEC(ms));
	if (r == 0)
		printf(
		    "reason=%s code=%d remote=%d pid=%d path=%s message=%s\n",
		    cfd_reason_name(cfd_token_reason(tok)), cfd_token_code(tok),
		    cfd_token_remote(tok), cfd_token_origin_pid(tok),
		    or_dash(cfd_token_origin_path(tok)),
		    or_dash(cfd_token_message(tok)));
	else
		printf("timed out\n");
	fflush(stdout);
	cfd_token_unref(tok);
	return r == 0 ? 0 : 1;
}

static int do_run(int argc, char **argv)
{
	struct timespec delay;
	struct cfd_token *tok;
	long ms, code = 0, deadline_ms = -1;
	const char *message;
	bool gone = false;
	int fd, status, opt;
	pid_t pid;

	/* "+": the options end at the first operand, before COMMAND's. */
	while ((opt = getopt(argc, argv, "+c:d:g")) != -1) {
		if (opt == 'c')
			code = atol(optarg);
		else if (opt == 'd')
			deadline_ms = atol(optarg);
		else if (opt == 'g')
			gone = true;
		else
			return 2;
	}
	if (argc - optind < 3)
		return 2;
	ms = atol(argv[optind]);
	message = argv[optind + 1];
	argv += optind + 2;
	delay = (struct timespec){ ms / 1000, (ms % 1000) * 1000000 };

	if (cfd_token_new(&tok, "c-parent") < 0)
		return 2;
	if (deadline_ms >= 0 &&
	    cfd_source_add_timeout(NULL, tok, NULL, CFD_MSEC(deadline_ms)) < 0)
		return 2;
	/* Set before the fork (the watcher is a thread: no setenv between
	 * fork and exec), removed after. */
	fd = cfd_token_export_env(tok, NULL);
	if (fd < 0)
		return 2;
	pid = fork();
	if (pid < 0)
		return 2;
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	unsetenv(CFD_ENV);
	unsetenv(CFD_ENV_DEADLINE);
	close(fd);
	if (ms >= 0) {
		nanosleep(&delay, NULL);
		if (gone)
			tok = cfd_token_unref(tok);
		else
			cfd_token_trigger_code(tok, (int)code, message);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	cfd_token_unref(tok);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "wait") == 0)
		return do_wait(atol(argv[2]));
	if (argc == 3 && strcmp(argv[1], "cause") == 0)
		return do_cause(atol(argv[2]));
	if (argc >= 2 && strcmp(argv[1], "run") == 0)
		return do_run(argc - 1, argv + 1);
	fprintf(stderr, "usage: cfd-peer wait MS | cause MS | "
			"run [-c CODE] [-d MS] MS MESSAGE COMMAND...\n");
	return 2;
}
