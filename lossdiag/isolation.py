"""Run modules through one reused worker process, with a time and memory limit on every loss.

A hang, a crash (even a segfault in native code) or a memory blow-up inside a user's loss kills
only the worker: the loss is reported as not probed and a fresh worker carries on with the rest.
TensorFlow is imported once per worker, so a run pays that import once unless a loss breaks it.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lossdiag.measurement import LossMeasurement

READY_TIMEOUT = 300.0  # importing TensorFlow on a cold disk can be slow; it is not the user's fault


@dataclass
class ModuleJob:
    path: Path
    module: str
    root: Path
    names: list[str] | None = None
    probes: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)  # where each candidate is defined


@dataclass
class ModuleOutcome:
    load_error: tuple[str, int | None] | None = None
    measurements: list[LossMeasurement] = field(default_factory=list)
    output: dict[str, str] = field(default_factory=dict)  # what each loss printed


class WorkerFailed(Exception):
    """The worker died, hung or grew too large; `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StartupError(Exception):
    """The worker could not import TensorFlow at all (an environment problem: exit 2)."""


class Worker:
    def __init__(self, options: dict[str, Any], max_memory_mb: int) -> None:
        self.max_rss_kb = 0  # no limit while the worker imports TensorFlow: that is not the user's code
        self.baseline_kb = 0
        self.log = tempfile.NamedTemporaryFile(prefix="lossdiag-", suffix=".log", delete=False)  # noqa: SIM115
        self.log.close()
        # O_APPEND: the worker's writes and our reads never fight over one file offset.
        self._log_w = open(self.log.name, "ab", buffering=0)  # noqa: SIM115
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
        self.proc = subprocess.Popen(
            # Not `-m`: that puts the working directory first on sys.path, and a user's json.py or
            # random.py there would replace the real module inside TensorFlow itself.
            [sys.executable, "-c", "import sys; del sys.path[0]; from lossdiag.worker import main; sys.exit(main())"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_w,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us; we end the worker ourselves
        )
        self._buffer = b""
        self._selector = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            self._send(options)
            event = self.read(READY_TIMEOUT)
        except WorkerFailed as failure:
            tail = self.log_text().strip()[-2000:]
            self.close()
            raise StartupError(f"the worker process did not start: {failure.reason}" + (f"\n{tail}" if tail else "")) from None
        if event.get("event") == "fatal":
            self.close()
            raise StartupError(event["message"])
        # --max-memory bounds what the user's code adds on top of the worker's own footprint
        # (TensorFlow alone is about 550 MiB), so a limit below that still lets the worker start.
        self.baseline_kb = self._rss_kb()
        self.max_rss_kb = max_memory_mb * 1024

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise WorkerFailed(self._death()) from None

    def log_size(self) -> int:
        return os.path.getsize(self.log.name)

    def log_text(self, start: int = 0) -> str:
        with open(self.log.name, "rb") as fh:
            fh.seek(start)
            return fh.read().decode("utf-8", "replace")

    def _rss_kb(self) -> int:
        try:
            with open(f"/proc/{self.proc.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _death(self) -> str:
        code = self.proc.wait()
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the process crashed ({name})"
        return f"the process exited with status {code}"

    def read(self, timeout: float) -> dict[str, Any]:
        """The next event, or WorkerFailed after `timeout` seconds, a crash, or too much memory."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise WorkerFailed(f"timed out after {timeout:g} s")
            if self.max_rss_kb and self._rss_kb() - self.baseline_kb > self.max_rss_kb:
                self.kill()
                raise WorkerFailed(f"used more than {self.max_rss_kb // 1024} MiB of memory")
            if not self._selector.select(min(left, 0.05)):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)  # type: ignore[union-attr]
            if not chunk:
                raise WorkerFailed(self._death())
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def request(self, message: dict[str, Any]) -> None:
        self._send(message)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except Exception:
                self.kill()
        self._selector.close()
        self._log_w.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def collapse_repeats(text: str, limit: int = 40) -> str:
    """What a loss printed, once per distinct line: it runs once per probe, so a print repeats."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        counts[line] = counts.get(line, 0) + 1
    lines = [line if n == 1 else f"{line}  (×{n})" for line, n in counts.items()]
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more distinct lines"]
    return "\n".join(lines)


def _failed(job: ModuleJob, name: str, reason: str) -> LossMeasurement:
    """The measurement of a loss that took the worker down with it."""
    return LossMeasurement(name=name, kind="function", file=str(job.path), line=job.lines.get(name, 1), error=reason)


def run_modules(
    jobs: list[ModuleJob], options: dict[str, Any], timeout: float, max_memory_mb: int, log: list[str],
    progress: Callable[[str, str | None], None] | None = None,
) -> dict[Path, ModuleOutcome]:
    """Check every module; a failing loss costs at most `timeout` and a restart of the worker."""
    outcomes: dict[Path, ModuleOutcome] = {}
    worker: Worker | None = None
    try:
        for job in jobs:
            outcome = outcomes.setdefault(job.path, ModuleOutcome())
            if progress is not None:
                progress(str(job.path), None)
            done: set[str] = set()
            while True:
                if worker is not None and worker.proc.poll() is not None:
                    # It died while idle (e.g. a thread a loss left behind): not this module's fault.
                    worker.close()
                    worker = None
                if worker is None:
                    worker = Worker(options, max_memory_mb)
                current: str | None = None
                mark = worker.log_size()
                try:
                    worker.request({
                        "path": str(job.path), "module": job.module, "root": str(job.root),
                        "names": job.names, "skip": sorted(done), "probes": job.probes,
                    })
                    mark = worker.log_size()
                    while True:
                        event = worker.read(timeout)
                        kind = event["event"]
                        if kind == "load_error":
                            outcome.load_error = (event["message"], event.get("line"))
                            break
                        if kind == "candidates":  # the module is imported: what it printed goes to -v
                            text = worker.log_text(mark).strip()
                            if text and not outcome.measurements and not done:
                                log.append(f"{job.path} printed while it was imported:\n{text[-2000:]}")
                            mark = worker.log_size()
                        elif kind == "start":
                            current, mark = event["name"], worker.log_size()
                            if progress is not None:
                                progress(str(job.path), current)
                        elif kind == "result":
                            m = LossMeasurement.from_json(event["measurement"])
                            text = worker.log_text(mark).strip()
                            if text:
                                outcome.output[m.name] = collapse_repeats(text)
                            outcome.measurements.append(m)
                            done.add(m.name)
                            current, mark = None, worker.log_size()
                        elif kind == "done":
                            break
                    break
                except WorkerFailed as failure:
                    text = worker.log_text(mark).strip()
                    worker.close()
                    worker = None
                    if current is None:  # while importing the module
                        outcome.load_error = (f"importing it failed: {failure.reason}", None)
                        if text:
                            log.append(f"{job.path}: {text[-2000:]}")
                        break
                    if text:
                        outcome.output[current] = collapse_repeats(text)
                    outcome.measurements.append(
                        _failed(job, current, f"{failure.reason} while probing")
                    )
                    done.add(current)
    except KeyboardInterrupt:
        if worker is not None:
            worker.kill()  # a busy worker would not notice its stdin closing
        raise
    finally:
        if worker is not None:
            worker.close()
    return outcomes
