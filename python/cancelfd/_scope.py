# SPDX-License-Identifier: MIT
"""CancelScope: an asyncio.TaskGroup that a token cancels."""

import asyncio

from ._token import CancelToken

__all__ = ["CancelScope"]


class CancelScope:
    """An ``async with`` block around an :class:`asyncio.TaskGroup` that
    its token cancels: when the token triggers, the block's own code and
    every task of the group are cancelled, the group waits for them, and
    the block exits without an exception.

    ``token`` is the scope's token (a new one named ``name`` if omitted);
    a scope inside another takes ``outer.token.child(...)``, so that the
    outer scope's cancel reaches it.  ``link`` (a token or a scope) is
    cancelled in turn when this scope's token triggers while the block
    runs: the inner scope of a linked pair cancels the outer one.
    ``task_group`` is the group to enter (a new :class:`asyncio.TaskGroup`
    if omitted).

    An exception raised by a task, or by the block, propagates as the
    group raises it; a cancellation of the enclosing task from elsewhere
    propagates too.  :attr:`cancelled_caught` tells, after the block,
    whether the token ended it.

    >>> import asyncio
    >>> async def main():
    ...     async with CancelScope(name="work") as scope:
    ...         scope.create_task(asyncio.sleep(10))
    ...         scope.create_task(asyncio.sleep(20))
    ...         scope.cancel("enough")
    ...         await asyncio.sleep(30)
    ...     return scope.cancelled_caught, scope.token.message
    >>> asyncio.run(main())
    (True, 'enough')
    """

    def __init__(self, token=None, *, name="scope", task_group=None,
                 link=None):
        self.token = token if token is not None else CancelToken(name)
        self.task_group = task_group
        if isinstance(link, CancelScope):
            link = link.token
        self._link = link
        self._task = None
        self._reader = None
        self._state = "new"
        #: True once the block has ended because the token triggered.
        self.cancelled_caught = False

    def create_task(self, coro, **kw):
        """Start a task in the scope's group (``TaskGroup.create_task``)."""
        return self.task_group.create_task(coro, **kw)

    def cancel(self, message=None):
        """Trigger the scope's token: cancel the block and its tasks."""
        self.token.trigger(message)

    async def __aenter__(self):
        if self._state != "new":
            raise RuntimeError("a CancelScope is entered once")
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        if self.task_group is None:
            self.task_group = asyncio.TaskGroup()
        await self.task_group.__aenter__()
        self._state = "entered"
        # Already triggered: the reader fires at the loop's next turn, and
        # the block is cancelled at its first await.
        self._reader = self.token._reader(loop)
        self._reader.callbacks[self._on_trigger] = None
        return self

    def _on_trigger(self):
        self._reader = None
        if self._state != "entered":
            return
        self._state = "cancelling"
        self._task.cancel()
        self._pass_on()

    def _pass_on(self):
        link = self._link
        if link is not None and not link.triggered:
            link._trigger_from(self.token)

    async def __aexit__(self, et, exc, tb):
        try:
            await self.task_group.__aexit__(et, exc, tb)
        except asyncio.CancelledError:
            if self._state == "cancelling" and self._task.uncancel() == 0:
                self.cancelled_caught = True
                return True
            raise
        else:
            if self._state == "cancelling":
                # The block swallowed the cancellation itself.
                self._task.uncancel()
                self.cancelled_caught = True
        finally:
            if self._reader is not None:
                self._reader.discard_callback(self._on_trigger)
                self._reader = None
            if self._state == "entered" and self.token.triggered:
                # Triggered, and the block ended before the loop's next
                # turn: nothing was left to cancel here, but the link is.
                self.cancelled_caught = True
                self._pass_on()
            self._state = "exited"
        return False
