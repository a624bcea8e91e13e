/* SPDX-License-Identifier: MIT */
/*
 * Description: cancelfd-run (tools/): signals and exit statuses, side by
 * side with coreutils timeout(1) (see test-cancelfd-run.c): COMMAND's own
 * statuses, the signals the runner receives and passes on, signals ignored
 * on entry; and the set of signals that cancels (the default one,
 * --cancel-on, what it refuses, --on-cancel).
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "run-helpers.h"

/* ---- the side-by-side scripts: statuses and signals ---- */

static const struct side_by_side cases[] = {
	/* Exit statuses. */
	SAME("COMMAND succeeded", "\"$T\" 10 true", 0),
	SAME("COMMAND failed (exit 3)", "\"$T\" 10 sh -c 'exit 3'", 3),
	SAME("COMMAND's options are its own",
	     "\"$T\" 10 sh -c 'exit $#' -k -v -s", 2),
	SAME("COMMAND not found (PATH)", "\"$T\" 10 cfd-no-such-command", 127),
	SAME("COMMAND not found (path)", "\"$T\" 10 /nonexistent/cmd", 127),
	SAME("COMMAND not found (empty)", "\"$T\" 10 ''", 127),
	SAME("COMMAND not found, quoted",
	     "\"$T\" 10 \"$(printf 'a b\\047c\\\\d\\te\\351')\"", 127),
	{ .what = "COMMAND not found, quoted in UTF-8",
	  .script = "\"$T\" 10 \"$(printf "
		    "'a b\\047c\\\\d\\342\\200\\231e\\351f\\303\\251')\"",
	  .status = 127,
	  .flags = UTF8 },
	SAME("COMMAND not executable", "\"$T\" 10 \"$NX\"", 126),
	SAME("COMMAND is a directory", "\"$T\" 10 /", 126),
	SAME("COMMAND is a script without #!", "\"$T\" 10 \"$NS\"", 6),
	SAME("COMMAND is --", "\"$T\" 10 -- sleep 0", 127),
	SAME("COMMAND killed by a signal", "\"$T\" 10 sh -c 'kill -USR1 $$'",
	     138),
	SAME("COMMAND killed by KILL", "\"$T\" 10 sh -c 'kill -KILL $$'", 137),
	SAME("COMMAND killed, --preserve-status",
	     "\"$T\" --preserve-status 10 sh -c 'kill -USR1 $$'", 138),

	/* Signals received by the runner: passed on as themselves. */
	SAME_OUT(
	    "TERM to the runner",
	    UP("\"$T\" 10", "any", "die") "kill -TERM $!; wait $! 2>/dev/null",
	    143, "got TERM\n"),
	SAME_OUT(
	    "HUP to the runner",
	    UP("\"$T\" 10", "any", "die") "kill -HUP $!; wait $! 2>/dev/null",
	    129, "got HUP\n"),
	SAME_OUT("INT to the runner",
		 UP("$L \"$T\" 10", "any",
		    "die") "kill -INT $!; wait $! 2>/dev/null",
		 130, "got INT\n"),
	SAME_OUT("QUIT to the runner",
		 UP("$L \"$T\" 10", "any",
		    "die") "kill -QUIT $!; wait $! 2>/dev/null",
		 131, "got QUIT\n"),
	SAME_OUT(
	    "INT to the runner, --foreground",
	    UP("$L \"$T\" --foreground 10", "any", "die") "kill -INT $!; "
							  "wait $! 2>/dev/null",
	    130, "got INT\n"),
	SAME_OUT(
	    "TERM to the runner, no timeout",
	    UP("\"$T\" 0", "any", "die") "kill -TERM $!; wait $! 2>/dev/null",
	    143, "got TERM\n"),
	VERBOSE("TERM to the runner, --verbose",
		UP("\"$T\" -v 10", "any",
		   "die") "kill -TERM $!; wait $! 2>/dev/null",
		143, "cancelled by signal TERM after "),
	SAME_OUT("TERM to the runner, COMMAND exits 0",
		 UP("\"$T\" 10", "any",
		    "exit:0") "kill -TERM $!; wait $! 2>/dev/null",
		 0, "got TERM\n"),
	SAME_OUT("TERM to the runner, --preserve-status",
		 UP("\"$T\" --preserve-status 10", "any",
		    "exit:4") "kill -TERM "
			      "$!; wait $! 2>/dev/null",
		 4, "got TERM\n"),
	SAME_OUT("TERM to the runner, KILL after -k",
		 UP("\"$T\" -k 0.1 10", "none",
		    "die") "kill -TERM $!; wait $! 2>/dev/null",
		 137, "got TERM\n"),
	SAME_OUT(
	    "ALRM to the runner: the timeout",
	    UP("\"$T\" 10", "any", "die") "kill -ALRM $!; wait $! 2>/dev/null",
	    124, "got TERM\n"),
	SAME_OUT("ALRM to the runner, -s INT",
		 UP("\"$T\" -s INT 10", "any",
		    "die") "kill -ALRM $!; wait $! 2>/dev/null",
		 124, "got INT\n"),
	SAME_OUT("ALRM to the runner, --preserve-status",
		 UP("\"$T\" --preserve-status 10", "any",
		    "die") "kill -ALRM $!; "
			   "wait $! 2>/dev/null",
		 143, "got TERM\n"),
	SAME_OUT("USR1 to the runner, -s USR1",
		 UP("\"$T\" -s USR1 10", "any",
		    "die") "kill -USR1 $!; wait $! 2>/dev/null",
		 138, "got USR1\n"),
	SAME_OUT("USR1 to the runner: not caught, the runner dies",
		 UP("\"$T\" 10", "any",
		    "die") "kill -USR1 $!; wait $! 2>/dev/null; s=$?; "
			   "kill -KILL $pid; exit $s",
		 138, ""),
	SAME_OUT("INT, then TERM, to the runner",
		 UP("$L \"$T\" 10", "TERM",
		    "die") "kill -INT $!; read x <&3; "
			   "kill -TERM $!; wait $! 2>/dev/null",
		 143, "got INT\ngot TERM\n"),
	SAME_OUT(
	    "TERM twice, --foreground: passed on twice",
	    UP("\"$T\" --foreground 10", "TERM:2",
	       "die") "kill -TERM $!; read x <&3; kill -TERM $!; wait $! 2>/dev/null",
	    143, "got TERM\n"),
	/* The documented differences: signals ignored on entry. */
	{ .what = "INT ignored on entry (a background job of sh)",
	  .script =
	      UP("\"$T\" 10", "any", "die") "kill -INT $!; wait $! 2>/dev/null",
	  .run_script =
	      UP("\"$T\" 10", "any", "die") "kill -INT $!; kill -TERM "
					    "$!; wait $! 2>/dev/null",
	  .status = 130,
	  .run_status = 143,
	  .out = "got INT\n",
	  .run_out = "got TERM\n",
	  .why = "a signal ignored when cancelfd-run starts is left ignored, "
		 "for it and for COMMAND; timeout(1) catches it and passes "
		 "it on" },
	{ .what = "HUP ignored on entry (nohup)",
	  .script = "trap '' HUP; " UP("\"$T\" 10", "any",
				       "die") "kill -HUP $!; "
					      "wait $! 2>/dev/null",
	  .run_script = "trap '' HUP; " UP("\"$T\" 10", "any",
					   "die") "kill -HUP "
						  "$!; kill "
						  "-TERM $!; "
						  "wait $! 2>/dev/null",
	  .status = 129,
	  .run_status = 143,
	  .out = "got HUP\n",
	  .run_out = "got TERM\n",
	  .why = "as above: nohup cancelfd-run keeps COMMAND from HUP" },
};

#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

START_TEST(test_statuses_and_signals_match_timeout)
{
	check_side_by_side(&cases[_i]);
}
END_TEST

/* ---- signals: the set that cancels ---- */

/* Start the runner with COMMAND reporting on stdout once it runs (so
 * that the runner's signal setup is done), send it sigs in order, and
 * wait for its end. */
static void signal_runner(struct proc *p, const char *const *extra_args,
			  const int *ignore, const int *sigs)
{
	const char *argv[16];
	const char *env[] = { "CANCELFD", "LC_ALL=C", NULL };
	struct spawn_opts o = { .argv = argv, .env = env, .ignore = ignore };
	int n = 0;

	argv[n++] = runner();
	argv[n++] = "-v";
	for (int i = 0; extra_args && extra_args[i]; i++)
		argv[n++] = extra_args[i];
	argv[n++] = "--";
	argv[n++] = "sh";
	argv[n++] = "-c";
	argv[n++] = "echo running; exec sleep 30";
	argv[n] = NULL;
	spawn(p, &o);
	ck_assert(collect(p, 1, T_WAIT_MS));
	for (int i = 0; sigs[i]; i++)
		ck_assert_int_eq(kill(p->pid, sigs[i]), 0);
	ck_assert_int_ne(finish(p, T_WAIT_MS), -1);
}

/* HUP, INT, QUIT, TERM: each cancels, is passed on to COMMAND as itself,
 * and ends COMMAND and then the runner. */
START_TEST(test_hup_int_quit_term_cancel_and_are_passed_on)
{
	static const int each[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM };
	static const char *const names[] = { "signal HUP", "signal INT",
					     "signal QUIT", "signal TERM" };
	struct proc p;

	for (int i = 0; i < 4; i++) {
		int sigs[] = { each[i], 0 };
		char sending[64];

		snprintf(sending, sizeof(sending), "sending signal %s to",
			 names[i] + 7);
		signal_runner(&p, NULL, NULL, sigs);
		ck_assert_msg(strstr(p.errbuf, names[i]), "stderr:\n%s",
			      p.errbuf);
		ck_assert_msg(strstr(p.errbuf, sending), "stderr:\n%s",
			      p.errbuf);
		ck_assert_msg(WIFSIGNALED(p.status) &&
				  WTERMSIG(p.status) == each[i],
			      "status %#x", p.status);
	}
}
END_TEST

/* --cancel-on replaces the set: USR1 and the others named cancel (and are
 * passed on); TERM is no longer watched. */
START_TEST(test_cancel_on_replaces_the_set_of_signals)
{
	/* Repeated, and a comma-separated list. */
	static const char *const args[] = { "--cancel-on", "USR1",
					    "--cancel-on", "SIGRTMIN+1,usr2",
					    NULL };
	int usr1[] = { SIGUSR1, 0 }, rt[] = { SIGRTMIN + 1, 0 };
	int usr2[] = { SIGUSR2, 0 };
	int term[] = { SIGTERM, 0 };
	struct proc p;

	signal_runner(&p, args, NULL, usr1);
	ck_assert_msg(strstr(p.errbuf, "cancelled by signal USR1"),
		      "stderr:\n%s", p.errbuf);
	ck_assert(WIFSIGNALED(p.status) && WTERMSIG(p.status) == SIGUSR1);
	signal_runner(&p, args, NULL, rt);
	ck_assert_msg(strstr(p.errbuf, "cancelled by signal RTMIN+1"),
		      "stderr:\n%s", p.errbuf);
	signal_runner(&p, args, NULL, usr2);
	ck_assert_msg(strstr(p.errbuf, "cancelled by signal USR2"),
		      "stderr:\n%s", p.errbuf);
	/* TERM is not watched: its default action ends the runner. */
	signal_runner(&p, args, NULL, term);
	ck_assert_ptr_null(strstr(p.errbuf, "cancelled by"));
	ck_assert(WIFSIGNALED(p.status) && WTERMSIG(p.status) == SIGTERM);
}
END_TEST

/* A default signal ignored on entry (nohup ignores HUP) is not watched:
 * HUP first, then TERM, and TERM is the cause.  Named with --cancel-on,
 * it is watched all the same. */
START_TEST(test_signal_ignored_on_entry_is_not_watched)
{
	static const int ignore[] = { SIGHUP, 0 };
	static const char *const args[] = { "--cancel-on", "HUP,TERM", NULL };
	int sigs[] = { SIGHUP, SIGTERM, 0 };
	struct proc p;

	signal_runner(&p, NULL, ignore, sigs);
	ck_assert_msg(strstr(p.errbuf, "cancelled by signal TERM"),
		      "stderr:\n%s", p.errbuf);
	ck_assert_ptr_null(strstr(p.errbuf, "signal HUP"));
	signal_runner(&p, args, ignore, sigs);
	ck_assert_msg(strstr(p.errbuf, "cancelled by signal HUP"),
		      "stderr:\n%s", p.errbuf);
}
END_TEST

/* --cancel-on cannot name what cannot be caught, or SIGCHLD. */
START_TEST(test_cancel_on_refuses_what_cannot_be_caught)
{
	static const char *const kill_[] = { "--cancel-on", "KILL", "0", "true",
					     NULL };
	static const char *const stop[] = { "--cancel-on", "USR1,STOP", "0",
					    "true", NULL };
	static const char *const chld[] = { "--cancel-on", "CHLD", "0", "true",
					    NULL };
	static const char *const exit0[] = { "--cancel-on", "0", "0", "true",
					     NULL };
	static const char *const bad[] = { "--cancel-on", "USR1,NOSUCH", "0",
					   "true", NULL };
	static const char *const empty[] = { "--cancel-on", ",", "0", "true",
					     NULL };

	expect_exit(kill_, 125, "cannot cancel on KILL: it cannot be caught");
	expect_exit(stop, 125, "cannot cancel on STOP");
	expect_exit(chld, 125, "cannot cancel on CHLD: cancelfd-run waits");
	expect_exit(exit0, 125, "cannot cancel on EXIT");
	expect_exit(bad, 125, "'NOSUCH': invalid signal");
	expect_exit(empty, 125, "',': invalid signal");
}
END_TEST

/* --on-cancel is -s; -s CHLD works. */
START_TEST(test_on_cancel_is_the_signal_to_send)
{
	static const char *const args[] = { "--on-cancel", "KILL", "0.1",
					    "sleep",	   "30",   NULL };
	static const char *const eq[] = { "--on-cancel=9", "-t", "0.1",
					  "sleep",	   "30", NULL };

	/* timeout(1) hangs with -s CHLD (it ignores SIGCHLD to signal its
	 * group, and then never sees COMMAND end). */
	static const char *const chld[] = { "-s",  "CHLD",  "-k", "0.1",
					    "0.1", "sleep", "30", NULL };
	static const char *const chld_fg[] = { "--foreground", "-s",  "CLD",
					       "-k",	       "0.1", "0.1",
					       "sleep",	       "30",  NULL };

	expect_exit(args, 137, NULL);
	expect_exit(eq, 137, NULL);
	expect_exit(chld, 137, NULL);
	expect_exit(chld_fg, 137, NULL);
}
END_TEST

static Suite *run_signals_suite(void)
{
	Suite *s = suite_create("cancelfd-run-signals");
	TCase *tc;

	tc = t_tcase("side by side with timeout(1)");
	tcase_add_checked_fixture(tc, scratch_setup, scratch_teardown);
	tcase_add_loop_test(tc, test_statuses_and_signals_match_timeout, 0,
			    NCASES);
	suite_add_tcase(s, tc);

	tc = t_tcase("signals");
	tcase_add_test(tc, test_hup_int_quit_term_cancel_and_are_passed_on);
	tcase_add_test(tc, test_cancel_on_replaces_the_set_of_signals);
	tcase_add_test(tc, test_signal_ignored_on_entry_is_not_watched);
	tcase_add_test(tc, test_cancel_on_refuses_what_cannot_be_caught);
	tcase_add_test(tc, test_on_cancel_is_the_signal_to_send);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	return run_main(argc, argv, run_signals_suite);
}
