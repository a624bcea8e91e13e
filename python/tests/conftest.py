# SPDX-License-Identifier: MIT
"""Shared helpers of the Python tests."""
import asyncio
import gc
import os

import pytest

from cancelfd import CancelToken


def open_fds():
    """The set of this process's open file descriptors."""
    return set(int(n) for n in os.listdir("/proc/self/fd"))


def describe(fds):
    out = {}
    for fd in fds:
        try:
            out[fd] = os.readlink("/proc/self/fd/%d" % fd)
        except OSError:
            pass
    return out


def loop_fds(loop):
    """The fds registered in a selector loop (readers and writers)."""
    return set(loop._selector.get_map())


def other_tasks():
    """The tasks of the running loop other than the current one."""
    return asyncio.all_tasks() - {asyncio.current_task()}


@pytest.fixture
def no_leak():
    """Fails the test if it leaves a file descriptor open."""
    # The library's default watcher keeps its own fds once made: make it
    # before counting.
    warm = CancelToken("warm-up")
    warm.add_timeout(3600).remove()
    del warm
    gc.collect()
    before = open_fds()
    yield
    gc.collect()
    left = open_fds() - before
    assert not left, describe(left)
