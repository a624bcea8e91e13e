/* SPDX-License-Identifier: MIT */
#ifndef CFD_RUN_H
#define CFD_RUN_H

/*
 * cancelfd-run: shared by the option parser (run-options.c) and the run
 * loop (cancelfd-run.c).
 */

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/* Exit statuses shared with timeout(1). */
#define RUN_EXIT_TIMEDOUT 124
#define RUN_EXIT_CANCELED 125 /* cancelfd-run itself failed */
#define RUN_EXIT_CANNOT_INVOKE 126
#define RUN_EXIT_ENOENT 127

/* A duration too large for the timer: treated as no limit at all. */
#define RUN_FOREVER INT64_MAX

struct run_options {
	int64_t timeout_ns;    /* 0: no timeout */
	int64_t kill_after_ns; /* 0: no KILL */
	sigset_t signals;      /* the signals that cancel */
	bool signals_given;    /* --signal replaced the default set */
	int on_cancel;	       /* sent to COMMAND on cancel */
	bool verbose;
	bool foreground;
	bool preserve_status;
	char **argv; /* COMMAND [ARG...], NULL-terminated */
};

extern const char *run_program;

/* Parse the command line.  Returns -1 to go on and run, or an exit status
 * (0 after --help or --version, 125 after a usage error, reported). */
int run_parse_args(struct run_options *o, int argc, char **argv);

/* "1.5", "200ms", "2m", "0.5h", "1d": 0 and *ns, or -EINVAL.  A value too
 * large to represent gives RUN_FOREVER. */
int run_parse_duration(const char *s, int64_t *ns);

/* "TERM", "SIGTERM", "term", "15", "RTMIN+2": the number, or -EINVAL. */
int run_parse_signal(const char *s);

/* "TERM", "RTMIN+2", or the number: into buf, which is returned. */
const char *run_signal_name(int sig, char *buf, size_t size);

#endif
