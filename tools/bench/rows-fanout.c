/* SPDX-License-Identifier: MIT */
/*
 * Fan-out rows: a root triggered, its N descendants reached.
 *
 * fd-less: N children without fds (and, as an extra row, N callbacks)
 * against one std::stop_source with N std::stop_callbacks, measured both
 * in a helper process that never started a thread and in this process,
 * which has (libstdc++ then pays a futex call per callback); and against
 * GCancellable linked with connect + cancel.  With fds: N children that
 * each have an eventfd against N raw eventfd writes.  For N=1, own-cost
 * rows give a trigger's cost in ns: with one fd-less child, and with one
 * child with an fd above that child's eventfd write.
 *
 * For small N, ceil(4096/N) trees are triggered per sample, so that a
 * sample covers at least 4096 children (research/limits.md section 3).
 * Only the triggers are timed; building and freeing the trees is not.
 */
#define _GNU_SOURCE
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cancelfd.h>

#include "bench.h"

size_t trees_for(size_t n)
{
	return (4096 + n - 1) / n;
}

static void *grow(void *p, size_t *cap, size_t n, size_t size)
{
	if (n <= *cap)
		return p;
	free(p);
	p = calloc(n, size);
	if (!p)
		die("out of memory");
	*cap = n;
	return p;
}

static struct cfd_token **roots_of(size_t n)
{
	static struct cfd_token **v;
	static size_t cap;

	return v = grow(v, &cap, n, sizeof(*v));
}

static struct cfd_token **kids_of(size_t n)
{
	static struct cfd_token **v;
	static size_t cap;

	return v = grow(v, &cap, n, sizeof(*v));
}

static struct cfd_registration **regs_of(size_t n)
{
	static struct cfd_registration **v;
	static size_t cap;

	return v = grow(v, &cap, n, sizeof(*v));
}

static int *fds_of(size_t n)
{
	static int *v;
	static size_t cap;

	return v = grow(v, &cap, n, sizeof(*v));
}

static size_t counter;

static void count_cb(struct cfd_token *tok, void *arg)
{
	(void)tok;
	(void)arg;
	counter++;
}

enum fan_kind { FAN_CHILDREN, FAN_CALLBACKS, FAN_FD_CHILDREN };

/* ns per descendant of cfd_token_trigger() over `trees` roots. */
static double cfd_fan(size_t n, size_t trees, enum fan_kind kind)
{
	struct cfd_token **root = roots_of(trees), **kid = kids_of(n * trees);
	struct cfd_registration **reg =
	    regs_of(kind == FAN_CALLBACKS ? n * trees : 1);
	int64_t t0, t1;

	for (size_t t = 0; t < trees; t++) {
		if (cfd_token_new(&root[t], "") < 0)
			die("cfd_token_new failed");
		for (size_t i = 0; i < n; i++) {
			size_t k = t * n + i;
			int r;

			if (kind == FAN_CALLBACKS)
				r = cfd_token_on_trigger(&reg[k], root[t],
							 count_cb, NULL, 0);
			else
				r = cfd_token_child(&kid[k], root[t], "");
			if (r < 0)
				die("building the tree: %s", strerror(-r));
			if (kind == FAN_FD_CHILDREN &&
			    (r = cfd_token_fd(kid[k])) < 0)
				die("cfd_token_fd: %s", strerror(-r));
		}
	}
	counter = 0;
	t0 = now_ns();
	for (size_t t = 0; t < trees; t++)
		cfd_token_trigger(root[t]);
	t1 = now_ns();

	/* Check that the work was done, then take the trees down. */
	if (kind == FAN_CALLBACKS && counter != n * trees)
		die("fan-out: %zu callbacks ran, not %zu", counter, n * trees);
	if (kind == FAN_FD_CHILDREN) {
		struct pollfd p = { .fd = cfd_token_fd(kid[0]),
				    .events = POLLIN };

		if (poll(&p, 1, 0) != 1)
			die("fan-out: a child's fd is not readable");
	}
	for (size_t k = 0; k < n * trees; k++) {
		if (kind == FAN_CALLBACKS) {
			cfd_registration_free(reg[k]);
		} else {
			if (!cfd_token_triggered(kid[k]))
				die("fan-out: a child was not triggered");
			cfd_token_unref(kid[k]);
		}
	}
	for (size_t t = 0; t < trees; t++)
		cfd_token_unref(root[t]);
	return (double)(t1 - t0) / (double)(n * trees);
}

/* ns per eventfd of n * trees raw eventfd writes, in the order the
 * library's fan-out visits them (newest child first). */
static double raw_fan(size_t n, size_t trees)
{
	int *fd = fds_of(n * trees);
	uint64_t one = 1;
	int64_t t0, t1;

	for (size_t k = 0; k < n * trees; k++)
		if ((fd[k] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
			die("eventfd failed");
	t0 = now_ns();
	for (size_t t = 0; t < trees; t++)
		for (size_t i = n; i-- > 0;)
			if (write(fd[t * n + i], &one, sizeof(one)) < 0)
				die("eventfd write failed");
	t1 = now_ns();
	for (size_t k = 0; k < n * trees; k++)
		close(fd[k]);
	return (double)(t1 - t0) / (double)(n * trees);
}

/* ---- fd-less ---- */

struct fan_rows {
	struct row *st, *mt, *cb, *glib;
};

/* mt: also take the threaded C++ sample (a futex call per callback makes
 * it ~100x slower than the rest at N = 1M). */
static void fan_round(struct fan_rows *fr, size_t n, size_t trees, int i,
		      bool record, bool mt)
{
	double v[5] = { NAN, NAN, NAN, NAN, NAN };
	/* One sample of each; which goes first rotates with the round. */
	for (int s = 0; s < 5; s++) {
		switch ((s + i) % 5) {
		case 0:
			v[0] = cfd_fan(n, trees, FAN_CHILDREN);
			break;
		case 1:
			v[1] = cfd_fan(n, trees, FAN_CALLBACKS);
			break;
		case 2:
			v[2] = mt ? cxx_fanout(n, trees) : NAN;
			break;
		case 3:
			v[3] = helper_fanout(n, trees);
			break;
		default:
			v[4] = fr->glib ? glib_fan(n, trees) : NAN;
			break;
		}
	}
	if (!record)
		return;
	row_round_begin(fr->st);
	row_round_begin(fr->mt);
	row_round_begin(fr->cb);
	row_cfd(fr->st, v[0]);
	row_cfd(fr->mt, v[0]);
	row_cfd(fr->cb, v[1]);
	if (!isnan(v[3])) {
		row_base(fr->st, v[3]);
		row_base(fr->cb, v[3]);
	}
	if (!isnan(v[2]))
		row_base(fr->mt, v[2]);
	row_round_end(fr->st);
	row_round_end(fr->mt);
	row_round_end(fr->cb);
	if (fr->glib) {
		row_round_begin(fr->glib);
		row_cfd(fr->glib, v[0]);
		if (!isnan(v[4]))
			row_base(fr->glib, v[4]);
		row_round_end(fr->glib);
	}
}

void rows_fanout(void)
{
	static const size_t ns[] = { 1, 100, 10000, 1000000 };
	char name[80];

	for (size_t j = 0; j < sizeof(ns) / sizeof(ns[0]); j++) {
		size_t n = ns[j], trees = trees_for(n);
		bool big = n >= 1000000;
		int rounds = big ? Q(1, 7) : Q(3, 40);
		int mt_rounds = big ? Q(0, 2) : rounds;
		struct fan_rows fr;

		snprintf(name, sizeof(name), "fan-out fd-less N=%zu, per child",
			 n);
		fr.st = row_new("fanout", name, "ns",
				"stop_callback, 1-thread process", ROW_TIME,
				TARGET_LE, 2.0);
		snprintf(name, sizeof(name), "  same vs threaded process");
		fr.mt = row_new("fanout", name, "ns",
				"stop_callback, threaded process", ROW_TIME,
				TARGET_NONE, 0);
		snprintf(name, sizeof(name),
			 "  N=%zu callbacks, per callback (extra)", n);
		fr.cb = row_new("fanout", name, "ns",
				"stop_callback, 1-thread process", ROW_TIME,
				TARGET_NONE, 0);
		/* N=1: the row's numerator is a whole trigger. */
		if (n == 1)
			row_own(fr.st, "  own cost: trigger, one fd-less child",
				"ns", OWN_CFD, 15);
		fr.glib = NULL;
		if (n <= 10000) {
			snprintf(name, sizeof(name),
				 "GLib: linked fan-out N=%zu, per child", n);
			fr.glib = row_new("fanout", name, "ns",
					  "GCancellable connect->cancel",
					  ROW_TIME, TARGET_LT, 1.0);
			if (!glib_available()) {
				row_unavailable(fr.glib, "GLib not found");
				fr.glib = NULL;
			}
		}
		if (!cxx_available()) {
			row_unavailable(fr.st, "no C++ compiler");
			row_unavailable(fr.mt, "no C++ compiler");
			row_unavailable(fr.cb, "no C++ compiler");
		} else if (!helper_single_threaded()) {
			row_note(fr.st, "the helper process was not "
					"single-threaded: baseline not valid");
			row_fail(fr.st, "baseline not single-threaded");
		}
		if (j == 0)
			row_note(fr.mt,
				 "this process is %s: libstdc++ makes a futex "
				 "call per callback in request_stop()",
				 process_single_threaded() == 0
				     ? "multi-threaded"
				     : "NOT multi-threaded (unexpected)");
		if (n == 1)
			row_note(fr.st,
				 "N < 4096: ceil(4096/N) trees per sample, "
				 "each a whole trigger / request_stop()");
		if (mt_rounds < rounds && cxx_available()) {
			if (mt_rounds)
				row_note(fr.mt,
					 "%d of the %d rounds: each "
					 "sample makes N futex calls",
					 mt_rounds, rounds);
			else
				row_unavailable(fr.mt, "skipped in --quick");
		}
		if (!(big && opt.quick))
			fan_round(&fr, n, trees, 0, false, !big); /* warm-up */
		for (int i = 0; i < rounds; i++)
			fan_round(&fr, n, trees, i, true, i < mt_rounds);
	}
}

/* ---- with fds ---- */

void rows_fanout_fd(void)
{
	size_t max = (size_t)fds_available();
	size_t ns[] = { 1, 100, 10000, max }, prev = 0;
	char name[80];

	for (size_t j = 0; j < sizeof(ns) / sizeof(ns[0]); j++) {
		size_t n = ns[j], trees = trees_for(n);
		int rounds = n >= 10000 ? Q(1, 15) : Q(3, 40);
		struct row *r;

		if (n > max || n <= prev)
			continue;
		prev = n;
		if (trees * n > max)
			trees = max / n;
		snprintf(name, sizeof(name),
			 "fan-out with fds N=%zu%s, per child", n,
			 n == max ? " (fd limit)" : "");
		r = row_new("fanout-fd", name, "ns", "raw eventfd write",
			    ROW_TIME, TARGET_LE, 1.2);
		/* N=1: a whole trigger, less the write of the same round. */
		if (n == 1)
			row_own(r,
				"  own cost: trigger, one child with an fd, "
				"above its write",
				"ns", OWN_ABOVE_BASE, 80);
		if (n == max)
			row_note(r,
				 "RLIMIT_NOFILE %d: N is what the fd limit "
				 "leaves",
				 nofile_limit());
		if (!(opt.quick && n >= 10000)) {
			cfd_fan(n, trees, FAN_FD_CHILDREN); /* warm-up */
			raw_fan(n, trees);
		}
		for (int i = 0; i < rounds; i++) {
			double c, b;

			if (i % 2) {
				b = raw_fan(n, trees);
				c = cfd_fan(n, trees, FAN_FD_CHILDREN);
			} else {
				c = cfd_fan(n, trees, FAN_FD_CHILDREN);
				b = raw_fan(n, trees);
			}
			row_round_begin(r);
			row_cfd(r, c);
			row_base(r, b);
			row_round_end(r);
		}
	}
}
