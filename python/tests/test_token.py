# SPDX-License-Identifier: MIT
"""The token: state, cause, graph, loops, errors."""
import asyncio
import time
import types

import pytest

import cancelfd
from cancelfd import (CancelToken, EventLoopMismatch, OperationCancelled,
                      Reason, all_of, any_of)


def test_new_token_is_pending():
    t = CancelToken("job")
    assert t.name == "job"
    assert str(t) == "job"
    assert repr(t) == "<CancelToken: job>"
    assert t.triggered is False
    assert t.triggered_token is None
    assert t.reason is Reason.NONE
    assert t.message is None
    assert t.trigger_time is None
    assert t.loop is None
    t.raise_if_triggered()


def test_trigger_records_the_cause():
    t = CancelToken("job")
    before = time.monotonic()
    assert t.trigger("shutting down") is None
    assert t.triggered is True
    assert t.reason is Reason.MANUAL
    assert str(t.reason) == "manual"
    assert t.message == "shutting down"
    assert t.triggered_token is t and t.origin is t
    # The coarse clock: up to a tick earlier.
    assert before - 0.02 <= t.trigger_time <= time.monotonic()
    assert t.signal == 0


def test_first_trigger_wins():
    t = CancelToken("job")
    t.trigger("first")
    t.trigger("second")
    assert t.message == "first"


def test_raise_if_triggered():
    a = CancelToken("a")
    b = CancelToken("b").chain(a)
    a.trigger()
    with pytest.raises(OperationCancelled) as e:
        b.raise_if_triggered()
    assert str(e.value) == "Cancellation requested by a token"
    assert e.value.token is a


def test_chain():
    a = CancelToken("token-a")
    b = CancelToken("token-b").chain(a)
    assert b.name == "token-b:token-a"
    b.trigger()
    assert b.triggered and not a.triggered
    c = CancelToken("c")
    d = CancelToken("d").chain(c)
    c.trigger("why")
    assert d.triggered and d.triggered_token is c
    assert d.reason is Reason.PARENT and d.origin.reason is Reason.MANUAL
    assert d.message == "why"


def test_chain_of_chains_finds_the_origin():
    leaf = CancelToken("leaf")
    t = leaf
    for i in range(10):
        t = CancelToken("t%d" % i).chain(t)
    assert not t.triggered
    leaf.trigger()
    assert t.triggered and t.triggered_token is leaf


def test_origin_outlives_its_python_object():
    parent = CancelToken("parent")
    child = parent.child("child")
    parent.trigger()
    del parent
    assert child.triggered_token.name == "parent"


def test_child():
    p = CancelToken("p")
    c = p.child("c")
    assert c.name == "c"
    c.trigger()
    assert not p.triggered
    c2 = p.child("c2")
    p.trigger()
    assert c2.triggered and c2.reason is Reason.PARENT
    # Born triggered.
    assert p.child("late").triggered


def test_any_of_and_all_of():
    a, b, c = CancelToken("a"), CancelToken("b"), CancelToken("c")
    anyt = any_of(a, b, c)
    allt = all_of(a, b, c, name="every")
    assert anyt.name == "a|b|c" and allt.name == "every"
    b.trigger()
    assert anyt.triggered and anyt.triggered_token is b
    assert not allt.triggered
    a.trigger()
    c.trigger("last")
    assert allt.triggered and allt.reason is Reason.ALL_OF
    assert allt.triggered_token is c and allt.message == "last"
    with pytest.raises(ValueError):
        any_of()


def test_reason_mirrors_the_library():
    assert [int(r) for r in Reason] == list(range(9))
    assert [str(r) for r in Reason] == [
        "none", "manual", "timeout", "signal", "fd", "condition", "parent",
        "all-of", "gone"]


def test_loop_binding():
    loop1 = asyncio.new_event_loop()
    loop2 = asyncio.new_event_loop()
    try:
        a = CancelToken("a", loop=loop1)
        assert a.loop is loop1
        with pytest.raises(EventLoopMismatch):
            a.chain(CancelToken("b", loop=loop2))
        with pytest.raises(EventLoopMismatch):
            a.chain(CancelToken("b"))
        assert a.chain(CancelToken("b", loop=loop1)).loop is loop1
        assert a.child("c").loop is loop1
        with pytest.raises(EventLoopMismatch):
            any_of(a, CancelToken("x"))
        with pytest.raises(EventLoopMismatch):
            loop2.run_until_complete(a.wait())
        a.trigger()
        loop1.run_until_complete(a.wait())
    finally:
        loop1.close()
        loop2.close()


def test_fileno_is_readable_once_triggered():
    import select
    t = CancelToken("t")
    fd = t.fileno()
    assert select.select([fd], [], [], 0)[0] == []
    t.trigger()
    assert select.select([fd], [], [], 0)[0] == [fd]
    assert t.fileno() == fd


def test_wait_blocking():
    t = CancelToken("t")
    assert t.wait_blocking(0.01) is False
    t.trigger()
    assert t.wait_blocking() is True


def test_bad_arguments():
    with pytest.raises(TypeError):
        CancelToken(3)
    with pytest.raises(ValueError):
        CancelToken("a\0b")
    with pytest.raises(TypeError):
        CancelToken("a").chain("b")
    with pytest.raises(TypeError):
        CancelToken("a").trigger(5)


def test_plain_pickle_is_refused():
    import pickle
    with pytest.raises(TypeError, match="multiprocessing"):
        pickle.dumps(CancelToken("t"))


def test_public_names_have_docstrings():
    for name in cancelfd.__all__:
        obj = getattr(cancelfd, name)
        assert obj.__doc__, name
        if isinstance(obj, type):
            for attr, val in vars(obj).items():
                if attr.startswith("_") or not callable(
                        getattr(val, "__get__", None)) or isinstance(
                            val, types.MemberDescriptorType):
                    continue  # slots: documented in the class docstring
                assert getattr(obj, attr).__doc__ or isinstance(
                    val, (int, str)), (name, attr)
    for attr in ("triggered", "name", "message", "signal", "fileno",
                 "wait", "cancellable_wait", "settle", "trigger"):
        assert getattr(CancelToken, attr).__doc__, attr
