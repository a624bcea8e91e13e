/* SPDX-License-Identifier: MIT */
/*
 * cancelfd-run: the command line, durations and signal names.
 *
 * Durations are parsed as exact decimals into nanoseconds (no floating
 * point rounding); signal names are those of kill(1), with or without
 * "SIG", in any case.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "run.h"

#ifndef CFD_VERSION
#define CFD_VERSION "unknown"
#endif

const char *run_program = "cancelfd-run";

/* ---- durations ---- */

int run_parse_duration(const char *s, int64_t *ns)
{
	static const struct {
		const char *suffix;
		int64_t ns; /* per unit; a multiple of 10^6 */
	} units[] = {
		{ "", 1000000000 },
		{ "s", 1000000000 },
		{ "ms", 1000000 },
		{ "m", 60 * (int64_t)1000000000 },
		{ "h", 3600 * (int64_t)1000000000 },
		{ "d", 86400 * (int64_t)1000000000 },
	};
	uint64_t whole = 0, frac = 0;
	int frac_digits = 0, digits = 0;
	bool overflow = false;
	int64_t unit = -1, r;
	const char *p = s;

	if (!s)
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++, digits++) {
		if (whole > (UINT64_MAX - 9) / 10)
			overflow = true;
		else
			whole = whole * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
			/* Nine digits of a unit are finer than 1 ns for every
			 * unit but the day, where they are 86.4 us. */
			if (frac_digits < 9) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				frac_digits++;
			}
		}
	}
	if (digits == 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(p, units[i].suffix) == 0)
			unit = units[i].ns;
	if (unit < 0)
		return -EINVAL;
	if (overflow || whole > (uint64_t)(INT64_MAX / unit)) {
		*ns = RUN_FOREVER;
		return 0;
	}
	r = (int64_t)whole * unit;
	/* frac < 10^frac_digits and unit / 10^6 < 10^8: no overflow. */
	if (frac_digits > 0) {
		int64_t f = (int64_t)frac * (unit / 1000000);

		for (int d = frac_digits; d < 6; d++)
			f *= 10;
		for (int d = 6; d < frac_digits; d++)
			f /= 10;
		if (r > INT64_MAX - f) {
			*ns = RUN_FOREVER;
			return 0;
		}
		r += f;
	}
	*ns = r;
	return 0;
}

/* ---- signals ---- */

static const struct {
	const char *name;
	int sig;
} signal_names[] = {
	{ "HUP", SIGHUP },
	{ "INT", SIGINT },
	{ "QUIT", SIGQUIT },
	{ "ILL", SIGILL },
	{ "TRAP", SIGTRAP },
	{ "ABRT", SIGABRT },
	{ "BUS", SIGBUS },
	{ "FPE", SIGFPE },
	{ "KILL", SIGKILL },
	{ "USR1", SIGUSR1 },
	{ "SEGV", SIGSEGV },
	{ "USR2", SIGUSR2 },
	{ "PIPE", SIGPIPE },
	{ "ALRM", SIGALRM },
	{ "TERM", SIGTERM },
	{ "STKFLT", SIGSTKFLT },
	{ "CHLD", SIGCHLD },
	{ "CONT", SIGCONT },
	{ "STOP", SIGSTOP },
	{ "TSTP", SIGTSTP },
	{ "TTIN", SIGTTIN },
	{ "TTOU", SIGTTOU },
	{ "URG", SIGURG },
	{ "XCPU", SIGXCPU },
	{ "XFSZ", SIGXFSZ },
	{ "VTALRM", SIGVTALRM },
	{ "PROF", SIGPROF },
	{ "WINCH", SIGWINCH },
	{ "IO", SIGIO },
	{ "PWR", SIGPWR },
	{ "SYS", SIGSYS },
	/* Aliases, after the names printed. */
	{ "IOT", SIGIOT },
	{ "CLD", SIGCHLD },
	{ "POLL", SIGPOLL },
};

#define NSIGNAMES (sizeof(signal_names) / sizeof(signal_names[0]))

/* A decimal number with nothing else, no sign, no spaces; -1 if not. */
static int parse_small_number(const char *s)
{
	int v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > 1000)
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v;
}

int run_parse_signal(const char *s)
{
	int n;

	if (!s)
		return -EINVAL;
	n = parse_small_number(s);
	if (n >= 0) {
		/* 32 and 33 are the C library's own (between SIGSYS and
		 * SIGRTMIN): not for users. */
		if (n < 1 || n >= _NSIG || (n > SIGSYS && n < SIGRTMIN))
			return -EINVAL;
		return n;
	}
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < NSIGNAMES; i++)
		if (strcasecmp(s, signal_names[i].name) == 0)
			return signal_names[i].sig;
	if (strncasecmp(s, "RTMIN", 5) == 0 ||
	    strncasecmp(s, "RTMAX", 5) == 0) {
		bool min = strncasecmp(s, "RTMIN", 5) == 0;
		int base = min ? SIGRTMIN : SIGRTMAX;

		if (s[5] == '\0')
			return base;
		if (s[5] != (min ? '+' : '-'))
			return -EINVAL;
		n = parse_small_number(s + 6);
		if (n < 0 || n > SIGRTMAX - SIGRTMIN)
			return -EINVAL;
		return min ? base + n : base - n;
	}
	return -EINVAL;
}

const char *run_signal_name(int sig, char *buf, size_t size)
{
	for (size_t i = 0; i < NSIGNAMES; i++)
		if (signal_names[i].sig == sig) {
			snprintf(buf, size, "%s", signal_names[i].name);
			return buf;
		}
	if (sig == SIGRTMIN)
		snprintf(buf, size, "RTMIN");
	else if (sig > SIGRTMIN && sig <= SIGRTMAX)
		snprintf(buf, size, "RTMIN+%d", sig - SIGRTMIN);
	else
		snprintf(buf, size, "%d", sig);
	return buf;
}

/* ---- the command line ---- */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: %s [OPTION]... [--] COMMAND [ARG]...\n"
	    "Run COMMAND under a cancellation token, and stop it when the "
	    "token is\n"
	    "cancelled: by a timeout, by a signal, or by the token this "
	    "program\n"
	    "inherited through CANCELFD.  COMMAND inherits a watch-only "
	    "token fd\n"
	    "through CANCELFD, so that nested runs and programs using "
	    "libcancelfd\n"
	    "are cancelled with it.\n"
	    "\n"
	    "  -t, --timeout=DURATION   cancel after DURATION (0: never, "
	    "the default)\n"
	    "  -k, --kill-after=DURATION\n"
	    "                           send KILL if COMMAND still runs "
	    "this long\n"
	    "                             after the cancel signal\n"
	    "      --signal=SIGNAL      cancel when SIGNAL is received; "
	    "repeat for more;\n"
	    "                             replaces the default set: INT, "
	    "TERM, HUP\n"
	    "      --on-cancel=SIGNAL   send SIGNAL to COMMAND on cancel "
	    "(default TERM)\n"
	    "  -v, --verbose            say on stderr what cancelled, and "
	    "when\n"
	    "      --foreground         signal COMMAND alone, not its "
	    "process group,\n"
	    "                             and stay in the caller's process "
	    "group\n"
	    "      --preserve-status    exit with COMMAND's status even "
	    "after a timeout\n"
	    "  -h, --help               display this help and exit\n"
	    "      --version            output version information and "
	    "exit\n"
	    "\n"
	    "DURATION is a decimal number with an optional suffix: 'ms', "
	    "'s' (the\n"
	    "default), 'm', 'h' or 'd'.  SIGNAL is a name such as TERM or "
	    "SIGTERM,\n"
	    "or a number.\n"
	    "\n"
	    "Exit status, as timeout(1):\n"
	    "  124  if the timeout cancelled COMMAND, and --preserve-status "
	    "is not given\n"
	    "  125  if cancelfd-run itself fails (bad option, bad "
	    "CANCELFD, ...)\n"
	    "  126  if COMMAND is found but cannot be invoked\n"
	    "  127  if COMMAND cannot be found\n"
	    "  137  if COMMAND (or cancelfd-run itself) is sent KILL\n"
	    "  -    the exit status of COMMAND otherwise (128+N if a signal "
	    "N ended it)\n",
	    run_program);
}

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "%s: ", run_program);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry '%s --help' for more information.\n",
		run_program);
	return RUN_EXIT_CANCELED;
}

enum {
	OPT_SIGNAL = 256,
	OPT_ON_CANCEL,
	OPT_FOREGROUND,
	OPT_PRESERVE,
	OPT_VERSION,
};

static const struct option long_options[] = {
	{ "timeout", required_argument, NULL, 't' },
	{ "kill-after", required_argument, NULL, 'k' },
	{ "signal", required_argument, NULL, OPT_SIGNAL },
	{ "on-cancel", required_argument, NULL, OPT_ON_CANCEL },
	{ "verbose", no_argument, NULL, 'v' },
	{ "foreground", no_argument, NULL, OPT_FOREGROUND },
	{ "preserve-status", no_argument, NULL, OPT_PRESERVE },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

/* --signal: one signal, or a comma-separated list of them. */
static int add_watched(struct run_options *o, const char *arg)
{
	char buf[256], *save = NULL, *tok;
	int n = 0;

	if (strlen(arg) >= sizeof(buf))
		return usage_error("invalid signal list '%s'", arg);
	snprintf(buf, sizeof(buf), "%s", arg);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save), n++) {
		int sig = run_parse_signal(tok);

		if (sig < 0)
			return usage_error("invalid signal '%s'", tok);
		if (sig == SIGKILL || sig == SIGSTOP)
			return usage_error("cannot watch signal '%s': it "
					   "cannot be caught",
					   tok);
		sigaddset(&o->signals, sig);
	}
	if (n == 0)
		return usage_error("invalid signal list '%s'", arg);
	return -1;
}

int run_parse_args(struct run_options *o, int argc, char **argv)
{
	int c, r;

	memset(o, 0, sizeof(*o));
	sigemptyset(&o->signals);
	o->on_cancel = SIGTERM;
	opterr = 0;
	/* '+': stop at the first operand, so that COMMAND's own options
	 * are left alone even without "--". */
	while ((c = getopt_long(argc, argv, "+:t:k:vh", long_options, NULL)) !=
	       -1) {
		switch (c) {
		case 't':
		case 'k':
			if (run_parse_duration(optarg, c == 't'
							   ? &o->timeout_ns
							   : &o->kill_after_ns))
				return usage_error("invalid time interval "
						   "'%s'",
						   optarg);
			break;
		case OPT_SIGNAL:
			o->signals_given = true;
			r = add_watched(o, optarg);
			if (r >= 0)
				return r;
			break;
		case OPT_ON_CANCEL:
			o->on_cancel = run_parse_signal(optarg);
			if (o->on_cancel < 0)
				return usage_error("invalid signal '%s'",
						   optarg);
			break;
		case 'v':
			o->verbose = true;
			break;
		case OPT_FOREGROUND:
			o->foreground = true;
			break;
		case OPT_PRESERVE:
			o->preserve_status = true;
			break;
		case 'h':
			usage(stdout);
			return fflush(stdout) == 0 ? 0 : RUN_EXIT_CANCELED;
		case OPT_VERSION:
			printf("cancelfd-run (cancelfd) %s\n", CFD_VERSION);
			return fflush(stdout) == 0 ? 0 : RUN_EXIT_CANCELED;
		case ':':
			return usage_error("option '%s' requires an argument",
					   argv[optind - 1]);
		default:
			if (optopt) {
				char opt[2] = { (char)optopt, '\0' };

				return usage_error("invalid option -- '%s'",
						   opt);
			}
			return usage_error("unrecognized option '%s'",
					   argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("%s", "missing COMMAND");
	if (!o->signals_given) {
		sigaddset(&o->signals, SIGINT);
		sigaddset(&o->signals, SIGTERM);
		sigaddset(&o->signals, SIGHUP);
	}
	o->argv = argv + optind;
	return -1;
}
