#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""python-bench: the Python package cancelfd measured against asyncio's own
primitives and against a pure-Python token, in the same run.

    python-bench.py [--quick] [--rounds N] [--json FILE] [--raw]

Rows (each the median over rounds of a per-round ratio of medians, as
cancelfd-bench does; the host has slow phases, per-round ratios do not
move with them):

  triggered   ``token.triggered`` on a chain 10 deep (absolute: <= 100 ns),
              beside a pure-Python token whose ``triggered`` walks its
              chain
  wake        ``await token.wait()`` woken by ``token.trigger()`` from
              another thread, beside a bare ``loop.add_reader`` on an
              eventfd written from another thread (<= 1.1), and beside the
              pure-Python token (its trigger passed with
              ``call_soon_threadsafe``: its Event is not thread-safe)
  cwait       ``await token.cancellable_wait(fut)`` on a finished future,
              beside ``await asyncio.wait_for(fut, None)`` (<= 3) and the
              pure-Python ``cancellable_wait`` (a helper task and
              ``asyncio.wait(FIRST_COMPLETED)``)

It needs nothing beyond the standard library and cancelfd (PYTHONPATH).
--raw prints one line per row and round for cancelfd-bench:
``R <row> <cancelfd ns> <baseline ns>``.
"""
import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import threading
import time

import cancelfd

perf = time.perf_counter_ns


# ---- the pure-Python baseline, written for Python 3.11: a token is an
# asyncio.Event plus the list of tokens it is chained to; `triggered` and
# `triggered_token` walk that list; wait() races one Event.wait() per token
# of the chain in a helper task; cancellable_wait() wraps everything in
# tasks and calls asyncio.wait(FIRST_COMPLETED). ----

class PyOperationCancelled(Exception):
    pass


class PyCancelToken:
    def __init__(self, name):
        self.name = name
        self._chain = []
        self._triggered = asyncio.Event()

    def chain(self, token):
        chain = PyCancelToken(":".join([self.name, token.name]))
        chain._chain.extend([self, token])
        return chain

    def trigger(self):
        self._triggered.set()

    @property
    def triggered_token(self):
        if self._triggered.is_set():
            return self
        for token in self._chain:
            if token.triggered:
                return token.triggered_token
        return None

    @property
    def triggered(self):
        if self._triggered.is_set():
            return True
        return any(token.triggered for token in self._chain)

    async def wait(self):
        if self.triggered_token is not None:
            return
        futures = [asyncio.ensure_future(self._triggered.wait())]
        for token in self._chain:
            futures.append(asyncio.ensure_future(token.wait()))

        def cancel_not_done(fut):
            for future in futures:
                if not future.done():
                    future.cancel()

        async def _wait_for_first(futures):
            for future in asyncio.as_completed(futures):
                await future
                return

        fut = asyncio.ensure_future(_wait_for_first(futures))
        fut.add_done_callback(cancel_not_done)
        await fut

    async def cancellable_wait(self, *awaitables, timeout=None):
        futures = [asyncio.ensure_future(a)
                   for a in awaitables + (self.wait(),)]
        try:
            done, pending = await asyncio.wait(
                futures, timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        for task in pending:
            task.cancel()
        if not done:
            raise TimeoutError()
        if self.triggered_token is not None:
            for task in done:
                task.exception()
            raise PyOperationCancelled(
                "Cancellation requested by {} token".format(
                    self.triggered_token))
        return done.pop().result()


# ---- the measurements ----

def chain10(cls):
    t = cls("t0")
    for i in range(1, 11):
        t = cls("t%d" % i).chain(t)
    return t


def time_triggered(tok, k):
    t0 = perf()
    for _ in range(k):
        tok.triggered
    return (perf() - t0) / k


class Waker:
    """A thread that, when told, waits a moment (so that the loop is
    asleep in epoll_wait), stamps the time and fires."""

    def __init__(self):
        self.go = threading.Event()
        self.fire = None
        self.t0 = 0
        self.stop = False
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        while True:
            self.go.wait()
            self.go.clear()
            if self.stop:
                return
            time.sleep(0.0002)
            self.t0 = perf()
            self.fire()

    def arm(self, fire):
        self.fire = fire
        self.go.set()

    def close(self):
        self.stop = True
        self.go.set()
        self.th.join()


async def wake_cfd(w):
    tok = cancelfd.CancelToken("wake")
    tok.fileno()  # the eventfd, made beforehand
    w.arm(tok.trigger)
    await tok.wait()
    return perf() - w.t0


async def wake_raw(w):
    loop = asyncio.get_running_loop()
    efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    try:
        w.arm(lambda: os.eventfd_write(efd, 1))
        fut = loop.create_future()

        def ready():
            loop.remove_reader(efd)
            fut.set_result(None)

        loop.add_reader(efd, ready)
        await fut
        return perf() - w.t0
    finally:
        os.close(efd)


async def wake_py(w):
    loop = asyncio.get_running_loop()
    tok = PyCancelToken("wake")
    w.arm(lambda: loop.call_soon_threadsafe(tok.trigger))
    await tok.wait()
    return perf() - w.t0


async def cwait_loop(tok, fut, k):
    t0 = perf()
    for _ in range(k):
        await tok.cancellable_wait(fut)
    return (perf() - t0) / k


async def waitfor_loop(fut, k):
    t0 = perf()
    for _ in range(k):
        await asyncio.wait_for(fut, None)
    return (perf() - t0) / k


ROWS = [
    # id, name, baseline, target
    ("triggered", "token.triggered, chain 10 deep", None, ("<=", 100)),
    ("triggered-py", "  same vs a pure-Python token",
     "pure-Python token (walks its chain)", None),
    ("wake", "await token.wait() <- trigger() in a thread",
     "add_reader(eventfd) <- write in a thread", ("<=", 1.1)),
    ("wake-py", "  same vs a pure-Python token",
     "pure-Python wait() <- call_soon_threadsafe", None),
    ("cwait", "cancellable_wait(finished future)",
     "await asyncio.wait_for(fut, None)", ("<=", 3)),
    ("cwait-py", "  same vs a pure-Python token",
     "pure-Python cancellable_wait", None),
]


def measure(rounds, quick, raw):
    res = {r[0]: ([], []) for r in ROWS}   # per-round medians: cfd, base
    n_trig = 10 if quick else 40
    k_trig = 2000 if quick else 20000
    k_trigpy = 20 if quick else 200
    n_wake = 10 if quick else 300
    n_cw = 5 if quick else 40
    k_cw = 200 if quick else 2000
    k_cwpy = 10 if quick else 50

    c10, p10 = chain10(cancelfd.CancelToken), chain10(PyCancelToken)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    w = Waker()
    try:
        for rnd in range(rounds):
            # triggered
            a, b = [], []
            for _ in range(n_trig):
                a.append(time_triggered(c10, k_trig))
                b.append(time_triggered(p10, k_trigpy))
            put(res, raw, rnd, "triggered", a, None)
            put(res, raw, rnd, "triggered-py", a, b)

            # wake: interleaved sample by sample
            c, r, p = [], [], []
            for _ in range(n_wake):
                c.append(loop.run_until_complete(wake_cfd(w)))
                r.append(loop.run_until_complete(wake_raw(w)))
                p.append(loop.run_until_complete(wake_py(w)))
            put(res, raw, rnd, "wake", c, r)
            put(res, raw, rnd, "wake-py", c, p)

            # cancellable_wait on a finished future
            fut = loop.create_future()
            fut.set_result(1)
            tok = cancelfd.CancelToken("cw")
            ptok = PyCancelToken("cw")
            c, f, p = [], [], []
            for _ in range(n_cw):
                c.append(loop.run_until_complete(cwait_loop(tok, fut, k_cw)))
                f.append(loop.run_until_complete(waitfor_loop(fut, k_cw)))
                p.append(loop.run_until_complete(
                    cwait_loop(ptok, fut, k_cwpy)))
            put(res, raw, rnd, "cwait", c, f)
            put(res, raw, rnd, "cwait-py", c, p)
    finally:
        w.close()
        loop.close()
    return res


def put(res, raw, rnd, row, cfd, base):
    c = statistics.median(cfd)
    b = statistics.median(base) if base else None
    res[row][0].append(c)
    if b is not None:
        res[row][1].append(b)
    if raw:
        print("R %s %.3f %s" % (row, c, "%.3f" % b if b is not None else "-"),
              flush=True)


def fmt(ns):
    if ns is None:
        return "-"
    if ns >= 1e6:
        return "%.3f ms" % (ns / 1e6)
    if ns >= 1e4:
        return "%.1f us" % (ns / 1e3)
    if ns >= 1e3:
        return "%.2f us" % (ns / 1e3)
    return "%.1f ns" % ns


def summarize(res):
    out = []
    for rid, name, baseline, target in ROWS:
        cfd, base = res[rid]
        row = {"id": rid, "name": name.strip(), "unit": "ns",
               "cancelfd": {"median": statistics.median(cfd),
                            "rounds": cfd},
               "baseline": None, "ratio": None, "target": None,
               "status": "info"}
        if base:
            ratios = [c / b for c, b in zip(cfd, base)]
            row["baseline"] = {"name": baseline,
                               "median": statistics.median(base),
                               "rounds": base}
            row["ratio"] = statistics.median(ratios)
        if target:
            op, val = target
            x = row["ratio"] if base else row["cancelfd"]["median"]
            row["target"] = {"op": op, "value": val}
            row["status"] = "met" if x <= val else "MISSED"
        out.append(row)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="every row briefly: proves the script works")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--raw", action="store_true",
                    help="per-round lines for cancelfd-bench")
    a = ap.parse_args()
    rounds = a.rounds or (2 if a.quick else 7)
    # The pure-Python cancellable_wait leaves its helper tasks pending, as
    # the algorithm does: asyncio would log each one.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    t0 = time.monotonic()
    rows = summarize(measure(rounds, a.quick, a.raw))
    if a.raw:
        return 0
    print("python %s (%s), %d rounds, %.1f s" % (
        platform.python_version(), sys.executable, rounds,
        time.monotonic() - t0))
    print("%-46s %10s  %-42s %10s %7s %6s  %s" % (
        "row", "cancelfd", "baseline", "median", "ratio", "target",
        "status"))
    for r in rows:
        b = r["baseline"]
        t = r["target"]
        print("%-46s %10s  %-42s %10s %7s %6s  %s" % (
            r["name"] if not r["id"].endswith("-py") else "  " + r["name"],
            fmt(r["cancelfd"]["median"]), b["name"] if b else "-",
            fmt(b["median"]) if b else "-",
            "%.3f" % r["ratio"] if r["ratio"] is not None else "-",
            "%s %g" % (t["op"], t["value"]) if t else "-", r["status"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"python": platform.python_version(),
                       "rounds": rounds, "rows": rows}, f, indent=1)
        print("json: %s" % a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
