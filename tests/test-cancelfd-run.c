/* SPDX-License-Identifier: MIT */
/*
 * Description: cancelfd-run (tools/), side by side with coreutils
 * timeout(1): the same commands through /bin/sh, the same "$?"; nesting
 * three deep; what COMMAND inherits (fds, signal mask, dispositions,
 * CANCELFD); invalid input; and the parsers of durations and signals.
 *
 * CANCELFD_RUN names the binary under test (set by tests/meson.build).
 * This binary doubles as the COMMAND that reports what it inherited
 * (--fdlist) and as a program that waits on its CANCELFD token
 * (--token-wait).  Every wait is bounded and woken by an fd (pipes,
 * pidfds), never by sleeping.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "run.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static const char *runner(void)
{
	const char *r = getenv("CANCELFD_RUN");

	ck_assert_msg(r && *r, "CANCELFD_RUN is not set");
	return r;
}

static int open_pidfd(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

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
};

/* Start a process in a new process group with stdin /dev/null, stdout and
 * stderr to pipes, the fds asked for and no other (whatever this test
 * process holds, Check's own included, stays here). */
static void spawn(struct proc *p, const struct spawn_opts *o)
{
	int out[2], err[2];

	memset(p, 0, sizeof(*p));
	ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
	p->pid = fork();
	ck_assert_int_ge(p->pid, 0);
	if (p->pid == 0) {
		sigset_t none;
		int n = 0, devnull;

		setpgid(0, 0);
		devnull = open("/dev/null", O_RDONLY);
		dup2(devnull, 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		/* The fds asked for: up high first, so that no target
		 * number overwrites a source. */
		for (; o->fds && o->fds[2 * n] >= 0; n++)
			dup3(o->fds[2 * n], 500 + n, 0);
		close_range(3, 499, 0);
		for (int i = 0; i < n; i++)
			dup2(500 + i, o->fds[2 * i + 1]);
		close_range(500, ~0u, 0);
		for (int s = 1; s < _NSIG; s++)
			signal(s, SIG_DFL);
		for (int i = 0; o->ignore && o->ignore[i]; i++)
			signal(o->ignore[i], SIG_IGN);
		for (int i = 0; o->env && o->env[i]; i++) {
			const char *eq = strchr(o->env[i], '=');

			if (eq) {
				char name[64];

				snprintf(name, sizeof(name), "%.*s",
					 (int)(eq - o->env[i]), o->env[i]);
				setenv(name, eq + 1, 1);
			} else {
				unsetenv(o->env[i]);
			}
		}
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, o->mask ? o->mask : &none, NULL);
		execvp(o->argv[0], (char *const *)o->argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	p->out = out[0];
	p->err = err[0];
	fcntl(p->out, F_SETFL, O_NONBLOCK);
	fcntl(p->err, F_SETFL, O_NONBLOCK);
	p->pidfd = open_pidfd(p->pid);
	ck_assert_int_ge(p->pidfd, 0);
}

/* Read what is there without blocking; false at end of file. */
static bool drain(int fd, char *buf, size_t *len)
{
	for (;;) {
		ssize_t n;

		if (*len + 1 >= OUT_MAX)
			return false;
		n = read(fd, buf + *len, OUT_MAX - 1 - *len);
		if (n > 0) {
			*len += (size_t)n;
			buf[*len] = '\0';
			continue;
		}
		return n < 0 && errno == EAGAIN;
	}
}

/* Collect output until stdout holds `lines` lines (0: until the process
 * exits), for at most ms.  True when that happened in time. */
static bool collect(struct proc *p, int lines, int ms)
{
	int64_t end = t_now_ns() + CFD_MSEC(ms);

	for (;;) {
		struct pollfd f[3] = {
			{ .fd = p->out, .events = POLLIN },
			{ .fd = p->err, .events = POLLIN },
			{ .fd = p->pidfd, .events = POLLIN },
		};
		int64_t left = (end - t_now_ns()) / 1000000;
		int got = 0;

		for (size_t i = 0; i < p->outlen; i++)
			got += p->outbuf[i] == '\n';
		if (lines > 0 && got >= lines)
			return true;
		if (left <= 0)
			return false;
		if (poll(f, 3, (int)left) < 0 && errno != EINTR)
			return false;
		if (p->out >= 0 && !drain(p->out, p->outbuf, &p->outlen)) {
			close(p->out);
			p->out = -1;
		}
		if (p->err >= 0 && !drain(p->err, p->errbuf, &p->errlen)) {
			close(p->err);
			p->err = -1;
		}
		if (f[2].revents && lines == 0)
			return true;
	}
}

/* Wait for the end of p (at most ms), reap it, kill whatever is left in
 * its process group, close everything.  Returns its wait status, or -1
 * when it had to be killed. */
static int finish(struct proc *p, int ms)
{
	bool done = collect(p, 0, ms);

	if (!done)
		kill(p->pid, SIGKILL);
	while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR)
		;
	/* Output written just before the exit. */
	if (p->out >= 0)
		drain(p->out, p->outbuf, &p->outlen);
	if (p->err >= 0)
		drain(p->err, p->errbuf, &p->errlen);
	kill(-p->pid, SIGKILL); /* stragglers of a failed case */
	if (p->out >= 0)
		close(p->out);
	if (p->err >= 0)
		close(p->err);
	close(p->pidfd);
	p->out = p->err = p->pidfd = -1;
	return done ? p->status : -1;
}

/* Run a /bin/sh script and return "$?" of its last command, as a shell
 * user sees it. */
static int sh_status(struct proc *p, const char *script, const char *const *env)
{
	char full[2048];
	const char *argv[] = { "/bin/sh", "-c", full, NULL };
	struct spawn_opts o = { .argv = argv, .env = env };
	int st;

	snprintf(full, sizeof(full), "%s\nexit $?", script);
	spawn(p, &o);
	st = finish(p, 30000);
	ck_assert_msg(st != -1, "hung: %s", script);
	ck_assert_msg(WIFEXITED(st), "sh died: %s", script);
	return WEXITSTATUS(st);
}

/* ---- side by side with timeout(1) ---- */

/*
 * The same command, through timeout and through cancelfd-run; "$R" is
 * cancelfd-run, "$MARK" a file that a command must not create, "$NX" a
 * file that is not executable.  The statuses must be equal, except where
 * a difference is by design (then `why` says which).
 */
struct side_by_side {
	const char *what;
	const char *timeout_cmd, *run_cmd;
	int timeout_status, run_status;
	bool not_run; /* the command would create $MARK */
	const char *why;
};

#define SAME(w, t, r, status)                                  \
	{                                                      \
		.what = w, .timeout_cmd = t, .run_cmd = r,     \
		.timeout_status = status, .run_status = status \
	}
/* Invalid input: 125, and the command (touch "$MARK") must not run. */
#define NOT_RUN(w, t, r)                                                  \
	{                                                                 \
		.what = w, .timeout_cmd = t, .run_cmd = r,                \
		.timeout_status = 125, .run_status = 125, .not_run = true \
	}
#define DIFFERS(w, t, r, ts, rs, reason)                              \
	{                                                             \
		.what = w, .timeout_cmd = t, .run_cmd = r,            \
		.timeout_status = ts, .run_status = rs, .why = reason \
	}

static const struct side_by_side cases[] = {
	SAME("timeout fired", "timeout 0.2 sleep 30",
	     "\"$R\" --timeout 0.2 -- sleep 30", 124),
	SAME("timeout fired, minutes suffix", "timeout 0.005m sleep 30",
	     "\"$R\" --timeout 0.005m -- sleep 30", 124),
	SAME("timeout fired, no leading digit", "timeout .2 sleep 30",
	     "\"$R\" -t .2 sleep 30", 124),
	SAME("timeout fired, --foreground", "timeout --foreground 0.2 sleep 30",
	     "\"$R\" --foreground --timeout 0.2 -- sleep 30", 124),
	SAME("timeout fired, command exits 0 on TERM",
	     "timeout 0.2 sh -c 'trap \"exit 0\" TERM; sleep 30 & wait'",
	     "\"$R\" --timeout 0.2 -- sh -c 'trap \"exit 0\" TERM; sleep 30 & "
	     "wait'",
	     124),
	SAME("timeout fired, INT sent", "timeout -s INT 0.2 sleep 30",
	     "\"$R\" --on-cancel INT --timeout 0.2 -- sleep 30", 124),
	SAME("timeout fired, KILL sent", "timeout -s KILL 0.2 sleep 30",
	     "\"$R\" --on-cancel KILL --timeout 0.2 -- sleep 30", 137),
	SAME("timeout fired, KILL sent, --foreground",
	     "timeout --foreground -s KILL 0.2 sleep 30",
	     "\"$R\" --foreground --on-cancel KILL -t 0.2 -- sleep 30", 137),
	SAME("command succeeded", "timeout 10 true",
	     "\"$R\" --timeout 10 -- true", 0),
	SAME("command succeeded, no timeout", "timeout 0 true",
	     "\"$R\" -- true", 0),
	SAME("command failed (exit 3)", "timeout 10 sh -c 'exit 3'",
	     "\"$R\" --timeout 10 -- sh -c 'exit 3'", 3),
	SAME("command not found (PATH)", "timeout 10 cfd-no-such-command",
	     "\"$R\" -- cfd-no-such-command", 127),
	SAME("command not found (path)", "timeout 10 /nonexistent/cmd",
	     "\"$R\" -- /nonexistent/cmd", 127),
	SAME("command not found (empty)", "timeout 10 ''", "\"$R\" -- ''", 127),
	SAME("command not executable", "timeout 10 \"$NX\"",
	     "\"$R\" -- \"$NX\"", 126),
	SAME("command is a directory", "timeout 10 /", "\"$R\" -- /", 126),
	SAME("command killed by a signal", "timeout 10 sh -c 'kill -USR1 $$'",
	     "\"$R\" --timeout 10 -- sh -c 'kill -USR1 $$'", 138),
	SAME("command killed by KILL", "timeout 10 sh -c 'kill -KILL $$'",
	     "\"$R\" -- sh -c 'kill -KILL $$'", 137),
	SAME("command killed, --preserve-status",
	     "timeout --preserve-status 10 sh -c 'kill -USR1 $$'",
	     "\"$R\" --preserve-status -- sh -c 'kill -USR1 $$'", 138),
	SAME("--kill-after needed",
	     "timeout -k 0.3 0.2 sh -c 'trap \"\" TERM; exec sleep 30'",
	     "\"$R\" --kill-after 0.3 --timeout 0.2 -- sh -c 'trap \"\" TERM; "
	     "exec sleep 30'",
	     137),
	SAME("--kill-after needed, --foreground",
	     "timeout --foreground -k 0.3 0.2 sh -c 'trap \"\" TERM; exec "
	     "sleep 30'",
	     "\"$R\" --foreground -k 0.3 -t 0.2 -- sh -c 'trap \"\" TERM; exec "
	     "sleep 30'",
	     137),
	SAME("--kill-after not needed", "timeout -k 5 0.2 sleep 30",
	     "\"$R\" -k 5 -t 0.2 -- sleep 30", 124),
	SAME("--preserve-status, killed by TERM",
	     "timeout --preserve-status 0.2 sleep 30",
	     "\"$R\" --preserve-status --timeout 0.2 -- sleep 30", 143),
	SAME("--preserve-status, exits 5 on TERM",
	     "timeout --preserve-status 0.2 sh -c 'trap \"exit 5\" TERM; sleep "
	     "30 & wait'",
	     "\"$R\" --preserve-status -t 0.2 -- sh -c 'trap \"exit 5\" TERM; "
	     "sleep 30 & wait'",
	     5),
	SAME("TERM to the runner",
	     "timeout 10 sleep 30 & kill -TERM $!; wait $!",
	     "\"$R\" -- sleep 30 & kill -TERM $!; wait $!", 143),
	SAME("TERM to the runner, --foreground",
	     "timeout --foreground 10 sleep 30 & kill -TERM $!; wait $!",
	     "\"$R\" --foreground -- sleep 30 & kill -TERM $!; wait $!", 143),
	/* Once COMMAND runs (it wrote to the fifo), a HUP to the runner. */
	DIFFERS("HUP to the runner",
		"mkfifo \"$MARK.up\"; "
		"timeout 10 sh -c 'echo up > \"$MARK.up\"; exec sleep 30' & "
		"read x < \"$MARK.up\"; kill -HUP $!; wait $!",
		"mkfifo \"$MARK.up\"; "
		"\"$R\" -- sh -c 'echo up > \"$MARK.up\"; exec sleep 30' & "
		"read x < \"$MARK.up\"; kill -HUP $!; wait $!",
		129, 143,
		"timeout forwards the signal it received (HUP); cancelfd-run "
		"sends --on-cancel (TERM), the same for every source"),
	NOT_RUN("bad duration", "timeout abc touch \"$MARK\"",
		"\"$R\" --timeout abc -- touch \"$MARK\""),
	NOT_RUN("bad duration: negative", "timeout -- -1 touch \"$MARK\"",
		"\"$R\" --timeout=-1 -- touch \"$MARK\""),
	NOT_RUN("bad duration: unknown suffix", "timeout 1x touch \"$MARK\"",
		"\"$R\" --timeout 1x -- touch \"$MARK\""),
	NOT_RUN("bad kill-after", "timeout -k abc 1 touch \"$MARK\"",
		"\"$R\" --kill-after abc -- touch \"$MARK\""),
	NOT_RUN("unknown signal", "timeout -s NOSUCH 1 touch \"$MARK\"",
		"\"$R\" --on-cancel NOSUCH -- touch \"$MARK\""),
	NOT_RUN("unknown signal to watch",
		"timeout -s NOSUCH 1 touch \"$MARK\"",
		"\"$R\" --signal NOSUCH -- touch \"$MARK\""),
	NOT_RUN("unknown option", "timeout --bogus 1 touch \"$MARK\"",
		"\"$R\" --bogus -- touch \"$MARK\""),
	SAME("missing command", "timeout 1", "\"$R\" --timeout 1", 125),
};

#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

/* A scratch directory per test, with a file that cannot be executed. */
static char scratch[64];
static char mark[128], nx[128], mark_env[160], nx_env[160], r_env[4200];

static void scratch_setup(void)
{
	int fd;

	snprintf(scratch, sizeof(scratch), "/tmp/cfd-run-test.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(scratch));
	snprintf(mark, sizeof(mark), "%s/mark", scratch);
	snprintf(nx, sizeof(nx), "%s/not-executable", scratch);
	fd = open(nx, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "#!/bin/sh\n", 10), 10);
	close(fd);
	snprintf(mark_env, sizeof(mark_env), "MARK=%s", mark);
	snprintf(nx_env, sizeof(nx_env), "NX=%s", nx);
	snprintf(r_env, sizeof(r_env), "R=%s", runner());
}

static void scratch_teardown(void)
{
	char path[192];

	snprintf(path, sizeof(path), "%s.up", mark);
	unlink(path);
	unlink(mark);
	unlink(nx);
	rmdir(scratch);
}

START_TEST(test_side_by_side)
{
	const struct side_by_side *c = &cases[_i];
	const char *env[] = { r_env, mark_env, nx_env, "CANCELFD", NULL };
	char path[192];
	struct proc p;
	int t, r;

	t = sh_status(&p, c->timeout_cmd, env);
	if (c->not_run)
		ck_assert_int_ne(access(mark, F_OK), 0);
	snprintf(path, sizeof(path), "%s.up", mark);
	unlink(path);
	r = sh_status(&p, c->run_cmd, env);
	if (c->not_run)
		ck_assert_msg(access(mark, F_OK) != 0, "%s: COMMAND ran: %s",
			      c->what, c->run_cmd);
	ck_assert_msg(t == c->timeout_status,
		      "%s: timeout gave %d, expected %d: %s", c->what, t,
		      c->timeout_status, c->timeout_cmd);
	ck_assert_msg(r == c->run_status,
		      "%s: cancelfd-run gave %d, expected %d: %s\nstderr: %s",
		      c->what, r, c->run_status, c->run_cmd, p.errbuf);
	ck_assert_msg(t == r || c->why, "%s: %d vs %d", c->what, t, r);
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
 * the caller); the runners are its ancestors.  A signal to the outermost
 * must end all four: each is proved gone by its pidfd.
 */
static void nested(const char *const *argv, int expect_parent_lines)
{
	const char *env[] = { "CANCELFD", NULL };
	pid_t pids[4]; /* outer runner, middle, inner, leaf */
	int ready[2], fds[3], pidfd[4];
	struct spawn_opts o = { .argv = argv, .env = env, .fds = fds };
	struct proc p;
	char buf[32] = "";
	ssize_t n;

	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	fds[0] = ready[1];
	fds[1] = 3;
	fds[2] = -1;
	spawn(&p, &o);
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
		pidfd[i] = open_pidfd(pids[i]);
		ck_assert_int_ge(pidfd[i], 0);
		ck_assert(!t_fd_readable(pidfd[i], 0));
	}

	ck_assert_int_eq(kill(pids[0], SIGTERM), 0);
	for (int i = 1; i < 4; i++) {
		ck_assert_msg(t_fd_readable(pidfd[i], T_WAIT_MS),
			      "level %d (pid %d) still runs", i, (int)pids[i]);
		close(pidfd[i]);
	}
	ck_assert_int_ne(finish(&p, T_WAIT_MS), -1);
	/* COMMAND (the middle runner) died by TERM, and so did we. */
	ck_assert_msg(WIFSIGNALED(p.status) && WTERMSIG(p.status) == SIGTERM,
		      "outer status %#x; stderr:\n%s", p.status, p.errbuf);
	ck_assert_msg(count(p.errbuf, "cancelled by") == 3, "stderr:\n%s",
		      p.errbuf);
	ck_assert_msg(count(p.errbuf, "cancelled by the parent token") >=
			  expect_parent_lines,
		      "stderr:\n%s", p.errbuf);
}

START_TEST(test_nested_three_deep)
{
	const char *r = runner();
	const char *argv[] = { r,    "-v", "--", r,
			       "-v", "--", r,	 "-v",
			       "--", "sh", "-c", "echo $$ >&3; exec sleep 30",
			       NULL };

	nested(argv, 0);
}
END_TEST

/* The outer runner sends CONT, which stops nothing: the two inner ones
 * can only learn of the cancel through CANCELFD. */
START_TEST(test_nested_through_tokens_only)
{
	const char *r = runner();
	const char *argv[] = { r,
			       "-v",
			       "--on-cancel",
			       "CONT",
			       "--",
			       r,
			       "-v",
			       "--on-cancel",
			       "CONT",
			       "--",
			       r,
			       "-v",
			       "--",
			       "sh",
			       "-c",
			       "echo $$ >&3; exec sleep 30",
			       NULL };

	nested(argv, 2);
}
END_TEST

/* A middle runner that dies abruptly (KILL, no chance to cancel
 * anything) still cancels what runs below it: its export hangs up. */
START_TEST(test_nested_middle_killed)
{
	const char *r = runner();
	const char *argv[] = { r,    "-v", "--",
			       r,    "-v", "--",
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
	pf_leaf = open_pidfd(leaf);
	pf_inner = open_pidfd(inner);
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

/* --fdlist: print the open fds, CANCELFD, what it is, and the signal
 * state, then exit. */
static int fdlist(void)
{
	DIR *d = opendir("/proc/self/fd");
	const char *env = getenv(CFD_ENV);
	struct dirent *e;
	char line[512], path[64], target[128];
	FILE *status;
	int fd, len = 0;

	if (!d)
		return 2;
	len += snprintf(line, sizeof(line), "fds:");
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
			len += snprintf(line + len, sizeof(line) - (size_t)len,
					" %s", e->d_name);
	closedir(d);
	printf("%s\nCANCELFD=%s\n", line, env ? env : "(unset)");
	if (env) {
		fd = atoi(env);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		len = (int)readlink(path, target, sizeof(target) - 1);
		target[len > 0 ? len : 0] = '\0';
		printf("target=%.4s\naccess=%s\ncloexec=%d\n", target,
		       (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY ? "r" : "w",
		       (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
	}
	status = fopen("/proc/self/status", "re");
	if (!status)
		return 2;
	while (fgets(line, sizeof(line), status))
		if (!strncmp(line, "SigBlk:", 7) ||
		    !strncmp(line, "SigIgn:", 7))
			fputs(line, stdout);
	fclose(status);
	return 0;
}

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
	int fds[16], n, cfd;
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
	/* 0, 1, 2, the caller's extra fds, CANCELFD: nothing else. */
	ck_assert_int_eq(fds[i++], 0);
	ck_assert_int_eq(fds[i++], 1);
	ck_assert_int_eq(fds[i++], 2);
	for (int k = 0; extra && extra[2 * k] >= 0; k++) {
		ck_assert_msg(i < n && fds[i] == extra[2 * k + 1],
			      "stdout:\n%s", p.outbuf);
		i++;
	}
	ck_assert_msg(i + 1 == n && fds[i] == cfd, "stdout:\n%s", p.outbuf);
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

static const char *self_exe(void)
{
	static char path[4096];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);

	ck_assert_int_gt(n, 0);
	path[n] = '\0';
	return path;
}

START_TEST(test_inherits_only_cancelfd)
{
	const char *argv[] = { runner(), "--", self_exe(), "--fdlist", NULL };
	const char *env[] = { "CANCELFD", NULL };

	check_inheritance(argv, NULL, env);
}
END_TEST

/* An fd the caller passes on purpose goes through, as with timeout(1). */
START_TEST(test_inherits_callers_fds)
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
START_TEST(test_inherits_only_cancelfd_nested)
{
	const char *argv[] = { runner(),   "--",       runner(), "--",
			       self_exe(), "--fdlist", NULL };
	const char *env[] = { "CANCELFD", NULL };

	check_inheritance(argv, NULL, env);
}
END_TEST

/* ---- a program using cfd_token_from_env() ---- */

/* --token-wait: a program that stops on its token, not on signals. */
static int token_wait(void)
{
	struct cfd_token *tok;
	int r;

	r = cfd_token_from_env(&tok, "cancelfd-run", NULL);
	if (r < 0)
		return 3;
	r = cfd_token_wait(tok, CFD_SEC(20));
	if (r == 0)
		r = cfd_token_reason(tok) == CFD_REASON_FD ? 42 : 5;
	else
		r = 4;
	cfd_token_unref(tok);
	/* _exit: no LeakSanitizer check at exit.  It stops this process
	 * with ptrace, and the SIGCONT that cancelfd-run sends its process
	 * group after the cancel signal (as timeout(1) does) can cancel
	 * that stop and leave the checker waiting for ever. */
	_exit(r);
}

START_TEST(test_program_cancelled_through_token)
{
	const char *argv[] = { runner(),       "--preserve-status",
			       "--timeout",    "0.2",
			       "--",	       self_exe(),
			       "--token-wait", NULL };
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

START_TEST(test_bad_cancelfd)
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
START_TEST(test_cancelled_before_start)
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

/* ---- signals ---- */

/* Start the runner with COMMAND reporting on stdout once it runs (so
 * that the runner's signal setup is done), send it sigs in order, and
 * return its stderr's account of the cause. */
static void signal_runner(struct proc *p, const char *const *extra_args,
			  const int *ignore, const int *sigs)
{
	const char *argv[16];
	const char *env[] = { "CANCELFD", NULL };
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

START_TEST(test_default_signals)
{
	static const int each[] = { SIGINT, SIGTERM, SIGHUP };
	static const char *const names[] = { "signal INT", "signal TERM",
					     "signal HUP" };
	struct proc p;

	for (int i = 0; i < 3; i++) {
		int sigs[] = { each[i], 0 };

		signal_runner(&p, NULL, NULL, sigs);
		ck_assert_msg(strstr(p.errbuf, names[i]), "stderr:\n%s",
			      p.errbuf);
		/* COMMAND got TERM, so we died by TERM. */
		ck_assert(WIFSIGNALED(p.status) &&
			  WTERMSIG(p.status) == SIGTERM);
	}
}
END_TEST

/* --signal replaces the set: USR1 cancels; the others are not watched. */
START_TEST(test_signal_option)
{
	/* Repeated, and a comma-separated list. */
	static const char *const args[] = { "--signal", "USR1", "--signal",
					    "SIGRTMIN+1,usr2", NULL };
	int usr1[] = { SIGUSR1, 0 }, rt[] = { SIGRTMIN + 1, 0 };
	int usr2[] = { SIGUSR2, 0 };
	int term[] = { SIGTERM, 0 };
	struct proc p;

	signal_runner(&p, args, NULL, usr1);
	ck_assert_msg(strstr(p.errbuf, "cancelled by signal USR1"),
		      "stderr:\n%s", p.errbuf);
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
 * HUP first, then TERM, and TERM is the cause.  (Were HUP watched, it
 * would win: it came first and has the lower number.) */
START_TEST(test_ignored_on_entry_not_watched)
{
	static const int ignore[] = { SIGHUP, 0 };
	int sigs[] = { SIGHUP, SIGTERM, 0 };
	struct proc p;

	signal_runner(&p, NULL, ignore, sigs);
	ck_assert_msg(strstr(p.errbuf, "cancelled by signal TERM"),
		      "stderr:\n%s", p.errbuf);
}
END_TEST

/* ---- the command line ---- */

START_TEST(test_help_and_version)
{
	const char *help[] = { runner(), "--help", NULL };
	const char *version[] = { runner(), "--version", NULL };
	struct spawn_opts o = { .argv = help };
	struct proc p;

	spawn(&p, &o);
	ck_assert_int_eq(finish(&p, T_WAIT_MS), 0);
	ck_assert_ptr_nonnull(strstr(p.outbuf, "Usage: cancelfd-run"));
	ck_assert_ptr_nonnull(strstr(p.outbuf, "--kill-after"));
	o.argv = version;
	spawn(&p, &o);
	ck_assert_int_eq(finish(&p, T_WAIT_MS), 0);
	ck_assert_ptr_nonnull(strstr(p.outbuf, "cancelfd-run (cancelfd)"));
}
END_TEST

/* Without "--", the first operand is COMMAND and the rest is its own. */
START_TEST(test_command_without_dashes)
{
	const char *argv[] = { runner(),	 "-t",	      "10", "sh", "-c",
			       "echo \"$0 $1\"", "--timeout", NULL };
	struct spawn_opts o = { .argv = argv };
	struct proc p;

	spawn(&p, &o);
	ck_assert_int_eq(finish(&p, T_WAIT_MS), 0);
	ck_assert_str_eq(p.outbuf, "--timeout \n");
}
END_TEST

START_TEST(test_ms_suffix)
{
	const char *argv[] = { runner(), "--timeout", "200ms", "--",
			       "sleep",	 "30",	      NULL };
	struct spawn_opts o = { .argv = argv };
	struct proc p;
	int64_t t0 = t_now_ns();

	spawn(&p, &o);
	ck_assert_int_ne(finish(&p, T_WAIT_MS), -1);
	ck_assert(WIFEXITED(p.status) && WEXITSTATUS(p.status) == 124);
	ck_assert_int_ge(t_now_ns() - t0, CFD_MSEC(200));
}
END_TEST

START_TEST(test_parse_duration)
{
	static const struct {
		const char *s;
		int64_t ns;
	} ok[] = {
		{ "0", 0 },
		{ "1", CFD_SEC(1) },
		{ "0.2", CFD_MSEC(200) },
		{ ".5", CFD_MSEC(500) },
		{ "5.", CFD_SEC(5) },
		{ "1.5s", CFD_MSEC(1500) },
		{ "200ms", CFD_MSEC(200) },
		{ "0.5ms", CFD_USEC(500) },
		{ "1.000000001", CFD_SEC(1) + 1 },
		{ "2m", CFD_SEC(120) },
		{ "0.5h", CFD_SEC(1800) },
		{ "1d", CFD_SEC(86400) },
		{ "0.5d", CFD_SEC(43200) },
		{ "99999999999999999999", RUN_FOREVER },
		{ "9999999999d", RUN_FOREVER },
	};
	static const char *const bad[] = { "",	  ".",	 "s",	 "-1",	"+1",
					   " 1",  "1 ",	 "1x",	 "1ss", "1e3",
					   "inf", "nan", "0x10", "1,5", "1.2.3",
					   "ms",  "1S" };

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

START_TEST(test_parse_signal)
{
	char buf[32];

	ck_assert_int_eq(run_parse_signal("TERM"), SIGTERM);
	ck_assert_int_eq(run_parse_signal("SIGTERM"), SIGTERM);
	ck_assert_int_eq(run_parse_signal("term"), SIGTERM);
	ck_assert_int_eq(run_parse_signal("SigInt"), SIGINT);
	ck_assert_int_eq(run_parse_signal("15"), SIGTERM);
	ck_assert_int_eq(run_parse_signal("9"), SIGKILL);
	ck_assert_int_eq(run_parse_signal("CLD"), SIGCHLD);
	ck_assert_int_eq(run_parse_signal("RTMIN"), SIGRTMIN);
	ck_assert_int_eq(run_parse_signal("RTMIN+3"), SIGRTMIN + 3);
	ck_assert_int_eq(run_parse_signal("SIGRTMAX-1"), SIGRTMAX - 1);
	ck_assert_int_eq(run_parse_signal("RTMAX"), SIGRTMAX);
	ck_assert_int_eq(run_parse_signal(""), -EINVAL);
	ck_assert_int_eq(run_parse_signal("0"), -EINVAL);
	ck_assert_int_eq(run_parse_signal("32"), -EINVAL);
	ck_assert_int_eq(run_parse_signal("65"), -EINVAL);
	ck_assert_int_eq(run_parse_signal("-15"), -EINVAL);
	ck_assert_int_eq(run_parse_signal("FOO"), -EINVAL);
	ck_assert_int_eq(run_parse_signal("SIG"), -EINVAL);
	ck_assert_int_eq(run_parse_signal("RTMIN-1"), -EINVAL);
	ck_assert_int_eq(run_parse_signal("RTMIN+99"), -EINVAL);
	ck_assert_int_eq(run_parse_signal("RTMIN+"), -EINVAL);
	ck_assert_str_eq(run_signal_name(SIGTERM, buf, sizeof(buf)), "TERM");
	ck_assert_str_eq(run_signal_name(SIGCHLD, buf, sizeof(buf)), "CHLD");
	ck_assert_str_eq(run_signal_name(SIGRTMIN + 2, buf, sizeof(buf)),
			 "RTMIN+2");
	ck_assert_str_eq(run_signal_name(33, buf, sizeof(buf)), "33");
}
END_TEST

static Suite *run_suite(void)
{
	Suite *s = suite_create("cancelfd-run");
	TCase *tc;

	tc = t_tcase("side by side with timeout(1)");
	tcase_add_checked_fixture(tc, scratch_setup, scratch_teardown);
	tcase_add_loop_test(tc, test_side_by_side, 0, NCASES);
	suite_add_tcase(s, tc);

	tc = t_tcase("nesting");
	tcase_add_test(tc, test_nested_three_deep);
	tcase_add_test(tc, test_nested_through_tokens_only);
	tcase_add_test(tc, test_nested_middle_killed);
	suite_add_tcase(s, tc);

	tc = t_tcase("inheritance");
	tcase_add_test(tc, test_inherits_only_cancelfd);
	tcase_add_test(tc, test_inherits_callers_fds);
	tcase_add_test(tc, test_inherits_only_cancelfd_nested);
	/* Repeated: the program exits the moment the token hangs up, in a
	 * race with the runner's own poll (which must still say 124). */
	tcase_add_loop_test(tc, test_program_cancelled_through_token, 0, 5);
	suite_add_tcase(s, tc);

	tc = t_tcase("CANCELFD");
	tcase_add_checked_fixture(tc, scratch_setup, scratch_teardown);
	tcase_add_test(tc, test_bad_cancelfd);
	tcase_add_test(tc, test_cancelled_before_start);
	suite_add_tcase(s, tc);

	tc = t_tcase("signals");
	tcase_add_test(tc, test_default_signals);
	tcase_add_test(tc, test_signal_option);
	tcase_add_test(tc, test_ignored_on_entry_not_watched);
	suite_add_tcase(s, tc);

	tc = t_tcase("command line");
	tcase_add_test(tc, test_help_and_version);
	tcase_add_test(tc, test_command_without_dashes);
	tcase_add_test(tc, test_ms_suffix);
	tcase_add_test(tc, test_parse_duration);
	tcase_add_test(tc, test_parse_signal);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--fdlist") == 0)
		return fdlist();
	if (argc > 1 && strcmp(argv[1], "--token-wait") == 0)
		return token_wait();
	return t_run_suite(run_suite());
}
