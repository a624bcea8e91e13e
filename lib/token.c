/* SPDX-License-Identifier: MIT */
/*
 * The token: its state word, trigger, wait, the lazily made eventfd, the
 * cause getters, and reference counting with an iterative release.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "internal.h"

/* ---- the lock's slow path ---- */

void token_lock_slow(struct cfd_token *t, uint64_t add)
{
	uint64_t w;

	/* Sections are short list edits, except a fan-out walking a long
	 * list: spin briefly, then sleep. */
	for (int i = 0; i < 64; i++) {
		w = atomic_load_explicit(&t->word, memory_order_relaxed);
		if (!(w & ST_LOCKED) &&
		    atomic_compare_exchange_weak_explicit(
			&t->word, &w, (w + add) | ST_LOCKED,
			memory_order_acquire, memory_order_relaxed))
			return;
		if (i >= 48)
			sched_yield();
	}
	for (;;) {
		w = atomic_load_explicit(&t->word, memory_order_relaxed);
		if (!(w & ST_LOCKED)) {
			/* Taken after sleeping: keep LOCK_WAITERS, there may
			 * be other sleepers (as a futex mutex's state 2). */
			if (atomic_compare_exchange_weak_explicit(
				&t->word, &w,
				(w + add) | ST_LOCKED | ST_LOCK_WAITERS,
				memory_order_acquire, memory_order_relaxed))
				return;
			continue;
		}
		if (!(w & ST_LOCK_WAITERS) &&
		    !atomic_compare_exchange_weak_explicit(
			&t->word, &w, w | ST_LOCK_WAITERS, memory_order_relaxed,
			memory_order_relaxed))
			continue;
		/* Any change of the state (a trigger, a waiter) wakes this
		 * with EAGAIN: it just looks again. */
		cfd_futex(token_futex_word(t), FUTEX_WAIT_BITSET_PRIVATE,
			  (uint32_t)(w | ST_LOCK_WAITERS), NULL,
			  FUTEX_FOR_LOCK);
	}
}

/* ---- process identity ---- */

_Atomic uint32_t cfd_fork_generation;
static pthread_once_t process_once = PTHREAD_ONCE_INIT;

/* Kept within the 15 bits a token's word has for it, so that the check
 * every call makes is a load and a compare.  The child has one thread. */
static void after_fork_in_child(void)
{
	uint32_t g =
	    atomic_load_explicit(&cfd_fork_generation, memory_order_relaxed);

	atomic_store_explicit(&cfd_fork_generation, (g + 1) & CFD_GEN_MASK,
			      memory_order_relaxed);
}

static void process_setup(void)
{
	pthread_atfork(NULL, NULL, after_fork_in_child);
}

void cfd_process_init(void)
{
	pthread_once(&process_once, process_setup);
}

int64_t cfd_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * The trigger time.  CLOCK_MONOTONIC costs 25-45 ns in a virtual machine
 * (kvm-clock), more than an in-memory trigger of a small tree; the coarse
 * clock is the same timeline at the kernel tick's resolution for 3 ns.
 * Async-signal-safe (clock_gettime is).
 */
int64_t cfd_now_coarse(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- what hangs off a token: its listener list ---- */

/*
 * Child links and registrations, on a doubly linked list that the token's
 * lock guards.  A trigger walks it under that lock (graph.c); children and
 * registrations leave it in O(1) when they go.
 */

void listener_insert(struct cfd_token *t, struct listener *n)
{
	struct listener *head =
	    atomic_load_explicit(&t->listeners, memory_order_relaxed);

	atomic_store_explicit(&n->next, head, memory_order_relaxed);
	atomic_store_explicit(&n->pprev, &t->listeners, memory_order_relaxed);
	if (head)
		atomic_store_explicit(&head->pprev, &n->next,
				      memory_order_relaxed);
	atomic_store_explicit(&t->listeners, n, memory_order_release);
}

void listener_unlink(struct listener *n)
{
	struct listener *next =
	    atomic_load_explicit(&n->next, memory_order_relaxed);
	struct listener *_Atomic *pprev =
	    atomic_load_explicit(&n->pprev, memory_order_relaxed);

	atomic_store_explicit(pprev, next, memory_order_relaxed);
	if (next)
		atomic_store_explicit(&next->pprev, pprev,
				      memory_order_relaxed);
	atomic_store_explicit(&n->pprev, NULL, memory_order_relaxed);
}

int listener_add(struct cfd_token *t, struct listener *n, uint64_t add)
{
	uint64_t w;

	token_lock_add(t, add);
	if (token_state(t) & ST_TRIGGERED) {
		token_unlock(t);
		return 1;
	}
	listener_insert(t, n);
	/*
	 * Unlock only if t has not triggered: a trigger that came while we
	 * held the lock has not walked the list (its walk needs the lock), so
	 * n is taken back, untouched by it, and the caller handles t as
	 * triggered.  Deciding in the unlock's own compare-and-swap leaves no
	 * moment in which the walk could take n (and run and free it) before
	 * we look.  A trigger after the unlock reads the word it released and
	 * sees n.
	 */
	w = atomic_load_explicit(&t->word, memory_order_relaxed);
	do {
		if (w & ST_TRIGGERED) {
			listener_unlink(n);
			token_unlock(t);
			return 1;
		}
	} while (!atomic_compare_exchange_weak_explicit(
	    &t->word, &w, w & ~(uint64_t)(ST_LOCKED | ST_LOCK_WAITERS),
	    memory_order_release, memory_order_relaxed));
	if (w & ST_LOCK_WAITERS)
		token_wake_lock_waiter(t);
	return 0;
}

/* ---- life cycle ---- */

/*
 * One allocation holds the token, its parent links (and an all-of's
 * count) and its name, so that a token without an fd stays within a
 * 112-byte malloc chunk for short names.  name2, when given, is appended
 * after a ':' (chains are named "a:b").
 */
struct cfd_token *token_alloc(const char *name, size_t name_len,
			      const char *name2, size_t nparents, bool all_of)
{
	size_t len2 = name2 ? strlen(name2) : 0;
	size_t total_name = name_len + (name2 ? 1 + len2 : 0);
	struct cfd_token *t;
	char *p;

	if (total_name > CFD_NAME_MAX)
		total_name = CFD_NAME_MAX; /* chains of chains: truncate */
	t = malloc(sizeof(*t) + nparents * sizeof(struct link) +
		   (all_of ? ALL_OF_SLOT : 0) + total_name + 1);
	if (!t)
		return NULL;
	atomic_init(&t->word, REF_ONE | (all_of ? ST_ALL_OF : 0) |
				  (cfd_generation() << ST_GEN_SHIFT));
	atomic_init(&t->fd, -1);
	t->nparents = (uint32_t)nparents;
	atomic_init(&t->origin, NULL);
	t->time = 0;
	t->cause = NULL;
	atomic_init(&t->deadline, INT64_MAX);
	atomic_init(&t->listeners, NULL);
	t->work_next = NULL;
	p = (char *)token_name_ptr(t);
	if (name_len > total_name)
		name_len = total_name;
	memcpy(p, name, name_len);
	if (name2 && name_len < total_name) {
		size_t rest = total_name - name_len - 1;
		p[name_len] = ':';
		memcpy(p + name_len + 1, name2, len2 < rest ? len2 : rest);
	}
	p[total_name] = '\0';
	return t;
}

CFD_EXPORT int cfd_token_new(struct cfd_token **ret, const char *name)
{
	struct cfd_token *t;
	size_t len;

	if (!ret)
		return -EINVAL;
	if (!name)
		name = "";
	len = strlen(name);
	if (len > CFD_NAME_MAX)
		return -EINVAL;
	cfd_process_init();
	t = token_alloc(name, len, NULL, 0, false);
	if (!t)
		return -ENOMEM;
	*ret = t;
	return 0;
}

CFD_EXPORT struct cfd_token *cfd_token_ref(struct cfd_token *tok)
{
	if (tok)
		atomic_fetch_add_explicit(&tok->word, REF_ONE,
					  memory_order_relaxed);
	return tok;
}

/* A reference for a walker that found the token through a weak link:
 * fails once the count reached zero (the token is being freed). */
bool token_try_ref(struct cfd_token *t)
{
	uint64_t w = atomic_load_explicit(&t->word, memory_order_relaxed);

	while (w >> 32) {
		if (atomic_compare_exchange_weak_explicit(
			&t->word, &w, w + REF_ONE, memory_order_relaxed,
			memory_order_relaxed))
			return true;
	}
	return false;
}

static void token_release_listeners(struct cfd_token *t)
{
	struct listener *n, *next;

	/* Only weak listeners remain: floating and internal registrations
	 * (child links and user registrations hold references). */
	for (n = atomic_load_explicit(&t->listeners, memory_order_acquire); n;
	     n = next) {
		next = atomic_load_explicit(&n->next, memory_order_relaxed);
		listener_unlink(n);
		registration_release_listed(
		    container_of(n, struct cfd_registration, node));
	}
}

/*
 * Dropping the last reference to a token can drop the last reference to
 * its parents, and so on up a chain a million deep: release iteratively,
 * with the tokens still to free on a list threaded through work_next.
 */
static void token_release(struct cfd_token *t)
{
	struct cfd_token *pending = t;

	t->work_next = NULL;
	while ((t = pending)) {
		pending = t->work_next;
		token_release_links(t, &pending);
		token_release_listeners(t);
		if (token_state(t) & ST_HAS_FD)
			close(
			    atomic_load_explicit(&t->fd, memory_order_relaxed));
		free(t->cause);
		if (token_state(t) & ST_ORIGIN_HELD) {
			struct cfd_token *o = atomic_load(&t->origin);

			if ((atomic_fetch_sub_explicit(&o->word, REF_ONE,
						       memory_order_acq_rel) >>
			     32) == 1) {
				o->work_next = pending;
				pending = o;
			}
		}
		free(t);
	}
}

CFD_EXPORT struct cfd_token *cfd_token_unref(struct cfd_token *tok)
{
	if (!tok)
		return NULL;
	/* An inherited copy belongs to the parent process: leave it (its fd
	 * is close-on-exec), never touch its locks. */
	if (token_check_process(tok) < 0)
		return NULL;
	if ((atomic_fetch_sub_explicit(&tok->word, REF_ONE,
				       memory_order_acq_rel) >>
	     32) == 1)
		token_release(tok);
	return NULL;
}

CFD_EXPORT void cfd_token_unrefp(struct cfd_token **tokp)
{
	if (tokp)
		*tokp = cfd_token_unref(*tokp);
}

CFD_EXPORT const char *cfd_token_name(const struct cfd_token *tok)
{
	return tok ? token_name_ptr(tok) : NULL;
}

/* ---- trigger ---- */

void token_fd_write(struct cfd_token *t)
{
	uint64_t one = 1;

	/* The counter only needs to be non-zero; a full counter (EAGAIN)
	 * is readable already. */
	if (write(atomic_load_explicit(&t->fd, memory_order_relaxed), &one,
		  sizeof(one)) < 0) {
		/* nothing to do */
	}
}

int token_trigger_at(struct cfd_token *t, unsigned reason, unsigned signo,
		     struct cause_text *cause, int64_t time)
{
	/* A token with listeners is walked under its lock: take the lock in
	 * the trigger's own compare-and-swap when it looks worth it. */
	bool busy = atomic_load_explicit(&t->listeners, memory_order_relaxed);
	uint32_t won = token_win(t, reason, signo, busy);
	struct fanout f;

	if (!won) {
		free(cause);
		return 0;
	}
	t->time = time;
	t->cause = cause;
	token_publish(t, t, won);
	fanout_init(&f);
	fanout_run(&f, t, won & ST_LOCKED);
	return 1;
}

int token_trigger(struct cfd_token *t, unsigned reason, unsigned signo,
		  struct cause_text *cause)
{
	return token_trigger_at(t, reason, signo, cause, cfd_now_coarse());
}

int token_trigger_from(struct cfd_token *t, struct cfd_token *from)
{
	struct cfd_token *o = cfd_token_origin(from);
	bool busy = atomic_load_explicit(&t->listeners, memory_order_relaxed);
	struct fanout f;
	uint32_t won;

	if (!o)
		return token_trigger(t, CFD_REASON_MANUAL, 0, NULL);
	won = token_win(t, CFD_REASON_PARENT, token_signo(o), busy);
	if (!won)
		return 0;
	cfd_token_ref(o);
	atomic_fetch_or(&t->word, (uint64_t)ST_ORIGIN_HELD);
	token_publish(t, o, won);
	fanout_init(&f);
	fanout_run(&f, t, won & ST_LOCKED);
	return 1;
}

CFD_EXPORT int cfd_token_trigger(struct cfd_token *tok)
{
	int r = token_validate(tok);

	return r < 0 ? r : token_trigger(tok, CFD_REASON_MANUAL, 0, NULL);
}

CFD_EXPORT int cfd_token_trigger_code(struct cfd_token *tok, int code,
				      const char *message)
{
	int r = token_validate(tok);

	if (r < 0)
		return r;
	if (token_state(tok) & ST_TRIGGERED)
		return 0;
	/* Without memory for the record the token still triggers, with no
	 * code and no message. */
	return token_trigger(tok, CFD_REASON_MANUAL, 0,
			     cause_text_new(code, message, NULL, 0, 0));
}

CFD_EXPORT int cfd_token_trigger_msg(struct cfd_token *tok, const char *message)
{
	return cfd_token_trigger_code(tok, 0, message);
}

CFD_EXPORT int cfd_token_trigger_from(struct cfd_token *tok,
				      struct cfd_token *from)
{
	int r = token_validate(tok);

	if (r == 0)
		r = token_validate(from);
	if (r < 0)
		return r;
	if (tok == from || !(token_state(from) & ST_TRIGGERED))
		return -EINVAL;
	return token_trigger_from(tok, from);
}

CFD_EXPORT bool cfd_token_triggered(const struct cfd_token *tok)
{
	return tok && (token_state(tok) & ST_TRIGGERED);
}

CFD_EXPORT int cfd_token_check(const struct cfd_token *tok)
{
	int r;

	r = token_validate(tok);
	if (r < 0)
		return r;
	return (token_state(tok) & ST_TRIGGERED) ? -ECANCELED : 0;
}

CFD_EXPORT int cfd_token_wait(struct cfd_token *tok, int64_t timeout_ns)
{
	struct timespec deadline, *dl = NULL;
	int r;

	r = token_validate(tok);
	if (r < 0)
		return r;
	if (token_state(tok) & ST_TRIGGERED)
		return 0;
	if (timeout_ns == 0)
		return -ETIMEDOUT;
	if (timeout_ns > 0) {
		int64_t now = cfd_now();

		/* A deadline past the end of time is no deadline. */
		if (timeout_ns <= INT64_MAX - now) {
			int64_t at = now + timeout_ns;

			deadline.tv_sec = at / 1000000000;
			deadline.tv_nsec = at % 1000000000;
			dl = &deadline;
		}
	}
	for (;;) {
		uint64_t w =
		    atomic_load_explicit(&tok->word, memory_order_acquire);

		if (w & ST_TRIGGERED)
			return 0;
		if (!(w & ST_WAITERS)) {
			if (!atomic_compare_exchange_weak_explicit(
				&tok->word, &w, w | ST_WAITERS,
				memory_order_acquire, memory_order_relaxed))
				continue;
			w |= ST_WAITERS;
		}
		/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time.
		 * Lock traffic on the word only makes it look again. */
		if (cfd_futex(token_futex_word(tok), FUTEX_WAIT_BITSET_PRIVATE,
			      (uint32_t)w, dl, FUTEX_FOR_TRIGGER) < 0 &&
		    errno == ETIMEDOUT)
			return (token_state(tok) & ST_TRIGGERED) ? 0
								 : -ETIMEDOUT;
	}
}

/*
 * Publish fd, made under the lock: write it if the token has triggered,
 * then set HAS_FD and release the lock in one compare-and-swap, so that
 * nobody sees it published unwritten (see "The fd" in internal.h).
 */
static void token_fd_publish(struct cfd_token *t, int fd, bool written)
{
	uint64_t w = atomic_load_explicit(&t->word, memory_order_relaxed);
	uint64_t new;

	atomic_store_explicit(&t->fd, fd, memory_order_relaxed);
	do {
		if ((w & ST_TRIGGERED) && !written) {
			token_fd_write(t);
			written = true;
		}
		new =
		    (w | ST_HAS_FD) & ~(uint64_t)(ST_LOCKED | ST_LOCK_WAITERS);
	} while (!atomic_compare_exchange_weak_explicit(
	    &t->word, &w, new, memory_order_release, memory_order_relaxed));
	if (w & ST_LOCK_WAITERS)
		token_wake_lock_waiter(t);
}

CFD_EXPORT int cfd_token_fd(struct cfd_token *tok)
{
	bool was;
	int fd, r;

	r = token_validate(tok);
	if (r < 0)
		return r;
	if (token_state(tok) & ST_HAS_FD)
		return atomic_load_explicit(&tok->fd, memory_order_relaxed);
	token_lock(tok);
	if (token_state(tok) & ST_HAS_FD) {
		token_unlock(tok);
		return atomic_load_explicit(&tok->fd, memory_order_relaxed);
	}
	/* Born readable if the token has triggered: no write needed. */
	was = token_state(tok) & ST_TRIGGERED;
	fd = eventfd(was ? 1 : 0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0) {
		r = -errno;
		token_unlock(tok);
		return r;
	}
	token_fd_publish(tok, fd, was);
	return fd;
}

char *cfd_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = malloc(n);

	return p ? memcpy(p, s, n) : NULL;
}
