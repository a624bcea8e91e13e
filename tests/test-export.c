/* SPDX-License-Identifier: MIT */
/*
 * Description: tokens across processes (lib/export.c): watch-only and
 * shared exports, import, SCM_RIGHTS, CANCELFD through exec, fork, and
 * every error.  Other processes are real: fork() and exec of this very
 * binary (argv[1] names the helper role); every wait is bounded and woken
 * by an fd (pipes, pidfds), never by sleeping.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers-watcher.h"
#include "helpers.h"

/* ---- processes ---- */

/* Wait at most ms for a child of ours; its wait status, or -1 when it
 * had to be killed. */
static int wait_bounded(pid_t pid, int ms)
{
	int pfd = t_pidfd_open(pid), st = 0;
	bool done;

	ck_assert_int_ge(pfd, 0);
	done = t_fd_readable(pfd, ms);
	close(pfd);
	if (!done)
		kill(pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return done ? st : -1;
}

#define ck_assert_child_ok(pid)                                         \
	do {                                                            \
		int st_ = wait_bounded(pid, T_WAIT_MS);                 \
		ck_assert_msg(st_ != -1, "child %d hung", (int)(pid));  \
		ck_assert_msg(WIFEXITED(st_) && WEXITSTATUS(st_) == 0,  \
			      "child %d: status %#x", (int)(pid), st_); \
	} while (0)

static void send_byte(int fd)
{
	ssize_t n;

	do
		n = write(fd, "r", 1);
	while (n < 0 && errno == EINTR);
}

/* A byte within ms, or false (also at end of file). */
static bool recv_byte(int fd, int ms)
{
	char c;

	if (!t_fd_readable(fd, ms))
		return false;
	return read(fd, &c, 1) == 1;
}

/* What a poll with no requested events reports: POLLHUP, POLLERR. */
static short revents_of(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };

	return poll(&p, 1, 0) == 1 ? p.revents : 0;
}

/* An fd number that is not open, and that no fd made meanwhile takes
 * (the lowest free number would be reused at once). */
static int closed_fd(void)
{
	for (int fd = 900; fd < 1000; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF)
			return fd;
	ck_abort_msg("no closed fd number between 900 and 999");
	return -1;
}

static int fd_flags(int fd)
{
	return fcntl(fd, F_GETFD);
}

/* ---- exports: what they are ---- */

START_TEST(test_export_kinds)
{
	struct cfd_watcher *w;
	struct cfd_token *tok;
	struct stat st;
	int fd;

	ck_assert_int_eq(cfd_watcher_new(&w), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "kinds"), 0);

	/* Watch-only: a pipe's read end, non-blocking, close-on-exec. */
	fd = cfd_token_export_fd(tok, w, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert(S_ISFIFO(st.st_mode));
	ck_assert_int_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	ck_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
	ck_assert(fd_flags(fd) & FD_CLOEXEC);
	ck_assert_int_eq(revents_of(fd, POLLIN), 0);
	close(fd);

	fd = cfd_token_export_fd(tok, w, CFD_EXPORT_INHERIT);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fd_flags(fd) & FD_CLOEXEC, 0);
	close(fd);

	/* Shared: the token's eventfd. */
	fd = cfd_token_export_fd(tok, w, CFD_EXPORT_SHARED);
	ck_assert_int_ge(fd, 0);
	ck_assert(t_fd_is_eventfd(fd));
	ck_assert(fd_flags(fd) & FD_CLOEXEC);
	ck_assert_int_ne(fd, cfd_token_fd(tok)); /* a dup, caller-owned */
	close(fd);
	fd =
	    cfd_token_export_fd(tok, w, CFD_EXPORT_SHARED | CFD_EXPORT_INHERIT);
	ck_assert_int_ge(fd, 0);
	ck_assert(t_fd_is_eventfd(fd));
	ck_assert_int_eq(fd_flags(fd) & FD_CLOEXEC, 0);
	close(fd);

	ck_assert(!cfd_token_triggered(tok));
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

START_TEST(test_export_trigger_hangs_up)
{
	struct cfd_token *tok;
	char c;
	int fd, late;

	ck_assert_int_eq(cfd_token_new(&tok, "hup"), 0);
	fd = cfd_token_export_fd(tok, NULL, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(revents_of(fd, POLLIN), 0);
	ck_assert_int_eq(read(fd, &c, 1), -1);
	ck_assert_int_eq(errno, EAGAIN);

	ck_assert_int_eq(cfd_token_trigger(tok), 1);
	/* Readable and hung up at once (the trigger returned). */
	ck_assert_int_eq(revents_of(fd, POLLIN), POLLIN | POLLHUP);
	ck_assert_int_eq(revents_of(fd, 0), POLLHUP);

	/* Exported after the trigger: born hung up. */
	late = cfd_token_export_fd(tok, NULL, 0);
	ck_assert_int_ge(late, 0);
	ck_assert(revents_of(late, POLLIN) & POLLHUP);
	close(late);
	close(fd);
	cfd_token_unref(tok);
}
END_TEST

/* A token exported to many processes in turn (each holder closing its fd)
 * keeps one pipe: two fds in the exporter, however many exports; all
 * exports see the same trigger, and the trigger closes both. */
START_TEST(test_export_many_times_one_pipe)
{
	struct cfd_token *tok;
	int base = t_count_fds(), first, kept[3];

	ck_assert_int_eq(cfd_token_new(&tok, "long-lived"), 0);
	first = cfd_token_export_fd(tok, NULL, 0);
	ck_assert_int_ge(first, 0);
	ck_assert_int_eq(t_count_fds(), base + 3); /* the pipe and first */
	for (int i = 0; i < 1000; i++) {
		int fd = cfd_token_export_fd(tok, NULL,
					     i % 2 ? CFD_EXPORT_INHERIT : 0);

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC,
				 i % 2 ? 0 : FD_CLOEXEC);
		if (i < 3)
			kept[i] = fd;
		else
			close(fd);
	}
	ck_assert_int_eq(t_count_fds(), base + 6);
	close(first);
	ck_assert_int_eq(cfd_token_trigger(tok), 1);
	for (int i = 0; i < 3; i++) {
		ck_assert(revents_of(kept[i], POLLIN) & POLLHUP);
		close(kept[i]);
	}
	ck_assert_int_eq(t_count_fds(), base); /* the pipe is gone */
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_export_freed_untriggered_hangs_up)
{
	struct cfd_token *tok, *imp;
	int fd;

	ck_assert_int_eq(cfd_token_new(&tok, "owner"), 0);
	fd = cfd_token_export_fd(tok, NULL, 0);
	ck_assert_int_ge(fd, 0);
	cfd_token_unref(tok);
	/* The token can never trigger now: its importers must not wait. */
	ck_assert(revents_of(fd, 0) & POLLHUP);
	ck_assert_int_eq(cfd_token_import_fd(&imp, fd, "imp", NULL), 0);
	ck_assert(cfd_token_triggered(imp));
	/* Gone, not cancelled: the exporter freed it untriggered, and said
	 * who it was. */
	ck_assert_int_eq(cfd_token_reason(imp), CFD_REASON_GONE);
	ck_assert(cfd_token_remote(imp));
	ck_assert_int_eq(cfd_token_origin_pid(imp), getpid());
	ck_assert_ptr_nonnull(strstr(cfd_token_origin_path(imp), "]/owner"));
	cfd_token_unref(imp);
	close(fd);
}
END_TEST

/* ---- a watch-only holder can neither trigger nor hide ---- */

START_TEST(test_holder_write_fails)
{
	struct cfd_token *tok;
	int fd;
	pid_t pid;

	ck_assert_int_eq(cfd_token_new(&tok, "guarded"), 0);
	fd = cfd_token_export_fd(tok, NULL, 0);
	ck_assert_int_ge(fd, 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uint64_t one = 1;

		/* Both a byte and what would trigger an eventfd. */
		T_CHILD_CHECK(write(fd, "x", 1) == -1 && errno == EBADF);
		T_CHILD_CHECK(write(fd, &one, sizeof(one)) == -1 &&
			      errno == EBADF);
		_exit(0);
	}
	ck_assert_child_ok(pid);
	/* Here, too. */
	ck_assert_int_eq(write(fd, "x", 1), -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert(!cfd_token_triggered(tok));
	ck_assert_int_eq(revents_of(fd, POLLIN), 0);
	cfd_token_unref(tok);
	close(fd);
}
END_TEST

START_TEST(test_holder_read_hides_nothing)
{
	struct cfd_token *tok, *imp;
	int fd, go[2], ready[2];
	pid_t pid;

	ck_assert_int_eq(cfd_token_new(&tok, "guarded"), 0);
	fd = cfd_token_export_fd(tok, NULL, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char buf[4096];

		close(go[1]);
		close(ready[0]);
		/* Before the trigger: nothing to read, and reading does not
		 * trigger. */
		T_CHILD_CHECK(read(fd, buf, sizeof(buf)) == -1 &&
			      errno == EAGAIN);
		send_byte(ready[1]);
		/* After: the byte, then end of file, for ever. */
		T_CHILD_CHECK(recv_byte(go[0], T_WAIT_MS));
		/* the cause record, then end of file */
		T_CHILD_CHECK(read(fd, buf, sizeof(buf)) > 0);
		T_CHILD_CHECK(read(fd, buf, sizeof(buf)) == 0);
		T_CHILD_CHECK(read(fd, buf, sizeof(buf)) == 0);
		_exit(0);
	}
	close(go[0]);
	close(ready[1]);
	ck_assert(recv_byte(ready[0], T_WAIT_MS));
	ck_assert(!cfd_token_triggered(tok));
	ck_assert_int_eq(revents_of(fd, POLLIN), 0);
	ck_assert_int_eq(cfd_token_trigger(tok), 1);
	send_byte(go[1]);
	ck_assert_child_ok(pid);
	close(go[1]);
	close(ready[0]);
	/* The holder drained it: still hung up, still a cancelled token to
	 * anyone who looks (POLLHUP needs no request). */
	ck_assert_int_eq(revents_of(fd, POLLIN), POLLHUP);
	ck_assert_int_eq(revents_of(fd, 0), POLLHUP);
	ck_assert_int_eq(cfd_token_import_fd(&imp, fd, "after-read", NULL), 0);
	ck_assert(cfd_token_triggered(imp));
	/* It took the record, so the cause is lost to the holders of this
	 * fd: they read "gone" (cfd_token_export_fd(3) says so). */
	ck_assert_int_eq(cfd_token_reason(imp), CFD_REASON_GONE);
	cfd_token_unref(imp);
	close(fd);
	cfd_token_unref(tok);
}
END_TEST

/* ---- across fork ---- */

START_TEST(test_cancel_child_process_inherited)
{
	struct cfd_token *tok;
	int fd, ready[2];
	pid_t pid;

	ck_assert_int_eq(cfd_token_new(&tok, "parent"), 0);
	fd = cfd_token_export_fd(tok, NULL, 0); /* export before fork */
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cfd_token *mine;

		close(ready[0]);
		T_CHILD_CHECK(
		    cfd_token_import_fd(&mine, fd, "from-parent", NULL) == 0);
		close(fd);
		T_CHILD_CHECK(!cfd_token_triggered(mine));
		send_byte(ready[1]);
		T_CHILD_CHECK(cfd_token_wait(mine, CFD_MSEC(T_WAIT_MS)) == 0);
		T_CHILD_CHECK(cfd_token_reason(mine) == CFD_REASON_MANUAL);
		T_CHILD_CHECK(cfd_token_remote(mine));
		_exit(0);
	}
	close(ready[1]);
	close(fd);
	ck_assert(recv_byte(ready[0], T_WAIT_MS));
	cfd_token_trigger(tok);
	ck_assert_child_ok(pid);
	close(ready[0]);
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_forked_child_sees_parent_trigger)
{
	struct cfd_token *tok;
	int fd, ready[2];
	pid_t pid;

	ck_assert_int_eq(cfd_token_new(&tok, "parent"), 0);
	fd = cfd_token_export_fd(tok, NULL, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct pollfd p = { .fd = fd, .events = 0 };

		/* It holds everything the parent had when it forked: the
		 * write end must not be among it, or the pipe would never
		 * hang up.  POLLHUP (not only the byte) proves it. */
		close(ready[0]);
		send_byte(ready[1]);
		T_CHILD_CHECK(poll(&p, 1, T_WAIT_MS) == 1);
		T_CHILD_CHECK(p.revents == POLLHUP);
		_exit(0);
	}
	close(ready[1]);
	ck_assert(recv_byte(ready[0], T_WAIT_MS));
	cfd_token_trigger(tok);
	/* While the child lives, the parent sees the hang-up too. */
	ck_assert(revents_of(fd, 0) & POLLHUP);
	ck_assert_child_ok(pid);
	close(ready[0]);
	close(fd);
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_forked_child_parent_frees_token)
{
	struct cfd_token *tok;
	int fd, ready[2];
	pid_t pid;

	ck_assert_int_eq(cfd_token_new(&tok, "owner"), 0);
	fd = cfd_token_export_fd(tok, NULL, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cfd_token *imp;

		close(ready[0]);
		T_CHILD_CHECK(cfd_token_import_fd(&imp, fd, "imp", NULL) == 0);
		send_byte(ready[1]);
		T_CHILD_CHECK(cfd_token_wait(imp, CFD_MSEC(T_WAIT_MS)) == 0);
		_exit(0);
	}
	close(ready[1]);
	ck_assert(recv_byte(ready[0], T_WAIT_MS));
	cfd_token_unref(tok); /* untriggered: the owner is gone */
	ck_assert_child_ok(pid);
	close(ready[0]);
	close(fd);
}
END_TEST

START_TEST(test_parent_token_in_child_echild)
{
	struct cfd_token *tok;
	int sv[2];
	pid_t pid;

	ck_assert_int_eq(cfd_token_new(&tok, "parent"), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		T_CHILD_CHECK(cfd_token_export_fd(tok, NULL, 0) == -ECHILD);
		T_CHILD_CHECK(cfd_token_export_fd(
				  tok, NULL, CFD_EXPORT_SHARED) == -ECHILD);
		T_CHILD_CHECK(cfd_token_send(sv[0], tok, NULL, 0) == -ECHILD);
		_exit(0);
	}
	ck_assert_child_ok(pid);
	close(sv[0]);
	close(sv[1]);
	cfd_token_unref(tok);
}
END_TEST

/* ---- over a Unix socket ---- */

START_TEST(test_cancel_child_process_socket)
{
	struct cfd_token *tok;
	int sv[2], ready[2];
	pid_t pid;

	ck_assert_int_eq(cfd_token_new(&tok, "sender"), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	/* Fork first: the child gets the token only through the socket. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cfd_watcher *dw;
		struct cfd_token *got;
		int before;

		close(sv[0]);
		close(ready[0]);
		T_CHILD_CHECK(cfd_watcher_default(&dw) == 0);
		cfd_watcher_unref(dw);
		before = t_count_fds();
		T_CHILD_CHECK(cfd_token_recv(&got, sv[1], "received", NULL) ==
			      0);
		/* The received fd is closed; the watcher watches a dup. */
		T_CHILD_CHECK(t_count_fds() == before + 1);
		T_CHILD_CHECK(!cfd_token_triggered(got));
		send_byte(ready[1]);
		T_CHILD_CHECK(cfd_token_wait(got, CFD_MSEC(T_WAIT_MS)) == 0);
		T_CHILD_CHECK(cfd_token_reason(got) == CFD_REASON_MANUAL);
		T_CHILD_CHECK(cfd_token_remote(got));
		T_CHILD_CHECK(strcmp(cfd_token_name(got), "received") == 0);
		cfd_token_unref(got);
		_exit(0);
	}
	close(sv[1]);
	close(ready[1]);
	ck_assert_int_eq(cfd_token_send(sv[0], tok, NULL, 0), 0);
	ck_assert(recv_byte(ready[0], T_WAIT_MS));
	ck_assert_int_eq(cfd_token_trigger(tok), 1);
	ck_assert_child_ok(pid);
	close(sv[0]);
	close(ready[0]);
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_shared_outside_write_from_child)
{
	struct cfd_watcher *w;
	struct cfd_token *tok, *kid;
	int fd;
	pid_t pid;

	ck_assert_int_eq(cfd_watcher_new(&w), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "shared"), 0);
	ck_assert_int_eq(cfd_token_child(&kid, tok, "kid"), 0);
	fd = cfd_token_export_fd(tok, w, CFD_EXPORT_SHARED);
	ck_assert_int_ge(fd, 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uint64_t one = 1;

		T_CHILD_CHECK(write(fd, &one, sizeof(one)) == sizeof(one));
		_exit(0);
	}
	ck_assert_child_ok(pid);
	/* The write is in; one dispatch completes the trigger. */
	ck_assert(!cfd_token_triggered(tok));
	ck_assert(t_fd_readable(cfd_watcher_fd(w), T_WAIT_MS));
	ck_assert_int_ge(cfd_watcher_dispatch(w), 1);
	ck_assert(cfd_token_triggered(tok));
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_FD);
	ck_assert(cfd_token_triggered(kid));
	ck_assert_int_eq(cfd_token_reason(kid), CFD_REASON_PARENT);
	ck_assert_ptr_eq(cfd_token_origin(kid), tok);
	close(fd);
	cfd_token_unref(kid);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* A callback that says it ran by writing a pipe. */
static void signal_call(struct cfd_token *tok, void *userdata)
{
	(void)tok;
	send_byte(*(int *)userdata);
}

START_TEST(test_shared_sent_and_written_by_receiver)
{
	struct cfd_registration *reg;
	struct cfd_watcher *w;
	struct cfd_token *tok;
	int sv[2], ran[2];
	pid_t pid;

	/* Fork first, and drive our side with a watcher of our own: the
	 * trigger completes inside our dispatch, so that nothing (the
	 * watcher's dup, the last reference to the token) is left to
	 * finish on another thread when the fixture counts fds. */
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cfd_token *got;
		uint64_t one = 1;
		char buf[CMSG_SPACE(sizeof(int))], byte;
		struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
		struct msghdr msg = { .msg_iov = &iov,
				      .msg_iovlen = 1,
				      .msg_control = buf,
				      .msg_controllen = sizeof(buf) };
		int efd;

		close(sv[0]);
		/* Receive it by hand, to write it: a shared export is the
		 * eventfd, and writing it is a real trigger. */
		T_CHILD_CHECK(recvmsg(sv[1], &msg, MSG_CMSG_CLOEXEC) == 1);
		T_CHILD_CHECK(CMSG_FIRSTHDR(&msg) != NULL);
		memcpy(&efd, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(int));
		T_CHILD_CHECK(t_fd_is_eventfd(efd));
		T_CHILD_CHECK(cfd_token_import_fd(&got, efd, "mine", NULL) ==
			      0);
		T_CHILD_CHECK(!cfd_token_triggered(got));
		T_CHILD_CHECK(write(efd, &one, sizeof(one)) == sizeof(one));
		/* ... which this side sees too. */
		T_CHILD_CHECK(cfd_token_wait(got, CFD_MSEC(T_WAIT_MS)) == 0);
		_exit(0);
	}
	close(sv[1]);
	ck_assert_int_eq(cfd_watcher_new(&w), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "shared"), 0);
	ck_assert_int_eq(pipe2(ran, O_CLOEXEC), 0);
	ck_assert_int_eq(
	    cfd_token_on_trigger(&reg, tok, signal_call, &ran[1], 0), 0);
	ck_assert_int_eq(cfd_token_send(sv[0], tok, w, CFD_EXPORT_SHARED), 0);
	ck_assert(tw_dispatch_until(w, tok));
	ck_assert_int_eq(cfd_token_reason(tok), CFD_REASON_FD);
	ck_assert_child_ok(pid);
	/* The callbacks ran too, inside that dispatch. */
	ck_assert(recv_byte(ran[0], 0));
	cfd_registration_free(reg);
	close(ran[0]);
	close(ran[1]);
	close(sv[0]);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* ---- import ---- */

START_TEST(test_import_parent_of_local_tokens)
{
	struct cfd_watcher *w;
	struct cfd_token *remote, *imp, *kid, *other, *chain, *grand;
	int fd, calls = 0;

	ck_assert_int_eq(cfd_watcher_new(&w), 0);
	ck_assert_int_eq(cfd_token_new(&remote, "remote"), 0);
	fd = cfd_token_export_fd(remote, NULL, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(cfd_token_import_fd(&imp, fd, "imp", w), 0);
	close(fd); /* not the importer's: it watches a dup */
	ck_assert_int_eq(cfd_token_child(&kid, imp, "kid"), 0);
	ck_assert_int_eq(cfd_token_child(&grand, kid, "grand"), 0);
	ck_assert_int_eq(cfd_token_new(&other, "other"), 0);
	ck_assert_int_eq(cfd_token_chain(&chain, other, imp), 0);
	ck_assert_str_eq(cfd_token_name(chain), "other:imp");
	ck_assert_int_eq(
	    cfd_token_on_trigger(NULL, grand, t_count_call, &calls, 0), 0);

	ck_assert_int_eq(cfd_token_trigger(remote), 1);
	ck_assert(tw_dispatch_until(w, imp));
	/* The exporter's cause, marked remote; the origin stays local. */
	ck_assert_int_eq(cfd_token_reason(imp), CFD_REASON_MANUAL);
	ck_assert(cfd_token_remote(imp));
	ck_assert(cfd_token_remote(grand));
	ck_assert_ptr_eq(cfd_token_origin(imp), imp);
	ck_assert(cfd_token_triggered(kid));
	ck_assert(cfd_token_triggered(grand));
	ck_assert(cfd_token_triggered(chain));
	ck_assert(!cfd_token_triggered(other)); /* never upwards */
	ck_assert_int_eq(cfd_token_reason(grand), CFD_REASON_PARENT);
	ck_assert_ptr_eq(cfd_token_origin(grand), imp);
	ck_assert_int_eq(calls, 1);

	cfd_token_unref(grand);
	cfd_token_unref(kid);
	cfd_token_unref(chain);
	cfd_token_unref(other);
	cfd_token_unref(imp);
	cfd_token_unref(remote);
	cfd_watcher_unref(w);
}
END_TEST

START_TEST(test_import_reexport)
{
	struct cfd_watcher *w;
	struct cfd_token *a, *b, *c;
	int fa, fb;

	ck_assert_int_eq(cfd_watcher_new(&w), 0);
	ck_assert_int_eq(cfd_token_new(&a, "a"), 0);
	fa = cfd_token_export_fd(a, NULL, 0);
	ck_assert_int_ge(fa, 0);
	ck_assert_int_eq(cfd_token_import_fd(&b, fa, "b", w), 0);
	fb = cfd_token_export_fd(b, w, 0);
	ck_assert_int_ge(fb, 0);
	ck_assert_int_eq(cfd_token_import_fd(&c, fb, "c", w), 0);
	cfd_token_trigger_code(a, 503, "drain");
	ck_assert(tw_dispatch_until(w, c));
	/* Forwarded through b unchanged: the cascade started at a. */
	ck_assert_int_eq(cfd_token_reason(c), CFD_REASON_MANUAL);
	ck_assert_int_eq(cfd_token_code(c), 503);
	ck_assert_str_eq(cfd_token_message(c), "drain");
	ck_assert_ptr_nonnull(strstr(cfd_token_origin_path(c), "]/a"));
	ck_assert_int_eq(cfd_token_origin_pid(c), getpid());
	close(fa);
	close(fb);
	cfd_token_unref(c);
	cfd_token_unref(b);
	cfd_token_unref(a);
	cfd_watcher_unref(w);
}
END_TEST

START_TEST(test_import_born_triggered)
{
	struct cfd_token *tok, *imp;
	int efd;
	uint64_t one = 1;

	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_ge(efd, 0);
	ck_assert_int_eq(write(efd, &one, sizeof(one)), sizeof(one));
	tok = (struct cfd_token *)0x1;
	ck_assert_int_eq(cfd_token_import_fd(&imp, efd, "readable", NULL), 0);
	ck_assert(cfd_token_triggered(imp));
	ck_assert_int_eq(cfd_token_reason(imp), CFD_REASON_FD);
	ck_assert_ptr_eq(tok, (struct cfd_token *)0x1);
	cfd_token_unref(imp);
	close(efd);
}
END_TEST

/* Any pollable fd: a pidfd, an eventfd, a socket whose peer leaves. */
START_TEST(test_import_any_pollable)
{
	struct cfd_watcher *w;
	struct cfd_token *by_pid, *by_efd, *by_sock;
	int go[2], sv[2], pfd, efd;
	uint64_t one = 1;
	pid_t pid;

	ck_assert_int_eq(cfd_watcher_new(&w), 0);
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(go[1]);
		T_CHILD_CHECK(recv_byte(go[0], T_WAIT_MS));
		_exit(0);
	}
	close(go[0]);
	pfd = t_pidfd_open(pid);
	ck_assert_int_ge(pfd, 0);
	ck_assert_int_eq(cfd_token_import_fd(&by_pid, pfd, "pid", w), 0);
	close(pfd);
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_eq(cfd_token_import_fd(&by_efd, efd, "efd", w), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	ck_assert_int_eq(cfd_token_import_fd(&by_sock, sv[0], "sock", w), 0);
	ck_assert(!cfd_token_triggered(by_pid));
	ck_assert(!cfd_token_triggered(by_efd));
	ck_assert(!cfd_token_triggered(by_sock));

	send_byte(go[1]); /* the child exits */
	ck_assert(tw_dispatch_until(w, by_pid));
	ck_assert(!cfd_token_triggered(by_efd));
	ck_assert_int_eq(write(efd, &one, sizeof(one)), sizeof(one));
	ck_assert(tw_dispatch_until(w, by_efd));
	close(sv[1]);
	ck_assert(tw_dispatch_until(w, by_sock));
	ck_assert_child_ok(pid);

	close(go[1]);
	close(efd);
	close(sv[0]);
	cfd_token_unref(by_pid);
	cfd_token_unref(by_efd);
	cfd_token_unref(by_sock);
	cfd_watcher_unref(w);
}
END_TEST

/* ---- a chain of three processes ---- */

/*
 * The first exports; the second imports that, exports its import and
 * forks the third, which imports the second's export.  The second drives
 * its own watcher from its own poll loop (no thread): a process that
 * forks must not have another thread allocating at that moment (a child
 * can inherit a malloc lock held; glibc guards against that, but the
 * sanitizers' allocator does not).
 */
START_TEST(test_chain_of_three_processes)
{
	struct cfd_token *first;
	int f1, ready[2];
	pid_t p2;

	ck_assert_int_eq(cfd_token_new(&first, "first"), 0);
	f1 = cfd_token_export_fd(first, NULL, 0);
	ck_assert_int_ge(f1, 0);
	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	p2 = fork();
	ck_assert_int_ge(p2, 0);
	if (p2 == 0) {
		struct cfd_watcher *w;
		struct cfd_token *second;
		int f2, st = 0, pfd;
		pid_t p3;

		close(ready[0]);
		T_CHILD_CHECK(cfd_watcher_new(&w) == 0);
		T_CHILD_CHECK(cfd_token_import_fd(&second, f1, "second", w) ==
			      0);
		close(f1);
		f2 = cfd_token_export_fd(second, w, 0);
		T_CHILD_CHECK(f2 >= 0);
		p3 = fork();
		T_CHILD_CHECK(p3 >= 0);
		if (p3 == 0) {
			/* The third: imports the second. */
			struct cfd_token *third;

			T_CHILD_CHECK(cfd_token_import_fd(&third, f2, "third",
							  NULL) == 0);
			close(f2);
			T_CHILD_CHECK(!cfd_token_triggered(third));
			send_byte(ready[1]);
			T_CHILD_CHECK(
			    cfd_token_wait(third, CFD_MSEC(T_WAIT_MS)) == 0);
			T_CHILD_CHECK(cfd_token_reason(third) ==
				      CFD_REASON_MANUAL);
			T_CHILD_CHECK(cfd_token_remote(third));
			_exit(0);
		}
		close(f2);
		close(ready[1]);
		pfd = t_pidfd_open(p3);
		T_CHILD_CHECK(pfd >= 0);
		/* Until the third exits: dispatch when the watcher says. */
		for (;;) {
			struct pollfd p[2] = {
				{ .fd = pfd, .events = POLLIN },
				{ .fd = cfd_watcher_fd(w), .events = POLLIN },
			};

			T_CHILD_CHECK(poll(p, 2, T_WAIT_MS) > 0);
			if (p[0].revents)
				break;
			T_CHILD_CHECK(cfd_watcher_dispatch(w) >= 0);
		}
		T_CHILD_CHECK(waitpid(p3, &st, 0) == p3);
		T_CHILD_CHECK(
		    cfd_token_triggered(second)); /* it went through */
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 2);
	}
	close(f1);
	close(ready[1]);
	ck_assert(recv_byte(ready[0], T_WAIT_MS)); /* the third is waiting */
	ck_assert_int_eq(cfd_token_trigger(first), 1);
	ck_assert_child_ok(p2);
	close(ready[0]);
	cfd_token_unref(first);
}
END_TEST

/* ---- through exec: CANCELFD ---- */

/* argv: --env-child READY_FD.  Run by exec from test_exec_from_env. */
static int env_child(int argc, char **argv)
{
	struct cfd_token *tok;
	char *env_fd;
	int ready, inherited;

	T_CHILD_CHECK(argc == 3);
	ready = atoi(argv[2]);
	env_fd = getenv(CFD_ENV);
	T_CHILD_CHECK(env_fd != NULL);
	inherited = atoi(env_fd);
	T_CHILD_CHECK(cfd_token_from_env(&tok, "from-env", NULL) == 0);
	T_CHILD_CHECK(getenv(CFD_ENV) == NULL); /* unset */
	T_CHILD_CHECK(fcntl(inherited, F_GETFD) == -1 &&
		      errno == EBADF); /* closed */
	T_CHILD_CHECK(!cfd_token_triggered(tok));
	send_byte(ready);
	close(ready);
	T_CHILD_CHECK(cfd_token_wait(tok, CFD_MSEC(T_WAIT_MS)) == 0);
	T_CHILD_CHECK(cfd_token_reason(tok) == CFD_REASON_MANUAL);
	T_CHILD_CHECK(cfd_token_remote(tok));
	cfd_token_unref(tok);
	return 0;
}

START_TEST(test_exec_from_env)
{
	struct cfd_token *tok;
	char num[16], rnum[16];
	int efd, ready[2];
	pid_t pid;

	ck_assert_int_eq(cfd_token_new(&tok, "exec-parent"), 0);
	efd = cfd_token_export_fd(tok, NULL, CFD_EXPORT_INHERIT);
	ck_assert_int_ge(efd, 0);
	ck_assert_int_eq(pipe(ready), 0); /* the write end crosses exec */
	fcntl(ready[0], F_SETFD, FD_CLOEXEC);
	snprintf(num, sizeof(num), "%d", efd);
	snprintf(rnum, sizeof(rnum), "%d", ready[1]);
	/* In the parent, before fork: setenv is not async-signal-safe. */
	ck_assert_int_eq(setenv(CFD_ENV, num, 1), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execl("/proc/self/exe", "test-export", "--env-child", rnum,
		      (char *)NULL);
		_exit(127);
	}
	unsetenv(CFD_ENV);
	close(efd);
	close(ready[1]);
	ck_assert(recv_byte(ready[0], T_WAIT_MS));
	ck_assert_int_eq(cfd_token_trigger(tok), 1);
	ck_assert_child_ok(pid);
	close(ready[0]);
	cfd_token_unref(tok);
}
END_TEST

/* ---- errors ---- */

START_TEST(test_export_errors)
{
	struct cfd_token *tok;

	ck_assert_int_eq(cfd_token_new(&tok, "t"), 0);
	ck_assert_int_eq(cfd_token_export_fd(NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(cfd_token_export_fd(tok, NULL, 1u << 7), -EINVAL);
	ck_assert_int_eq(cfd_token_send(-1, tok, NULL, 0), -EBADF);
	ck_assert_int_eq(cfd_token_send(0, NULL, NULL, 0), -EINVAL);
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_send_errors)
{
	struct cfd_token *tok;
	int sv[2], p[2], closed;

	ck_assert_int_eq(cfd_token_new(&tok, "t"), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	/* INHERIT means nothing for a passed fd. */
	ck_assert_int_eq(cfd_token_send(sv[0], tok, NULL, CFD_EXPORT_INHERIT),
			 -EINVAL);
	ck_assert_int_eq(cfd_token_send(sv[0], tok, NULL, 1u << 7), -EINVAL);
	/* A socket number not open, and not a socket: the export made for
	 * it is closed again (the fixture checks). */
	closed = closed_fd();
	ck_assert_int_eq(cfd_token_send(closed, tok, NULL, 0), -EBADF);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_send(p[1], tok, NULL, 0), -ENOTSOCK);
	/* The peer left. */
	close(sv[1]);
	ck_assert_int_eq(cfd_token_send(sv[0], tok, NULL, 0), -EPIPE);
	ck_assert(!cfd_token_triggered(tok));
	cfd_token_unref(tok);
	close(sv[0]);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* Send raw SCM_RIGHTS: n fds (or none), as a misbehaving peer would. */
static void send_fds(int sock, const int *fds, int n)
{
	char byte = 'x';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} ctl;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;

	memset(&ctl, 0, sizeof(ctl));
	if (n > 0) {
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
	}
	ck_assert_int_eq(sendmsg(sock, &msg, MSG_NOSIGNAL), 1);
}

/* With no fd free, a token in flight cannot be installed: -EMFILE, not
 * -EPROTO, and nothing leaks. */
static int recv_with_no_fd_free(void *arg)
{
	int sock = *(int *)arg;
	struct cfd_token *got = (struct cfd_token *)0x1;
	struct rlimit rl;
	int n;

	T_CHILD_CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	rl.rlim_cur = 32;
	T_CHILD_CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	while (dup(0) >= 0)
		;
	T_CHILD_CHECK(errno == EMFILE);
	n = cfd_token_recv(&got, sock, "x", NULL);
	T_CHILD_CHECK(n == -EMFILE);
	T_CHILD_CHECK(got == (struct cfd_token *)0x1);
	return 0;
}

START_TEST(test_recv_emfile)
{
	struct cfd_token *tok = t_new_token("t");
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	ck_assert_int_eq(cfd_token_send(sv[0], tok, NULL, 0), 0);
	ck_assert_int_eq(t_in_child(recv_with_no_fd_free, &sv[1]), 0);
	close(sv[0]);
	close(sv[1]);
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_recv_errors)
{
	struct cfd_token *tok, *got = (struct cfd_token *)0x1;
	int sv[2], p[2], fds[6], reg, sock[2];

	ck_assert_int_eq(cfd_token_new(&tok, "t"), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	ck_assert_int_eq(cfd_token_recv(NULL, sv[1], "x", NULL), -EINVAL);
	ck_assert_int_eq(cfd_token_recv(&got, -1, "x", NULL), -EBADF);

	/* Two fds: not one token.  Both are closed (the fixture checks). */
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	send_fds(sv[0], p, 2);
	ck_assert_int_eq(cfd_token_recv(&got, sv[1], "x", NULL), -EPROTO);

	/* More than the control buffer takes: truncated, -EPROTO. */
	for (int i = 0; i < 6; i++)
		fds[i] = p[0];
	send_fds(sv[0], fds, 6);
	ck_assert_int_eq(cfd_token_recv(&got, sv[1], "x", NULL), -EPROTO);

	/* A byte and no fd. */
	send_fds(sv[0], NULL, 0);
	ck_assert_int_eq(cfd_token_recv(&got, sv[1], "x", NULL), -EPROTO);

	/* One fd that is not a token fd: a regular file, a socket. */
	reg = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(reg, 0);
	send_fds(sv[0], &reg, 1);
	ck_assert_int_eq(cfd_token_recv(&got, sv[1], "x", NULL), -EBADFD);
	ck_assert_int_eq(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock), 0);
	send_fds(sv[0], &sock[0], 1);
	ck_assert_int_eq(cfd_token_recv(&got, sv[1], "x", NULL), -EBADFD);

	/* The peer closed without sending. */
	close(sv[0]);
	ck_assert_int_eq(cfd_token_recv(&got, sv[1], "x", NULL), -ECONNRESET);
	ck_assert_ptr_eq(got, (struct cfd_token *)0x1); /* untouched */

	close(sv[1]);
	close(p[0]);
	close(p[1]);
	close(reg);
	close(sock[0]);
	close(sock[1]);
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_import_errors)
{
	struct cfd_token *got = (struct cfd_token *)0x1;
	int p[2], closed;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(cfd_token_import_fd(NULL, p[0], "x", NULL), -EINVAL);
	ck_assert_int_eq(cfd_token_import_fd(&got, -1, "x", NULL), -EBADF);
	closed = closed_fd();
	ck_assert_int_eq(cfd_token_import_fd(&got, closed, "x", NULL), -EBADF);
	ck_assert_ptr_eq(got, (struct cfd_token *)0x1);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* Set CANCELFD, call cfd_token_from_env, check it is unset after. */
static int from_env_w(const char *value, struct cfd_token **ret,
		      struct cfd_watcher *w)
{
	int r;

	if (value)
		ck_assert_int_eq(setenv(CFD_ENV, value, 1), 0);
	else
		unsetenv(CFD_ENV);
	r = cfd_token_from_env(ret, "env", w);
	ck_assert_ptr_null(getenv(CFD_ENV));
	return r;
}

static int from_env(const char *value, struct cfd_token **ret)
{
	return from_env_w(value, ret, NULL);
}

static int from_env_fd_w(int fd, struct cfd_token **ret, struct cfd_watcher *w)
{
	char num[16];

	snprintf(num, sizeof(num), "%d", fd);
	return from_env_w(num, ret, w);
}

static int from_env_fd(int fd, struct cfd_token **ret)
{
	return from_env_fd_w(fd, ret, NULL);
}

START_TEST(test_from_env_errors)
{
	struct cfd_token *got = (struct cfd_token *)0x1;
	int closed, reg, sv[2];

	ck_assert_int_eq(from_env(NULL, &got), -ENOENT);
	ck_assert_int_eq(from_env("", &got), -EINVAL);
	ck_assert_int_eq(from_env("abc", &got), -EINVAL);
	ck_assert_int_eq(from_env("3x", &got), -EINVAL);
	ck_assert_int_eq(from_env("-1", &got), -EINVAL);
	ck_assert_int_eq(from_env("2147483648", &got), -EINVAL);
	ck_assert_int_eq(from_env("99999999999999999999999", &got), -EINVAL);

	/* Not open. */
	closed = closed_fd();
	ck_assert_int_eq(from_env_fd(closed, &got), -EBADF);

	/* Open, but not a token fd. */
	reg = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(reg, 0);
	ck_assert_int_eq(from_env_fd(reg, &got), -EBADFD);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	ck_assert_int_eq(from_env_fd(sv[0], &got), -EBADFD);
	ck_assert_ptr_eq(got, (struct cfd_token *)0x1); /* untouched */
	ck_assert_int_eq(cfd_token_from_env(NULL, "x", NULL), -EINVAL);

	/* A refused fd is left open: it is probably the program's own. */
	ck_assert(t_fd_is_open(reg));
	ck_assert(t_fd_is_open(sv[0]));
	close(reg);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_from_env_token_fds)
{
	struct cfd_watcher *w;
	struct cfd_token *tok, *got;
	int fd;

	ck_assert_int_eq(cfd_watcher_new(&w), 0);
	ck_assert_int_eq(cfd_token_new(&tok, "t"), 0);
	/* A watch-only export and a shared one are both accepted, and the
	 * inherited fd is closed. */
	fd = cfd_token_export_fd(tok, w, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(from_env_fd_w(fd, &got, w), 0);
	ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
	ck_assert(!cfd_token_triggered(got));
	cfd_token_unref(got);
	fd = cfd_token_export_fd(tok, w, CFD_EXPORT_SHARED);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(from_env_fd_w(fd, &got, w), 0);
	ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
	cfd_token_trigger(tok);
	ck_assert(tw_dispatch_until(w, got));
	ck_assert_int_eq(cfd_token_reason(got), CFD_REASON_FD);
	cfd_token_unref(got);
	cfd_token_unref(tok);
	cfd_watcher_unref(w);
}
END_TEST

/* ---- hardening: problems found while writing cancelfd-run ---- */

/* A trigger writes a byte into the export's pipe; with no reader left
 * (the process it was for has exited) that write raises SIGPIPE, and the
 * default action kills the exporting process. */
START_TEST(test_trigger_after_reader_left)
{
	struct cfd_token *tok;
	int fd;

	signal(SIGPIPE, SIG_DFL); /* the default: it would kill us */
	ck_assert_int_eq(cfd_token_new(&tok, "t"), 0);
	fd = cfd_token_export_fd(tok, NULL, 0);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(cfd_token_trigger(tok), 1); /* killed here today */
	cfd_token_unref(tok);
}
END_TEST

START_TEST(test_free_after_reader_left)
{
	struct cfd_token *tok;
	int fd;

	signal(SIGPIPE, SIG_DFL);
	ck_assert_int_eq(cfd_token_new(&tok, "t"), 0);
	fd = cfd_token_export_fd(tok, NULL, 0);
	ck_assert_int_ge(fd, 0);
	close(fd);
	cfd_token_unref(tok); /* killed here today */
}
END_TEST

/* A regular file is always "readable" to poll(): import is born
 * triggered instead of failing with -EPERM as documented. */
START_TEST(test_import_regular_file)
{
	struct cfd_token *got = NULL;
	int reg = open("/proc/self/status", O_RDONLY | O_CLOEXEC);

	ck_assert_int_ge(reg, 0);
	ck_assert_int_eq(cfd_token_import_fd(&got, reg, "x", NULL), -EPERM);
	cfd_token_unref(got);
	close(reg);
}
END_TEST

/* strtol() accepts leading blanks and a sign: " 5" and "+5" are not
 * decimal numbers and should be -EINVAL, not an fd lookup. */
START_TEST(test_from_env_strict_number)
{
	struct cfd_token *got = NULL;
	int p[2];
	char num[16];

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	snprintf(num, sizeof(num), " %d", p[0]);
	ck_assert_int_eq(from_env(num, &got), -EINVAL);
	snprintf(num, sizeof(num), "+%d", p[0]);
	ck_assert_int_eq(from_env(num, &got), -EINVAL);
	cfd_token_unref(got);
	if (fcntl(p[0], F_GETFD) >= 0)
		close(p[0]);
	close(p[1]);
}
END_TEST

/* A pipe's write end is never a token fd, yet it passes the S_ISFIFO
 * check; CANCELFD=1 with stdout a pipe then closes stdout. */
START_TEST(test_from_env_pipe_write_end)
{
	struct cfd_token *got = NULL;
	int p[2];

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	ck_assert_int_eq(from_env_fd(p[1], &got), -EBADFD);
	ck_assert_ptr_null(got);
	ck_assert(t_fd_is_open(p[1])); /* left alone */
	close(p[1]);
	close(p[0]);
}
END_TEST

/* A holder can open /proc/self/fd/N of its read end for writing (pipes
 * can be reopened through /proc), then write to fake a trigger, or hold
 * that write end and read the byte to hide one.  fchmod(read_end, 0) at
 * export stops it for holders without CAP_DAC_OVERRIDE.  Run as nobody
 * when the suite runs as root (root bypasses modes). */
START_TEST(test_holder_cannot_reopen_for_writing)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cfd_token *tok;
		char path[64];
		int fd, w;

		if (geteuid() == 0) {
			T_CHILD_CHECK(setgroups(0, NULL) == 0);
			T_CHILD_CHECK(setresgid(65534, 65534, 65534) == 0);
			T_CHILD_CHECK(setresuid(65534, 65534, 65534) == 0);
			/* Keep /proc/self ours after the uid change. */
			T_CHILD_CHECK(prctl(PR_SET_DUMPABLE, 1) == 0);
		}
		T_CHILD_CHECK(cfd_token_new(&tok, "t") == 0);
		fd = cfd_token_export_fd(tok, NULL, 0);
		T_CHILD_CHECK(fd >= 0);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		w = open(path, O_WRONLY | O_NONBLOCK);
		T_CHILD_CHECK(w < 0);
		_exit(0);
	}
	ck_assert_child_ok(pid);
}
END_TEST

static Suite *export_suite(void)
{
	Suite *s = suite_create("export");
	TCase *tc;

	tc = t_tcase("exports");
	tcase_add_test(tc, test_export_kinds);
	tcase_add_test(tc, test_export_trigger_hangs_up);
	tcase_add_test(tc, test_export_many_times_one_pipe);
	tcase_add_test(tc, test_export_freed_untriggered_hangs_up);
	suite_add_tcase(s, tc);

	tc = t_tcase("watch-only holder");
	tcase_add_test(tc, test_holder_write_fails);
	tcase_add_test(tc, test_holder_read_hides_nothing);
	suite_add_tcase(s, tc);

	tc = t_tcase("fork");
	tcase_add_test(tc, test_cancel_child_process_inherited);
	tcase_add_test(tc, test_forked_child_sees_parent_trigger);
	tcase_add_test(tc, test_forked_child_parent_frees_token);
	tcase_add_test(tc, test_parent_token_in_child_echild);
	tcase_add_test(tc, test_chain_of_three_processes);
	suite_add_tcase(s, tc);

	tc = t_tcase("socket");
	tcase_add_test(tc, test_cancel_child_process_socket);
	tcase_add_test(tc, test_shared_sent_and_written_by_receiver);
	suite_add_tcase(s, tc);

	tc = t_tcase("shared");
	tcase_add_test(tc, test_shared_outside_write_from_child);
	suite_add_tcase(s, tc);

	tc = t_tcase("import");
	tcase_add_test(tc, test_import_parent_of_local_tokens);
	tcase_add_test(tc, test_import_reexport);
	tcase_add_test(tc, test_import_born_triggered);
	tcase_add_test(tc, test_import_any_pollable);
	suite_add_tcase(s, tc);

	tc = t_tcase("exec");
	tcase_add_test(tc, test_exec_from_env);
	tcase_add_test(tc, test_from_env_token_fds);
	suite_add_tcase(s, tc);

	tc = t_tcase("errors");
	tcase_add_test(tc, test_export_errors);
	tcase_add_test(tc, test_send_errors);
	tcase_add_test(tc, test_recv_errors);
	tcase_add_test(tc, test_recv_emfile);
	tcase_add_test(tc, test_import_errors);
	tcase_add_test(tc, test_from_env_errors);
	suite_add_tcase(s, tc);

	tc = t_tcase("hardening");
	tcase_add_test(tc, test_trigger_after_reader_left);
	tcase_add_test(tc, test_free_after_reader_left);
	tcase_add_test(tc, test_import_regular_file);
	tcase_add_test(tc, test_from_env_strict_number);
	tcase_add_test(tc, test_from_env_pipe_write_end);
	tcase_add_test(tc, test_holder_cannot_reopen_for_writing);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--env-child") == 0)
		return env_child(argc, argv);
	/* SIGPIPE keeps its default action: an export whose reader has
	 * gone must not raise it in this process. */
	return t_run_suite(export_suite());
}
