/* SPDX-License-Identifier: MIT */
/*
 * Three processes, one tree of tokens: root -> middle -> leaf, each started
 * by exec with its parent's token in CANCELFD and its deadline in
 * CANCELFD_DEADLINE.  The root gives the job 30 seconds, then cancels it
 * with a message and a code; the leaf prints what it was told: the time it
 * had, and the root's cause, two processes up.
 *
 *   $ build/tools/examples/example-process-tree
 *   leaf: 30.0 s to go
 *   leaf: cancelled: manual "shutting down" (code 503)
 *         remote, from example-process-tree[4711]/job, 0.0 s ago
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Run this program again as ROLE, with tok in its environment; the child's
 * pid, or -1. */
static pid_t spawn(struct cfd_token *tok, const char *role)
{
	int fd = cfd_token_export_env(tok, NULL);
	pid_t pid;

	if (fd < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		execl("/proc/self/exe", "process-tree", role, (char *)NULL);
		_exit(127);
	}
	unsetenv(CFD_ENV);
	unsetenv(CFD_ENV_DEADLINE);
	close(fd);
	return pid;
}

static int wait_for(pid_t pid)
{
	int status;

	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return 1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* The leaf: tells the root it is ready, waits, says why. */
static int leaf(void)
{
	const char *ready = getenv("PROCESS_TREE_READY");
	struct cfd_token *tok;

	if (!ready || cfd_token_from_env(&tok, "leaf", NULL) < 0)
		return 1;
	printf("leaf: %.1f s to go\n", cfd_token_remaining(tok) / 1e9);
	fflush(stdout);
	if (write(atoi(ready), "r", 1) != 1 ||
	    cfd_token_wait(tok, CFD_SEC(60)) < 0)
		return 1;
	printf("leaf: cancelled: %s \"%s\" (code %d)\n",
	       cfd_reason_name(cfd_token_reason(tok)), cfd_token_message(tok),
	       cfd_token_code(tok));
	printf("      %s, from %s, %.1f s ago\n",
	       cfd_token_remote(tok) ? "remote" : "local",
	       cfd_token_origin_path(tok),
	       (now_ns() - cfd_token_trigger_time(tok)) / 1e9);
	cfd_token_unref(tok);
	return 0;
}

/* The middle: its own step under the job, passed on to the leaf. */
static int middle(void)
{
	struct cfd_token *job, *step;
	int r;

	if (cfd_token_from_env(&job, "job", NULL) < 0 ||
	    cfd_token_child(&step, job, "step") < 0)
		return 1;
	r = wait_for(spawn(step, "leaf"));
	cfd_token_unref(step);
	cfd_token_unref(job);
	return r;
}

int main(int argc, char **argv)
{
	struct cfd_token *job;
	int ready[2], r;
	char c, num[16];
	pid_t pid;

	if (argc > 1 && strcmp(argv[1], "leaf") == 0)
		return leaf();
	if (argc > 1 && strcmp(argv[1], "middle") == 0)
		return middle();

	/* The root.  The leaf says "ready" through a pipe it inherits. */
	if (pipe(ready) < 0)
		return 1;
	snprintf(num, sizeof(num), "%d", ready[1]);
	setenv("PROCESS_TREE_READY", num, 1);
	if (cfd_token_new(&job, "job") < 0 ||
	    cfd_source_add_timeout(NULL, job, NULL, CFD_SEC(30)) < 0)
		return 1;
	pid = spawn(job, "middle");
	close(ready[1]);
	if (pid < 0 || read(ready[0], &c, 1) != 1)
		return 1;
	cfd_token_trigger_code(job, 503, "shutting down");
	r = wait_for(pid);
	close(ready[0]);
	cfd_token_unref(job);
	return r;
}
