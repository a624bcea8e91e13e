/* SPDX-License-Identifier: MIT */
/*
 * Tokens coming from other processes (export.c sends them).
 *
 * An import is a token with an import source on the received fd: a kind of
 * source that watches the fd like an fd source, and when it fires reads
 * the cause record the other side left in the pipe (wire.h) and triggers
 * the token with that cause, marked remote.  So the importer learns the
 * cause in the same wake-up as the hang-up.  An imported token is an
 * ordinary token: it can be the parent of local tokens and be exported
 * again, with its cause forwarded: a tree of processes cancels as a tree
 * of tokens.
 *
 * The record is read without being taken: tee(2) copies it into a pipe of
 * the importer's own, so every holder of the same export reads all of it.
 * What the other side wrote is untrusted: a record that is short, long or
 * garbled, or one that cannot be read, triggers the token with
 * CFD_REASON_FD and no cause ("the fd says so"); a hang-up with no record
 * is CFD_REASON_GONE (the other side went away untriggered).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "export.h"
#include "source.h"
#include "wire.h"

/* ---- reading the cause ---- */

enum record {
	RECORD_NONE,	/* empty and hung up: gone, untriggered */
	RECORD_CAUSE,	/* a cause or gone record */
	RECORD_UNKNOWN, /* garbled, partial, unreadable: the fd says so */
};

/* What the pipe fd holds, read without taking it. */
static enum record read_record(int fd, struct wire_cause *c)
{
	unsigned char buf[WIRE_MAX + 1];
	ssize_t n, got;
	int p[2];

	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		return RECORD_UNKNOWN; /* no fd for the copy (EMFILE) */
	n = tee(fd, p[1], sizeof(buf), SPLICE_F_NONBLOCK);
	close(p[1]);
	got = n > 0 ? read(p[0], buf, (size_t)n) : 0;
	close(p[0]);
	if (n == 0)
		return RECORD_NONE;
	if (n < 0 || got != n)
		return RECORD_UNKNOWN; /* not a pipe, or nothing complete */
	return wire_decode(buf, (size_t)n, c) == 0 ? RECORD_CAUSE
						   : RECORD_UNKNOWN;
}

/* Trigger tok as what fd says: the other side's cause, gone, or just "the
 * fd is readable". */
static void trigger_from_fd(struct cfd_token *tok, int fd)
{
	struct wire_cause c;
	uint32_t flags = CAUSE_REMOTE;

	switch (read_record(fd, &c)) {
	case RECORD_CAUSE:
		if (c.type == WIRE_GONE)
			break;
		token_trigger_at(
		    tok, (unsigned)c.reason, (unsigned)c.signo,
		    cause_text_new(c.code, c.has_message ? c.message : NULL,
				   c.has_path ? c.path : NULL, c.pid, flags),
		    cfd_now_coarse() - c.age_ns);
		return;
	case RECORD_NONE:
		c.has_path = false;
		c.pid = 0;
		break;
	case RECORD_UNKNOWN:
		token_trigger(tok, CFD_REASON_FD, 0, NULL);
		return;
	}
	token_trigger(
	    tok, CFD_REASON_GONE, 0,
	    cause_text_new(0, NULL, c.has_path ? c.path : NULL, c.pid, flags));
}

/* ---- the import source ---- */

static int import_attach(struct cfd_source *src)
{
	return watcher_io_add(src->w, &src->entry, src->fd.fd,
			      EPOLLIN | EPOLLRDHUP);
}

/* The fd stays open until the source goes (release): unlike an fd
 * source's, the fire reads it, outside the watcher's lock, while a trigger
 * from another thread may detach the source; the fire holds a reference. */
static void import_detach(struct cfd_source *src)
{
	watcher_io_remove(src->w, &src->entry);
}

static void import_fire(struct cfd_source *src, struct cfd_token *tok,
			unsigned info)
{
	(void)info;
	trigger_from_fd(tok, src->fd.fd);
}

static void import_release(struct cfd_source *src)
{
	if (src->fd.fd >= 0)
		close(src->fd.fd);
}

static const struct source_kind import_kind = {
	.name = "import",
	.attach = import_attach,
	.detach = import_detach,
	.fire = import_fire,
	.release = import_release,
};

/* ---- import ---- */

/* What an import knows of the exporter's deadline: a time, none
 * (INT64_MAX), or nothing (DEADLINE_UNSAID: a bare fd, a one-byte send, no
 * CANCELFD_DEADLINE), when a pipe this process's parent exported before
 * forking it still tells the deadline at the fork. */
#define DEADLINE_UNSAID INT64_MIN

/* Import fd (not owned) with what is known of its deadline. */
static int import_fd(struct cfd_token **ret, int fd, const char *name,
		     struct cfd_watcher *w, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct cfd_source s = { .kind = &import_kind };
	struct cfd_token *tok;
	struct stat st;
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
	/* Always "readable", and epoll refuses them. */
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
		return -EPERM;
	/* A pipe this process's parent exported before forking it: the
	 * token's deadline as it was at the fork. */
	if (deadline == DEADLINE_UNSAID)
		deadline = S_ISFIFO(st.st_mode)
			       ? exports_inherited_deadline(st.st_ino)
			       : INT64_MAX;
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
		trigger_from_fd(tok, fd);
		*ret = tok;
		return 0;
	}
	watcher_io_init(&s.entry, &source_entry_ops);
	s.deadline = deadline;
	/* Watch a dup of our own: the caller may close theirs. */
	s.fd.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (s.fd.fd < 0) {
		r = -errno;
		cfd_token_unref(tok);
		return r;
	}
	r = source_add(NULL, tok, w, &s);
	if (r < 0) {
		cfd_token_unref(tok);
		return r;
	}
	*ret = tok;
	return 0;
}

CFD_EXPORT int cfd_token_import_fd(struct cfd_token **ret, int fd,
				   const char *name, struct cfd_watcher *w)
{
	return import_fd(ret, fd, name, w, DEADLINE_UNSAID);
}

/*
 * Only pipes' read ends (watch-only exports) and eventfds (shared exports)
 * are token fds.  -EBADF when fd is not open, -EBADFD when it is something
 * else.
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
			struct cfd_watcher *w, int64_t deadline)
{
	int r = check_token_fd(fd);

	if (r == 0)
		r = import_fd(ret, fd, name, w, deadline);
	close(fd);
	return r;
}

/* ---- over a Unix socket ---- */

CFD_EXPORT int cfd_token_recv(struct cfd_token **ret, int sock,
			      const char *name, struct cfd_watcher *w)
{
	unsigned char payload[WIRE_SEND_SIZE];
	struct iovec iov = { .iov_base = payload, .iov_len = sizeof(payload) };
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
	struct wire_deadline dl = { -1, 0 };
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
	/* The deadline that came with it (none is an answer too); a bare
	 * byte says nothing. */
	if (!(n == 1 || wire_send_decode(payload, (size_t)n, &dl) == 0)) {
		close(fd);
		return -EPROTO;
	}
	return import_owned(ret, fd, name, w,
			    n == 1 ? DEADLINE_UNSAID : wire_deadline_in(dl));
}

/* ---- through exec ---- */

/* CANCELFD_DEADLINE, read once and unset: unsaid if absent, none if bad. */
static int64_t env_deadline(void)
{
	const char *v = getenv(CFD_ENV_DEADLINE);
	struct wire_deadline d;
	int64_t deadline = DEADLINE_UNSAID;

	if (v)
		deadline = wire_deadline_parse(v, &d) == 0 ? wire_deadline_in(d)
							   : INT64_MAX;
	unsetenv(CFD_ENV_DEADLINE);
	return deadline;
}

CFD_EXPORT int cfd_token_from_env(struct cfd_token **ret, const char *name,
				  struct cfd_watcher *w)
{
	const char *v;
	int64_t deadline;
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
	/* Read once: whatever they say, they are not for our children. */
	unsetenv(CFD_ENV);
	deadline = env_deadline();
	if (!ok)
		return -EINVAL;
	if (fcntl((int)fd, F_GETFD) < 0)
		return -EBADF;
	/* Something else than a token fd is probably the program's own fd
	 * (stdout, a log) named by a stale variable: leave it open. */
	r = check_token_fd((int)fd);
	if (r < 0)
		return r;
	return import_owned(ret, (int)fd, name, w, deadline);
}
