/* SPDX-License-Identifier: MIT */
/*
 * own-thread.c: a watcher running on its own thread.
 *
 * No loop to integrate: cfd_watcher_start() runs the watcher on a thread
 * of its own (with every signal blocked).  A batch job checks its token
 * between items; a condition, called on the watcher's thread every
 * millisecond, cancels it when the "disk" is nearly full.  A deadline is
 * the safety net.
 *
 *   cc own-thread.c $(pkg-config --cflags --libs cancelfd)
 */
#include <cancelfd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

static _Atomic int disk_used = 50; /* percent */

/* Runs on the watcher's thread: only touch what is safe to share. */
static bool disk_nearly_full(struct cfd_token *tok, void *userdata)
{
	(void)tok;
	(void)userdata;
	return atomic_load(&disk_used) >= 90;
}

int main(void)
{
	struct cfd_watcher *w;
	struct cfd_token *batch;
	int item, reason;

	if (cfd_watcher_new(&w) < 0 || cfd_watcher_start(w) < 0)
		return 1;
	if (cfd_token_new(&batch, "batch") < 0)
		return 1;
	cfd_source_add_condition(NULL, batch, w, disk_nearly_full, NULL,
				 CFD_MSEC(1));
	cfd_source_add_timeout(NULL, batch, w, CFD_SEC(10));

	for (item = 0; cfd_token_check(batch) == 0; item++) {
		/* process one item: it fills the disk a little */
		if (atomic_load(&disk_used) < 100)
			atomic_fetch_add(&disk_used, 1);
		cfd_token_wait(batch, CFD_USEC(200)); /* pace the demo */
	}
	reason = cfd_token_reason(batch);
	printf("batch stopped after %d items: %s\n", item,
	       cfd_reason_name(reason));

	cfd_token_unref(batch);
	cfd_watcher_stop(w); /* joins the thread */
	cfd_watcher_unref(w);
	return reason == CFD_REASON_CONDITION ? 0 : 1;
}
