/* SPDX-License-Identifier: MIT */
#ifndef CFD_TEST_RUN_HELPERS_H
#define CFD_TEST_RUN_HELPERS_H

/*
 * Helpers of the cancelfd-run suites: processes started with exactly the
 * fds, signal mask, dispositions, environment and limits a test gives them,
 * with bounded waits for their output and their end; a /bin/sh script run
 * side by side with timeout(1) and with cancelfd-run; a scratch directory;
 * and the roles this binary plays as COMMAND.  Every wait is bounded and
 * woken by an fd (pipes, fifos, pidfds), never by sleeping.
 */

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "helpers.h"

/* The binary under test (CANCELFD_RUN, set by tests/meson.build), and this
 * one (which doubles as COMMAND: see run_command_role()). */
const char *runner(void);
const char *self_exe(void);

/* ---- processes ---- */

#define OUT_MAX 16384

struct proc {
	pid_t pid;
	int pidfd;
	int out, err; /* read ends of COMMAND's stdout and stderr */
	char outbuf[OUT_MAX], errbuf[OUT_MAX];
	size_t outlen, errlen;
	int status; /* wait status once reaped */
};

struct spawn_opts {
	const char *const *argv;
	const char *const *env; /* "NAME=value" to set, "NAME" to unset */
	const int *fds;		/* pairs: an fd here, its number there; -1 */
	const sigset_t *mask;	/* NULL: nothing blocked */
	const int *ignore;	/* signals set to SIG_IGN; 0 ends */
	int nofile;		/* RLIMIT_NOFILE, or 0 to leave it */
};

/* Start a process in a new process group with stdin /dev/null, stdout and
 * stderr to pipes, the fds asked for and no other (whatever this test
 * process holds, Check's own included, stays here), and no core dumps
 * (COMMAND is killed by QUIT in some cases). */
void spawn(struct proc *p, const struct spawn_opts *o);
/* Collect output until stdout holds `lines` lines (0: until the process
 * exits), for at most ms.  True when that happened in time. */
bool collect(struct proc *p, int lines, int ms);
/* Wait for the end of p (at most ms), reap it, kill whatever is left in
 * its process group, close everything.  Returns its wait status, or -1
 * when it had to be killed. */
int finish(struct proc *p, int ms);

/* Run the runner with args (NULL-terminated), no CANCELFD, LC_ALL=C;
 * return its wait status. */
int run_args(struct proc *p, const char *const *args);
/* The same, and its status as a shell shows it must be `status` (a
 * process that the runner's KILL to its own group ended too is 137), and
 * its stderr must hold err (unless NULL). */
void expect_exit(const char *const *args, int status, const char *err);

/* ---- a scratch directory per test ---- */

/* A fixture (tcase_add_checked_fixture()): a scratch directory with a
 * fifo and the files the side-by-side scripts need.  mark: a file that a
 * command that must not run would create. */
void scratch_setup(void);
void scratch_teardown(void);
extern char mark[128];

/* ---- the side-by-side scripts ---- */

/*
 * A script runs twice: with "$T" timeout, then with "$T" cancelfd-run
 * (run_script instead, for a difference that needs another script to
 * show).  In the scripts: "$R" is cancelfd-run; "$H" this binary, which
 * run as `"$H" --signals UNTIL ACTION "$F"` writes its pid to the fifo
 * "$F", then reports each signal it receives on the fifo, and the first of
 * each kind on stdout ("got TERM"; a runner that signals both COMMAND and
 * its group may deliver one twice), until UNTIL ("any" signal, "TERM",
 * "TERM:2" for the second, or "none"), when it dies by it (die) or exits
 * (exit:K); $L starts
 * a program with INT and QUIT at their defaults (sh ignores them for a
 * background job); "$MARK" is a file that a command must not create,
 * "$NX" a file that is not executable, "$NS" an executable script without
 * "#!".  `wait $! 2>/dev/null`: dash reports a job killed by a signal on
 * its stderr, or not, depending on when it reaps it.
 */
struct side_by_side {
	const char *what;
	const char *script, *run_script;
	int status;	     /* timeout's, and cancelfd-run's unless why */
	int run_status;	     /* cancelfd-run's, if why */
	const char *out;     /* expected stdout (both), or NULL: the same */
	const char *run_out; /* cancelfd-run's stdout, if why */
	unsigned flags;
	const char *cause; /* in cancelfd-run's stderr (--verbose) */
	const char *why;   /* a documented difference */
};

#define NOT_RUN (1u << 0)	 /* 125, and the command did not run */
#define UTF8 (1u << 1)		 /* LC_ALL=C.UTF-8 rather than C */
#define STDOUT_DIFFERS (1u << 2) /* --help, --version */
#define STDERR_DIFFERS (1u << 3) /* a documented difference */

#define SAME(w, s, st)                               \
	{                                            \
		.what = w, .script = s, .status = st \
	}
#define SAME_OUT(w, s, st, o)                                  \
	{                                                      \
		.what = w, .script = s, .status = st, .out = o \
	}
#define VERBOSE(w, s, st, c)                                     \
	{                                                        \
		.what = w, .script = s, .status = st, .cause = c \
	}
#define BAD(w, s)                                                       \
	{                                                               \
		.what = w, .script = s, .status = 125, .flags = NOT_RUN \
	}

/* Start "$H" under the runner and read its pid, once it runs. */
#define UP(runner_args, until, action)                                      \
	runner_args " \"$H\" --signals " until " " action " \"$F\" & exec " \
		    "3<\"$F\"; read pid <&3; "

/* Run c's script with timeout(1) and with cancelfd-run, in the scratch
 * directory, and check that both give what c says; every failure names
 * c->what. */
void check_side_by_side(const struct side_by_side *c);

/* ---- this binary as COMMAND ---- */

/*
 * main() of a cancelfd-run suite: make()'s suite (t_run_suite()), unless
 * argv[1] names a role of this binary as COMMAND: --fdlist (print the
 * open fds, CANCELFD, what it is and the signal state), --token-wait (stop
 * on the CANCELFD token, not on signals: 42 when it was cancelled), or
 * --signals UNTIL ACTION FIFO (see the side-by-side scripts).
 */
int run_main(int argc, char **argv, Suite *(*make)(void));

#endif
