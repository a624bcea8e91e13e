/* SPDX-License-Identifier: MIT */
/*
 * Sources: timeouts and deadlines, signals, foreign fds and conditions,
 * each triggering its token with a reason when it fires.
 *
 * A source lives in a watcher ("attached") and on its token, through an
 * internal callback registration.  It leaves the watcher, closing whatever
 * fd it had, at the first of: it fires (its token triggers, which runs the
 * registration), it is freed, its token is freed.  References: one for the
 * caller's handle (if asked for), one while attached, one while the
 * registration is on the token or about to run.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "watcher.h"

struct cfd_source *source_ref(struct cfd_source *src)
{
	atomic_fetch_add_explicit(&src->refs, 1, memory_order_relaxed);
	return src;
}

void source_unref(struct cfd_source *src)
{
	if (atomic_fetch_sub_explicit(&src->refs, 1, memory_order_acq_rel) != 1)
		return;
	cfd_watcher_unref(src->w);
	free(src);
}

/* Under w->lock. */
void source_detach_locked(struct cfd_source *src)
{
	struct cfd_watcher *w = src->w;

	if (!src->attached)
		return;
	src->attached = false;
	src->tok = NULL;
	switch (src->kind) {
	case SOURCE_TIMEOUT:
	case SOURCE_CONDITION:
		watcher_heap_remove(w, src);
		break;
	case SOURCE_SIGNAL: {
		struct cfd_source **pp = &w->sig_sources;

		while (*pp != src)
			pp = &(*pp)->sig_next;
		*pp = src->sig_next;
		for (int s = 1; s < _NSIG; s++)
			if (sigismember(&src->signals, s) == 1)
				w->sig_count[s]--;
		/* Shrinking the mask or closing the fd cannot fail. */
		watcher_signals_update(w);
		break;
	}
	case SOURCE_FD:
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, src->fd, NULL);
		close(src->fd);
		src->fd = -1;
		watcher_slot_free(w, src->slot);
		break;
	}
}

/* Leave the watcher; drops the attachment's reference.  Idempotent. */
static void source_detach(struct cfd_source *src)
{
	bool was;

	pthread_mutex_lock(&src->w->lock);
	was = src->attached;
	source_detach_locked(src);
	pthread_mutex_unlock(&src->w->lock);
	if (was)
		source_unref(src);
}

/* ---- the registration on the token ---- */

static void source_token_triggered(struct cfd_token *tok, void *userdata)
{
	(void)tok;
	source_detach(userdata);
}

static void source_token_released(struct cfd_registration *reg)
{
	struct cfd_source *src = container_of(reg, struct cfd_source, reg);

	source_detach(src);
	source_unref(src); /* the registration's */
}

static void source_registration_done(struct cfd_registration *reg)
{
	source_unref(container_of(reg, struct cfd_source, reg));
}

/* ---- firing, and waiting for a fire in progress ---- */

static void fire_done(struct cfd_source *src)
{
	if (atomic_exchange(&src->firing, 0) & FIRING_WAITER)
		cfd_futex_wake_all(&src->firing);
}

/* The dispatcher marked the fire (under w->lock, while attached); it ends
 * when the token's trigger, with its callbacks, has returned. */
void source_fire(struct cfd_source *src, struct cfd_token *tok, unsigned signo)
{
	bool attached;

	/* Freed since it was queued, by a callback of an earlier fire of
	 * this same dispatch (another thread's free waits for us instead). */
	pthread_mutex_lock(&src->w->lock);
	attached = src->attached;
	pthread_mutex_unlock(&src->w->lock);
	if (!attached) {
		fire_done(src);
		return;
	}
	switch (src->kind) {
	case SOURCE_TIMEOUT:
		token_trigger(tok, CFD_REASON_TIMEOUT, 0, NULL);
		break;
	case SOURCE_SIGNAL:
		token_trigger(tok, CFD_REASON_SIGNAL, signo, NULL);
		break;
	case SOURCE_FD:
		token_trigger(tok, CFD_REASON_FD, 0, NULL);
		break;
	case SOURCE_CONDITION:
		if (src->cond(tok, src->userdata))
			token_trigger(tok, CFD_REASON_CONDITION, 0, NULL);
		break;
	}
	fire_done(src);
}

/* After detaching: return once no fire of src is in progress, unless it is
 * this thread's (freed from a callback or predicate of that fire). */
static void source_wait_idle(struct cfd_source *src)
{
	uint32_t c;

	if (atomic_load(&src->firing_in) == watcher_thread_marker())
		return;
	while ((c = atomic_load(&src->firing)) != 0) {
		if (!(c & FIRING_WAITER) &&
		    !atomic_compare_exchange_weak(&src->firing, &c,
						  c | FIRING_WAITER))
			continue;
		cfd_futex(&src->firing, FUTEX_WAIT_PRIVATE, c | FIRING_WAITER,
			  NULL, 0);
	}
}

/* ---- adding ---- */

typedef int (*attach_fn)(struct cfd_source *src);

static int source_add(struct cfd_source **ret, struct cfd_token *tok,
		      struct cfd_watcher *w, struct cfd_source *proto,
		      attach_fn attach)
{
	struct cfd_source *src;
	int r;

	r = watcher_resolve(&w);
	if (r < 0)
		goto fail;
	src = malloc(sizeof(*src));
	if (!src) {
		cfd_watcher_unref(w);
		r = -ENOMEM;
		goto fail;
	}
	*src = *proto;
	atomic_init(&src->refs, 1); /* the handle, or this function's */
	atomic_init(&src->firing, 0);
	atomic_init(&src->firing_in, NULL);
	src->w = w;
	src->tok = tok;
	src->heap_idx = UINT32_MAX;
	src->slot = SLOT_NONE;
	src->attached = false;

	/* Attach first, register on the token second: a trigger in
	 * between is seen by the registration, which then detaches. */
	pthread_mutex_lock(&w->lock);
	r = attach(src);
	if (r == 0)
		src->attached = true;
	pthread_mutex_unlock(&w->lock);
	if (r < 0) {
		if (src->fd >= 0)
			close(src->fd);
		source_unref(src);
		return r;
	}
	source_ref(src); /* the attachment's */
	source_ref(src); /* the registration's */
	src->reg.on_release = source_token_released;
	src->reg.on_done = source_registration_done;
	if (registration_add(&src->reg, tok, REG_SOURCE, source_token_triggered,
			     src)) {
		/* The token triggered meanwhile: no source needed. */
		source_detach(src);
		source_unref(src); /* the registration's */
		source_unref(src);
		if (ret)
			*ret = NULL;
		return 0;
	}
	if (ret)
		*ret = src;
	else
		source_unref(src); /* floating: owned by token and watcher */
	return 0;
fail:
	if (proto->fd >= 0)
		close(proto->fd); /* the source owns the dup from the start */
	return r;
}

static int check_token(struct cfd_token *tok, struct cfd_source **ret)
{
	int r;

	r = token_validate(tok);
	if (r < 0)
		return r;
	if (token_state(tok) & ST_TRIGGERED) {
		/* Nothing to watch, no fd opened. */
		if (ret)
			*ret = NULL;
		return 1;
	}
	return 0;
}

static struct cfd_source source_proto(enum source_kind kind)
{
	struct cfd_source p = { .kind = kind, .fd = -1 };

	return p;
}

/* Timeouts, deadlines and conditions: an entry in the watcher's heap. */
static int attach_timed(struct cfd_source *src)
{
	int r = watcher_heap_reserve(src->w);

	if (r == 0)
		watcher_heap_insert(src->w, src);
	return r;
}

CFD_EXPORT int cfd_source_add_deadline(struct cfd_source **ret,
				       struct cfd_token *tok,
				       struct cfd_watcher *w,
				       int64_t deadline_ns)
{
	struct cfd_source p = source_proto(SOURCE_TIMEOUT);
	int r;

	if (deadline_ns < 0)
		return -EINVAL;
	if (w && watcher_check(w) < 0)
		return -ECHILD;
	r = check_token(tok, ret);
	if (r != 0)
		return r < 0 ? r : 0;
	if (deadline_ns <= cfd_now()) {
		/* Past: fire at once, in this thread, with no fd. */
		token_trigger(tok, CFD_REASON_TIMEOUT, 0, NULL);
		if (ret)
			*ret = NULL;
		return 0;
	}
	p.when = deadline_ns;
	return source_add(ret, tok, w, &p, attach_timed);
}

CFD_EXPORT int cfd_source_add_timeout(struct cfd_source **ret,
				      struct cfd_token *tok,
				      struct cfd_watcher *w, int64_t timeout_ns)
{
	int64_t now = cfd_now();

	if (timeout_ns < 0 || timeout_ns > INT64_MAX - now)
		return -EINVAL;
	return cfd_source_add_deadline(ret, tok, w, now + timeout_ns);
}

CFD_EXPORT int cfd_source_add_condition(struct cfd_source **ret,
					struct cfd_token *tok,
					struct cfd_watcher *w,
					cfd_condition_fn fn, void *userdata,
					int64_t interval_ns)
{
	struct cfd_source p = source_proto(SOURCE_CONDITION);
	int64_t now = cfd_now();
	int r;

	if (!fn || interval_ns <= 0 || interval_ns > INT64_MAX - now)
		return -EINVAL;
	r = check_token(tok, ret);
	if (r != 0)
		return r < 0 ? r : 0;
	p.cond = fn;
	p.userdata = userdata;
	p.interval = interval_ns;
	p.when = now; /* first check at once, on the watcher's thread */
	return source_add(ret, tok, w, &p, attach_timed);
}

/* ---- signals ---- */

/* Signals a signalfd can take: not SIGKILL or SIGSTOP, and not the ones
 * between SIGSYS and SIGRTMIN that the C library keeps for itself. */
static bool signal_watchable(int s)
{
	return s != SIGKILL && s != SIGSTOP && (s < 32 || s >= SIGRTMIN);
}

/* The most signal numbers one call takes (duplicates included). */
#define SIGNALS_MAX 1024

static int check_signals(const int *signals, size_t n, sigset_t *set)
{
	if (!signals || n == 0 || n > SIGNALS_MAX)
		return -EINVAL;
	sigemptyset(set);
	for (size_t i = 0; i < n; i++) {
		if (signals[i] <= 0 || signals[i] >= _NSIG ||
		    !signal_watchable(signals[i]))
			return -EINVAL;
		sigaddset(set, signals[i]);
	}
	return 0;
}

CFD_EXPORT int cfd_signals_block(const int *signals, size_t n)
{
	sigset_t set;
	int r = check_signals(signals, n, &set);

	if (r < 0)
		return r;
	return -pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static int attach_signals(struct cfd_source *src)
{
	struct cfd_watcher *w = src->w;
	int r;

	r = watcher_claim_signals(w, &src->signals);
	if (r < 0)
		return r;
	for (int s = 1; s < _NSIG; s++)
		if (sigismember(&src->signals, s) == 1)
			w->sig_count[s]++;
	r = watcher_signals_update(w);
	if (r < 0) {
		for (int s = 1; s < _NSIG; s++)
			if (sigismember(&src->signals, s) == 1)
				w->sig_count[s]--;
		watcher_signals_update(w);
		return r;
	}
	src->sig_next = w->sig_sources;
	w->sig_sources = src;
	return 0;
}

CFD_EXPORT int cfd_source_add_signals(struct cfd_source **ret,
				      struct cfd_token *tok,
				      struct cfd_watcher *w, const int *signals,
				      size_t n)
{
	struct cfd_source p = source_proto(SOURCE_SIGNAL);
	sigset_t set, blocked;
	int r = check_signals(signals, n, &set);

	if (r == 0 && !tok)
		r = -EINVAL;
	if (r < 0)
		return r;
	/* A signal not blocked would be delivered, not read: its default
	 * action could kill the process.  It must be blocked in every
	 * thread; this thread is the one that can be checked. */
	pthread_sigmask(SIG_BLOCK, NULL, &blocked);
	for (int s = 1; s < _NSIG; s++)
		if (sigismember(&set, s) == 1 && sigismember(&blocked, s) != 1)
			return -EBUSY;
	r = check_token(tok, ret);
	if (r != 0)
		return r < 0 ? r : 0;
	p.signals = set;
	return source_add(ret, tok, w, &p, attach_signals);
}

/* ---- fds ---- */

static int attach_fd(struct cfd_source *src)
{
	struct cfd_watcher *w = src->w;
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT,
	};
	uint32_t gen;
	int slot = watcher_slot_alloc(w, src, &gen);

	if (slot < 0)
		return slot;
	ev.data.u64 = ((uint64_t)gen << 32) | (uint32_t)slot;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, src->fd, &ev) < 0) {
		int r = -errno;

		watcher_slot_free(w, (uint32_t)slot);
		return r;
	}
	src->slot = (uint32_t)slot;
	return 0;
}

CFD_EXPORT int cfd_source_add_fd(struct cfd_source **ret, struct cfd_token *tok,
				 struct cfd_watcher *w, int fd)
{
	struct cfd_source p = source_proto(SOURCE_FD);
	int r;

	if (fd < 0)
		return -EBADF;
	if (fcntl(fd, F_GETFD) < 0)
		return -errno;
	r = check_token(tok, ret);
	if (r != 0)
		return r < 0 ? r : 0;
	/* Watch a dup of our own: the caller may close theirs, and an fd
	 * number reused meanwhile must not confuse the epoll set. */
	p.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (p.fd < 0)
		return -errno;
	return source_add(ret, tok, w, &p, attach_fd);
}

/* ---- freeing ---- */

/*
 * Free a source at any time, from any thread: before or after it fired,
 * before, after or while its token is freed.  The source's registration
 * is taken off the token only with the token pinned: the pointer to it is
 * cleared under w->lock by the token's release (source_token_released())
 * before the token's memory goes, so that a pin taken under w->lock is
 * safe; a token found dying is left to finish its release, which ends the
 * registration itself.
 */
CFD_EXPORT struct cfd_source *cfd_source_free(struct cfd_source *src)
{
	struct cfd_token *tok;

	if (!src || watcher_check(src->w) < 0)
		return NULL;
	pthread_mutex_lock(&src->w->lock);
	tok = src->tok;
	if (tok && !token_try_ref(tok))
		tok = NULL;
	pthread_mutex_unlock(&src->w->lock);
	if (tok)
		registration_remove(&src->reg);
	source_detach(src);
	source_wait_idle(src);
	if (tok)
		cfd_token_unref(tok);
	source_unref(src);
	return NULL;
}
