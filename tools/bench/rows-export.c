/* SPDX-License-Identifier: MIT */
/*
 * Rows of what crosses a process boundary, and of the deadline.
 *
 * A trigger with one watch-only export against a trigger with none plus
 * one write of the same size to a pipe: what the export adds beyond the
 * write it cannot avoid (building the cause record, hanging the pipe up).
 * K tokens per sample, each exported once (the holder's fd is this
 * process's, as a forked child's would be), so that a sample is long
 * enough to time; only the triggers (and the baseline's writes) are
 * timed.
 *
 * cfd_token_deadline() of a token 10 levels below the one with the
 * deadline: no baseline (the promise is "no system call", which
 * tests/test-cause.c checks under seccomp); the row bounds the value.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include <cancelfd.h>

#include "bench.h"

#define K 256

/* The size of the record a trigger of a token named "" writes here: a
 * 32-byte head and the path "comm[pid]/". */
static size_t record_size(void)
{
	return 32 + strlen(program_invocation_short_name) + 2 + 10 + 2;
}

/* ns per token: trigger K tokens, each with one watch-only export. */
static double cfd_export_trigger(void)
{
	struct cfd_token *tok[K];
	int fd[K];
	int64_t t0, t1;

	for (int i = 0; i < K; i++) {
		if (cfd_token_new(&tok[i], "") < 0)
			die("cfd_token_new failed");
		fd[i] = cfd_token_export_fd(tok[i], NULL, 0);
		if (fd[i] < 0)
			die("cfd_token_export_fd: %s", strerror(-fd[i]));
	}
	t0 = now_ns();
	for (int i = 0; i < K; i++)
		cfd_token_trigger(tok[i]);
	t1 = now_ns();
	for (int i = 0; i < K; i++) {
		struct pollfd p = { .fd = fd[i], .events = POLLIN };

		if (poll(&p, 1, 0) != 1 || !(p.revents & POLLHUP))
			die("export: the pipe did not hang up");
		close(fd[i]);
		cfd_token_unref(tok[i]);
	}
	return (double)(t1 - t0) / K;
}

/* ns per token: trigger K tokens without exports, each followed by a write
 * of a record's size to a pipe of its own. */
static double raw_trigger_and_write(void)
{
	static char buf[256];
	struct cfd_token *tok[K];
	int p[K][2];
	size_t len = record_size();
	int64_t t0, t1;

	for (int i = 0; i < K; i++) {
		if (cfd_token_new(&tok[i], "") < 0)
			die("cfd_token_new failed");
		if (pipe2(p[i], O_CLOEXEC | O_NONBLOCK) < 0)
			die("pipe2 failed");
	}
	t0 = now_ns();
	for (int i = 0; i < K; i++) {
		cfd_token_trigger(tok[i]);
		if (write(p[i][1], buf, len) != (ssize_t)len)
			die("pipe write failed");
	}
	t1 = now_ns();
	for (int i = 0; i < K; i++) {
		close(p[i][0]);
		close(p[i][1]);
		cfd_token_unref(tok[i]);
	}
	return (double)(t1 - t0) / K;
}

/* ns per call of cfd_token_deadline() 10 levels below a deadline. */
static double deadline_deep(void)
{
	enum { CALLS = 100000 };
	struct cfd_watcher *w;
	struct cfd_token *t[11];
	volatile int64_t sink = 0;
	int64_t t0, t1;

	if (cfd_watcher_new(&w) < 0 || cfd_token_new(&t[0], "") < 0 ||
	    cfd_source_add_timeout(NULL, t[0], w, CFD_SEC(3600)) < 0)
		die("deadline: setting up failed");
	for (int i = 1; i <= 10; i++)
		if (cfd_token_child(&t[i], t[i - 1], "") < 0)
			die("cfd_token_child failed");
	t0 = now_ns();
	for (int i = 0; i < CALLS; i++)
		sink += cfd_token_deadline(t[10]);
	t1 = now_ns();
	(void)sink;
	for (int i = 10; i >= 0; i--)
		cfd_token_unref(t[i]);
	cfd_watcher_unref(w);
	return (double)(t1 - t0) / CALLS;
}

void rows_export(void)
{
	int rounds = Q(3, 40);
	struct row *r, *d;

	r = row_new("export", "trigger with one watch-only export", "ns",
		    "trigger without + pipe write", ROW_TIME, TARGET_LE, 1.5);
	row_note(r,
		 "%d tokens per sample; the baseline writes a record's "
		 "size (%zu bytes) to an empty pipe after each trigger",
		 K, record_size());
	if (fds_available() < 3 * K) {
		row_unavailable(r, "too few fds");
	} else {
		cfd_export_trigger(); /* warm-up */
		raw_trigger_and_write();
		for (int i = 0; i < rounds; i++) {
			double c, b;

			if (i % 2) {
				b = raw_trigger_and_write();
				c = cfd_export_trigger();
			} else {
				c = cfd_export_trigger();
				b = raw_trigger_and_write();
			}
			row_round_begin(r);
			row_cfd(r, c);
			row_base(r, b);
			row_round_end(r);
		}
	}

	d = row_new("export", "cfd_token_deadline, 10 levels deep", "ns", "",
		    ROW_ABSOLUTE, TARGET_LE, 100);
	deadline_deep(); /* warm-up */
	for (int i = 0; i < Q(3, 20); i++) {
		row_round_begin(d);
		row_cfd(d, deadline_deep());
		row_round_end(d);
	}
}
