# SPDX-License-Identifier: MIT
"""CancelScope: a TaskGroup that its token cancels; nested and linked."""
import asyncio

import pytest

from cancelfd import CancelScope, CancelToken

from conftest import other_tasks


async def test_cancel_cancels_every_task_and_exits_cleanly():
    done = []

    async def sleeper(n):
        try:
            await asyncio.sleep(n)
        finally:
            done.append(n)

    async with CancelScope(name="group") as scope:
        for n in (1, 2, 3, 4):
            scope.create_task(sleeper(n))
        await asyncio.sleep(0)
        scope.cancel()  # cancels the tasks, exits without an exception
    assert sorted(done) == [1, 2, 3, 4]
    assert scope.cancelled_caught
    assert not other_tasks()
    assert asyncio.current_task().cancelling() == 0


async def test_token_triggered_elsewhere():
    token = CancelToken("request")
    asyncio.get_running_loop().call_later(0.02, token.trigger, "client left")
    async with CancelScope(token) as scope:
        scope.create_task(asyncio.sleep(10))
        await asyncio.sleep(10)
    assert scope.cancelled_caught and token.message == "client left"


async def test_a_scope_that_ends_on_its_own():
    async with CancelScope() as scope:
        t = scope.create_task(asyncio.sleep(0, "ok"))
    assert t.result() == "ok" and not scope.cancelled_caught
    assert not scope.token._readers


async def test_already_triggered_token():
    token = CancelToken("t")
    token.trigger()
    reached = []
    async with CancelScope(token):
        await asyncio.sleep(10)
        reached.append(1)
    assert reached == []


async def test_a_task_error_propagates():
    with pytest.raises(ExceptionGroup) as e:
        async with CancelScope() as scope:
            async def boom():
                raise KeyError(1)
            scope.create_task(boom())
            scope.create_task(asyncio.sleep(10))
    assert e.group_contains(KeyError) if hasattr(e, "group_contains") \
        else isinstance(e.value.exceptions[0], KeyError)


async def test_outer_cancellation_is_not_swallowed():
    async def body():
        async with CancelScope():
            await asyncio.sleep(10)

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_user_task_group():
    tg = asyncio.TaskGroup()
    async with CancelScope(task_group=tg) as scope:
        assert scope.task_group is tg
        tg.create_task(asyncio.sleep(10))
        scope.cancel()
    assert scope.cancelled_caught


async def test_nested_outer_cancels_inner():
    async with CancelScope(name="outer") as outer:
        async with CancelScope(outer.token.child("inner")) as inner:
            inner.create_task(asyncio.sleep(10))
            outer.create_task(asyncio.sleep(10))
            outer.cancel()
            await asyncio.sleep(10)
        pytest.fail("the outer scope's cancel goes on past the inner one")
    assert inner.token.triggered
    assert outer.cancelled_caught
    assert asyncio.current_task().cancelling() == 0


async def test_nested_inner_cancel_leaves_outer_running():
    async with CancelScope(name="outer") as outer:
        async with CancelScope(outer.token.child("inner")) as inner:
            inner.cancel()
            await asyncio.sleep(10)
        assert inner.cancelled_caught and not outer.token.triggered
        await asyncio.sleep(0)
    assert not outer.cancelled_caught


async def test_linked_inner_cancels_outer():
    """The asyncio cancel-scope example: an inner scope linked to its
    parent cancels the parent, whose other task waits forever."""
    forever = asyncio.Event()

    async def inner(parent):
        async with CancelScope(name="inner", link=parent) as scope:
            scope.cancel("inner is done")

    async with CancelScope(name="outer") as outer:
        outer.create_task(forever.wait())
        outer.create_task(inner(outer))
    assert outer.cancelled_caught
    assert outer.token.triggered_token.name == "inner"
    assert outer.token.message == "inner is done"
