/* SPDX-License-Identifier: MIT */
/*
 * cancelfd-run: the command line, durations, signal names and quoting.
 *
 * Everything a script can say to timeout(1) means the same here, down to
 * the messages: a DURATION is read with strtod(3) and rounded up to the
 * next nanosecond, a SIGNAL by the rules of coreutils (shell statuses such
 * as 143 included), options by getopt_long(3) stopping at the first
 * operand, and names in messages are quoted as GNU tools quote them.  The
 * extensions (-t, --cancel-on, --on-cancel, -h) are command lines that
 * timeout(1) rejects.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <langinfo.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>
#include <wctype.h>

#include "run.h"

#ifndef CFD_VERSION
#define CFD_VERSION "unknown"
#endif

const char *run_program = "cancelfd-run";

/* ---- durations ---- */

/* strtod in the current locale, or in the C locale when that reads more
 * of s (as coreutils' cl_strtod: "1.5" works in a locale whose decimal
 * separator is a comma). */
static double cl_strtod(const char *s, char **end)
{
	double d = strtod(s, end);

	if (**end) {
		int saved = errno;
		locale_t c = newlocale(LC_ALL_MASK, "C", (locale_t)0);

		if (c) {
			char *c_end;
			double cd = strtod_l(s, &c_end, c);

			if (*end < c_end) {
				d = cd;
				*end = c_end;
			} else {
				errno = saved;
			}
			freelocale(c);
		}
	}
	return d;
}

int run_parse_duration(const char *s, int64_t *ns)
{
	double d, frac;
	char *end;
	int64_t sec, n;
	int mult;

	if (!s)
		return -EINVAL;
	errno = 0;
	d = cl_strtod(s, &end);
	/* Nothing read is an error; an overflow (ERANGE, HUGE_VAL) is no
	 * limit and an underflow is 0, as with timeout(1). */
	if (end == s && errno != ERANGE)
		return -EINVAL;
	if (!(d >= 0)) /* negative, or NaN */
		return -EINVAL;
	if (end[0] && end[1])
		return -EINVAL;
	switch (end[0]) {
	case '\0':
	case 's':
		mult = 1;
		break;
	case 'm':
		mult = 60;
		break;
	case 'h':
		mult = 60 * 60;
		break;
	case 'd':
		mult = 60 * 60 * 24;
		break;
	default:
		return -EINVAL;
	}
	d *= mult;
	/* 285 years and more (infinity too): no clock gets there. */
	if (!(d < 9e9)) {
		*ns = RUN_FOREVER;
		return 0;
	}
	/* Rounded up to the next nanosecond, as gnulib's dtotimespec(). */
	sec = (int64_t)d;
	frac = 1e9 * (d - (double)sec);
	n = (int64_t)frac;
	n += (double)n < frac;
	*ns = sec * 1000000000 + n;
	return 0;
}

bool run_duration_operand(const char *s)
{
	int64_t ns;

	if (run_parse_duration(s, &ns) == 0)
		return true;
	while (*s && strchr(" \t\n\v\f\r", *s))
		s++;
	if (*s == '+' || *s == '-')
		s++;
	if (*s == '.')
		s++;
	return *s >= '0' && *s <= '9';
}

/* ---- signals ---- */

/* The names of coreutils (gnulib's sig2str), in its order: the first name
 * of a number is the one printed. */
static const struct {
	const char *name;
	int sig;
} signal_names[] = {
	{ "HUP", SIGHUP },	 { "INT", SIGINT },	{ "QUIT", SIGQUIT },
	{ "ILL", SIGILL },	 { "TRAP", SIGTRAP },	{ "ABRT", SIGABRT },
	{ "FPE", SIGFPE },	 { "KILL", SIGKILL },	{ "SEGV", SIGSEGV },
	{ "BUS", SIGBUS },	 { "PIPE", SIGPIPE },	{ "ALRM", SIGALRM },
	{ "TERM", SIGTERM },	 { "USR1", SIGUSR1 },	{ "USR2", SIGUSR2 },
	{ "CHLD", SIGCHLD },	 { "URG", SIGURG },	{ "STOP", SIGSTOP },
	{ "TSTP", SIGTSTP },	 { "CONT", SIGCONT },	{ "TTIN", SIGTTIN },
	{ "TTOU", SIGTTOU },	 { "SYS", SIGSYS },	{ "POLL", SIGPOLL },
	{ "VTALRM", SIGVTALRM }, { "PROF", SIGPROF },	{ "XCPU", SIGXCPU },
	{ "XFSZ", SIGXFSZ },	 { "IOT", SIGIOT },	{ "CLD", SIGCHLD },
	{ "PWR", SIGPWR },	 { "WINCH", SIGWINCH }, { "IO", SIGIO },
	{ "STKFLT", SIGSTKFLT }, { "EXIT", 0 },
};

#define NSIGNAMES (sizeof(signal_names) / sizeof(signal_names[0]))

/* A number that has a name: 0 to 31, and the real-time signals (32 and
 * 33 are the C library's own). */
static bool signal_named(int sig)
{
	for (size_t i = 0; i < NSIGNAMES; i++)
		if (signal_names[i].sig == sig)
			return true;
	return sig >= SIGRTMIN && sig <= SIGRTMAX;
}

/* An upper-case name without "SIG", or a number; -1 if not a signal. */
static int name_to_signal(const char *s)
{
	char *end;
	long n;

	if (*s >= '0' && *s <= '9') {
		errno = 0;
		n = strtol(s, &end, 10);
		return !*end && !errno && n < _NSIG ? (int)n : -1;
	}
	for (size_t i = 0; i < NSIGNAMES; i++)
		if (strcmp(s, signal_names[i].name) == 0)
			return signal_names[i].sig;
	if (strncmp(s, "RTMIN", 5) == 0) {
		errno = 0;
		n = strtol(s + 5, &end, 10);
		if (!*end && !errno && n >= 0 && n <= SIGRTMAX - SIGRTMIN)
			return SIGRTMIN + (int)n;
	} else if (strncmp(s, "RTMAX", 5) == 0) {
		errno = 0;
		n = strtol(s + 5, &end, 10);
		if (!*end && !errno && n >= SIGRTMIN - SIGRTMAX && n <= 0)
			return SIGRTMAX + (int)n;
	}
	return -1;
}

int run_parse_signal(const char *s)
{
	int sig = -1;

	if (!s)
		return -EINVAL;
	if (*s >= '0' && *s <= '9') {
		char *end;
		long n;

		errno = 0;
		n = strtol(s, &end, 10);
		if (!*end && !errno && n <= 0x7fffffff) {
			/* A shell's "$?" names the signal that ended a
			 * process: 143 is TERM (ksh's 256+N too). */
			sig = (int)n;
			sig &= sig >= 0xff ? 0xff : 0x7f;
		}
	} else {
		char *up = strdup(s);

		if (!up)
			return -EINVAL;
		/* Upper case in the C locale, whatever the current one. */
		for (char *p = up; *p; p++)
			if (*p >= 'a' && *p <= 'z')
				*p = (char)(*p - 'a' + 'A');
		sig = name_to_signal(up);
		if (sig < 0 && strncmp(up, "SIG", 3) == 0)
			sig = name_to_signal(up + 3);
		free(up);
	}
	if (sig < 0 || !signal_named(sig))
		return -EINVAL;
	return sig;
}

const char *run_signal_name(int sig, char *buf, size_t size)
{
	for (size_t i = 0; i < NSIGNAMES; i++)
		if (signal_names[i].sig == sig) {
			snprintf(buf, size, "%s", signal_names[i].name);
			return buf;
		}
	if (sig >= SIGRTMIN && sig <= SIGRTMIN + (SIGRTMAX - SIGRTMIN) / 2)
		snprintf(buf, size, sig == SIGRTMIN ? "RTMIN" : "RTMIN+%d",
			 sig - SIGRTMIN);
	else if (sig > SIGRTMIN && sig <= SIGRTMAX)
		snprintf(buf, size, sig == SIGRTMAX ? "RTMAX" : "RTMAX-%d",
			 SIGRTMAX - sig);
	else
		snprintf(buf, size, "%d", sig);
	return buf;
}

void run_default_signals(const struct run_options *o, sigset_t *set)
{
	static const int catch[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM,
				     SIGALRM };
	int s = o->term_signal;

	sigemptyset(set);
	for (size_t i = 0; i < sizeof(catch) / sizeof(catch[0]); i++)
		sigaddset(set, catch[i]);
	if (s > 0 && s != SIGKILL && s != SIGSTOP && s != SIGCHLD &&
	    s != SIGTTIN && s != SIGTTOU)
		sigaddset(set, s);
}

/* ---- quoting ---- */

struct out {
	char *buf;
	size_t size, len;
};

static void put(struct out *o, const char *s, size_t n)
{
	for (size_t i = 0; i < n && o->len + 1 < o->size; i++)
		o->buf[o->len++] = s[i];
	o->buf[o->len] = '\0';
}

static void put_octal(struct out *o, unsigned char c)
{
	char e[4] = { '\\', (char)('0' + (c >> 6)),
		      (char)('0' + ((c >> 3) & 7)), (char)('0' + (c & 7)) };

	put(o, e, 4);
}

/* gnulib's quote(): the locale quoting style. */
const char *run_quote(const char *s, char *buf, size_t size)
{
	const char *cs = nl_langinfo(CODESET);
	bool utf8 = cs && strcasecmp(cs, "UTF-8") == 0;
	const char *lq = utf8 ? "\xe2\x80\x98" : "'";
	const char *rq = utf8 ? "\xe2\x80\x99" : "'";
	size_t rlen = strlen(rq), len = strlen(s);
	struct out o = { buf, size, 0 };

	if (size == 0)
		return buf;
	buf[0] = '\0';
	put(&o, lq, strlen(lq));
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		bool right = i + rlen <= len && memcmp(s + i, rq, rlen) == 0;
		const char *esc = NULL;
		bool printable = true;
		size_t m = 1;

		switch (c) {
		case '\a':
			esc = "\\a";
			break;
		case '\b':
			esc = "\\b";
			break;
		case '\f':
			esc = "\\f";
			break;
		case '\n':
			esc = "\\n";
			break;
		case '\r':
			esc = "\\r";
			break;
		case '\t':
			esc = "\\t";
			break;
		case '\v':
			esc = "\\v";
			break;
		case '\\':
			esc = "\\\\";
			break;
		}
		if (esc) {
			put(&o, esc, 2);
			continue;
		}
		if (c >= 0x20 && c < 0x7f) {
			if (right)
				put(&o, "\\", 1);
			put(&o, (const char *)&c, 1);
			continue;
		}
		/* A control character, DEL, or a (multibyte) character. */
		if (MB_CUR_MAX == 1) {
			printable = isprint(c) != 0;
		} else {
			mbstate_t st;

			memset(&st, 0, sizeof(st));
			m = 0;
			do {
				wchar_t w;
				size_t n =
				    mbrtowc(&w, s + i + m, len - (i + m), &st);

				if (n == 0)
					break;
				if (n == (size_t)-1) {
					printable = false;
					break;
				}
				if (n == (size_t)-2) {
					printable = false;
					m = len - i;
					break;
				}
				if (!iswprint((wint_t)w))
					printable = false;
				m += n;
			} while (!mbsinit(&st));
		}
		if (m <= 1 && printable) {
			put(&o, (const char *)&c, 1);
			continue;
		}
		/* Escape every byte of an unprintable sequence; copy a
		 * printable one, after a backslash if it is the closing
		 * quote. */
		for (size_t k = 0; k < (m ? m : 1); k++) {
			unsigned char b = (unsigned char)s[i + k];

			if (!printable) {
				put_octal(&o, b);
				continue;
			}
			if (k == 0 && right)
				put(&o, "\\", 1);
			put(&o, (const char *)&b, 1);
		}
		i += (m ? m : 1) - 1;
	}
	put(&o, rq, rlen);
	return buf;
}

/* ---- the command line ---- */

static void usage(void)
{
	const char *p = run_program;

	printf("Usage: %s [OPTION]... DURATION COMMAND [ARG]...\n"
	       "  or:  %s [OPTION]... -t DURATION [--] COMMAND [ARG]...\n"
	       "  or:  %s [OPTION]... -- COMMAND [ARG]...\n"
	       "  or:  %s [OPTION]\n",
	       p, p, p, p);
	fputs("Start COMMAND, and kill it if still running after DURATION, as "
	      "timeout(1)\n"
	      "does.  COMMAND runs under a cancellation token that it "
	      "inherits through the\n"
	      "environment variable CANCELFD: a cancelfd-run inside COMMAND, "
	      "or a program\n"
	      "that uses libcancelfd, is cancelled with it.\n"
	      "\n"
	      "Mandatory arguments to long options are mandatory for short "
	      "options too.\n"
	      "      --preserve-status\n"
	      "                 exit with the same status as COMMAND, even "
	      "when the\n"
	      "                   command times out\n"
	      "      --foreground\n"
	      "                 when not running cancelfd-run directly from a "
	      "shell prompt,\n"
	      "                   allow COMMAND to read from the TTY and get "
	      "TTY signals;\n"
	      "                   in this mode, children of COMMAND will not "
	      "be timed out\n"
	      "                   (unless they watch CANCELFD)\n"
	      "  -k, --kill-after=DURATION\n"
	      "                 also send a KILL signal if COMMAND is still "
	      "running\n"
	      "                   this long after the initial signal was sent\n"
	      "  -s, --signal=SIGNAL\n"
	      "                 specify the signal to be sent on timeout;\n"
	      "                   SIGNAL may be a name like 'HUP' or a "
	      "number;\n"
	      "                   see 'kill -l' for a list of signals\n"
	      "      --on-cancel=SIGNAL\n"
	      "                 the same as --signal\n"
	      "  -t, --timeout=DURATION\n"
	      "                 the timeout, given as an option: then no "
	      "DURATION operand\n"
	      "                   is read\n"
	      "      --cancel-on=SIGNAL[,SIGNAL]...\n"
	      "                 cancel when one of these signals is received; "
	      "repeatable;\n"
	      "                   replaces the default set: HUP, INT, QUIT, "
	      "TERM, ALRM\n"
	      "                   and the --signal SIGNAL\n"
	      "  -v, --verbose  diagnose to stderr any signal sent upon "
	      "timeout, and what\n"
	      "                   cancelled COMMAND\n"
	      "  -h, --help     display this help and exit\n"
	      "      --version  output version information and exit\n"
	      "\n"
	      "DURATION is a floating point number with an optional suffix:\n"
	      "'s' for seconds (the default), 'm' for minutes, 'h' for hours "
	      "or 'd' for days.\n"
	      "A duration of 0 disables the associated timeout.  Without -t, "
	      "the first\n"
	      "operand is DURATION; after '--', only if it is a valid DURATION "
	      "or starts\n"
	      "like a number (a sign, a digit or a '.'), and COMMAND "
	      "otherwise.\n"
	      "\n"
	      "Upon timeout, send the TERM signal to COMMAND, if no other "
	      "SIGNAL specified.\n"
	      "The TERM signal kills any process that does not block or "
	      "catch that signal.\n"
	      "It may be necessary to use the KILL signal, since this signal "
	      "can't be caught.\n"
	      "A signal received (HUP, INT, QUIT, TERM) is sent on to COMMAND "
	      "as itself;\n"
	      "ALRM counts as the timeout.  The cancel of the token inherited "
	      "through CANCELFD\n"
	      "sends SIGNAL too (and the status is then COMMAND's, not 124).  "
	      "Signals ignored\n"
	      "on entry are left ignored.\n"
	      "\n"
	      "Exit status:\n"
	      "  124  if COMMAND times out, and --preserve-status is not "
	      "specified\n"
	      "  125  if the cancelfd-run command itself fails\n"
	      "  126  if COMMAND is found but cannot be invoked\n"
	      "  127  if COMMAND cannot be found\n"
	      "  137  if COMMAND (or cancelfd-run itself) is sent the KILL (9) "
	      "signal (128+9)\n"
	      "  -    the exit status of COMMAND otherwise\n"
	      "\n"
	      "See cancelfd-run(1) for the differences from timeout(1).\n",
	      stdout);
}

/* As coreutils' usage(EXIT_CANCELED): the one line that follows every
 * command-line error. */
static int try_help(void)
{
	fprintf(stderr, "Try '%s --help' for more information.\n", run_program);
	return RUN_EXIT_CANCELED;
}

static int bad_value(const char *fmt, const char *arg)
{
	char q[512];

	fprintf(stderr, "%s: ", run_program);
	fprintf(stderr, fmt, run_quote(arg, q, sizeof(q)));
	fputc('\n', stderr);
	return try_help();
}

enum {
	OPT_CANCEL_ON = 256,
	OPT_ON_CANCEL,
	OPT_FOREGROUND,
	OPT_PRESERVE,
	OPT_VERSION,
};

/* No extension shares a first letter with an option of timeout(1), so
 * every abbreviation that timeout(1) accepts means the same here. */
static const struct option long_options[] = {
	{ "kill-after", required_argument, NULL, 'k' },
	{ "signal", required_argument, NULL, 's' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "foreground", no_argument, NULL, OPT_FOREGROUND },
	{ "preserve-status", no_argument, NULL, OPT_PRESERVE },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, OPT_VERSION },
	/* Extensions. */
	{ "timeout", required_argument, NULL, 't' },
	{ "on-cancel", required_argument, NULL, OPT_ON_CANCEL },
	{ "cancel-on", required_argument, NULL, OPT_CANCEL_ON },
	{ NULL, 0, NULL, 0 },
};

/* --cancel-on: one signal, or a comma-separated list of them. */
static int add_cancel_on(struct run_options *o, const char *arg)
{
	char *list = strdup(arg), *save = NULL, *tok;
	int n = 0, r = -1;

	if (!list) {
		fprintf(stderr, "%s: out of memory\n", run_program);
		return RUN_EXIT_CANCELED;
	}
	for (tok = strtok_r(list, ",", &save); tok && r < 0;
	     tok = strtok_r(NULL, ",", &save), n++) {
		int sig = run_parse_signal(tok);
		char name[32], msg[96];

		if (sig < 0) {
			r = bad_value("%s: invalid signal", tok);
		} else if (sig == 0 || sig == SIGKILL || sig == SIGSTOP ||
			   sig == SIGCHLD) {
			run_signal_name(sig, name, sizeof(name));
			snprintf(msg, sizeof(msg), "cannot cancel on %s: %s",
				 name,
				 sig == SIGCHLD ? "cancelfd-run waits for it"
						: "it cannot be caught");
			fprintf(stderr, "%s: %s\n", run_program, msg);
			r = try_help();
		} else {
			sigaddset(&o->cancel_on, sig);
		}
	}
	if (r < 0 && n == 0)
		r = bad_value("%s: invalid signal", arg);
	free(list);
	return r;
}

static int parse_duration_arg(const char *arg, int64_t *ns)
{
	if (run_parse_duration(arg, ns) < 0)
		return bad_value("invalid time interval %s", arg);
	return -1;
}

/* The operands: [DURATION] COMMAND [ARG]...  See run.h. */
static int parse_operands(struct run_options *o, int argc, char **argv)
{
	bool after_dashes = optind > 1 && strcmp(argv[optind - 1], "--") == 0;
	int r;

	if (o->timeout_given || (after_dashes && optind < argc &&
				 !run_duration_operand(argv[optind]))) {
		/* The alias forms: -t DURATION, or no timeout at all. */
		if (argc - optind < 1)
			return try_help();
	} else {
		/* timeout(1)'s own: the count is checked first. */
		if (argc - optind < 2)
			return try_help();
		r = parse_duration_arg(argv[optind++], &o->timeout_ns);
		if (r >= 0)
			return r;
	}
	o->argv = argv + optind;
	return -1;
}

int run_parse_args(struct run_options *o, int argc, char **argv)
{
	int c, r;

	memset(o, 0, sizeof(*o));
	sigemptyset(&o->cancel_on);
	o->term_signal = SIGTERM;
	if (argc > 0 && argv[0])
		run_program = argv[0];
	optind = 0; /* a fresh scan, also for a second call (tests) */
	opterr = 1; /* getopt's own messages, as timeout(1) */
	/* '+': stop at the first operand, so that COMMAND's own options
	 * are left alone even without "--". */
	while ((c = getopt_long(argc, argv, "+k:s:t:vh", long_options, NULL)) !=
	       -1) {
		r = -1;
		switch (c) {
		case 't':
			o->timeout_given = true;
			r = parse_duration_arg(optarg, &o->timeout_ns);
			break;
		case 'k':
			r = parse_duration_arg(optarg, &o->kill_after_ns);
			break;
		case 's':
		case OPT_ON_CANCEL:
			o->term_signal = run_parse_signal(optarg);
			if (o->term_signal < 0)
				r = bad_value("%s: invalid signal", optarg);
			break;
		case OPT_CANCEL_ON:
			o->cancel_on_given = true;
			r = add_cancel_on(o, optarg);
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
			usage();
			return fflush(stdout) == 0 ? 0 : RUN_EXIT_CANCELED;
		case OPT_VERSION:
			printf("cancelfd-run (cancelfd) %s\n", CFD_VERSION);
			return fflush(stdout) == 0 ? 0 : RUN_EXIT_CANCELED;
		default: /* getopt said what */
			return try_help();
		}
		if (r >= 0)
			return r;
	}
	return parse_operands(o, argc, argv);
}
