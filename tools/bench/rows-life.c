/* SPDX-License-Identifier: MIT */
/*
 * Life-cycle rows: memory per fd-less token, create + free of a fd-less
 * child against std::stop_callback register + deregister (and a check,
 * under seccomp, that no system call is made) with its own cost in ns,
 * and GCancellable's create + free.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include <cancelfd.h>

#include "bench.h"

#define LIFE_K 4096 /* objects per sample */

static struct cfd_token **tokens(size_t n)
{
	static struct cfd_token **v;
	static size_t cap;

	if (n > cap) {
		free(v);
		v = calloc(n, sizeof(*v));
		if (!v)
			die("out of memory");
		cap = n;
	}
	return v;
}

static void check(int r, const char *what)
{
	if (r < 0)
		die("%s: %s", what, strerror(-r));
}

/* ---- memory ---- */

void rows_memory(void)
{
	const size_t n = 1000000;
	struct row *r = row_new("memory", "memory per fd-less child token", "B",
				NULL, ROW_ABSOLUTE, TARGET_LE, 128);
	struct cfd_token **t = tokens(n), *root;
	long rss0, rss1;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
	struct mallinfo2 m0, m1;
#endif

	memset(t, 0, n * sizeof(*t)); /* touch the array before measuring */
	check(cfd_token_new(&root, "root"), "cfd_token_new");
	malloc_trim(0);
	rss0 = rss_bytes();
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
	m0 = mallinfo2();
#endif
	for (size_t i = 0; i < n; i++)
		check(cfd_token_child(&t[i], root, ""), "cfd_token_child");
	rss1 = rss_bytes();
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
	m1 = mallinfo2();
	row_note(r, "heap in use (mallinfo2) %.1f B per token",
		 (double)(m1.uordblks - m0.uordblks) / (double)n);
#endif
	row_note(r, "RSS growth over %zu children of one root, empty names", n);
	row_round_begin(r);
	row_cfd(r, (double)(rss1 - rss0) / (double)n);
	row_round_end(r);
	for (size_t i = 0; i < n; i++)
		cfd_token_unref(t[i]);
	cfd_token_unref(root);
	malloc_trim(0);
}

/* ---- create + free ---- */

/* ns per cfd_token_child + cfd_token_unref: k made, then k freed. */
static double cfd_child_life(struct cfd_token *root, size_t k)
{
	struct cfd_token **t = tokens(k);
	int64_t t0, t1;

	t0 = now_ns();
	for (size_t i = 0; i < k; i++)
		if (cfd_token_child(&t[i], root, "") < 0)
			die("cfd_token_child failed");
	for (size_t i = 0; i < k; i++)
		cfd_token_unref(t[i]);
	t1 = now_ns();
	return (double)(t1 - t0) / (double)k;
}

/* ns per cfd_token_new + cfd_token_unref (no fd). */
static double cfd_token_life(size_t k)
{
	struct cfd_token **t = tokens(k);
	int64_t t0, t1;

	t0 = now_ns();
	for (size_t i = 0; i < k; i++)
		if (cfd_token_new(&t[i], "") < 0)
			die("cfd_token_new failed");
	for (size_t i = 0; i < k; i++)
		cfd_token_unref(t[i]);
	t1 = now_ns();
	return (double)(t1 - t0) / (double)k;
}

/* Trigger a root with k fd-less children, then free them all. */
static void cfd_fan_once(size_t k)
{
	struct cfd_token **t = tokens(k), *root;

	if (cfd_token_new(&root, "") < 0)
		die("cfd_token_new failed");
	for (size_t i = 0; i < k; i++)
		if (cfd_token_child(&t[i], root, "") < 0)
			die("cfd_token_child failed");
	cfd_token_trigger(root);
	for (size_t i = 0; i < k; i++)
		cfd_token_unref(t[i]);
	cfd_token_unref(root);
}

/* ---- "no syscall": counted under seccomp in a forked child ---- */

#if defined(__x86_64__)
#define SC_ARCH AUDIT_ARCH_X86_64
#define SC_SET_RET(uc, v) ((uc)->uc_mcontext.gregs[REG_RAX] = (v))
#elif defined(__aarch64__)
#define SC_ARCH AUDIT_ARCH_AARCH64
#define SC_SET_RET(uc, v) ((uc)->uc_mcontext.regs[0] = (v))
#endif

struct sc_counts {
	long count[3];
	long last_nr;
	int phase;
	int done;
};

#ifdef SC_ARCH
static struct sc_counts *sc;

static void on_sigsys(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;

	(void)sig;
	sc->count[sc->phase]++;
	sc->last_nr = si->si_syscall;
	SC_SET_RET(uc, -ENOSYS);
}

static void sc_child(struct cfd_token *root)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SC_ARCH, 0, 5),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit_group, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rt_sigreturn, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]),
				   .filter = f };
	struct sigaction sa;

	/* Warm up: heap grown, lazy bindings resolved. */
	cfd_child_life(root, LIFE_K);
	cfd_fan_once(LIFE_K);
	cfd_token_life(LIFE_K);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSYS, &sa, NULL);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
		_exit(3);
	sc->phase = 0;
	cfd_child_life(root, LIFE_K);
	sc->phase = 1;
	cfd_fan_once(LIFE_K);
	sc->phase = 2;
	cfd_token_life(LIFE_K);
	sc->done = 1;
	_exit(0);
}

/* -1 when it could not be checked. */
static int count_syscalls(struct sc_counts *out)
{
	struct cfd_token *root;
	int status;
	pid_t pid;

	sc = mmap(NULL, sizeof(*sc), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sc == MAP_FAILED)
		return -1;
	memset(sc, 0, sizeof(*sc));
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		/* Tokens of the parent are foreign here (-ECHILD). */
		if (cfd_token_new(&root, "root") < 0)
			_exit(4);
		sc_child(root);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0 || !sc->done) {
		munmap(sc, sizeof(*sc));
		return -1;
	}
	*out = *sc;
	munmap(sc, sizeof(*sc));
	return 0;
}
#else
static int count_syscalls(struct sc_counts *out)
{
	(void)out;
	return -1;
}
#endif

void rows_life(void)
{
	struct row *child, *glife, *glink;
	struct cfd_token *root;
	struct sc_counts sc_out;
	const int rounds = Q(4, 60);

	child =
	    row_new("life", "create+free fd-less child token", "ns",
		    "std::stop_callback reg+dereg", ROW_TIME, TARGET_LE, 2.0);
	/* The library's total per create+free, from the same samples. */
	row_own(child, "  own cost: create+free fd-less child", "ns", OWN_CFD,
		36);
	glife = row_new("life", "GLib: create+free token (no fd)", "ns",
			"g_cancellable_new+unref", ROW_TIME, TARGET_LT, 1.0);
	glink =
	    row_new("life", "GLib: create+free linked child", "ns",
		    "GCancellable new+connect+disc.", ROW_TIME, TARGET_LT, 1.0);
	if (!cxx_available())
		row_unavailable(child, "no C++ compiler");
	if (!glib_available()) {
		row_unavailable(glife, "GLib not found");
		row_unavailable(glink, "GLib not found");
	}
	check(cfd_token_new(&root, "root"), "cfd_token_new");

	/*
	 * Two phases, so that GLib's allocations do not disturb the malloc
	 * state of the comparison with the C++ baseline.  In each round the
	 * side that goes first alternates.
	 */
	cfd_child_life(root, LIFE_K); /* warm-up, not recorded */
	cxx_life(LIFE_K);
	for (int i = 0; i < rounds; i++) {
		row_round_begin(child);
		for (int s = 0; s < 2; s++) {
			if ((s + i) % 2 == 0)
				row_cfd(child, cfd_child_life(root, LIFE_K));
			else if (cxx_available())
				row_base(child, cxx_life(LIFE_K));
		}
		row_round_end(child);
	}

	cfd_token_life(LIFE_K);
	glib_life(LIFE_K);
	glib_link_life(LIFE_K);
	for (int i = 0; i < rounds; i++) {
		row_round_begin(glife);
		row_round_begin(glink);
		for (int s = 0; s < 2; s++) {
			if ((s + i) % 2 == 0) {
				row_cfd(glife, cfd_token_life(LIFE_K));
				row_cfd(glink, cfd_child_life(root, LIFE_K));
			} else if (glib_available()) {
				row_base(glife, glib_life(LIFE_K));
				row_base(glink, glib_link_life(LIFE_K));
			}
		}
		row_round_end(glife);
		row_round_end(glink);
	}
	cfd_token_unref(root);

	row_note(child,
		 "%d made then %d freed per sample under one root; "
		 "stop_callbacks in preallocated storage",
		 LIFE_K, LIFE_K);
	if (count_syscalls(&sc_out) < 0) {
		row_note(
		    child,
		    "system calls not checked: the seccomp child could not run here");
	} else {
		row_note(child,
			 "system calls counted under seccomp: %ld in %d "
			 "create+free, %ld in a trigger of %d fd-less "
			 "children, %ld in %d cfd_token_new+unref",
			 sc_out.count[0], LIFE_K, sc_out.count[1], LIFE_K,
			 sc_out.count[2], LIFE_K);
		if (sc_out.count[0] || sc_out.count[1] || sc_out.count[2]) {
			char why[64];

			snprintf(why, sizeof(why), "system call %ld made",
				 sc_out.last_nr);
			row_fail(child, why);
		}
	}
}
