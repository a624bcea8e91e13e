# SPDX-License-Identifier: MIT
"""Sources on the default watcher: timeout, deadline, condition, fd,
signals; the first to fire wins."""
import asyncio
import os
import subprocess
import sys
import textwrap
import time

import pytest

from cancelfd import CancelToken, Reason, Source


async def test_timeout(no_leak):
    t = CancelToken("t")
    src = t.add_timeout(0.02)
    assert isinstance(src, Source)
    t0 = time.monotonic()
    await asyncio.wait_for(t.wait(), 5)
    assert time.monotonic() - t0 >= 0.015
    assert t.reason is Reason.TIMEOUT


async def test_deadline():
    t = CancelToken("t")
    t.add_deadline(time.monotonic() + 0.02)
    await asyncio.wait_for(t.wait(), 5)
    assert t.reason is Reason.TIMEOUT
    past = CancelToken("past")
    past.add_deadline(time.monotonic() - 1)
    assert past.triggered


async def test_removed_timeout_does_not_fire():
    t = CancelToken("t")
    t.add_timeout(0.01).remove()
    await asyncio.sleep(0.05)
    assert not t.triggered


async def test_condition():
    t = CancelToken("t")
    calls = []

    def full():
        calls.append(1)
        return len(calls) >= 3

    t.add_condition(full, 0.005)
    await asyncio.wait_for(t.wait(), 5)
    assert t.reason is Reason.CONDITION and len(calls) == 3


async def test_condition_that_raises_is_reported_and_false():
    t = CancelToken("t")
    seen = []
    old = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(u.exc_type)
    try:
        n = []

        def bad():
            n.append(1)
            if len(n) == 1:
                raise KeyError("x")
            return True

        t.add_condition(bad, 0.005)
        await asyncio.wait_for(t.wait(), 5)
    finally:
        sys.unraisablehook = old
    assert seen == [KeyError] and t.reason is Reason.CONDITION


async def test_fd_source():
    r, w = os.pipe()
    try:
        t = CancelToken("t")
        t.add_fd(r)
        await asyncio.sleep(0.01)
        assert not t.triggered
        os.write(w, b"x")
        await asyncio.wait_for(t.wait(), 5)
        assert t.reason is Reason.FD
    finally:
        os.close(r)
        os.close(w)


async def test_first_source_wins():
    t = CancelToken("multi")
    t.add_timeout(0.02)
    t.add_condition(lambda: False, 0.005)
    t.add_timeout(5)
    await asyncio.wait_for(t.wait(), 5)
    assert t.reason is Reason.TIMEOUT
    # A manual trigger first: the sources leave, reason stays manual.
    u = CancelToken("u")
    u.add_timeout(0.01)
    u.trigger("by hand")
    await asyncio.sleep(0.03)
    assert u.reason is Reason.MANUAL and u.message == "by hand"


def test_source_on_a_triggered_token():
    t = CancelToken("t")
    t.trigger()
    src = t.add_condition(lambda: True, 1)
    assert "removed" in repr(src)


def test_signals_need_blocking():
    # pytest's process has threads: the signal is not blocked in them.
    t = CancelToken("t")
    with pytest.raises(RuntimeError, match="block"):
        t.add_signals(30)


def test_signal_source_in_a_process_of_its_own():
    script = textwrap.dedent("""
        import asyncio, os, signal
        import cancelfd
        cancelfd.block_signals([signal.SIGTERM, signal.SIGINT])
        async def main():
            app = cancelfd.CancelToken("application")
            app.add_signals(signal.SIGTERM, signal.SIGINT)
            app.add_timeout(30)
            asyncio.get_running_loop().call_later(
                0.05, os.kill, os.getpid(), signal.SIGTERM)
            await app.wait()
            print(app.reason, app.signal == signal.SIGTERM)
        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], check=True,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["signal", "True"]
