/* SPDX-License-Identifier: MIT */
/*
 * Description: cancelfd-run (tools/): runners in runners, side by side with
 * coreutils timeout(1) (see test-cancelfd-run.c), and three deep, cancelled
 * by a signal, through tokens only, or by a middle runner's death; what
 * COMMAND inherits (fds, signal mask, dispositions, CANCELFD); a program
 * cancelled through its CANCELFD token; CANCELFD given to cancelfd-run; and
 * the file descriptors it needs.
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
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "run-helpers.h"

/* ---- the side-by-side scripts: nesting ---- */

static const struct side_by_side cases[] = {
	/* Runners in runners. */
	SAME_OUT("nested: INT to the outer runner",
		 UP("$L \"$T\" 10 \"$T\" 10", "any",
		    "die") "kill -INT $!; wait $! 2>/dev/null",
		 130, "got INT\n"),
	SAME_OUT("nested: QUIT to the outer runner, --foreground inside",
		 UP("$L \"$T\" 10 \"$T\" --foreground 10", "any",
		    "die") "kill -QUIT $!; wait $! 2>/dev/null",
		 131, "got QUIT\n"),
	SAME_OUT("nested: TERM to the outer runner",
		 UP("\"$T\" 10 \"$T\" 10 \"$T\" 10", "any",
		    "die") "kill -TERM $!; "
			   "wait $! 2>/dev/null",
		 143, "got TERM\n"),
	SAME_OUT("nested: the outer runner times out (ALRM)",
		 UP("\"$T\" 10 \"$T\" 10", "any",
		    "die") "kill -ALRM $!; wait $! 2>/dev/null",
		 124, "got TERM\n"),
	/* The documented differences: nesting. */
	{ .what = "nested: the outer runner sends CONT, the inner is "
		  "cancelled through CANCELFD",
	  .script =
	      UP("\"$T\" -s CONT 10 \"$T\" 10", "any",
		 "die") "kill -ALRM $!; kill -USR1 $pid; wait $! 2>/dev/null",
	  .run_script = UP("\"$T\" -s CONT 10 \"$T\" 10", "any",
			   "die") "kill -ALRM $!; wait $! 2>/dev/null",
	  .status = 124,
	  .run_status = 124,
	  .out = "got USR1\n",
	  .run_out = "got TERM\n",
	  .why = "an inner cancelfd-run is cancelled with the outer one "
		 "through CANCELFD, and sends its own -s signal" },
};

#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

START_TEST(test_nested_runners_match_timeout)
{
	check_side_by_side(&cases[_i]);
}
END_TEST

/* ---- nesting ---- */

/* The parent pid of pid, from /proc/pid/stat. */
static pid_t ppid_of(pid_t pid)
{
	char path[64], buf[512], *p;
	int fd, ppid = -1;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* after the command name */
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(sscanf(p + 2, "%*c %d", &ppid), 1);
	return ppid;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/*
 * Three runners, one inside the other, and a leaf.  The leaf reports its
 * pid on fd 3 (the test's pipe, passed down by every runner like any fd of
 * the caller); the runners are its ancestors.  A TERM to the outermost, or
 * the cancel of the token it inherits (parent, as its CANCELFD 5), must
 * end all four: each is proved gone by its pidfd.  Each runner says what
 * cancelled it: `cause`, at least `expect` times.
 */
static void nested(const char *const *argv, struct cfd_token *parent,
		   const char *cause, int expect)
{
	const char *env[] = { parent ? "CANCELFD=5" : "CANCELFD", NULL };
	pid_t pids[4]; /* outer runner, middle, inner, leaf */
	int ready[2], fds[5], pidfd[4], efd = -1;
	struct spawn_opts o = { .argv = argv, .env = env, .fds = fds };
	struct proc p;
	char buf[32] = "";
	ssize_t n;

	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	fds[0] = ready[1];
	fds[1] = 3;
	fds[2] = -1;
	if (parent) {
		efd = cfd_token_export_fd(parent, NULL, 0);
		ck_assert_int_ge(efd, 0);
		fds[2] = efd;
		fds[3] = 5;
		fds[4] = -1;
	}
	spawn(&p, &o);
	if (efd >= 0)
		close(efd);
	close(ready[1]);
	ck_assert(t_fd_readable(ready[0], T_WAIT_MS));
	n = read(ready[0], buf, sizeof(buf) - 1);
	ck_assert_int_gt(n, 0);
	close(ready[0]);
	pids[0] = p.pid;
	pids[3] = atoi(buf);
	pids[2] = ppid_of(pids[3]);
	pids[1] = ppid_of(pids[2]);
	ck_assert_int_eq(ppid_of(pids[1]), pids[0]);
	for (int i = 1; i < 4; i++) {
		/* Alive now (their parents wait for them), so the pid is
		 * theirs. */
		pidfd[i] = t_pidfd_open(pids[i]);
		ck_assert_int_ge(pidfd[i], 0);
		ck_assert(!t_fd_readable(pidfd[i], 0));
	}

	if (parent)
		ck_assert_int_eq(cfd_token_trigger(parent), 1);
	else
		ck_assert_int_eq(kill(pids[0], SIGTERM), 0);
	for (int i = 1; i < 4; i++) {
		ck_assert_msg(t_fd_readable(pidfd[i], T_WAIT_MS),
			      "level %d (pid %d) still runs", i, (int)pids[i]);
		close(pidfd[i]);
	}
	ck_assert_int_ne(finish(&p, T_WAIT_MS), -1);
	/* The leaf died by TERM, and so did every runner above it. */
	ck_assert_msg(WIFSIGNALED(p.status) && WTERMSIG(p.status) == SIGTERM,
		      "outer status %#x; stderr:\n%s", p.status, p.errbuf);
	ck_assert_msg(count(p.errbuf, "cancelled by") == 3, "stderr:\n%s",
		      p.errbuf);
	ck_assert_msg(count(p.errbuf, cause) >= expect, "stderr:\n%s",
		      p.errbuf);
}

/* Each runner passes the TERM on before it cancels its token, so the
 * middle one is cancelled by the TERM, as nested timeout(1)s are; the
 * innermost learns of it through CANCELFD (from the middle one's token,
 * which its parent cancels) or by the TERM, whichever comes first. */
START_TEST(test_term_to_the_outer_of_three_runners_ends_all)
{
	const char *r = runner();
	const char *argv[] = { r,    "-v", "--", r,
			       "-v", "--", r,	 "-v",
			       "--", "sh", "-c", "echo $$ >&3; exec sleep 30",
			       NULL };

	nested(argv, NULL, "cancelled by signal TERM", 2);
}
END_TEST

/* The outer runner's own parent token is cancelled, and the two outer
 * runners send CONT, which stops nothing (and which the middle one, told
 * to cancel on TERM alone, does not watch): the inner ones can only learn
 * of the cancel through CANCELFD.  The innermost sends TERM. */
START_TEST(test_nested_runners_cancelled_through_tokens_only)
{
	const char *r = runner();
	const char *argv[] = { r,
			       "-v",
			       "-s",
			       "CONT",
			       "-t",
			       "0",
			       r,
			       "-v",
			       "--on-cancel",
			       "CONT",
			       "--cancel-on",
			       "TERM",
			       "0",
			       r,
			       "-v",
			       "--",
			       "sh",
			       "-c",
			       "echo $$ >&3; exec sleep 30",
			       NULL };
	struct cfd_token *parent = t_new_token("test");

	nested(argv, parent, "cancelled by the parent token (CANCELFD)", 3);
	cfd_token_unref(parent);
}
END_TEST

/* A middle runner that dies abruptly (KILL, no chance to cancel
 * anything) still cancels what runs below it: its export hangs up. */
START_TEST(test_killed_middle_runner_still_cancels_below_it)
{
	const char *r = runner();
	const char *argv[] = { r,    "-v", "0",
			       r,    "-v", "0",
			       "sh", "-c", "echo $$ >&3; exec sleep 30",
			       NULL };
	const char *env[] = { "CANCELFD", NULL };
	int ready[2], fds[] = { -1, 3, -1 }, pf_leaf, pf_inner;
	struct spawn_opts o = { .argv = argv, .env = env, .fds = fds };
	pid_t leaf, inner;
	struct proc p;
	char buf[32] = "";

	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	fds[0] = ready[1];
	spawn(&p, &o);
	close(ready[1]);
	ck_assert(t_fd_readable(ready[0], T_WAIT_MS));
	ck_assert_int_gt(read(ready[0], buf, sizeof(buf) - 1), 0);
	close(ready[0]);
	leaf = atoi(buf);
	inner = ppid_of(leaf);
	ck_assert_int_eq(ppid_of(inner), p.pid);
	pf_leaf = t_pidfd_open(leaf);
	pf_inner = t_pidfd_open(inner);
	ck_assert_int_ge(pf_leaf, 0);
	ck_assert_int_ge(pf_inner, 0);
	kill(p.pid, SIGKILL);
	ck_assert(t_fd_readable(pf_inner, T_WAIT_MS));
	ck_assert(t_fd_readable(pf_leaf, T_WAIT_MS));
	close(pf_leaf);
	close(pf_inner);
	finish(&p, T_WAIT_MS);
	ck_assert_msg(strstr(p.errbuf, "cancelled by the parent token"),
		      "stderr:\n%s", p.errbuf);
}
END_TEST

/* ---- what COMMAND inherits ---- */

/* Sorted numbers of the "fds:" line. */
static void parse_fds(const char *out, int *fds, int *n)
{
	const char *p = strstr(out, "fds:");

	*n = 0;
	ck_assert_ptr_nonnull(p);
	for (p += 4; *p == ' ';) {
		char *end;

		fds[(*n)++] = (int)strtol(p, &end, 10);
		p = end;
	}
	for (int i = 1; i < *n; i++)
		for (int j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
			int t = fds[j];

			fds[j] = fds[j - 1];
			fds[j - 1] = t;
		}
}

static unsigned long long sig_line(const char *out, const char *key)
{
	const char *p = strstr(out, key);

	ck_assert_ptr_nonnull(p);
	return strtoull(p + strlen(key), NULL, 16);
}

static unsigned long long bit(int sig)
{
	return 1ull << (sig - 1);
}

/*
 * COMMAND gets the caller's fds, one more (CANCELFD: a pipe's read end,
 * not close-on-exec), nothing that cancelfd-run opened, and the caller's
 * signal mask and ignored signals, though cancelfd-run blocks some and
 * ignores others for itself.
 */
static void check_inheritance(const char *const *argv, const int *extra,
			      const char *const *env)
{
	static const int ignored[] = { SIGURG, SIGHUP, 0 };
	int fds[16], n, cfd, want[16], nwant = 0;
	sigset_t mask;
	struct spawn_opts o = { .argv = argv,
				.env = env,
				.fds = extra,
				.mask = &mask,
				.ignore = ignored };
	struct proc p;
	int i = 0;

	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR2);
	spawn(&p, &o);
	ck_assert_int_ne(finish(&p, T_WAIT_MS), -1);
	ck_assert_msg(WIFEXITED(p.status) && WEXITSTATUS(p.status) == 0,
		      "status %#x\nstdout:\n%s\nstderr:\n%s", p.status,
		      p.outbuf, p.errbuf);
	parse_fds(p.outbuf, fds, &n);
	cfd = atoi(strstr(p.outbuf, "CANCELFD=") + 9);
	ck_assert_int_gt(cfd, 2);
	/* 0, 1, 2, the caller's extra fds and CANCELFD, in whatever order
	 * of numbers: nothing else. */
	want[nwant++] = 0;
	want[nwant++] = 1;
	want[nwant++] = 2;
	want[nwant++] = cfd;
	for (int k = 0; extra && extra[2 * k] >= 0; k++)
		want[nwant++] = extra[2 * k + 1];
	ck_assert_msg(n == nwant, "stdout:\n%s", p.outbuf);
	for (i = 0; i < nwant; i++) {
		bool found = false;

		for (int j = 0; j < n; j++)
			found = found || fds[j] == want[i];
		ck_assert_msg(found, "no fd %d: stdout:\n%s", want[i],
			      p.outbuf);
	}
	ck_assert_ptr_nonnull(strstr(p.outbuf, "target=pipe"));
	ck_assert_ptr_nonnull(strstr(p.outbuf, "access=r"));
	ck_assert_ptr_nonnull(strstr(p.outbuf, "cloexec=0"));
	/* The caller's mask and dispositions, as given: not the watched
	 * signals cancelfd-run blocked, not SIGPIPE, TTIN, TTOU. */
	ck_assert_msg(sig_line(p.outbuf, "SigBlk:") == bit(SIGUSR2),
		      "stdout:\n%s", p.outbuf);
	ck_assert_msg(sig_line(p.outbuf, "SigIgn:") ==
			  (bit(SIGURG) | bit(SIGHUP)),
		      "stdout:\n%s", p.outbuf);
}

START_TEST(test_command_inherits_only_cancelfd)
{
	const char *argv[] = { runner(), "--", self_exe(), "--fdlist", NULL };
	const char *env[] = { "CANCELFD", NULL };

	check_inheritance(argv, NULL, env);
}
END_TEST

/* An fd the caller passes on purpose goes through, as with timeout(1). */
START_TEST(test_command_inherits_the_callers_fds)
{
	const char *argv[] = { runner(), "--", self_exe(), "--fdlist", NULL };
	const char *env[] = { "CANCELFD", NULL };
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int extra[] = { devnull, 7, -1 };

	ck_assert_int_ge(devnull, 0);
	check_inheritance(argv, extra, env);
	close(devnull);
}
END_TEST

/* Nested: the inner runner closes the CANCELFD it imported and passes its
 * own; the mask crosses both. */
START_TEST(test_nested_command_inherits_only_cancelfd)
{
	const char *argv[] = { runner(),   "--",       runner(), "--",
			       self_exe(), "--fdlist", NULL };
	const char *env[] = { "CANCELFD", NULL };

	check_inheritance(argv, NULL, env);
}
END_TEST

/* ---- a program using cfd_token_from_env() ---- */

START_TEST(test_program_cancelled_through_token)
{
	const char *argv[] = { runner(),   "--preserve-status", "0.2",
			       self_exe(), "--token-wait",	NULL };
	const char *env[] = { "CANCELFD", NULL };
	/* TERM ignored from the start (so not watched by the runner, and
	 * ignored by the program whatever the timing): only the token can
	 * stop it. */
	static const int ignore[] = { SIGTERM, 0 };
	struct spawn_opts o = { .argv = argv, .env = env, .ignore = ignore };
	struct proc p;

	spawn(&p, &o);
	ck_assert_int_ne(finish(&p, T_WAIT_MS * 2), -1);
	ck_assert_msg(WIFEXITED(p.status) && WEXITSTATUS(p.status) == 42,
		      "status %#x, stderr:\n%s", p.status, p.errbuf);

	argv[1] = "-v"; /* without --preserve-status: the timeout's 124 */
	spawn(&p, &o);
	ck_assert_int_ne(finish(&p, T_WAIT_MS * 2), -1);
	ck_assert_msg(WIFEXITED(p.status) && WEXITSTATUS(p.status) == 124,
		      "status %#x, stderr:\n%s", p.status, p.errbuf);
	ck_assert_ptr_nonnull(strstr(p.errbuf, "cancelled by the timeout"));
}
END_TEST

/* ---- CANCELFD given to cancelfd-run ---- */

/* Bad CANCELFD: a clear message, 125, COMMAND not run. */
static void bad_cancelfd(const char *value, const int *fds, const char *msg)
{
	char env_value[64];
	const char *argv[] = { runner(), "--", "touch", mark, NULL };
	const char *env[] = { env_value, NULL };
	struct spawn_opts o = { .argv = argv, .env = env, .fds = fds };
	struct proc p;

	snprintf(env_value, sizeof(env_value), "CANCELFD=%s", value);
	spawn(&p, &o);
	ck_assert_int_ne(finish(&p, T_WAIT_MS), -1);
	ck_assert_msg(WIFEXITED(p.status) && WEXITSTATUS(p.status) == 125,
		      "CANCELFD=%s: status %#x", value, p.status);
	ck_assert_msg(access(mark, F_OK) != 0, "CANCELFD=%s: COMMAND ran",
		      value);
	ck_assert_msg(strstr(p.errbuf, msg), "CANCELFD=%s: stderr:\n%s", value,
		      p.errbuf);
}

START_TEST(test_bad_cancelfd_is_refused_before_command_starts)
{
	int reg = open("/proc/self/status", O_RDONLY | O_CLOEXEC), sv[2];
	int dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int f_reg[] = { reg, 5, -1 }, f_dir[] = { dir, 5, -1 };
	int f_sock[] = { -1, 5, -1 };

	ck_assert_int_ge(reg, 0);
	ck_assert_int_ge(dir, 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	f_sock[0] = sv[0];
	bad_cancelfd("abc", NULL, "is not a file descriptor number");
	bad_cancelfd("", NULL, "is not a file descriptor number");
	bad_cancelfd("-3", NULL, "is not a file descriptor number");
	bad_cancelfd("5x", NULL, "is not a file descriptor number");
	bad_cancelfd("77", NULL, "is not an open file descriptor");
	bad_cancelfd("5", f_reg, "is not a cancellation token fd");
	bad_cancelfd("5", f_dir, "is not a cancellation token fd");
	bad_cancelfd("5", f_sock, "is not a cancellation token fd");
	close(reg);
	close(dir);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* A parent token that is cancelled already: COMMAND does not start. */
START_TEST(test_cancelled_parent_token_keeps_command_from_starting)
{
	const char *argv[] = { runner(), "--", "touch", mark, NULL };
	const char *env[] = { "CANCELFD=5", NULL };
	struct cfd_token *tok;
	int fd, fds[] = { -1, 5, -1 };
	struct spawn_opts o = { .argv = argv, .env = env, .fds = fds };
	struct proc p;

	ck_assert_int_eq(cfd_token_new(&tok, "done"), 0);
	cfd_token_trigger(tok);
	fd = cfd_token_export_fd(tok, NULL, 0);
	ck_assert_int_ge(fd, 0);
	fds[0] = fd;
	spawn(&p, &o);
	ck_assert_int_ne(finish(&p, T_WAIT_MS), -1);
	ck_assert_msg(WIFEXITED(p.status) && WEXITSTATUS(p.status) == 143,
		      "status %#x", p.status);
	ck_assert_int_ne(access(mark, F_OK), 0);
	ck_assert_ptr_nonnull(strstr(p.errbuf, "not running it"));
	close(fd);
	cfd_token_unref(tok);
}
END_TEST

/* ---- file descriptors ---- */

/*
 * The fewest file descriptors cancelfd-run needs: 0, 1 and 2, the export
 * for CANCELFD (a pipe, and its duplicate for COMMAND while it starts),
 * and the default watcher (epoll, doorbell, timer): RLIMIT_NOFILE 8, where
 * timeout(1) needs 4 (0, 1, 2, and one for the loader of COMMAND).  With
 * CANCELFD, 10: the caller's CANCELFD is 3, and the import watches a
 * duplicate.  Below that, COMMAND does not start.
 */
#define RUN_NOFILE 8
#define RUN_NOFILE_NESTED 10

static int run_limited(struct proc *p, const char *const *argv, int nofile)
{
	const char *env[] = { "CANCELFD", "LC_ALL=C", NULL };
	struct spawn_opts o = { .argv = argv, .env = env, .nofile = nofile };

	spawn(p, &o);
	ck_assert_int_ne(finish(p, T_WAIT_MS), -1);
	return p->status;
}

START_TEST(test_fewest_fds_it_needs_and_too_few)
{
	const char *r = runner();
	const char *t_true[] = { "timeout", "10", "true", NULL };
	const char *r_true[] = { r, "10", "true", NULL };
	const char *r_fired[] = {
		r, "-v", "-k", "5", "0.1", "sleep", "30", NULL
	};
	const char *r_term[] = { r,
				 "-s",
				 "INT",
				 "10",
				 "sh",
				 "-c",
				 "kill -TERM $PPID; exec sleep 30",
				 NULL };
	const char *r_nested[] = {
		r, "0", r, "-v", "0.1", "sleep", "30", NULL
	};
	const char *r_mark[] = { r, "10", "touch", mark, NULL };
	struct proc p;
	int st;

	st = run_limited(&p, t_true, 4);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "timeout at 4: %#x %s", st, p.errbuf);
	st = run_limited(&p, r_true, RUN_NOFILE);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%#x %s", st,
		      p.errbuf);
	/* The cancel, with --verbose and the kill timer, fits too. */
	st = run_limited(&p, r_fired, RUN_NOFILE);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 124, "%#x %s", st,
		      p.errbuf);
	ck_assert_ptr_nonnull(strstr(p.errbuf, "sending signal TERM"));
	/* And a signal received (passed on). */
	st = run_limited(&p, r_term, RUN_NOFILE);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "%#x %s", st,
		      p.errbuf);
	/* Nested: the inner runner starts with CANCELFD. */
	st = run_limited(&p, r_nested, RUN_NOFILE_NESTED);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 124, "%#x %s", st,
		      p.errbuf);
	/* Too few: 125, a message, and COMMAND was not started. */
	for (int n = 4; n < RUN_NOFILE; n++) {
		st = run_limited(&p, r_mark, n);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 125,
			      "at %d: %#x %s", n, st, p.errbuf);
		ck_assert_msg(strstr(p.errbuf, "Too many open files"),
			      "at %d: %s", n, p.errbuf);
		ck_assert_msg(access(mark, F_OK) != 0, "at %d: COMMAND ran", n);
	}
}
END_TEST

static Suite *run_nesting_suite(void)
{
	Suite *s = suite_create("cancelfd-run-nesting");
	TCase *tc;

	tc = t_tcase("side by side with timeout(1)");
	tcase_add_checked_fixture(tc, scratch_setup, scratch_teardown);
	tcase_add_loop_test(tc, test_nested_runners_match_timeout, 0, NCASES);
	suite_add_tcase(s, tc);

	tc = t_tcase("nesting");
	tcase_add_test(tc, test_term_to_the_outer_of_three_runners_ends_all);
	tcase_add_test(tc, test_nested_runners_cancelled_through_tokens_only);
	tcase_add_test(tc, test_killed_middle_runner_still_cancels_below_it);
	suite_add_tcase(s, tc);

	tc = t_tcase("inheritance");
	tcase_add_test(tc, test_command_inherits_only_cancelfd);
	tcase_add_test(tc, test_command_inherits_the_callers_fds);
	tcase_add_test(tc, test_nested_command_inherits_only_cancelfd);
	/* Repeated: the program exits the moment the token hangs up, in a
	 * race with the runner's own loop (which must still say 124). */
	tcase_add_loop_test(tc, test_program_cancelled_through_token, 0, 5);
	suite_add_tcase(s, tc);

	tc = t_tcase("CANCELFD");
	tcase_add_checked_fixture(tc, scratch_setup, scratch_teardown);
	tcase_add_test(tc, test_bad_cancelfd_is_refused_before_command_starts);
	tcase_add_test(tc,
		       test_cancelled_parent_token_keeps_command_from_starting);
	suite_add_tcase(s, tc);

	tc = t_tcase("file descriptors");
	tcase_add_checked_fixture(tc, scratch_setup, scratch_teardown);
	tcase_add_test(tc, test_fewest_fds_it_needs_and_too_few);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	return run_main(argc, argv, run_nesting_suite);
}
