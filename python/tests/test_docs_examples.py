# SPDX-License-Identifier: MIT
"""The code blocks of the CancelToken documentation that are not doctests
(Loop exit condition, Waiting for an external signal), run as written.
Their "do something" is the literal `...`: the loops spin without yielding,
so the token is triggered from the library's watcher thread (a timeout) or
from another thread, which the atomic `triggered` sees."""
import asyncio
import threading

import pytest

from cancelfd import CancelToken, OperationCancelled

LOOP_EXIT = '''
async def my_task(token):
    while not token.triggered:
        ... # do something
'''

LOOP_RAISE = '''
async def my_task(token):
    while True:
        token.raise_if_triggered()
        ... # do something
'''

EXTERNAL = '''
async def main():
    token = CancelToken('worker')

    asyncio.ensure_future(do_work(token))
    # wait for work to be completed before proceeding
    await token.wait()
'''


def run(src, extra=None):
    ns = {"asyncio": asyncio, "CancelToken": CancelToken}
    ns.update(extra or {})
    exec(src, ns)
    return ns


async def test_loop_exit_condition():
    ns = run(LOOP_EXIT)
    token = CancelToken("spin")
    token.add_timeout(0.05)
    await asyncio.wait_for(ns["my_task"](token), 10)
    assert token.triggered


async def test_loop_raises_operation_cancelled():
    ns = run(LOOP_RAISE)
    token = CancelToken("spin")
    threading.Timer(0.05, token.trigger).start()
    with pytest.raises(OperationCancelled):
        await asyncio.wait_for(ns["my_task"](token), 10)


async def test_waiting_for_an_external_signal():
    done = []

    async def do_work(token):
        await asyncio.sleep(0.01)
        done.append(1)
        token.trigger()

    ns = run(EXTERNAL, {"do_work": do_work})
    await asyncio.wait_for(ns["main"](), 10)
    assert done == [1]
