/* SPDX-License-Identifier: MIT */
/*
 * cancelfd-run: run a command under a cancellation token.
 *
 * The token's sources are a timeout, signals (INT, TERM, HUP unless told
 * otherwise) and the token this program inherited through CANCELFD, if
 * any.  COMMAND inherits a watch-only export of the token through CANCELFD,
 * so a cancelfd-run inside COMMAND, or any program that calls
 * cfd_token_from_env(), is cancelled when this one is: a tree of processes
 * cancels as a tree of tokens.
 *
 * Compatible with timeout(1) where they overlap: its exit statuses, its
 * process group (it makes itself a group leader unless --foreground, and
 * signals the group), --kill-after and --preserve-status.
 *
 * No race is left to timing: the watched signals are blocked before the
 * library starts its watcher thread (so that only the signalfd sees them),
 * the child is watched through a pidfd polled together with the token's
 * fd, and an exec failure comes back through a close-on-exec pipe.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "run.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* the same on every architecture */
#endif

/* A duration this long (146 years) never ends: no timer is set. */
#define RUN_NO_LIMIT ((int64_t)1 << 62)

struct run {
	struct run_options o;
	const char *command;
	struct cfd_token *parent;   /* imported from CANCELFD, or NULL */
	struct cfd_token *tok;	    /* COMMAND's token */
	struct cfd_token *kill_tok; /* --kill-after, once cancelled */
	sigset_t orig_mask;
	struct sigaction orig_ttin, orig_ttou;
	int64_t start;
	pid_t pid;
	int pidfd;
	bool cancelled, timed_out;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", run_program);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* "0.200s": for times measured. */
static const char *fmt_elapsed(int64_t ns, char *buf, size_t size)
{
	snprintf(buf, size, "%lld.%03llds", (long long)(ns / 1000000000),
		 (long long)(ns % 1000000000 / 1000000));
	return buf;
}

/* "0.2s", "1.5s", "90s": durations given, trailing zeros dropped. */
static const char *fmt_seconds(int64_t ns, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%lld.%09lld", (long long)(ns / 1000000000),
			 (long long)(ns % 1000000000));

	while (n > 0 && buf[n - 1] == '0')
		buf[--n] = '\0';
	if (n > 0 && buf[n - 1] == '.')
		buf[--n] = '\0';
	snprintf(buf + n, size - (size_t)n, "s");
	return buf;
}

static const char *sig_name(int sig, char *buf, size_t size)
{
	return run_signal_name(sig, buf, size);
}

/* ---- signals ---- */

/*
 * Block the watched signals now, before the library starts the default
 * watcher's thread: threads inherit the mask, and a signal not blocked in
 * every thread would be delivered instead of read from the signalfd.  The
 * original mask goes back in the child, before exec.
 */
static int setup_signals(struct run *r)
{
	struct sigaction ign = { .sa_handler = SIG_IGN };
	sigset_t block;

	/* Signals ignored on entry (nohup ignores HUP) are not watched by
	 * default, as a shell does not trap them. */
	if (!r->o.signals_given) {
		static const int defaults[] = { SIGINT, SIGTERM, SIGHUP };

		for (size_t i = 0; i < 3; i++) {
			struct sigaction cur;

			if (sigaction(defaults[i], NULL, &cur) == 0 &&
			    cur.sa_handler == SIG_IGN)
				sigdelset(&r->o.signals, defaults[i]);
		}
	}
	/* SIGPIPE too, in this thread and so in the watcher's: a write to a
	 * pipe whose reader has gone (stderr, or the token's export after
	 * COMMAND exited) must fail with EPIPE, not end us. */
	block = r->o.signals;
	sigaddset(&block, SIGPIPE);
	if (pthread_sigmask(SIG_BLOCK, &block, &r->orig_mask) != 0) {
		say("cannot block signals");
		return -1;
	}
	/* As timeout(1): a background COMMAND that touches the terminal
	 * must not stop us.  Restored in the child. */
	sigemptyset(&ign.sa_mask);
	sigaction(SIGTTIN, &ign, &r->orig_ttin);
	sigaction(SIGTTOU, &ign, &r->orig_ttou);
	return 0;
}

/* Send sig to COMMAND and, unless --foreground, to our process group
 * (ignoring it ourselves), then SIGCONT so that a stopped job sees it: what
 * timeout(1) does.  A KILL to the group ends this process too. */
static void send_signal(struct run *r, int sig)
{
	struct sigaction ign = { .sa_handler = SIG_IGN };

	sigemptyset(&ign.sa_mask);
	kill(r->pid, sig);
	if (r->o.foreground)
		return;
	sigaction(sig, &ign, NULL);
	kill(0, sig);
	if (sig != SIGKILL && sig != SIGCONT) {
		kill(r->pid, SIGCONT);
		sigaction(SIGCONT, &ign, NULL);
		kill(0, SIGCONT);
	}
}

/* Exit as COMMAND did: by the same signal, without a core dump of our
 * own (timeout(1) does the same), so that a shell sees 128+N and knows a
 * signal did it. */
static void die_by_signal(int sig)
{
	if (prctl(PR_SET_DUMPABLE, 0) == 0) {
		struct sigaction dfl = { .sa_handler = SIG_DFL };
		sigset_t one;

		sigemptyset(&dfl.sa_mask);
		sigaction(sig, &dfl, NULL);
		raise(sig); /* pending while blocked */
		sigemptyset(&one);
		sigaddset(&one, sig);
		pthread_sigmask(SIG_UNBLOCK, &one, NULL);
	}
	exit(128 + sig);
}

/* ---- the token ---- */

static int import_parent(struct run *r)
{
	const char *v = getenv(CFD_ENV);
	char value[64];
	int e;

	snprintf(value, sizeof(value), "%s", v ? v : "");
	e = cfd_token_from_env(&r->parent, "CANCELFD", NULL);
	switch (e) {
	case 0:
	case -ENOENT:
		return 0;
	case -EINVAL:
		say("%s='%s' is not a file descriptor number", CFD_ENV, value);
		break;
	case -EBADF:
		say("%s=%s is not an open file descriptor", CFD_ENV, value);
		break;
	case -EBADFD:
		say("%s=%s is not a cancellation token fd (a pipe or an "
		    "eventfd)",
		    CFD_ENV, value);
		break;
	default:
		say("cannot import %s=%s: %s", CFD_ENV, value, strerror(-e));
		break;
	}
	return -1;
}

static int make_token(struct run *r)
{
	int e;

	if (r->parent)
		e = cfd_token_child(&r->tok, r->parent, "cancelfd-run");
	else
		e = cfd_token_new(&r->tok, "cancelfd-run");
	if (e < 0) {
		say("cannot make a token: %s", strerror(-e));
		return -1;
	}
	if (!sigisemptyset(&r->o.signals)) {
		int sigs[_NSIG];
		size_t n = 0;

		for (int s = 1; s < _NSIG; s++)
			if (sigismember(&r->o.signals, s) == 1)
				sigs[n++] = s;
		e = cfd_source_add_signals(NULL, r->tok, NULL, sigs, n);
		if (e < 0) {
			say("cannot watch signals: %s", strerror(-e));
			return -1;
		}
	}
	/* The token's fd now: made once, close-on-exec. */
	e = cfd_token_fd(r->tok);
	if (e < 0) {
		say("cannot make the token's fd: %s", strerror(-e));
		return -1;
	}
	return 0;
}

/* What cancelled the token, for --verbose and for the cancel before
 * COMMAND started. */
static const char *describe_cause(struct run *r, char *buf, size_t size)
{
	char a[32];

	switch (cfd_token_reason(r->tok)) {
	case CFD_REASON_TIMEOUT:
		snprintf(buf, size, "the timeout (%s)",
			 fmt_seconds(r->o.timeout_ns, a, sizeof(a)));
		break;
	case CFD_REASON_SIGNAL:
		snprintf(buf, size, "signal %s",
			 sig_name(cfd_token_signal(r->tok), a, sizeof(a)));
		break;
	case CFD_REASON_PARENT:
		snprintf(buf, size, "the parent token (%s)", CFD_ENV);
		break;
	default:
		snprintf(buf, size, "%s",
			 cfd_reason_name(cfd_token_reason(r->tok)));
		break;
	}
	return buf;
}

/* ---- the child ---- */

static void reap(pid_t pid, int *status)
{
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
}

/* After fork, in a process that has a thread: only async-signal-safe
 * calls until exec.  (glibc's execvp allocates nothing.) */
static void __attribute__((noreturn)) child_exec(struct run *r, int errfd)
{
	int e;

	sigaction(SIGTTIN, &r->orig_ttin, NULL);
	sigaction(SIGTTOU, &r->orig_ttou, NULL);
	sigprocmask(SIG_SETMASK, &r->orig_mask, NULL);
	execvp(r->o.argv[0], r->o.argv);
	e = errno;
	if (write(errfd, &e, sizeof(e)) < 0) {
		/* the exit status says it as well */
	}
	_exit(e == ENOENT ? RUN_EXIT_ENOENT : RUN_EXIT_CANNOT_INVOKE);
}

/* Start COMMAND with the token's export as CANCELFD, and nothing else
 * that this process opened: every other fd here is close-on-exec.
 * Returns 0, or an exit status. */
static int spawn(struct run *r)
{
	char num[16];
	int err[2], efd, e, status;
	ssize_t n;

	efd = cfd_token_export_fd(r->tok, NULL, CFD_EXPORT_INHERIT);
	if (efd < 0) {
		say("cannot export the token: %s", strerror(-efd));
		return RUN_EXIT_CANCELED;
	}
	snprintf(num, sizeof(num), "%d", efd);
	/* In the parent, before fork: setenv is not async-signal-safe. */
	if (setenv(CFD_ENV, num, 1) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		say("cannot prepare the command: %s", strerror(errno));
		close(efd);
		return RUN_EXIT_CANCELED;
	}
	r->pid = fork();
	if (r->pid == 0)
		child_exec(r, err[1]);
	e = errno;
	close(err[1]);
	close(efd); /* COMMAND has it; we watch the token itself */
	unsetenv(CFD_ENV);
	if (r->pid < 0) {
		close(err[0]);
		say("fork failed: %s", strerror(e));
		return RUN_EXIT_CANCELED;
	}
	/* Our own child, not reaped yet: its pid cannot be reused, so this
	 * pidfd is the right process. */
	r->pidfd = (int)syscall(SYS_pidfd_open, r->pid, 0);
	if (r->pidfd < 0) {
		e = errno;
		close(err[0]);
		kill(r->pid, SIGKILL);
		reap(r->pid, &status);
		say("pidfd_open failed: %s", strerror(e));
		return RUN_EXIT_CANCELED;
	}
	/* End of file: exec succeeded (the pipe was close-on-exec).  An int:
	 * the errno of the failed exec. */
	do
		n = read(err[0], &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	close(err[0]);
	if (n == (ssize_t)sizeof(e)) {
		reap(r->pid, &status);
		say("failed to run command '%s': %s", r->command, strerror(e));
		return e == ENOENT ? RUN_EXIT_ENOENT : RUN_EXIT_CANNOT_INVOKE;
	}
	return 0;
}

/* ---- waiting ---- */

static void on_cancel(struct run *r)
{
	char cause[96], when[32], s[32];
	int e;

	r->cancelled = true;
	r->timed_out = cfd_token_reason(r->tok) == CFD_REASON_TIMEOUT;
	if (r->o.verbose)
		say("cancelled by %s after %s: sending signal %s to command "
		    "'%s'%s",
		    describe_cause(r, cause, sizeof(cause)),
		    fmt_elapsed(cfd_token_trigger_time(r->tok) - r->start, when,
				sizeof(when)),
		    sig_name(r->o.on_cancel, s, sizeof(s)), r->command,
		    r->o.foreground ? "" : " and its process group");
	if (r->o.kill_after_ns > 0 && r->o.kill_after_ns < RUN_NO_LIMIT &&
	    r->o.on_cancel != SIGKILL) {
		e = cfd_token_new(&r->kill_tok, "kill-after");
		if (e == 0)
			e = cfd_source_add_timeout(NULL, r->kill_tok, NULL,
						   r->o.kill_after_ns);
		if (e == 0)
			e = cfd_token_fd(r->kill_tok);
		if (e < 0) {
			/* Without the timer, KILL now rather than never. */
			say("cannot set the kill timer (%s): sending KILL",
			    strerror(-e));
			send_signal(r, SIGKILL);
			return;
		}
	}
	send_signal(r, r->o.on_cancel);
}

static void on_kill(struct run *r)
{
	char a[32];

	if (r->o.verbose)
		say("command '%s' still running %s after the cancel: "
		    "sending signal KILL",
		    r->command, fmt_seconds(r->o.kill_after_ns, a, sizeof(a)));
	send_signal(r, SIGKILL);
	r->kill_tok = cfd_token_unref(r->kill_tok);
}

/*
 * Poll the pidfd with the token's fd (and the kill timer's) until COMMAND
 * exits; reap it.  The token comes first: COMMAND may have exited because
 * of the cancel (a program watching CANCELFD), and the library makes the
 * token's fd readable before it hangs up the exports, so a cancel that
 * caused the exit is always seen.  As with timeout(1), a timeout that fired
 * before the reap counts as a timeout.
 */
static int wait_child(struct run *r, int *status)
{
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = r->pidfd, .events = POLLIN },
			{ .fd = r->cancelled ? -1 : cfd_token_fd(r->tok),
			  .events = POLLIN },
			{ .fd = r->kill_tok ? cfd_token_fd(r->kill_tok) : -1,
			  .events = POLLIN },
		};

		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			say("poll failed: %s", strerror(errno));
			kill(r->pid, SIGKILL);
			reap(r->pid, status);
			return -1;
		}
		if (p[1].revents || (p[0].revents && !r->cancelled &&
				     cfd_token_triggered(r->tok)))
			on_cancel(r);
		if (p[0].revents)
			break;
		if (p[2].revents)
			on_kill(r);
	}
	reap(r->pid, status);
	return 0;
}

/* ---- main ---- */

static void release(struct run *r)
{
	if (r->pidfd >= 0)
		close(r->pidfd);
	r->pidfd = -1;
	r->kill_tok = cfd_token_unref(r->kill_tok);
	r->tok = cfd_token_unref(r->tok);
	r->parent = cfd_token_unref(r->parent);
}

/* The exit status from COMMAND's wait status, as timeout(1) computes it;
 * a COMMAND ended by a signal that we did not send for a timeout ends us
 * by the same signal. */
static int exit_status(struct run *r, int st)
{
	bool preserve = r->o.preserve_status;
	int status;

	if (WIFEXITED(st)) {
		status = WEXITSTATUS(st);
	} else if (WIFSIGNALED(st)) {
		int sig = WTERMSIG(st);

		if (WCOREDUMP(st))
			say("the command dumped core");
		if (!r->timed_out) {
			release(r);
			die_by_signal(sig);
		}
		/* Killed after a timeout: say so (137), as timeout(1). */
		if (sig == SIGKILL)
			preserve = true;
		status = 128 + sig;
	} else {
		say("unknown status from command (%d)", st);
		status = RUN_EXIT_CANCELED;
	}
	if (r->timed_out && !preserve)
		status = RUN_EXIT_TIMEDOUT;
	return status;
}

int main(int argc, char **argv)
{
	struct run r = { .pidfd = -1 };
	int status, st, e;

	status = run_parse_args(&r.o, argc, argv);
	if (status >= 0)
		return status;
	r.command = r.o.argv[0];
	status = RUN_EXIT_CANCELED;
	if (setup_signals(&r) < 0 || import_parent(&r) < 0 ||
	    make_token(&r) < 0)
		goto out;
	if (cfd_token_triggered(r.tok)) {
		/* Cancelled already (the parent was, or a signal came): new
		 * work does not start in a cancelled scope.  The status is
		 * what COMMAND killed at once would have given. */
		char cause[96];
		int sig = cfd_token_reason(r.tok) == CFD_REASON_SIGNAL
			      ? cfd_token_signal(r.tok)
			      : r.o.on_cancel;

		say("cancelled by %s before command '%s' started: not "
		    "running it",
		    describe_cause(&r, cause, sizeof(cause)), r.command);
		status = 128 + sig;
		goto out;
	}
	/* As timeout(1): lead a process group, so that the whole job can
	 * be signalled.  Fails harmlessly for a session leader. */
	if (!r.o.foreground)
		setpgid(0, 0);
	status = spawn(&r);
	if (status != 0)
		goto out;
	r.start = now_ns();
	/* The timeout counts from COMMAND's start. */
	if (r.o.timeout_ns > 0 && r.o.timeout_ns < RUN_NO_LIMIT) {
		e = cfd_source_add_timeout(NULL, r.tok, NULL, r.o.timeout_ns);
		if (e < 0) {
			say("cannot set the timeout: %s", strerror(-e));
			kill(r.pid, SIGKILL);
			reap(r.pid, &st);
			status = RUN_EXIT_CANCELED;
			goto out;
		}
	}
	if (wait_child(&r, &st) < 0)
		status = RUN_EXIT_CANCELED;
	else
		status = exit_status(&r, st);
out:
	release(&r);
	return status;
}
