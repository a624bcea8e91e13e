# SPDX-License-Identifier: MIT
"""Lifetimes: the C token freed with its object, readers removed before the
fd goes, several loops, closed loops, fork."""
import asyncio
import gc
import os
import select
import threading
import weakref

import pytest

from cancelfd import CancelToken, ForkedTokenError

from conftest import loop_fds


def test_c_token_freed_with_the_python_object():
    t = CancelToken("t")
    fd = t.export_fd()  # hangs up when the token is freed untriggered
    try:
        ref = weakref.ref(t)
        p = select.poll()
        p.register(fd, select.POLLIN)
        assert p.poll(0) == []
        del t
        gc.collect()
        assert ref() is None
        assert p.poll(1000) and p.poll(0)[0][1] & select.POLLHUP
    finally:
        os.close(fd)


def test_token_fd_closed_with_the_object():
    t = CancelToken("t")
    fd = t.fileno()
    link = os.readlink("/proc/self/fd/%d" % fd)
    assert "eventfd" in link
    del t
    gc.collect()
    with pytest.raises(OSError):
        os.readlink("/proc/self/fd/%d" % fd)


def test_a_pending_wait_keeps_the_token_and_its_fd():
    loop = asyncio.new_event_loop()
    try:
        t = CancelToken("t")
        fd = t.fileno()
        ref = weakref.ref(t)
        task = loop.create_task(t.wait())
        loop.run_until_complete(asyncio.sleep(0.01))
        del t
        gc.collect()
        assert ref() is not None  # the reader holds it: fd still ours
        assert fd in loop_fds(loop)
        ref().trigger()
        loop.run_until_complete(task)
        assert fd not in loop_fds(loop)
        gc.collect()
        assert ref() is None
    finally:
        loop.close()


def test_reader_removed_before_the_fd_is_reused():
    loop = asyncio.new_event_loop()
    try:
        t = CancelToken("t")
        fd = t.fileno()
        task = loop.create_task(t.wait())
        loop.run_until_complete(asyncio.sleep(0))
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        assert fd not in loop_fds(loop)
        del t, task
        gc.collect()
        # The number comes back for a new eventfd; the loop has no stale
        # registration of it and a new token there works.
        t2 = CancelToken("t2")
        assert t2.fileno() == fd
        t2.trigger()
        loop.run_until_complete(asyncio.wait_for(t2.wait(), 5))
    finally:
        loop.close()


def test_several_loops_in_several_threads():
    t = CancelToken("shared")
    woke = []
    started = threading.Barrier(4)

    def run():
        async def main():
            w = asyncio.create_task(t.wait())
            await asyncio.sleep(0.01)
            started.wait()
            await asyncio.wait_for(w, 5)
            woke.append(len(t._readers or ()))
        asyncio.run(main())

    threads = [threading.Thread(target=run) for _ in range(3)]
    for th in threads:
        th.start()
    started.wait()
    t.trigger()
    for th in threads:
        th.join()
    assert len(woke) == 3


def test_a_closed_loop_leaves_nothing_behind():
    t = CancelToken("t")
    loop1 = asyncio.new_event_loop()
    task = loop1.create_task(t.wait())
    loop1.run_until_complete(asyncio.sleep(0.01))
    task._log_destroy_pending = False
    loop1.close()  # the wait is abandoned with its reader
    del task
    loop2 = asyncio.new_event_loop()
    try:
        w = loop2.create_task(t.wait())
        loop2.run_until_complete(asyncio.sleep(0))
        assert loop1 not in t._readers  # pruned
        t.trigger()
        loop2.run_until_complete(asyncio.wait_for(w, 5))
    finally:
        loop2.close()


def test_forked_child_gets_a_clear_exception():
    t = CancelToken("parent-token")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            for use in (lambda: t.triggered, t.trigger, t.fileno,
                        lambda: t.child("x"), lambda: t.reason):
                try:
                    use()
                    code = 1
                except ForkedTokenError as e:
                    if "fork" not in str(e):
                        code = 2
            # A token made in the child works.
            mine = CancelToken("child")
            mine.trigger()
            if not mine.triggered:
                code = 3
        except BaseException:
            code = 4
        os.write(w, bytes([code]))
        os._exit(0)
    os.close(w)
    code = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    assert code == b"\0"
    assert not t.triggered
