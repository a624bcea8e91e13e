/* SPDX-License-Identifier: MIT */
/*
 * Tokens going to other processes (import.c brings them in).
 *
 * A watch-only export is the read end of a pipe whose write end only this
 * process holds.  The pipe stays empty while the token is pending.  When
 * the token triggers, one write puts the cause record (wire.h) in it and
 * the write end is closed: every holder of the read end sees it readable
 * and hung up, and nothing a holder does (write: EBADF; read: end of file)
 * can trigger the token or hide the trigger.  A token freed untriggered
 * writes a "gone" record instead; a process that dies writes nothing, and
 * its pipes hang up all the same.  An eventfd could give none of this: any
 * holder may read it (un-cancel it for everyone) or write it.
 *
 * A shared export is the token's eventfd itself.  An fd source on the
 * token's watcher then turns an outside write into a full trigger (flag,
 * reason _FD, fan-out, callbacks).  It carries no cause.
 *
 * The deadline goes with the way the fd goes: CANCELFD_DEADLINE beside
 * CANCELFD (cfd_token_export_env()), the message of cfd_token_send(), and,
 * for a child made by fork(), what the child's fork handler noted of each
 * exported token (exports_inherited_deadline()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "export.h"
#include "wire.h"

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
 * triggers); the child's handler closes them, and notes each pipe's token
 * deadline for an import in the child.  Pipes are made under the lock so
 * that a fork cannot catch one before it is listed.
 */
static pthread_mutex_t exports_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pipe_export *exports;
static pthread_once_t exports_once = PTHREAD_ONCE_INIT;

/* This process, as the records name it: its ID and the head of an origin
 * path, "comm[pid]/".  Made when the first export sets up the fork
 * handlers, and again in a child by its handler: a trigger's record costs
 * neither getpid(2) nor a printf. */
static pid_t self_pid;
static char self_head[48];
static size_t self_head_len;

static void self_init(void)
{
	int n;

	self_pid = getpid();
	n = snprintf(self_head, sizeof(self_head), "%.24s[%d]/",
		     program_invocation_short_name, (int)self_pid);
	self_head_len = n > 0 && (size_t)n < sizeof(self_head) ? (size_t)n : 0;
}

/* In a forked child: the pipes its parent exported, by inode, and their
 * tokens' deadlines as they were at the fork. */
struct inherited {
	ino_t ino;
	int64_t deadline;
};
static struct inherited *inherited;
static size_t ninherited;

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
	size_t n = 0;

	self_init();

	for (struct pipe_export *e = exports; e; e = e->next)
		n++;
	free(inherited);
	ninherited = 0;
	/* The child has one thread: the tokens can be read without their
	 * locks (the deadline walk takes none). */
	inherited = n ? malloc(n * sizeof(*inherited)) : NULL;
	for (struct pipe_export *e = exports; e; e = e->next) {
		struct stat st;

		if (e->wfd < 0)
			continue;
		if (inherited && fstat(e->rfd, &st) == 0)
			inherited[ninherited++] = (struct inherited){
				st.st_ino,
				token_deadline(listener_owner(&e->reg.node))
			};
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
	self_init();
	pthread_atfork(exports_fork_prepare, exports_fork_parent,
		       exports_fork_child);
}

int64_t exports_inherited_deadline(ino_t ino)
{
	for (size_t i = 0; i < ninherited; i++)
		if (inherited[i].ino == ino)
			return inherited[i].deadline;
	return INT64_MAX;
}

/*
 * "comm[pid]/root:...:name": where a cause starts, for the other side: the
 * process, then the names from the origin's root down to it, by first
 * parents (links never change and each token holds its parents, so the
 * walk needs no lock).  Built from the origin up; when it does not fit,
 * the top of the tree gives way, marked "...".
 */
static void origin_path(const struct cfd_token *o, char *buf, size_t size)
{
	const struct cfd_token *t = o;
	size_t at = size - 1, hl;

	buf[at] = '\0';
	for (unsigned depth = 0; t && depth < 64; depth++) {
		const char *name = token_name_ptr(t);
		size_t n = strlen(name), sep = t != o;

		if (n + sep + 4 > at)
			break; /* room for "...:" stays */
		at -= sep;
		if (sep)
			buf[at] = ':';
		at -= n;
		memcpy(buf + at, name, n);
		t = t->nparents ? listener_owner(&t->links[0].node) : NULL;
	}
	if (t) {
		at -= 4;
		memcpy(buf + at, t == o ? "... " : "...:", 4);
	}
	hl = self_head_len < at ? self_head_len : at;
	memmove(buf + hl, buf + at, size - at);
	memcpy(buf, self_head, hl);
}

/* The record of tok's cause: its origin's, forwarded unchanged when it
 * came from another process. */
static void cause_record(struct cfd_token *tok, struct wire_cause *c)
{
	struct cfd_token *o = token_origin_wait(tok);
	const struct cause_text *ct = o->cause;
	int64_t age = cfd_now_coarse() - o->time;

	memset(c, 0, offsetof(struct wire_cause, path));
	c->type = WIRE_CAUSE;
	c->reason = (int)token_reason(o);
	c->signo = (int)token_signo(o);
	c->age_ns = age > 0 ? age : 0;
	c->code = ct ? ct->code : 0;
	if (ct && (ct->flags & CAUSE_REMOTE)) {
		c->pid = ct->pid;
		c->has_path = ct->path != NULL;
		if (ct->path)
			snprintf(c->path, sizeof(c->path), "%s", ct->path);
	} else {
		c->pid = (int32_t)self_pid;
		c->has_path = true;
		origin_path(o, c->path, sizeof(c->path));
	}
	c->has_message = ct && ct->message;
	if (c->has_message)
		snprintf(c->message, sizeof(c->message), "%s", ct->message);
}

/* The record of a token freed untriggered: it is gone, from here. */
static void gone_record(const struct cfd_token *tok, struct wire_cause *c)
{
	memset(c, 0, offsetof(struct wire_cause, path));
	c->type = WIRE_GONE;
	c->pid = (int32_t)self_pid;
	c->has_path = true;
	origin_path(tok, c->path, sizeof(c->path));
	c->has_message = false;
}

/* Write the record (if any) and hang up: every holder of the read end
 * sees the token triggered.  The record makes the pipe readable (POLLIN)
 * as well as hung up (POLLHUP) for loops that look only at one; the
 * hang-up is what no reader can undo. */
static void pipe_export_close(struct pipe_export *e, const struct wire_cause *c)
{
	unsigned char buf[WIRE_MAX];
	size_t len = c ? wire_encode(c, buf) : 0;

	pthread_mutex_lock(&exports_lock);
	if (e->wfd >= 0) {
		/* The pipe has a reader, e->rfd, until after the write: no
		 * EPIPE, no SIGPIPE.  It is empty until now, and a record fits
		 * in a pipe's smallest buffer (one page): the write is whole. */
		if (len && write(e->wfd, buf, len) < 0) {
			/* nothing to do: the hang-up still tells */
		}
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
	struct wire_cause c;

	cause_record(tok, &c);
	pipe_export_close(userdata, &c);
}

static void pipe_export_done(struct cfd_registration *reg)
{
	free(container_of(reg, struct pipe_export, reg));
}

/* A token freed untriggered can never trigger: hang up too, so that the
 * other side is not left waiting for ever, and say so. */
static void pipe_export_released(struct cfd_registration *reg)
{
	struct pipe_export *e = container_of(reg, struct pipe_export, reg);
	struct wire_cause c;

	gone_record(listener_owner(&reg->node), &c);
	pipe_export_close(e, &c);
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
		/* Failed, or triggered already: the read end hangs up, with
		 * the cause if there is one. */
		struct wire_cause c;

		if (fd >= 0)
			cause_record(tok, &c);
		pipe_export_close(e, fd >= 0 ? &c : NULL);
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

/* ---- to a program started by exec ---- */

CFD_EXPORT int cfd_token_export_env(struct cfd_token *tok,
				    struct cfd_watcher *w)
{
	char num[16], dl[64];
	int64_t deadline;
	int fd;

	fd = cfd_token_export_fd(tok, w, CFD_EXPORT_INHERIT);
	if (fd < 0)
		return fd;
	snprintf(num, sizeof(num), "%d", fd);
	deadline = token_deadline(tok);
	wire_deadline_format(wire_deadline_out(deadline), dl, sizeof(dl));
	/* No deadline: none in the environment either, not even one this
	 * process inherited. */
	if (setenv(CFD_ENV, num, 1) < 0 ||
	    (deadline == INT64_MAX ? unsetenv(CFD_ENV_DEADLINE)
				   : setenv(CFD_ENV_DEADLINE, dl, 1)) < 0) {
		int r = -errno;

		unsetenv(CFD_ENV);
		close(fd);
		return r;
	}
	return fd;
}

/* ---- over a Unix socket ---- */

CFD_EXPORT int cfd_token_send(int sock, struct cfd_token *tok,
			      struct cfd_watcher *w, unsigned flags)
{
	unsigned char payload[WIRE_SEND_SIZE];
	struct iovec iov = { .iov_base = payload, .iov_len = sizeof(payload) };
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
	/* The deadline as remaining time, measured now. */
	wire_send_encode(wire_deadline_out(token_deadline(tok)), payload);
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
