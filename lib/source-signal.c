/* SPDX-License-Identifier: MIT */
/*
 * Signal sources: a subscription to the watcher's signalfd; one delivery
 * of any of the signals triggers the token with CFD_REASON_SIGNAL and the
 * signal's number.  The signals must be blocked (a signal not blocked is
 * delivered, not read, and its default action may end the process).
 */
#define _GNU_SOURCE
#include <pthread.h>

#include "source.h"

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

static int signal_attach(struct cfd_source *src)
{
	return watcher_signals_add(src->w, &src->entry);
}

static void signal_detach(struct cfd_source *src)
{
	watcher_signals_remove(src->w, &src->entry);
}

static void signal_fire(struct cfd_source *src, struct cfd_token *tok,
			unsigned signo)
{
	(void)src;
	token_trigger(tok, CFD_REASON_SIGNAL, signo, NULL);
}

static const struct source_kind signal_kind = {
	.name = "signal",
	.attach = signal_attach,
	.detach = signal_detach,
	.fire = signal_fire,
};

CFD_EXPORT int cfd_source_add_signals(struct cfd_source **ret,
				      struct cfd_token *tok,
				      struct cfd_watcher *w, const int *signals,
				      size_t n)
{
	struct cfd_source p = { .kind = &signal_kind };
	sigset_t set, blocked;
	int r = check_signals(signals, n, &set);

	if (r == 0 && !tok)
		r = -EINVAL;
	if (r < 0)
		return r;
	/* It must be blocked in every thread; this thread is the one that
	 * can be checked. */
	pthread_sigmask(SIG_BLOCK, NULL, &blocked);
	for (int s = 1; s < _NSIG; s++)
		if (sigismember(&set, s) == 1 && sigismember(&blocked, s) != 1)
			return -EBUSY;
	r = source_check_token(tok, ret);
	if (r != 0)
		return r < 0 ? r : 0;
	watcher_signals_init(&p.entry, &source_entry_ops, &set);
	return source_add(ret, tok, w, &p);
}
