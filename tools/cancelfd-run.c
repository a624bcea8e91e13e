/* SPDX-License-Identifier: MIT */
/*
 * cancelfd-run: run a command under a cancellation token, as timeout(1).
 *
 * The token is cancelled by the first of: the timeout (a source of the
 * library's default watcher), a signal that this process receives (HUP,
 * INT, QUIT, TERM, ALRM and the -s signal, unless told otherwise), and the
 * token it inherited through CANCELFD, if any.  COMMAND inherits a
 * watch-only export of the token through CANCELFD, so a cancelfd-run inside
 * COMMAND, or any program that calls cfd_token_from_env(), is cancelled
 * when this one is: a tree of processes cancels as a tree of tokens.
 *
 * What COMMAND is sent follows timeout(1): the signal received, as
 * itself; the -s signal on a timeout (and on the parent's cancel); KILL
 * after --kill-after.  Its exit statuses, its process group (a group
 * leader unless --foreground, the group signalled) and --preserve-status
 * are timeout(1)'s.
 *
 * The main thread does all of it, in one loop, with no file descriptor of
 * its own: the watched signals and SIGCHLD stay blocked and are taken with
 * sigtimedwait(), and the library wakes the loop with a SIGCHLD when the
 * token is cancelled from the watcher's thread (the timeout, the parent).
 * Each wake takes the signals first, then the token, then the child: a
 * signal forwarded by an outer runner is pending before that runner's
 * cancel reaches CANCELFD (it signals before it cancels), so a tree of
 * runners passes the signal on as timeout(1) would.  COMMAND is started
 * with vfork(), which reports a failed exec without a pipe.  So starting a
 * command takes the export (a pipe, and the duplicate for COMMAND) and the
 * watcher (epoll, doorbell, timer): 8 file descriptors with 0, 1 and 2.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "run.h"

/* A duration this long (146 years) never ends: no timer is set. */
#define RUN_NO_LIMIT ((int64_t)1 << 62)

/*
 * What cancelled: the first event the loop acted on.  A signal is the
 * runner's own (it forwards it); the token's reason says the rest (the
 * timeout, the parent token).  --verbose describes it; a cause learned
 * from the parent's token would be described here too.
 */
enum cause_kind {
	CAUSE_NONE,
	CAUSE_SIGNAL, /* signo received by this process */
	CAUSE_TOKEN,  /* the token's own reason: timeout, parent */
};

struct cause {
	enum cause_kind kind;
	int signo;
	int reason;   /* CAUSE_TOKEN: cfd_token_reason() */
	int64_t when; /* CLOCK_MONOTONIC */
};

struct run {
	struct run_options o;
	const char *command;
	struct cfd_token *parent;      /* imported from CANCELFD, or NULL */
	struct cfd_token *tok;	       /* COMMAND's token */
	struct cfd_watcher *w;	       /* the default watcher, once started */
	struct cfd_registration *wake; /* the token's cancel wakes the loop */
	pthread_t main_thread;
	sigset_t watched;    /* received: cancel, and sent on to COMMAND */
	sigset_t wait_set;   /* watched and SIGCHLD: blocked, waited for */
	sigset_t orig_mask;  /* the caller's, for COMMAND */
	sigset_t group_sent; /* sent to our group: ignored from then on */
	struct sigaction orig_ttin, orig_ttou, orig_chld;
	int64_t start;
	int64_t kill_at; /* the --kill-after deadline once armed, or 0 */
	int term_signal; /* sent on a timeout: -s, then KILL once armed */
	pid_t pid;
	volatile int exec_errno; /* written by the vfork()ed child */
	struct cause cause;
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
	if (ns < 0)
		ns = 0;
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

static const char *quoted_command(struct run *r, char *buf, size_t size)
{
	return run_quote(r->command, buf, size);
}

/* ---- signals ---- */

/*
 * Block the watched signals and SIGCHLD now, before the library starts
 * the default watcher's thread (which blocks every signal anyway): they
 * are taken by the loop, never delivered.  The caller's mask and
 * dispositions go back in the child, before exec.
 */
static int setup_signals(struct run *r)
{
	struct sigaction ign = { .sa_handler = SIG_IGN };
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t block;

	if (r->o.cancel_on_given) {
		r->watched = r->o.cancel_on;
	} else {
		/* A signal ignored on entry (nohup ignores HUP, a shell
		 * ignores INT and QUIT for a background job) is not
		 * watched: the caller asked for the job to survive it. */
		run_default_signals(&r->o, &r->watched);
		for (int s = 1; s < _NSIG; s++) {
			struct sigaction cur;

			if (sigismember(&r->watched, s) == 1 &&
			    sigaction(s, NULL, &cur) == 0 &&
			    cur.sa_handler == SIG_IGN)
				sigdelset(&r->watched, s);
		}
	}
	r->wait_set = r->watched;
	sigaddset(&r->wait_set, SIGCHLD);
	/* SIGPIPE too: a write to a pipe whose reader has gone (stderr)
	 * must fail with EPIPE, not end us. */
	block = r->wait_set;
	sigaddset(&block, SIGPIPE);
	if (pthread_sigmask(SIG_BLOCK, &block, &r->orig_mask) != 0) {
		say("cannot block signals");
		return -1;
	}
	/* An ignored SIGCHLD would reap COMMAND for us. */
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGCHLD, &dfl, &r->orig_chld);
	/* As timeout(1): a background COMMAND that touches the terminal
	 * must not stop us.  Restored in the child. */
	sigemptyset(&ign.sa_mask);
	sigaction(SIGTTIN, &ign, &r->orig_ttin);
	sigaction(SIGTTOU, &ign, &r->orig_ttou);
	r->term_signal = r->o.term_signal;
	return 0;
}

/* Send sig to COMMAND and, unless --foreground, to our process group
 * (ignoring it ourselves from then on), then SIGCONT so that a stopped job
 * sees it: what timeout(1) does.  A KILL to the group ends this process
 * too. */
static void send_signal(struct run *r, int sig)
{
	struct sigaction ign = { .sa_handler = SIG_IGN };
	char name[32], q[512];

	if (r->o.verbose)
		say("sending signal %s to command %s",
		    sig_name(sig, name, sizeof(name)),
		    quoted_command(r, q, sizeof(q)));
	sigemptyset(&ign.sa_mask);
	kill(r->pid, sig);
	if (r->o.foreground)
		return;
	/* One that the loop takes is dropped when it comes back; any other
	 * would hit us too (SIGCHLD, blocked, must not be ignored: it would
	 * reap COMMAND for us). */
	if (sig > 0) {
		sigaddset(&r->group_sent, sig);
		if (sigismember(&r->wait_set, sig) != 1)
			sigaction(sig, &ign, NULL);
	}
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

static void wake_loop(struct cfd_token *tok, void *userdata)
{
	struct run *r = userdata;

	(void)tok;
	/* Whatever else SIGCHLD means, the loop looks at everything. */
	pthread_kill(r->main_thread, SIGCHLD);
}

/* The token, and the callback that wakes the loop when the library
 * cancels it.  No file descriptor: the token's own is never made. */
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
	r->main_thread = pthread_self();
	e = cfd_token_on_trigger(&r->wake, r->tok, wake_loop, r, 0);
	if (e < 0) {
		say("cannot watch the token: %s", strerror(-e));
		return -1;
	}
	return 0;
}

/* ---- the cancel: what caused it, and what COMMAND is sent ---- */

/* What cancelled, for --verbose and for the cancel before COMMAND
 * started. */
static const char *describe_cause(struct run *r, const struct cause *c,
				  char *buf, size_t size)
{
	char a[32];

	if (c->kind == CAUSE_SIGNAL) {
		snprintf(buf, size, "signal %s",
			 sig_name(c->signo, a, sizeof(a)));
		return buf;
	}
	switch (c->reason) {
	case CFD_REASON_TIMEOUT:
		snprintf(buf, size, "the timeout (%s)",
			 fmt_seconds(r->o.timeout_ns, a, sizeof(a)));
		break;
	case CFD_REASON_PARENT:
		snprintf(buf, size, "the parent token (%s)", CFD_ENV);
		break;
	default:
		snprintf(buf, size, "%s", cfd_reason_name(c->reason));
		break;
	}
	return buf;
}

static void say_cause(struct run *r)
{
	char cause[96], when[32];

	say("cancelled by %s after %s",
	    describe_cause(r, &r->cause, cause, sizeof(cause)),
	    fmt_elapsed(r->cause.when - r->start, when, sizeof(when)));
}

/* The signal COMMAND gets for a cause: a received signal as itself (ALRM
 * stands for the timeout, as in timeout(1)); the -s signal for the timeout
 * and the parent token.  (Once the library passes the cause down CANCELFD,
 * a runner cancelled by its parent can pass on the signal that cancelled
 * the outermost one, as nested timeout(1)s do, whatever the order in which
 * the signal and the cancel reach it.) */
static int signal_for(struct run *r, const struct cause *c)
{
	if (c->kind == CAUSE_SIGNAL && c->signo != SIGALRM)
		return c->signo;
	return r->term_signal;
}

static bool counts_as_timeout(const struct cause *c)
{
	return (c->kind == CAUSE_SIGNAL && c->signo == SIGALRM) ||
	       (c->kind == CAUSE_TOKEN && c->reason == CFD_REASON_TIMEOUT);
}

/* Act on one cause, as timeout(1)'s handler does on each signal: the
 * first arms --kill-after (from then on the timeout's signal is KILL);
 * each sends its signal. */
static void act(struct run *r, const struct cause *c)
{
	int sig = signal_for(r, c);
	bool first = !r->cancelled;

	if (counts_as_timeout(c))
		r->timed_out = true;
	if (first) {
		r->cancelled = true;
		r->cause = *c;
		if (r->o.kill_after_ns > 0 &&
		    r->o.kill_after_ns < RUN_NO_LIMIT) {
			r->kill_at = now_ns() + r->o.kill_after_ns;
			r->term_signal = SIGKILL;
		}
		if (r->o.verbose)
			say_cause(r);
	}
	send_signal(r, sig);
}

/* A signal taken from the queue. */
static void on_signal(struct run *r, const siginfo_t *si)
{
	int sig = si->si_signo;
	struct cause c = { .kind = CAUSE_SIGNAL, .signo = sig };

	/* SIGCHLD: COMMAND changed state, or the library woke us. */
	if (sig == SIGCHLD || sigismember(&r->watched, sig) != 1)
		return;
	/* Sent to our own group (by us, or later by others): ignored,
	 * as timeout(1) ignores it. */
	if (sigismember(&r->group_sent, sig) == 1)
		return;
	c.when = now_ns();
	act(r, &c);
	/* COMMAND has the signal: now the token, whose cancel reaches
	 * nested runners through CANCELFD after the signal did. */
	cfd_token_trigger_async_safe(r->tok, r->w, sig);
}

/* The token was cancelled by the library: the timeout, or the parent. */
static void on_token(struct run *r)
{
	struct cause c = {
		.kind = CAUSE_TOKEN,
		.reason = cfd_token_reason(r->tok),
		.when = now_ns(),
	};

	act(r, &c);
}

static void on_kill_timer(struct run *r)
{
	r->kill_at = 0;
	r->timed_out = true; /* as timeout(1), whose KILL comes by ALRM */
	send_signal(r, SIGKILL);
}

/* ---- the child ---- */

static void reap(pid_t pid, int *status)
{
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
}

/* The child of vfork(): it shares our memory until exec, so it only
 * restores what the caller gave us, execs, or reports errno. */
static void __attribute__((noreturn)) child_exec(struct run *r)
{
	if (r->orig_chld.sa_handler == SIG_IGN)
		sigaction(SIGCHLD, &r->orig_chld, NULL);
	sigaction(SIGTTIN, &r->orig_ttin, NULL);
	sigaction(SIGTTOU, &r->orig_ttou, NULL);
	sigprocmask(SIG_SETMASK, &r->orig_mask, NULL);
	execvp(r->o.argv[0], r->o.argv);
	r->exec_errno = errno;
	_exit(r->exec_errno == ENOENT ? RUN_EXIT_ENOENT
				      : RUN_EXIT_CANNOT_INVOKE);
}

/* The default watcher holds an epoll fd, a doorbell and a timer. */
#define WATCHER_FDS 3

/* Hold the fds the watcher needs beyond the one that COMMAND's CANCELFD
 * gives back (unless a parent token has started the watcher already), as
 * duplicates of fd; reserved[0] is -2 when they cannot be had. */
static void reserve_fds(struct run *r, int fd, int *reserved)
{
	for (int i = 0; i < WATCHER_FDS - 1; i++)
		reserved[i] = -1;
	if (r->parent)
		return;
	for (int i = 0; i < WATCHER_FDS - 1; i++) {
		reserved[i] = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (reserved[i] < 0) {
			for (int j = 0; j < i; j++)
				close(reserved[j]);
			reserved[0] = -2;
			return;
		}
	}
}

/* Start COMMAND with the token's export as CANCELFD, and nothing else
 * that this process opened: every other fd here is close-on-exec.  vfork()
 * returns once COMMAND runs, or failed to (then exec_errno says why).
 * Returns 0, or an exit status. */
static int spawn(struct run *r)
{
	char q[512];
	int efd, e, status, reserved[WATCHER_FDS - 1];
	pid_t pid;

	/* CANCELFD and CANCELFD_DEADLINE, in the parent, before vfork:
	 * setenv is not async-signal-safe. */
	efd = cfd_token_export_env(r->tok, NULL);
	if (efd < 0) {
		say("cannot export the token: %s", strerror(-efd));
		return RUN_EXIT_CANCELED;
	}
	/* The fds the watcher will take once COMMAND runs, held now: too
	 * few of them fails here, before COMMAND starts, not after. */
	reserve_fds(r, efd, reserved);
	if (reserved[0] == -2) {
		say("cannot start the watcher: %s", strerror(EMFILE));
		close(efd);
		unsetenv(CFD_ENV);
		unsetenv(CFD_ENV_DEADLINE);
		return RUN_EXIT_CANCELED;
	}
	r->exec_errno = 0;
	pid = vfork();
	if (pid == 0)
		child_exec(r);
	e = errno;
	close(efd); /* COMMAND has it */
	for (int i = 0; i < WATCHER_FDS - 1; i++)
		if (reserved[i] >= 0)
			close(reserved[i]);
	unsetenv(CFD_ENV);
	unsetenv(CFD_ENV_DEADLINE);
	if (pid < 0) {
		say("fork system call failed: %s", strerror(e));
		return RUN_EXIT_CANCELED;
	}
	r->pid = pid;
	e = r->exec_errno;
	if (e) {
		reap(pid, &status);
		say("failed to run command %s: %s",
		    quoted_command(r, q, sizeof(q)), strerror(e));
		return e == ENOENT ? RUN_EXIT_ENOENT : RUN_EXIT_CANNOT_INVOKE;
	}
	return 0;
}

/* ---- waiting ---- */

/* Take one signal of the wait set: at once (wait_ns 0), within wait_ns,
 * or whenever (wait_ns < 0).  0 when none came. */
static int take_signal(struct run *r, siginfo_t *si, int64_t wait_ns)
{
	struct timespec ts = { .tv_sec = wait_ns / 1000000000,
			       .tv_nsec = wait_ns % 1000000000 };
	int sig;

	sig = sigtimedwait(&r->wait_set, si, wait_ns < 0 ? NULL : &ts);
	return sig > 0 ? sig : 0;
}

/*
 * Until COMMAND exits; then reap it.  Each round takes the pending
 * signals first, then looks at the token, then at the kill timer, then at
 * COMMAND, so that a cancel that caused the exit (a program watching
 * CANCELFD) is always seen before the exit: as with timeout(1), a timeout
 * that fired before the reap counts as a timeout.
 */
static int wait_child(struct run *r, int *status)
{
	for (;;) {
		int64_t left = -1;
		siginfo_t si;
		pid_t p;

		while (take_signal(r, &si, 0))
			on_signal(r, &si);
		if (!r->cancelled && cfd_token_triggered(r->tok)) {
			/* A signal that came before the cancel reached us
			 * goes first: an outer runner passes its signal on
			 * before it cancels. */
			while (take_signal(r, &si, 0))
				on_signal(r, &si);
			if (!r->cancelled)
				on_token(r);
		}
		if (r->kill_at) {
			left = r->kill_at - now_ns();
			if (left <= 0) {
				on_kill_timer(r);
				left = -1;
			}
		}
		p = waitpid(r->pid, status, WNOHANG);
		if (p == r->pid)
			return 0;
		if (p < 0 && errno != EINTR) {
			say("error waiting for command: %s", strerror(errno));
			kill(r->pid, SIGKILL);
			return -1;
		}
		if (take_signal(r, &si, left))
			on_signal(r, &si);
	}
}

/* ---- main ---- */

static void release(struct run *r)
{
	r->wake = cfd_registration_free(r->wake);
	r->tok = cfd_token_unref(r->tok);
	r->parent = cfd_token_unref(r->parent);
	r->w = cfd_watcher_unref(r->w);
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
			say("the monitored command dumped core");
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
		status = EXIT_FAILURE;
	}
	if (r->timed_out && !preserve)
		status = RUN_EXIT_TIMEDOUT;
	return status;
}

/* Cancelled already, by the parent or by a signal that came before
 * COMMAND could start: new work does not start in a cancelled tree.  The
 * status is the one COMMAND killed at once would have given.  -1 if not
 * cancelled. */
static int cancelled_before_start(struct run *r)
{
	struct cause c = { .kind = CAUSE_TOKEN };
	char cause[96], q[512];
	sigset_t pending;
	int sig = -1;

	sigpending(&pending);
	for (int s = 1; s < _NSIG && sig < 0; s++)
		if (sigismember(&r->watched, s) == 1 &&
		    sigismember(&pending, s) == 1)
			sig = s;
	if (sig > 0) {
		c.kind = CAUSE_SIGNAL;
		c.signo = sig;
	} else if (cfd_token_triggered(r->tok)) {
		c.reason = cfd_token_reason(r->tok);
	} else {
		return -1;
	}
	say("cancelled by %s before command %s started: not running it",
	    describe_cause(r, &c, cause, sizeof(cause)),
	    quoted_command(r, q, sizeof(q)));
	return 128 + signal_for(r, &c);
}

int main(int argc, char **argv)
{
	struct run r = { .pid = -1 };
	int status, st, e;

	/* As timeout(1): the locale's quotes in messages, and its decimal
	 * separator in durations. */
	setlocale(LC_ALL, "");
	status = run_parse_args(&r.o, argc, argv);
	if (status >= 0)
		return status;
	r.command = r.o.argv[0];
	status = RUN_EXIT_CANCELED;
	if (setup_signals(&r) < 0 || import_parent(&r) < 0 ||
	    make_token(&r) < 0)
		goto out;
	status = cancelled_before_start(&r);
	if (status >= 0)
		goto out;
	/* As timeout(1): lead a process group, so that the whole job can
	 * be signalled.  Fails harmlessly for a session leader. */
	if (!r.o.foreground)
		setpgid(0, 0);
	status = spawn(&r);
	if (status != 0)
		goto out;
	r.start = now_ns();
	/* The watcher after the start: its fds are not open while the
	 * export's are all open (a parent token has started it already). */
	e = cfd_watcher_default(&r.w);
	if (e < 0)
		say("cannot start the watcher: %s", strerror(-e));
	/* The timeout counts from COMMAND's start. */
	if (e == 0 && r.o.timeout_ns > 0 && r.o.timeout_ns < RUN_NO_LIMIT) {
		e = cfd_source_add_deadline(NULL, r.tok, r.w,
					    r.start + r.o.timeout_ns);
		if (e < 0)
			say("cannot set the timeout: %s", strerror(-e));
	}
	if (e < 0) {
		kill(r.pid, SIGKILL);
		reap(r.pid, &st);
		status = RUN_EXIT_CANCELED;
		goto out;
	}
	if (wait_child(&r, &st) < 0) {
		reap(r.pid, &st);
		status = RUN_EXIT_CANCELED;
	} else {
		status = exit_status(&r, st);
	}
out:
	release(&r);
	return status;
}
