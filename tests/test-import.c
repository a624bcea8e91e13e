/* SPDX-License-Identifier: MIT */
/*
 * Description: what crosses a process boundary with a token (lib/import.c,
 * lib/export.c, lib/wire.c): the cause of an exported token (reason, code,
 * message, origin path and pid, trigger time) and its deadline, across
 * fork, exec's environment and a Unix socket; "gone" when the exporter
 * frees the token or dies untriggered; several holders of one export;
 * and an exporter that is hostile or broken (garbage, half a record, a
 * record and no hang-up, no record ever, text that is not printable),
 * an importer stopped while its exporter triggers, a fork of an importer,
 * and EMFILE.  The cause record's layout is the one cfd_token_export_fd(3)
 * documents.
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers-watcher.h"
#include "helpers.h"

/* ---- the cause record, as cfd_token_export_fd(3) documents it ---- */

struct record {
	unsigned char b[8192];
	size_t n;
};

static void record(struct record *r, int type, int reason, int signo,
		   int32_t code, int32_t pid, int64_t age, const char *path,
		   size_t lp, const char *msg, size_t lm)
{
	uint16_t size = (uint16_t)(32 + lp + lm), l16;

	memset(r->b, 0, 32);
	memcpy(r->b, "CFD\1", 4);
	memcpy(r->b + 4, &size, 2);
	r->b[6] = (unsigned char)type;
	r->b[7] = (unsigned char)reason;
	r->b[8] = (unsigned char)signo;
	l16 = (uint16_t)lp;
	memcpy(r->b + 10, &l16, 2);
	l16 = (uint16_t)lm;
	memcpy(r->b + 12, &l16, 2);
	memcpy(r->b + 16, &code, 4);
	memcpy(r->b + 20, &pid, 4);
	memcpy(r->b + 24, &age, 8);
	memcpy(r->b + 32, path, lp);
	memcpy(r->b + 32 + lp, msg, lm);
	r->n = 32 + lp + lm;
}

/* A pipe the test plays the exporter of: it imports the read end. */
static struct cfd_token *import_pipe(int p[2], struct cfd_watcher *w)
{
	struct cfd_token *t = NULL;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	ck_assert_int_eq(cfd_token_import_fd(&t, p[0], "imp", w), 0);
	return t;
}

/* ---- the cause crosses ---- */

START_TEST(test_cause_crosses_a_socket)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *job = t_new_token("job"), *fetch, *imp, *kid;
	char want[64];
	int sv[2];

	fetch = t_new_child(job, "fetch");
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	ck_assert_int_eq(cfd_token_send(sv[0], fetch, NULL, 0), 0);
	ck_assert_int_eq(cfd_token_recv(&imp, sv[1], "imp", w), 0);
	kid = t_new_child(imp, "kid");
	ck_assert_int_eq(cfd_token_trigger_code(job, 499, "client left"), 1);
	ck_assert(tw_dispatch_until(w, kid));
	/* the cause of the cascade over there: job's, a manual trigger */
	ck_assert_int_eq(cfd_token_reason(imp), CFD_REASON_MANUAL);
	ck_assert_int_eq(cfd_token_code(kid), 499);
	ck_assert_str_eq(cfd_token_message(kid), "client left");
	ck_assert(cfd_token_remote(imp) && cfd_token_remote(kid));
	ck_assert_int_eq(cfd_token_origin_pid(kid), getpid());
	snprintf(want, sizeof(want), "%s[%d]/job",
		 program_invocation_short_name, (int)getpid());
	ck_assert_str_eq(cfd_token_origin_path(kid), want);
	/* the local origin is the import, a token of this process */
	ck_assert_ptr_eq(cfd_token_origin(kid), imp);
	ck_assert_int_eq(cfd_token_reason(kid), CFD_REASON_PARENT);
	/* it triggered over there when job did: not later than now */
	ck_assert_int_le(cfd_token_trigger_time(imp), t_now_ns());
	ck_assert_int_ge(cfd_token_trigger_time(imp),
			 cfd_token_trigger_time(job) - CFD_MSEC(50));
	cfd_token_unref(kid);
	cfd_token_unref(imp);
	cfd_token_unref(fetch);
	cfd_token_unref(job);
	close(sv[0]), close(sv[1]);
	cfd_watcher_unref(w);
}
END_TEST

/* The origin path names the process and the origin's ancestry, root
 * first; a tree too deep to fit gives up its top, marked "...". */
START_TEST(test_origin_path_names_the_ancestry)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *job = t_new_token("job");
	struct cfd_token *fetch = t_new_child(job, "fetch"), *t, *imp;
	char want[64], name[32];
	const char *path;
	int fd;

	fd = cfd_token_export_fd(fetch, NULL, 0);
	ck_assert_int_eq(cfd_token_import_fd(&imp, fd, "imp", w), 0);
	ck_assert_int_eq(cfd_token_trigger_code(fetch, 504, "slow"), 1);
	ck_assert(tw_dispatch_until(w, imp));
	snprintf(want, sizeof(want), "%s[%d]/job:fetch",
		 program_invocation_short_name, (int)getpid());
	ck_assert_str_eq(cfd_token_origin_path(imp), want);
	cfd_token_unref(imp);
	close(fd);

	/* 200 levels of 12-character names: more than a path holds */
	t = cfd_token_ref(job);
	for (int i = 0; i < 200; i++) {
		struct cfd_token *c;

		snprintf(name, sizeof(name), "level-%06d", i);
		c = t_new_child(t, name);
		cfd_token_unref(t);
		t = c;
	}
	fd = cfd_token_export_fd(t, NULL, 0);
	ck_assert_int_eq(cfd_token_import_fd(&imp, fd, "imp", w), 0);
	cfd_token_trigger(t);
	ck_assert(tw_dispatch_until(w, imp));
	path = cfd_token_origin_path(imp);
	snprintf(want, sizeof(want),
		 "%s[%d]/...:", program_invocation_short_name, (int)getpid());
	ck_assert_msg(strncmp(path, want, strlen(want)) == 0, "%s", path);
	ck_assert_str_eq(path + strlen(path) - 25, "level-000198:level-000199");
	ck_assert_uint_le(strlen(path), 1024);
	cfd_token_unref(imp);
	close(fd);
	cfd_token_unref(t);
	cfd_token_unref(fetch);
	cfd_token_unref(job);
	cfd_watcher_unref(w);
}
END_TEST

struct fork_arg {
	int fd, ready, go;
	pid_t parent;
};

/* In the child: import what the parent exported before the fork, wait
 * for its trigger, check the cause. */
static int child_imports(void *arg)
{
	struct fork_arg *a = arg;
	struct cfd_token *t;
	char want[64];

	T_CHILD_CHECK(cfd_token_import_fd(&t, a->fd, "from-parent", NULL) == 0);
	/* the deadline the parent's token had at the fork */
	T_CHILD_CHECK(cfd_token_remaining(t) > 0 &&
		      cfd_token_remaining(t) <= CFD_SEC(60));
	T_CHILD_CHECK(write(a->ready, "r", 1) == 1);
	T_CHILD_CHECK(cfd_token_wait(t, CFD_MSEC(T_WAIT_MS)) == 0);
	T_CHILD_CHECK(cfd_token_reason(t) == CFD_REASON_SIGNAL);
	T_CHILD_CHECK(cfd_token_signal(t) == SIGUSR1);
	T_CHILD_CHECK(cfd_token_origin_pid(t) == a->parent);
	snprintf(want, sizeof(want), "]/root");
	T_CHILD_CHECK(strstr(cfd_token_origin_path(t), want) != NULL);
	cfd_token_unref(t);
	return 0;
}

START_TEST(test_cause_and_deadline_cross_fork)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *root = t_new_token("root");
	struct fork_arg a = { .parent = getpid() };
	int ready[2], fd, st;
	pid_t pid;
	char c;

	ck_assert_int_eq(cfd_source_add_timeout(NULL, root, w, CFD_SEC(60)), 0);
	fd = cfd_token_export_fd(root, NULL, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	a.fd = fd;
	a.ready = ready[1];
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(child_imports(&a));
	ck_assert(t_fd_readable(ready[0], T_WAIT_MS));
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	/* a trigger as a signal source would make it: the signal's number
	 * crosses too */
	ck_assert_int_eq(cfd_token_trigger_async_safe(root, w, SIGUSR1), 1);
	/* triggered now; its exports are written by the watcher */
	ck_assert(t_fd_readable(cfd_watcher_fd(w), T_WAIT_MS));
	cfd_watcher_dispatch(w);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %#x", st);
	close(fd);
	close(ready[0]), close(ready[1]);
	cfd_token_unref(root);
	cfd_watcher_unref(w);
}
END_TEST

/* A deadline that comes with the fd wins over the one noted at the fork,
 * "none" included: here the parent's timeout went after the fork. */
struct resend_arg {
	int sock;
};

static int child_receives(void *arg)
{
	struct resend_arg *a = arg;
	struct cfd_token *t;
	char c;

	T_CHILD_CHECK(read(a->sock, &c, 1) == 1); /* the parent freed it */
	T_CHILD_CHECK(cfd_token_recv(&t, a->sock, "got", NULL) == 0);
	T_CHILD_CHECK(cfd_token_deadline(t) == CFD_NO_DEADLINE);
	cfd_token_unref(t);
	return 0;
}

START_TEST(test_sent_deadline_wins_over_the_fork)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *t = t_new_token("t");
	struct cfd_source *src;
	struct resend_arg a;
	int sv[2], fd, st;
	pid_t pid;

	ck_assert_int_eq(cfd_source_add_timeout(&src, t, w, CFD_SEC(60)), 0);
	fd = cfd_token_export_fd(t, NULL, 0); /* the pipe, before the fork */
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	a.sock = sv[1];
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(child_receives(&a));
	cfd_source_free(src);
	ck_assert_int_eq(cfd_token_deadline(t), CFD_NO_DEADLINE);
	ck_assert_int_eq(write(sv[0], "x", 1), 1);
	ck_assert_int_eq(cfd_token_send(sv[0], t, NULL, 0), 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %#x", st);
	close(fd);
	close(sv[0]), close(sv[1]);
	cfd_token_unref(t);
	cfd_watcher_unref(w);
}
END_TEST

/* Through exec's environment: CANCELFD and CANCELFD_DEADLINE. */
START_TEST(test_deadline_crosses_the_environment)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *t = t_new_token("t"), *got;
	int64_t at = t_now_ns() + CFD_SEC(45), d;
	int fd;

	ck_assert_int_eq(cfd_source_add_deadline(NULL, t, w, at), 0);
	fd = cfd_token_export_env(t, NULL);
	ck_assert_int_ge(fd, 0);
	ck_assert_ptr_nonnull(getenv(CFD_ENV));
	ck_assert_ptr_nonnull(getenv(CFD_ENV_DEADLINE));
	/* exec keeps it: no FD_CLOEXEC */
	ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	ck_assert_int_eq(cfd_token_from_env(&got, "got", w), 0);
	ck_assert_ptr_null(getenv(CFD_ENV));
	ck_assert_ptr_null(getenv(CFD_ENV_DEADLINE)); /* read once */
	d = cfd_token_deadline(got);
	ck_assert(d <= at && d > at - CFD_SEC(5));
	cfd_token_unref(got);
	cfd_token_unref(t);

	/* no deadline: none passed on, not even a stale one */
	t = t_new_token("none");
	ck_assert_int_eq(setenv(CFD_ENV_DEADLINE, "1@1", 1), 0);
	fd = cfd_token_export_env(t, NULL);
	ck_assert_ptr_null(getenv(CFD_ENV_DEADLINE));
	ck_assert_int_eq(cfd_token_from_env(&got, "got", w), 0);
	ck_assert_int_eq(cfd_token_deadline(got), CFD_NO_DEADLINE);
	cfd_token_unref(got);

	/* a budget written by hand, nanoseconds from now */
	fd = cfd_token_export_env(t, NULL);
	ck_assert_int_eq(setenv(CFD_ENV_DEADLINE, "2000000000", 1), 0);
	at = t_now_ns() + CFD_SEC(2);
	ck_assert_int_eq(cfd_token_from_env(&got, "got", w), 0);
	d = cfd_token_deadline(got);
	ck_assert(d >= at && d < at + CFD_SEC(1));
	cfd_token_unref(got);

	/* garbage is no deadline */
	fd = cfd_token_export_env(t, NULL);
	ck_assert_int_eq(setenv(CFD_ENV_DEADLINE, "soon", 1), 0);
	ck_assert_int_eq(cfd_token_from_env(&got, "got", w), 0);
	ck_assert_int_eq(cfd_token_deadline(got), CFD_NO_DEADLINE);
	ck_assert_ptr_null(getenv(CFD_ENV_DEADLINE));
	cfd_token_unref(got);
	cfd_token_unref(t);
	cfd_watcher_unref(w);
}
END_TEST

START_TEST(test_deadline_crosses_a_socket)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *t = t_new_token("t"), *got, *none = t_new_token("n");
	int64_t at = t_now_ns() + CFD_SEC(45), d;
	int sv[2];

	ck_assert_int_eq(cfd_source_add_deadline(NULL, t, w, at), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	ck_assert_int_eq(cfd_token_send(sv[0], t, NULL, 0), 0);
	ck_assert_int_eq(cfd_token_recv(&got, sv[1], "got", w), 0);
	d = cfd_token_deadline(got);
	ck_assert(d <= at && d > at - CFD_SEC(5));
	cfd_token_unref(got);
	ck_assert_int_eq(cfd_token_send(sv[0], none, NULL, 0), 0);
	ck_assert_int_eq(cfd_token_recv(&got, sv[1], "got", w), 0);
	ck_assert_int_eq(cfd_token_deadline(got), CFD_NO_DEADLINE);
	cfd_token_unref(got);
	close(sv[0]), close(sv[1]);
	cfd_token_unref(none);
	cfd_token_unref(t);
	cfd_watcher_unref(w);
}
END_TEST

/* Every holder of one export reads the whole cause: no import takes it
 * from another. */
START_TEST(test_every_holder_reads_the_cause)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *t = t_new_token("shared-out"), *imp[3];
	int fd = cfd_token_export_fd(t, NULL, 0), again;

	ck_assert_int_ge(fd, 0);
	again = cfd_token_export_fd(t, NULL, 0); /* the same pipe */
	ck_assert_int_ge(again, 0);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(cfd_token_import_fd(&imp[i], fd, "i", w), 0);
	ck_assert_int_eq(cfd_token_import_fd(&imp[2], again, "j", w), 0);
	cfd_token_trigger_msg(t, "to all");
	for (int i = 0; i < 3; i++) {
		ck_assert(tw_dispatch_until(w, imp[i]));
		ck_assert_str_eq(cfd_token_message(imp[i]), "to all");
		ck_assert(cfd_token_remote(imp[i]));
	}
	/* one imported afterwards, too */
	{
		struct cfd_token *late;

		ck_assert_int_eq(cfd_token_import_fd(&late, fd, "late", w), 0);
		ck_assert(cfd_token_triggered(late));
		ck_assert_str_eq(cfd_token_message(late), "to all");
		cfd_token_unref(late);
	}
	for (int i = 0; i < 3; i++)
		cfd_token_unref(imp[i]);
	close(fd), close(again);
	cfd_token_unref(t);
	cfd_watcher_unref(w);
}
END_TEST

/* ---- gone is not cancelled ---- */

static int child_exports_then_dies(void *arg)
{
	struct cfd_token *t;
	int sock = *(int *)arg;

	T_CHILD_CHECK(cfd_token_new(&t, "doomed") == 0);
	T_CHILD_CHECK(cfd_token_send(sock, t, NULL, 0) == 0);
	/* dies with the token pending: SIGKILL, no chance to say a word */
	raise(SIGKILL);
	return 1;
}

START_TEST(test_gone_when_the_exporter_dies)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *imp;
	int sv[2], st;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
			 0);
	st = t_in_child(child_exports_then_dies, &sv[0]);
	ck_assert_int_eq(st, 128 + SIGKILL);
	ck_assert_int_eq(cfd_token_recv(&imp, sv[1], "imp", w), 0);
	ck_assert(tw_dispatch_until(w, imp));
	ck_assert_int_eq(cfd_token_reason(imp), CFD_REASON_GONE);
	ck_assert(cfd_token_remote(imp));
	ck_assert_int_eq(cfd_token_origin_pid(imp), 0); /* unknown */
	ck_assert_ptr_null(cfd_token_origin_path(imp));
	cfd_token_unref(imp);
	close(sv[0]), close(sv[1]);
	cfd_watcher_unref(w);
}
END_TEST

START_TEST(test_gone_when_the_token_is_freed)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *t = t_new_token("dropped"), *imp;
	int fd = cfd_token_export_fd(t, NULL, 0);

	ck_assert_int_eq(cfd_token_import_fd(&imp, fd, "imp", w), 0);
	cfd_token_unref(t);
	ck_assert(tw_dispatch_until(w, imp));
	ck_assert_int_eq(cfd_token_reason(imp), CFD_REASON_GONE);
	ck_assert_int_eq(cfd_token_origin_pid(imp), getpid());
	ck_assert_ptr_nonnull(strstr(cfd_token_origin_path(imp), "]/dropped"));
	cfd_token_unref(imp);
	close(fd);
	cfd_watcher_unref(w);
}
END_TEST

/* ---- a hostile or broken exporter ---- */

START_TEST(test_garbage_is_an_fd_trigger)
{
	struct cfd_watcher *w = tw_new_watcher();
	int p[2];
	struct cfd_token *t = import_pipe(p, w);

	ck_assert_int_eq(write(p[1], "not a record at all, really not", 31),
			 31);
	close(p[1]);
	ck_assert(tw_dispatch_until(w, t));
	ck_assert_int_eq(cfd_token_reason(t), CFD_REASON_FD);
	ck_assert(!cfd_token_remote(t));
	ck_assert_ptr_null(cfd_token_message(t));
	cfd_token_unref(t);
	close(p[0]);
	cfd_watcher_unref(w);
}
END_TEST

/* Half a record, and the pipe kept open: readable is triggered (as for
 * any watcher of the fd), with no cause. */
START_TEST(test_half_a_record_is_an_fd_trigger)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct record r;
	int p[2];
	struct cfd_token *t = import_pipe(p, w);

	record(&r, 1, CFD_REASON_TIMEOUT, 0, 0, 1, 0, "x[1]/y", 6, "m", 1);
	ck_assert_int_eq(write(p[1], r.b, r.n / 2), (ssize_t)(r.n / 2));
	ck_assert(tw_dispatch_until(w, t));
	ck_assert_int_eq(cfd_token_reason(t), CFD_REASON_FD);
	ck_assert(!cfd_token_remote(t));
	cfd_token_unref(t);
	close(p[0]), close(p[1]);
	cfd_watcher_unref(w);
}
END_TEST

/* A whole record and no hang-up: the cause counts. */
START_TEST(test_record_without_hangup)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct record r;
	int p[2];
	struct cfd_token *t = import_pipe(p, w);

	record(&r, 1, CFD_REASON_CONDITION, 0, 42, 777, CFD_SEC(2),
	       "peer[777]/job", 13, "over quota", 10);
	ck_assert_int_eq(write(p[1], r.b, r.n), (ssize_t)r.n);
	ck_assert(tw_dispatch_until(w, t));
	ck_assert_int_eq(cfd_token_reason(t), CFD_REASON_CONDITION);
	ck_assert_int_eq(cfd_token_code(t), 42);
	ck_assert_int_eq(cfd_token_origin_pid(t), 777);
	ck_assert_str_eq(cfd_token_origin_path(t), "peer[777]/job");
	ck_assert_str_eq(cfd_token_message(t), "over quota");
	/* it triggered two seconds before it was written */
	ck_assert_int_le(cfd_token_trigger_time(t), t_now_ns() - CFD_SEC(1));
	cfd_token_unref(t);
	close(p[0]), close(p[1]);
	cfd_watcher_unref(w);
}
END_TEST

/* No record ever, the pipe kept open: pending, however long. */
START_TEST(test_open_pipe_without_record_stays_pending)
{
	struct cfd_watcher *w = tw_new_watcher();
	int p[2];
	struct cfd_token *t = import_pipe(p, w);

	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(cfd_watcher_dispatch(w), 0);
		ck_assert(!t_fd_readable(cfd_watcher_fd(w), 10));
	}
	ck_assert(!cfd_token_triggered(t));
	close(p[1]);
	ck_assert(tw_dispatch_until(w, t));
	ck_assert_int_eq(cfd_token_reason(t), CFD_REASON_GONE);
	cfd_token_unref(t);
	close(p[0]);
	cfd_watcher_unref(w);
}
END_TEST

/* Text from the other side is made printable: control characters and
 * invalid UTF-8 become '?', valid UTF-8 stays. */
START_TEST(test_text_is_made_printable)
{
	struct cfd_watcher *w = tw_new_watcher();
	static const char msg[] = "a\033[2Jb\xff\xc3\xa9\n";
	static const char path[] = "p\x01[3]/\xe2\x82";
	struct record r;
	int p[2];
	struct cfd_token *t = import_pipe(p, w);

	record(&r, 1, CFD_REASON_MANUAL, 0, 0, 3, 0, path, sizeof(path) - 1,
	       msg, sizeof(msg) - 1);
	ck_assert_int_eq(write(p[1], r.b, r.n), (ssize_t)r.n);
	close(p[1]);
	ck_assert(tw_dispatch_until(w, t));
	ck_assert_str_eq(cfd_token_message(t), "a?[2Jb?\xc3\xa9?");
	ck_assert_str_eq(cfd_token_origin_path(t), "p?[3]/??");
	cfd_token_unref(t);
	close(p[0]);
	cfd_watcher_unref(w);
}
END_TEST

/* Lengths that lie, sizes past the limit, unknown types and reasons: an
 * fd trigger with no cause, never a crash, never a cause made up. */
START_TEST(test_lying_records_are_fd_triggers)
{
	struct cfd_watcher *w = tw_new_watcher();
	char big[5000];
	struct record r;
	int p[2];

	memset(big, 'x', sizeof(big));
	for (int c = 0; c < 6; c++) {
		struct cfd_token *t = import_pipe(p, w);
		uint16_t v;

		record(&r, 1, CFD_REASON_MANUAL, 0, 0, 1, 0, "a", 1, "b", 1);
		switch (c) {
		case 0: /* path length past the record */
			v = 200;
			memcpy(r.b + 10, &v, 2);
			break;
		case 1: /* size says more than was written */
			v = (uint16_t)(r.n + 10);
			memcpy(r.b + 4, &v, 2);
			break;
		case 2: /* a message longer than the limit */
			record(&r, 1, CFD_REASON_MANUAL, 0, 0, 1, 0, "a", 1,
			       big, 4000);
			break;
		case 3: /* an unknown type */
			r.b[6] = 9;
			break;
		case 4: /* an unknown reason */
			r.b[7] = 200;
			break;
		case 5: /* another version */
			r.b[3] = 2;
			break;
		}
		ck_assert_int_eq(write(p[1], r.b, r.n), (ssize_t)r.n);
		close(p[1]);
		ck_assert(tw_dispatch_until(w, t));
		ck_assert_msg(cfd_token_reason(t) == CFD_REASON_FD,
			      "case %d: reason %d", c, cfd_token_reason(t));
		ck_assert(!cfd_token_remote(t));
		cfd_token_unref(t);
		close(p[0]);
	}
	cfd_watcher_unref(w);
}
END_TEST

/* ---- an importer stopped, forked, out of fds ---- */

static int stopped_importer(void *arg)
{
	struct fork_arg *a = arg;
	struct cfd_token *t;

	T_CHILD_CHECK(cfd_token_import_fd(&t, a->fd, "stopped", NULL) == 0);
	T_CHILD_CHECK(write(a->ready, "r", 1) == 1);
	T_CHILD_CHECK(cfd_token_wait(t, CFD_MSEC(T_WAIT_MS)) == 0);
	T_CHILD_CHECK(cfd_token_reason(t) == CFD_REASON_MANUAL);
	T_CHILD_CHECK(strcmp(cfd_token_message(t), "while you slept") == 0);
	cfd_token_unref(t);
	return 0;
}

START_TEST(test_importer_stopped_while_the_exporter_triggers)
{
	struct cfd_token *t = t_new_token("t");
	struct fork_arg a;
	int ready[2], st;
	pid_t pid;
	char c;

	a.fd = cfd_token_export_fd(t, NULL, 0);
	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	a.ready = ready[1];
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(stopped_importer(&a));
	ck_assert(t_fd_readable(ready[0], T_WAIT_MS));
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	ck_assert_int_eq(kill(pid, SIGSTOP), 0);
	ck_assert_int_eq(waitpid(pid, &st, WUNTRACED), pid);
	ck_assert(WIFSTOPPED(st));
	/* the trigger does not wait for a reader: the pipe takes it */
	ck_assert_int_eq(cfd_token_trigger_msg(t, "while you slept"), 1);
	ck_assert_int_eq(kill(pid, SIGCONT), 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %#x", st);
	close(a.fd);
	close(ready[0]), close(ready[1]);
	cfd_token_unref(t);
}
END_TEST

struct forked_importer {
	struct cfd_token *imp;
	int fd;
};

static int in_forked_importer(void *arg)
{
	struct forked_importer *f = arg;
	struct cfd_token *again;

	/* the parent's import is the parent's */
	T_CHILD_CHECK(cfd_token_reason(f->imp) == -ECHILD);
	/* the fd is not: it imports again, and sees the cause */
	T_CHILD_CHECK(cfd_token_import_fd(&again, f->fd, "again", NULL) == 0);
	T_CHILD_CHECK(cfd_token_triggered(again));
	T_CHILD_CHECK(cfd_token_code(again) == 9);
	cfd_token_unref(again);
	return 0;
}

START_TEST(test_fork_of_an_importer)
{
	struct cfd_watcher *w = tw_new_watcher();
	struct cfd_token *t = t_new_token("t");
	struct forked_importer f;

	f.fd = cfd_token_export_fd(t, NULL, 0);
	ck_assert_int_eq(cfd_token_import_fd(&f.imp, f.fd, "imp", w), 0);
	cfd_token_trigger_code(t, 9, NULL);
	ck_assert_int_eq(t_in_child(in_forked_importer, &f), 0);
	ck_assert(tw_dispatch_until(w, f.imp));
	ck_assert_int_eq(cfd_token_code(f.imp), 9);
	cfd_token_unref(f.imp);
	close(f.fd);
	cfd_token_unref(t);
	cfd_watcher_unref(w);
}
END_TEST

/* Out of fds: the import fails whole (-EMFILE, nothing left behind); an
 * import that cannot make the pipe it reads the cause through triggers
 * with no cause (CFD_REASON_FD) rather than take the record from other
 * holders. */
static int import_without_fds(void *arg)
{
	int fd = *(int *)arg, p[2], last = -1;
	struct cfd_watcher *w;
	struct cfd_token *t = (struct cfd_token *)0x1;
	struct rlimit rl;

	T_CHILD_CHECK(cfd_watcher_new(&w) == 0);
	T_CHILD_CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	rl.rlim_cur = 64;
	T_CHILD_CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	while ((p[0] = dup(0)) >= 0)
		last = p[0];
	T_CHILD_CHECK(cfd_token_import_fd(&t, fd, "x", w) == -EMFILE);
	T_CHILD_CHECK(t == (struct cfd_token *)0x1);
	/* one fd free: enough for the import's dup, not for a pipe */
	close(last);
	T_CHILD_CHECK(cfd_token_import_fd(&t, fd, "x", w) == 0);
	T_CHILD_CHECK(write(*((int *)arg + 1), "g", 1) == 1);
	for (int i = 0; i < 1000 && !cfd_token_triggered(t); i++) {
		struct pollfd pf = { cfd_watcher_fd(w), POLLIN, 0 };

		poll(&pf, 1, 10);
		cfd_watcher_dispatch(w);
	}
	T_CHILD_CHECK(cfd_token_reason(t) == CFD_REASON_FD);
	return 0;
}

START_TEST(test_emfile_while_importing)
{
	struct cfd_token *t = t_new_token("t");
	int arg[2], go[2];
	pid_t pid;
	int st;
	char c;

	arg[0] = cfd_token_export_fd(t, NULL, 0);
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	arg[1] = go[1];
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(import_without_fds(arg));
	ck_assert(t_fd_readable(go[0], T_WAIT_MS));
	ck_assert_int_eq(read(go[0], &c, 1), 1);
	cfd_token_trigger_msg(t, "lost for want of an fd");
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %#x", st);
	close(arg[0]);
	close(go[0]), close(go[1]);
	cfd_token_unref(t);
}
END_TEST

/* The import's fire reads its fd outside the watcher's lock while a
 * trigger of the import in another thread detaches its source: the fd must
 * outlive the fire (TSan saw the close race the read). */
static void spin_ns(int64_t ns)
{
	int64_t end = t_now_ns() + ns;

	while (t_now_ns() < end)
		;
}

static void *trigger_exporter(void *arg)
{
	cfd_token_trigger(arg);
	return NULL;
}

START_TEST(test_import_triggered_while_its_fire_reads)
{
	int rounds = T_TSAN ? 300 : 3000;
	struct cfd_watcher *w = tw_new_watcher();

	ck_assert_int_eq(cfd_watcher_start(w), 0);
	for (int i = 0; i < rounds; i++) {
		struct cfd_token *t = t_new_token("t"), *imp;
		int fd = cfd_token_export_fd(t, NULL, 0);
		pthread_t th;

		ck_assert_int_eq(cfd_token_import_fd(&imp, fd, "imp", w), 0);
		close(fd);
		ck_assert_int_eq(pthread_create(&th, NULL, trigger_exporter, t),
				 0);
		/* into the watcher's wake-up, now and then */
		spin_ns((int64_t)(i % 64) * 1000);
		cfd_token_trigger_code(imp, 1, "here");
		pthread_join(th, NULL);
		/* whichever won, the cause is whole */
		ck_assert(cfd_token_reason(imp) == CFD_REASON_MANUAL);
		ck_assert(cfd_token_remote(imp) ? cfd_token_code(imp) == 0
						: cfd_token_code(imp) == 1);
		cfd_token_unref(imp);
		cfd_token_unref(t);
	}
	cfd_watcher_unref(w);
}
END_TEST

static Suite *import_suite(void)
{
	Suite *s = suite_create("import");
	TCase *tc;

	tc = t_tcase("the cause crosses");
	tcase_add_test(tc, test_cause_crosses_a_socket);
	tcase_add_test(tc, test_origin_path_names_the_ancestry);
	tcase_add_test(tc, test_cause_and_deadline_cross_fork);
	tcase_add_test(tc, test_deadline_crosses_the_environment);
	tcase_add_test(tc, test_deadline_crosses_a_socket);
	tcase_add_test(tc, test_sent_deadline_wins_over_the_fork);
	tcase_add_test(tc, test_every_holder_reads_the_cause);
	suite_add_tcase(s, tc);

	tc = t_tcase("gone");
	tcase_add_test(tc, test_gone_when_the_exporter_dies);
	tcase_add_test(tc, test_gone_when_the_token_is_freed);
	suite_add_tcase(s, tc);

	tc = t_tcase("hostile exporter");
	tcase_add_test(tc, test_garbage_is_an_fd_trigger);
	tcase_add_test(tc, test_half_a_record_is_an_fd_trigger);
	tcase_add_test(tc, test_record_without_hangup);
	tcase_add_test(tc, test_open_pipe_without_record_stays_pending);
	tcase_add_test(tc, test_text_is_made_printable);
	tcase_add_test(tc, test_lying_records_are_fd_triggers);
	suite_add_tcase(s, tc);

	tc = t_tcase("importer");
	tcase_add_test(tc, test_importer_stopped_while_the_exporter_triggers);
	tcase_add_test(tc, test_fork_of_an_importer);
	tcase_add_test(tc, test_import_triggered_while_its_fire_reads);
	tcase_add_test(tc, test_emfile_while_importing);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(import_suite());
}
