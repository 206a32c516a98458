"""Process-tree chores on Linux: die with the parent, adopt orphans, find and kill every descendant.

Elsewhere these are no-ops or best effort: the worker still runs, it only cleans up less.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from typing import Any

# What the parent puts in a worker's environment (here, not in the worker module, which imports numpy and
# more: the parent must not pay for that before it starts the worker).
CHANNEL_ENV = "LOSSDIAG_CHANNEL"  # "request_fd,event_fd" as the parent passed them
PARENT_ENV = "LOSSDIAG_PARENT"  # the parent's pid: the worker must not outlive it
GUARD_ENV = "LOSSDIAG_WORKER_TOKEN"  # inherited by everything the worker starts, so it can all be found
TMPDIR_ENV = "LOSSDIAG_WORKER_TMPDIR"  # the worker's private TMPDIR, removed when the worker ends

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_libc: dict[str, Any] = {}


def _prctl(option: int, value: int) -> bool:
    if "prctl" not in _libc:
        try:
            _libc["prctl"] = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _libc["prctl"] = None
    prctl = _libc["prctl"]
    if prctl is None:
        return False
    return bool(prctl(option, ctypes.c_ulong(value), 0, 0, 0) == 0)


def die_with_parent(parent: int | None = None, sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process when its parent exits; exit now if it already has."""
    _prctl(_PR_SET_PDEATHSIG, sig)
    if parent is not None and os.getppid() != parent:  # the parent died before the request took hold
        os._exit(1)


def become_subreaper() -> bool:
    """Orphaned descendants (a double-forked daemon) are re-parented to this process, not to init."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _children_from_stat(pid: int) -> set[int]:
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and int(fields[1]) == pid:
            found.add(int(name))
    return found


def children(pid: int) -> set[int]:
    """The direct children of `pid` (every thread's), from /proc."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return set()
    found: set[int] = set()
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                found.update(int(p) for p in fh.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended meanwhile
            return _children_from_stat(pid)  # a kernel without /proc/*/children
        except OSError:
            continue
    return found


def descendants(pid: int, spare: frozenset[int] = frozenset()) -> set[int]:
    """Every process below `pid`, except those in `spare` and whatever is below them."""
    out: set[int] = set()
    frontier = [pid]
    while frontier:
        new = children(frontier.pop()) - out - spare
        out |= new
        frontier.extend(new)
    return out


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone, or no longer ours
        os.kill(pid, sig)


def kill_descendants(pid: int, keep: frozenset[int] = frozenset()) -> int:
    """SIGKILL every descendant of `pid` but `keep` and theirs; frozen first, so none can fork while we look."""
    frozen: set[int] = set(keep)
    while True:
        found = descendants(pid, keep) - frozen
        if not found:
            break
        for child in found:
            _signal(child, signal.SIGSTOP)
        frozen |= found
    for child in frozen - keep:
        _signal(child, signal.SIGKILL)
    return len(frozen - keep)


def kill_tree(pid: int) -> None:
    """SIGKILL `pid`, its process group and every descendant (even those that left the group)."""
    _signal(pid, signal.SIGSTOP)
    kill_descendants(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):  # no such group left, or no longer ours
        os.killpg(pid, signal.SIGKILL)
    _signal(pid, signal.SIGKILL)


def reap_children() -> None:
    """Collect the exit status of every child that has ended (ours, or adopted as a subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def rss_kb(pid: int) -> int:
    """Resident memory of `pid` in KiB (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def high_fd(fd: int) -> int:
    """A close-on-exec copy of `fd` far above the low numbers that user code may write to by accident."""
    import fcntl
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    base = max(10, min(soft, 1024) - 64)
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base)


def thread_waits(pid: int) -> dict[int, float]:
    """Each thread's run-queue wait in seconds, by thread id ({} if unknown): time it was ready to run
    but other processes held the CPUs. That is the machine's load, not the process' own work, and
    TensorFlow runs a loss's ops on its own thread pools, so every thread counts."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task") if t.isdigit()]
    except OSError:
        return {}
    return {tid: _schedstat_wait(f"/proc/{pid}/task/{tid}/schedstat") for tid in tids}


def _schedstat_wait(path: str) -> float:
    try:
        with open(path, "rb") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def kill_marked(variable: str, token: str, keep: frozenset[int] = frozenset()) -> int:
    """SIGKILL every process whose environment has `variable=token` (except `keep`): found by what it
    inherited, even after it was re-parented away from us."""
    needle = f"{variable}={token}".encode()
    killed = 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in keep:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if needle not in fh.read().split(b"\0"):
                    continue
        except OSError:
            continue
        _signal(int(name), signal.SIGKILL)
        killed += 1
    return killed


def start_guardian(variable: str, token: str, folder: str | None = None) -> int:
    """Fork a small process that waits for this one to die, however it dies (SIGKILL included), and then
    kills every process that still carries `variable=token` (what user code started, wherever it went)
    and removes `folder` (this process' private temporary folder).

    Call it early (before threads exist). `variable=token` must be in this process' initial environment
    (as /proc shows it): processes forked from here show that same environment, exec'd ones inherit it.
    """
    watched = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:  # the guardian: no file of the worker's stays open here (pipe ends would never see EOF)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 1 << 16)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        while os.getppid() == watched:
            signal.sigtimedwait({signal.SIGTERM}, 1.0)
        kill_marked(variable, token, frozenset({os.getpid()}))
        if folder:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    finally:
        os._exit(0)
