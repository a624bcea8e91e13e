/* SPDX-License-Identifier: MIT */
/*
 * The watcher's fds: each entry's fd is in the epoll set under a slot,
 * whose index and generation are the event's data, so that an event still
 * queued for a slot that was freed (and maybe reused) is recognised as
 * stale.  Entries are one-shot: an event takes the fd out of the set's
 * attention until the entry adds it again.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/epoll.h>

#include "watcher-engine.h"

void watcher_io_init(struct wentry *e, const struct wentry_ops *ops)
{
	e->ops = ops;
	e->io.fd = -1;
	e->io.slot = SLOT_NONE;
}

static int slot_alloc(struct cfd_watcher *w, struct wentry *e, uint32_t *gen)
{
	uint32_t i = w->free_slot;

	if (i == SLOT_NONE) {
		uint32_t n = w->nslots ? w->nslots * 2 : 16;
		struct io_slot *s;

		if (n >= KEY_SLOTS_MAX)
			return -ENOSPC;
		s = realloc(w->slots, n * sizeof(*s));
		if (!s)
			return -ENOMEM;
		for (uint32_t j = w->nslots; j < n; j++) {
			s[j].e = NULL;
			s[j].gen = 0;
			s[j].next_free = j + 1 < n ? j + 1 : SLOT_NONE;
		}
		w->slots = s;
		w->free_slot = w->nslots;
		w->nslots = n;
		i = w->free_slot;
	}
	w->free_slot = w->slots[i].next_free;
	w->slots[i].e = e;
	*gen = w->slots[i].gen;
	return (int)i;
}

static void slot_free(struct cfd_watcher *w, uint32_t slot)
{
	w->slots[slot].e = NULL;
	w->slots[slot].gen++; /* events still queued for it are stale */
	w->slots[slot].next_free = w->free_slot;
	w->free_slot = slot;
}

int watcher_io_add(struct cfd_watcher *w, struct wentry *e, int fd,
		   uint32_t events)
{
	uint32_t gen;
	int slot = slot_alloc(w, e, &gen), r;

	if (slot < 0)
		return slot;
	r = watcher_epoll_add(w, fd, events | EPOLLONESHOT,
			      epoll_key((uint32_t)slot, gen));
	if (r < 0) {
		slot_free(w, (uint32_t)slot);
		return r;
	}
	e->io.fd = fd;
	e->io.slot = (uint32_t)slot;
	return 0;
}

void watcher_io_remove(struct cfd_watcher *w, struct wentry *e)
{
	if (e->io.slot == SLOT_NONE)
		return;
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, e->io.fd, NULL);
	slot_free(w, e->io.slot);
	e->io.slot = SLOT_NONE;
}

void io_dispatch(struct cfd_watcher *w, uint64_t key, uint32_t events,
		 struct fire_list *fl)
{
	uint32_t slot = (uint32_t)key, gen = (uint32_t)(key >> 32);

	watcher_lock(w);
	if (slot < w->nslots && w->slots[slot].gen == gen && w->slots[slot].e)
		fire_list_offer(fl, w->slots[slot].e, events);
	watcher_unlock(w);
}
