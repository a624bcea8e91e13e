/* SPDX-License-Identifier: MIT */
/*
 * Description: cancelfd-run (tools/), side by side with coreutils
 * timeout(1): the same /bin/sh scripts run with T=timeout and with
 * T=cancelfd-run must give the same "$?", the same standard output (what
 * COMMAND received) and the same standard error (with the program's name
 * taken out), except where a difference is documented, and then the
 * difference is what is asserted.  Also: nesting three deep; what COMMAND
 * inherits (fds, signal mask, dispositions, CANCELFD); the extensions (the
 * forms without a DURATION operand, --cancel-on); the file descriptors it
 * needs; and the parsers of durations, signals and quoting.
 *
 * CANCELFD_RUN names the binary under test (set by tests/meson.build).
 * This binary doubles as COMMAND: --fdlist reports what it inherited,
 * --token-wait waits on its CANCELFD token, --signals reports the signals
 * it receives.  Every wait is bounded and woken by an fd (pipes, fifos,
 * pidfds), never by sleeping: a timeout that must fire is short and its
 * COMMAND long (sleep 30), and a signal is sent once COMMAND said it runs.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "run.h"

static const char *runner(void)
{
	const char *r = getenv("CANCELFD_RUN");

	ck_assert_msg(r && *r, "CANCELFD_RUN is not set");
	return r;
}

static const char *self_exe(void)
{
	static char path[4096];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);

	ck_assert_int_gt(n, 0);
	path[n] = '\0';
	return path;
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
	int nofile;		/* RLIMIT_NOFILE, or 0 to leave it */
};

/* Start a process in a new process group with stdin /dev/null, stdout and
 * stderr to pipes, the fds asked for and no other (whatever this test
 * process holds, Check's own included, stays here), and no core dumps
 * (COMMAND is killed by QUIT in some cases). */
static void spawn(struct proc *p, const struct spawn_opts *o)
{
	int out[2], err[2];

	memset(p, 0, sizeof(*p));
	ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
	p->pid = fork();
	ck_assert_int_ge(p->pid, 0);
	if (p->pid == 0) {
		struct rlimit no_core = { 0, 0 };
		sigset_t none;
		int n = 0, devnull;

		setpgid(0, 0);
		setrlimit(RLIMIT_CORE, &no_core);
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
		if (o->nofile > 0) {
			struct rlimit lim = { (rlim_t)o->nofile,
					      (rlim_t)o->nofile };

			setrlimit(RLIMIT_NOFILE, &lim);
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
	p->pidfd = t_pidfd_open(p->pid);
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
	char full[4096];
	const char *argv[] = { "/bin/sh", "-c", full, NULL };
	struct spawn_opts o = { .argv = argv, .env = env };
	int st;

	snprintf(full, sizeof(full), "%s\nexit $?", script);
	spawn(p, &o);
	st = finish(p, 30000);
	ck_assert_msg(st != -1, "hung: %s\nstdout: %s\nstderr: %s", script,
		      p->outbuf, p->errbuf);
	ck_assert_msg(WIFEXITED(st), "sh died: %s", script);
	return WEXITSTATUS(st);
}

/*
 * The program's name out of its messages: "NAME: " at the start of a line
 * becomes "PROG: ", and so does the name in "Try 'NAME --help'".  With
 * drop_cause, the lines that only cancelfd-run writes ("cancelled by ...",
 * a documented extension of --verbose) go.
 */
static void normalize(const char *in, const char *name, bool drop_cause,
		      char *out, size_t size)
{
	char try[4200];
	size_t nlen = strlen(name), len = 0, tlen;

	snprintf(try, sizeof(try), "Try '%s --help'", name);
	tlen = strlen(try);
	out[0] = '\0';
	while (*in) {
		const char *eol = strchr(in, '\n');
		size_t l = eol ? (size_t)(eol - in + 1) : strlen(in);
		char line[4400];
		size_t k = 0;

		for (size_t i = 0; i < l && k + 8 < sizeof(line);) {
			if (i == 0 && strncmp(in, name, nlen) == 0 &&
			    in[nlen] == ':') {
				k += (size_t)snprintf(line + k,
						      sizeof(line) - k, "PROG");
				i += nlen;
			} else if (strncmp(in + i, try, tlen) == 0) {
				k +=
				    (size_t)snprintf(line + k, sizeof(line) - k,
						     "Try 'PROG --help'");
				i += tlen;
			} else {
				line[k++] = in[i++];
			}
		}
		line[k] = '\0';
		in += l;
		if (drop_cause && strncmp(line, "PROG: cancelled by ", 19) == 0)
			continue;
		len += (size_t)snprintf(out + len, size - len, "%s", line);
		if (len >= size)
			break;
	}
}

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

	/* The documented differences. */
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

/* A scratch directory per test, with a fifo and the files the scripts
 * need. */
static char scratch[64];
static char mark[128], nx[128], ns[128], fifo[128];
static char mark_env[160], nx_env[160], ns_env[160], fifo_env[160];
static char r_env[4200], h_env[4200];

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void scratch_setup(void)
{
	snprintf(scratch, sizeof(scratch), "/tmp/cfd-run-test.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(scratch));
	snprintf(mark, sizeof(mark), "%s/mark", scratch);
	snprintf(nx, sizeof(nx), "%s/not-executable", scratch);
	snprintf(ns, sizeof(ns), "%s/no-shebang", scratch);
	snprintf(fifo, sizeof(fifo), "%s/fifo", scratch);
	write_file(nx, "#!/bin/sh\n", 0644);
	write_file(ns, "exit 6\n", 0755);
	snprintf(mark_env, sizeof(mark_env), "MARK=%s", mark);
	snprintf(nx_env, sizeof(nx_env), "NX=%s", nx);
	snprintf(ns_env, sizeof(ns_env), "NS=%s", ns);
	snprintf(fifo_env, sizeof(fifo_env), "F=%s", fifo);
	snprintf(r_env, sizeof(r_env), "R=%s", runner());
	snprintf(h_env, sizeof(h_env), "H=%s", self_exe());
}

static void scratch_teardown(void)
{
	unlink(mark);
	unlink(nx);
	unlink(ns);
	unlink(fifo);
	rmdir(scratch);
}

struct result {
	int status;
	char out[OUT_MAX], err[OUT_MAX];
};

/* One script with "$T" the runner given, in a fresh fifo. */
static void run_script(const char *script, const char *t, bool utf8,
		       struct result *res)
{
	char t_env[4200];
	const char *env[] = { t_env,
			      r_env,
			      h_env,
			      mark_env,
			      nx_env,
			      ns_env,
			      fifo_env,
			      "L=env --default-signal=INT,QUIT",
			      utf8 ? "LC_ALL=C.UTF-8" : "LC_ALL=C",
			      "CANCELFD",
			      NULL };
	struct proc p;

	snprintf(t_env, sizeof(t_env), "T=%s", t);
	unlink(fifo);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	res->status = sh_status(&p, script, env);
	memcpy(res->out, p.outbuf, sizeof(res->out));
	memcpy(res->err, p.errbuf, sizeof(res->err));
}

START_TEST(test_side_by_side)
{
	const struct side_by_side *c = &cases[_i];
	bool utf8 = c->flags & UTF8;
	static struct result t, r;
	static char te[OUT_MAX], re[OUT_MAX];
	int run_status = c->why ? c->run_status : c->status;

	run_script(c->script, "timeout", utf8, &t);
	if (c->flags & NOT_RUN)
		ck_assert_msg(access(mark, F_OK) != 0, "%s: timeout ran it",
			      c->what);
	run_script(c->run_script ? c->run_script : c->script, runner(), utf8,
		   &r);
	ck_assert_msg(t.status == c->status,
		      "%s: timeout gave %d, expected %d: %s\nstderr: %s",
		      c->what, t.status, c->status, c->script, t.err);
	ck_assert_msg(r.status == run_status,
		      "%s: cancelfd-run gave %d, expected %d: %s\nstderr: %s",
		      c->what, r.status, run_status,
		      c->run_script ? c->run_script : c->script, r.err);
	if (c->flags & NOT_RUN)
		ck_assert_msg(access(mark, F_OK) != 0, "%s: COMMAND ran",
			      c->what);
	/* What COMMAND received, and printed. */
	if (c->out)
		ck_assert_msg(strcmp(t.out, c->out) == 0,
			      "%s: timeout's stdout:\n%s", c->what, t.out);
	if (c->why && c->run_out)
		ck_assert_msg(strcmp(r.out, c->run_out) == 0,
			      "%s: cancelfd-run's stdout:\n%s", c->what, r.out);
	else if (!(c->flags & STDOUT_DIFFERS))
		ck_assert_msg(strcmp(t.out, r.out) == 0,
			      "%s: stdout\ntimeout:\n%s\ncancelfd-run:\n%s",
			      c->what, t.out, r.out);
	/* The messages, but for the program's name and the --verbose
	 * lines of cancelfd-run's own. */
	normalize(t.err, "timeout", false, te, sizeof(te));
	normalize(r.err, runner(), true, re, sizeof(re));
	if (!(c->flags & STDERR_DIFFERS))
		ck_assert_msg(strcmp(te, re) == 0,
			      "%s: stderr\ntimeout:\n%s\ncancelfd-run:\n%s",
			      c->what, te, re);
	if (c->cause)
		ck_assert_msg(strstr(r.err, c->cause),
			      "%s: no '%s' in stderr:\n%s", c->what, c->cause,
			      r.err);
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
START_TEST(test_nested_three_deep)
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
START_TEST(test_nested_through_tokens_only)
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
START_TEST(test_nested_middle_killed)
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

/* --fdlist: print the open fds, CANCELFD, what it is, and the signal
 * state, then exit. */
static int fdlist(void)
{
	DIR *d = opendir("/proc/self/fd");
	const char *env = getenv(CFD_ENV);
	struct dirent *e;
	char line[512], target[128];
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
		printf("target=%.4s\naccess=%s\ncloexec=%d\n",
		       t_fd_target(fd, target, sizeof(target)),
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
START_TEST(test_default_signals)
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
START_TEST(test_cancel_on)
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
START_TEST(test_ignored_on_entry)
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

/* Run the runner with args (NULL-terminated), no CANCELFD, LC_ALL=C;
 * return its wait status. */
static int run_args(struct proc *p, const char *const *args)
{
	const char *env[] = { "CANCELFD", "LC_ALL=C", NULL };
	const char *argv[32];
	struct spawn_opts o = { .argv = argv, .env = env };
	int n = 0;

	argv[n++] = runner();
	for (int i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	spawn(p, &o);
	ck_assert_int_ne(finish(p, T_WAIT_MS), -1);
	return p->status;
}

/* The status as a shell shows it: a process that the runner's KILL to its
 * own group ended too is 137. */
static void expect_exit(const char *const *args, int status, const char *err)
{
	struct proc p;
	int st = run_args(&p, args);
	int sh = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);

	ck_assert_msg(sh == status,
		      "%s %s...: status %#x, expected exit %d\nstderr:\n%s",
		      args[0], args[1] ? args[1] : "", st, status, p.errbuf);
	if (err)
		ck_assert_msg(strstr(p.errbuf, err), "%s: no '%s' in:\n%s",
			      args[0], err, p.errbuf);
}

/* --cancel-on cannot name what cannot be caught, or SIGCHLD. */
START_TEST(test_cancel_on_refused)
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
START_TEST(test_on_cancel_alias)
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

/* ---- the command line ---- */

START_TEST(test_help_and_version)
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
START_TEST(test_alias_forms)
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
START_TEST(test_command_without_dashes)
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

START_TEST(test_few_fds)
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

/* ---- the parsers ---- */

START_TEST(test_parse_duration)
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

START_TEST(test_duration_operand)
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

START_TEST(test_parse_signal)
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

START_TEST(test_signal_names)
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
START_TEST(test_quote)
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

/* ---- this binary as COMMAND ---- */

/*
 * timeout(1) takes a signal that comes before its fork() has returned for
 * one that came before COMMAND existed: it exits 128+N and passes nothing
 * on.  So a script must not signal a runner before the runner is back in
 * its wait.  Each runner above (timeout or cancelfd-run) is watched until
 * it sleeps, which after the fork is its wait (bounded: 10 s).
 */
static void wait_runners_asleep(void)
{
	pid_t pid = getppid();

	for (int depth = 0; depth < 8 && pid > 1; depth++) {
		char path[64], buf[512], comm[64] = "", state = '?';
		int ppid = 0;

		for (int i = 0; i < 20000; i++) {
			const char *lp, *rp;
			ssize_t n;
			int fd;

			snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				return;
			n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			if (n <= 0)
				return;
			buf[n] = '\0';
			lp = strchr(buf, '(');
			rp = strrchr(buf, ')');
			if (!lp || !rp ||
			    sscanf(rp + 2, "%c %d", &state, &ppid) != 2)
				return;
			snprintf(comm, sizeof(comm), "%.*s", (int)(rp - lp - 1),
				 lp + 1);
			if (strcmp(comm, "timeout") != 0 &&
			    strcmp(comm, "cancelfd-run") != 0)
				return;
			if (state == 'S')
				break;
			usleep(500);
		}
		pid = ppid;
	}
}

/* --signals UNTIL ACTION FIFO: see the side-by-side scripts. */
static int report_signals(const char *until, const char *action,
			  const char *fifo)
{
	static const int sigs[] = { SIGHUP,  SIGINT,  SIGQUIT, SIGTERM,
				    SIGUSR1, SIGUSR2, SIGALRM };
	char until_name[16] = "", name[32];
	int until_count = 1, seen[_NSIG] = { 0 };
	sigset_t set;
	FILE *f;

	sscanf(until, "%15[^:]:%d", until_name, &until_count);
	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&set, sigs[i]);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	wait_runners_asleep();
	f = fopen(fifo, "we");
	if (!f)
		_exit(98);
	fprintf(f, "%d\n", (int)getpid());
	fflush(f);
	for (;;) {
		struct timespec bound = { 20, 0 };
		siginfo_t si;
		int sig = sigtimedwait(&set, &si, &bound);
		bool done;

		if (sig < 0 && errno == EINTR)
			continue;
		if (sig < 0)
			_exit(99); /* nothing came: the test has failed */
		run_signal_name(sig, name, sizeof(name));
		if (seen[sig]++ == 0) {
			printf("got %s\n", name);
			fflush(stdout);
		}
		fprintf(f, "got %s\n", name);
		fflush(f);
		done =
		    strcmp(until_name, "any") == 0 ||
		    (strcmp(until_name, name) == 0 && seen[sig] >= until_count);
		if (!done)
			continue;
		if (strcmp(action, "die") == 0) {
			sigset_t one;

			sigemptyset(&one);
			sigaddset(&one, sig);
			signal(sig, SIG_DFL);
			raise(sig);
			sigprocmask(SIG_UNBLOCK, &one, NULL);
		}
		/* _exit: no LeakSanitizer at exit (see token_wait()). */
		_exit(strncmp(action, "exit:", 5) == 0 ? atoi(action + 5) : 97);
	}
}

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
	 * race with the runner's own loop (which must still say 124). */
	tcase_add_loop_test(tc, test_program_cancelled_through_token, 0, 5);
	suite_add_tcase(s, tc);

	tc = t_tcase("CANCELFD");
	tcase_add_checked_fixture(tc, scratch_setup, scratch_teardown);
	tcase_add_test(tc, test_bad_cancelfd);
	tcase_add_test(tc, test_cancelled_before_start);
	suite_add_tcase(s, tc);

	tc = t_tcase("signals");
	tcase_add_test(tc, test_default_signals);
	tcase_add_test(tc, test_cancel_on);
	tcase_add_test(tc, test_ignored_on_entry);
	tcase_add_test(tc, test_cancel_on_refused);
	tcase_add_test(tc, test_on_cancel_alias);
	suite_add_tcase(s, tc);

	tc = t_tcase("command line");
	tcase_add_test(tc, test_help_and_version);
	tcase_add_test(tc, test_alias_forms);
	tcase_add_test(tc, test_command_without_dashes);
	tcase_add_test(tc, test_parse_duration);
	tcase_add_test(tc, test_duration_operand);
	tcase_add_test(tc, test_parse_signal);
	tcase_add_test(tc, test_signal_names);
	tcase_add_test(tc, test_quote);
	suite_add_tcase(s, tc);

	tc = t_tcase("file descriptors");
	tcase_add_checked_fixture(tc, scratch_setup, scratch_teardown);
	tcase_add_test(tc, test_few_fds);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--fdlist") == 0)
		return fdlist();
	if (argc > 1 && strcmp(argv[1], "--token-wait") == 0)
		return token_wait();
	if (argc > 4 && strcmp(argv[1], "--signals") == 0)
		return report_signals(argv[2], argv[3], argv[4]);
	return t_run_suite(run_suite());
}
