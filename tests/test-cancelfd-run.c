/* SPDX-License-Identifier: MIT */
/*
 * Description: cancelfd-run (tools/): its command line and durations,
 * side by side with coreutils timeout(1): the same /bin/sh scripts run with
 * T=timeout and with T=cancelfd-run must give the same "$?", the same
 * standard output (what COMMAND received) and the same standard error (with
 * the program's name taken out), except where a difference is documented,
 * and then the difference is what is asserted.  Also: the extensions (the
 * forms without a DURATION operand, -h), --help and --version, and the
 * parsers of durations, signals and quoting.  Signals and statuses are in
 * test-cancelfd-run-signals.c, nesting and file descriptors in
 * test-cancelfd-run-nesting.c.
 *
 * CANCELFD_RUN names the binary under test (set by tests/meson.build).
 * This binary doubles as COMMAND (run-helpers.c).  Every wait is bounded and
 * woken by an fd (pipes, fifos, pidfds), never by sleeping: a timeout that
 * must fire is short and its COMMAND long (sleep 30), and a signal is sent
 * once COMMAND said it runs.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "run-helpers.h"
#include "run.h"

/* ---- the side-by-side scripts: the command line ---- */

static const struct side_by_side cases[] = {
	/* timeout(1)'s command line: DURATION COMMAND. */
	SAME("DURATION in seconds", "\"$T\" 0.1 sleep 30", 124),
	SAME("DURATION with s", "\"$T\" 0.1s sleep 30", 124),
	SAME("DURATION with m", "\"$T\" 0.002m sleep 30", 124),
	SAME("DURATION with h", "\"$T\" 0.00003h sleep 30", 124),
	SAME("DURATION with d", "\"$T\" 0.000001d sleep 30", 124),
	SAME("DURATION without a leading digit", "\"$T\" .1 sleep 30", 124),
	SAME("DURATION with an exponent", "\"$T\" 1e-1 sleep 30", 124),
	SAME("DURATION with an exponent and m", "\"$T\" 2E-3m sleep 30", 124),
	SAME("DURATION in hexadecimal", "\"$T\" 0x1p-3 sleep 30", 124),
	SAME("DURATION with a sign", "\"$T\" +0.1 sleep 30", 124),
	SAME("DURATION after blanks", "\"$T\" ' 0.1' sleep 30", 124),
	SAME("DURATION after --", "\"$T\" -- 0.1 sleep 30", 124),
	SAME("DURATION of 1 ns", "\"$T\" 1e-9 sleep 30", 124),
	SAME("DURATION below 1 ns", "\"$T\" 1e-320 sleep 30", 124),
	SAME("DURATION 0: no timeout", "\"$T\" 0 sh -c 'exit 3'", 3),
	SAME("DURATION -0: no timeout", "\"$T\" -- -0 sh -c 'exit 3'", 3),
	SAME("DURATION 0s: no timeout", "\"$T\" 0s sh -c 'exit 3'", 3),
	SAME("DURATION that underflows: 0", "\"$T\" 1e-400 sh -c 'exit 3'", 3),
	SAME("DURATION inf: no limit", "\"$T\" inf sh -c 'exit 3'", 3),
	SAME("DURATION INFINITY: no limit", "\"$T\" INFINITY sh -c 'exit 3'",
	     3),
	SAME("DURATION inf with m", "\"$T\" infm sh -c 'exit 3'", 3),
	SAME("DURATION that overflows: no limit", "\"$T\" 1e999 sh -c 'exit 3'",
	     3),
	SAME("DURATION of centuries", "\"$T\" 1e300d sh -c 'exit 3'", 3),
	SAME("DURATION in hexadecimal ending in d",
	     "\"$T\" 0x1d sh -c 'exit 3'", 3),
	BAD("bad DURATION: a word", "\"$T\" abc touch \"$MARK\""),
	BAD("bad DURATION: unknown suffix", "\"$T\" 1x touch \"$MARK\""),
	BAD("bad DURATION: ms", "\"$T\" 200ms touch \"$MARK\""),
	BAD("bad DURATION: two suffixes", "\"$T\" 1ss touch \"$MARK\""),
	BAD("bad DURATION: upper-case suffix", "\"$T\" 1S touch \"$MARK\""),
	BAD("bad DURATION: a suffix alone", "\"$T\" s touch \"$MARK\""),
	BAD("bad DURATION: empty", "\"$T\" '' touch \"$MARK\""),
	BAD("bad DURATION: a point", "\"$T\" . touch \"$MARK\""),
	BAD("bad DURATION: negative", "\"$T\" -- -1 touch \"$MARK\""),
	BAD("bad DURATION: negative, tiny", "\"$T\" -- -1e-9 touch \"$MARK\""),
	BAD("bad DURATION: nan", "\"$T\" nan touch \"$MARK\""),
	BAD("bad DURATION: an exponent without digits",
	    "\"$T\" 1e touch \"$MARK\""),
	BAD("bad DURATION: a trailing blank", "\"$T\" '1 ' touch \"$MARK\""),
	BAD("bad DURATION: 0x", "\"$T\" 0x touch \"$MARK\""),
	BAD("bad DURATION: a comma in the C locale",
	    "\"$T\" 1,5 touch \"$MARK\""),
	BAD("bad DURATION: two points", "\"$T\" 0.1.2 touch \"$MARK\""),
	{ .what = "bad DURATION, UTF-8 quotes",
	  .script = "\"$T\" abc touch \"$MARK\"",
	  .status = 125,
	  .flags = NOT_RUN | UTF8 },
	BAD("bad --kill-after", "\"$T\" -k abc 1 touch \"$MARK\""),
	BAD("bad --kill-after, attached", "\"$T\" -k1x 1 touch \"$MARK\""),
	BAD("bad --kill-after=", "\"$T\" --kill-after=-1 1 touch \"$MARK\""),

	/* -s: the signal to send. */
	SAME("-s INT", "\"$T\" -s INT 0.1 sleep 30", 124),
	SAME("-s KILL", "\"$T\" -s KILL 0.1 sleep 30", 137),
	SAME("-s 9", "\"$T\" -s 9 0.1 sleep 30", 137),
	SAME("-s 137 (a shell status)", "\"$T\" -s 137 0.1 sleep 30", 137),
	SAME("-s 265 (ksh's status)", "\"$T\" -s 265 0.1 sleep 30", 137),
	SAME("-s sigkill", "\"$T\" -s sigkill 0.1 sleep 30", 137),
	SAME("-s SIG9", "\"$T\" -s SIG9 0.1 sleep 30", 137),
	SAME("-sKILL", "\"$T\" -sKILL 0.1 sleep 30", 137),
	SAME("--signal=KILL", "\"$T\" --signal=KILL 0.1 sleep 30", 137),
	SAME("--signal KILL", "\"$T\" --signal KILL 0.1 sleep 30", 137),
	SAME("--sig=KILL", "\"$T\" --sig=KILL 0.1 sleep 30", 137),
	SAME("-vs KILL", "\"$T\" -vs KILL 0.1 sleep 30", 137),
	SAME("-vsKILL", "\"$T\" -vsKILL 0.1 sleep 30", 137),
	VERBOSE("-s RTMIN+2", "\"$T\" -v -s RTMIN+2 0.1 sleep 30", 124,
		"cancelled by the timeout (0.1s)"),
	VERBOSE("-s rtmin2", "\"$T\" -v -s rtmin2 0.1 sleep 30", 124, NULL),
	VERBOSE("-s 50 (RTMAX-14)", "\"$T\" -v -s 50 0.1 sleep 30", 124, NULL),
	VERBOSE("-s RTMAX", "\"$T\" -v -s SIGRTMAX 0.1 sleep 30", 124, NULL),
	VERBOSE("-s IO (POLL)", "\"$T\" -v -s IO 0.1 sleep 30", 124, NULL),
	VERBOSE("-s 0 sends nothing", "\"$T\" -v -s 0 -k 0.1 0.1 sleep 30", 137,
		NULL),
	VERBOSE("-s EXIT sends nothing",
		"\"$T\" -v -s EXIT -k 0.1 0.1 sleep 30", 137, NULL),
	BAD("-s NOSUCH", "\"$T\" -s NOSUCH 1 touch \"$MARK\""),
	BAD("-s 32", "\"$T\" -s 32 1 touch \"$MARK\""),
	BAD("-s 65", "\"$T\" -s 65 1 touch \"$MARK\""),
	BAD("-s 200", "\"$T\" -s 200 1 touch \"$MARK\""),
	BAD("-s 255", "\"$T\" -s 255 1 touch \"$MARK\""),
	BAD("-s +15", "\"$T\" -s +15 1 touch \"$MARK\""),
	BAD("-s ' 15'", "\"$T\" -s ' 15' 1 touch \"$MARK\""),
	BAD("-s 15x", "\"$T\" -s 15x 1 touch \"$MARK\""),
	BAD("-s SIG", "\"$T\" -s SIG 1 touch \"$MARK\""),
	BAD("-s ''", "\"$T\" -s '' 1 touch \"$MARK\""),
	BAD("-s SIGSIGTERM", "\"$T\" -s SIGSIGTERM 1 touch \"$MARK\""),
	BAD("-s RTMIN+31", "\"$T\" -s RTMIN+31 1 touch \"$MARK\""),
	BAD("-s RTMIN-1", "\"$T\" -s RTMIN-1 1 touch \"$MARK\""),
	BAD("-s RTMAX+1", "\"$T\" -s RTMAX+1 1 touch \"$MARK\""),
	BAD("-s 2^31+15", "\"$T\" -s 2147483663 1 touch \"$MARK\""),

	/* --verbose, -k, --foreground, --preserve-status. */
	VERBOSE("-v", "\"$T\" -v 0.1 sleep 30", 124,
		"cancelled by the timeout (0.1s) after "),
	{ .what = "-v, UTF-8 quotes",
	  .script = "\"$T\" -v 0.1 sleep 30",
	  .status = 124,
	  .flags = UTF8 },
	VERBOSE("--verbose", "\"$T\" --verbose 0.1 sleep 30", 124, NULL),
	VERBOSE("--verb", "\"$T\" --verb 0.1 sleep 30", 124, NULL),
	VERBOSE("-v -v", "\"$T\" -v -v 0.1 sleep 30", 124, NULL),
	VERBOSE("-vk 0.2: KILL needed",
		"\"$T\" -vk 0.2 0.1 sh -c 'trap \"\" TERM; exec sleep 30'", 137,
		NULL),
	SAME("-k0.2", "\"$T\" -k0.2 0.1 sh -c 'trap \"\" TERM; exec sleep 30'",
	     137),
	SAME("--kill-after=0.2",
	     "\"$T\" --kill-after=0.2 0.1 sh -c 'trap \"\" TERM; exec sleep "
	     "30'",
	     137),
	SAME("--kill=0.2",
	     "\"$T\" --kill=0.2 0.1 sh -c 'trap \"\" TERM; exec sleep 30'",
	     137),
	SAME("-k 2e-1 --foreground",
	     "\"$T\" --foreground -k 2e-1 0.1 sh -c 'trap \"\" TERM; exec "
	     "sleep 30'",
	     137),
	SAME("-k not needed", "\"$T\" -k 5 0.1 sleep 30", 124),
	SAME_OUT("-k 0: no KILL",
		 UP("\"$T\" -k 0 10", "any",
		    "exit:3") "kill -ALRM $!; wait $! 2>/dev/null",
		 124, "got TERM\n"),
	SAME("--foreground", "\"$T\" --foreground 0.1 sleep 30", 124),
	SAME("--fore", "\"$T\" --fore 0.1 sleep 30", 124),
	SAME("--foreground -s KILL", "\"$T\" --foreground -s KILL 0.1 sleep 30",
	     137),
	SAME("--preserve-status: TERM", "\"$T\" --preserve-status 0.1 sleep 30",
	     143),
	SAME("--pres: TERM", "\"$T\" --pres 0.1 sleep 30", 143),
	SAME("--preserve-status: KILL",
	     "\"$T\" --preserve-status -s KILL 0.1 sleep 30", 137),
	SAME_OUT("--preserve-status: COMMAND exits 5 on TERM",
		 UP("\"$T\" --preserve-status 10", "any",
		    "exit:5") "kill -ALRM $!; wait $! 2>/dev/null",
		 5, "got TERM\n"),
	SAME_OUT("COMMAND exits 0 on the timeout's TERM",
		 UP("\"$T\" 10", "any",
		    "exit:0") "kill -ALRM $!; wait $! 2>/dev/null",
		 124, "got TERM\n"),
	SAME("COMMAND ignores the TERM: KILL, --preserve-status",
	     "\"$T\" -k 0.2 --preserve-status 0.1 sh -c 'trap \"\" TERM; exec "
	     "sleep 30'",
	     137),

	/* Errors of the command line. */
	SAME("missing everything", "\"$T\"", 125),
	SAME("missing COMMAND", "\"$T\" 1", 125),
	SAME("missing COMMAND, invalid DURATION", "\"$T\" abc", 125),
	SAME("missing DURATION", "\"$T\" -v", 125),
	BAD("unknown option", "\"$T\" --bogus 1 touch \"$MARK\""),
	BAD("unknown short option", "\"$T\" -x 1 touch \"$MARK\""),
	SAME("-k at the end", "\"$T\" -k", 125),
	SAME("--kill-after at the end", "\"$T\" --kill-after", 125),
	SAME("--signal at the end", "\"$T\" --signal", 125),
	SAME("an ambiguous abbreviation", "\"$T\" --ver 1 true", 125),
	SAME("an option with a value it does not take",
	     "\"$T\" --foreground=1 1 true", 125),
	{ .what = "--help",
	  .script = "\"$T\" --help",
	  .status = 0,
	  .flags = STDOUT_DIFFERS },
	{ .what = "--version",
	  .script = "\"$T\" --version",
	  .status = 0,
	  .flags = STDOUT_DIFFERS },

	/* The documented differences: extensions. */
	{ .what = "-t DURATION: the timeout as an option",
	  .script = "\"$T\" -t 0.1 sleep 30",
	  .status = 125,
	  .run_status = 124,
	  .flags = STDERR_DIFFERS,
	  .why = "an extension: an invalid option for timeout(1)" },
	{ .what = "--cancel-on",
	  .script = "\"$T\" --cancel-on USR1 0.1 sleep 30",
	  .status = 125,
	  .run_status = 124,
	  .flags = STDERR_DIFFERS,
	  .why = "an extension: an unknown option for timeout(1)" },
	{ .what = "-h",
	  .script = "\"$T\" -h",
	  .status = 125,
	  .run_status = 0,
	  .flags = STDOUT_DIFFERS | STDERR_DIFFERS,
	  .why = "an extension: an invalid option for timeout(1)" },
	{ .what = "after --, an operand that is no DURATION is COMMAND",
	  .script = "\"$T\" -- cfd-no-such-command touch \"$MARK\"",
	  .status = 125,
	  .run_status = 127,
	  .flags = NOT_RUN | STDERR_DIFFERS,
	  .why = "the form without a DURATION operand: cancelfd-run -- "
		 "COMMAND" },
};

#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

START_TEST(test_command_line_and_durations_match_timeout)
{
	check_side_by_side(&cases[_i]);
}
END_TEST

/* ---- the command line ---- */

START_TEST(test_help_and_version_print_usage_and_version)
{
	static const char *const help[] = { "--help", NULL };
	static const char *const h[] = { "-h", NULL };
	static const char *const version[] = { "--version", NULL };
	struct proc p;

	ck_assert_int_eq(run_args(&p, help), 0);
	ck_assert_ptr_nonnull(
	    strstr(p.outbuf, "[OPTION]... DURATION COMMAND [ARG]..."));
	ck_assert_ptr_nonnull(strstr(p.outbuf, "-t DURATION [--] COMMAND"));
	ck_assert_ptr_nonnull(strstr(p.outbuf, "-- COMMAND [ARG]..."));
	ck_assert_ptr_nonnull(strstr(p.outbuf, "-s, --signal=SIGNAL"));
	ck_assert_ptr_nonnull(strstr(p.outbuf, "--cancel-on=SIGNAL"));
	ck_assert_ptr_nonnull(strstr(p.outbuf, "124  if COMMAND times out"));
	ck_assert_int_eq(run_args(&p, h), 0);
	ck_assert_ptr_nonnull(strstr(p.outbuf, "Usage: "));
	ck_assert_int_eq(run_args(&p, version), 0);
	ck_assert_ptr_nonnull(strstr(p.outbuf, "cancelfd-run (cancelfd)"));
}
END_TEST

/*
 * The forms without a DURATION operand: -t DURATION, or "--" followed by
 * an operand that neither is a DURATION nor starts like a number.
 */
START_TEST(test_forms_without_a_duration_operand)
{
	static const struct {
		const char *args[8];
		int status;
		const char *err;
	} forms[] = {
		{ { "-t", "0.1", "sleep", "30" }, 124, NULL },
		{ { "--timeout=0.1", "--", "sleep", "30" }, 124, NULL },
		{ { "--timeout", "1e-1", "sleep", "30" }, 124, NULL },
		{ { "-vt0.1", "sleep", "30" },
		  124,
		  "cancelled by the timeout" },
		{ { "-t", "0", "sh", "-c", "exit 4" }, 4, NULL },
		{ { "--", "sh", "-c", "exit 4" }, 4, NULL },
		{ { "-v", "--", "sh", "-c", "exit 4" }, 4, NULL },
		{ { "-k", "1", "--", "sh", "-c", "exit 4" }, 4, NULL },
		/* A DURATION after "--": timeout(1)'s form. */
		{ { "--", "0.1", "sleep", "30" }, 124, NULL },
		{ { "--", "inf", "sh", "-c", "exit 4" }, 4, NULL },
		{ { "--", "-1", "true" }, 125, "invalid time interval '-1'" },
		{ { "--", ".5x", "true" }, 125, "invalid time interval '.5x'" },
		{ { "--", "7z", "true" }, 125, "invalid time interval '7z'" },
		{ { "--", "5" }, 125, "Try '" },
		/* Not a number: COMMAND. */
		{ { "--", "info-cfd-none" }, 127, "failed to run command" },
		{ { "--", "nan-cfd-none" }, 127, "failed to run command" },
		/* With -t, the first operand is COMMAND. */
		{ { "-t", "10", "5", "x" }, 127, "failed to run command '5'" },
		{ { "-t", "1" }, 125, "Try '" },
		{ { "--" }, 125, "Try '" },
		/* timeout(1)'s form is strict: no "--", no -t. */
		{ { "sh", "-c", "exit 4" }, 125, "invalid time interval 'sh'" },
		/* ms is not a suffix (it is not in timeout(1)). */
		{ { "--timeout", "200ms", "--", "true" },
		  125,
		  "invalid time interval '200ms'" },
		{ { "-t", "0.1s", "-t", "0", "sh", "-c", "exit 4" }, 4, NULL },
	};

	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
		expect_exit(forms[i].args, forms[i].status, forms[i].err);
}
END_TEST

/* Without "--", the first operand after DURATION is COMMAND and the rest
 * is its own. */
START_TEST(test_operands_after_command_are_its_own)
{
	static const char *const args[] = {
		"-t",	     "10", "sh", "-c", "echo \"$0 $1\"",
		"--timeout", "-v", NULL
	};
	static const char *const plain[] = { "10",	    "sh", "-c",
					     "echo \"$0\"", "-k", NULL };
	struct proc p;

	ck_assert_int_eq(run_args(&p, args), 0);
	ck_assert_str_eq(p.outbuf, "--timeout -v\n");
	ck_assert_int_eq(run_args(&p, plain), 0);
	ck_assert_str_eq(p.outbuf, "-k\n");
}
END_TEST

/* ---- the parsers ---- */

START_TEST(test_durations_parse_as_timeout_parses_them)
{
	static const struct {
		const char *s;
		int64_t ns;
	} ok[] = {
		{ "0", 0 },
		{ "-0", 0 },
		{ "0s", 0 },
		{ "1", CFD_SEC(1) },
		{ "0.2", CFD_MSEC(200) },
		{ "0.3", CFD_MSEC(300) },
		{ ".5", CFD_MSEC(500) },
		{ "5.", CFD_SEC(5) },
		{ "+1", CFD_SEC(1) },
		{ " 1", CFD_SEC(1) },
		{ "\t1", CFD_SEC(1) },
		{ "1.5s", CFD_MSEC(1500) },
		{ "1e3", CFD_SEC(1000) },
		{ "1E-3", CFD_MSEC(1) },
		{ "2e-3m", CFD_MSEC(120) },
		{ "0x10", CFD_SEC(16) },
		{ "0x1p-3", CFD_MSEC(125) },
		{ "0x1d", CFD_SEC(29) }, /* a hexadecimal digit, not days */
		/* The double nearest is 1.00000000100000008: up to 2 ns,
		 * as with timeout(1). */
		{ "1.000000001", CFD_SEC(1) + 2 },
		{ "1.0000000015", CFD_SEC(1) + 2 },
		{ "1e-9", 1 },
		{ "1e-10", 1 }, /* rounded up to the next nanosecond */
		{ "1e-320", 1 },
		{ "1e-400", 0 }, /* underflows */
		{ "2m", CFD_SEC(120) },
		{ "1.5m", CFD_SEC(90) },
		{ "0.5h", CFD_SEC(1800) },
		{ "1d", CFD_SEC(86400) },
		{ "0.5d", CFD_SEC(43200) },
		{ "inf", RUN_FOREVER },
		{ "INFINITY", RUN_FOREVER },
		{ "infs", RUN_FOREVER },
		{ "1e999", RUN_FOREVER },
		{ "99999999999999999999", RUN_FOREVER },
		{ "9999999999d", RUN_FOREVER },
	};
	static const char *const bad[] = {
		"",    ".",	"s",  "-1",  "-1e-9", "1 ",   "1x",
		"1ss", "1ms",	"1e", "nan", "-nan",  "-inf", "0x",
		"1,5", "1.2.3", "ms", "1S",  "1M",    "info", "e3",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		int64_t ns = -1;

		ck_assert_msg(run_parse_duration(ok[i].s, &ns) == 0, "'%s'",
			      ok[i].s);
		ck_assert_msg(ns == ok[i].ns, "'%s': %lld", ok[i].s,
			      (long long)ns);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t ns = 7;

		ck_assert_msg(run_parse_duration(bad[i], &ns) == -EINVAL,
			      "'%s' accepted", bad[i]);
		ck_assert_int_eq(ns, 7);
	}
}
END_TEST

START_TEST(test_operand_is_a_duration_if_it_starts_like_one)
{
	static const char *const yes[] = { "5",	     "0.1", ".5",	"-1",
					   "+2",     " 3",  "-.5",	"7z",
					   "1x",     "inf", "INFINITY", "infs",
					   "0x1p-3", "1e3" };
	static const char *const no[] = { "",	  "sleep", "info", "nan",
					  "-inf", "-v",	   "nano", ".",
					  "-",	  "+",	   "e3",   "./5" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		ck_assert_msg(run_duration_operand(yes[i]), "'%s'", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		ck_assert_msg(!run_duration_operand(no[i]), "'%s'", no[i]);
}
END_TEST

START_TEST(test_signal_names_and_numbers_parse)
{
	const struct {
		const char *s;
		int sig;
	} ok[] = {
		{ "TERM", SIGTERM },
		{ "SIGTERM", SIGTERM },
		{ "term", SIGTERM },
		{ "SigInt", SIGINT },
		{ "15", SIGTERM },
		{ "015", SIGTERM },
		{ "SIG15", SIGTERM },
		{ "9", SIGKILL },
		{ "137", SIGKILL }, /* 128 + 9, a shell's "$?" */
		{ "265", SIGKILL }, /* 256 + 9, ksh's */
		{ "0", 0 },
		{ "EXIT", 0 },
		{ "128", 0 },
		{ "CLD", SIGCHLD },
		{ "IOT", SIGABRT },
		{ "IO", SIGIO },
		{ "POLL", SIGPOLL },
		{ "STKFLT", SIGSTKFLT },
		{ "RTMIN", SIGRTMIN },
		{ "RTMIN+3", SIGRTMIN + 3 },
		{ "rtmin3", SIGRTMIN + 3 },
		{ "RTMIN 3", SIGRTMIN + 3 },
		{ "RTMIN-0", SIGRTMIN },
		{ "SIGRTMAX-1", SIGRTMAX - 1 },
		{ "RTMAX", SIGRTMAX },
		{ "RTMAX+0", SIGRTMAX },
		{ "34", SIGRTMIN },
		{ "64", SIGRTMAX },
	};
	static const char *const bad[] = {
		"",	  "FOO",      "SIG",	 "SIGSIGTERM", "-15",
		"+15",	  " 15",      "15x",	 "32",	       "33",
		"65",	  "200",      "255",	 "2147483663", "RTMIN-1",
		"RTMIN+", "RTMIN+31", "RTMAX+1", "RTMAX-31",   "UNUSED",
		"0x0f",	  "EMT",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		ck_assert_msg(run_parse_signal(ok[i].s) == ok[i].sig,
			      "'%s': %d", ok[i].s, run_parse_signal(ok[i].s));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(run_parse_signal(bad[i]) == -EINVAL,
			      "'%s' accepted", bad[i]);
}
END_TEST

START_TEST(test_signal_numbers_get_their_names)
{
	const struct {
		int sig;
		const char *name;
	} names[] = {
		{ SIGTERM, "TERM" },
		{ SIGCHLD, "CHLD" },
		{ SIGABRT, "ABRT" },
		{ SIGIO, "POLL" },
		{ SIGBUS, "BUS" },
		{ SIGSTKFLT, "STKFLT" },
		{ 0, "EXIT" },
		{ SIGRTMIN, "RTMIN" },
		{ SIGRTMIN + 2, "RTMIN+2" },
		{ SIGRTMIN + 15, "RTMIN+15" },
		{ SIGRTMIN + 16, "RTMAX-14" },
		{ SIGRTMAX, "RTMAX" },
		{ 33, "33" },
	};
	char buf[32];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		ck_assert_str_eq(
		    run_signal_name(names[i].sig, buf, sizeof(buf)),
		    names[i].name);
}
END_TEST

/* Quoting as GNU tools quote, in an 8-bit and in a UTF-8 locale. */
START_TEST(test_quoting_is_that_of_gnu_tools)
{
	static const struct {
		const char *s, *c, *utf8;
	} q[] = {
		{ "sleep", "'sleep'", "\u2018sleep\u2019" },
		{ "", "''", "\u2018\u2019" },
		{ "a b", "'a b'", "\u2018a b\u2019" },
		{ "it's", "'it\\'s'", "\u2018it's\u2019" },
		{ "a\\b", "'a\\\\b'", "\u2018a\\\\b\u2019" },
		{ "t\tn\n", "'t\\tn\\n'", "\u2018t\\tn\\n\u2019" },
		{ "\x01\x7f", "'\\001\\177'", "\u2018\\001\\177\u2019" },
		{ "caf\xc3\xa9", "'caf\\303\\251'", "\u2018caf\xc3\xa9\u2019" },
		{ "x\xe9y", "'x\\351y'", "\u2018x\\351y\u2019" },
		{ "q\u2019", "'q\\342\\200\\231'", "\u2018q\\\u2019\u2019" },
	};
	char buf[128], *saved = strdup(setlocale(LC_ALL, NULL));

	ck_assert_ptr_nonnull(setlocale(LC_ALL, "C"));
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++)
		ck_assert_str_eq(run_quote(q[i].s, buf, sizeof(buf)), q[i].c);
	ck_assert_ptr_nonnull(setlocale(LC_ALL, "C.UTF-8"));
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++)
		ck_assert_str_eq(run_quote(q[i].s, buf, sizeof(buf)),
				 q[i].utf8);
	/* Truncated, never overflowed. */
	ck_assert_str_eq(run_quote("abcdef", buf, 5), "\xe2\x80\x98"
						      "a");
	setlocale(LC_ALL, saved);
	free(saved);
}
END_TEST

static Suite *run_suite(void)
{
	Suite *s = suite_create("cancelfd-run");
	TCase *tc;

	tc = t_tcase("side by side with timeout(1)");
	tcase_add_checked_fixture(tc, scratch_setup, scratch_teardown);
	tcase_add_loop_test(tc, test_command_line_and_durations_match_timeout,
			    0, NCASES);
	suite_add_tcase(s, tc);

	tc = t_tcase("command line");
	tcase_add_test(tc, test_help_and_version_print_usage_and_version);
	tcase_add_test(tc, test_forms_without_a_duration_operand);
	tcase_add_test(tc, test_operands_after_command_are_its_own);
	tcase_add_test(tc, test_durations_parse_as_timeout_parses_them);
	tcase_add_test(tc, test_operand_is_a_duration_if_it_starts_like_one);
	tcase_add_test(tc, test_signal_names_and_numbers_parse);
	tcase_add_test(tc, test_signal_numbers_get_their_names);
	tcase_add_test(tc, test_quoting_is_that_of_gnu_tools);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	return run_main(argc, argv, run_suite);
}
