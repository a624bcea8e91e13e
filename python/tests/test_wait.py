# SPDX-License-Identifier: MIT
"""wait(), cancellable_wait() and settle(): semantics, and nothing left
behind (no task, no reader, no fd)."""
import asyncio

import pytest

from cancelfd import (AwaitedCancelled, CancelToken, OperationCancelled,
                      Status)

from conftest import loop_fds, other_tasks


async def test_wait_returns_when_triggered(no_leak):
    t = CancelToken("t")
    asyncio.get_running_loop().call_later(0.01, t.trigger)
    await asyncio.wait_for(t.wait(), 5)
    assert t.triggered
    assert t.fileno() not in loop_fds(asyncio.get_running_loop())


async def test_wait_on_a_triggered_token_returns_at_once():
    t = CancelToken("t")
    t.trigger()
    await t.wait()
    assert t._readers is None  # no reader was made


async def test_waiters_share_one_reader():
    t = CancelToken("t")
    loop = asyncio.get_running_loop()
    tasks = [asyncio.create_task(t.wait()) for _ in range(50)]
    await asyncio.sleep(0)
    assert len(t._readers) == 1
    assert t.fileno() in loop_fds(loop)
    # A waiter that goes does not take the reader away from the others.
    tasks[0].cancel()
    await asyncio.sleep(0)
    assert t.fileno() in loop_fds(loop)
    t.trigger()
    await asyncio.gather(*tasks[1:])
    assert t.fileno() not in loop_fds(loop)
    assert not t._readers


async def test_last_waiter_cancelled_removes_the_reader():
    t = CancelToken("t")
    loop = asyncio.get_running_loop()
    w = asyncio.create_task(t.wait())
    await asyncio.sleep(0)
    assert t.fileno() in loop_fds(loop)
    w.cancel()
    with pytest.raises(asyncio.CancelledError):
        await w
    assert t.fileno() not in loop_fds(loop)
    assert not t._readers


async def test_chained_wait():
    a = CancelToken("a")
    b = CancelToken("b").chain(a)
    asyncio.get_running_loop().call_later(0.01, a.trigger)
    await asyncio.wait_for(b.wait(), 5)


async def test_first_result_wins_and_the_others_are_awaited(no_leak):
    t = CancelToken("t")
    finished = []

    async def slow(n):
        try:
            await asyncio.sleep(n)
        finally:
            await asyncio.sleep(0.01)  # cleanup that takes time
            finished.append(n)
        return n

    r = await t.cancellable_wait(slow(10), asyncio.sleep(0.01, "fast"),
                                 slow(20))
    assert r == "fast"
    assert sorted(finished) == [10, 20]  # cancelled *and* awaited
    assert not other_tasks()
    assert not t._readers
    assert t.fileno() not in loop_fds(asyncio.get_running_loop())


async def test_an_exception_is_a_result():
    t = CancelToken("t")

    async def boom():
        raise KeyError("x")

    with pytest.raises(KeyError):
        await t.cancellable_wait(boom(), asyncio.sleep(10))
    assert not other_tasks()


async def test_timeout(no_leak):
    t = CancelToken("t")
    with pytest.raises(TimeoutError):
        await t.cancellable_wait(asyncio.sleep(10), timeout=0.01)
    assert not other_tasks()
    assert not t._readers


async def test_trigger_raises_operation_cancelled(no_leak):
    t = CancelToken("t")
    asyncio.get_running_loop().call_later(0.01, t.trigger, "stop")
    cleaned = []

    async def work():
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.append(1)

    with pytest.raises(OperationCancelled) as e:
        await t.cancellable_wait(work(), timeout=5)
    assert e.value.token is t
    assert cleaned == [1]
    assert not other_tasks()
    assert not t._readers


async def test_already_triggered():
    t = CancelToken("t")
    t.trigger()
    coro = asyncio.sleep(10)
    with pytest.raises(OperationCancelled):
        await t.cancellable_wait(coro)
    assert not other_tasks()
    with pytest.raises(OperationCancelled):
        await t.cancellable_wait()


async def test_own_exception_wins_over_operation_cancelled():
    t = CancelToken("t")

    async def fails_on_cancel():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed")

    asyncio.get_running_loop().call_later(0.01, t.trigger)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await t.cancellable_wait(fails_on_cancel())
    # A task that had failed before the trigger.
    t2 = CancelToken("t2")
    fut = asyncio.get_running_loop().create_future()
    fut.set_exception(ValueError("early"))
    t2.trigger()
    with pytest.raises(ValueError, match="early"):
        await t2.cancellable_wait(fut)


async def test_result_loses_to_a_trigger():
    t = CancelToken("t")
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(1)
    t.trigger()
    with pytest.raises(OperationCancelled):
        await t.cancellable_wait(fut)


async def test_done_future_fast_path():
    t = CancelToken("t")
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(42)
    assert await t.cancellable_wait(fut) == 42
    assert t._readers is None


async def test_caller_cancelled_cancels_and_awaits_the_awaitables():
    t = CancelToken("t")
    cleaned = []

    async def work():
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.01)
            cleaned.append(1)

    outer = asyncio.create_task(t.cancellable_wait(work()))
    await asyncio.sleep(0.01)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert cleaned == [1]
    assert not other_tasks()
    assert not t._readers


# -- "I was cancelled" or "what I awaited was cancelled" --

async def test_settle_tells_the_awaited_was_cancelled():
    t = CancelToken("t")
    child = asyncio.create_task(asyncio.sleep(10))
    asyncio.get_running_loop().call_later(0.01, child.cancel)
    out = await t.settle(child)
    assert out.status is Status.CANCELLED and out.index == 0
    # cancellable_wait says it with a type of its own.
    child2 = asyncio.create_task(asyncio.sleep(10))
    asyncio.get_running_loop().call_later(0.01, child2.cancel)
    with pytest.raises(AwaitedCancelled):
        await t.cancellable_wait(child2)
    assert asyncio.current_task().cancelling() == 0


async def test_settle_raises_only_when_i_am_cancelled():
    t = CancelToken("t")
    child = asyncio.create_task(asyncio.sleep(10))
    parent = asyncio.create_task(t.settle(child))
    await asyncio.sleep(0.01)
    parent.cancel()
    with pytest.raises(asyncio.CancelledError):
        await parent
    assert parent.cancelled()
    assert child.cancelled()  # what I awaited went with me


async def test_settle_outcomes():
    t = CancelToken("t")
    out = await t.settle(asyncio.sleep(0, "v"))
    assert (out.status, out.value, out.index) == (Status.RESULT, "v", 0)
    assert out.result() == "v"

    async def boom():
        raise KeyError(1)

    out = await t.settle(asyncio.sleep(10), boom())
    assert out.status is Status.ERROR and out.index == 1
    assert isinstance(out.exception, KeyError)
    out = await t.settle(asyncio.sleep(10), timeout=0.01)
    assert out.status is Status.TIMEOUT
    with pytest.raises(TimeoutError):
        out.result()
    asyncio.get_running_loop().call_later(0.01, t.trigger)
    out = await t.settle(asyncio.sleep(10))
    assert out.status is Status.TRIGGERED and out.token is t
    with pytest.raises(OperationCancelled):
        out.result()
    assert "triggered" in repr(out)
    assert not other_tasks()


async def test_the_detect_cancel_example():
    """The situation of the question: main() cancels a task it awaits, or
    main() itself is cancelled; the outcome tells which, without looking
    at a CancelledError."""
    token = CancelToken("main")

    async def cancel_me():
        await asyncio.sleep(3600)

    async def parent(task, log):
        out = await token.settle(task)
        log.append("child cancelled" if out.status is Status.CANCELLED
                   else out.status.value)

    for who in ("child", "parent"):
        log = []
        child = asyncio.create_task(cancel_me())
        p = asyncio.create_task(parent(child, log))
        await asyncio.sleep(0.01)
        (child if who == "child" else p).cancel()
        await asyncio.sleep(0.01)
        if who == "child":
            assert log == ["child cancelled"] and not p.cancelled()
        else:
            assert log == [] and p.cancelled() and child.cancelled()
