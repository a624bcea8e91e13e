# SPDX-License-Identifier: MIT
"""Across processes: multiprocessing (spawn, forkserver), CANCELFD with
cancelfd-run and a C program, both directions."""
import asyncio
import multiprocessing
import os
import subprocess
import sys
import textwrap

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
