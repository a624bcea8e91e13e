/* SPDX-License-Identifier: MIT */
#ifndef CFD_INTERNAL_H
#define CFD_INTERNAL_H

/*
 * Shared by the files of lib/: the token layout, its state word, the small
 * futex lock, and the hooks the core offers to the layers built on it
 * (watcher, sources, export).  Nothing here is exported: the library is
 * built with -fvisibility=hidden and a version script.
 */

#include <errno.h>
#include <signal.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cancelfd.h"
#include "common.h"

/* ---- futex and a 4-byte lock ---- */

static inline long cfd_futex(_Atomic uint32_t *addr, int op, uint32_t val,
			     const struct timespec *ts, uint32_t val3)
{
	return syscall(SYS_futex, addr, op, val, ts, NULL, val3);
}

static inline void cfd_futex_wake_all(_Atomic uint32_t *addr)
{
	cfd_futex(addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, 0);
}

/* Sleepers on a token's state word wait for one of two things; the futex
 * bitset keeps a trigger from waking lock waiters and the reverse. */
#define FUTEX_FOR_TRIGGER 1u
#define FUTEX_FOR_LOCK 2u

/* ---- the process a token belongs to ---- */

/*
 * Every object records the fork generation it was made in; a pthread_atfork
 * child handler advances the generation, so an inherited object is detected
 * with one load instead of a getpid() system call.
 */
#define CFD_GEN_MASK 0xfffu /* the generation bits of a token's word */
extern _Atomic uint32_t cfd_fork_generation; /* < CFD_GEN_MASK + 1 */
void cfd_process_init(void);

static inline uint32_t cfd_generation(void)
{
	return atomic_load_explicit(&cfd_fork_generation, memory_order_relaxed);
}

/* ---- listeners: what hangs off a token ---- */

/*
 * A token's listener list holds its child links and its callback
 * registrations.  The low bit of `owner` says which one a node is; the rest
 * is the token the list belongs to.
 */
struct listener {
	struct listener *_Atomic next;
	/* NULL when not on a list.  Atomic because a neighbour's unlink
	 * rewrites it under the list's lock while its own token may test it
	 * for NULL without that lock. */
	struct listener *_Atomic *_Atomic pprev;
	uintptr_t owner;
};

#define LISTENER_LINK 0u
#define LISTENER_REG 1u

static inline struct cfd_token *listener_owner(const struct listener *n)
{
	return (struct cfd_token *)(n->owner & ~(uintptr_t)1);
}

static inline unsigned listener_kind(const struct listener *n)
{
	return (unsigned)(n->owner & 1);
}

/* One parent -> child edge.  It lives inside the child's allocation. */
struct link {
	struct listener node; /* on the parent's list; owner = parent */
	struct cfd_token *child;
};

/* ---- the token ---- */

/*
 * A token's word holds its state (low 32 bits, also the futex word) and its
 * reference count (high 32 bits).  State:
 *   TRIGGERED     one-way; set by the single winning compare-and-swap,
 *                 whose caller then owns the fan-out of this token
 *   WAITERS       a thread sleeps in cfd_token_wait()
 *   LOCKED        the listener list (and fd creation) is being changed
 *   LOCK_WAITERS  a thread sleeps until LOCKED clears
 *   HAS_FD        the eventfd is published (see "The fd" below)
 *   ALL_OF        (fixed at birth) the token counts its parents down
 *   ORIGIN_HELD   it holds a reference to its origin (token_trigger_from)
 *   reason (5 bits), signal number (7), fork generation (12)
 * One word for all three is what makes the graph cheap and race-free:
 *   - the unlock is an atomic read-modify-write that returns the state, so
 *     a thread adding a listener learns whether a trigger came while it
 *     held the lock with no further barrier, and a trigger that comes after
 *     the unlock reads the word the unlock released and sees the list;
 *   - a child takes its parent's lock and a reference to it in one
 *     compare-and-swap, and drops both in one when it is freed;
 *   - the trigger takes the lock in its own compare-and-swap.
 *
 * The fd: its maker writes it (if the token has triggered) before it sets
 * HAS_FD, in the compare-and-swap that also releases the lock; a trigger
 * whose compare-and-swap finds HAS_FD writes it.  So whichever comes
 * first, the fd is written before the trigger returns and before anyone
 * can see it published, and an fd obtained once a trigger returned is
 * readable at once.
 */
#define ST_TRIGGERED (1u << 0)
#define ST_WAITERS (1u << 1)
#define ST_LOCKED (1u << 2)
#define ST_LOCK_WAITERS (1u << 3)
#define ST_HAS_FD (1u << 4)
#define ST_ALL_OF (1u << 5)
#define ST_ORIGIN_HELD (1u << 6)
#define ST_REASON_SHIFT 8
#define ST_REASON_BITS 5
#define ST_REASON_MASK (((1u << ST_REASON_BITS) - 1) << ST_REASON_SHIFT)
#define ST_SIGNO_SHIFT 13
#define ST_SIGNO_BITS 7
#define ST_SIGNO_MASK (((1u << ST_SIGNO_BITS) - 1) << ST_SIGNO_SHIFT)
#define ST_GEN_SHIFT 20
#define REF_ONE ((uint64_t)1 << 32)

_Static_assert(ST_ORIGIN_HELD < (1u << ST_REASON_SHIFT),
	       "flags below the reason");
_Static_assert(ST_REASON_SHIFT + ST_REASON_BITS == ST_SIGNO_SHIFT,
	       "reason, then signal");
_Static_assert(ST_SIGNO_SHIFT + ST_SIGNO_BITS == ST_GEN_SHIFT,
	       "signal, then generation");
_Static_assert(ST_GEN_SHIFT + 12 == 32, "the generation fills the state");
_Static_assert(CFD_GEN_MASK == (1u << (32 - ST_GEN_SHIFT)) - 1,
	       "a generation fits its field");
#define REASON_LAST CFD_REASON_ALL_OF /* the highest reason there is */
_Static_assert(REASON_LAST < (1u << ST_REASON_BITS), "reasons fit");
_Static_assert(_NSIG <= (1u << ST_SIGNO_BITS), "signal numbers fit");

struct cfd_token {
	_Atomic uint64_t word; /* state and reference count, see above */
	_Atomic int fd;	       /* eventfd, or -1 until someone asks */
	uint32_t nparents;     /* entries in links[] */
	_Atomic uint32_t all_of_pending; /* all-of: parents not yet fired */
	/* The cause.  origin is written last (release), so a non-NULL origin
	 * means time and message are readable. */
	struct cfd_token *_Atomic origin;
	int64_t time;  /* meaningful on an origin only */
	char *message; /* owned; meaningful on an origin only */
	struct listener *_Atomic listeners;
	/* Intrusive list used while this token waits to be walked by a
	 * fan-out, or to be freed by an iterative release. */
	struct cfd_token *work_next;
	struct link links[]; /* followed by the name */
};

/* The futex word: the low half of the token's word. */
static inline _Atomic uint32_t *token_futex_word(struct cfd_token *t)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	return (_Atomic uint32_t *)(void *)((char *)&t->word + 4);
#else
	return (_Atomic uint32_t *)(void *)&t->word;
#endif
}

static inline const char *token_name_ptr(const struct cfd_token *t)
{
	return (const char *)(t->links + t->nparents);
}

static inline uint32_t token_state(const struct cfd_token *t)
{
	return (uint32_t)atomic_load_explicit(&t->word, memory_order_acquire);
}

static inline unsigned token_reason(const struct cfd_token *t)
{
	return (token_state(t) & ST_REASON_MASK) >> ST_REASON_SHIFT;
}

static inline unsigned token_signo(const struct cfd_token *t)
{
	return (token_state(t) & ST_SIGNO_MASK) >> ST_SIGNO_SHIFT;
}

/* -ECHILD when the token was made in another process, else 0. */
static inline int token_check_process(const struct cfd_token *t)
{
	return ((token_state(t) >> ST_GEN_SHIFT) == cfd_generation()) ? 0
								      : -ECHILD;
}

/* The token's lock (ST_LOCKED in its word).  add is 0 or REF_ONE: a
 * reference taken in the same step. */
void token_lock_slow(struct cfd_token *t, uint64_t add);

static inline void token_lock_add(struct cfd_token *t, uint64_t add)
{
	uint64_t w = atomic_load_explicit(&t->word, memory_order_relaxed);

	if ((w & ST_LOCKED) || !atomic_compare_exchange_weak_explicit(
				   &t->word, &w, (w + add) | ST_LOCKED,
				   memory_order_acquire, memory_order_relaxed))
		token_lock_slow(t, add);
}

static inline void token_lock(struct cfd_token *t)
{
	token_lock_add(t, 0);
}

static inline void token_wake_lock_waiter(struct cfd_token *t)
{
	cfd_futex(token_futex_word(t), FUTEX_WAKE_BITSET_PRIVATE, 1, NULL,
		  FUTEX_FOR_LOCK);
}

/* Returns the state as it was just before the unlock. */
static inline uint32_t token_unlock(struct cfd_token *t)
{
	uint64_t old = atomic_fetch_and_explicit(
	    &t->word, ~(uint64_t)(ST_LOCKED | ST_LOCK_WAITERS),
	    memory_order_release);

	if (old & ST_LOCK_WAITERS)
		token_wake_lock_waiter(t);
	return (uint32_t)old;
}

/* Unlock and drop a reference in one step.  Returns the references left:
 * at zero the caller frees the token. */
static inline uint32_t token_unlock_unref(struct cfd_token *t)
{
	uint64_t old = atomic_load_explicit(&t->word, memory_order_relaxed);
	uint64_t new;

	do
		new =
		    (old - REF_ONE) & ~(uint64_t)(ST_LOCKED | ST_LOCK_WAITERS);
	while (!atomic_compare_exchange_weak_explicit(
	    &t->word, &old, new, memory_order_acq_rel, memory_order_relaxed));
	if (old & ST_LOCK_WAITERS)
		token_wake_lock_waiter(t);
	return (uint32_t)(new >> 32);
}

/* The check every public function starts with: -EINVAL for NULL,
 * -ECHILD for a token made in another process, else 0. */
static inline int token_validate(const struct cfd_token *t)
{
	return t ? token_check_process(t) : -EINVAL;
}

#define CFD_NAME_MAX 4096

/* strdup() allocates inside libc, out of reach of the tests' allocation
 * fault injection; every allocation of the library goes through malloc. */
char *cfd_strdup(const char *s);

/* token.c */
int64_t cfd_now(void);
int64_t cfd_now_coarse(void);
struct cfd_token *token_alloc(const char *name, size_t name_len,
			      const char *name2, size_t nparents);
bool token_try_ref(struct cfd_token *t);
void token_fd_write(struct cfd_token *t);
/* The origin of a triggered token: published right after the winning
 * compare-and-swap, so a reader that saw the flag may wait a moment for
 * it.  NULL while the token is pending. */
struct cfd_token *token_origin_wait(const struct cfd_token *t);

/*
 * Win the trigger of t: the one compare-and-swap that flips it, recording
 * the reason and signal.  Returns 0 if t had triggered already, else
 * ST_TRIGGERED, plus ST_LOCKED when want_lock asked for the token's lock
 * and it was free (it was taken in the same step), plus ST_HAS_FD when the
 * fd was published (token_publish() writes it).  The winner then records
 * the cause (on an origin: time, message) and publishes.  Async-signal-
 * safe without want_lock: a compare-and-swap and, if someone sleeps in
 * cfd_token_wait(), a futex wake.
 */
static inline uint32_t token_win(struct cfd_token *t, unsigned reason,
				 unsigned signo, bool want_lock)
{
	uint64_t w = atomic_load_explicit(&t->word, memory_order_relaxed);
	uint64_t add = ST_TRIGGERED | ((uint64_t)reason << ST_REASON_SHIFT) |
		       (((uint64_t)signo << ST_SIGNO_SHIFT) & ST_SIGNO_MASK);
	uint64_t lock;

	do {
		if (w & ST_TRIGGERED)
			return 0;
		lock = (want_lock && !(w & ST_LOCKED)) ? ST_LOCKED : 0;
	} while (!atomic_compare_exchange_weak_explicit(
	    &t->word, &w, w | add | lock, memory_order_acq_rel,
	    memory_order_relaxed));
	if (w & ST_WAITERS)
		cfd_futex(token_futex_word(t), FUTEX_WAKE_BITSET_PRIVATE,
			  INT_MAX, NULL, FUTEX_FOR_TRIGGER);
	return ST_TRIGGERED | (uint32_t)lock | ((uint32_t)w & ST_HAS_FD);
}

/*
 * The winner's publication, in the order readers rely on: the origin
 * (release: a reader that sees it sees the cause an origin recorded
 * before), then the fd, the trigger's only system call, and only for
 * tokens somebody asked an fd of.  won is token_win()'s.
 */
static inline void token_publish(struct cfd_token *t, struct cfd_token *origin,
				 uint32_t won)
{
	atomic_store_explicit(&t->origin, origin, memory_order_release);
	if (won & ST_HAS_FD)
		token_fd_write(t);
}

/*
 * Trigger t because another token, from, triggered, through a link that is
 * not an edge of the graph (a linked scope cancelling its outer scope): t
 * takes reason CFD_REASON_PARENT and from's origin, which it holds, since
 * it is not its ancestor.  1 or 0.
 */
int token_trigger_from(struct cfd_token *t, struct cfd_token *from);
/* Trigger with a cause and run the fan-out and callbacks.  1 or 0. */
int token_trigger(struct cfd_token *t, unsigned reason, unsigned signo,
		  char *message);

/* graph.c: the fan-out */
struct fanout {
	struct cfd_token *stack;      /* tokens to walk; refs held */
	struct cfd_registration *run; /* callbacks to run, in order */
	struct cfd_registration **run_tail;
};
void fanout_init(struct fanout *f);
/* Fan out from a token this thread just triggered (it holds a reference
 * to it; `locked` says the trigger took its lock), then run the
 * callbacks found. */
void fanout_run(struct fanout *f, struct cfd_token *start, bool locked);
void token_release_links(struct cfd_token *t, struct cfd_token **free_list);

/* callback.c */
/* What a registration is for: callback.c serves them all; a layer finds
 * its own on a token by its kind. */
enum reg_kind {
	REG_CALLBACK,	   /* cfd_token_on_trigger() */
	REG_SOURCE,	   /* a source's end (source.c) */
	REG_EXPORT_PIPE,   /* the pipe of the token's watch-only exports */
	REG_EXPORT_SHARED, /* the fd source that watches a shared export */
};

struct cfd_registration {
	struct listener node; /* owner = token | LISTENER_REG */
	cfd_callback_fn fn;
	void *userdata;
	_Atomic uint32_t state;
	uint16_t flags;			/* fixed at registration */
	uint8_t kind;			/* enum reg_kind */
	bool queue_ref;			/* the fan-out took a token reference */
	const void *_Atomic running_in; /* thread running fn */
	struct cfd_registration *run_next;
	/* Internal registrations: called instead of a free when the token is
	 * released with the registration still listed. */
	void (*on_release)(struct cfd_registration *reg);
	/* Internal registrations: called once the runner or the remover is
	 * done with it (after the callback ran, or instead of it). */
	void (*on_done)(struct cfd_registration *reg);
};

#define REG_FLOATING (1u << 0)	/* no handle: freed after it runs */
#define REG_INTERNAL (1u << 1)	/* owned by a layer of the library */
#define REG_HOLDS_REF (1u << 2) /* a user handle: holds its token */

void listener_insert(struct cfd_token *t, struct listener *n);
void listener_unlink(struct listener *n);
/*
 * Put n on t's list unless t has triggered.  Returns 0 when n is listed
 * (a trigger from now on finds it), 1 when t has triggered and n is not
 * listed (the caller handles it as "already triggered").  add (0 or
 * REF_ONE) is a reference to t taken with its lock, kept whatever the
 * result.
 */
int listener_add(struct cfd_token *t, struct listener *n, uint64_t add);
/* Take a listed registration off its token for running (lock held). */
void registration_queue(struct fanout *f, struct cfd_registration *reg);
void callbacks_run(struct cfd_registration *list);
void registration_release_listed(struct cfd_registration *reg);
/* Register an internal callback (sources, export): caller-allocated,
 * weak (it holds no reference to t).  Returns 0, or 1 when t has
 * triggered already (nothing registered).  Its on_release and on_done
 * hooks are set by the caller. */
int registration_add(struct cfd_registration *reg, struct cfd_token *t,
		     enum reg_kind kind, cfd_callback_fn fn, void *userdata);
/* The first internal registration of that kind on t, under t's lock. */
struct cfd_registration *registration_find_locked(struct cfd_token *t,
						  enum reg_kind kind);
/*
 * Take an internal registration off its token for good: on return its
 * callback is not running (unless in this very thread) and never will.
 * The caller must hold a reference to the token: a weak registration's
 * token may be freed at any moment otherwise (a layer pins it with
 * token_try_ref() under the lock that its on_release hook takes).
 */
void registration_remove(struct cfd_registration *reg);

#endif /* CFD_INTERNAL_H */
