# SPDX-License-Identifier: MIT
"""cancelfd: cancellation tokens that are file descriptors, for asyncio.

A :class:`CancelToken` is a one-way latch, pending until it is triggered,
whose file descriptor becomes readable when it triggers.  asyncio waits on
it with one ``add_reader``; so can any other loop, thread or process that
holds the descriptor.

>>> import asyncio
>>> from cancelfd import CancelToken, OperationCancelled
>>> async def main():
...     server = CancelToken('server')
...     request = server.child('request')
...     loop = asyncio.get_running_loop()
...     loop.call_later(0.01, server.trigger, 'shutting down')
...     try:
...         await request.cancellable_wait(asyncio.sleep(10))
...     except OperationCancelled:
...         print(request.reason, request.triggered_token, request.message)
>>> asyncio.run(main())
parent server shutting down

The rest: :meth:`CancelToken.chain`, :meth:`CancelToken.child`,
:func:`any_of` and :func:`all_of` build trees that cancel together;
sources trigger a token from a timeout, a deadline, signals, a file
descriptor or a polled condition (:meth:`CancelToken.add_timeout` and the
methods beside it); :class:`CancelScope` cancels an
:class:`asyncio.TaskGroup`; :meth:`CancelToken.settle` returns what
happened instead of raising; a token pickles for :mod:`multiprocessing`
and crosses ``exec`` as ``CANCELFD`` (:meth:`CancelToken.from_env`,
:meth:`CancelToken.export_env`, :meth:`CancelToken.export_fd`).  The cause
of a trigger (reason, origin, message, code, time) and the token's
deadline (:attr:`CancelToken.deadline`, :attr:`CancelToken.remaining`)
cross with it: the other side reports them, marked
:attr:`CancelToken.remote`.
"""

from ._token import (
    AwaitedCancelled,
    BaseCancelTokenException,
    CancelToken,
    EventLoopMismatch,
    ForkedTokenError,
    OperationCancelled,
    Outcome,
    Reason,
    Source,
    Status,
    all_of,
    any_of,
    block_signals,
)
from ._token import _c
from ._scope import CancelScope

import atexit as _atexit

# Condition predicates run on the library's watcher thread: stop calling
# them before the interpreter goes away.
_atexit.register(_c._shutdown)

__all__ = [
    "AwaitedCancelled",
    "BaseCancelTokenException",
    "CancelScope",
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
