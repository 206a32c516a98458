"""Process-tree chores: finding and killing descendants, however they were started."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

from lossdiag import procs

SLEEPER = [sys.executable, "-c", "import time; time.sleep(1000)"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def test_descendants_of_a_process_are_found_and_killed():
    # A child whose own child sleeps: two levels below the middle process.
    middle = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
         "'import time; time.sleep(1000)']); time.sleep(1000)"],
    )
    try:
        deadline = time.monotonic() + 30
        while not procs.descendants(middle.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        (grandchild,) = procs.descendants(middle.pid)
        assert procs.kill_descendants(middle.pid) == 1
        time.sleep(0.2)
        assert not _alive(grandchild)
        assert middle.poll() is None  # only its descendants
    finally:
        procs.kill_tree(middle.pid)
        middle.wait()


def test_kill_marked_finds_processes_by_what_they_inherited():
    token = uuid.uuid4().hex
    env = dict(os.environ, LOSSDIAG_PROCS_TEST=token)
    sleeper = subprocess.Popen(SLEEPER, env=env, start_new_session=True)  # not in our group, not our tree below
    try:
        assert procs.kill_marked("LOSSDIAG_PROCS_TEST", token) == 1
        assert sleeper.wait(timeout=10) == -9
    finally:
        sleeper.kill()


def test_the_guardian_kills_what_a_process_started_after_it_is_killed():
    token = uuid.uuid4().hex
    script = (
        "import os, subprocess, sys, time\n"
        "from lossdiag import procs\n"
        "procs.start_guardian('LOSSDIAG_PROCS_TEST', os.environ['LOSSDIAG_PROCS_TEST'])\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)'], start_new_session=True)\n"
        "print('ready', flush=True)\n"
        "time.sleep(1000)\n"
    )
    env = dict(os.environ, LOSSDIAG_PROCS_TEST=token,  # in its initial environment, as the worker's token is
               PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    watched = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True)
    assert watched.stdout is not None and watched.stdout.readline().strip() == "ready"
    marked = _marked(token)
    assert len(marked) == 3  # the process, its guardian, its sleeper
    watched.kill()  # SIGKILL: nothing of its own can run
    watched.wait()
    deadline = time.monotonic() + 10
    while _marked(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _marked(token) == []


def _marked(token: str) -> list[int]:
    needle = f"LOSSDIAG_PROCS_TEST={token}".encode()
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as fh:
                    if needle in fh.read().split(b"\0") and _alive(int(name)):
                        out.append(int(name))
            except OSError:
                pass
    return out


def test_thread_waits_and_rss_are_read_for_this_process():
    import threading

    started, stop = threading.Event(), threading.Event()

    def idle() -> None:
        started.set()
        stop.wait()

    thread = threading.Thread(target=idle)
    thread.start()
    started.wait()
    try:
        waits = procs.thread_waits(os.getpid())
        assert os.getpid() in waits and thread.native_id in waits  # the main thread and the new one
        assert all(wait >= 0.0 for wait in waits.values())
    finally:
        stop.set()
        thread.join()
    assert procs.rss_kb(os.getpid()) > 0
    assert procs.thread_waits(2**22 + 7) == {}  # no such process


def test_high_fd_is_far_from_the_low_numbers_and_not_inherited():
    import fcntl

    fd = procs.high_fd(1)
    try:
        assert fd >= 64
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    finally:
        os.close(fd)
