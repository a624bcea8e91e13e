/* SPDX-License-Identifier: MIT */
#ifndef CFD_BENCH_H
#define CFD_BENCH_H

/*
 * cancelfd-bench: cancelfd measured against the raw kernel primitives and
 * the libraries users would otherwise pick, in the same run.
 *
 * Every row holds two sets of samples, the library's and its baseline's,
 * taken in interleaved rounds.  The ratio of a row is computed per round
 * (this round's library median over this round's baseline median) and the
 * row reports the median of those ratios: the host has slow phases lasting
 * tens of seconds, and a per-round ratio does not move with them.
 *
 * Beside some ratio rows, an "own cost" row gives the library's own cost in
 * absolute terms, from the same rounds of the same run (row_own()).
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "bench-config.h"

/* ---- options ---- */

struct opts {
	bool quick;	   /* every row briefly: proves the tool works */
	const char *json;  /* --json FILE */
	const char *only;  /* --only GROUP[,GROUP]: for development */
	const char *argv0; /* to start the single-threaded helper */
};
extern struct opts opt;

/* true when the group should run (see --only). */
bool group_enabled(const char *group);
/* Progress on stderr (the table goes to stdout). */
void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print a message and exit: the tool's own setup failed. */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Pick the default or the --quick value. */
#define Q(quick_value, default_value) \
	(opt.quick ? (quick_value) : (default_value))

static inline int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- samples and rows (report.c) ---- */

struct samples {
	double *v;
	size_t n, cap;
};

void samples_add(struct samples *s, double x);
/* Quantile q (0..1) of v[from..to). */
double samples_quantile(const struct samples *s, size_t from, size_t to,
			double q);

enum row_kind {
	ROW_TIME,	/* ns per unit of work; ratio = cfd / baseline */
	ROW_THROUGHPUT, /* ns per op, shown as throughput ratio base / cfd */
	ROW_ABSOLUTE,	/* no baseline: the target bounds the value itself */
	ROW_OWN,	/* the library's own cost: row_own() */
};

enum row_target {
	TARGET_NONE, /* informative: no target */
	TARGET_LE,   /* ratio (or value) <= target */
	TARGET_GE,   /* ratio >= target */
	TARGET_LT,   /* ratio < target: "ahead" */
};

struct row;

/* unit: "ns" (printed in ns or us), "us" (own-cost rows) or "B". */
struct row *row_new(const char *group, const char *name, const char *unit,
		    const char *baseline, enum row_kind kind,
		    enum row_target op, double target);
/* The baseline is missing (e.g. "GLib not found"): no ratio. */
void row_unavailable(struct row *r, const char *why);
/* A footnote printed under the table. */
void row_note(struct row *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A condition of the target beyond the ratio failed (e.g. a syscall). */
void row_fail(struct row *r, const char *why);
bool row_has_baseline(const struct row *r);

enum own_how {
	OWN_CFD,	/* per round: the library's median */
	OWN_ABOVE_BASE, /* per round: the library's median - the baseline's */
};

/*
 * An "own cost" row in the group of `of` (rows print in the order they are
 * made: make it right after `of`): the library's own cost in absolute
 * terms, computed from the rounds of `of` (the same samples, so the same
 * run): per round a value as `how` says, and the median over rounds.
 * unit: of's, or "us" for an "ns" row.  The row's status is always
 * "info"; the budget (in unit, "budget <= 36 ns" in the target column)
 * comes from the issue, measured on another host, and is shown, never
 * judged.
 */
struct row *row_own(const struct row *of, const char *name, const char *unit,
		    enum own_how how, double budget);

void row_round_begin(struct row *r);
void row_cfd(struct row *r, double v);
void row_base(struct row *r, double v);
void row_round_end(struct row *r);

void report_table(FILE *f);
/* A JSON string literal, escaped. */
void json_str(FILE *f, const char *s);
int report_json(const char *path);

/* ---- the machine (machine.c) ---- */

void machine_print(FILE *f);
void machine_json(FILE *f);

/* ---- system helpers (sys.c) ---- */

/* The two CPUs used for cross-CPU rows (the same one on a 1-CPU box). */
extern int cpu_a, cpu_b;
void sys_init(void);
/* Pin the calling thread to one CPU, or back to every allowed CPU. */
void pin_self(int cpu);
void unpin_self(void);
/* Start a thread that sleeps until exit, so that the process is
 * multi-threaded (libstdc++ behaves differently then: see stopcb.cpp). */
void start_idle_thread(void);
/* glibc's __libc_single_threaded: 1, 0, or -1 if unknown. */
int process_single_threaded(void);
long rss_bytes(void);
int fds_open(void);
/* How many more fds this process can open, keeping a margin. */
int fds_available(void);
int nofile_limit(void);
void spin_for_ns(int64_t ns);

/* ---- the C++ baseline (stopcb.cpp, and the helper process) ---- */

/* Measured in this process (which has started a thread). */
bool cxx_available(void);
double cxx_fanout(size_t n, size_t trees);
double cxx_life(size_t k);
const char *cxx_compiler(void);

/* Measured in a helper process that never starts a thread. */
int helper_start(void);
double helper_fanout(size_t n, size_t trees);
bool helper_single_threaded(void);
void helper_stop(void);
int helper_main(void);
#define HELPER_ARG "--stopcb-helper"

/* ---- GLib's GCancellable (side-glib.c) ---- */

bool glib_available(void);
const char *glib_version(void);
double glib_life(size_t k);	 /* g_cancellable_new + g_object_unref */
double glib_link_life(size_t k); /* + connect/disconnect on a parent */
double glib_fan(size_t n, size_t trees); /* linked fan-out, per child */
void *glib_new_with_fd(int *fd);
void glib_cancel(void *c);
void glib_free(void *c);

/* ---- the rows ---- */

void rows_memory(void);
void rows_life(void);
void rows_fanout(void);
void rows_fanout_fd(void);
void rows_wake(void);
void rows_uring(void);
void rows_timer(void);
void rows_export(void);
/* Runs tools/bench/python-bench.py with the module of this build. */
void rows_python(void);

/* Shared by rows-fanout.c and rows-life.c */
size_t trees_for(size_t n);

#endif
