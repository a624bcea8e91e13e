/* SPDX-License-Identifier: MIT */
/*
 * The watcher's signals: one signalfd for the union of what its entries
 * subscribe to, with a count per signal.  One delivery is offered to every
 * entry subscribed to that signal: standard signals coalesce, so a second
 * delivery before the read is the same event.
 *
 * A signal read from a signalfd is gone for every other reader, so each
 * signal is watched by at most one watcher in the process: the owner
 * table says which.
 */
#define _GNU_SOURCE
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "watcher-engine.h"

static pthread_mutex_t sig_owner_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cfd_watcher *sig_owner[_NSIG];

void watcher_signals_init(struct wentry *e, const struct wentry_ops *ops,
			  const sigset_t *set)
{
	e->ops = ops;
	e->sig.set = *set;
	e->sig.next = NULL;
	e->sig.added = false;
}

/* Claim every signal of set for w, or none (-EEXIST). */
static int signals_claim(struct cfd_watcher *w, const sigset_t *set)
{
	int r = 0;

	pthread_mutex_lock(&sig_owner_lock);
	/* An owner from another fork generation is a copy the parent left:
	 * its watcher does not exist in this process. */
	for (int s = 1; s < _NSIG && r == 0; s++)
		if (sigismember(set, s) == 1 && sig_owner[s] &&
		    sig_owner[s] != w &&
		    sig_owner[s]->generation == cfd_generation())
			r = -EEXIST;
	for (int s = 1; s < _NSIG && r == 0; s++)
		if (sigismember(set, s) == 1)
			sig_owner[s] = w;
	pthread_mutex_unlock(&sig_owner_lock);
	return r;
}

/* Make the signalfd (and the owner table) match the counts.  Shrinking the
 * mask or closing the fd cannot fail. */
static int signals_update(struct cfd_watcher *w)
{
	sigset_t mask;
	bool any = false;
	int fd;

	sigemptyset(&mask);
	pthread_mutex_lock(&sig_owner_lock);
	for (int s = 1; s < _NSIG; s++) {
		if (w->sig_count[s]) {
			sigaddset(&mask, s);
			sig_owner[s] = w;
			any = true;
		} else if (sig_owner[s] == w) {
			sig_owner[s] = NULL;
		}
	}
	pthread_mutex_unlock(&sig_owner_lock);
	if (!any) {
		if (w->sigfd >= 0) {
			epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->sigfd, NULL);
			close(w->sigfd);
			w->sigfd = -1;
		}
		w->sig_mask = mask;
		return 0;
	}
	fd = signalfd(w->sigfd, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (w->sigfd < 0) {
		int r =
		    watcher_epoll_add(w, fd, EPOLLIN, epoll_key(KEY_SIGNAL, 0));

		if (r < 0) {
			close(fd);
			return r;
		}
		w->sigfd = fd;
	}
	w->sig_mask = mask;
	return 0;
}

static void signals_count(struct cfd_watcher *w, const sigset_t *set, int by)
{
	for (int s = 1; s < _NSIG; s++)
		if (sigismember(set, s) == 1)
			w->sig_count[s] += (unsigned)by;
}

int watcher_signals_add(struct cfd_watcher *w, struct wentry *e)
{
	int r = signals_claim(w, &e->sig.set);

	if (r < 0)
		return r;
	signals_count(w, &e->sig.set, 1);
	r = signals_update(w);
	if (r < 0) {
		signals_count(w, &e->sig.set, -1);
		signals_update(w);
		return r;
	}
	e->sig.next = w->sig_entries;
	w->sig_entries = e;
	e->sig.added = true;
	return 0;
}

void watcher_signals_remove(struct cfd_watcher *w, struct wentry *e)
{
	struct wentry **pp = &w->sig_entries;

	if (!e->sig.added)
		return;
	while (*pp != e)
		pp = &(*pp)->sig.next;
	*pp = e->sig.next;
	e->sig.added = false;
	signals_count(w, &e->sig.set, -1);
	signals_update(w);
}

void signals_dispatch(struct cfd_watcher *w, struct fire_list *fl)
{
	struct signalfd_siginfo si;
	sigset_t got;
	bool any = false;

	sigemptyset(&got);
	watcher_lock(w);
	while (w->sigfd >= 0 && read(w->sigfd, &si, sizeof(si)) == sizeof(si)) {
		sigaddset(&got, (int)si.ssi_signo);
		any = true;
	}
	for (struct wentry *e = w->sig_entries; any && e; e = e->sig.next)
		for (int signo = 1; signo < _NSIG; signo++)
			if (sigismember(&got, signo) == 1 &&
			    sigismember(&e->sig.set, signo) == 1) {
				fire_list_offer(fl, e, (unsigned)signo);
				break;
			}
	watcher_unlock(w);
}

/* In a child after fork the parent's ownership means nothing. */
void signals_after_fork_in_child(void)
{
	for (int s = 0; s < _NSIG; s++)
		sig_owner[s] = NULL;
	pthread_mutex_init(&sig_owner_lock, NULL);
}
