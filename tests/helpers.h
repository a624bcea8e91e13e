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
#include <stdint.h>

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

/* Run one suite: prints Check's summary line, returns the exit status. */
int t_run_suite(Suite *s);

#endif
