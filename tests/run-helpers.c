/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "run-helpers.h"
#include "run.h"

const char *runner(void)
{
	const char *r = getenv("CANCELFD_RUN");

	ck_assert_msg(r && *r, "CANCELFD_RUN is not set");
	return r;
}

const char *self_exe(void)
{
	static char path[4096];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);

	ck_assert_int_gt(n, 0);
	path[n] = '\0';
	return path;
}

/* ---- processes ---- */

void spawn(struct proc *p, const struct spawn_opts *o)
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

bool collect(struct proc *p, int lines, int ms)
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

int finish(struct proc *p, int ms)
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

int run_args(struct proc *p, const char *const *args)
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

void expect_exit(const char *const *args, int status, const char *err)
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

/* ---- the side-by-side scripts ---- */

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

static char scratch[64];
char mark[128];
static char nx[128], ns[128], fifo[128];
static char mark_env[160], nx_env[160], ns_env[160], fifo_env[160];
static char r_env[4200], h_env[4200];

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

void scratch_setup(void)
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

void scratch_teardown(void)
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

void check_side_by_side(const struct side_by_side *c)
{
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

/* ---- this binary as COMMAND ---- */

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

/* --token-wait: a program that stops on its token, not on signals. */
static int token_wait(void)
{
	struct cfd_token *tok;
	int r;

	r = cfd_token_from_env(&tok, "cancelfd-run", NULL);
	if (r < 0)
		return 3;
	if (cfd_token_wait(tok, CFD_SEC(20)) < 0)
		r = 4;
	else /* the runner's own cause: its timeout */
		r = cfd_token_reason(tok) == CFD_REASON_TIMEOUT &&
			    cfd_token_remote(tok)
			? 42
			: 5;
	cfd_token_unref(tok);
	/* _exit: no LeakSanitizer check at exit.  It stops this process
	 * with ptrace, and the SIGCONT that cancelfd-run sends its process
	 * group after the cancel signal (as timeout(1) does) can cancel
	 * that stop and leave the checker waiting for ever. */
	_exit(r);
}

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

static int command_role(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--fdlist") == 0)
		return fdlist();
	if (argc > 1 && strcmp(argv[1], "--token-wait") == 0)
		return token_wait();
	if (argc > 4 && strcmp(argv[1], "--signals") == 0)
		return report_signals(argv[2], argv[3], argv[4]);
	return -1;
}

int run_main(int argc, char **argv, Suite *(*make)(void))
{
	int role = command_role(argc, argv);

	return role >= 0 ? role : t_run_suite(make());
}
