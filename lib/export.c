/* SPDX-License-Identifier: MIT */
/*
 * Tokens across processes.
 *
 * A watch-only export is the read end of a pipe whose write end only this
 * process holds; the token's trigger closes the write end, so every holder
 * of the read end sees it readable and hung up, and nothing a holder does
 * (write: EBADF; read: end of file) can trigger the token or hide the
 * trigger.  An eventfd cannot give that: any holder may read it (un-cancel
 * it for everyone) or write it.
 *
 * A shared export is the token's eventfd itself.  An fd source on the
 * token's watcher then turns an outside write into a full trigger (flag,
 * reason _FD, fan-out, callbacks).
 *
 * An import is a token with an fd source on the received fd, so it can be
 * the parent of local tokens and be exported again: a tree of processes
 * cancels as a tree of tokens.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "watcher.h"

/* ---- watch-only exports: pipes ---- */

/*
 * One pipe per token serves all its watch-only exports: each is a dup of
 * the read end kept here, so a long-lived token exported to thousands of
 * short-lived processes holds two fds, not one per export.
 */
struct pipe_export {
	struct cfd_registration reg;
	int rfd, wfd;
	struct pipe_export *next, **pprev; /* all pipes, for fork */
};

/*
 * Every write end this process holds.  A child made by fork() must not
 * keep them open (it would keep the pipes from hanging up when the parent
 * triggers); the child's handler closes them.  Pipes are made under the
 * lock so that a fork cannot catch one before it is listed.
 */
static pthread_mutex_t exports_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pipe_export *exports;
static pthread_once_t exports_once = PTHREAD_ONCE_INIT;

static void exports_fork_prepare(void)
{
	pthread_mutex_lock(&exports_lock);
}

static void exports_fork_parent(void)
{
	pthread_mutex_unlock(&exports_lock);
}

static void exports_fork_child(void)
{
	for (struct pipe_export *e = exports; e; e = e->next)
		if (e->wfd >= 0) {
			close(e->wfd);
			close(e->rfd);
			e->wfd = e->rfd = -1;
		}
	/* The records themselves belong to tokens the child cannot use. */
	exports = NULL;
	pthread_mutex_init(&exports_lock, NULL);
}

static void exports_setup(void)
{
	pthread_atfork(exports_fork_prepare, exports_fork_parent,
		       exports_fork_child);
}

/*
 * The byte for the readers.  With no reader left the write fails (EPIPE)
 * and raises SIGPIPE, which must not reach the program: block it in this
 * thread (a SIGPIPE from write() is directed at the writing thread) and
 * take back the one the write made, unless one was pending already.  A
 * full pipe (EAGAIN) is readable already.
 */
static void write_no_sigpipe(int fd)
{
	sigset_t pipe_set, old, pending;
	bool was_pending;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE) == 1;
	if (write(fd, "c", 1) < 0 && errno == EPIPE && !was_pending) {
		struct timespec zero = { 0, 0 };

		sigtimedwait(&pipe_set, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Hang up: every holder of the read end sees the token triggered.  The
 * byte makes it readable (POLLIN) as well as hung up (POLLHUP) for loops
 * that look only at one; the hang-up is what no reader can undo. */
static void pipe_export_close(struct pipe_export *e)
{
	pthread_mutex_lock(&exports_lock);
	if (e->wfd >= 0) {
		write_no_sigpipe(e->wfd);
		close(e->wfd);
		close(e->rfd);
		e->wfd = e->rfd = -1;
		*e->pprev = e->next;
		if (e->next)
			e->next->pprev = e->pprev;
	}
	pthread_mutex_unlock(&exports_lock);
}

static void pipe_export_triggered(struct cfd_token *tok, void *userdata)
{
	(void)tok;
	pipe_export_close(userdata);
}

static void pipe_export_done(struct cfd_registration *reg)
{
	free(container_of(reg, struct pipe_export, reg));
}

/* A token freed untriggered can never trigger: hang up too, so that the
 * other side is not left waiting forever (as when this process dies). */
static void pipe_export_released(struct cfd_registration *reg)
{
	struct pipe_export *e = container_of(reg, struct pipe_export, reg);

	pipe_export_close(e);
	free(e);
}

static int read_end_dup(int rfd, unsigned flags)
{
	int fd = fcntl(
	    rfd, (flags & CFD_EXPORT_INHERIT) ? F_DUPFD : F_DUPFD_CLOEXEC, 3);

	return fd < 0 ? -errno : fd;
}

/* A new read end of the token's pipe, if it has one.  Under the token's
 * lock the pipe's registration is listed, so its trigger cannot close the
 * pipe meanwhile. */
static int export_pipe_again(struct cfd_token *tok, unsigned flags)
{
	struct cfd_registration *reg;
	int fd = -ENOENT;

	token_lock(tok);
	reg = registration_find_locked(tok, REG_EXPORT_PIPE);
	if (reg)
		fd = read_end_dup(
		    container_of(reg, struct pipe_export, reg)->rfd, flags);
	token_unlock(tok);
	return fd;
}

static int export_pipe(struct cfd_token *tok, unsigned flags)
{
	struct pipe_export *e;
	int p[2], fd;

	fd = export_pipe_again(tok, flags);
	if (fd != -ENOENT)
		return fd;
	pthread_once(&exports_once, exports_setup);
	e = malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	/* Made under the lock that fork() takes, so that a child never
	 * inherits a write end that is not on the list. */
	pthread_mutex_lock(&exports_lock);
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		int r = -errno;

		pthread_mutex_unlock(&exports_lock);
		free(e);
		return r;
	}
	/* A holder of the same user could reopen the read end for writing
	 * through /proc/PID/fd (to fake or to hide a trigger): not without
	 * CAP_DAC_OVERRIDE once the pipe's mode is 0. */
	fchmod(p[0], 0);
	e->rfd = p[0];
	e->wfd = p[1];
	e->next = exports;
	e->pprev = &exports;
	if (exports)
		exports->pprev = &e->next;
	exports = e;
	pthread_mutex_unlock(&exports_lock);

	/* The caller's read end first: once the registration is listed, a
	 * trigger may close the pipe at any moment. */
	fd = read_end_dup(e->rfd, flags);
	e->reg.on_release = pipe_export_released;
	e->reg.on_done = pipe_export_done;
	if (fd < 0 || registration_add(&e->reg, tok, REG_EXPORT_PIPE,
				       pipe_export_triggered, e)) {
		/* Failed, or triggered already: the read end hangs up. */
		pipe_export_close(e);
		free(e);
	}
	return fd;
}

/* ---- shared exports: the eventfd ---- */

/*
 * A token's shared exports are watched by one fd source on its own
 * eventfd, which turns a write from outside into a full trigger.  The
 * source's handle hangs off the token in a registration of its own, whose
 * presence says "watched"; made under exports_lock, so that a second
 * exporter never returns an eventfd before the first made it watched.
 */
struct shared_watch {
	struct cfd_registration reg;
	struct cfd_source *src;
};

static void shared_watch_end(struct shared_watch *sw)
{
	cfd_source_free(sw->src);
	free(sw);
}

static void shared_watch_triggered(struct cfd_token *tok, void *userdata)
{
	(void)tok;
	(void)userdata; /* its end comes with on_done */
}

static void shared_watch_done(struct cfd_registration *reg)
{
	shared_watch_end(container_of(reg, struct shared_watch, reg));
}

static void shared_watch_released(struct cfd_registration *reg)
{
	shared_watch_end(container_of(reg, struct shared_watch, reg));
}

static bool shared_watched(struct cfd_token *tok)
{
	bool found;

	token_lock(tok);
	found = registration_find_locked(tok, REG_EXPORT_SHARED) != NULL;
	token_unlock(tok);
	return found;
}

/* Make tok's eventfd watched for outside writes, once. */
static int shared_watch(struct cfd_token *tok, struct cfd_watcher *w, int fd)
{
	struct shared_watch *sw;
	int r = 0;

	pthread_once(&exports_once, exports_setup);
	pthread_mutex_lock(&exports_lock);
	if (shared_watched(tok))
		goto out;
	sw = malloc(sizeof(*sw));
	if (!sw) {
		r = -ENOMEM;
		goto out;
	}
	r = cfd_source_add_fd(&sw->src, tok, w, fd);
	if (r < 0 || !sw->src) {
		/* failed, or tok triggered meanwhile: nothing to watch */
		free(sw);
		goto out;
	}
	sw->reg.on_release = shared_watch_released;
	sw->reg.on_done = shared_watch_done;
	if (registration_add(&sw->reg, tok, REG_EXPORT_SHARED,
			     shared_watch_triggered, sw))
		shared_watch_end(sw); /* triggered meanwhile */
out:
	pthread_mutex_unlock(&exports_lock);
	return r;
}

static int export_shared(struct cfd_token *tok, struct cfd_watcher *w,
			 unsigned flags)
{
	int fd = cfd_token_fd(tok), dup_fd, r;

	if (fd < 0)
		return fd;
	r = shared_watch(tok, w, fd);
	if (r < 0)
		return r;
	dup_fd = fcntl(
	    fd, (flags & CFD_EXPORT_INHERIT) ? F_DUPFD : F_DUPFD_CLOEXEC, 3);
	return dup_fd < 0 ? -errno : dup_fd;
}

CFD_EXPORT int cfd_token_export_fd(struct cfd_token *tok, struct cfd_watcher *w,
				   unsigned flags)
{
	int r;

	if (!tok || (flags & ~(CFD_EXPORT_SHARED | CFD_EXPORT_INHERIT)))
		return -EINVAL;
	r = token_check_process(tok);
	if (r < 0)
		return r;
	if (w) {
		r = watcher_check(w);
		if (r < 0)
			return r;
	}
	if (flags & CFD_EXPORT_SHARED)
		return export_shared(tok, w, flags);
	return export_pipe(tok, flags);
}

/* ---- import ---- */

CFD_EXPORT int cfd_token_import_fd(struct cfd_token **ret, int fd,
				   const char *name, struct cfd_watcher *w)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct cfd_token *tok;
	int r;

	if (!ret)
		return -EINVAL;
	if (fd < 0)
		return -EBADF;
	if (w) {
		r = watcher_check(w);
		if (r < 0)
			return r;
	}
	{
		struct stat st;

		/* Always "readable", and epoll refuses them. */
		if (fstat(fd, &st) < 0)
			return -errno;
		if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
			return -EPERM;
	}
	r = cfd_token_new(&tok, name);
	if (r < 0)
		return r;
	/* Already readable or hung up: the other side triggered (or went
	 * away) before us.  Born triggered, with no source. */
	if (poll(&p, 1, 0) == 1) {
		if (p.revents & POLLNVAL) {
			cfd_token_unref(tok);
			return -EBADF;
		}
		token_trigger(tok, CFD_REASON_FD, 0, NULL);
	} else {
		r = cfd_source_add_fd(NULL, tok, w, fd);
		if (r < 0) {
			cfd_token_unref(tok);
			return r;
		}
	}
	*ret = tok;
	return 0;
}

/*
 * Only pipes (watch-only exports) and eventfds (shared exports) are token
 * fds.  -EBADF when fd is not open, -EBADFD when it is something else.
 */
static int check_token_fd(int fd)
{
	char path[64], target[64];
	struct stat st;
	ssize_t n;

	if (fstat(fd, &st) < 0)
		return -errno;
	/* A watch-only export is a pipe's read end; its write end is not a
	 * token fd (and closing it would end someone's output). */
	if (S_ISFIFO(st.st_mode))
		return (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY ? 0
								    : -EBADFD;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return -EBADFD;
	target[n] = '\0';
	return strcmp(target, "anon_inode:[eventfd]") == 0 ? 0 : -EBADFD;
}

/* Import an fd this call owns: it is closed whatever happens. */
static int import_owned(struct cfd_token **ret, int fd, const char *name,
			struct cfd_watcher *w)
{
	int r = check_token_fd(fd);

	if (r == 0)
		r = cfd_token_import_fd(ret, fd, name, w);
	close(fd);
	return r;
}

/* ---- over a Unix socket ---- */

CFD_EXPORT int cfd_token_send(int sock, struct cfd_token *tok,
			      struct cfd_watcher *w, unsigned flags)
{
	char byte = 'c';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	struct cmsghdr *c;
	ssize_t n;
	int fd;

	if (sock < 0)
		return -EBADF;
	if (flags & CFD_EXPORT_INHERIT)
		return -EINVAL; /* meaningless for a passed fd */
	fd = cfd_token_export_fd(tok, w, flags);
	if (fd < 0)
		return fd;
	memset(&ctl, 0, sizeof(ctl));
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	n = n < 0 ? -errno : 0;
	close(fd); /* the receiver has its own copy now */
	return (int)n;
}

CFD_EXPORT int cfd_token_recv(struct cfd_token **ret, int sock,
			      const char *name, struct cfd_watcher *w)
{
	char byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} ctl;
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	int fd = -1, extra = 0;
	ssize_t n;

	_Static_assert(sizeof(ctl.buf) == CMSG_SPACE(sizeof(int) * 4),
		       "room for the 4 fds the -EMFILE test counts on");
	if (!ret)
		return -EINVAL;
	if (sock < 0)
		return -EBADF;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/* Take every fd that came, so that none leaks, and keep the first. */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c;
	     c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0;
		     i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int got;

			memcpy(&got, CMSG_DATA(c) + i * sizeof(int),
			       sizeof(int));
			if (fd < 0) {
				fd = got;
			} else {
				close(got);
				extra++;
			}
		}
	}
	if (n == 0 && fd < 0)
		return -ECONNRESET; /* the peer closed without sending */
	if (fd < 0 || extra || (msg.msg_flags & MSG_CTRUNC)) {
		if (fd >= 0)
			close(fd);
		/* Truncated with room to spare: the kernel could not install
		 * what came (RLIMIT_NOFILE), not "more than fit". */
		if ((msg.msg_flags & MSG_CTRUNC) && extra + (fd >= 0) < 4)
			return -EMFILE;
		return -EPROTO; /* not one token fd */
	}
	return import_owned(ret, fd, name, w);
}

/* ---- through exec ---- */

CFD_EXPORT int cfd_token_from_env(struct cfd_token **ret, const char *name,
				  struct cfd_watcher *w)
{
	const char *v;
	long fd = 0;
	bool ok;
	int r;

	if (!ret)
		return -EINVAL;
	v = getenv(CFD_ENV);
	if (!v)
		return -ENOENT;
	/* Decimal digits only (strtol would take blanks and a sign). */
	ok = *v != '\0' && strlen(v) <= 10;
	for (const char *c = v; ok && *c; c++) {
		ok = *c >= '0' && *c <= '9';
		fd = fd * 10 + (*c - '0');
	}
	ok = ok && fd <= INT_MAX;
	/* Read once: whatever it says, it is not for our children. */
	unsetenv(CFD_ENV);
	if (!ok)
		return -EINVAL;
	if (fcntl((int)fd, F_GETFD) < 0)
		return -EBADF;
	/* Something else than a token fd is probably the program's own fd
	 * (stdout, a log) named by a stale variable: leave it open. */
	r = check_token_fd((int)fd);
	if (r < 0)
		return r;
	return import_owned(ret, (int)fd, name, w);
}
