/* SPDX-License-Identifier: MIT */
#ifndef CFD_RUN_H
#define CFD_RUN_H

/*
 * cancelfd-run: shared by the option parser (run-options.c) and the run
 * loop (cancelfd-run.c).
 */

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
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
	int term_signal;       /* -s: sent on timeout (TERM); 0 sends none */
	sigset_t cancel_on;    /* --cancel-on: replaces the default set */
	bool cancel_on_given;
	bool timeout_given; /* -t: no DURATION operand */
	bool verbose;
	bool foreground;
	bool preserve_status;
	char **argv; /* COMMAND [ARG...], NULL-terminated */
};

/* argv[0], as GNU tools name themselves in messages. */
extern const char *run_program;

/* Parse the command line.  Returns -1 to go on and run, or an exit status
 * (0 after --help or --version, 125 after a usage error, reported). */
int run_parse_args(struct run_options *o, int argc, char **argv);

/* The signals that cancel when --cancel-on is not given: HUP, INT, QUIT,
 * TERM, ALRM and the -s signal, as timeout(1) catches them (less those
 * that cannot or must not be caught: KILL, STOP, CHLD, TTIN, TTOU). */
void run_default_signals(const struct run_options *o, sigset_t *set);

/* A DURATION as timeout(1) reads it: a floating point number (strtod(3),
 * in the current locale or else in the C locale) with an optional suffix
 * s, m, h or d; not negative, not NaN.  0 and *ns (rounded up to the next
 * nanosecond; RUN_FOREVER when too large for the clock), or -EINVAL. */
int run_parse_duration(const char *s, int64_t *ns);

/* Whether the first operand after "--" is a DURATION (and not COMMAND): it
 * is a valid DURATION, or it starts like a number (blanks, a sign, then a
 * digit or a '.' and a digit). */
bool run_duration_operand(const char *s);

/* A SIGNAL as timeout(1) reads it: a name with or without "SIG", in any
 * case ("TERM", "sigterm", "RTMIN+2", "RTMAX-1", "EXIT" for 0), or a
 * number (a shell status such as 143 stands for its signal, 15).  The
 * number, 0 included, or -EINVAL. */
int run_parse_signal(const char *s);

/* "TERM", "RTMIN+2", "RTMAX-1", "EXIT" for 0, or the number: into buf,
 * which is returned. */
const char *run_signal_name(int sig, char *buf, size_t size);

/* s quoted as GNU tools quote a file name in a message: 'x' in an 8-bit
 * locale, with \' \\ \n and octal escapes; the typographic quotes in a
 * UTF-8 locale.  Into buf (truncated to size), which is returned. */
const char *run_quote(const char *s, char *buf, size_t size);

#endif
