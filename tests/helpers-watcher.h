/* SPDX-License-Identifier: MIT */
#ifndef CFD_TEST_HELPERS_WATCHER_H
#define CFD_TEST_HELPERS_WATCHER_H

/*
 * Shared by the suites that drive watchers and sources: driving an embedded
 * watcher until something happens (bounded, never sleeping and hoping), the
 * default watcher fixture, signal sets, a source the test fires when it
 * says so, and waiting until another thread is asleep in the kernel (to
 * force a race instead of hoping for it).  The code is in
 * helpers-watcher.c.
 */

#include <cancelfd.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "helpers.h"

/* What a failed add must leave in *ret: untouched. */
#define TW_SENTINEL ((struct cfd_source *)(uintptr_t)0x5a5a)

/* A predicate (cfd_source_add_condition()) that is never true. */
bool tw_never(struct cfd_token *tok, void *arg);

/* A new embedded watcher, asserted made. */
struct cfd_watcher *tw_new_watcher(void);

/* Dispatch w whenever its fd is readable until done(arg) is true; false
 * if T_WAIT_MS passed first (or its fd stayed quiet until then). */
bool tw_dispatch_until_fn(struct cfd_watcher *w, bool (*done)(void *),
			  void *arg);
/* ... until tok has triggered. */
bool tw_dispatch_until(struct cfd_watcher *w, struct cfd_token *tok);

/* The library takes signal numbers; these tests keep sets (they also
 * make masks of them).  Both helpers pass the set's members as numbers. */
int tw_add_signals(struct cfd_source **ret, struct cfd_token *tok,
		   struct cfd_watcher *w, const sigset_t *set);
int tw_block(const sigset_t *set);
/* A signal set from a 0-terminated list. */
sigset_t tw_sigset(int first, ...);

/* The signals the tests use, blocked in the calling thread: call it before
 * any thread exists (fixtures do). */
void tw_block_test_signals(void);

/* The default watcher for the tests of a TCase made by tw_tcase_default():
 * made in the setup, after the signals are blocked and before the fd
 * snapshot, since it keeps its fds (and its thread) for the life of the
 * process; the teardown waits until its thread is idle. */
extern struct cfd_watcher *tw_default;
TCase *tw_tcase_default(const char *name);

/* Return once w's thread has finished whatever it was doing: fires on a
 * watcher thread close their fds (and free their tokens) after the token
 * the test waited for has triggered.  A predicate is called in a later
 * round of the thread's loop than any fire already under way. */
void tw_quiesce(struct cfd_watcher *w);

/* Wait until thread tid sleeps in the kernel in futex() (a lock or a
 * wait of the library): the race a test wants is then certain, not hoped
 * for. */
bool tw_wait_thread_in_futex(pid_t tid);

/* Add 1 to an eventfd's counter (it becomes readable). */
void tw_eventfd_signal(int fd);

/* A source that fires when the test says so (tw_eventfd_signal() on the
 * eventfd returned, which the test closes): an fd source.  Unlike a short
 * timeout, it can never fire inside the add, in the calling thread, on a
 * host slow enough that the timeout has passed by then. */
int tw_add_trigger(struct cfd_source **ret, struct cfd_token *tok,
		   struct cfd_watcher *w);

#endif
