/* SPDX-License-Identifier: MIT */
/*
 * Condition sources: a predicate the watcher calls on its thread at an
 * interval (first at once); when it returns true the token triggers with
 * CFD_REASON_CONDITION.  A timer of the watcher's heap, added again one
 * interval later each time it comes due.
 */
#define _GNU_SOURCE

#include "source.h"

static int condition_attach(struct cfd_source *src)
{
	return watcher_timer_add(src->w, &src->entry, src->entry.timer.when);
}

static void condition_detach(struct cfd_source *src)
{
	watcher_timer_remove(src->w, &src->entry);
}

/* Due: check again one interval from now.  The heap slot it left is free,
 * so adding it back cannot fail. */
static bool condition_ready(struct cfd_source *src, unsigned info)
{
	(void)info;
	watcher_timer_add(src->w, &src->entry, cfd_now() + src->cond.interval);
	return true;
}

static void condition_fire(struct cfd_source *src, struct cfd_token *tok,
			   unsigned info)
{
	(void)info;
	if (src->cond.fn(tok, src->cond.userdata))
		token_trigger(tok, CFD_REASON_CONDITION, 0, NULL);
}

static const struct source_kind condition_kind = {
	.name = "condition",
	.attach = condition_attach,
	.detach = condition_detach,
	.ready = condition_ready,
	.fire = condition_fire,
};

CFD_EXPORT int cfd_source_add_condition(struct cfd_source **ret,
					struct cfd_token *tok,
					struct cfd_watcher *w,
					cfd_condition_fn fn, void *userdata,
					int64_t interval_ns)
{
	struct cfd_source p = { .kind = &condition_kind };
	int64_t now = cfd_now();
	int r;

	if (!fn || interval_ns <= 0 || interval_ns > INT64_MAX - now)
		return -EINVAL;
	r = source_check_token(tok, ret);
	if (r != 0)
		return r < 0 ? r : 0;
	watcher_timer_init(&p.entry, &source_entry_ops);
	p.entry.timer.when = now; /* first check at once, on the watcher */
	p.cond.fn = fn;
	p.cond.userdata = userdata;
	p.cond.interval = interval_ns;
	return source_add(ret, tok, w, &p);
}
