/* SPDX-License-Identifier: MIT */
/*
 * Description: a random API-sequence fuzzer.  Four threads draw random
 * operations of the public API and run them on shared tables of tokens,
 * callback registrations, sources and pipes, so that the library's calls
 * meet each other on the same objects; every operation checks what
 * cancelfd(7) promises, and the end checks that nothing leaked.
 *
 * What runs: tokens made, referenced and released (new, child, chain,
 * any-of, all-of over pending and triggered parents, imports); triggers,
 * with and without a message; the state read every way (triggered, check,
 * short waits, the fd polled, the cause); callbacks with a handle, without
 * one (holding the last reference to their token, or none), with and
 * without CFD_CALLBACK_NO_INLINE, whose bodies free their own
 * registration, trigger other tokens, register callbacks, add sources,
 * drop the last reference to their own token; registrations freed from
 * other threads; timeouts (0-50 us, up to 2 ms, and long), deadlines
 * (past and future), conditions and fds (pipes written and closed at
 * random) on the default watcher, on watchers with their own thread
 * (stopped and restarted now and then) and on watchers dispatched by the
 * fuzzer's threads, freed with handles at any time from any fuzzer
 * thread; exports imported in the same process, directly and over a
 * socketpair, shared ones written to.
 *
 * What is checked (a failure prints the invariant and the seed, and
 * aborts):
 * - one winner: exactly one trigger call returns 1 for a token whose
 *   reason is manual, none for any other reason;
 * - the graph: once a parent's trigger has completed, its children,
 *   chains and any-of tokens read triggered, and an all-of once all of its
 *   parents have; a token made under such a parent is born triggered;
 * - callbacks run at most once, never after cfd_registration_free()
 *   returned, never while it returns (it waits), and always, by the time
 *   the winning trigger returns, if they were registered before it and
 *   not freed;
 * - fds: once a trigger has completed (its call returned 1, or one of the
 *   callbacks it ran has been called, or the token was born under a parent
 *   whose trigger had completed, or its origin's trigger has completed),
 *   the fd that cfd_token_fd() gives is readable at once, whoever made it
 *   and whenever; a readable fd means a triggered token; the fd never
 *   changes;
 * - the cause: valid, consistent with the origin and with the kind of
 *   token, and never changing once read;
 * - imports trigger (within 10 s) once their exporter has triggered or,
 *   for a watch-only export, been freed;
 * - no fd leaked once everything is freed and the own watchers are gone,
 *   no memory leaked (LeakSanitizer, under ASan).
 *
 * A "completed" trigger is what the fuzzer knows to be over, not merely
 * seen: a token reads triggered from the first instruction of its
 * trigger, before its fd is written (cfd_token_trigger(3)).
 *
 * What is not done, because the documentation forbids it (a deadlock, not
 * a bug): callbacks never wait, so they free no registration but their
 * own and no source (cfd_source_free() waits for a fire in progress, and
 * a fire is in progress from the moment its dispatch queued it); what a
 * callback evicts from a table is freed later by a fuzzer thread.  The
 * fuzzer's own locks are held only around its own data and
 * cfd_token_ref(), never across a call that can run a callback or wait.
 *
 * Environment: CFD_FUZZ_SEED=0x... replays a seed (thread i draws its
 * operations from splitmix64 seeded with seed + i; the interleaving is
 * the machine's, so a replay repeats the operations, not the timing),
 * CFD_FUZZ_SECONDS the duration (default 5), CFD_FUZZ_OPS a number of
 * operations after which to stop (default: none).
 */
#define _GNU_SOURCE
#include <cancelfd.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define NTHREADS 4
#define NSLOTS 16    /* tokens */
#define NHOT 3	     /* slots picked more often, so that threads collide */
#define NREGSLOTS 16 /* callback registrations with a handle */
#define NSRCSLOTS 16 /* source handles */
#define NPIPES 4
#define NWATCHERS 5 /* 0: default, 1-2: own thread, 3-4: dispatched here */
#define MAXPAR 4
#define MAXRREGS 8   /* registrations tracked per token */
#define MAXANON 4    /* handle-less, reference-less ones tracked per token */
#define MAXLINKS 4   /* imports tracked per exported token */
#define LIVE_CAP 512 /* live tokens before the threads reap some */
#define CB_DEPTH_MAX 6
#define ANON_BITS (1u << 24)
#define GRAVE 1024
#define WAIT_MS 10000
#define STUCK_S 60

/* ---- configuration, failure ---- */

static uint64_t fz_seed;
static double fz_seconds = 5;
static uint64_t fz_max_ops;
static char replay[128];
static size_t replay_len;
static atomic_bool fz_failed;
static atomic_bool fz_stop;
static int64_t fz_start_ns, fz_end_ns;
static _Atomic(const char *) fz_phase = "setup";

static void say(const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, s, n);

		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static unsigned long ops_so_far(void);

__attribute__((noreturn, format(printf, 3, 4))) static void
fz_fail(const char *file, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int n;

	n = snprintf(msg, sizeof(msg), "fuzz: %s:%d: FAILED: ", file, line);
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	strcat(msg, "\n");
	say(msg, strlen(msg));
	if (fz_start_ns) {
		n = snprintf(msg, sizeof(msg),
			     "fuzz: after %lu operations, %.3f s into the "
			     "run\n",
			     ops_so_far(),
			     (double)(t_now_ns() - fz_start_ns) / 1e9);
		say(msg, (size_t)n);
	}
	if (!atomic_exchange(&fz_failed, true))
		say(replay, replay_len);
	abort();
}

#define FAIL(...) fz_fail(__FILE__, __LINE__, __VA_ARGS__)
#define CHECK(cond, ...)                   \
	do {                               \
		if (!(cond))               \
			FAIL(__VA_ARGS__); \
	} while (0)

/* A crash (or a sanitizer's report) shows the seed too.  Under a
 * sanitizer, its death callback writes it after the report (the sanitizer
 * handles faults itself, and a handler of ours in between costs the
 * report its stack under TSan); otherwise the handler writes it and gives
 * the signal back to the default action (a fault re-executes and meets
 * it).  SIGABRT is ours in both cases. */
static const int crash_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };
static struct sigaction crash_old[5];

static void crash_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (!atomic_exchange(&fz_failed, true))
		say(replay, replay_len);
	for (size_t i = 0; i < 5; i++)
		if (crash_signals[i] == sig)
			sigaction(sig, &crash_old[i], NULL);
	if (si->si_code <= 0) /* sent (abort(), kill()), not a fault */
		raise(sig);
}

extern void __sanitizer_set_death_callback(void (*cb)(void))
    __attribute__((weak));

static void death_callback(void)
{
	atomic_store(&fz_failed, true);
	say(replay, replay_len);
}

static void install_crash_handlers(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = crash_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (__sanitizer_set_death_callback) {
		__sanitizer_set_death_callback(death_callback);
		sigaction(SIGABRT, &sa, &crash_old[4]);
		return;
	}
	for (size_t i = 0; i < 5; i++)
		sigaction(crash_signals[i], &sa, &crash_old[i]);
}

/* ---- randomness ---- */

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *g)
{
	uint64_t z = (g->s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned below(struct rng *g, unsigned n)
{
	return (unsigned)(rnd(g) % n);
}

static bool chance(struct rng *g, unsigned pct)
{
	return below(g, 100) < pct;
}

/* A duration for a timeout: very short, short, or long enough never to
 * fire during a run. */
static int64_t pick_duration(struct rng *g)
{
	unsigned k = below(g, 100);

	if (k < 8)
		return 0;
	if (k < 45)
		return CFD_USEC(below(g, 51));
	if (k < 70)
		return CFD_USEC(50 + below(g, 1950));
	return CFD_SEC(10 + below(g, 90));
}

/* ---- statistics ---- */

static atomic_ulong st_ops, st_wins, st_cb_runs, st_anon_runs, st_fd_checks,
    st_born, st_imports_checked, st_dispatches, st_bounces, st_reaped,
    st_last_in_cb, st_graph_checks, st_reg_checks, st_cause_checks;

/* ---- object counts (leak accounting) ---- */

static atomic_long n_recs, n_regs, n_srcs, n_conds, n_pipes, n_links;

/* ---- delayed frees: a late call into freed state meets a flag first ---- */

static pthread_mutex_t grave_lock = PTHREAD_MUTEX_INITIALIZER;
static void *grave[GRAVE];
static unsigned grave_next;

static void bury(void *p)
{
	void *old;

	pthread_mutex_lock(&grave_lock);
	old = grave[grave_next];
	grave[grave_next] = p;
	grave_next = (grave_next + 1) % GRAVE;
	pthread_mutex_unlock(&grave_lock);
	free(old);
}

static void grave_flush(void)
{
	pthread_mutex_lock(&grave_lock);
	for (unsigned i = 0; i < GRAVE; i++) {
		free(grave[i]);
		grave[i] = NULL;
	}
	pthread_mutex_unlock(&grave_lock);
}

/* ---- per thread ---- */

struct fz_thread {
	int id;
	struct rng g;
	pthread_t th;
	_Atomic(const char *) op;
	atomic_ulong ops;
	atomic_bool done;
	unsigned long counts[32];
};

static struct fz_thread fz_threads[NTHREADS];

static unsigned long ops_so_far(void)
{
	unsigned long n = 0;

	for (int i = 0; i < NTHREADS; i++)
		n += atomic_load(&fz_threads[i].ops);
	return n;
}
static _Thread_local int cb_depth;	/* inside callbacks, nested */
static _Thread_local void *registering; /* the userdata being registered */

static struct cfd_watcher *W[NWATCHERS];

static void *xcalloc(size_t n)
{
	void *p = calloc(1, n);

	CHECK(p, "out of memory");
	return p;
}

static short poll_fd(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;

	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	CHECK(r >= 0, "poll(%d): %s", fd, strerror(errno));
	return r == 1 ? p.revents : 0;
}

/* ---- token records ---- */

enum kind { K_NEW, K_CHILD, K_CHAIN, K_ANY, K_ALL, K_IMPORT };
static const char *const kind_names[] = { "new",    "child",  "chain",
					  "any-of", "all-of", "import" };

/* An import's view of its exporter: ready once the exporter's trigger has
 * completed or, for a watch-only export, once it has been freed. */
struct flink {
	atomic_int refs;
	atomic_bool ready;
	bool shared;
};

struct freg;

/*
 * A token and what the fuzzer knows of it.  Each reference to a record is
 * one reference to its token (rec_get/rec_put take and drop both); the
 * holders are the table slots, the threads using it, its children's
 * records, and callback registrations (with a handle, or given the
 * reference).  A record dies with its last reference, which is the last
 * reference the fuzzer holds to the token.
 */
struct frec {
	atomic_int refs;
	struct cfd_token *tok;
	enum kind kind;
	int nparents;
	struct frec *parents[MAXPAR];
	unsigned id;
	char name[24];	 /* empty for chains (named after their parents) */
	size_t live_idx; /* under live_lock */
	atomic_int winners;
	atomic_bool done;	    /* a trigger of it is known complete */
	atomic_int done_how;	    /* how the fuzzer knows: enum done_how */
	atomic_bool shared_written; /* its eventfd written from outside */
	atomic_int fd;
	struct flink *link; /* an import's, or NULL */

	pthread_mutex_t lock; /* for what follows */
	bool cause_set;
	int reason;
	struct cfd_token *origin;
	const char *msg;
	char msgcopy[40];
	int64_t ttime;
	int code;
	struct freg *regs[MAXRREGS];
	int nregs;
	uint64_t anon[MAXANON];
	int nanon, anon_next;
	struct flink *links[MAXLINKS];
	int nlinks;
};

/* Every live record, to reap some when there are too many and to trigger
 * what is left at the end.  rec_put decrements under this lock, so that a
 * record found here can be referenced. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct frec **live;
static size_t nlive, live_cap;
static atomic_uint rec_ids;

static struct frec *rec_new(struct cfd_token *tok, unsigned id,
			    const char *name, enum kind kind,
			    struct frec **parents, int np, struct flink *link)
{
	struct frec *r = xcalloc(sizeof(*r));

	atomic_init(&r->refs, 1);
	r->tok = tok;
	r->kind = kind;
	r->id = id;
	if (name)
		snprintf(r->name, sizeof(r->name), "%s", name);
	r->nparents = np;
	for (int i = 0; i < np; i++)
		r->parents[i] = parents[i];
	atomic_init(&r->fd, -1);
	r->link = link;
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_lock(&live_lock);
	if (nlive == live_cap) {
		live_cap = live_cap ? live_cap * 2 : 256;
		live = realloc(live, live_cap * sizeof(*live));
		CHECK(live, "out of memory");
	}
	r->live_idx = nlive;
	live[nlive++] = r;
	pthread_mutex_unlock(&live_lock);
	atomic_fetch_add(&n_recs, 1);
	return r;
}

/* The caller holds a reference (or the lock of a holder). */
static struct frec *rec_get(struct frec *r)
{
	atomic_fetch_add(&r->refs, 1);
	cfd_token_ref(r->tok);
	return r;
}

static void link_put(struct flink *l)
{
	if (l && atomic_fetch_sub(&l->refs, 1) == 1) {
		atomic_fetch_sub(&n_links, 1);
		free(l);
	}
}

static void cause_check(struct frec *r);

/* The fuzzer's last reference: nothing can trigger it through the fuzzer
 * any more, so the counts are final. */
static void rec_final(struct frec *r)
{
	int winners, reason;

	cause_check(r);
	reason = cfd_token_reason(r->tok);
	winners = atomic_load(&r->winners);
	/* An import takes its exporter's reason (cfd_token_remote()): a
	 * manual trigger over there, no trigger call here. */
	if (reason == CFD_REASON_MANUAL && !cfd_token_remote(r->tok))
		CHECK(
		    winners == 1,
		    "token %u (%s): reason manual, %d trigger calls returned 1",
		    r->id, kind_names[r->kind], winners);
	else
		CHECK(
		    winners == 0,
		    "token %u (%s): reason %d, yet %d trigger calls returned 1",
		    r->id, kind_names[r->kind], reason, winners);
	pthread_mutex_lock(&r->lock);
	CHECK(r->nregs == 0, "token %u: freed with registrations listed",
	      r->id);
	pthread_mutex_unlock(&r->lock);
}

static void rec_free(struct frec *r)
{
	/* The token is gone (or going): a watch-only export hangs up. */
	for (int i = 0; i < r->nlinks; i++) {
		if (!r->links[i]->shared)
			atomic_store(&r->links[i]->ready, true);
		link_put(r->links[i]);
	}
	link_put(r->link);
	pthread_mutex_destroy(&r->lock);
	atomic_fetch_sub(&n_recs, 1);
	free(r);
}

static void rec_put(struct frec *r)
{
	struct frec **stack = NULL;
	size_t n = 0, cap = 0;

	while (r) {
		struct cfd_token *tok = r->tok; /* r may be gone after */
		int left;

		pthread_mutex_lock(&live_lock);
		left = atomic_fetch_sub(&r->refs, 1) - 1;
		if (left == 0) {
			live[r->live_idx] = live[--nlive];
			live[r->live_idx]->live_idx = r->live_idx;
		}
		pthread_mutex_unlock(&live_lock);
		CHECK(left >= 0, "record %u: reference count below zero",
		      r->id);
		if (left == 0)
			rec_final(r);
		if (left == 0 && cb_depth > 0)
			atomic_fetch_add(&st_last_in_cb, 1);
		cfd_token_unref(tok);
		if (left == 0) {
			/* Iterative: a chain of children can be deep. */
			for (int i = 0; i < r->nparents; i++) {
				if (n == cap) {
					cap = cap ? cap * 2 : 16;
					stack = realloc(stack,
							cap * sizeof(*stack));
					CHECK(stack, "out of memory");
				}
				stack[n++] = r->parents[i];
			}
			rec_free(r);
		}
		r = n ? stack[--n] : NULL;
	}
	free(stack);
}

/* How a record came to be known done, for the reports. */
enum done_how {
	D_WON = 1,  /* its trigger call returned 1 */
	D_CALLBACK, /* a callback of its trigger was called */
	D_BORN,	    /* born under a parent whose trigger had completed */
	D_ORIGIN,   /* its origin is an ancestor whose trigger completed */
	D_WALKED,   /* a winner's walk reached it (its origin is the winner) */
};
static const char *const done_names[] = { "no",	  "won",    "callback",
					  "born", "origin", "walked" };

static void mark_done(struct frec *r, enum done_how how)
{
	int zero = 0;

	atomic_compare_exchange_strong(&r->done_how, &zero, (int)how);
	if (atomic_exchange(&r->done, true))
		return;
	pthread_mutex_lock(&r->lock);
	for (int i = 0; i < r->nlinks; i++)
		atomic_store(&r->links[i]->ready, true);
	pthread_mutex_unlock(&r->lock);
}

/*
 * Whether r's trigger is known complete.  A trigger is walked by the one
 * call that triggered its origin; once that walk is known complete (the
 * origin is done), every token whose origin it is has its fd readable.
 */
static bool infer_done(struct frec *r)
{
	struct frec *q[32];
	struct cfd_token *o;
	int head = 0, tail = 0;

	if (atomic_load(&r->done))
		return true;
	if (!cfd_token_triggered(r->tok))
		return false;
	o = cfd_token_origin(r->tok);
	CHECK(o, "token %u: triggered, without an origin", r->id);
	q[tail++] = r;
	while (head < tail) {
		struct frec *a = q[head++];

		if (a->tok == o) {
			if (!atomic_load(&a->done))
				return false;
			mark_done(r, D_ORIGIN);
			return true;
		}
		for (int i = 0; i < a->nparents && tail < 32; i++)
			q[tail++] = a->parents[i];
	}
	return false;
}

/* Once r's trigger is complete, its fd is readable at once. */

/* After an fd was found not readable: how long until it is, for the
 * report. */
static void fd_late(struct cfd_token *tok, unsigned id, const char *kind,
		    int fd, const char *when, bool known)
{
	int64_t t0 = t_now_ns(), late = -1;

	while (t_now_ns() - t0 < CFD_SEC(1))
		if (poll_fd(fd, 1) & POLLIN) {
			late = t_now_ns() - t0;
			break;
		}
	FAIL("token %u (%s): fd %d not readable %s (triggered %d; the fd "
	     "%s before this call; %s %.1f us later)",
	     id, kind, fd, when, cfd_token_triggered(tok),
	     known ? "was known" : "was not known to the fuzzer",
	     late >= 0 ? "readable" : "still not readable",
	     late >= 0 ? (double)late / 1e3 : 1e6);
}

static void fd_check_done(struct frec *r, const char *when)
{
	int before = atomic_load(&r->fd);
	int fd = cfd_token_fd(r->tok), expect = -1;
	short ev;

	CHECK(fd >= 0, "token %u: cfd_token_fd: %s", r->id, strerror(-fd));
	if (!atomic_compare_exchange_strong(&r->fd, &expect, fd))
		CHECK(expect == fd, "token %u: fd changed from %d to %d", r->id,
		      expect, fd);
	ev = poll_fd(fd, 0);
	atomic_fetch_add(&st_fd_checks, 1);
	CHECK(!(ev & POLLNVAL), "token %u: fd %d is not open", r->id, fd);
	if (!(ev & POLLIN))
		fd_late(r->tok, r->id, kind_names[r->kind], fd, when,
			before >= 0);
}

static void cause_check(struct frec *r)
{
	struct cfd_token *t = r->tok, *o;
	const char *m;
	int reason, oreason, sig, code;
	int64_t tt, dl;

	if (!cfd_token_triggered(t)) {
		reason = cfd_token_reason(t);
		CHECK(reason >= 0, "token %u: reason %d", r->id, reason);
		if (reason != CFD_REASON_NONE)
			CHECK(cfd_token_triggered(t),
			      "token %u: reason %d, and pending", r->id,
			      reason);
		return;
	}
	reason = cfd_token_reason(t);
	o = cfd_token_origin(t);
	m = cfd_token_message(t);
	sig = cfd_token_signal(t);
	tt = cfd_token_trigger_time(t);
	code = cfd_token_code(t);
	dl = cfd_token_deadline(t);
	CHECK(reason >= CFD_REASON_MANUAL && reason <= CFD_REASON_GONE &&
		  strcmp(cfd_reason_name(reason), "unknown") != 0,
	      "token %u: triggered, reason %d", r->id, reason);
	CHECK(o, "token %u: triggered, no origin", r->id);
	CHECK(sig == 0, "token %u: signal %d without signal sources", r->id,
	      sig);
	CHECK(tt > 0, "token %u: trigger time %" PRId64, r->id, tt);
	CHECK(cfd_token_message(o) == m,
	      "token %u: message %p, its origin's %p", r->id, (void *)m,
	      (void *)cfd_token_message(o));
	CHECK(cfd_token_trigger_time(o) == tt,
	      "token %u: trigger time differs from its origin's", r->id);
	CHECK(cfd_token_code(o) == code, "token %u: code %d, its origin's %d",
	      r->id, code, cfd_token_code(o));
	/* a triggered token's deadline has passed: it is its trigger time */
	CHECK(dl == tt,
	      "token %u: triggered, deadline %" PRId64 " not %" PRId64, r->id,
	      dl, tt);
	oreason = cfd_token_reason(o);
	CHECK(oreason == CFD_REASON_MANUAL || oreason == CFD_REASON_TIMEOUT ||
		  oreason == CFD_REASON_FD || oreason == CFD_REASON_CONDITION ||
		  oreason == CFD_REASON_GONE,
	      "token %u: origin's reason is %d", r->id, oreason);
	if (o == t)
		CHECK(reason != CFD_REASON_PARENT &&
			  reason != CFD_REASON_ALL_OF,
		      "token %u: its own origin, reason %d", r->id, reason);
	else
		CHECK(reason == CFD_REASON_PARENT ||
			  reason == CFD_REASON_ALL_OF,
		      "token %u: origin elsewhere, reason %d", r->id, reason);
	switch (r->kind) {
	case K_NEW:
	case K_IMPORT:
		CHECK(o == t, "token %u (%s, no parents): origin elsewhere",
		      r->id, kind_names[r->kind]);
		break;
	case K_ALL:
		CHECK(reason != CFD_REASON_PARENT,
		      "token %u (all-of): reason parent", r->id);
		break;
	default:
		CHECK(reason != CFD_REASON_ALL_OF,
		      "token %u (%s): reason all-of", r->id,
		      kind_names[r->kind]);
	}
	if (reason != CFD_REASON_MANUAL)
		CHECK(atomic_load(&r->winners) == 0,
		      "token %u: reason %d, yet a trigger call returned 1",
		      r->id, reason);
	pthread_mutex_lock(&r->lock);
	if (!r->cause_set) {
		r->cause_set = true;
		r->reason = reason;
		r->origin = o;
		r->msg = m;
		r->ttime = tt;
		r->code = code;
		if (m)
			snprintf(r->msgcopy, sizeof(r->msgcopy), "%s", m);
	} else {
		bool same;

		atomic_fetch_add(&st_cause_checks, 1);
		same = r->reason == reason && r->origin == o && r->msg == m &&
		       r->ttime == tt && r->code == code &&
		       (!m || strcmp(r->msgcopy, m) == 0);

		if (!same) {
			pthread_mutex_unlock(&r->lock);
			FAIL("token %u: the cause changed: reason %d -> %d, "
			     "origin %p -> %p, message %p -> %p, time %" PRId64
			     " -> %" PRId64,
			     r->id, r->reason, reason, (void *)r->origin,
			     (void *)o, (void *)r->msg, (void *)m, r->ttime,
			     tt);
		}
	}
	pthread_mutex_unlock(&r->lock);
}

/* A parent's trigger is complete: the child must read triggered. */
static void graph_check(struct frec *r)
{
	bool need;

	if (r->nparents == 0)
		return;
	need = r->kind == K_ALL;
	for (int i = 0; i < r->nparents; i++) {
		bool d = atomic_load(&r->parents[i]->done);

		if (r->kind == K_ALL)
			need = need && d;
		else
			need = need || d;
	}
	if (!need)
		return;
	atomic_fetch_add(&st_graph_checks, 1);
	if (!cfd_token_triggered(r->tok)) {
		char why[600];
		size_t n = 0;

		for (int i = 0; i < r->nparents && n < sizeof(why) - 100; i++) {
			struct frec *p = r->parents[i];
			struct cfd_token *o = cfd_token_origin(p->tok);

			n += (size_t)snprintf(
			    why + n, sizeof(why) - n,
			    "%s parent %u (%s, done: %s, reason %d, "
			    "origin %s)",
			    i ? ";" : "", p->id, kind_names[p->kind],
			    done_names[atomic_load(&p->done_how)],
			    cfd_token_reason(p->tok),
			    o ? cfd_token_name(o) : "none");
		}
		FAIL("token %u (%s): pending, though %s parent's trigger has "
		     "completed:%s",
		     r->id, kind_names[r->kind],
		     r->kind == K_ALL ? "every" : "a", why);
	}
}

/* ---- the token table ---- */

static pthread_mutex_t tab_lock = PTHREAD_MUTEX_INITIALIZER;
static struct frec *tab[NSLOTS];

static int pick_slot(struct rng *g)
{
	return chance(g, 30) ? (int)below(g, NHOT) : (int)below(g, NSLOTS);
}

static struct frec *tab_get(int i)
{
	struct frec *r;

	pthread_mutex_lock(&tab_lock);
	r = tab[i];
	if (r)
		rec_get(r);
	pthread_mutex_unlock(&tab_lock);
	return r;
}

/* Takes the caller's reference to r (NULL empties the slot). */
static void tab_set(int i, struct frec *r)
{
	struct frec *old;

	pthread_mutex_lock(&tab_lock);
	old = tab[i];
	tab[i] = r;
	pthread_mutex_unlock(&tab_lock);
	if (old)
		rec_put(old);
}

/* ---- callbacks ---- */

enum { M_HANDLE, M_DONATED, M_ANON };
enum {
	A_FREE_SELF = 1u << 0,
	A_TRIGGER = 1u << 1,
	A_REGISTER = 1u << 2,
	A_DROP_EARLY = 1u << 3,
	A_SOURCE = 1u << 4,
	A_FD = 1u << 5,
	A_TABLE = 1u << 6,
	A_OBSERVE = 1u << 7,
};

/*
 * A registration's context.  M_HANDLE: registered with a handle, kept in
 * the registration table; rec is a reference released when the handle is
 * freed.  M_DONATED: no handle; rec is a reference given to the
 * callback, which drops it (often the last one).  Handle-less
 * registrations that hold no reference (M_ANON) have no context: their
 * userdata is a tagged number.
 */
struct freg {
	atomic_int refs;
	int mode;
	unsigned acts;
	uint64_t seed;
	struct frec *rec, *target;
	struct cfd_token *tok;
	struct cfd_registration *_Atomic handle;
	atomic_int runs, in_cb;
	atomic_bool registered, free_started, free_returned;
	bool delisted; /* under rec->lock */
};

static atomic_uint_least64_t anon_next = 1;
static atomic_uint_least64_t anon_bits[ANON_BITS / 64];

static void freg_put(struct freg *f)
{
	if (atomic_fetch_sub(&f->refs, 1) == 1) {
		atomic_fetch_sub(&n_regs, 1);
		bury(f);
	}
}

static void rec_regs_add(struct freg *f)
{
	struct frec *r = f->rec;

	pthread_mutex_lock(&r->lock);
	if (!f->delisted && r->nregs < MAXRREGS) {
		atomic_fetch_add(&f->refs, 1);
		r->regs[r->nregs++] = f;
	}
	pthread_mutex_unlock(&r->lock);
}

static void rec_regs_remove(struct freg *f)
{
	struct frec *r = f->rec;
	bool found = false;

	pthread_mutex_lock(&r->lock);
	f->delisted = true;
	for (int i = 0; i < r->nregs; i++)
		if (r->regs[i] == f) {
			r->regs[i] = r->regs[--r->nregs];
			found = true;
			break;
		}
	pthread_mutex_unlock(&r->lock);
	if (found)
		freg_put(f);
}

/* The library will not call f again and its callback is not running:
 * release what the registration held. */
static void freg_finish(struct freg *f)
{
	rec_regs_remove(f);
	rec_put(f->rec);
	if (f->target)
		rec_put(f->target);
	freg_put(f);
}

/* From outside any callback: free the handle (if the callback has not
 * freed it itself) and check the wait. */
static void freg_free_handle(struct freg *f)
{
	struct cfd_registration *h = atomic_exchange(&f->handle, NULL);

	if (!h)
		return;
	atomic_store(&f->free_started, true);
	CHECK(cfd_registration_free(h) == NULL,
	      "cfd_registration_free: not NULL");
	CHECK(atomic_load(&f->in_cb) == 0,
	      "cfd_registration_free() returned while the callback runs "
	      "(token %u)",
	      f->rec->id);
	atomic_store(&f->free_returned, true);
	freg_finish(f);
}

/* ---- sources ---- */

struct fcond {
	atomic_int calls, in_pred;
	atomic_bool freed;
	int k;
};

struct fsrc {
	struct cfd_source *src;
	struct fcond *cond;
};

static atomic_uint cond_global;

static bool cond_pred(struct cfd_token *tok, void *ud)
{
	struct fcond *c = ud;
	int n;

	(void)tok;
	if ((uintptr_t)ud & 1)
		return atomic_fetch_add(&cond_global, 1) %
			   (unsigned)((uintptr_t)ud >> 1) ==
		       0;
	CHECK(!atomic_load(&c->freed),
	      "a predicate called after cfd_source_free() returned");
	atomic_fetch_add(&c->in_pred, 1);
	n = atomic_fetch_add(&c->calls, 1) + 1;
	atomic_fetch_sub(&c->in_pred, 1);
	return n >= c->k;
}

static void fsrc_free(struct fsrc *s)
{
	CHECK(cfd_source_free(s->src) == NULL, "cfd_source_free: not NULL");
	if (s->cond) {
		CHECK(atomic_load(&s->cond->in_pred) == 0,
		      "cfd_source_free() returned while the predicate runs");
		atomic_store(&s->cond->freed, true);
		atomic_fetch_sub(&n_conds, 1);
		bury(s->cond);
	}
	atomic_fetch_sub(&n_srcs, 1);
	free(s);
}

/* ---- what callbacks may not free themselves: freed by the threads ---- */

struct pend {
	struct pend *next;
	struct freg *reg;
	struct fsrc *src;
};

static pthread_mutex_t pend_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pend *pend_head;
static atomic_int pend_n;

static void pend_push(struct freg *reg, struct fsrc *src)
{
	struct pend *p = xcalloc(sizeof(*p));

	p->reg = reg;
	p->src = src;
	pthread_mutex_lock(&pend_lock);
	p->next = pend_head;
	pend_head = p;
	pthread_mutex_unlock(&pend_lock);
	atomic_fetch_add(&pend_n, 1);
}

static void pend_drain(void)
{
	struct pend *p, *next;

	if (atomic_load(&pend_n) == 0)
		return;
	pthread_mutex_lock(&pend_lock);
	p = pend_head;
	pend_head = NULL;
	atomic_store(&pend_n, 0);
	pthread_mutex_unlock(&pend_lock);
	for (; p; p = next) {
		next = p->next;
		if (p->reg) {
			freg_free_handle(p->reg);
			freg_put(p->reg);
		}
		if (p->src)
			fsrc_free(p->src);
		free(p);
	}
}

/* Registration and source tables.  A callback may not wait, so what it
 * evicts is freed later by a fuzzer thread. */
static pthread_mutex_t regtab_lock = PTHREAD_MUTEX_INITIALIZER;
static struct freg *regtab[NREGSLOTS];
static pthread_mutex_t srctab_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fsrc *srctab[NSRCSLOTS];

static void dispose_reg(struct freg *f)
{
	if (cb_depth > 0) {
		pend_push(f, NULL);
		return;
	}
	freg_free_handle(f);
	freg_put(f);
}

static void dispose_src(struct fsrc *s)
{
	if (cb_depth > 0) {
		pend_push(NULL, s);
		return;
	}
	fsrc_free(s);
}

static void regtab_set(int i, struct freg *f)
{
	struct freg *old;

	pthread_mutex_lock(&regtab_lock);
	old = regtab[i];
	regtab[i] = f;
	pthread_mutex_unlock(&regtab_lock);
	if (old)
		dispose_reg(old);
}

static void srctab_set(int i, struct fsrc *s)
{
	struct fsrc *old;

	pthread_mutex_lock(&srctab_lock);
	old = srctab[i];
	srctab[i] = s;
	pthread_mutex_unlock(&srctab_lock);
	if (old)
		dispose_src(old);
}

/* ---- pipes for fd sources ---- */

struct fpipe {
	atomic_int refs;
	int rfd;
	int wfd; /* under lock; -1 once closed */
	pthread_mutex_t lock;
};

static pthread_mutex_t pipetab_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fpipe *pipetab[NPIPES];

static struct fpipe *pipe_new(void)
{
	struct fpipe *p = xcalloc(sizeof(*p));
	int fds[2];

	CHECK(pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0, "pipe2: %s",
	      strerror(errno));
	atomic_init(&p->refs, 1);
	p->rfd = fds[0];
	p->wfd = fds[1];
	pthread_mutex_init(&p->lock, NULL);
	atomic_fetch_add(&n_pipes, 1);
	return p;
}

static struct fpipe *pipe_get(int i)
{
	struct fpipe *p;

	pthread_mutex_lock(&pipetab_lock);
	p = pipetab[i];
	if (p)
		atomic_fetch_add(&p->refs, 1);
	pthread_mutex_unlock(&pipetab_lock);
	return p;
}

static void pipe_put(struct fpipe *p)
{
	if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	close(p->rfd);
	if (p->wfd >= 0)
		close(p->wfd);
	pthread_mutex_destroy(&p->lock);
	atomic_fetch_sub(&n_pipes, 1);
	free(p);
}

static void pipe_set(int i, struct fpipe *p)
{
	struct fpipe *old;

	pthread_mutex_lock(&pipetab_lock);
	old = pipetab[i];
	pipetab[i] = p;
	pthread_mutex_unlock(&pipetab_lock);
	pipe_put(old);
}

/* ---- operations on records, shared by the threads and callbacks ---- */

static void do_register(struct rng *g, struct frec *r, struct frec *target);
static void add_source(struct rng *g, struct frec *r);

/* Trigger r (a reference the caller holds) and check what the winner
 * may count on. */
static void do_trigger(struct rng *g, struct frec *r)
{
	struct freg *snap[MAXRREGS];
	uint64_t anon[MAXANON];
	int nsnap = 0, nanon, ret;
	unsigned how = below(g, 4);
	char msg[40];
	const char *m;

	pthread_mutex_lock(&r->lock);
	for (int i = 0; i < r->nregs; i++)
		if (atomic_load(&r->regs[i]->registered)) {
			atomic_fetch_add(&r->regs[i]->refs, 1);
			snap[nsnap++] = r->regs[i];
		}
	nanon = r->nanon;
	memcpy(anon, r->anon, sizeof(anon));
	pthread_mutex_unlock(&r->lock);

	snprintf(msg, sizeof(msg), "m%" PRIx64, rnd(g));
	if (how == 0)
		ret = cfd_token_trigger(r->tok);
	else if (how == 3)
		ret = cfd_token_trigger_code(r->tok, (int)r->id + 1, msg);
	else
		ret = cfd_token_trigger_msg(r->tok, how == 1 ? msg : NULL);
	CHECK(ret == 0 || ret == 1, "token %u: trigger returned %d", r->id,
	      ret);
	CHECK(cfd_token_triggered(r->tok),
	      "token %u: pending after its trigger returned %d", r->id, ret);
	if (ret == 1) {
		struct frec *kids[NSLOTS];
		int nkids = 0;

		atomic_fetch_add(&st_wins, 1);
		CHECK(atomic_fetch_add(&r->winners, 1) == 0,
		      "token %u (%s): a second trigger call returned 1", r->id,
		      kind_names[r->kind]);
		CHECK(cfd_token_reason(r->tok) == CFD_REASON_MANUAL &&
			  cfd_token_origin(r->tok) == r->tok,
		      "token %u: won, yet reason %d and origin %p", r->id,
		      cfd_token_reason(r->tok),
		      (void *)cfd_token_origin(r->tok));
		m = cfd_token_message(r->tok);
		if (how == 1 || how == 3)
			CHECK(m && strcmp(m, msg) == 0,
			      "token %u: message \"%s\", not \"%s\"", r->id,
			      m ? m : "(null)", msg);
		else
			CHECK(!m, "token %u: a message without one", r->id);
		CHECK(cfd_token_code(r->tok) == (how == 3 ? (int)r->id + 1 : 0),
		      "token %u: code %d after a trigger with %d", r->id,
		      cfd_token_code(r->tok), how == 3 ? (int)r->id + 1 : 0);
		mark_done(r, D_WON);
		fd_check_done(r, "after its trigger returned 1");
		for (int i = 0; i < nsnap; i++) {
			/* Not freed yet, so not freed before the trigger. */
			if (atomic_load(&snap[i]->free_started))
				continue;
			atomic_fetch_add(&st_reg_checks, 1);
			CHECK(atomic_load(&snap[i]->runs) == 1,
			      "token %u: trigger returned 1, a callback "
			      "registered before it ran %d times",
			      r->id, atomic_load(&snap[i]->runs));
		}
		for (int i = 0; i < nanon; i++) {
			uint64_t id = anon[i];

			atomic_fetch_add(&st_reg_checks, 1);
			if (id < ANON_BITS)
				CHECK(atomic_load(&anon_bits[id / 64]) &
					  (1ull << (id % 64)),
				      "token %u: trigger returned 1, a "
				      "handle-less callback registered before "
				      "did not run",
				      r->id);
		}
		/* The children in the table: triggered, and the fd of those
		 * this walk triggered readable. */
		pthread_mutex_lock(&tab_lock);
		for (int i = 0; i < NSLOTS; i++) {
			struct frec *k = tab[i];

			if (!k)
				continue;
			for (int j = 0; j < k->nparents; j++)
				if (k->parents[j] == r) {
					kids[nkids++] = rec_get(k);
					break;
				}
		}
		pthread_mutex_unlock(&tab_lock);
		for (int i = 0; i < nkids; i++) {
			struct frec *k = kids[i];

			graph_check(k);
			if (cfd_token_triggered(k->tok) &&
			    cfd_token_origin(k->tok) == r->tok) {
				mark_done(k, D_WALKED);
				fd_check_done(k, "after its parent's trigger "
						 "returned 1");
			}
			rec_put(k);
		}
	}
	cause_check(r);
	for (int i = 0; i < nsnap; i++)
		freg_put(snap[i]);
}

static void observe(struct rng *g, struct frec *r)
{
	bool was_done = infer_done(r), trig;
	const char *name;
	int c, w;
	int64_t t;

	trig = cfd_token_triggered(r->tok);
	if (was_done)
		CHECK(trig, "token %u: done, and pending", r->id);
	c = cfd_token_check(r->tok);
	CHECK(c == 0 || c == -ECANCELED, "token %u: check returned %d", r->id,
	      c);
	if (trig)
		CHECK(c == -ECANCELED, "token %u: triggered, check says 0",
		      r->id);
	if (c == -ECANCELED)
		CHECK(cfd_token_triggered(r->tok),
		      "token %u: check -ECANCELED, reads pending", r->id);
	t = chance(g, 50) ? 0 : CFD_USEC(below(g, 200));
	w = cfd_token_wait(r->tok, t);
	CHECK(w == 0 || w == -ETIMEDOUT, "token %u: wait returned %d", r->id,
	      w);
	if (trig)
		CHECK(w == 0, "token %u: triggered, wait timed out", r->id);
	if (w == 0)
		CHECK(cfd_token_triggered(r->tok),
		      "token %u: wait returned 0, reads pending", r->id);
	cause_check(r);
	graph_check(r);
	name = cfd_token_name(r->tok);
	CHECK(name, "token %u: no name", r->id);
	if (r->name[0])
		CHECK(strcmp(name, r->name) == 0,
		      "token %u: name \"%s\", not \"%s\"", r->id, name,
		      r->name);
	if (was_done && chance(g, 50))
		fd_check_done(r, "once its trigger had completed");
}

static void fd_op(struct rng *g, struct frec *r)
{
	bool was_done = infer_done(r);
	int fd = cfd_token_fd(r->tok), expect = -1;
	short ev;

	CHECK(fd >= 0, "token %u: cfd_token_fd: %s", r->id, strerror(-fd));
	if (!atomic_compare_exchange_strong(&r->fd, &expect, fd))
		CHECK(expect == fd, "token %u: fd changed from %d to %d", r->id,
		      expect, fd);
	ev = poll_fd(fd, chance(g, 95) ? 0 : 1);
	CHECK(!(ev & (POLLNVAL | POLLERR | POLLHUP)),
	      "token %u: fd %d revents %#x", r->id, fd, (unsigned)ev);
	if (was_done) {
		atomic_fetch_add(&st_fd_checks, 1);
		if (!(ev & POLLIN))
			fd_late(r->tok, r->id, kind_names[r->kind], fd,
				"once its trigger had completed", expect >= 0);
	}
	if ((ev & POLLIN) && !atomic_load(&r->shared_written))
		CHECK(cfd_token_triggered(r->tok),
		      "token %u: fd readable, token pending", r->id);
}

/* ---- callbacks ---- */

static void anon_cb(struct cfd_token *tok, uint64_t id, bool inl)
{
	atomic_fetch_add(&st_anon_runs, 1);
	if (id < ANON_BITS) {
		uint64_t bit = 1ull << (id % 64);

		CHECK(!(atomic_fetch_or(&anon_bits[id / 64], bit) & bit),
		      "a handle-less callback ran twice");
	}
	CHECK(cfd_token_triggered(tok), "a callback of a pending token");
	if (!inl && id % 4 == 0) {
		int fd = cfd_token_fd(tok);

		CHECK(fd >= 0, "cfd_token_fd in a callback: %s", strerror(-fd));
		if (!(poll_fd(fd, 0) & POLLIN))
			fd_late(tok, 0, "?", fd,
				"in a handle-less callback of its trigger",
				false);
	}
}

static void fz_cb(struct cfd_token *tok, void *ud)
{
	struct freg *f = ud;
	struct rng g;
	bool inl = registering == ud, dropped = false, self_freed = false;
	struct frec *own;

	if ((uintptr_t)ud & 1) {
		anon_cb(tok, (uintptr_t)ud >> 1, inl);
		return;
	}
	cb_depth++;
	atomic_fetch_add(&st_cb_runs, 1);
	CHECK(atomic_fetch_add(&f->runs, 1) == 0,
	      "token %u: a callback ran twice", f->rec->id);
	CHECK(!atomic_load(&f->free_returned),
	      "token %u: a callback ran after cfd_registration_free() "
	      "returned",
	      f->rec->id);
	atomic_fetch_add(&f->in_cb, 1);
	CHECK(tok == f->tok, "a callback called with another token");
	CHECK(cfd_token_triggered(tok), "token %u: a callback, and pending",
	      f->rec->id);
	if (!inl) {
		/* Run by a trigger, after its walk: complete. */
		mark_done(f->rec, D_CALLBACK);
		fd_check_done(f->rec, "in a callback of its trigger");
	}
	cause_check(f->rec);
	g.s = f->seed;
	if (f->mode == M_DONATED && (f->acts & A_DROP_EARLY)) {
		/* Possibly the last reference: the library holds tok until
		 * we return. */
		rec_regs_remove(f);
		rec_put(f->rec);
		dropped = true;
		if (!inl) {
			int fd = cfd_token_fd(tok);

			CHECK(fd >= 0, "cfd_token_fd in a callback: %s",
			      strerror(-fd));
			if (!(poll_fd(fd, 0) & POLLIN))
				fd_late(tok, 0, "?", fd,
					"in a callback that dropped the "
					"fuzzer's last reference",
					false);
		}
	}
	own = dropped ? NULL : f->rec;
	if ((f->acts & A_FREE_SELF) && f->mode == M_HANDLE) {
		struct cfd_registration *h = atomic_exchange(&f->handle, NULL);

		if (h) {
			atomic_store(&f->free_started, true);
			CHECK(cfd_registration_free(h) == NULL,
			      "cfd_registration_free: not NULL");
			self_freed = true;
		}
	}
	if (cb_depth <= CB_DEPTH_MAX) {
		if ((f->acts & A_TRIGGER) && f->target)
			do_trigger(&g, f->target);
		if (f->acts & A_REGISTER) {
			struct frec *on = f->target && chance(&g, 50)
					      ? f->target
					  : own ? own
						: f->target;

			if (on)
				do_register(&g, on,
					    chance(&g, 50) ? f->target : own);
		}
		if ((f->acts & A_SOURCE) && (f->target || own))
			add_source(&g, f->target ? f->target : own);
		if ((f->acts & A_OBSERVE) && f->target)
			observe(&g, f->target);
		if ((f->acts & A_TABLE) && f->target)
			tab_set((int)below(&g, NSLOTS), rec_get(f->target));
		if ((f->acts & A_FD) && own)
			fd_op(&g, own);
	}
	atomic_fetch_sub(&f->in_cb, 1);
	cb_depth--;
	if (f->mode == M_HANDLE) {
		if (self_freed)
			freg_finish(f);
	} else {
		if (!dropped) {
			rec_regs_remove(f);
			rec_put(f->rec);
		}
		if (f->target)
			rec_put(f->target);
		freg_put(f);
	}
}

/* Register a callback on r (held by the caller); target (held by the
 * caller, or NULL) is what its body acts on. */
static void do_register(struct rng *g, struct frec *r, struct frec *target)
{
	unsigned k = below(g, 100);
	int mode = k < 45 ? M_HANDLE : k < 75 ? M_DONATED : M_ANON;
	unsigned flags = chance(g, 30) ? CFD_CALLBACK_NO_INLINE : 0;
	struct cfd_registration *h = NULL;

	void *prev = registering;
	struct freg *f;
	int ret;

	if (mode == M_ANON) {
		uint64_t id = atomic_fetch_add(&anon_next, 1);
		void *ud = (void *)(uintptr_t)(id << 1 | 1);
		bool ran;

		registering = ud;
		ret = cfd_token_on_trigger(NULL, r->tok, fz_cb, ud, flags);
		registering = prev;
		ran = id < ANON_BITS &&
		      (atomic_load(&anon_bits[id / 64]) & (1ull << (id % 64)));
		if (ret == 0) {
			pthread_mutex_lock(&r->lock);
			r->anon[r->anon_next] = id;
			r->anon_next = (r->anon_next + 1) % MAXANON;
			if (r->nanon < MAXANON)
				r->nanon++;
			pthread_mutex_unlock(&r->lock);
		} else if (ret == 1) {
			CHECK(!flags, "NO_INLINE, yet called inline");
			CHECK(ran || id >= ANON_BITS,
			      "on_trigger returned 1, callback not run");
		} else {
			CHECK(ret == -ECANCELED && flags,
			      "token %u: on_trigger returned %d", r->id, ret);
			CHECK(!ran, "-ECANCELED, yet the callback ran");
			CHECK(cfd_token_triggered(r->tok),
			      "-ECANCELED on a pending token");
		}
		return;
	}

	f = xcalloc(sizeof(*f));
	atomic_init(&f->refs, 2); /* ours, and the registration's */
	f->mode = mode;
	f->acts = (unsigned)rnd(g) & 0xff;
	f->seed = rnd(g);
	f->rec = rec_get(r);
	f->target = target ? rec_get(target) : NULL;
	f->tok = r->tok;
	atomic_fetch_add(&n_regs, 1);
	registering = f;
	ret = cfd_token_on_trigger(mode == M_HANDLE ? &h : NULL, r->tok, fz_cb,
				   f, flags);
	registering = prev;
	if (ret == 0) {
		atomic_store(&f->registered, true);
		if (mode == M_HANDLE) {
			CHECK(h, "token %u: on_trigger returned 0, no handle",
			      r->id);
			atomic_store(&f->handle, h);
		}
		rec_regs_add(f);
		if (mode == M_HANDLE) {
			regtab_set((int)below(g, NREGSLOTS), f);
			return;
		}
		/* Nothing else will trigger a token that only this
		 * registration holds: a timeout will, some day. */
		if (chance(g, 70) && cb_depth <= CB_DEPTH_MAX)
			CHECK(cfd_source_add_timeout(
				  NULL, r->tok, W[below(g, NWATCHERS)],
				  CFD_MSEC(1 + below(g, 20))) == 0,
			      "timeout on token %u", r->id);
		freg_put(f);
		return;
	}
	if (ret == 1) {
		CHECK(!flags, "token %u: NO_INLINE, yet called inline", r->id);
		CHECK(atomic_load(&f->runs) == 1,
		      "token %u: on_trigger returned 1, callback ran %d times",
		      r->id, atomic_load(&f->runs));
		CHECK(!h, "token %u: on_trigger returned 1 and a handle",
		      r->id);
		if (mode == M_HANDLE)
			freg_finish(f); /* no handle: over */
		freg_put(f);
		return;
	}
	CHECK(ret == -ECANCELED && flags, "token %u: on_trigger returned %d",
	      r->id, ret);
	CHECK(atomic_load(&f->runs) == 0,
	      "token %u: -ECANCELED, yet the callback ran", r->id);
	CHECK(!h, "token %u: -ECANCELED, and a handle", r->id);
	CHECK(cfd_token_triggered(r->tok),
	      "token %u: -ECANCELED on a pending token", r->id);
	freg_finish(f);
	freg_put(f);
}

/* Add a source to r (held by the caller). */
static void add_source(struct rng *g, struct frec *r)
{
	struct cfd_watcher *w = W[below(g, NWATCHERS)];
	bool handle = chance(g, 60) && cb_depth == 0;
	struct cfd_source *src = NULL, **hp = handle ? &src : NULL;
	struct fcond *cond = NULL;
	bool was = cfd_token_triggered(r->tok), fired_now = false;
	unsigned kind = below(g, 100);
	int ret;

	if (kind < 35) {
		int64_t ns = pick_duration(g);

		ret = cfd_source_add_timeout(hp, r->tok, w, ns);
		CHECK(ret == 0, "token %u: add_timeout(%" PRId64 "): %d", r->id,
		      ns, ret);
		fired_now = ns == 0;
	} else if (kind < 50) {
		int64_t now = t_now_ns(), dl;

		if (chance(g, 15)) {
			dl = now - (int64_t)below(g, 1000000);
			fired_now = true;
		} else {
			dl = now + pick_duration(g);
		}
		ret = cfd_source_add_deadline(hp, r->tok, w, dl);
		CHECK(ret == 0, "token %u: add_deadline: %d", r->id, ret);
	} else if (kind < 70) {
		unsigned k = 1 + below(g, 4);
		int64_t iv = CFD_USEC(10 + below(g, 990));
		void *ud;

		if (handle) {
			cond = xcalloc(sizeof(*cond));
			cond->k = (int)k;
			atomic_fetch_add(&n_conds, 1);
			ud = cond;
		} else {
			ud = (void *)(uintptr_t)(k << 1 | 1);
		}
		ret =
		    cfd_source_add_condition(hp, r->tok, w, cond_pred, ud, iv);
		CHECK(ret == 0, "token %u: add_condition: %d", r->id, ret);
	} else {
		struct fpipe *p = pipe_get((int)below(g, NPIPES));

		if (!p)
			return;
		ret = cfd_source_add_fd(hp, r->tok, w, p->rfd);
		CHECK(ret == 0, "token %u: add_fd: %d", r->id, ret);
		pipe_put(p);
	}
	if (fired_now)
		CHECK(cfd_token_triggered(r->tok),
		      "token %u: pending after a timeout of 0 or a past "
		      "deadline",
		      r->id);
	if (handle && (was || fired_now))
		CHECK(!src, "token %u: a source made, though %s", r->id,
		      was ? "triggered already" : "due at once");
	if (src) {
		struct fsrc *s = xcalloc(sizeof(*s));

		s->src = src;
		s->cond = cond;
		atomic_fetch_add(&n_srcs, 1);
		srctab_set((int)below(g, NSRCSLOTS), s);
	} else if (cond) {
		atomic_fetch_sub(&n_conds, 1);
		free(cond); /* no source: never called */
	}
}

/* ---- the fuzzer's operations ---- */

static void op_new(struct rng *g)
{
	struct cfd_token *t = NULL;
	unsigned id = atomic_fetch_add(&rec_ids, 1);
	char name[24];

	snprintf(name, sizeof(name), "t%u", id);
	CHECK(cfd_token_new(&t, name) == 0 && t, "cfd_token_new");
	tab_set(pick_slot(g), rec_new(t, id, name, K_NEW, NULL, 0, NULL));
}

/* Make a token with parents from the table. */
static void make_derived(struct rng *g, enum kind kind)
{
	struct frec *par[MAXPAR];
	struct cfd_token *ptoks[MAXPAR], *t = NULL;
	unsigned id = atomic_fetch_add(&rec_ids, 1);
	bool any_done = false, all_done = true;
	int np, ret;
	char name[24], chain_name[4200];
	struct frec *r;

	np = kind == K_CHILD ? 1 : kind == K_CHAIN ? 2 : 1 + (int)below(g, 4);
	for (int i = 0; i < np; i++) {
		par[i] = tab_get(pick_slot(g));
		if (!par[i]) {
			for (int j = 0; j < i; j++)
				rec_put(par[j]);
			return;
		}
		ptoks[i] = par[i]->tok;
	}
	for (int i = 0; i < np; i++) {
		bool d = infer_done(par[i]);

		any_done = any_done || d;
		all_done = all_done && d;
	}
	snprintf(name, sizeof(name), "%c%u", "tcCAaI"[kind], id);
	switch (kind) {
	case K_CHILD:
		ret = cfd_token_child(&t, ptoks[0], name);
		break;
	case K_CHAIN:
		snprintf(chain_name, 4097, "%s:%s", cfd_token_name(ptoks[0]),
			 cfd_token_name(ptoks[1]));
		ret = cfd_token_chain(&t, ptoks[0], ptoks[1]);
		break;
	case K_ANY:
		ret = cfd_token_any_of(&t, name, ptoks, (size_t)np);
		break;
	default:
		ret = cfd_token_all_of(&t, name, ptoks, (size_t)np);
		break;
	}
	CHECK(ret == 0 && t, "making a %s token: %d", kind_names[kind], ret);
	if (kind == K_CHAIN)
		CHECK(strcmp(cfd_token_name(t), chain_name) == 0,
		      "chain named \"%.40s\", not \"%.40s\"", cfd_token_name(t),
		      chain_name);
	/* Nobody else has it yet (not even the reaper: it has no record):
	 * triggered means born so. */
	if (cfd_token_triggered(t)) {
		int reason = cfd_token_reason(t);
		bool ok = true;

		for (int i = 0; i < np; i++) {
			bool pt = cfd_token_triggered(ptoks[i]);

			ok =
			    kind == K_ALL ? ok && pt : (i == 0 ? pt : ok || pt);
		}
		CHECK(ok, "token %u (%s): born triggered, parents pending", id,
		      kind_names[kind]);
		CHECK(reason == (kind == K_ALL ? CFD_REASON_ALL_OF
					       : CFD_REASON_PARENT),
		      "token %u (%s): born triggered with reason %d", id,
		      kind_names[kind], reason);
		atomic_fetch_add(&st_born, 1);
	}
	r = rec_new(t, id, kind == K_CHAIN ? NULL : name, kind, par, np, NULL);
	if (kind == K_ALL ? all_done : any_done) {
		CHECK(cfd_token_triggered(t),
		      "token %u (%s): made under parents whose trigger had "
		      "completed, and pending",
		      id, kind_names[kind]);
		mark_done(r, D_BORN);
		if (chance(g, 50))
			fd_check_done(r, "born triggered");
	}
	tab_set(pick_slot(g), r);
}

static void op_child(struct rng *g)
{
	make_derived(g, K_CHILD);
}

static void op_chain(struct rng *g)
{
	make_derived(g, K_CHAIN);
}

static void op_any(struct rng *g)
{
	make_derived(g, K_ANY);
}

static void op_all(struct rng *g)
{
	make_derived(g, K_ALL);
}

static void op_drop(struct rng *g)
{
	tab_set(pick_slot(g), NULL);
}

static void op_ref(struct rng *g)
{
	struct frec *r = tab_get(pick_slot(g));
	struct cfd_token *t;

	if (!r)
		return;
	t = cfd_token_ref(r->tok);
	CHECK(t == r->tok, "cfd_token_ref returned another token");
	if (chance(g, 50)) {
		cfd_token_unrefp(&t);
		CHECK(!t, "cfd_token_unrefp left the pointer");
	} else {
		CHECK(!cfd_token_unref(t), "cfd_token_unref: not NULL");
	}
	/* The same record in a second slot. */
	tab_set(pick_slot(g), r);
}

static void op_trigger(struct rng *g)
{
	struct frec *r = tab_get(pick_slot(g));

	if (!r)
		return;
	do_trigger(g, r);
	rec_put(r);
}

static void op_observe(struct rng *g)
{
	struct frec *r = tab_get(pick_slot(g));

	if (!r)
		return;
	observe(g, r);
	rec_put(r);
}

static void op_fd(struct rng *g)
{
	struct frec *r = tab_get(pick_slot(g));

	if (!r)
		return;
	fd_op(g, r);
	rec_put(r);
}

static void op_register(struct rng *g)
{
	struct frec *r = tab_get(pick_slot(g)), *target = NULL;

	if (!r)
		return;
	if (chance(g, 60))
		target = tab_get(pick_slot(g));
	do_register(g, r, target);
	if (target)
		rec_put(target);
	rec_put(r);
}

static void op_unregister(struct rng *g)
{
	regtab_set((int)below(g, NREGSLOTS), NULL);
}

static void op_source(struct rng *g)
{
	struct frec *r = tab_get(pick_slot(g));

	if (!r)
		return;
	add_source(g, r);
	rec_put(r);
}

static void op_source_free(struct rng *g)
{
	srctab_set((int)below(g, NSRCSLOTS), NULL);
}

static void op_pipe(struct rng *g)
{
	int i = (int)below(g, NPIPES);
	unsigned what = below(g, 100);
	struct fpipe *p;

	if (what < 25) {
		pipe_set(i, pipe_new());
		return;
	}
	p = pipe_get(i);
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->wfd >= 0) {
		if (what < 75) {
			ssize_t n = write(p->wfd, "x", 1);

			CHECK(n == 1 || errno == EAGAIN, "write to a pipe: %s",
			      strerror(errno));
		} else {
			close(p->wfd);
			p->wfd = -1;
		}
	}
	pthread_mutex_unlock(&p->lock);
	pipe_put(p);
}

/* Dispatch the watchers this thread drives, until r triggers. */
static bool wait_triggered(struct frec *r, int ms)
{
	int64_t end = t_now_ns() + CFD_MSEC(ms);

	while (!cfd_token_triggered(r->tok)) {
		if (t_now_ns() > end)
			return false;
		for (int i = 3; i < NWATCHERS; i++) {
			int d = cfd_watcher_dispatch(W[i]);

			CHECK(d >= 0, "dispatch: %d", d);
		}
		cfd_token_wait(r->tok, CFD_USEC(500));
	}
	return true;
}

static void check_import(struct frec *r)
{
	if (r->kind != K_IMPORT || !r->link || !atomic_load(&r->link->ready))
		return;
	atomic_fetch_add(&st_imports_checked, 1);
	CHECK(wait_triggered(r, WAIT_MS),
	      "import %u: pending %d ms after its exporter's trigger "
	      "completed or the exporter was freed",
	      r->id, WAIT_MS);
}

static void op_export(struct rng *g)
{
	struct frec *r = tab_get(pick_slot(g)), *ir;
	struct cfd_token *imp = NULL;
	bool sock = chance(g, 40), write_shared = false, tracked = false;
	unsigned flags = chance(g, 30) ? CFD_EXPORT_SHARED : 0;
	struct cfd_watcher *wexp = W[below(g, NWATCHERS)];
	struct cfd_watcher *wimp = W[below(g, NWATCHERS)];
	unsigned id = atomic_fetch_add(&rec_ids, 1);
	struct flink *l;
	char name[24];
	int ret;

	if (!r)
		return;
	snprintf(name, sizeof(name), "I%u", id);
	if (!sock) {
		int fd;

		if (chance(g, 10))
			flags |= CFD_EXPORT_INHERIT;
		fd = cfd_token_export_fd(r->tok, wexp, flags);
		CHECK(fd >= 0, "token %u: export: %d", r->id, fd);
		ret = cfd_token_import_fd(&imp, fd, name, wimp);
		CHECK(ret == 0 && imp, "import of token %u: %d", r->id, ret);
		if ((flags & CFD_EXPORT_SHARED) && chance(g, 30)) {
			uint64_t one = 1;

			write_shared = true;
			atomic_store(&r->shared_written, true);
			CHECK(write(fd, &one, sizeof(one)) == sizeof(one),
			      "write to a shared export: %s", strerror(errno));
		}
		close(fd);
	} else {
		int sv[2];

		flags &= CFD_EXPORT_SHARED;
		CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) ==
			  0,
		      "socketpair: %s", strerror(errno));
		ret = cfd_token_send(sv[0], r->tok, wexp, flags);
		CHECK(ret == 0, "token %u: send: %d", r->id, ret);
		ret = cfd_token_recv(&imp, sv[1], name, wimp);
		CHECK(ret == 0 && imp, "token %u: recv: %d", r->id, ret);
		close(sv[0]);
		close(sv[1]);
	}
	l = xcalloc(sizeof(*l));
	atomic_init(&l->refs, 1);
	l->shared = flags & CFD_EXPORT_SHARED;
	atomic_fetch_add(&n_links, 1);
	pthread_mutex_lock(&r->lock);
	if (r->nlinks < MAXLINKS) {
		atomic_fetch_add(&l->refs, 1);
		r->links[r->nlinks++] = l;
		tracked = true;
	}
	pthread_mutex_unlock(&r->lock);
	if (atomic_load(&r->done))
		atomic_store(&l->ready, true);
	if (!tracked) {
		link_put(l);
		l = NULL;
	}
	ir = rec_new(imp, id, name, K_IMPORT, NULL, 0, l);
	if (write_shared)
		CHECK(wait_triggered(r, WAIT_MS),
		      "token %u: pending %d ms after a write to its shared "
		      "export",
		      r->id, WAIT_MS);
	if (chance(g, 30))
		check_import(ir);
	tab_set(pick_slot(g), ir);
	rec_put(r);
}

static void op_check_import(struct rng *g)
{
	struct frec *r = tab_get(pick_slot(g));

	if (!r)
		return;
	check_import(r);
	rec_put(r);
}

static void op_dispatch(struct rng *g)
{
	int i = 1 + (int)below(g, NWATCHERS - 1), r;

	if (i >= 3 && chance(g, 70) &&
	    !(poll_fd(cfd_watcher_fd(W[i]), 0) & POLLIN))
		return;
	r = cfd_watcher_dispatch(W[i]);
	atomic_fetch_add(&st_dispatches, 1);
	CHECK(r >= 0 || (i < 3 && r == -EBUSY), "dispatch of watcher %d: %d", i,
	      r);
}

/* Stop a watcher with its own thread, dispatch it here, start it again. */
static void op_bounce(struct rng *g)
{
	int i = 1 + (int)below(g, 2), r;

	r = cfd_watcher_stop(W[i]);
	CHECK(r == 0 || r == -EALREADY, "stop of watcher %d: %d", i, r);
	if (r < 0)
		return;
	atomic_fetch_add(&st_bounces, 1);
	for (int k = 0; k < 3; k++) {
		int d = cfd_watcher_dispatch(W[i]);

		CHECK(d >= 0 || d == -EBUSY, "dispatch of stopped watcher: %d",
		      d);
	}
	r = cfd_watcher_start(W[i]);
	CHECK(r == 0 || r == -EALREADY, "start of watcher %d: %d", i, r);
}

/* Trigger any live token, reachable from the table or not. */
static void op_reap(struct rng *g)
{
	struct frec *r = NULL;

	pthread_mutex_lock(&live_lock);
	if (nlive) {
		r = live[below(g, (unsigned)nlive)];
		rec_get(r);
	}
	pthread_mutex_unlock(&live_lock);
	if (!r)
		return;
	atomic_fetch_add(&st_reaped, 1);
	do_trigger(g, r);
	rec_put(r);
}

static const struct op {
	const char *name;
	void (*fn)(struct rng *g);
	unsigned weight;
} ops[] = {
	{ "new", op_new, 80 },
	{ "child", op_child, 70 },
	{ "chain", op_chain, 30 },
	{ "any-of", op_any, 30 },
	{ "all-of", op_all, 30 },
	{ "drop", op_drop, 90 },
	{ "ref", op_ref, 40 },
	{ "trigger", op_trigger, 90 },
	{ "observe", op_observe, 70 },
	{ "fd", op_fd, 90 },
	{ "register", op_register, 90 },
	{ "unregister", op_unregister, 60 },
	{ "source", op_source, 90 },
	{ "source-free", op_source_free, 60 },
	{ "pipe", op_pipe, 30 },
	{ "export", op_export, 20 },
	{ "check-import", op_check_import, 20 },
	{ "dispatch", op_dispatch, 60 },
	{ "reap", op_reap, 10 },
	{ "bounce", op_bounce, 1 },
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

static unsigned ops_total_weight;

static void *fz_thread_main(void *arg)
{
	struct fz_thread *t = arg;

	while (!atomic_load(&fz_stop)) {
		unsigned k = below(&t->g, ops_total_weight);
		size_t i = 0;
		unsigned long n;

		pend_drain();
		if (atomic_load(&n_recs) > LIVE_CAP) {
			atomic_store(&t->op, "reap (over the cap)");
			op_reap(&t->g);
		}
		while (k >= ops[i].weight)
			k -= ops[i++].weight;
		atomic_store(&t->op, ops[i].name);
		ops[i].fn(&t->g);
		t->counts[i]++;
		n = atomic_fetch_add(&t->ops, 1) + 1;
		if (fz_max_ops &&
		    atomic_fetch_add(&st_ops, 1) + 1 >= fz_max_ops)
			atomic_store(&fz_stop, true);
		if (n % 32 == 0 && t_now_ns() >= fz_end_ns)
			atomic_store(&fz_stop, true);
	}
	atomic_store(&t->op, "(draining)");
	pend_drain();
	atomic_store(&t->op, "(done)");
	atomic_store(&t->done, true);
	return NULL;
}

/* ---- the watchdog: a hang is a failure too, with the seed ---- */

static atomic_bool wd_stop;

static void *watchdog_main(void *arg)
{
	unsigned long last[NTHREADS] = { 0 };
	int64_t since[NTHREADS];
	int64_t limit = (int64_t)(fz_seconds * 1e9) + CFD_SEC(240);

	(void)arg;
	for (int i = 0; i < NTHREADS; i++)
		since[i] = t_now_ns();
	while (!atomic_load(&wd_stop)) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		int64_t now;

		nanosleep(&ts, NULL);
		now = t_now_ns();
		for (int i = 0; i < NTHREADS; i++) {
			unsigned long n = atomic_load(&fz_threads[i].ops);

			if (atomic_load(&fz_threads[i].done)) {
				since[i] = now;
			} else if (n != last[i]) {
				last[i] = n;
				since[i] = now;
			} else if (now - since[i] > CFD_SEC(STUCK_S)) {
				FAIL("thread %d stuck for %d s in op %s", i,
				     STUCK_S, atomic_load(&fz_threads[i].op));
			}
		}
		if (now - fz_start_ns > limit) {
			for (int i = 0; i < NTHREADS; i++)
				fprintf(stderr, "fuzz: thread %d in op %s\n", i,
					atomic_load(&fz_threads[i].op));
			FAIL("no end after %.0f s (phase: %s)",
			     (double)(now - fz_start_ns) / 1e9,
			     atomic_load(&fz_phase));
		}
	}
	return NULL;
}

/* ---- the end: free everything, check that nothing is left ---- */

static void clear_tables(void)
{
	pend_drain();
	for (int i = 0; i < NREGSLOTS; i++)
		regtab_set(i, NULL);
	for (int i = 0; i < NSRCSLOTS; i++)
		srctab_set(i, NULL);
	for (int i = 0; i < NSLOTS; i++)
		tab_set(i, NULL);
	pend_drain();
}

static void cleanup(struct rng *g)
{
	int64_t end;

	atomic_store(&fz_phase, "cleanup: the tables");
	clear_tables();
	/* What is left is held by handle-less callbacks (and their
	 * parents): triggering runs them. */
	atomic_store(&fz_phase, "cleanup: triggering what is left");
	end = t_now_ns() + CFD_SEC(30);
	for (;;) {
		struct frec **all;
		size_t n;

		pthread_mutex_lock(&live_lock);
		n = nlive;
		all = calloc(n ? n : 1, sizeof(*all));
		CHECK(all, "out of memory");
		for (size_t i = 0; i < n; i++)
			all[i] = rec_get(live[i]);
		pthread_mutex_unlock(&live_lock);
		if (n == 0) {
			free(all);
			break;
		}
		for (size_t i = 0; i < n; i++) {
			do_trigger(g, all[i]);
			rec_put(all[i]);
		}
		free(all);
		for (int i = 3; i < NWATCHERS; i++)
			cfd_watcher_dispatch(W[i]);
		clear_tables();
		CHECK(t_now_ns() < end,
		      "%zu tokens still held by the fuzzer 30 s after the end",
		      n);
		sched_yield();
	}
	clear_tables();
	atomic_store(&fz_phase, "cleanup: pipes and watchers");
	for (int i = 0; i < NPIPES; i++)
		pipe_set(i, NULL);
	CHECK(atomic_load(&n_recs) == 0 && atomic_load(&n_regs) == 0 &&
		  atomic_load(&n_srcs) == 0 && atomic_load(&n_conds) == 0 &&
		  atomic_load(&n_pipes) == 0 && atomic_load(&n_links) == 0,
	      "left: %ld records, %ld registrations, %ld sources, %ld "
	      "conditions, %ld pipes, %ld links",
	      atomic_load(&n_recs), atomic_load(&n_regs), atomic_load(&n_srcs),
	      atomic_load(&n_conds), atomic_load(&n_pipes),
	      atomic_load(&n_links));
	for (int i = 1; i < 3; i++) {
		int r = cfd_watcher_stop(W[i]);

		CHECK(r == 0 || r == -EALREADY, "stop of watcher %d: %d", i, r);
	}
	for (int i = 1; i < NWATCHERS; i++)
		W[i] = cfd_watcher_unref(W[i]);
	grave_flush();
}

/* The fds open now, as a bitmap of the first 64 Ki. */
#define FD_BITS 65536
static void fd_set_now(unsigned char *set)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	CHECK(d, "opendir /proc/self/fd");
	memset(set, 0, FD_BITS / 8);
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] != '.' && fd != dirfd(d) && fd < FD_BITS)
			set[fd / 8] |= (unsigned char)(1u << (fd % 8));
	}
	closedir(d);
}

static unsigned char fds_before[FD_BITS / 8], fds_now[FD_BITS / 8];

/* fds closed by a watcher thread may lag our last release a moment. */
static void check_fds(void)
{
	int64_t end = t_now_ns() + CFD_SEC(5);

	for (;;) {
		int leaked = -1;

		fd_set_now(fds_now);
		for (int fd = 0; fd < FD_BITS && leaked < 0; fd++)
			if ((fds_now[fd / 8] & ~fds_before[fd / 8]) &
			    (1u << (fd % 8)))
				leaked = fd;
		if (leaked < 0)
			return;
		if (t_now_ns() > end) {
			char path[64], target[256] = "?";
			ssize_t n;

			snprintf(path, sizeof(path), "/proc/self/fd/%d",
				 leaked);
			n = readlink(path, target, sizeof(target) - 1);
			if (n >= 0)
				target[n] = '\0';
			FAIL("fd %d (%s) open after everything was freed",
			     leaked, target);
		}
		sched_yield();
	}
}

START_TEST(test_fuzz)
{
	struct cfd_watcher *dw = NULL;
	pthread_t wd;
	struct rng g = { fz_seed ^ 0x5eed };
	unsigned long total = 0;
	double secs;

	install_crash_handlers();
	ck_assert_int_eq(cfd_watcher_default(&dw), 0);
	dw = cfd_watcher_unref(dw);
	/* The default watcher lives as long as the process: not a leak. */
	t_fd_snapshot();
	fd_set_now(fds_before);

	for (int i = 1; i < NWATCHERS; i++) {
		ck_assert_int_eq(cfd_watcher_new(&W[i]), 0);
		if (i < 3)
			ck_assert_int_eq(cfd_watcher_start(W[i]), 0);
	}
	for (int i = 0; i < NPIPES; i++)
		pipetab[i] = pipe_new();
	for (size_t i = 0; i < NOPS; i++)
		ops_total_weight += ops[i].weight;

	fz_start_ns = t_now_ns();
	fz_end_ns = fz_start_ns + (int64_t)(fz_seconds * 1e9);
	atomic_store(&fz_phase, "running");
	ck_assert_int_eq(pthread_create(&wd, NULL, watchdog_main, NULL), 0);
	for (int i = 0; i < NTHREADS; i++) {
		fz_threads[i].id = i;
		fz_threads[i].g.s = fz_seed + (uint64_t)i;
		atomic_init(&fz_threads[i].op, "(start)");
		ck_assert_int_eq(pthread_create(&fz_threads[i].th, NULL,
						fz_thread_main, &fz_threads[i]),
				 0);
	}
	for (int i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_join(fz_threads[i].th, NULL), 0);
	secs = (double)(t_now_ns() - fz_start_ns) / 1e9;

	cleanup(&g);
	atomic_store(&fz_phase, "cleanup: fds");
	check_fds();
	atomic_store(&wd_stop, true);
	pthread_join(wd, NULL);

	for (int i = 0; i < NTHREADS; i++)
		total += atomic_load(&fz_threads[i].ops);
	printf("fuzz: %lu operations in %.1f s: %.0f ops/s\n", total, secs,
	       (double)total / secs);
	printf("fuzz:");
	for (size_t i = 0; i < NOPS; i++) {
		unsigned long n = 0;

		for (int k = 0; k < NTHREADS; k++)
			n += fz_threads[k].counts[i];
		printf(" %s=%lu", ops[i].name, n);
	}
	printf("\nfuzz: won triggers=%lu callbacks=%lu handle-less=%lu "
	       "last references dropped in callbacks=%lu fd checks=%lu "
	       "born triggered=%lu imports checked=%lu dispatches=%lu "
	       "watcher restarts=%lu reaped=%lu graph checks=%lu callbacks "
	       "checked run=%lu causes compared=%lu\n",
	       atomic_load(&st_wins), atomic_load(&st_cb_runs),
	       atomic_load(&st_anon_runs), atomic_load(&st_last_in_cb),
	       atomic_load(&st_fd_checks), atomic_load(&st_born),
	       atomic_load(&st_imports_checked), atomic_load(&st_dispatches),
	       atomic_load(&st_bounces), atomic_load(&st_reaped),
	       atomic_load(&st_graph_checks), atomic_load(&st_reg_checks),
	       atomic_load(&st_cause_checks));
	fflush(stdout);
}
END_TEST

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);
	char *end;
	unsigned long long v;

	if (!s || !*s)
		return dflt;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end) {
		fprintf(stderr, "fuzz: bad %s=%s\n", name, s);
		exit(2);
	}
	return v;
}

int main(void)
{
	const char *secs = getenv("CFD_FUZZ_SECONDS");
	Suite *s = suite_create("fuzz");
	TCase *tc;
	int rc;

	if (secs && *secs) {
		char *end;

		fz_seconds = strtod(secs, &end);
		if (*end || fz_seconds <= 0) {
			fprintf(stderr, "fuzz: bad CFD_FUZZ_SECONDS=%s\n",
				secs);
			return 2;
		}
	}
	fz_max_ops = env_u64("CFD_FUZZ_OPS", 0);
	{
		uint64_t clock_seed =
		    (uint64_t)t_now_ns() ^ ((uint64_t)getpid() << 32);
		struct rng g = { clock_seed };

		fz_seed = env_u64("CFD_FUZZ_SEED", rnd(&g));
	}
	replay_len = (size_t)snprintf(
	    replay, sizeof(replay),
	    "fuzz: FAILED, replay with CFD_FUZZ_SEED=0x%016" PRIx64 "\n",
	    fz_seed);
	printf("fuzz: seed=0x%016" PRIx64 " threads=%d duration=%gs", fz_seed,
	       NTHREADS, fz_seconds);
	if (fz_max_ops)
		printf(" ops=%" PRIu64, fz_max_ops);
	printf("\n");
	fflush(stdout);

	tc = t_tcase_timeout("fuzz", fz_seconds + 300);
	tcase_add_test(tc, test_fuzz);
	suite_add_tcase(s, tc);
	rc = t_run_suite(s);
	if (rc != EXIT_SUCCESS) {
		printf("%s", replay);
		fflush(stdout);
	}
	return rc;
}
