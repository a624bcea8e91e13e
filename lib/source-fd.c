/* SPDX-License-Identifier: MIT */
/*
 * Fd sources: the token triggers with CFD_REASON_FD when a foreign fd
 * becomes readable or hangs up.  The watcher watches a dup of its own, so
 * the caller may close theirs, and an fd number reused meanwhile cannot
 * confuse the epoll set.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "source.h"

static int fd_attach(struct cfd_source *src)
{
	return watcher_io_add(src->w, &src->entry, src->fd.fd,
			      EPOLLIN | EPOLLRDHUP);
}

/* The dup goes with the watching: a source that fired or whose token
 * went keeps no fd, even while its handle lives. */
static void fd_detach(struct cfd_source *src)
{
	watcher_io_remove(src->w, &src->entry);
	close(src->fd.fd);
	src->fd.fd = -1;
}

static void fd_fire(struct cfd_source *src, struct cfd_token *tok,
		    unsigned info)
{
	(void)src;
	(void)info;
	token_trigger(tok, CFD_REASON_FD, 0, NULL);
}

/* A source that never attached still owns its dup. */
static void fd_release(struct cfd_source *src)
{
	if (src->fd.fd >= 0)
		close(src->fd.fd);
}

static const struct source_kind fd_kind = {
	.name = "fd",
	.attach = fd_attach,
	.detach = fd_detach,
	.fire = fd_fire,
	.release = fd_release,
};

CFD_EXPORT int cfd_source_add_fd(struct cfd_source **ret, struct cfd_token *tok,
				 struct cfd_watcher *w, int fd)
{
	struct cfd_source p = { .kind = &fd_kind };
	int r;

	if (fd < 0)
		return -EBADF;
	if (fcntl(fd, F_GETFD) < 0)
		return -errno;
	r = source_check_token(tok, ret);
	if (r != 0)
		return r < 0 ? r : 0;
	watcher_io_init(&p.entry, &source_entry_ops);
	p.fd.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (p.fd.fd < 0)
		return -errno;
	return source_add(ret, tok, w, &p);
}
