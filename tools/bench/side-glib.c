/* SPDX-License-Identifier: MIT */
/*
 * GLib's GCancellable, the only fd-based C cancellation object users would
 * otherwise pick (research/peers-other.md 6.1, limits.md section 8).  It
 * has no children: the documented way to link is g_cancellable_connect()
 * with a handler that cancels the child.  Without GLib every function here
 * reports it and the rows say "GLib not found".
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>

#include "bench.h"

#if HAVE_GLIB
#include <gio/gio.h>

static char version[32];

bool glib_available(void)
{
	return true;
}

const char *glib_version(void)
{
	snprintf(version, sizeof(version), "%u.%u.%u", glib_major_version,
		 glib_minor_version, glib_micro_version);
	return version;
}

static GCancellable **array(size_t n)
{
	static GCancellable **v;
	static size_t cap;

	if (n > cap) {
		free(v);
		v = malloc(n * sizeof(*v));
		if (!v)
			die("out of memory");
		cap = n;
	}
	return v;
}

static gulong *ids(size_t n)
{
	static gulong *v;
	static size_t cap;

	if (n > cap) {
		free(v);
		v = malloc(n * sizeof(*v));
		if (!v)
			die("out of memory");
		cap = n;
	}
	return v;
}

double glib_life(size_t k)
{
	GCancellable **c = array(k);
	int64_t t0, t1;

	t0 = now_ns();
	for (size_t i = 0; i < k; i++)
		c[i] = g_cancellable_new();
	for (size_t i = 0; i < k; i++)
		g_object_unref(c[i]);
	t1 = now_ns();
	return (double)(t1 - t0) / (double)k;
}

static void cancel_child(GCancellable *parent, gpointer child)
{
	(void)parent;
	g_cancellable_cancel(child);
}

double glib_link_life(size_t k)
{
	GCancellable *p = g_cancellable_new();
	GCancellable **c = array(k);
	gulong *id = ids(k);
	int64_t t0, t1;

	t0 = now_ns();
	for (size_t i = 0; i < k; i++) {
		c[i] = g_cancellable_new();
		id[i] = g_cancellable_connect(p, G_CALLBACK(cancel_child), c[i],
					      NULL);
	}
	for (size_t i = 0; i < k; i++) {
		g_cancellable_disconnect(p, id[i]);
		g_object_unref(c[i]);
	}
	t1 = now_ns();
	g_object_unref(p);
	return (double)(t1 - t0) / (double)k;
}

double glib_fan(size_t n, size_t trees)
{
	GCancellable **c = array(trees * (n + 1));
	GCancellable **root = c + trees * n;
	int64_t t0, t1;

	for (size_t t = 0; t < trees; t++) {
		root[t] = g_cancellable_new();
		for (size_t i = 0; i < n; i++) {
			GCancellable *k = g_cancellable_new();

			c[t * n + i] = k;
			g_cancellable_connect(root[t], G_CALLBACK(cancel_child),
					      k, NULL);
		}
	}
	t0 = now_ns();
	for (size_t t = 0; t < trees; t++)
		g_cancellable_cancel(root[t]);
	t1 = now_ns();
	for (size_t i = 0; i < trees * n; i++)
		if (!g_cancellable_is_cancelled(c[i]))
			die("GLib fan-out: a child was not cancelled");
	for (size_t t = 0; t < trees; t++)
		g_object_unref(root[t]);
	for (size_t i = 0; i < trees * n; i++)
		g_object_unref(c[i]);
	return (double)(t1 - t0) / (double)(trees * n);
}

void *glib_new_with_fd(int *fd)
{
	GCancellable *c = g_cancellable_new();

	*fd = g_cancellable_get_fd(c);
	if (*fd < 0)
		die("g_cancellable_get_fd failed");
	return c;
}

void glib_cancel(void *c)
{
	g_cancellable_cancel(c);
}

void glib_free(void *c)
{
	g_cancellable_release_fd(c);
	g_object_unref(c);
}

#else /* !HAVE_GLIB */

bool glib_available(void)
{
	return false;
}

const char *glib_version(void)
{
	return "not found";
}

double glib_life(size_t k)
{
	(void)k;
	return NAN;
}

double glib_link_life(size_t k)
{
	(void)k;
	return NAN;
}

double glib_fan(size_t n, size_t trees)
{
	(void)n;
	(void)trees;
	return NAN;
}

void *glib_new_with_fd(int *fd)
{
	*fd = -1;
	return NULL;
}

void glib_cancel(void *c)
{
	(void)c;
}

void glib_free(void *c)
{
	(void)c;
}
#endif
