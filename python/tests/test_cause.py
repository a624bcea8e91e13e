# SPDX-License-Identifier: MIT
"""The cause in one process: code and message down the graph, who won a
race of triggers, the deadline and what remains of it, reading the cause
while other threads trigger."""
import asyncio
import os
import sys
import threading
import time

import pytest

from cancelfd import (CancelToken, OperationCancelled, Reason, all_of,
                      any_of)


def test_python_monotonic_is_clock_monotonic():
    """deadline and trigger_time are CLOCK_MONOTONIC nanoseconds; they are
    time.monotonic() seconds only because that is the clock it reads."""
    info = time.get_clock_info("monotonic")
    assert info.implementation == "clock_gettime(CLOCK_MONOTONIC)"
    assert info.monotonic and not info.adjustable


def test_code_and_message_reach_every_descendant():
    root = CancelToken("root")
    other = CancelToken("other")
    child = root.child("child")
    grandchild = child.child("grandchild")
    chained = child.chain(other)
    anyone = any_of(other, grandchild)
    every = all_of(root, child)
    tokens = [child, grandchild, chained, anyone, every]
    assert all(t.code == 0 and t.message is None for t in tokens)
    root.trigger("shutting down", code=503)
    assert root.code == 503 and root.message == "shutting down"
    assert root.reason is Reason.MANUAL and root.origin is root
    for t in tokens:
        assert t.triggered
        assert (t.code, t.message) == (503, "shutting down"), t
        assert t.origin is root, t
        assert t.reason in (Reason.PARENT, Reason.ALL_OF), t
        assert t.trigger_time == root.trigger_time
        # A local cause: this process, no path.
        assert t.remote is False
        assert t.origin_pid == os.getpid()
        assert t.origin_path is None
    assert other.triggered is False and other.code == 0


def test_code_without_message_and_the_defaults():
    t = CancelToken("code only")
    assert t.origin_pid == 0 and t.remote is False
    t.trigger(code=-7)
    assert (t.code, t.message) == (-7, None)
    u = CancelToken("no code")
    u.trigger("bye", code=None)
    assert (u.code, u.message) == (0, "bye")
    v = CancelToken("zero")
    v.trigger(code=0)
    assert v.triggered and v.code == 0


def test_code_must_be_a_32_bit_int():
    t = CancelToken("bad code")
    with pytest.raises(OverflowError):
        t.trigger(code=2 ** 31)
    with pytest.raises(OverflowError):
        t.trigger(code=-2 ** 31 - 1)
    with pytest.raises(TypeError):
        t.trigger(code="503")
    with pytest.raises(TypeError):
        t.trigger(code=1.5)
    with pytest.raises(TypeError):
        t.trigger("message", 503)  # code is keyword-only
    assert not t.triggered
    t.trigger(code=2 ** 31 - 1)
    assert t.code == 2 ** 31 - 1


def test_try_trigger_tells_who_won_and_trigger_returns_none():
    t = CancelToken("race")
    child = t.child("child")
    assert child.try_trigger("first", code=1) is True
    assert child.try_trigger("second", code=2) is False
    assert (child.code, child.message) == (1, "first")
    assert t.trigger("parent", code=3) is None
    assert (child.code, child.message) == (1, "first")
    assert t.try_trigger() is False
    assert (t.code, t.message) == (3, "parent")


# ---- the deadline ----

def test_no_deadline():
    t = CancelToken("free")
    assert t.deadline is None and t.remaining is None
    assert t.child("c").deadline is None


def test_deadline_of_a_child_token():
    parent = CancelToken("parent")
    child = parent.child("child")
    grandchild = child.child("grandchild")
    before = time.monotonic()
    src = parent.add_timeout(30)
    after = time.monotonic()
    for t in (parent, child, grandchild):
        assert before + 30 <= t.deadline <= after + 30
        assert 29 < t.remaining <= 30
    assert grandchild.deadline == parent.deadline
    # A deadline of its own, earlier, lowers it for its own subtree only.
    soon = time.monotonic() + 10
    child.add_deadline(soon)
    assert child.deadline == grandchild.deadline == soon
    assert parent.deadline > soon
    # A later one changes nothing: the earliest wins.
    grandchild.add_deadline(soon + 60)
    assert grandchild.deadline == soon
    # Removing the source takes its deadline away.
    src.remove()
    assert parent.deadline is None
    assert grandchild.deadline == soon


def test_deadline_is_exact_on_the_monotonic_clock():
    """add_deadline(t) gives back t itself, not t less a nanosecond, and
    the float is the nanoseconds converted as time.monotonic() does: a
    time that monotonic() returns (an integer of nanoseconds) round-trips,
    and so does a deadline read from another token."""
    for i in range(200):
        t = CancelToken("exact")
        ns = time.monotonic_ns() + 100 * 10 ** 9 + i * 123456789
        when = ns / 1e9
        t.add_deadline(when)
        assert t._deadline_ns == ns
        assert t.deadline == when
        assert t._deadline_ns / 1e9 == when
        u = CancelToken("copy")
        u.add_deadline(t.deadline)
        assert u._deadline_ns == t._deadline_ns


def test_deadline_of_combined_tokens():
    a, b, c = CancelToken("a"), CancelToken("b"), CancelToken("c")
    now = time.monotonic()
    a.add_deadline(now + 10)
    b.add_deadline(now + 20)
    assert any_of(a, b).deadline == a.deadline       # the first to fire
    assert a.chain(b).deadline == a.deadline
    assert all_of(a, b).deadline == b.deadline       # the last to fire
    assert all_of(a, c).deadline is None             # c may never fire
    assert any_of(a, c).deadline == a.deadline


def test_remaining_counts_down_and_stops_at_zero():
    t = CancelToken("short")
    t.add_timeout(0.2)
    first = t.remaining
    time.sleep(0.05)
    assert 0 < t.remaining < first <= 0.2
    assert t.wait_blocking(10)
    assert t.reason is Reason.TIMEOUT
    # Triggered: the deadline is the trigger time, and nothing remains.
    assert t.remaining == 0.0 and isinstance(t.remaining, float)
    assert t.deadline == t.trigger_time


def test_a_triggered_token_has_passed_its_deadline():
    t = CancelToken("no deadline")
    child = t.child("child")
    t.trigger()
    assert t.deadline == t.trigger_time == child.deadline
    assert t.remaining == 0.0


# ---- asyncio: a deadline is no implicit timeout ----

async def test_cancellable_wait_does_not_time_out_at_a_known_deadline():
    """A deadline that is only known (one that came with an imported
    token) is not a timeout of cancellable_wait(); add_deadline() turns it
    into a trigger."""
    parent = CancelToken("parent")
    fd, env = parent.export_env()
    env["CANCELFD_DEADLINE"] = "100000000"  # 0.1 s, by hand
    os.environ.update(env)
    imported = CancelToken.from_env("imported")  # takes fd
    assert "CANCELFD" not in os.environ
    assert "CANCELFD_DEADLINE" not in os.environ
    assert imported.remaining <= 0.1
    assert await imported.cancellable_wait(asyncio.sleep(0.3, "done")) \
        == "done"
    assert imported.remaining == 0.0 and not imported.triggered
    # Acted on here: the token triggers at it (it has passed: at once).
    imported.add_deadline(imported.deadline)
    assert imported.triggered and imported.reason is Reason.TIMEOUT
    assert imported.remote is False


async def test_a_timeout_source_cancels_cancellable_wait_with_its_reason():
    t = CancelToken("budget")
    t.add_timeout(0.05)
    with pytest.raises(OperationCancelled):
        await t.cancellable_wait(asyncio.sleep(10))
    assert t.reason is Reason.TIMEOUT and t.remaining == 0.0


# ---- threads ----

def test_reading_the_cause_while_other_threads_trigger():
    """Readers see either a pending token or the whole cause of the one
    trigger that won: never a message without its code, never a change."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for _ in range(30):
            _one_race()
    finally:
        sys.setswitchinterval(old)


def _one_race(ntrig=4, nread=3):
    root = CancelToken("root")
    root.add_timeout(60)
    leaf = root.child("a").child("b")
    start = threading.Barrier(ntrig + nread)
    won = []
    bad = []
    seen = []

    def trigger(i):
        start.wait()
        if root.try_trigger("m%d" % i, code=100 + i):
            won.append(i)

    def read():
        start.wait()
        last = None
        while True:
            done = leaf.triggered
            msg, code, reason = leaf.message, leaf.code, leaf.reason
            origin, remote = leaf.origin, leaf.remote
            deadline = leaf.deadline
            if msg is not None:
                i = int(msg[1:])
                if code != 100 + i or reason is not Reason.PARENT or \
                        origin is not root or remote:
                    bad.append((msg, code, reason, origin, remote))
                if last is not None and last != msg:
                    bad.append(("changed", last, msg))
                last = msg
            elif done:
                bad.append(("triggered without a message", code))
            if done:
                if deadline != leaf.trigger_time:
                    bad.append(("deadline", deadline, leaf.trigger_time))
                seen.append(msg)
                return

    threads = [threading.Thread(target=trigger, args=(i,))
               for i in range(ntrig)]
    threads += [threading.Thread(target=read) for _ in range(nread)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not bad
    assert len(won) == 1
    assert seen == ["m%d" % won[0]] * nread
    assert (leaf.code, leaf.message) == (100 + won[0], "m%d" % won[0])
