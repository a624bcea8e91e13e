/* SPDX-License-Identifier: MIT */
#ifndef CANCELFD_H
#define CANCELFD_H

/*
 * cancelfd: cancellation tokens that are file descriptors.
 *
 * A token is a one-way latch (pending -> triggered) that any fd-driven loop
 * can wait on: its fd (an eventfd, made on first request) becomes readable
 * when the token triggers and stays readable.  Tokens form a graph (child,
 * chain, any-of, all-of) along which a trigger travels downwards; sources
 * (timeouts, deadlines, signals, foreign fds, conditions) trigger tokens from
 * outside the program's own calls; <cancelfd-uring.h> cancels pending
 * io_uring operations.
 *
 * Conventions: functions returning int return 0 (or a non-negative value) on
 * success and a negative errno on failure; errno is never the channel.
 * Constructors take the output first and leave it untouched on failure.
 * Times are int64_t nanoseconds on CLOCK_MONOTONIC.  Every object is
 * reference counted and may be used from any thread; an object used in a
 * process other than the one that created it returns -ECHILD.
 *
 * See cancelfd(7) for the model.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header; cfd_version() is the library's at run time. */
#define CFD_VERSION_MAJOR 0
#define CFD_VERSION_MINOR 2
#define CFD_VERSION_PATCH 0
#define CFD_VERSION_NUMBER                                    \
	((CFD_VERSION_MAJOR << 16) | (CFD_VERSION_MINOR << 8) | \
	 CFD_VERSION_PATCH)

#define CFD_USEC(us) ((int64_t)(us)*1000)
#define CFD_MSEC(ms) ((int64_t)(ms)*1000000)
#define CFD_SEC(s) ((int64_t)(s)*1000000000)
/* A timeout that never expires (any negative value works). */
#define CFD_FOREVER ((int64_t)-1)

struct cfd_token;
struct cfd_registration;
struct cfd_watcher;
struct cfd_source;

/* Why a token triggered.  CFD_REASON_NONE while it is pending. */
enum cfd_reason {
	CFD_REASON_NONE = 0,
	CFD_REASON_MANUAL = 1,	  /* cfd_token_trigger() and friends */
	CFD_REASON_TIMEOUT = 2,	  /* a timeout or deadline source */
	CFD_REASON_SIGNAL = 3,	  /* a signal source */
	CFD_REASON_FD = 4,	  /* an fd source, or an imported token */
	CFD_REASON_CONDITION = 5, /* a condition source */
	CFD_REASON_PARENT = 6,	  /* a parent (child, chain, any-of) */
	CFD_REASON_ALL_OF = 7,	  /* the last parent of an all-of token */
};

/* ---- the library ---- */

unsigned cfd_version(void);	       /* as CFD_VERSION_NUMBER */
const char *cfd_version_string(void); /* "MAJOR.MINOR.PATCH" */

/* ---- tokens (token.c) ---- */

int cfd_token_new(struct cfd_token **ret, const char *name);
struct cfd_token *cfd_token_ref(struct cfd_token *tok);
struct cfd_token *cfd_token_unref(struct cfd_token *tok);
void cfd_token_unrefp(struct cfd_token **tokp);

const char *cfd_token_name(const struct cfd_token *tok);

int cfd_token_trigger(struct cfd_token *tok);
int cfd_token_trigger_msg(struct cfd_token *tok, const char *message);
int cfd_token_trigger_from(struct cfd_token *tok, struct cfd_token *from);
bool cfd_token_triggered(const struct cfd_token *tok);
int cfd_token_check(const struct cfd_token *tok);
int cfd_token_wait(struct cfd_token *tok, int64_t timeout_ns);
int cfd_token_fd(struct cfd_token *tok);

int cfd_token_reason(const struct cfd_token *tok);
struct cfd_token *cfd_token_origin(const struct cfd_token *tok);
const char *cfd_token_message(const struct cfd_token *tok);
int cfd_token_signal(const struct cfd_token *tok);
int64_t cfd_token_trigger_time(const struct cfd_token *tok);
const char *cfd_reason_name(int reason);

/* ---- the token graph (graph.c) ---- */

/* The most parents cfd_token_any_of() and cfd_token_all_of() accept. */
#define CFD_MAX_PARENTS (1u << 20)

int cfd_token_child(struct cfd_token **ret, struct cfd_token *parent,
		    const char *name);
int cfd_token_chain(struct cfd_token **ret, struct cfd_token *a,
		    struct cfd_token *b);
int cfd_token_any_of(struct cfd_token **ret, const char *name,
		     struct cfd_token *const *toks, size_t n);
int cfd_token_all_of(struct cfd_token **ret, const char *name,
		     struct cfd_token *const *toks, size_t n);

/* ---- callbacks (callback.c) ---- */

typedef void (*cfd_callback_fn)(struct cfd_token *tok, void *userdata);

/* cfd_token_on_trigger() flags */
#define CFD_CALLBACK_NO_INLINE (1u << 0) /* triggered: -ECANCELED, no call */

int cfd_token_on_trigger(struct cfd_registration **ret, struct cfd_token *tok,
			 cfd_callback_fn fn, void *userdata, unsigned flags);
struct cfd_registration *cfd_registration_free(struct cfd_registration *reg);

/* ---- the watcher (watcher.c) ---- */

/*
 * An epoll set of source fds.  Put cfd_watcher_fd() in any loop and call
 * cfd_watcher_dispatch() when it is readable, or run it on its own thread
 * with cfd_watcher_start().  A NULL watcher means the process-wide default
 * watcher, which runs its own thread (every signal blocked) from first use.
 */
int cfd_watcher_new(struct cfd_watcher **ret);
int cfd_watcher_default(struct cfd_watcher **ret);
struct cfd_watcher *cfd_watcher_ref(struct cfd_watcher *w);
struct cfd_watcher *cfd_watcher_unref(struct cfd_watcher *w);
void cfd_watcher_unrefp(struct cfd_watcher **wp);
int cfd_watcher_fd(struct cfd_watcher *w);
int cfd_watcher_dispatch(struct cfd_watcher *w);
int cfd_watcher_start(struct cfd_watcher *w);
int cfd_watcher_stop(struct cfd_watcher *w);

/* Callable from a signal handler: no lock, no allocation.  signo > 0 records
 * CFD_REASON_SIGNAL with that number, 0 records CFD_REASON_MANUAL.  The
 * watcher completes the fan-out to children and runs the callbacks. */
int cfd_token_trigger_async_safe(struct cfd_token *tok, struct cfd_watcher *w,
				 int signo);

/* ---- sources (source.c) ---- */

/* Called on the watcher's thread; return true to trigger the token. */
typedef bool (*cfd_condition_fn)(struct cfd_token *tok, void *userdata);

int cfd_source_add_timeout(struct cfd_source **ret, struct cfd_token *tok,
			   struct cfd_watcher *w, int64_t timeout_ns);
int cfd_source_add_deadline(struct cfd_source **ret, struct cfd_token *tok,
			    struct cfd_watcher *w, int64_t deadline_ns);
int cfd_source_add_signals(struct cfd_source **ret, struct cfd_token *tok,
			   struct cfd_watcher *w, const int *signals, size_t n);
int cfd_source_add_fd(struct cfd_source **ret, struct cfd_token *tok,
		      struct cfd_watcher *w, int fd);
int cfd_source_add_condition(struct cfd_source **ret, struct cfd_token *tok,
			     struct cfd_watcher *w, cfd_condition_fn fn,
			     void *userdata, int64_t interval_ns);
struct cfd_source *cfd_source_free(struct cfd_source *src);
int cfd_signals_block(const int *signals, size_t n);

/* ---- across processes (export.c) ---- */

/* The environment variable through which a token fd crosses exec. */
#define CFD_ENV "CANCELFD"

/* cfd_token_export_fd() and cfd_token_send() flags */
#define CFD_EXPORT_SHARED \
	(1u << 0) /* the token's eventfd: holder can trigger */
#define CFD_EXPORT_INHERIT (1u << 1) /* without FD_CLOEXEC, to cross exec */

int cfd_token_export_fd(struct cfd_token *tok, struct cfd_watcher *w,
			unsigned flags);
int cfd_token_import_fd(struct cfd_token **ret, int fd, const char *name,
			struct cfd_watcher *w);
int cfd_token_send(int sock, struct cfd_token *tok, struct cfd_watcher *w,
		   unsigned flags);
int cfd_token_recv(struct cfd_token **ret, int sock, const char *name,
		   struct cfd_watcher *w);
int cfd_token_from_env(struct cfd_token **ret, const char *name,
		       struct cfd_watcher *w);

#ifdef __cplusplus
}
#endif

#endif /* CANCELFD_H */
