/* SPDX-License-Identifier: MIT */
/*
 * The token graph: child, chain, any-of and all-of tokens, and the fan-out
 * that carries a trigger down to every descendant.
 *
 * A child holds a reference to each parent; a parent lists its children
 * weakly (a link inside the child's allocation), and a child that is freed
 * unlinks itself at once.  The fan-out is iterative: the tokens still to be
 * walked are kept on a list threaded through the tokens themselves, so it
 * needs no memory and no stack depth proportional to the graph.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void fanout_init(struct fanout *f)
{
	f->stack = NULL;
	f->run = NULL;
	f->run_tail = &f->run;
}

static void fanout_push(struct fanout *f, struct cfd_token *t)
{
	t->work_next = f->stack;
	f->stack = t;
}

/* Trigger one child on behalf of a parent's walk; the parent's lock is
 * held, which keeps the child's memory alive (a child frees itself only
 * after unlinking under that lock). */
static void visit_child(struct fanout *f, struct cfd_token *c,
			struct cfd_token *origin, unsigned signo)
{
	unsigned reason = CFD_REASON_PARENT;
	uint32_t won;

	if (atomic_load_explicit(&c->word, memory_order_relaxed) & ST_ALL_OF) {
		if (atomic_fetch_sub(token_all_of_pending(c), 1) != 1)
			return;
		reason = CFD_REASON_ALL_OF;
	}
	/* Already triggered: whoever did it owns its fan-out. */
	won = token_win(c, reason, signo, false);
	if (!won)
		return;
	token_publish(c, origin, won);
	/* The swap read the state word as the last listener_add() released
	 * it, so a listener added before is seen here; one added after sees
	 * the trigger (see listener_add). */
	if (atomic_load_explicit(&c->listeners, memory_order_acquire) &&
	    token_try_ref(c))
		fanout_push(f, c);
}

/* Walk t's listeners under its lock (taken by the caller). */
static void fanout_walk_locked(struct fanout *f, struct cfd_token *t)
{
	struct cfd_token *origin = token_origin_wait(t);
	unsigned signo = token_signo(t);
	struct listener *n, *next;

	for (n = atomic_load_explicit(&t->listeners, memory_order_relaxed); n;
	     n = next) {
		next = atomic_load_explicit(&n->next, memory_order_relaxed);
		if (listener_kind(n) == LISTENER_LINK)
			visit_child(f,
				    container_of(n, struct link, node)->child,
				    origin, signo);
		else
			registration_queue(
			    f, container_of(n, struct cfd_registration, node));
	}
	token_unlock(t);
}

void fanout_run(struct fanout *f, struct cfd_token *start, bool locked)
{
	struct cfd_token *t;

	/* The start token is the caller's (it holds a reference).  Without
	 * listeners it needs no lock: an adder that comes later sees the
	 * trigger when it takes the lock. */
	if (locked) {
		fanout_walk_locked(f, start);
	} else if (atomic_load_explicit(&start->listeners,
					memory_order_acquire)) {
		token_lock(start);
		fanout_walk_locked(f, start);
	}
	while ((t = f->stack)) {
		f->stack = t->work_next;
		token_lock(t);
		fanout_walk_locked(f, t);
		cfd_token_unref(t);
	}
	/* Every descendant is triggered; only now run user code. */
	if (f->run)
		callbacks_run(f->run);
}

/* ---- building the graph ---- */

/* Born triggered: the parent fired before the link could be made. */
static void token_born_triggered(struct cfd_token *t, unsigned reason,
				 struct cfd_token *origin, unsigned signo)
{
	uint32_t won = token_win(t, reason, signo, false);

	if (won)
		token_publish(t, origin, won);
}

/* Link t under parent p.  Returns true if p had triggered already, in
 * which case the link is not kept. */
static bool link_parent(struct cfd_token *t, size_t i, struct cfd_token *p)
{
	struct link *l = &t->links[i];

	l->node.owner = (uintptr_t)p | LISTENER_LINK;
	atomic_init(&l->node.next, NULL);
	atomic_init(&l->node.pprev, NULL);
	l->child = t;
	/* The child holds its parent: the reference is taken with the
	 * parent's lock, in one step. */
	return listener_add(p, &l->node, REF_ONE) != 0;
}

static int check_parents(struct cfd_token *const *toks, size_t n)
{
	if (!toks || n == 0 || n > CFD_MAX_PARENTS)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (!toks[i])
			return -EINVAL;
		if (token_check_process(toks[i]) < 0)
			return -ECHILD;
	}
	return 0;
}

/* Any-of over toks (child and chain are the cases n = 1 and n = 2). */
static int token_any_of(struct cfd_token **ret, const char *name,
			size_t name_len, const char *name2,
			struct cfd_token *const *toks, size_t n)
{
	struct cfd_token *t;
	bool born = false;

	t = token_alloc(name, name_len, name2, n, false);
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (born) {
			/* Hold the parent, but no need to listen to it. */
			struct link *l = &t->links[i];

			l->node.owner = (uintptr_t)cfd_token_ref(toks[i]);
			atomic_init(&l->node.pprev, NULL);
			continue;
		}
		if (link_parent(t, i, toks[i])) {
			born = true;
			token_born_triggered(t, CFD_REASON_PARENT,
					     token_origin_wait(toks[i]),
					     token_signo(toks[i]));
		}
	}
	*ret = t;
	return 0;
}

CFD_EXPORT int cfd_token_child(struct cfd_token **ret, struct cfd_token *parent,
			       const char *name)
{
	size_t len;
	int r;

	if (!ret)
		return -EINVAL;
	r = check_parents(&parent, 1);
	if (r < 0)
		return r;
	if (!name)
		name = "";
	len = strlen(name);
	if (len > CFD_NAME_MAX)
		return -EINVAL;
	return token_any_of(ret, name, len, NULL, &parent, 1);
}

CFD_EXPORT int cfd_token_chain(struct cfd_token **ret, struct cfd_token *a,
			       struct cfd_token *b)
{
	struct cfd_token *toks[2] = { a, b };
	const char *na;
	int r;

	if (!ret)
		return -EINVAL;
	r = check_parents(toks, 2);
	if (r < 0)
		return r;
	na = token_name_ptr(a);
	return token_any_of(ret, na, strlen(na), token_name_ptr(b), toks, 2);
}

static int check_name(const char **name, size_t *len)
{
	if (!*name)
		*name = "";
	*len = strlen(*name);
	return *len > CFD_NAME_MAX ? -EINVAL : 0;
}

CFD_EXPORT int cfd_token_any_of(struct cfd_token **ret, const char *name,
				struct cfd_token *const *toks, size_t n)
{
	size_t len;
	int r;

	if (!ret)
		return -EINVAL;
	r = check_parents(toks, n);
	if (r < 0)
		return r;
	r = check_name(&name, &len);
	if (r < 0)
		return r;
	return token_any_of(ret, name, len, NULL, toks, n);
}

/*
 * An all-of whose parents all triggered before it was made: its origin is
 * that of the parent triggered last, as far as the trigger time tells.
 * Times come from the coarse clock, so parents triggered within one tick
 * tie, and the later of them in the array wins.
 */
static struct cfd_token *latest_origin(struct cfd_token *const *toks, size_t n)
{
	struct cfd_token *best = NULL;

	for (size_t i = 0; i < n; i++) {
		struct cfd_token *o = token_origin_wait(toks[i]);

		if (!best || o->time >= best->time)
			best = o;
	}
	return best;
}

CFD_EXPORT int cfd_token_all_of(struct cfd_token **ret, const char *name,
				struct cfd_token *const *toks, size_t n)
{
	struct cfd_token *t;
	size_t len;
	int r;

	if (!ret)
		return -EINVAL;
	r = check_parents(toks, n);
	if (r < 0)
		return r;
	r = check_name(&name, &len);
	if (r < 0)
		return r;
	t = token_alloc(name, len, NULL, n, true);
	if (!t)
		return -ENOMEM;
	/* One count per parent, plus one held while linking so that
	 * parents firing meanwhile cannot complete the count early. */
	atomic_init(token_all_of_pending(t), (uint32_t)n + 1);
	for (size_t i = 0; i < n; i++)
		if (link_parent(t, i, toks[i]))
			atomic_fetch_sub(token_all_of_pending(t), 1);
	if (atomic_fetch_sub(token_all_of_pending(t), 1) == 1) {
		struct cfd_token *o = latest_origin(toks, n);

		token_born_triggered(t, CFD_REASON_ALL_OF, o, token_signo(o));
	}
	*ret = t;
	return 0;
}

/* ---- release ---- */

void token_release_links(struct cfd_token *t, struct cfd_token **free_list)
{
	for (uint32_t i = 0; i < t->nparents; i++) {
		struct link *l = &t->links[i];
		struct cfd_token *p = listener_owner(&l->node);
		uint32_t left;

		if (atomic_load_explicit(&l->node.pprev,
					 memory_order_relaxed)) {
			/* Unlink, then unlock and let go in one step. */
			token_lock(p);
			listener_unlink(&l->node);
			left = token_unlock_unref(p);
		} else {
			left = (uint32_t)(atomic_fetch_sub_explicit(
					      &p->word, REF_ONE,
					      memory_order_acq_rel) >>
					  32) -
			       1;
		}
		if (left == 0) {
			p->work_next = *free_list;
			*free_list = p;
		}
	}
}
