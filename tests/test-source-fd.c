/* SPDX-License-Identifier: MIT */
/*
 * Description: fd sources (lib/source-fd.c): bad fds, firing on hang-up
 * (the library watches a dup), another watcher's fd (but not in a cycle),
 * a pidfd, and another process's token passed over a socket.
 *
 * Every test drives an embedded watcher itself, so nothing fires unless
 * the test dispatches.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers-watcher.h"
#include "helpers.h"

START_TEST(test_fd_source_refuses_bad_fds)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = TW_SENTINEL;
	int closed = eventfd(0, EFD_CLOEXEC), fds;
	FILE *regular = tmpfile();

	ck_assert_ptr_nonnull(regular);
	close(closed);
	fds = t_count_fds();
	ck_assert_int_eq(cfd_source_add_fd(&src, tok, w, -1), -EBADF);
	ck_assert_int_eq(cfd_source_add_fd(&src, tok, w, closed), -EBADF);
	ck_assert_int_eq(cfd_source_add_fd(&src, tok, w, INT32_MAX), -EBADF);
	/* epoll refuses regular files: they are always ready */
	ck_assert_int_eq(cfd_source_add_fd(&src, tok, w, fileno(regular)),
			 -EPERM);
	ck_assert_int_eq(cfd_source_add_fd(&src, NULL, w, cfd_watcher_fd(w)),
			 -EINVAL);
	/* a watcher cannot watch itself */
	ck_assert_int_eq(cfd_source_add_fd(&src, tok, w, cfd_watcher_fd(w)),
			 -EINVAL);
	ck_assert_ptr_eq(src, TW_SENTINEL);
	ck_assert_int_eq(t_count_fds(), fds); /* the dup was closed */
	fclose(regular);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* Fire on hang-up: a pipe's writer leaving, and a socket peer leaving.  The
 * caller closes its own fd at once: the library watches a dup. */
START_TEST(test_fd_source_fires_on_hangup)
{
	struct cfd_watcher *w = tw_new_watcher();
	int fds = t_count_fds();

	for (int kind = 0; kind < 2; kind++) {
		struct cfd_token *tok = t_new_token("peer");
		struct cfd_source *src = NULL;
		int p[2];

		if (kind == 0)
			ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
		else
			ck_assert_int_eq(socketpair(AF_UNIX,
						    SOCK_STREAM | SOCK_CLOEXEC,
						    0, p),
					 0);
		ck_assert_int_eq(cfd_source_add_fd(&src, tok, w, p[0]), 0);
		close(p[0]);
		ck_assert_int_eq(t_count_fds(), fds + 2); /* p[1], the dup */
		ck_assert_int_eq(cfd_watcher_dispatch(w), 0);
		ck_assert(!cfd_token_triggered(tok));
		close(p[1]); /* the peer leaves */
		ck_assert(tw_dispatch_until(w, tok));
		ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_FD);
		ck_assert_str_eq(cfd_reason_name(CFD_REASON_FD), "fd");
		ck_assert_int_eq(t_count_fds(), fds); /* dup closed at fire */
		cfd_source_free(src);
		cfd_token_unref(tok);
	}
	cfd_watcher_unref(w);
}
END_TEST

/* Another watcher's fd is an epoll set like any other: a watcher can watch
 * one (it fires when that watcher has work), but not in a cycle. */
START_TEST(test_fd_source_watches_another_watcher_not_a_cycle)
{
	struct cfd_watcher *outer = tw_new_watcher(), *inner = tw_new_watcher();
	struct cfd_token *busy = t_new_token("inner has work");
	struct cfd_token *tick = t_new_token("tick");
	struct cfd_source *src = TW_SENTINEL;

	ck_assert_int_eq(
	    cfd_source_add_fd(NULL, busy, outer, cfd_watcher_fd(inner)), 0);
	ck_assert_int_eq(
	    cfd_source_add_fd(&src, tick, inner, cfd_watcher_fd(outer)),
	    -ELOOP);
	ck_assert_ptr_eq(src, TW_SENTINEL);
	int efd = tw_add_trigger(NULL, tick, inner);

	tw_eventfd_signal(efd);
	ck_assert(tw_dispatch_until(outer, busy));
	ck_assert_int_eq(cfd_token_reason(busy), CFD_REASON_FD);
	ck_assert(!cfd_token_triggered(tick)); /* inner not dispatched yet */
	ck_assert(tw_dispatch_until(inner, tick));
	close(efd);
	cfd_token_unref(busy);
	cfd_token_unref(tick);
	cfd_watcher_unref(outer);
	cfd_watcher_unref(inner);
}
END_TEST

/* A pidfd is readable when the process exits. */
START_TEST(test_fd_source_fires_when_a_pidfd_process_exits)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *tok = t_new_token("child exited");
	int p[2], pidfd;
	pid_t pid;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char c;

		close(p[1]);
		_exit(read(p[0], &c, 1) == 0 ? 0 : 1); /* until told */
	}
	close(p[0]);
	pidfd = t_pidfd_open(pid);
	ck_assert_int_ge(pidfd, 0);
	ck_assert_int_eq(cfd_source_add_fd(NULL, tok, w, pidfd), 0);
	close(pidfd);
	ck_assert_int_eq(cfd_watcher_dispatch(w), 0);
	ck_assert(!cfd_token_triggered(tok));
	close(p[1]); /* the child exits */
	ck_assert(tw_dispatch_until(w, tok));
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_FD);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* Another process's token: it passes its token's fd over a socket
 * (SCM_RIGHTS) and triggers the token when told to. */
static int recv_fd(int sock)
{
	char data, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &data, 1 };
	struct msghdr msg = { .msg_iov = &iov,
			      .msg_iovlen = 1,
			      .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int fd;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

static void send_fd(int sock, int fd)
{
	char data = 'f', cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &data, 1 };
	struct msghdr msg = { .msg_iov = &iov,
			      .msg_iovlen = 1,
			      .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	T_CHILD_CHECK(sendmsg(sock, &msg, 0) == 1); /* in the child */
}

START_TEST(test_fd_source_fires_on_another_process_token)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *tok = t_new_token("remote");
	int sv[2], fd, status;
	pid_t pid;
	char go = 'g';

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cfd_token *theirs;
		char c;

		close(sv[0]);
		T_CHILD_CHECK(cfd_token_new(&theirs, "theirs") == 0);
		send_fd(sv[1], cfd_token_fd(theirs));
		T_CHILD_CHECK(read(sv[1], &c, 1) == 1); /* told to cancel */
		T_CHILD_CHECK(cfd_token_trigger(theirs) == 1);
		_exit(0);
	}
	close(sv[1]);
	fd = recv_fd(sv[0]);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(cfd_source_add_fd(NULL, tok, w, fd), 0);
	close(fd);
	ck_assert_int_eq(cfd_watcher_dispatch(w), 0);
	ck_assert_int_eq(write(sv[0], &go, 1), 1);
	ck_assert(tw_dispatch_until(w, tok));
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_FD);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(sv[0]);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* ======================================================================
 * when the dup is closed
 * ==================================================================== */

/*
 * The dup an fd source watches is closed at the first of: it fires, it is
 * freed, its token triggers for another reason, its token is freed.
 */
enum { WAY_FIRES, WAY_FREED, WAY_TOKEN_TRIGGERED, WAY_TOKEN_FREED };

static void check_dup_closed(int way)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *tok = t_new_token("t");
	struct cfd_source *src = NULL, **ret = &src;
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), fds;

	fds = t_count_fds();
	if (way == WAY_TOKEN_FREED)
		ret = NULL; /* owned by its token and the watcher */
	ck_assert_int_eq(cfd_source_add_fd(ret, tok, w, efd), 0);
	ck_assert_int_eq(t_count_fds(), fds + 1);
	switch (way) {
	case WAY_FIRES:
		tw_eventfd_signal(efd);
		ck_assert(tw_dispatch_until(w, tok));
		ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_FD);
		break;
	case WAY_FREED:
		src = cfd_source_free(src);
		break;
	case WAY_TOKEN_TRIGGERED:
		cfd_token_trigger(tok);
		break;
	case WAY_TOKEN_FREED:
		tok = cfd_token_unref(tok);
		break;
	}
	ck_assert_int_eq(t_count_fds(), fds);
	cfd_source_free(src);
	cfd_token_unref(tok);
	close(efd);
	cfd_watcher_unref(w);
}

START_TEST(test_dup_closed_when_it_fires)
{
	check_dup_closed(WAY_FIRES);
}
END_TEST

START_TEST(test_dup_closed_when_it_is_freed)
{
	check_dup_closed(WAY_FREED);
}
END_TEST

START_TEST(test_dup_closed_when_its_token_triggers)
{
	check_dup_closed(WAY_TOKEN_TRIGGERED);
}
END_TEST

START_TEST(test_dup_closed_when_its_token_is_freed)
{
	check_dup_closed(WAY_TOKEN_FREED);
}
END_TEST

static Suite *source_fd_suite(void)
{
	Suite *s = suite_create("source-fd");
	TCase *tc;

	tc = t_tcase("fd");
	tcase_add_test(tc, test_fd_source_refuses_bad_fds);
	tcase_add_test(tc, test_fd_source_fires_on_hangup);
	tcase_add_test(tc, test_fd_source_watches_another_watcher_not_a_cycle);
	tcase_add_test(tc, test_fd_source_fires_when_a_pidfd_process_exits);
	tcase_add_test(tc, test_fd_source_fires_on_another_process_token);
	tcase_add_test(tc, test_dup_closed_when_it_fires);
	tcase_add_test(tc, test_dup_closed_when_it_is_freed);
	tcase_add_test(tc, test_dup_closed_when_its_token_triggers);
	tcase_add_test(tc, test_dup_closed_when_its_token_is_freed);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(source_fd_suite());
}
