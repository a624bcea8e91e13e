# SPDX-License-Identifier: MIT
"""Across processes: multiprocessing (spawn, forkserver), CANCELFD with
cancelfd-run and a C program, both directions."""
import asyncio
import gc
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

import pytest

from cancelfd import CancelToken, Reason

PEER = os.environ.get("CANCELFD_PEER")
RUN = os.environ.get("CANCELFD_RUN")


def child_waits(token, q):
    """In the child process: wait for the parent's token."""
    async def main():
        q.put(("started", token.name, token.triggered))
        await asyncio.wait_for(token.wait(), 30)
        q.put(("cancelled", str(token.reason)))
    asyncio.run(main())


def child_from_queue(q_in, q_out):
    token = q_in.get()
    q_out.put(("got", token.name))
    token.wait_blocking(30)
    q_out.put(("cancelled", token.triggered))


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_token_pickles_for_multiprocessing(method):
    ctx = multiprocessing.get_context(method)
    token = CancelToken("job")
    q = ctx.Queue()
    p = ctx.Process(target=child_waits, args=(token, q))
    p.start()
    try:
        assert q.get(timeout=60) == ("started", "job", False)
        token.trigger()
        assert q.get(timeout=30) == ("cancelled", "manual")
        p.join(30)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_token_sent_through_a_queue_to_a_running_process(method):
    """Through a Queue the descriptor goes by multiprocessing's resource
    sharer, so a worker started by fork gets a token of its own too."""
    ctx = multiprocessing.get_context(method)
    q_in, q_out = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=child_from_queue, args=(q_in, q_out))
    p.start()
    try:
        token = CancelToken("queued").child("sent")
        q_in.put(token)
        assert q_out.get(timeout=60) == ("got", "sent")
        token.trigger()
        assert q_out.get(timeout=30) == ("cancelled", True)
        p.join(30)
    finally:
        if p.is_alive():
            p.kill()


def test_child_process_ending_cancels_nothing_but_parent_ending_does():
    """The import side is triggered when the exporting token is freed
    untriggered too: the child is not left waiting for ever."""
    script = textwrap.dedent("""
        import cancelfd, sys
        t = cancelfd.CancelToken.import_fd(int(sys.argv[1]), "imported")
        print(t.wait_blocking(30), t.reason)
    """)
    token = CancelToken("short-lived")
    fd = token.export_fd()
    proc = subprocess.Popen([sys.executable, "-c", script, str(fd)],
                            pass_fds=[fd], stdout=subprocess.PIPE, text=True)
    os.close(fd)
    del token  # freed untriggered: the export hangs up, "gone"
    out, _ = proc.communicate(timeout=60)
    assert out.split() == ["True", "gone"]


FROM_ENV = textwrap.dedent("""
    import asyncio, cancelfd, os
    async def main():
        token = cancelfd.CancelToken.from_env("from-c")
        assert "CANCELFD" not in os.environ
        await asyncio.wait_for(token.wait(), 30)
        print("python cancelled", token.reason)
    asyncio.run(main())
""")


@pytest.mark.skipif(not PEER, reason="CANCELFD_PEER not set")
def test_a_c_program_cancels_a_python_token():
    out = subprocess.run([PEER, "run", "50", "stop", sys.executable, "-c",
                          FROM_ENV], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    # the C program's cause crossed: a manual trigger
    assert out.stdout.split() == ["python", "cancelled", "manual"]


@pytest.mark.skipif(not RUN, reason="CANCELFD_RUN not set")
def test_cancelfd_run_cancels_a_python_token():
    # -s CONT: the runner's own signal is harmless; the token does it.
    out = subprocess.run([RUN, "-s", "CONT", "0.1", sys.executable, "-c",
                          FROM_ENV], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 124, out.stderr
    # the runner's cause crossed: its timeout
    assert out.stdout.split() == ["python", "cancelled", "timeout"]


def test_from_env_without_a_token_leaves_the_environment_as_it_is():
    """No CANCELFD: the library removes nothing, and os.environ keeps
    what the C environment keeps."""
    from cancelfd._token import _c
    os.environ.pop("CANCELFD", None)
    os.environ["CANCELFD_DEADLINE"] = "5"
    try:
        assert CancelToken.from_env("none") is None
        assert os.environ["CANCELFD_DEADLINE"] == "5"
        assert _c._getenv("CANCELFD_DEADLINE") == "5"
    finally:
        del os.environ["CANCELFD_DEADLINE"]
    assert _c._getenv("CANCELFD_DEADLINE") is None


def test_from_env_without_a_token():
    env = dict(os.environ)
    env.pop("CANCELFD", None)
    out = subprocess.run([sys.executable, "-c",
                          "import cancelfd; print(cancelfd.CancelToken"
                          ".from_env('x'))"], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "None"


@pytest.mark.skipif(not PEER, reason="CANCELFD_PEER not set")
async def test_a_python_token_cancels_a_c_process():
    token = CancelToken("python-parent")
    fd = token.export_fd()
    proc = await asyncio.create_subprocess_exec(
        PEER, "wait", "30000", pass_fds=[fd],
        env=dict(os.environ, CANCELFD=str(fd)),
        stdout=asyncio.subprocess.PIPE)
    os.close(fd)
    await asyncio.sleep(0.05)
    token.trigger("stop")
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert out.decode().split() == ["cancelled", "reason=manual"]


@pytest.mark.skipif(not PEER, reason="CANCELFD_PEER not set")
def test_one_tree_across_python_and_c():
    """C parent -> Python (a child token of the imported one) -> C child:
    the C parent's trigger reaches the C grandchild through Python."""
    script = textwrap.dedent("""
        import cancelfd, os, subprocess, sys
        up = cancelfd.CancelToken.from_env("from-c")
        mine = up.child("python-work")
        fd = mine.export_fd()
        r = subprocess.run([sys.argv[1], "wait", "30000"], pass_fds=[fd],
                           env=dict(os.environ, CANCELFD=str(fd)),
                           capture_output=True, text=True)
        print(r.stdout.strip(), "python:", mine.reason, mine.triggered)
    """)
    out = subprocess.run([PEER, "run", "100", "stop", sys.executable, "-c",
                          script, PEER], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["cancelled", "reason=manual", "python:",
                                  "parent", "True"]


# ---- the cause and the deadline across processes ----

def _comm():
    with open("/proc/self/comm") as f:
        return f.read().strip()


def child_reports(token, q):
    """In the child: what it knows before the trigger, then the cause."""
    q.put(("started", token.triggered, token.deadline))
    token.wait_blocking(30)
    q.put(("cancelled", str(token.reason), token.message, token.code,
           token.remote, token.origin_pid, token.origin_path,
           token.child("below").code))


def child_reports_from_queue(q_in, q_out):
    child_reports(q_in.get(), q_out)


def _check_remote_cause(q, parent, name):
    got = q.get(timeout=30)
    assert got == ("cancelled", "manual", "stop", 75, True, os.getpid(),
                   "%s[%d]/%s" % (_comm(), os.getpid(), name), 75), got


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_pickled_token_carries_its_deadline_and_its_cause(method):
    ctx = multiprocessing.get_context(method)
    root = CancelToken("job")
    root.add_timeout(60)
    token = root.child("step")
    q = ctx.Queue()
    p = ctx.Process(target=child_reports, args=(token, q))
    p.start()
    try:
        started, triggered, deadline = q.get(timeout=60)
        assert not triggered
        # The same instant on this host's CLOCK_MONOTONIC, give or take
        # the drift between it and CLOCK_REALTIME while it crossed.
        assert deadline == pytest.approx(token.deadline, abs=0.05)
        root.trigger("stop", code=75)
        _check_remote_cause(q, root, "job")
        p.join(30)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_token_sent_through_a_queue_carries_its_deadline(method):
    ctx = multiprocessing.get_context(method)
    q_in, q_out = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=child_reports_from_queue, args=(q_in, q_out))
    p.start()
    try:
        token = CancelToken("queued")
        token.add_deadline(time.monotonic() + 45)
        q_in.put(token)
        started, triggered, deadline = q_out.get(timeout=60)
        assert deadline == pytest.approx(token.deadline, abs=0.05)
        token.trigger("stop", code=75)
        _check_remote_cause(q_out, token, "queued")
        p.join(30)
    finally:
        if p.is_alive():
            p.kill()


def _sockets():
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink("/proc/self/fd/" + fd).startswith("socket:")
        except OSError:
            pass
    return n


def test_a_pickle_with_a_deadline_leaves_no_socket_behind():
    ctx = multiprocessing.get_context("spawn")
    token = CancelToken("job")
    token.add_timeout(60)
    q = ctx.Queue()
    before = _sockets()
    p = ctx.Process(target=child_reports, args=(token, q))
    p.start()
    assert q.get(timeout=60)[0] == "started"
    token.trigger("stop", code=75)
    q.get(timeout=30)
    p.join(30)
    del p
    gc.collect()
    assert _sockets() == before


def test_without_a_deadline_a_pickle_stays_a_pipe():
    ctx = multiprocessing.get_context("spawn")
    token = CancelToken("job")
    q = ctx.Queue()
    p = ctx.Process(target=child_reports, args=(token, q))
    p.start()
    try:
        assert q.get(timeout=60) == ("started", False, None)
        token.trigger("stop", code=75)
        _check_remote_cause(q, token, "job")
        p.join(30)
    finally:
        if p.is_alive():
            p.kill()


def test_a_plain_fd_from_a_process_that_did_not_fork_carries_no_deadline():
    """import_fd() of an export: the cause crosses, the deadline only
    when the exporter forked this process (not across exec)."""
    script = textwrap.dedent("""
        import cancelfd, sys
        t = cancelfd.CancelToken.import_fd(int(sys.argv[1]), "imported")
        print(t.deadline, flush=True)
        t.wait_blocking(30)
        print(t.reason, t.code, t.remote)
    """)
    token = CancelToken("with deadline")
    token.add_timeout(60)
    fd = token.export_fd()
    proc = subprocess.Popen([sys.executable, "-c", script, str(fd)],
                            pass_fds=[fd], stdout=subprocess.PIPE, text=True)
    os.close(fd)
    assert proc.stdout.readline().strip() == "None"
    token.trigger(code=9)
    out, _ = proc.communicate(timeout=60)
    assert out.split() == ["manual", "9", "True"]


def test_gone_when_the_parent_frees_the_token():
    script = textwrap.dedent("""
        import cancelfd, sys
        t = cancelfd.CancelToken.import_fd(int(sys.argv[1]), "imported")
        print("ready", flush=True)
        t.wait_blocking(30)
        print(t.reason, t.remote, t.origin_pid, t.origin_path, t.code,
              t.message)
    """)
    token = CancelToken("short-lived")
    fd = token.export_fd()
    proc = subprocess.Popen([sys.executable, "-c", script, str(fd)],
                            pass_fds=[fd], stdout=subprocess.PIPE, text=True)
    os.close(fd)
    assert proc.stdout.readline() == "ready\n"
    del token
    gc.collect()
    out, _ = proc.communicate(timeout=60)
    assert out.split() == ["gone", "True", str(os.getpid()),
                           "%s[%d]/short-lived" % (_comm(), os.getpid()),
                           "0", "None"]


CAUSE_FROM_ENV = textwrap.dedent("""
    import cancelfd, os
    token = cancelfd.CancelToken.from_env("from-c")
    assert not {"CANCELFD", "CANCELFD_DEADLINE"} & set(os.environ)
    below = token.child("below")
    print("remaining", token.remaining, flush=True)
    below.wait_blocking(30)
    print("|".join(map(str, [token.reason, token.message, token.code,
                             token.remote, token.origin_pid,
                             token.origin_path, below.reason, below.code,
                             below.remote, below.origin is token])))
""")


@pytest.mark.skipif(not PEER, reason="CANCELFD_PEER not set")
def test_a_c_programs_cause_reaches_python():
    out = subprocess.run([PEER, "run", "-c", "7", "50", "stop",
                          sys.executable, "-c", CAUSE_FROM_ENV],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    cause = lines[1].split("|")
    pid = cause[4]
    assert cause == ["manual", "stop", "7", "True", pid,
                     "cfd-peer[%s]/c-parent" % pid, "parent", "7", "True",
                     "True"]


@pytest.mark.skipif(not PEER, reason="CANCELFD_PEER not set")
def test_a_c_programs_token_gone_reaches_python():
    out = subprocess.run([PEER, "run", "-g", "50", "-", sys.executable,
                          "-c", CAUSE_FROM_ENV],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cause = out.stdout.splitlines()[1].split("|")
    pid = cause[4]
    assert cause == ["gone", "None", "0", "True", pid,
                     "cfd-peer[%s]/c-parent" % pid, "parent", "0", "True",
                     "True"]


DEADLINE_FROM_ENV = textwrap.dedent("""
    import cancelfd, os, time
    token = cancelfd.CancelToken.from_env("from-parent")
    assert not {"CANCELFD", "CANCELFD_DEADLINE"} & set(os.environ)
    print(token.triggered, token.deadline, token.remaining,
          time.monotonic())
""")


def _deadline_out(stdout):
    triggered, deadline, remaining, now = stdout.split()
    assert triggered == "False"
    return float(deadline), float(remaining), float(now)


@pytest.mark.skipif(not PEER, reason="CANCELFD_PEER not set")
def test_a_c_programs_deadline_reaches_python():
    # -1: the C parent never triggers; its token has a 30 s timeout.
    out = subprocess.run([PEER, "run", "-d", "30000", "--", "-1", "-",
                          sys.executable, "-c", DEADLINE_FROM_ENV],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    deadline, remaining, now = _deadline_out(out.stdout)
    assert 20 < remaining <= 30
    assert deadline == pytest.approx(now + remaining, abs=0.01)


def _runner_exports_its_deadline():
    if not RUN:
        return False
    out = subprocess.run([RUN, "30", "env"], capture_output=True, text=True,
                         timeout=60)
    return "CANCELFD_DEADLINE=" in out.stdout


@pytest.mark.skipif(not _runner_exports_its_deadline(),
                    reason="cancelfd-run does not export its deadline "
                           "(CANCELFD_DEADLINE) yet")
def test_cancelfd_runs_deadline_reaches_python():
    out = subprocess.run([RUN, "30", sys.executable, "-c",
                          DEADLINE_FROM_ENV], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    deadline, remaining, now = _deadline_out(out.stdout)
    assert 20 < remaining <= 30


def test_export_env_passes_the_deadline_to_python():
    token = CancelToken("parent")
    token.add_timeout(40)
    fd, env = token.export_env()
    assert env["CANCELFD"] == str(fd)
    assert "CANCELFD" not in os.environ
    try:
        out = subprocess.run([sys.executable, "-c", DEADLINE_FROM_ENV],
                             env=env, pass_fds=[fd], capture_output=True,
                             text=True, timeout=60)
    finally:
        os.close(fd)
    assert out.returncode == 0, out.stderr
    deadline, remaining, now = _deadline_out(out.stdout)
    assert deadline == pytest.approx(token.deadline, abs=0.05)


def test_export_env_without_a_deadline_removes_a_stale_one():
    token = CancelToken("parent")
    fd, env = token.export_env({"PATH": os.environ.get("PATH", ""),
                                "CANCELFD_DEADLINE": "5"})
    os.close(fd)
    assert "CANCELFD_DEADLINE" not in env
    assert env["PATH"] == os.environ.get("PATH", "")


@pytest.mark.skipif(not PEER, reason="CANCELFD_PEER not set")
def test_python_cause_and_deadline_reach_a_c_program():
    root = CancelToken("py-root")
    root.add_timeout(50)
    token = root.child("kid")
    fd, env = token.export_env()
    proc = subprocess.Popen([PEER, "cause", "30000"], env=env, pass_fds=[fd],
                            stdout=subprocess.PIPE, text=True)
    os.close(fd)
    first = proc.stdout.readline().split("=")
    assert first[0] == "remaining"
    assert 40000 < int(first[1]) <= 50000
    root.trigger("stop now", code=-3)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out.strip() == (
        "reason=manual code=-3 remote=1 pid=%d path=%s[%d]/py-root "
        "message=stop now" % (os.getpid(), _comm(), os.getpid()))


def test_python_to_python_cause_through_from_env():
    script = textwrap.dedent("""
        import cancelfd
        t = cancelfd.CancelToken.from_env("from-python")
        print("ready", flush=True)
        t.wait_blocking(30)
        print(t.reason, t.message, t.code, t.remote, t.origin_pid,
              t.origin_path, t.origin is t)
    """)
    root = CancelToken("py-root")
    token = root.child("kid").child("grandkid")
    fd, env = token.export_env()
    proc = subprocess.Popen([sys.executable, "-c", script], env=env,
                            pass_fds=[fd], stdout=subprocess.PIPE, text=True)
    os.close(fd)
    assert proc.stdout.readline() == "ready\n"
    root.trigger("bye", code=1)
    out, _ = proc.communicate(timeout=60)
    # The path follows first parents from the root; the origin here is the
    # imported token itself.
    assert out.split() == ["manual", "bye", "1", "True", str(os.getpid()),
                           "%s[%d]/py-root" % (_comm(), os.getpid()),
                           "True"]
