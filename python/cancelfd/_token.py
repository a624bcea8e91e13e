# SPDX-License-Identifier: MIT
"""CancelToken: a cancellation token that is a file descriptor, for asyncio."""

import asyncio
import enum
import importlib
import os
import time

try:
    _c = importlib.import_module("._cancelfd", __package__)
except ModuleNotFoundError as e:
    if e.name != __package__ + "._cancelfd":
        raise
    import _cancelfd as _c  # a build tree: the module beside the sources

__all__ = [
    "AwaitedCancelled",
    "BaseCancelTokenException",
    "CancelToken",
    "EventLoopMismatch",
    "ForkedTokenError",
    "OperationCancelled",
    "Outcome",
    "Reason",
    "Source",
    "Status",
    "all_of",
    "any_of",
    "block_signals",
]

Source = _c.Source
block_signals = _c.block_signals


class BaseCancelTokenException(Exception):
    """The base class of the exceptions of cancelfd."""


class OperationCancelled(BaseCancelTokenException):
    """A token was triggered: the operation that watched it was cancelled.

    ``token`` is the token whose trigger started it (the
    :attr:`CancelToken.triggered_token` of the token that was watched), or
    None.
    """

    def __init__(self, *args, token=None):
        super().__init__(*args)
        self.token = token


class EventLoopMismatch(BaseCancelTokenException):
    """Tokens bound to different event loops were combined, or a token
    bound to one loop was awaited in another."""


class ForkedTokenError(BaseCancelTokenException, RuntimeError):
    """A token was used in a child made by ``fork()``.

    A token belongs to the process that made it; in a forked child its
    copy is inert.  Pass a token to another process by pickling it for
    :mod:`multiprocessing`, or with :meth:`CancelToken.export_fd`.
    """


class AwaitedCancelled(asyncio.CancelledError):
    """What :meth:`CancelToken.cancellable_wait` awaited was cancelled by
    something else: the caller itself was not cancelled.

    It is a :class:`asyncio.CancelledError`, as awaiting the cancelled
    task directly would raise, and a type of its own, so that it can be
    told apart; :meth:`CancelToken.settle` reports the same case as a
    result instead.
    """


_c._init(ForkedTokenError)


class Reason(enum.IntEnum):
    """Why a token was triggered: the library's ``CFD_REASON_*``."""

    #: It is pending.
    NONE = _c.REASON_NONE
    #: :meth:`CancelToken.trigger` was called on it.
    MANUAL = _c.REASON_MANUAL
    #: A timeout or a deadline source fired.
    TIMEOUT = _c.REASON_TIMEOUT
    #: A signal source fired (:attr:`CancelToken.signal` says which).
    SIGNAL = _c.REASON_SIGNAL
    #: A file descriptor source fired, or an imported token's file
    #: descriptor said "now" without saying why.
    FD = _c.REASON_FD
    #: A condition source's predicate returned true.
    CONDITION = _c.REASON_CONDITION
    #: A parent triggered it (a child, chain or any-of token).
    PARENT = _c.REASON_PARENT
    #: The last pending parent of an all-of token triggered.
    ALL_OF = _c.REASON_ALL_OF
    #: An imported token's exporter freed it untriggered, or ended.
    GONE = _c.REASON_GONE

    def __str__(self):
        return _c.reason_name(int(self))


class Status(enum.Enum):
    """How a :meth:`CancelToken.settle` ended (:attr:`Outcome.status`)."""

    #: An awaitable returned a value.
    RESULT = "result"
    #: An awaitable raised an exception.
    ERROR = "error"
    #: The awaitable that finished first was cancelled by something else.
    CANCELLED = "cancelled"
    #: The token triggered.
    TRIGGERED = "triggered"
    #: The timeout passed.
    TIMEOUT = "timeout"


class Outcome:
    """The result of :meth:`CancelToken.settle`: what happened, as a value.

    ``status`` is a :class:`Status`; ``value`` the result (``RESULT``);
    ``exception`` the exception raised (``ERROR``); ``index`` the position
    of the awaitable that ended it among the arguments, or None (``TRIGGERED``,
    ``TIMEOUT``); ``token`` the token whose trigger started the
    cancellation (``TRIGGERED``).
    """

    __slots__ = {
        "status": "What happened: a :class:`Status`.",
        "value": "The value the awaitable returned (``RESULT``).",
        "exception": "The exception the awaitable raised (``ERROR``).",
        "index": "The position of the awaitable that ended the wait among "
                 "the arguments, or None.",
        "token": "The token whose trigger cancelled the wait "
                 "(``TRIGGERED``).",
    }

    def __init__(self, status, value=None, exception=None, index=None,
                 token=None):
        self.status = status
        self.value = value
        self.exception = exception
        self.index = index
        self.token = token

    def result(self):
        """The value, or the exception that :meth:`CancelToken.cancellable_wait`
        raises for this outcome: the awaitable's own exception,
        :class:`AwaitedCancelled`, :class:`OperationCancelled` or
        :class:`TimeoutError`."""
        s = self.status
        if s is Status.RESULT:
            return self.value
        if s is Status.ERROR:
            raise self.exception
        if s is Status.CANCELLED:
            raise AwaitedCancelled(
                "the awaitable that finished first was cancelled")
        if s is Status.TRIGGERED:
            raise OperationCancelled(
                "Cancellation requested by {} token".format(self.token),
                token=self.token)
        raise TimeoutError()

    def __repr__(self):
        what = {
            Status.RESULT: lambda: " value=%r" % (self.value,),
            Status.ERROR: lambda: " exception=%r" % (self.exception,),
            Status.TRIGGERED: lambda: " token=%r" % (self.token,),
        }.get(self.status, lambda: "")()
        idx = "" if self.index is None else " index=%d" % self.index
        return "<Outcome %s%s%s>" % (self.status.value, idx, what)


def _ns(seconds):
    """Seconds (an int or a float) as the nearest integer of nanoseconds,
    exactly: a float that :func:`time.monotonic` returned (an integer of
    nanoseconds divided by 1e9) gives that integer back, so that
    ``token.add_deadline(t)`` leaves ``token.deadline == t``, where
    ``int(t * 1e9)`` may be a nanosecond short."""
    p, q = float(seconds).as_integer_ratio()
    return (2 * p * 1000000000 + q) // (2 * q)


_TRIGGERED = object()
_TIMEOUT = object()
_selector_loop = asyncio.selector_events.BaseSelectorEventLoop


class _Reader:
    """One ``loop.add_reader`` on a token's fd, shared by every waiter of
    that token in that loop; removed when it fires or when its last waiter
    goes.  It holds the token, so the fd stays open while it is
    registered."""

    __slots__ = ("token", "loop", "fd", "futures", "callbacks", "closed",
                 "remove")

    def __init__(self, token, loop):
        self.token = token
        self.loop = loop
        self.fd = token.fileno()
        self.futures = {}
        self.callbacks = {}
        self.closed = False
        # A selector loop's add_reader() and remove_reader() first check
        # that the fd is not a transport's (a lookup in a weak dictionary,
        # 2 us), which a token's never is: go straight to the selector.
        if isinstance(loop, _selector_loop):
            loop._add_reader(self.fd, self._fire)
            self.remove = loop._remove_reader
        else:
            loop.add_reader(self.fd, self._fire)
            self.remove = loop.remove_reader

    def _close(self):
        if self.closed:
            return
        self.closed = True
        self.remove(self.fd)
        readers = self.token._readers
        if readers is not None and readers.get(self.loop) is self:
            del readers[self.loop]

    def _fire(self):
        # The wake-up path: as little as a bare add_reader callback does.
        self.closed = True
        self.remove(self.fd)
        self.token._readers.pop(self.loop, None)
        for fut in self.futures:
            if not fut.done():
                fut.set_result(None)
        if self.callbacks:
            for cb in list(self.callbacks):
                cb()

    def discard_future(self, fut):
        if self.futures.pop(fut, 1) is None and not (
                self.futures or self.callbacks):
            self._close()

    def discard_callback(self, cb):
        if self.callbacks.pop(cb, 1) is None and not (
                self.futures or self.callbacks):
            self._close()


def _loop_check(token, loop):
    if token._loop is not None and token._loop is not loop:
        raise EventLoopMismatch(
            "CancelToken {!r} is bound to another event loop".format(
                token.name))


async def _drain(futs):
    """Cancel what is pending in futs and wait until all is done.  Returns
    True if the calling task was cancelled meanwhile."""
    pending = [f for f in futs if not f.done()]
    for f in pending:
        f.cancel()
    me = False
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            me = True
            for f in pending:
                f.cancel()
        pending = [f for f in pending if not f.done()]
    for f in futs:
        if not f.cancelled():
            f.exception()  # retrieved: no "never retrieved" log
    return me


def _own_exception(futs, first=None):
    """The first exception (not a cancellation) among futs, winner first."""
    order = futs if first is None else [first] + [f for f in futs
                                                 if f is not first]
    for f in order:
        if f.done() and not f.cancelled():
            e = f.exception()
            if e is not None:
                return futs.index(f), e
    return None, None


class CancelToken(_c.Token):
    """A cancellation token: a one-way latch, pending until triggered.

    >>> token = CancelToken('demo')
    >>> token
    <CancelToken: demo>
    >>> token.triggered
    False
    >>> token.trigger('done')
    >>> token.triggered, token.reason, token.message
    (True, <Reason.MANUAL: 1>, 'done')

    The token is a file descriptor too (:meth:`fileno`): an eventfd that
    becomes readable when it triggers, which asyncio watches with
    ``loop.add_reader`` and which any other loop, thread or process can
    watch.  ``triggered`` is one atomic load, whatever the depth of the
    token's graph; ``trigger()`` may be called from any thread and from a
    signal handler.

    ``loop``, if given, binds the token to one event loop: it may only be
    awaited there, and combined with tokens of the same loop.  Without
    it, the token works in any loop, and in several at once.

    The cause says why, by whom, where and when (:attr:`reason`,
    :attr:`origin`, :attr:`message`, :attr:`code`, :attr:`remote`,
    :attr:`origin_path`, :attr:`trigger_time`), and :attr:`deadline`
    when, at the latest, time will cancel the token:

    >>> server = CancelToken('server')
    >>> budget = server.add_timeout(30)
    >>> request = server.child('request')
    >>> 29 < request.remaining <= 30
    True
    >>> server.trigger('shutting down', code=503)
    >>> request.reason, request.origin, request.message, request.code
    (<Reason.PARENT: 6>, <CancelToken: server>, 'shutting down', 503)
    >>> request.remaining
    0.0
    """

    _loop = None
    _parents = ()
    _readers = None
    _sources = None

    def __init__(self, name, loop=None):
        if loop is not None:
            self._loop = loop

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        _register_pickling(cls)

    def _made(self, loop, parents):
        if loop is not None:
            self._loop = loop
        self._parents = parents
        return self

    # -- the token --

    @property
    def loop(self):
        """The event loop the token is bound to, or None."""
        return self._loop

    def trigger(self, message=None, *, code=None):
        """Trigger the token, and every token below it.

        The first trigger wins and records the cause (:attr:`reason`,
        :attr:`message`, :attr:`code`, :attr:`trigger_time`), which never
        changes; later calls do nothing (:meth:`try_trigger` tells which
        call won).  ``code`` is an integer of the application's (an HTTP or
        gRPC status, an exit status; it must fit in 32 bits, 0 or None
        means none) that every token the trigger reaches reports, in this
        process and in those that imported one of them.  Safe from any
        thread, from a signal handler installed with :func:`signal.signal`
        and from a finalizer: every loop waiting on the token, or on a
        token below it, wakes.
        """
        self._trigger(message, code)

    def try_trigger(self, message=None, *, code=None):
        """Trigger the token as :meth:`trigger` does, and return True if
        this call triggered it, False if it had been triggered already (by
        another call, a parent or a source), in which case its message and
        code were dropped."""
        return self._trigger(message, code)

    @property
    def triggered_token(self):
        """The token whose own trigger triggered this one: itself, the
        ancestor (parent, chained token, ...) that was triggered, or None
        while it is pending."""
        return self._origin

    @property
    def origin(self):
        """The same as :attr:`triggered_token`."""
        return self._origin

    @property
    def reason(self):
        """Why the token triggered, a :class:`Reason` (``Reason.NONE``
        while it is pending).  A token triggered by a parent says
        ``PARENT``; ``token.origin.reason`` is the reason at the start."""
        return Reason(self._reason)

    @property
    def trigger_time(self):
        """When the trigger that started the cascade happened, in seconds
        on the :func:`time.monotonic` clock (at the kernel tick's
        resolution), or None while the token is pending."""
        ns = self._trigger_time_ns
        return ns / 1e9 if ns else None

    def raise_if_triggered(self):
        """Raise :class:`OperationCancelled` if the token was triggered."""
        if self.triggered:
            origin = self._origin
            raise OperationCancelled(
                "Cancellation requested by {} token".format(origin),
                token=origin)

    def wait_blocking(self, timeout=None):
        """Block the calling thread until the token triggers (True) or
        ``timeout`` seconds pass (False); for threads, not coroutines."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 0.1
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            if self._wait(int(step * 1e9)):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def __str__(self):
        return self.name

    def __repr__(self):
        return "<CancelToken: {0}>".format(self.name)

    def __reduce__(self):
        raise TypeError(
            "a CancelToken pickles only for multiprocessing (as a file "
            "descriptor passed to the other process); use export_fd() "
            "for other ways")

    # -- the graph --

    def chain(self, token):
        """A new token, named ``"self:token"``, triggered when this token
        or ``token`` is; triggering it triggers neither of them."""
        if not isinstance(token, _c.Token):
            raise TypeError("chain() takes a CancelToken, not %s"
                            % type(token).__name__)
        if self._loop != token._loop:
            raise EventLoopMismatch(
                "Chained CancelToken objects must be on the same event loop")
        return self._chain(token)._made(self._loop, (self, token))

    def child(self, name):
        """A new token named ``name``, triggered when this one is;
        triggering it leaves this one pending."""
        return self._child(name)._made(self._loop, (self,))

    # -- asyncio --

    def _reader(self, loop):
        readers = self._readers
        if readers is None:
            readers = self._readers = {}
        r = readers.get(loop)
        if r is None:
            for other in list(readers):
                if other.is_closed():
                    readers.pop(other, None)
            r = _Reader(self, loop)
            readers[loop] = r
        return r

    async def wait(self):
        """Return once the token has been triggered.

        Every waiter of a token in one loop shares one ``add_reader`` on
        the token's fd, which is removed when the token triggers or when
        the last waiter is cancelled.
        """
        if self.triggered:
            return
        loop = asyncio.get_running_loop()
        if self._loop is not None:
            _loop_check(self, loop)
        fut = loop.create_future()
        readers = self._readers
        reader = readers.get(loop) if readers is not None else None
        if reader is None:
            reader = self._reader(loop)
        reader.futures[fut] = None
        try:
            await fut
        except asyncio.CancelledError:
            reader.discard_future(fut)
            raise

    async def cancellable_wait(self, *awaitables, timeout=None):
        """Await ``awaitables`` until the first one finishes, the token
        triggers, or ``timeout`` seconds pass.

        The first result wins: its value is returned, or its exception
        raised.  Every other awaitable is cancelled, and awaited, before
        the call returns: nothing is left pending.  When the token
        triggers, :class:`OperationCancelled` is raised, unless an
        awaitable raised an exception of its own, which is raised instead;
        on timeout, :class:`TimeoutError`.  If what finished first was
        cancelled by something else, :class:`AwaitedCancelled` is raised
        (see :meth:`settle` to get each case as a value).  If the calling
        task is cancelled, the awaitables are cancelled and awaited, and
        :class:`asyncio.CancelledError` propagates.

        The token's :attr:`deadline` is no implicit timeout: with
        ``timeout=None`` the call waits until something finishes or the
        token triggers, which a timeout or deadline source does at its
        time (``OperationCancelled``, reason ``TIMEOUT``).  Pass
        ``timeout=token.remaining`` to stop at a deadline that is only
        known (one that came from another process) with
        :class:`TimeoutError`.
        """
        if len(awaitables) == 1:
            fut = awaitables[0]
            if asyncio.isfuture(fut) and fut.done():
                if fut.cancelled():
                    if not self.triggered:
                        raise AwaitedCancelled(
                            "the awaitable that finished first was "
                            "cancelled")
                elif fut.exception() is not None:
                    raise fut.exception()
                elif not self.triggered:
                    return fut.result()
        outcome = await self._settle(awaitables, timeout)
        return outcome.result()

    async def settle(self, *awaitables, timeout=None):
        """Like :meth:`cancellable_wait`, but return an :class:`Outcome`
        instead of raising for what happened to the awaitables.

        It tells "I was cancelled" from "what I awaited was cancelled" by
        its result, never from a :class:`asyncio.CancelledError`: the
        awaitable that finished first was cancelled by something else
        (``Status.CANCELLED``), the token triggered (``TRIGGERED``), the
        timeout passed (``TIMEOUT``).  Only the cancellation of the
        calling task itself raises :class:`asyncio.CancelledError`.  As
        there, the token's :attr:`deadline` is no implicit timeout.
        """
        return await self._settle(awaitables, timeout)

    async def _settle(self, awaitables, timeout):
        loop = asyncio.get_running_loop()
        if self._loop is not None:
            _loop_check(self, loop)
        futs = []
        try:
            for a in awaitables:
                futs.append(asyncio.ensure_future(a, loop=loop))
        except BaseException:
            await _drain(futs)
            for a in awaitables[len(futs) + 1:]:
                if asyncio.iscoroutine(a):
                    a.close()
            raise
        winner = None
        if self.triggered:
            winner = _TRIGGERED
        else:
            for f in futs:
                if f.done():
                    winner = f
                    break
        if winner is None:
            waiter = loop.create_future()

            def wake(what):
                if not waiter.done():
                    waiter.set_result(what)

            def on_trigger():
                wake(_TRIGGERED)

            for f in futs:
                f.add_done_callback(wake)
            reader = self._reader(loop)
            reader.callbacks[on_trigger] = None
            timer = (loop.call_later(timeout, wake, _TIMEOUT)
                     if timeout is not None else None)
            try:
                winner = await waiter
            except asyncio.CancelledError:
                # I am cancelled: what I awaited goes with me.
                await _drain(futs)
                raise
            finally:
                for f in futs:
                    f.remove_done_callback(wake)
                reader.discard_callback(on_trigger)
                if timer is not None:
                    timer.cancel()
        if winner is _TIMEOUT:
            # A result that came in the same instant is still first.
            for f in futs:
                if f.done():
                    winner = f
                    break
        if winner is not _TIMEOUT and self.triggered:
            winner = _TRIGGERED
        if winner is _TRIGGERED or winner is _TIMEOUT:
            if await _drain(futs):
                raise asyncio.CancelledError()
            index, exc = _own_exception(futs)
            if exc is not None:
                return Outcome(Status.ERROR, exception=exc, index=index)
            if winner is _TIMEOUT:
                return Outcome(Status.TIMEOUT)
            return Outcome(Status.TRIGGERED, token=self._origin)
        index = futs.index(winner)
        others = [f for f in futs if f is not winner]
        if await _drain(others):
            raise asyncio.CancelledError()
        if winner.cancelled():
            return Outcome(Status.CANCELLED, index=index)
        exc = winner.exception()
        if exc is not None:
            return Outcome(Status.ERROR, exception=exc, index=index)
        return Outcome(Status.RESULT, value=winner.result(), index=index)

    # -- sources --

    def _keep(self, src):
        if self._sources is None:
            self._sources = []
        self._sources.append(src)
        return src

    def add_timeout(self, seconds):
        """Trigger the token ``seconds`` from now (reason ``TIMEOUT``),
        unless something else triggers it first.  Returns the
        :class:`Source`, which the token keeps; ``remove()`` it to cancel
        the timeout.  The library's default watcher thread fires it."""
        return self._keep(self._add_time(_ns(seconds), False))

    def add_deadline(self, when):
        """Trigger the token at ``when``, in seconds on the
        :func:`time.monotonic` clock (reason ``TIMEOUT``).  A deadline in
        the past triggers it at once.

        ``token.add_deadline(token.deadline)`` turns a deadline that is
        only known (one that came from another process, see
        :attr:`deadline`) into one that triggers the token here."""
        return self._keep(self._add_time(_ns(when), True))

    def add_signals(self, *signals):
        """Trigger the token when one of ``signals`` arrives (reason
        ``SIGNAL``, :attr:`signal` says which).  The signals are read from
        a signalfd: they must be blocked in every thread, so call
        :func:`block_signals` in the main thread before any other thread
        starts (else :class:`RuntimeError`).  For a signal that keeps its
        Python handler, call :meth:`trigger` from the handler instead."""
        return self._keep(self._add_signals(signals))

    def add_fd(self, fd):
        """Trigger the token when the file descriptor (or object with a
        ``fileno()``) becomes readable or hangs up (reason ``FD``): a
        pidfd, a socket whose peer may leave, another token.  The source
        watches a duplicate: the caller keeps ``fd``."""
        return self._keep(self._add_fd(fd))

    def add_condition(self, predicate, interval):
        """Call ``predicate()`` at once, then every ``interval`` seconds,
        until it returns true; then trigger the token (reason
        ``CONDITION``).  The predicate runs on the library's watcher
        thread, holding the GIL; an exception it raises is reported
        (:func:`sys.unraisablehook`) and counts as false."""
        return self._keep(self._add_condition(predicate,
                                              int(interval * 1e9)))

    # -- across processes --

    def export_fd(self, *, inherit=False, shared=False):
        """A new file descriptor for another process, owned by the caller.

        By default it is watch-only (the read end of a pipe that becomes
        readable and hangs up when the token triggers, is freed, or this
        process ends): its holder can watch it, not trigger the token.
        ``shared=True`` gives the token's eventfd itself, which a holder
        may write to trigger the token.  ``inherit=True`` leaves it
        without close-on-exec (``subprocess``'s ``pass_fds`` does not need
        it).  The other side's import reports this token's cause when it
        triggers (:attr:`remote`), or reason ``GONE`` when it is freed
        untriggered or this process ends.  For a program started with an
        environment, :meth:`export_env` passes the number and the
        :attr:`deadline` too (``cfd_token_from_env()`` in C,
        :meth:`from_env` in Python).
        """
        flags = ((_c.EXPORT_INHERIT if inherit else 0) |
                 (_c.EXPORT_SHARED if shared else 0))
        return self._export(flags)

    @classmethod
    def import_fd(cls, fd, name="", *, loop=None):
        """A token triggered when ``fd`` becomes readable or hangs up: an
        export of another process's token (with that token's cause, or
        reason ``GONE`` if it went away untriggered), a pidfd, a socket
        (reason ``FD``).  The token watches a duplicate; the caller keeps
        ``fd``.

        Its :attr:`deadline` is the exporter's only when the exporter
        forked this process after exporting (not across ``exec``): pass
        the deadline with :meth:`export_env` and :meth:`from_env`, or by
        pickling, which carry it."""
        return cls._import_fd(int(fd), name)._made(loop, ())

    def export_env(self, env=None, *, inherit=False):
        """Export the token for a program started with an environment:
        return ``(fd, environ)``, a new watch-only file descriptor (as
        :meth:`export_fd` makes) and a new dict, a copy of ``env``
        (:data:`os.environ` if None) with ``CANCELFD`` set to the
        descriptor's number and ``CANCELFD_DEADLINE`` to the token's
        :attr:`deadline` as the time that remains now (or removed, when it
        has none), which :meth:`from_env` and ``cfd_token_from_env()``
        read::

            fd, environ = token.export_env()
            subprocess.run(cmd, env=environ, pass_fds=[fd])
            os.close(fd)

        The process's own environment is not touched (the C function
        ``cfd_token_export_env()`` sets it, which is not safe while other
        threads read it).  ``inherit=True`` leaves the descriptor without
        close-on-exec, for :func:`os.execve` and the like; ``subprocess``
        and :mod:`asyncio`'s subprocesses take ``pass_fds`` instead.
        """
        fd = self.export_fd(inherit=inherit)
        try:
            left, realtime = self._deadline_wire()
            environ = dict(os.environ if env is None else env)
            environ[_c.ENV] = str(fd)
            if left < 0:
                environ.pop(_c.ENV_DEADLINE, None)
            else:
                environ[_c.ENV_DEADLINE] = "%d@%d" % (left, realtime)
        except BaseException:
            os.close(fd)
            raise
        return fd, environ

    @classmethod
    def from_env(cls, name="", *, loop=None):
        """The token a parent process passed in the environment variable
        ``CANCELFD`` (as ``cancelfd-run`` and :meth:`export_env` do), or
        None if there is none.

        Its :attr:`deadline` is the one ``CANCELFD_DEADLINE`` gave, less
        the time that passed since it was written.  Both variables are
        removed from the environment, :data:`os.environ` included: they
        name a descriptor of this process, and mean nothing to its
        children.  Call it early, before starting threads.
        """
        try:
            tok = cls._from_env(name)
        finally:
            # The library removed them from the C environment; os.environ
            # is Python's copy of it, made at start-up.
            for var in (_c.ENV, _c.ENV_DEADLINE):
                if _c._getenv(var) is None:
                    os.environ.pop(var, None)
        return None if tok is None else tok._made(loop, ())


def _combine(tokens, name, all_, sep):
    if not tokens:
        raise ValueError("at least one token is needed")
    loop = tokens[0]._loop
    for t in tokens:
        if t._loop != loop:
            raise EventLoopMismatch(
                "Combined CancelToken objects must be on the same event loop")
    if name is None:
        name = sep.join(t.name for t in tokens)
    cls = type(tokens[0])
    return cls._combine(name, tokens, all_)._made(loop, tuple(tokens))


def any_of(*tokens, name=None):
    """A new token triggered when any of ``tokens`` is (named
    ``"a|b|..."`` unless ``name`` is given)."""
    return _combine(tokens, name, False, "|")


def all_of(*tokens, name=None):
    """A new token triggered once every one of ``tokens`` has been (reason
    ``ALL_OF``; named ``"a&b&..."`` unless ``name`` is given)."""
    return _combine(tokens, name, True, "&")


# -- pickling for multiprocessing --
#
# Without a deadline a token pickles as the watch-only export it keeps
# (one per token, duplicated for each pickle).  With one, the export goes
# with the deadline in a cfd_token_send() message queued on a socket pair
# made for that pickle, and the pickle passes the receiving end: the
# child's cfd_token_recv() takes both, less the time that passed.  A bare
# pipe would carry no deadline to a process that the exporter did not
# fork (spawn, forkserver, a running worker).

def _rebuild(cls, name, dupfd):
    fd = dupfd.detach()
    try:
        return cls._import_fd(fd, name)._made(None, ())
    finally:
        os.close(fd)


def _rebuild_sent(cls, name, dupfd):
    fd = dupfd.detach()
    try:
        return cls._recv(fd, name)._made(None, ())
    finally:
        os.close(fd)


def _reduce(token):
    from multiprocessing import context, reduction, util
    if token._deadline_ns is None:
        return _rebuild, (type(token), token.name,
                          reduction.DupFd(token._export_kept()))
    import socket
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with mine:
        token._send(mine.fileno())
    fd = theirs.detach()
    try:
        popen = context.get_spawning_popen()
        dupfd = reduction.DupFd(fd)
    except BaseException:
        os.close(fd)
        raise
    if popen is None:
        os.close(fd)  # the resource sharer holds a duplicate
    else:
        # Passed as it is when the process starts: kept until then.
        util.Finalize(popen, os.close, (fd,))
    return _rebuild_sent, (type(token), token.name, dupfd)


def _register_pickling(cls):
    from multiprocessing.reduction import ForkingPickler
    ForkingPickler.register(cls, _reduce)


_register_pickling(CancelToken)
