# SPDX-License-Identifier: MIT
"""trigger() from another thread, a signal handler and a finalizer wakes a
waiting loop."""
import asyncio
import gc
import os
import signal
import threading

from cancelfd import CancelToken, Reason


async def test_trigger_from_a_thread_wakes_the_loop():
    t = CancelToken("t")
    th = threading.Timer(0.02, t.trigger, args=("from a thread",))
    th.start()
    await asyncio.wait_for(t.wait(), 5)
    th.join()
    assert t.message == "from a thread"


async def test_trigger_from_a_thread_reaches_a_chain():
    a = CancelToken("a")
    b = CancelToken("b").chain(a).child("c")
    th = threading.Timer(0.02, a.trigger)
    th.start()
    await asyncio.wait_for(b.wait(), 5)
    th.join()
    assert b.triggered_token is a


async def test_trigger_from_a_signal_handler_wakes_the_loop():
    t = CancelToken("t")
    old = signal.signal(signal.SIGUSR1, lambda signo, frame: t.trigger(
        "signal %d" % signo))
    try:
        asyncio.get_running_loop().call_later(
            0.02, os.kill, os.getpid(), signal.SIGUSR1)
        await asyncio.wait_for(t.wait(), 5)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert t.message == "signal %d" % signal.SIGUSR1


async def test_trigger_from_a_signal_handler_during_select():
    """The loop is blocked in epoll_wait, in the main thread, when the
    signal comes from another thread: the handler runs at once (the wait
    is interrupted) and the retried wait sees the token."""
    t = CancelToken("t")
    old = signal.signal(signal.SIGUSR2, lambda *a: t.trigger())
    try:
        th = threading.Timer(0.05, os.kill, args=(os.getpid(),
                                                  signal.SIGUSR2))
        th.start()
        await asyncio.wait_for(t.wait(), 5)
        th.join()
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert t.reason is Reason.MANUAL


class Guard:
    def __init__(self, token):
        self.token = token

    def __del__(self):
        self.token.trigger("finalized")


async def test_trigger_from_a_finalizer():
    t = CancelToken("t")
    g = Guard(t)
    waiter = asyncio.create_task(t.wait())
    await asyncio.sleep(0.01)
    del g  # refcount: __del__ runs here
    await asyncio.wait_for(waiter, 5)
    assert t.message == "finalized"


async def test_trigger_from_a_finalizer_in_a_cycle():
    t = CancelToken("t")
    g = Guard(t)
    g.self = g  # only the cycle collector frees it
    waiter = asyncio.create_task(t.wait())
    await asyncio.sleep(0.01)
    del g
    assert not t.triggered
    gc.collect()
    await asyncio.wait_for(waiter, 5)
    assert t.message == "finalized"


def test_finalizer_of_a_token_that_triggers_itself():
    class Selfish(CancelToken):
        def __del__(self):
            self.trigger("bye")

    s = Selfish("s")
    child = s.child("c")
    del s  # the child keeps the object alive
    del child
    gc.collect()
