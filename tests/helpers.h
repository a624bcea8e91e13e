/* SPDX-License-Identifier: MIT */
#ifndef CFD_TEST_HELPERS_H
#define CFD_TEST_HELPERS_H

/*
 * Shared by every Check suite: a checked fixture that fails a test which
 * leaves an fd open that was not open before it, bounded waits on fds (no
 * sleeping and hoping), and the runner's main().
 */

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* Generous bound for "this fd must become readable": never a race. */
#define T_WAIT_MS 10000

/* A test case with the fd-leak fixture and a timeout for slow machines. */
TCase *t_tcase(const char *name);
/* Same, with a custom timeout in seconds (sanitizers slow things down). */
TCase *t_tcase_timeout(const char *name, double seconds);

/* Record the open fds now; t_fd_check() fails the test if the set grew.
 * The fixture calls both; a test may call t_fd_snapshot() again after
 * creating something that lives for the whole process (a default watcher). */
void t_fd_snapshot(void);
void t_fd_check(void);
int t_count_fds(void);

/* poll() for POLLIN (or hang-up) on fd for at most ms milliseconds. */
bool t_fd_readable(int fd, int ms);

int64_t t_now_ns(void);
/* Wait until the clock has passed t (bounded; the clock always moves). */
void t_wait_past(int64_t t);

/* How many threads this process has now. */
int t_threads_in_process(void);

/* Whether fd is open in this process. */
bool t_fd_is_open(int fd);
/* What fd's link in /proc/self/fd names ("pipe:[1234]",
 * "anon_inode:[eventfd]"), in buf; "" when it cannot be read. */
const char *t_fd_target(int fd, char *buf, size_t size);
/* Whether fd's link names exactly target, and whether fd is an eventfd. */
bool t_fd_is(int fd, const char *target);
bool t_fd_is_eventfd(int fd);
/* An eventfd's counter, read from /proc/self/fdinfo without reading (and
 * so without draining) the fd itself; -1 if it cannot be read. */
int64_t t_eventfd_count(int fd);

/*
 * Wait (at most ms milliseconds) until thread `tid` sleeps in the kernel
 * (state S in /proc).  Used to let a waiter reach its blocking call before
 * the test wakes it; a test must not depend on it for its verdict, only for
 * exercising the sleeping path.  Returns whether the thread was seen asleep.
 */
bool t_thread_sleeping(pid_t tid, int ms);
pid_t t_gettid(void);

/* pidfd_open(2): an fd that is readable once process pid has exited. */
int t_pidfd_open(pid_t pid);

/*
 * Fork; run fn(arg) in the child and _exit() with what it returns.  Returns
 * the child's exit status, or 128 + the signal that killed it; fails the
 * test, with what failed and where, if a T_CHILD_CHECK() failed in the
 * child.  Flushes stdio first so that nothing is written twice.
 */
int t_in_child(int (*fn)(void *), void *arg);

/*
 * A check in a forked child (run by t_in_child(), or by a bare fork() of
 * the test), where Check's assertions cannot be used: on failure, say where
 * (file, line, the expression, the child's pid) on stderr and, in a child
 * of t_in_child(), to the test, and _exit() with a non-zero status (the
 * line number, folded into 1..250).  Usable at any depth of calls.
 */
#define T_CHILD_CHECK(cond)                                        \
	do {                                                       \
		if (!(cond))                                       \
			t_child_failed(__FILE__, __LINE__, #cond); \
	} while (0)

_Noreturn void t_child_failed(const char *file, int line, const char *expr);

/* The one sanitizer switch: sanitizers make everything slower, ASan's
 * quarantine makes memory figures meaningless, and ThreadSanitizer cannot
 * start threads in a child forked from a process that has threads. */
#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define T_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define T_TSAN 1
#endif
#endif
#ifndef T_ASAN
#define T_ASAN 0
#endif
#ifndef T_TSAN
#define T_TSAN 0
#endif

/* Run one suite: prints Check's summary line, returns the exit status. */
int t_run_suite(Suite *s);

struct cfd_token;

/* A callback (cfd_token_on_trigger()) that counts its calls in the int
 * its userdata points to. */
void t_count_call(struct cfd_token *tok, void *counter);

/* A new token (a child of parent), asserted made. */
struct cfd_token *t_new_token(const char *name);
struct cfd_token *t_new_child(struct cfd_token *parent, const char *name);

#endif
