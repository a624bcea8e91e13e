/* SPDX-License-Identifier: MIT */
/*
 * Timeout and deadline sources: a timer of the watcher's heap, triggering
 * the token with CFD_REASON_TIMEOUT when it passes.
 */
#define _GNU_SOURCE

#include "source.h"

static int timeout_attach(struct cfd_source *src)
{
	return watcher_timer_add(src->w, &src->entry, src->entry.timer.when);
}

static void timeout_detach(struct cfd_source *src)
{
	watcher_timer_remove(src->w, &src->entry);
}

static void timeout_fire(struct cfd_source *src, struct cfd_token *tok,
			 unsigned info)
{
	(void)src;
	(void)info;
	token_trigger(tok, CFD_REASON_TIMEOUT, 0, NULL);
}

static const struct source_kind timeout_kind = {
	.name = "timeout",
	.attach = timeout_attach,
	.detach = timeout_detach,
	.fire = timeout_fire,
};

CFD_EXPORT int cfd_source_add_deadline(struct cfd_source **ret,
				       struct cfd_token *tok,
				       struct cfd_watcher *w,
				       int64_t deadline_ns)
{
	struct cfd_source p = { .kind = &timeout_kind };
	int r;

	if (deadline_ns < 0)
		return -EINVAL;
	if (w && watcher_check(w) < 0)
		return -ECHILD;
	r = source_check_token(tok, ret);
	if (r != 0)
		return r < 0 ? r : 0;
	if (deadline_ns <= cfd_now()) {
		/* Past: fire at once, in this thread, with no fd. */
		token_trigger(tok, CFD_REASON_TIMEOUT, 0, NULL);
		if (ret)
			*ret = NULL;
		return 0;
	}
	watcher_timer_init(&p.entry, &source_entry_ops);
	p.entry.timer.when = deadline_ns;
	return source_add(ret, tok, w, &p);
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
