/* SPDX-License-Identifier: MIT */
/*
 * _cancelfd: the C half of the Python package cancelfd.
 *
 * Token is the base type of cancelfd.CancelToken: it owns one reference to a
 * struct cfd_token and does, in C, what must be fast or must not hold the
 * GIL (the state, the trigger, the cause, the fd, the graph, the sources,
 * the exports).  Everything that touches asyncio is in Python.
 *
 * Processes: a token belongs to the process that made it.  The library
 * returns -ECHILD in a forked child; here every entry point compares the
 * token's pid with the process's own (cached, updated by a pthread_atfork
 * handler) and raises the ForkedTokenError the package gives _init().
 *
 * Condition predicates are Python callables run on the watcher's thread:
 * they take the GIL there.  At exit (atexit: _shutdown) predicates stop
 * being called, and _shutdown waits for a call in flight, so that no
 * watcher thread reaches for the GIL of a finalizing interpreter.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cancelfd.h>

static pid_t cur_pid;
/* The package's exception for a token used after fork (see _init). */
static PyObject *forked_error;
/* cfd token address -> address of the Python object that owns it: the
 * origin of a trigger is found as the object the program knows. */
static PyObject *registry;

static void atfork_child(void)
{
	cur_pid = getpid();
}

/* ---- Token ---- */

typedef struct {
	PyObject_HEAD struct cfd_token *tok;
	PyObject *name;
	PyObject *weakrefs;
	pid_t pid;
	int export_fd; /* a watch-only export kept for pickling, or -1 */
} TokenObject;

static PyTypeObject TokenType;
static PyTypeObject SourceType;

static PyObject *raise_forked(pid_t pid, PyObject *name)
{
	PyErr_Format(forked_error ? forked_error : PyExc_RuntimeError,
		     "CancelToken %R was made in process %d and this is "
		     "process %d, a child made by fork(): pass a token to "
		     "another process by pickling it for multiprocessing or "
		     "with export_fd()",
		     name ? name : Py_None, (int)pid, (int)cur_pid);
	return NULL;
}

/* A negative errno from the library as a Python exception. */
static PyObject *raise_cfd(int r, TokenObject *t)
{
	if (r == -ECHILD && t)
		return raise_forked(t->pid, t->name);
	if (r == -ENOMEM)
		return PyErr_NoMemory();
	if (r == -EINVAL) {
		PyErr_SetString(PyExc_ValueError, strerror(EINVAL));
		return NULL;
	}
	errno = -r;
	return PyErr_SetFromErrno(PyExc_OSError);
}

#define CHECK_PROCESS(t)                                          \
	do {                                                      \
		if ((t)->pid != cur_pid)                          \
			return raise_forked((t)->pid, (t)->name); \
	} while (0)

static int registry_add(TokenObject *t)
{
	PyObject *k = PyLong_FromVoidPtr(t->tok);
	PyObject *v = PyLong_FromVoidPtr(t);
	int r = -1;

	if (k && v)
		r = PyDict_SetItem(registry, k, v);
	Py_XDECREF(k);
	Py_XDECREF(v);
	return r;
}

static void registry_remove(TokenObject *t)
{
	PyObject *k, *v;
	PyObject *type, *value, *tb;

	if (!registry)
		return;
	PyErr_Fetch(&type, &value, &tb);
	k = PyLong_FromVoidPtr(t->tok);
	if (k) {
		v = PyDict_GetItemWithError(registry, k);
		if (v && PyLong_AsVoidPtr(v) == (void *)t)
			PyDict_DelItem(registry, k);
		Py_DECREF(k);
	}
	PyErr_Clear();
	PyErr_Restore(type, value, tb);
}

static PyObject *decode_name(const char *s)
{
	if (!s)
		s = "";
	return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s),
				    "surrogateescape");
}

/* Make an object of type cls around tok, which it takes. */
static PyObject *wrap(PyTypeObject *cls, struct cfd_token *tok)
{
	TokenObject *t = (TokenObject *)cls->tp_alloc(cls, 0);

	if (!t) {
		cfd_token_unref(tok);
		return NULL;
	}
	t->tok = tok;
	t->pid = cur_pid;
	t->export_fd = -1;
	t->name = decode_name(cfd_token_name(tok));
	if (!t->name || registry_add(t) < 0) {
		Py_DECREF(t);
		return NULL;
	}
	return (PyObject *)t;
}

/* A str argument as the UTF-8 C string the library copies. */
static const char *c_string(PyObject *s, const char *what)
{
	const char *p;
	Py_ssize_t n;

	if (!PyUnicode_Check(s)) {
		PyErr_Format(PyExc_TypeError, "%s must be a str, not %.100s",
			     what, Py_TYPE(s)->tp_name);
		return NULL;
	}
	p = PyUnicode_AsUTF8AndSize(s, &n);
	if (p && (size_t)n != strlen(p)) {
		PyErr_Format(PyExc_ValueError, "%s contains a NUL character",
			     what);
		return NULL;
	}
	return p;
}

static PyObject *Token_new(PyTypeObject *cls, PyObject *args, PyObject *kw)
{
	PyObject *name = NULL;
	struct cfd_token *tok;
	const char *s;
	int r;

	/* Only the name is ours: a subclass's __init__ takes the rest. */
	if (PyTuple_GET_SIZE(args) > 0)
		name = PyTuple_GET_ITEM(args, 0);
	else if (kw)
		name = PyDict_GetItemString(kw, "name");
	if (!name) {
		PyErr_SetString(PyExc_TypeError, "a token needs a name");
		return NULL;
	}
	s = c_string(name, "name");
	if (!s)
		return NULL;
	r = cfd_token_new(&tok, s);
	if (r < 0)
		return raise_cfd(r, NULL);
	return wrap(cls, tok);
}

static void Token_dealloc(TokenObject *t)
{
	if (t->weakrefs)
		PyObject_ClearWeakRefs((PyObject *)t);
	if (t->tok) {
		registry_remove(t);
		if (t->export_fd >= 0 && t->pid == cur_pid)
			close(t->export_fd);
		/* Not in a forked child: the copy is inert there (the
		 * library would do nothing), and its fds are the parent's. */
		if (t->pid == cur_pid)
			cfd_token_unref(t->tok);
	}
	Py_XDECREF(t->name);
	Py_TYPE(t)->tp_free((PyObject *)t);
}

static int token_arg(PyObject *o, TokenObject **ret)
{
	if (!PyObject_TypeCheck(o, &TokenType)) {
		PyErr_Format(PyExc_TypeError,
			     "expected a CancelToken, not %.100s",
			     Py_TYPE(o)->tp_name);
		return -1;
	}
	*ret = (TokenObject *)o;
	if (((TokenObject *)o)->pid != cur_pid) {
		raise_forked(((TokenObject *)o)->pid, ((TokenObject *)o)->name);
		return -1;
	}
	return 0;
}

static PyObject *Token_triggered(TokenObject *t, void *unused)
{
	(void)unused;
	CHECK_PROCESS(t);
	if (cfd_token_triggered(t->tok))
		Py_RETURN_TRUE;
	Py_RETURN_FALSE;
}

static PyObject *Token_name(TokenObject *t, void *unused)
{
	(void)unused;
	Py_INCREF(t->name);
	return t->name;
}

static PyObject *Token_reason(TokenObject *t, void *unused)
{
	int r;

	(void)unused;
	CHECK_PROCESS(t);
	r = cfd_token_reason(t->tok);
	if (r < 0)
		return raise_cfd(r, t);
	return PyLong_FromLong(r);
}

static PyObject *Token_message(TokenObject *t, void *unused)
{
	const char *m;

	(void)unused;
	CHECK_PROCESS(t);
	m = cfd_token_message(t->tok);
	if (!m)
		Py_RETURN_NONE;
	return decode_name(m);
}

static PyObject *Token_signal(TokenObject *t, void *unused)
{
	int r;

	(void)unused;
	CHECK_PROCESS(t);
	r = cfd_token_signal(t->tok);
	if (r < 0)
		return raise_cfd(r, t);
	return PyLong_FromLong(r);
}

static PyObject *Token_code(TokenObject *t, void *unused)
{
	(void)unused;
	CHECK_PROCESS(t);
	return PyLong_FromLong(cfd_token_code(t->tok));
}

static PyObject *Token_remote(TokenObject *t, void *unused)
{
	(void)unused;
	CHECK_PROCESS(t);
	if (cfd_token_remote(t->tok))
		Py_RETURN_TRUE;
	Py_RETURN_FALSE;
}

static PyObject *Token_origin_pid(TokenObject *t, void *unused)
{
	int r;

	(void)unused;
	CHECK_PROCESS(t);
	r = cfd_token_origin_pid(t->tok);
	if (r < 0)
		return raise_cfd(r, t);
	return PyLong_FromLong(r);
}

static PyObject *Token_origin_path(TokenObject *t, void *unused)
{
	const char *p;

	(void)unused;
	CHECK_PROCESS(t);
	p = cfd_token_origin_path(t->tok);
	if (!p)
		Py_RETURN_NONE;
	return decode_name(p);
}

/* Nanoseconds on CLOCK_MONOTONIC as time.monotonic() gives them: CPython
 * converts its int64 nanoseconds with one int-to-double conversion and
 * one division by 1e9 (_PyTime_AsSecondsDouble), and so does this. */
static PyObject *monotonic_seconds(int64_t ns)
{
	volatile double d = (double)ns;

	d /= 1e9;
	return PyFloat_FromDouble(d);
}

static PyObject *Token_deadline(TokenObject *t, void *unused)
{
	int64_t ns;

	(void)unused;
	CHECK_PROCESS(t);
	ns = cfd_token_deadline(t->tok);
	if (ns < 0)
		return raise_cfd((int)ns, t);
	if (ns == CFD_NO_DEADLINE)
		Py_RETURN_NONE;
	return monotonic_seconds(ns);
}

static PyObject *Token_deadline_ns(TokenObject *t, void *unused)
{
	int64_t ns;

	(void)unused;
	CHECK_PROCESS(t);
	ns = cfd_token_deadline(t->tok);
	if (ns < 0)
		return raise_cfd((int)ns, t);
	if (ns == CFD_NO_DEADLINE)
		Py_RETURN_NONE;
	return PyLong_FromLongLong(ns);
}

static PyObject *Token_remaining(TokenObject *t, void *unused)
{
	int64_t ns;

	(void)unused;
	CHECK_PROCESS(t);
	ns = cfd_token_remaining(t->tok);
	if (ns < 0)
		return raise_cfd((int)ns, t);
	if (ns == CFD_NO_DEADLINE)
		Py_RETURN_NONE;
	return PyFloat_FromDouble((double)ns / 1e9);
}

/* (remaining ns, CLOCK_REALTIME ns) measured together, as
 * CANCELFD_DEADLINE carries them ("remaining@realtime",
 * cfd_token_from_env(3)); remaining -1: no deadline. */
static PyObject *Token_deadline_wire(TokenObject *t, PyObject *unused)
{
	struct timespec ts;
	int64_t left;

	(void)unused;
	CHECK_PROCESS(t);
	left = cfd_token_remaining(t->tok);
	clock_gettime(CLOCK_REALTIME, &ts);
	if (left < 0)
		return raise_cfd((int)left, t);
	if (left == CFD_NO_DEADLINE)
		left = -1;
	return Py_BuildValue("LL", (long long)left,
			     (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
}

static PyObject *Token_trigger_time(TokenObject *t, void *unused)
{
	int64_t ns;

	(void)unused;
	CHECK_PROCESS(t);
	ns = cfd_token_trigger_time(t->tok);
	if (ns < 0)
		return raise_cfd((int)ns, t);
	return PyLong_FromLongLong(ns);
}

static PyObject *Token_origin(TokenObject *t, void *unused)
{
	struct cfd_token *o;
	PyObject *k, *v;

	(void)unused;
	CHECK_PROCESS(t);
	o = cfd_token_origin(t->tok);
	if (!o)
		Py_RETURN_NONE;
	if (o == t->tok) {
		Py_INCREF(t);
		return (PyObject *)t;
	}
	k = PyLong_FromVoidPtr(o);
	if (!k)
		return NULL;
	v = PyDict_GetItemWithError(registry, k);
	Py_DECREF(k);
	if (v) {
		PyObject *obj = PyLong_AsVoidPtr(v);

		Py_INCREF(obj);
		return obj;
	}
	if (PyErr_Occurred())
		return NULL;
	/* The origin's Python object is gone (the token lives on, held by
	 * its descendants): a new object for it. */
	return wrap(Py_TYPE(t), cfd_token_ref(o));
}

/* A code argument (None: none) as the int the library carries. */
static int c_code(PyObject *o, int *code)
{
	long v;

	*code = 0;
	if (o == Py_None)
		return 0;
	v = PyLong_AsLong(o);
	if (v == -1 && PyErr_Occurred())
		return -1;
	if (v < INT_MIN || v > INT_MAX) {
		PyErr_SetString(PyExc_OverflowError,
				"code must fit in a C int (32 bits)");
		return -1;
	}
	*code = (int)v;
	return 0;
}

/* _trigger(message=None, code=None): True if this call triggered. */
static PyObject *Token_trigger(TokenObject *t, PyObject *const *args,
			       Py_ssize_t nargs)
{
	const char *msg = NULL;
	int code = 0, r;

	CHECK_PROCESS(t);
	if (nargs > 2) {
		PyErr_SetString(PyExc_TypeError,
				"_trigger() takes at most two arguments");
		return NULL;
	}
	if (nargs >= 1 && args[0] != Py_None) {
		msg = c_string(args[0], "message");
		if (!msg)
			return NULL;
	}
	if (nargs == 2 && c_code(args[1], &code) < 0)
		return NULL;
	/* Without the GIL, as os.write() would: a loop woken by the fd
	 * gets on at once instead of waiting for this thread. */
	Py_BEGIN_ALLOW_THREADS;
	if (code)
		r = cfd_token_trigger_code(t->tok, code, msg);
	else if (msg)
		r = cfd_token_trigger_msg(t->tok, msg);
	else
		r = cfd_token_trigger(t->tok);
	Py_END_ALLOW_THREADS;
	if (r < 0)
		return raise_cfd(r, t);
	return PyBool_FromLong(r);
}

static PyObject *Token_trigger_from(TokenObject *t, PyObject *arg)
{
	TokenObject *from;
	int r;

	CHECK_PROCESS(t);
	if (token_arg(arg, &from) < 0)
		return NULL;
	r = cfd_token_trigger_from(t->tok, from->tok);
	if (r < 0)
		return raise_cfd(r, t);
	return PyBool_FromLong(r);
}

static PyObject *Token_fileno(TokenObject *t, PyObject *unused)
{
	int fd;

	(void)unused;
	CHECK_PROCESS(t);
	fd = cfd_token_fd(t->tok);
	if (fd < 0)
		return raise_cfd(fd, t);
	return PyLong_FromLong(fd);
}

static PyObject *Token_wait(TokenObject *t, PyObject *arg)
{
	long long ns = PyLong_AsLongLong(arg);
	int r;

	if (ns == -1 && PyErr_Occurred())
		return NULL;
	CHECK_PROCESS(t);
	Py_BEGIN_ALLOW_THREADS;
	r = cfd_token_wait(t->tok, ns);
	Py_END_ALLOW_THREADS;
	if (r == -ETIMEDOUT)
		Py_RETURN_FALSE;
	if (r < 0)
		return raise_cfd(r, t);
	Py_RETURN_TRUE;
}

static PyObject *Token_export(TokenObject *t, PyObject *arg)
{
	long flags = PyLong_AsLong(arg);
	int fd;

	if (flags == -1 && PyErr_Occurred())
		return NULL;
	CHECK_PROCESS(t);
	fd = cfd_token_export_fd(t->tok, NULL, (unsigned)flags);
	if (fd < 0)
		return raise_cfd(fd, t);
	return PyLong_FromLong(fd);
}

/* One watch-only export per token, owned by the token: what a pickle for
 * another process passes (each pickle gets its own duplicate). */
static PyObject *Token_export_kept(TokenObject *t, PyObject *unused)
{
	(void)unused;
	CHECK_PROCESS(t);
	if (t->export_fd < 0) {
		int fd = cfd_token_export_fd(t->tok, NULL, 0);

		if (fd < 0)
			return raise_cfd(fd, t);
		t->export_fd = fd;
	}
	return PyLong_FromLong(t->export_fd);
}

static PyObject *Token_child(TokenObject *t, PyObject *arg)
{
	struct cfd_token *tok;
	const char *name;
	int r;

	CHECK_PROCESS(t);
	name = c_string(arg, "name");
	if (!name)
		return NULL;
	r = cfd_token_child(&tok, t->tok, name);
	if (r < 0)
		return raise_cfd(r, t);
	return wrap(Py_TYPE(t), tok);
}

static PyObject *Token_chain(TokenObject *t, PyObject *arg)
{
	struct cfd_token *tok;
	TokenObject *b;
	int r;

	CHECK_PROCESS(t);
	if (token_arg(arg, &b) < 0)
		return NULL;
	r = cfd_token_chain(&tok, t->tok, b->tok);
	if (r < 0)
		return raise_cfd(r, t);
	return wrap(Py_TYPE(t), tok);
}

/* _combine(cls, name, tokens, all): any-of or all-of. */
static PyObject *Token_combine(PyObject *cls, PyObject *args)
{
	PyObject *name, *seq, *fast;
	struct cfd_token **toks, *tok;
	const char *s;
	Py_ssize_t n;
	int all, r = 0;

	if (!PyArg_ParseTuple(args, "UOp", &name, &seq, &all))
		return NULL;
	s = c_string(name, "name");
	if (!s)
		return NULL;
	fast = PySequence_Fast(seq, "tokens must be a sequence");
	if (!fast)
		return NULL;
	n = PySequence_Fast_GET_SIZE(fast);
	if (n < 1) {
		Py_DECREF(fast);
		PyErr_SetString(PyExc_ValueError, "at least one token needed");
		return NULL;
	}
	toks = PyMem_Calloc((size_t)n, sizeof(*toks));
	if (!toks) {
		Py_DECREF(fast);
		return PyErr_NoMemory();
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		TokenObject *t;

		if (token_arg(PySequence_Fast_GET_ITEM(fast, i), &t) < 0) {
			r = 1;
			break;
		}
		toks[i] = t->tok;
	}
	if (r == 0) {
		r = all ? cfd_token_all_of(&tok, s, toks, (size_t)n)
			: cfd_token_any_of(&tok, s, toks, (size_t)n);
		if (r < 0)
			raise_cfd(r, NULL);
	}
	PyMem_Free(toks);
	Py_DECREF(fast);
	if (r != 0)
		return NULL;
	return wrap((PyTypeObject *)cls, tok);
}

static PyObject *Token_import_fd(PyObject *cls, PyObject *args)
{
	struct cfd_token *tok;
	PyObject *name;
	const char *s;
	int fd, r;

	if (!PyArg_ParseTuple(args, "iU", &fd, &name))
		return NULL;
	s = c_string(name, "name");
	if (!s)
		return NULL;
	r = cfd_token_import_fd(&tok, fd, s, NULL);
	if (r < 0)
		return raise_cfd(r, NULL);
	return wrap((PyTypeObject *)cls, tok);
}

/* _send(sock): cfd_token_send(), watch-only: the export and the deadline
 * as it is now, in one message on the Unix socket sock. */
static PyObject *Token_send(TokenObject *t, PyObject *arg)
{
	int sock = PyObject_AsFileDescriptor(arg);
	int r;

	if (sock < 0)
		return NULL;
	CHECK_PROCESS(t);
	Py_BEGIN_ALLOW_THREADS;
	r = cfd_token_send(sock, t->tok, NULL, 0);
	Py_END_ALLOW_THREADS;
	if (r < 0)
		return raise_cfd(r, t);
	Py_RETURN_NONE;
}

/* _recv(sock, name): cfd_token_recv(), the other end of _send(). */
static PyObject *Token_recv(PyObject *cls, PyObject *args)
{
	struct cfd_token *tok;
	PyObject *name;
	const char *s;
	int sock, r;

	if (!PyArg_ParseTuple(args, "iU", &sock, &name))
		return NULL;
	s = c_string(name, "name");
	if (!s)
		return NULL;
	Py_BEGIN_ALLOW_THREADS;
	r = cfd_token_recv(&tok, sock, s, NULL);
	Py_END_ALLOW_THREADS;
	if (r < 0)
		return raise_cfd(r, NULL);
	return wrap((PyTypeObject *)cls, tok);
}

static PyObject *Token_from_env(PyObject *cls, PyObject *arg)
{
	struct cfd_token *tok;
	const char *s = c_string(arg, "name");
	int r;

	if (!s)
		return NULL;
	r = cfd_token_from_env(&tok, s, NULL);
	if (r == -ENOENT)
		Py_RETURN_NONE;
	if (r == -EBADFD) {
		PyErr_SetString(PyExc_OSError,
				"CANCELFD names a file descriptor that is "
				"neither a pipe nor an eventfd");
		return NULL;
	}
	if (r < 0)
		return raise_cfd(r, NULL);
	return wrap((PyTypeObject *)cls, tok);
}

/* ---- sources ---- */

struct cond {
	PyObject *fn;
};

typedef struct {
	PyObject_HEAD struct cfd_source *src;
	struct cond *cond;
	pid_t pid;
	const char *kind;
} SourceObject;

static atomic_int cond_inflight;
static atomic_bool cond_stop;

static bool cond_call(struct cfd_token *tok, void *userdata)
{
	struct cond *c = userdata;
	bool ret = false;

	(void)tok;
	atomic_fetch_add(&cond_inflight, 1);
	if (!atomic_load(&cond_stop)) {
		PyGILState_STATE g = PyGILState_Ensure();
		PyObject *r = PyObject_CallNoArgs(c->fn);
		int t = r ? PyObject_IsTrue(r) : -1;

		Py_XDECREF(r);
		if (t < 0) {
			/* Reported, and counted as false. */
			PyErr_WriteUnraisable(c->fn);
			t = 0;
		}
		ret = t;
		PyGILState_Release(g);
	}
	atomic_fetch_sub(&cond_inflight, 1);
	return ret;
}

static void source_release(SourceObject *s)
{
	struct cfd_source *src = s->src;
	struct cond *c = s->cond;

	s->src = NULL;
	s->cond = NULL;
	if (src && s->pid == cur_pid) {
		/* Without the GIL: it waits for a predicate running on the
		 * watcher's thread, which needs the GIL to finish. */
		Py_BEGIN_ALLOW_THREADS;
		cfd_source_free(src);
		Py_END_ALLOW_THREADS;
	}
	if (c) {
		Py_DECREF(c->fn);
		PyMem_Free(c);
	}
}

static PyObject *Source_remove(SourceObject *s, PyObject *unused)
{
	(void)unused;
	source_release(s);
	Py_RETURN_NONE;
}

static PyObject *Source_repr(SourceObject *s)
{
	return PyUnicode_FromFormat("<cancelfd source: %s%s>", s->kind,
				    s->src ? "" : ", removed");
}

static void Source_dealloc(SourceObject *s)
{
	source_release(s);
	Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyMethodDef Source_methods[] = {
	{ "remove", (PyCFunction)Source_remove, METH_NOARGS,
	  "remove()\n--\n\nRemove the source: it will not trigger its "
	  "token.  Removing a source that fired or was removed does "
	  "nothing." },
	{ NULL, NULL, 0, NULL },
};

static PyTypeObject SourceType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cancelfd.Source",
	.tp_basicsize = sizeof(SourceObject),
	.tp_dealloc = (destructor)Source_dealloc,
	.tp_repr = (reprfunc)Source_repr,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "A source that triggers a token when something happens: "
		  "a timeout, a deadline, a signal, a file descriptor, a "
		  "condition.\n\nThe token keeps it; remove() takes it "
		  "away before it fires.",
	.tp_methods = Source_methods,
};

static PyObject *new_source(TokenObject *t, const char *kind,
			    struct cfd_source *src, struct cond *c)
{
	SourceObject *s = PyObject_New(SourceObject, &SourceType);

	if (!s) {
		Py_BEGIN_ALLOW_THREADS;
		cfd_source_free(src);
		Py_END_ALLOW_THREADS;
		if (c) {
			Py_DECREF(c->fn);
			PyMem_Free(c);
		}
		return NULL;
	}
	s->src = src;
	s->pid = t->pid;
	s->kind = kind;
	/* A source on a triggered token was never made: no predicate will
	 * run. */
	if (!src && c) {
		Py_DECREF(c->fn);
		PyMem_Free(c);
		c = NULL;
	}
	s->cond = c;
	return (PyObject *)s;
}

static PyObject *Token_add_time(TokenObject *t, PyObject *args)
{
	struct cfd_source *src;
	long long ns;
	int deadline, r;

	if (!PyArg_ParseTuple(args, "Lp", &ns, &deadline))
		return NULL;
	CHECK_PROCESS(t);
	r = deadline ? cfd_source_add_deadline(&src, t->tok, NULL, ns)
		     : cfd_source_add_timeout(&src, t->tok, NULL, ns);
	if (r < 0)
		return raise_cfd(r, t);
	return new_source(t, deadline ? "deadline" : "timeout", src, NULL);
}

static PyObject *Token_add_signals(TokenObject *t, PyObject *arg)
{
	PyObject *fast = PySequence_Fast(arg, "signals must be a sequence");
	struct cfd_source *src;
	int sigs[64];
	Py_ssize_t n;
	int r;

	if (!fast)
		return NULL;
	n = PySequence_Fast_GET_SIZE(fast);
	if (n < 1 || n > 64) {
		Py_DECREF(fast);
		PyErr_SetString(PyExc_ValueError, "1 to 64 signals");
		return NULL;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));

		if (v == -1 && PyErr_Occurred()) {
			Py_DECREF(fast);
			return NULL;
		}
		sigs[i] = (int)v;
	}
	Py_DECREF(fast);
	CHECK_PROCESS(t);
	r = cfd_source_add_signals(&src, t->tok, NULL, sigs, (size_t)n);
	if (r == -EBUSY) {
		PyErr_SetString(PyExc_RuntimeError,
				"the signals must be blocked in every thread "
				"first: call cancelfd.block_signals() in the "
				"main thread before any other thread starts");
		return NULL;
	}
	if (r < 0)
		return raise_cfd(r, t);
	return new_source(t, "signals", src, NULL);
}

static PyObject *Token_add_fd(TokenObject *t, PyObject *arg)
{
	struct cfd_source *src;
	int fd = PyObject_AsFileDescriptor(arg);
	int r;

	if (fd < 0)
		return NULL;
	CHECK_PROCESS(t);
	r = cfd_source_add_fd(&src, t->tok, NULL, fd);
	if (r < 0)
		return raise_cfd(r, t);
	return new_source(t, "fd", src, NULL);
}

static PyObject *Token_add_condition(TokenObject *t, PyObject *args)
{
	struct cfd_source *src;
	struct cond *c;
	long long ns;
	PyObject *fn;
	int r;

	if (!PyArg_ParseTuple(args, "OL", &fn, &ns))
		return NULL;
	if (!PyCallable_Check(fn)) {
		PyErr_SetString(PyExc_TypeError,
				"the predicate must be callable");
		return NULL;
	}
	CHECK_PROCESS(t);
	if (atomic_load(&cond_stop)) {
		PyErr_SetString(PyExc_RuntimeError,
				"the interpreter is exiting");
		return NULL;
	}
	c = PyMem_Malloc(sizeof(*c));
	if (!c)
		return PyErr_NoMemory();
	Py_INCREF(fn);
	c->fn = fn;
	r = cfd_source_add_condition(&src, t->tok, NULL, cond_call, c, ns);
	if (r < 0) {
		Py_DECREF(fn);
		PyMem_Free(c);
		return raise_cfd(r, t);
	}
	return new_source(t, "condition", src, c);
}

static PyGetSetDef Token_getset[] = {
	{ "triggered", (getter)Token_triggered, NULL,
	  "True once the token has been triggered (one atomic load).", NULL },
	{ "name", (getter)Token_name, NULL, "The token's name.", NULL },
	{ "_reason", (getter)Token_reason, NULL, NULL, NULL },
	{ "message", (getter)Token_message, NULL,
	  "The message given to trigger() by the trigger that started the "
	  "cascade, or None.",
	  NULL },
	{ "signal", (getter)Token_signal, NULL,
	  "The number of the signal that triggered the origin (reason "
	  "SIGNAL), or 0.",
	  NULL },
	{ "_trigger_time_ns", (getter)Token_trigger_time, NULL, NULL, NULL },
	{ "_origin", (getter)Token_origin, NULL, NULL, NULL },
	{ "code", (getter)Token_code, NULL,
	  "The code given to trigger() by the trigger that started the "
	  "cascade (an HTTP or gRPC status, an exit status: the "
	  "application's), or 0 when it gave none or the token is pending.",
	  NULL },
	{ "remote", (getter)Token_remote, NULL,
	  "True when the cause came from another process: the token was "
	  "imported (from_env(), import_fd(), a pickle) and the exporting "
	  "token's cascade triggered it; reason, message, code, signal and "
	  "trigger_time are then those of the origin over there.",
	  NULL },
	{ "origin_pid", (getter)Token_origin_pid, NULL,
	  "The process ID of the process where the cascade started: this "
	  "one for a local cause, the exporting one (or one further up) for "
	  "a remote cause; 0 while pending, or when an exporting process "
	  "ended without saying.",
	  NULL },
	{ "origin_path", (getter)Token_origin_path, NULL,
	  "Where a remote cause started, as \"comm[pid]/root:...:origin\" "
	  "(the program, its process ID, the token names from the root of "
	  "the origin's tree down to the origin), or None: a local cause has "
	  "no path (origin names it).",
	  NULL },
	{ "deadline", (getter)Token_deadline, NULL,
	  "When the token will be cancelled by time at the latest, in "
	  "seconds on the time.monotonic() clock, or None.\n\n"
	  "The earliest of its own timeout and deadline sources, of the "
	  "deadline it was imported with, and of its parents' deadlines (an "
	  "all_of() token takes the latest of its parents', and has none if "
	  "one of them has none); once triggered, its trigger time.\n\n"
	  "It is something to know (remaining is the budget to pass on), "
	  "not a timer: the token triggers when one of its timeout or "
	  "deadline sources fires (reason TIMEOUT), and cancellable_wait() "
	  "takes no timeout from it.  A deadline that came from another "
	  "process only informs, since the token triggers when the other "
	  "side's does; add_deadline(token.deadline) acts on it here.",
	  NULL },
	{ "_deadline_ns", (getter)Token_deadline_ns, NULL, NULL, NULL },
	{ "remaining", (getter)Token_remaining, NULL,
	  "The seconds left until deadline, 0.0 once it has passed or the "
	  "token has triggered, or None when there is no deadline: a budget "
	  "to pass on (a protocol's timeout field, a retry's), or a reason "
	  "to give up early on work that cannot finish in time.",
	  NULL },
	{ NULL, NULL, NULL, NULL, NULL },
};

static PyMethodDef Token_methods[] = {
	{ "_trigger", (PyCFunction)(void (*)(void))Token_trigger, METH_FASTCALL,
	  NULL },
	{ "_trigger_from", (PyCFunction)Token_trigger_from, METH_O, NULL },
	{ "fileno", (PyCFunction)Token_fileno, METH_NOARGS,
	  "fileno()\n--\n\nThe token's file descriptor: an eventfd that "
	  "becomes readable when the token triggers and stays readable.  "
	  "The token owns it: poll it, never read, write or close it." },
	{ "_wait", (PyCFunction)Token_wait, METH_O, NULL },
	{ "_export", (PyCFunction)Token_export, METH_O, NULL },
	{ "_export_kept", (PyCFunction)Token_export_kept, METH_NOARGS, NULL },
	{ "_deadline_wire", (PyCFunction)Token_deadline_wire, METH_NOARGS,
	  NULL },
	{ "_send", (PyCFunction)Token_send, METH_O, NULL },
	{ "_recv", (PyCFunction)Token_recv, METH_VARARGS | METH_CLASS, NULL },
	{ "_child", (PyCFunction)Token_child, METH_O, NULL },
	{ "_chain", (PyCFunction)Token_chain, METH_O, NULL },
	{ "_combine", (PyCFunction)Token_combine, METH_VARARGS | METH_CLASS,
	  NULL },
	{ "_import_fd", (PyCFunction)Token_import_fd, METH_VARARGS | METH_CLASS,
	  NULL },
	{ "_from_env", (PyCFunction)Token_from_env, METH_O | METH_CLASS, NULL },
	{ "_add_time", (PyCFunction)Token_add_time, METH_VARARGS, NULL },
	{ "_add_signals", (PyCFunction)Token_add_signals, METH_O, NULL },
	{ "_add_fd", (PyCFunction)Token_add_fd, METH_O, NULL },
	{ "_add_condition", (PyCFunction)Token_add_condition, METH_VARARGS,
	  NULL },
	{ NULL, NULL, 0, NULL },
};

static PyTypeObject TokenType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cancelfd._cancelfd.Token",
	.tp_basicsize = sizeof(TokenObject),
	.tp_dealloc = (destructor)Token_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = "The C token under cancelfd.CancelToken.",
	.tp_weaklistoffset = offsetof(TokenObject, weakrefs),
	.tp_methods = Token_methods,
	.tp_getset = Token_getset,
	.tp_new = Token_new,
};

/* ---- module functions ---- */

static PyObject *mod_init(PyObject *self, PyObject *arg)
{
	(void)self;
	Py_INCREF(arg);
	Py_XSETREF(forked_error, arg);
	Py_RETURN_NONE;
}

static PyObject *mod_shutdown(PyObject *self, PyObject *unused)
{
	(void)self;
	(void)unused;
	atomic_store(&cond_stop, true);
	Py_BEGIN_ALLOW_THREADS;
	while (atomic_load(&cond_inflight) > 0) {
		struct timespec ms = { 0, 1000000 };

		nanosleep(&ms, NULL);
	}
	Py_END_ALLOW_THREADS;
	Py_RETURN_NONE;
}

static PyObject *mod_block_signals(PyObject *self, PyObject *arg)
{
	PyObject *fast = PySequence_Fast(arg, "signals must be a sequence");
	int sigs[64];
	Py_ssize_t n;
	int r;

	(void)self;
	if (!fast)
		return NULL;
	n = PySequence_Fast_GET_SIZE(fast);
	if (n > 64) {
		Py_DECREF(fast);
		PyErr_SetString(PyExc_ValueError, "at most 64 signals");
		return NULL;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));

		if (v == -1 && PyErr_Occurred()) {
			Py_DECREF(fast);
			return NULL;
		}
		sigs[i] = (int)v;
	}
	Py_DECREF(fast);
	r = cfd_signals_block(sigs, (size_t)n);
	if (r < 0)
		return raise_cfd(r, NULL);
	Py_RETURN_NONE;
}

static PyObject *mod_reason_name(PyObject *self, PyObject *arg)
{
	long r = PyLong_AsLong(arg);
	const char *s;

	(void)self;
	if (r == -1 && PyErr_Occurred())
		return NULL;
	s = cfd_reason_name((int)r);
	if (!s)
		Py_RETURN_NONE;
	return PyUnicode_FromString(s);
}

/* The C environment's value of a variable, or None: what os.environ,
 * Python's copy made at start-up, follows after the library changed it. */
static PyObject *mod_getenv(PyObject *self, PyObject *arg)
{
	const char *s = c_string(arg, "name");
	const char *v;

	(void)self;
	if (!s)
		return NULL;
	v = getenv(s);
	if (!v)
		Py_RETURN_NONE;
	return PyUnicode_DecodeFSDefault(v);
}

static PyMethodDef module_methods[] = {
	{ "_init", mod_init, METH_O, NULL },
	{ "_shutdown", mod_shutdown, METH_NOARGS, NULL },
	{ "_getenv", mod_getenv, METH_O, NULL },
	{ "block_signals", mod_block_signals, METH_O,
	  "block_signals(signals)\n--\n\nBlock the signals in the calling "
	  "thread (and in the threads it starts afterwards), as a signal "
	  "source needs." },
	{ "reason_name", mod_reason_name, METH_O,
	  "reason_name(reason)\n--\n\nThe library's name of a reason "
	  "number, or None." },
	{ NULL, NULL, 0, NULL },
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "_cancelfd",
	.m_doc = "The C half of cancelfd: tokens, their cause, graph, sources "
		 "and exports.",
	.m_size = -1,
	.m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__cancelfd(void)
{
	static const struct {
		const char *name;
		long value;
	} consts[] = {
		{ "REASON_NONE", CFD_REASON_NONE },
		{ "REASON_MANUAL", CFD_REASON_MANUAL },
		{ "REASON_TIMEOUT", CFD_REASON_TIMEOUT },
		{ "REASON_SIGNAL", CFD_REASON_SIGNAL },
		{ "REASON_FD", CFD_REASON_FD },
		{ "REASON_CONDITION", CFD_REASON_CONDITION },
		{ "REASON_PARENT", CFD_REASON_PARENT },
		{ "REASON_ALL_OF", CFD_REASON_ALL_OF },
		{ "REASON_GONE", CFD_REASON_GONE },
		{ "EXPORT_SHARED", CFD_EXPORT_SHARED },
		{ "EXPORT_INHERIT", CFD_EXPORT_INHERIT },
	};
	static bool atfork_done;
	PyObject *m;

	if (PyType_Ready(&TokenType) < 0 || PyType_Ready(&SourceType) < 0)
		return NULL;
	m = PyModule_Create(&module);
	if (!m)
		return NULL;
	cur_pid = getpid();
	if (!atfork_done) {
		pthread_atfork(NULL, NULL, atfork_child);
		atfork_done = true;
	}
	if (!registry)
		registry = PyDict_New();
	if (!registry)
		goto fail;
	Py_INCREF(&TokenType);
	if (PyModule_AddObject(m, "Token", (PyObject *)&TokenType) < 0) {
		Py_DECREF(&TokenType);
		goto fail;
	}
	Py_INCREF(&SourceType);
	if (PyModule_AddObject(m, "Source", (PyObject *)&SourceType) < 0) {
		Py_DECREF(&SourceType);
		goto fail;
	}
	for (size_t i = 0; i < sizeof(consts) / sizeof(consts[0]); i++)
		if (PyModule_AddIntConstant(m, consts[i].name, consts[i].value))
			goto fail;
	if (PyModule_AddStringConstant(m, "ENV", CFD_ENV) < 0 ||
	    PyModule_AddStringConstant(m, "ENV_DEADLINE", CFD_ENV_DEADLINE) < 0)
		goto fail;
	return m;
fail:
	Py_DECREF(m);
	return NULL;
}
