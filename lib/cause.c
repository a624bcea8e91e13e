/* SPDX-License-Identifier: MIT */
/*
 * The cause of a trigger and the deadline of a token: what readers ask of
 * a token, from any thread.
 *
 * The cause lives on the origin, the token whose own trigger started the
 * cascade: its reason and signal in the state word (a descendant has its
 * own reason, PARENT or ALL_OF, and the origin's signal), its time, and a
 * cause_text for a message, a code, or a cause that came from another
 * process.  The origin is published last (release): a reader that finds
 * it reads the rest.  Nothing of it changes after.
 *
 * A token's deadline is state too: its own (a timeout or deadline source,
 * an import) and its ancestors', found by walking up, with no lock and no
 * system call.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* ---- the cause ---- */

struct cfd_token *token_origin_wait(const struct cfd_token *t)
{
	struct cfd_token *o;

	if (!(token_state(t) & ST_TRIGGERED))
		return NULL;
	while (!(o = atomic_load_explicit(&t->origin, memory_order_acquire)))
		sched_yield();
	return o;
}

/* The origin's cause text, or NULL (pending, none, another process). */
static const struct cause_text *token_cause(const struct cfd_token *tok)
{
	struct cfd_token *o;

	if (!tok || token_check_process(tok) < 0)
		return NULL;
	o = token_origin_wait(tok);
	return o ? o->cause : NULL;
}

struct cause_text *cause_text_new(int32_t code, const char *message,
				  const char *path, int32_t pid, uint32_t flags)
{
	size_t lm = message ? strlen(message) + 1 : 0;
	size_t lp = path ? strlen(path) + 1 : 0;
	struct cause_text *c;

	if (!code && !message && !path && !flags)
		return NULL; /* nothing to record */
	c = malloc(sizeof(*c) + lp + lm);
	if (!c)
		return NULL;
	c->code = code;
	c->pid = pid;
	c->flags = flags;
	c->path = path ? memcpy(c->buf, path, lp) : NULL;
	c->message = message ? memcpy(c->buf + lp, message, lm) : NULL;
	return c;
}

CFD_EXPORT int cfd_token_reason(const struct cfd_token *tok)
{
	int r = token_validate(tok);

	if (r < 0)
		return r;
	if (!(token_state(tok) & ST_TRIGGERED))
		return CFD_REASON_NONE;
	return (int)token_reason(tok);
}

CFD_EXPORT struct cfd_token *cfd_token_origin(const struct cfd_token *tok)
{
	if (!tok || token_check_process(tok) < 0)
		return NULL;
	return token_origin_wait(tok);
}

CFD_EXPORT const char *cfd_token_message(const struct cfd_token *tok)
{
	const struct cause_text *c = token_cause(tok);

	return c ? c->message : NULL;
}

CFD_EXPORT int cfd_token_code(const struct cfd_token *tok)
{
	const struct cause_text *c = token_cause(tok);

	return c ? c->code : 0;
}

CFD_EXPORT bool cfd_token_remote(const struct cfd_token *tok)
{
	const struct cause_text *c = token_cause(tok);

	return c && (c->flags & CAUSE_REMOTE);
}

CFD_EXPORT const char *cfd_token_origin_path(const struct cfd_token *tok)
{
	const struct cause_text *c = token_cause(tok);

	return c && (c->flags & CAUSE_REMOTE) ? c->path : NULL;
}

CFD_EXPORT int cfd_token_origin_pid(const struct cfd_token *tok)
{
	const struct cause_text *c;
	int r = token_validate(tok);

	if (r < 0)
		return r;
	if (!(token_state(tok) & ST_TRIGGERED))
		return 0;
	c = token_cause(tok);
	return c && (c->flags & CAUSE_REMOTE) ? c->pid : (int)getpid();
}

CFD_EXPORT int cfd_token_signal(const struct cfd_token *tok)
{
	int r = token_validate(tok);

	return r < 0 ? r : (int)token_signo(tok);
}

CFD_EXPORT int64_t cfd_token_trigger_time(const struct cfd_token *tok)
{
	struct cfd_token *o;
	int r = token_validate(tok);

	if (r < 0)
		return r;
	o = token_origin_wait(tok);
	return o ? o->time : 0;
}

CFD_EXPORT const char *cfd_reason_name(int reason)
{
	static const char *const names[] = {
		[CFD_REASON_NONE] = "none",
		[CFD_REASON_MANUAL] = "manual",
		[CFD_REASON_TIMEOUT] = "timeout",
		[CFD_REASON_SIGNAL] = "signal",
		[CFD_REASON_FD] = "fd",
		[CFD_REASON_CONDITION] = "condition",
		[CFD_REASON_PARENT] = "parent",
		[CFD_REASON_ALL_OF] = "all-of",
		[CFD_REASON_GONE] = "gone",
	};

	_Static_assert(sizeof(names) / sizeof(names[0]) == REASON_LAST + 1,
		       "every reason has a name");
	/* Total: a reason from a newer library, or garbage, still prints. */
	if (reason < 0 || (size_t)reason >= sizeof(names) / sizeof(names[0]) ||
	    !names[reason])
		return "unknown";
	return names[reason];
}

/* ---- deadlines ---- */

void token_deadline_lower(struct cfd_token *t, int64_t when)
{
	token_lock(t);
	if (when < atomic_load_explicit(&t->deadline, memory_order_relaxed))
		atomic_store_explicit(&t->deadline, when, memory_order_relaxed);
	token_unlock(t);
}

void token_deadline_set(struct cfd_token *t, int64_t when)
{
	token_lock(t);
	atomic_store_explicit(&t->deadline, when, memory_order_relaxed);
	token_unlock(t);
}

/* How far a walk goes through any-of and all-of tokens: nested this deep
 * on one path, and this many parents visited in all (a lattice of fan-ins
 * has exponentially many paths).  A parent not visited counts as having no
 * deadline, so an answer is never earlier than the truth. */
#define DEADLINE_FANIN_DEPTH 64
#define DEADLINE_FANIN_VISITS 1024

/* A triggered token's deadline is its trigger time: it has passed. */
static int64_t own_deadline(const struct cfd_token *t)
{
	struct cfd_token *o = token_origin_wait(t);

	return o ? o->time
		 : atomic_load_explicit(&t->deadline, memory_order_relaxed);
}

static struct cfd_token *parent_of(const struct cfd_token *t, uint32_t i)
{
	return listener_owner(&t->links[i].node);
}

static int64_t deadline_walk(const struct cfd_token *t, unsigned depth,
			     unsigned *visits);

/* Parent i's deadline, or none when the walk has gone far enough. */
static int64_t parent_deadline(const struct cfd_token *t, uint32_t i,
			       unsigned depth, unsigned *visits)
{
	if (depth >= DEADLINE_FANIN_DEPTH || *visits == 0)
		return INT64_MAX;
	--*visits;
	return deadline_walk(parent_of(t, i), depth + 1, visits);
}

/*
 * The earliest of t's own deadline and its ancestors': a child, chain or
 * any-of triggers with its first parent, an all-of with its last, so an
 * all-of's parents give it their latest deadline (none if one has none).
 * Single-parent links are followed in a loop: a chain a million deep
 * costs no stack and no visit.
 */
static int64_t deadline_walk(const struct cfd_token *t, unsigned depth,
			     unsigned *visits)
{
	int64_t d = INT64_MAX;

	for (;;) {
		int64_t own = own_deadline(t);

		if (own < d)
			d = own;
		if ((token_state(t) & ST_TRIGGERED) || t->nparents == 0)
			return d;
		if (t->nparents == 1 && !(token_state(t) & ST_ALL_OF)) {
			t = parent_of(t, 0);
			continue;
		}
		if (token_state(t) & ST_ALL_OF) {
			int64_t latest = INT64_MIN;

			for (uint32_t i = 0; i < t->nparents; i++) {
				int64_t p =
				    parent_deadline(t, i, depth, visits);

				if (p > latest)
					latest = p;
			}
			return latest < d ? latest : d;
		}
		for (uint32_t i = 0; i < t->nparents; i++) {
			int64_t p = parent_deadline(t, i, depth, visits);

			if (p < d)
				d = p;
		}
		return d;
	}
}

int64_t token_deadline(const struct cfd_token *t)
{
	unsigned visits = DEADLINE_FANIN_VISITS;

	return deadline_walk(t, 0, &visits);
}

CFD_EXPORT int64_t cfd_token_deadline(const struct cfd_token *tok)
{
	int r = token_validate(tok);

	return r < 0 ? r : token_deadline(tok);
}

CFD_EXPORT int64_t cfd_token_remaining(const struct cfd_token *tok)
{
	int64_t d = cfd_token_deadline(tok), now;

	if (d < 0 || d == CFD_NO_DEADLINE)
		return d;
	now = cfd_now();
	return d > now ? d - now : 0;
}
