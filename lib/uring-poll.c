/* SPDX-License-Identifier: MIT */
/*
 * Token polls: one IORING_OP_POLL_ADD per token and ring, on the token's
 * eventfd, shared by every wait and scope that uses the token on that
 * ring, so that an op costs nothing extra to be cancellable.  A poll lives
 * while it has users (the running wait, scopes): the last one's going
 * removes it, and the library keeps nothing armed between waits that a
 * caller's IOSQE_IO_DRAIN would wait for.
 *
 * Single-shot: a token triggers once, so a poll has one thing to say, and
 * a multishot one would save nothing; it is re-armed only when something
 * else ended it.
 *
 * The eventfd is never read: once the token triggers it stays readable,
 * so a poll armed later completes at once.  A poll's CQE says "look"; the
 * token's state says what happened.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "uring-internal.h"

static uint32_t hash_ptr(const void *p, uint32_t nbuckets)
{
	uint64_t x = (uint64_t)(uintptr_t)p;

	x ^= x >> 29;
	x *= 0x9e3779b97f4a7c15ull;
	return (uint32_t)(x >> 32) & (nbuckets - 1);
}

static uint32_t tpoll_lookup(struct cfd_uring *cu, const struct cfd_token *tok)
{
	if (!cu->nbuckets)
		return NIL;
	for (uint32_t i = cu->buckets[hash_ptr(tok, cu->nbuckets)]; i != NIL;
	     i = cu->polls[i].hnext)
		if (cu->polls[i].tok == tok)
			return i;
	return NIL;
}

static int hash_grow(struct cfd_uring *cu)
{
	uint32_t nb = cu->nbuckets ? cu->nbuckets * 2 : 16;
	uint32_t *b = malloc(nb * sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (uint32_t i = 0; i < nb; i++)
		b[i] = NIL;
	for (uint32_t i = 0; i < cu->npolls; i++) {
		struct tpoll *p = &cu->polls[i];
		uint32_t h;

		if (!p->tok)
			continue;
		h = hash_ptr(p->tok, nb);
		p->hnext = b[h];
		b[h] = i;
	}
	free(cu->buckets);
	cu->buckets = b;
	cu->nbuckets = nb;
	return 0;
}

static void hash_remove(struct cfd_uring *cu, uint32_t idx)
{
	uint32_t *pp = &cu->buckets[hash_ptr(cu->polls[idx].tok, cu->nbuckets)];

	while (*pp != idx)
		pp = &cu->polls[*pp].hnext;
	*pp = cu->polls[idx].hnext;
	cu->hcount--;
}

static uint32_t tpoll_alloc(struct cfd_uring *cu)
{
	uint32_t idx = cu->poll_free;

	if (idx != NIL) {
		cu->poll_free = cu->polls[idx].hnext;
		return idx;
	}
	if ((cu->npolls & (cu->npolls - 1)) == 0) {
		uint32_t cap = cu->npolls ? cu->npolls * 2 : 8;
		struct tpoll *n;

		if (cap > UD_IDX_MASK)
			return NIL;
		n = realloc(cu->polls, cap * sizeof(*n));
		if (!n)
			return NIL;
		cu->polls = n;
	}
	return cu->npolls++;
}

/* tpoll_get() when tok is not the last token seen. */
int tpoll_get_slow(struct cfd_uring *cu, struct cfd_token *tok, uint32_t *ret)
{
	uint32_t idx = tpoll_lookup(cu, tok);
	struct tpoll *p;
	uint32_t h;
	int fd;

	if (idx != NIL) {
		cu->polls[idx].users++;
		cu->last_poll = idx;
		*ret = idx;
		return 0;
	}
	fd = cfd_token_fd(tok); /* made now, so that arming cannot fail */
	if (fd < 0)
		return fd;
	if (cu->hcount >= cu->nbuckets && hash_grow(cu) < 0)
		return -ENOMEM;
	idx = tpoll_alloc(cu);
	if (idx == NIL)
		return -ENOMEM;
	p = &cu->polls[idx];
	memset(p, 0, sizeof(*p));
	p->tok = cfd_token_ref(tok);
	p->users = 1;
	h = hash_ptr(tok, cu->nbuckets);
	p->hnext = cu->buckets[h];
	cu->buckets[h] = idx;
	cu->hcount++;
	cu->last_poll = idx;
	*ret = idx;
	return 0;
}

/* The poll's armed or saw_trigger changed: tell its scopes
 * (cfd_scope_add() reads one flag of its own). */
void tpoll_mark(struct cfd_uring *cu, uint32_t idx)
{
	struct tpoll *p = &cu->polls[idx];
	bool quiet = p->armed && !p->saw_trigger;

	for (struct cfd_scope *s = p->scopes; s; s = s->pnext)
		s->quiet = quiet;
}

/* Queue the poll (see tpoll_ensure_armed()). */
int tpoll_arm(struct cfd_uring *cu, uint32_t idx, bool may_submit)
{
	struct tpoll *p = &cu->polls[idx];
	struct io_uring_sqe *sqe;

	sqe = may_submit ? cu_get_sqe(cu) : io_uring_get_sqe(cu->ring);
	if (!sqe)
		return -EBUSY;
	p->ud_gen = cu_next_gen(cu);
	io_uring_prep_poll_add(sqe, cfd_token_fd(p->tok), POLLIN);
	sqe->user_data = ud_make(UD_POLL, p->ud_gen, idx);
	p->armed = 1;
	tpoll_mark(cu, idx);
	cu->dirty = true;
	return 0;
}

/* Forget a poll: remove it from the ring (if armed), drop its token. */
static void tpoll_free(struct cfd_uring *cu, uint32_t idx)
{
	struct tpoll *p = &cu->polls[idx];

	if (p->armed) {
		struct io_uring_sqe *sqe = cu_get_sqe(cu);

		/* Without an SQE the poll stays until the ring goes; its CQE
		 * carries a generation that matches nothing. */
		if (sqe) {
			io_uring_prep_poll_remove(
			    sqe, ud_make(UD_POLL, p->ud_gen, idx));
			sqe->user_data =
			    ud_make(UD_POLL_REMOVE, p->ud_gen, idx);
			cu->dirty = true;
		}
		p->armed = 0;
		tpoll_mark(cu, idx);
	}
	if (cu->last_poll == idx)
		cu->last_poll = NIL;
	hash_remove(cu, idx);
	cfd_token_unref(p->tok);
	p->tok = NULL;
	p->hnext = cu->poll_free;
	cu->poll_free = idx;
}

/* One user fewer: the last one removes the poll. */
void tpoll_put(struct cfd_uring *cu, uint32_t idx)
{
	if (--cu->polls[idx].users == 0)
		tpoll_free(cu, idx);
}

void tpolls_free(struct cfd_uring *cu)
{
	for (uint32_t i = 0; i < cu->npolls; i++)
		if (cu->polls[i].tok)
			tpoll_free(cu, i);
}

/*
 * The token was seen triggered: cancel the ops of every scope on it.  The
 * poll has nothing left to say (a token triggers once), but removing it
 * now would put a second request in the submit that carries the cancels
 * and delay them; it goes when its last user does.
 */
static void tpoll_saw_trigger(struct cfd_uring *cu, uint32_t idx)
{
	cu->polls[idx].saw_trigger = 1;
	tpoll_mark(cu, idx);
	for (struct cfd_scope *s = cu->polls[idx].scopes; s; s = s->pnext)
		scope_cancel_ops(cu, s);
}

/*
 * A CQE of a token poll: the poll is gone.  The token triggered, or
 * something else ended the poll: an outside write to a shared eventfd
 * (not a trigger: the token's watcher turns it into one, and that trigger
 * writes the fd again), or a cancel from outside.  Re-arm it then.
 */
void tpoll_cqe(struct cfd_uring *cu, const struct io_uring_cqe *cqe)
{
	uint32_t idx = ud_idx(cqe->user_data);
	struct tpoll *p;

	if (idx >= cu->npolls)
		return;
	p = &cu->polls[idx];
	if (!p->tok || !p->armed || p->ud_gen != ud_gen(cqe->user_data))
		return; /* an earlier poll of this entry */
	p->armed = 0;
	tpoll_mark(cu, idx);
	if (p->saw_trigger)
		return;
	if (cfd_token_triggered(p->tok)) {
		tpoll_saw_trigger(cu, idx);
		return;
	}
	/* A poll that fails by itself (its fd closed under it) must not be
	 * re-armed forever. */
	if (cqe->res < 0 && cqe->res != -ECANCELED)
		p->errors++;
	else
		p->errors = 0;
	if (!p->armed && p->errors < 3)
		tpoll_ensure_armed(cu, idx, true);
}
