"""Run modules in reused worker processes, with a time limit on each call of a loss and a memory limit.

A hang, a crash (even a segfault in native code), a memory blow-up or bytes written into lossdiag's
channel inside a user's loss kill only the worker: that loss is reported as not probed and a fresh
worker carries on with the rest. TensorFlow is imported once per worker process.

`--timeout` bounds a single call of the user's code: one call of a loss, a module's import, or the
building of its losses. lossdiag calls a loss several times; the worker sends a heartbeat before each
call and the clock restarts at each. Time the worker spent waiting for a CPU that other processes
held (the run-queue wait of its most delayed thread, from /proc/PID/task/*/schedstat) is not
counted, so a loss is judged the same on an idle laptop and on a loaded CI runner, however many
calls it takes.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from lossdiag import _tf, channel, discover, procs
from lossdiag.measurement import LossMeasurement

READY_TIMEOUT = 300.0  # importing TensorFlow on a cold disk can be slow; it is not the user's fault
OUTPUT_TAIL = 64 * 1024  # bytes of what the user's code printed kept per module or loss (the last ones)
DRAIN_LIMIT = 4 << 20  # bytes read from the output pipe at one time, so a flood cannot starve the loop
RSS_INTERVAL = 0.02  # seconds between two looks at a busy worker's memory
TICK = 0.05  # longest wait of the loop: signals and limits are looked at this often
Progress = Callable[[str, "str | None"], None]
_WORKER_COMMAND = (
    # Not `-m`: that puts the working directory first on sys.path, and a user's json.py or random.py
    # there would replace the real module inside TensorFlow itself.
    # The collector stays paused until TensorFlow is imported (see `_tf.load`); `main` turns it back on.
    "import gc, sys; gc.disable(); del sys.path[0]; from lossdiag.worker import main; sys.exit(main())"
)


@dataclass
class ModuleJob:
    """One module to check, as the engine found it."""

    path: Path
    module: str
    root: Path
    names: list[str] | None = None
    probes: dict[str, list[str]] = field(default_factory=dict)  # loss name → [layout spec, "given" | "config"]
    lines: dict[str, int] = field(default_factory=dict)  # where each candidate is defined
    legacy: bool = False  # run it on tf_keras (Keras 2) rather than Keras 3
    scan: discover.FileScan | None = None  # the parent's ast scan, sent so the worker need not redo it
    switch: bool = True  # may it run on the other Keras when it shows that Keras' symptoms?


@dataclass
class ModuleOutcome:
    load_error: tuple[str, int | None] | None = None
    measurements: list[LossMeasurement] = field(default_factory=list)
    output: dict[str, str] = field(default_factory=dict)  # what each loss printed
    keras: str = ""  # which Keras ran it: "3.15.1" or "tf_keras 2.21.0"
    switched: str = ""  # why it ran on the other Keras than the job asked for ("" when it did not)
    notes: list[str] = field(default_factory=list)  # for -v: what its definitions-only import skipped


class WorkerFailed(Exception):
    """The worker died, hung, grew too large or broke the channel; `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StartupError(Exception):
    """The worker could not import TensorFlow at all (an environment problem: exit 2)."""


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP ended the run; the CLI exits with `exit_status` (128 + the signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_status = 128 + signum


# --- text from the worker ------------------------------------------------------------------------

_ADDRESS = re.compile(
    r" at 0x[0-9a-fA-F]+|0x[0-9a-fA-F]{8,}|(?<=lossdiag-worker-)\w+|(?<=__autograph_generated_file)\w+"
)
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")  # escapes and control bytes


def scrub(text: str) -> str:
    """Remove what differs from run to run (object addresses, the worker's temporary folder) from a message."""
    def replace(found: re.Match[str]) -> str:
        text = found.group()
        return "" if text.startswith(" at ") else "0x…" if text.startswith("0x") else "…"

    return _ADDRESS.sub(replace, text)


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    return value


def collapse_repeats(text: str, limit: int = 40) -> str:
    """What a loss printed, once per distinct line: it runs once per probe, so a print repeats."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        counts[line] = counts.get(line, 0) + 1
    lines = [line if n == 1 else f"{line}  (×{n})" for line, n in counts.items()]
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more distinct lines"]
    return "\n".join(lines)


class OutputTail:
    """The last `limit` bytes of what the worker printed, and how many came before them."""

    def __init__(self, limit: int = OUTPUT_TAIL) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * self.limit:
            cut = len(self.data) - self.limit
            del self.data[:cut]
            self.dropped += cut

    def take(self) -> str:
        cut = max(0, len(self.data) - self.limit)
        # What user code printed goes to the terminal under -v: no escape sequences or control bytes.
        text = _CONTROL.sub("", scrub(bytes(self.data[cut:]).decode("utf-8", "replace"))).strip()
        dropped = self.dropped + cut
        self.data, self.dropped = bytearray(), 0
        if dropped and text:
            return f"[{dropped:,} earlier bytes of output dropped]\n{text}"
        return text


# --- Keras 2 or Keras 3 ---------------------------------------------------------------------------

_KERAS2_ON_KERAS3 = (
    (re.compile(r"module 'keras(?:\.src)?\.backend' has no attribute '(\w+)'"), "K.{} is a Keras-2 backend function"),
    (re.compile(r"cannot import name '(\w+)' from 'keras[\w.]*'"), "Keras 3 has no {} to import"),
    (re.compile(r"no module named '(keras\.[\w.]+)'", re.IGNORECASE), "Keras 3 has no module {}"),
    (re.compile(r"module 'keras\.(?!ops|config|random|saving|tree|src\.ops)([\w.]+)' has no attribute '(\w+)'"),
     "Keras 3 has no keras.{}.{}"),
    (re.compile(r"reduction=auto\b"), "reduction='auto' is Keras 2 only"),
)
_KERAS3_ON_TF_KERAS = (
    (re.compile(r"cannot import name '(\w+)' from 'tf_keras[\w.]*'"), "tf_keras has no {} to import"),
    (re.compile(r"no module named '(tf_keras\.[\w.]+)'", re.IGNORECASE), "tf_keras has no module {}"),
    (re.compile(r"module 'tf_keras[\w.]*' has no attribute '(\w+)'"), "tf_keras has no {}"),
)


def other_keras_symptom(message: str, legacy: bool) -> str:
    """Why an error seen on one Keras says the code was written for the other ("" if it does not).

    On Keras 3 (`legacy` False): Keras-2 backend functions, names and modules Keras 3 dropped, and
    `reduction='auto'`. On tf_keras: `keras.ops`, `keras.config` and the other Keras-3-only names.
    """
    for pattern, reason in _KERAS3_ON_TF_KERAS if legacy else _KERAS2_ON_KERAS3:
        found = pattern.search(message)
        if found:
            return reason.format(*found.groups())
    return ""


def _loss_symptom(m: LossMeasurement, legacy: bool) -> str:
    """The other Keras' symptom when every probe of a loss failed with it."""
    if m.layout is not None:
        return ""
    errors = [m.error] if m.error else [t.error for t in m.trials if t.error]
    symptoms = [other_keras_symptom(e, legacy) for e in errors]
    return symptoms[0] if symptoms and all(symptoms) else ""


def switch_reason(outcome: ModuleOutcome, legacy: bool) -> str:
    """Why a module that ran on one Keras should run on the other ("" if it should not)."""
    if outcome.load_error is not None:
        symptom = other_keras_symptom(outcome.load_error[0], legacy)
        return f"importing it failed: {symptom}" if symptom else ""
    for m in outcome.measurements:
        symptom = _loss_symptom(m, legacy)
        if symptom:
            return f"every probe of {m.name} failed: {symptom}"
    return ""


# --- one worker process, seen from the parent ------------------------------------------------------


def _set_nonblocking(fd: int) -> int:
    os.set_blocking(fd, False)
    return fd


def _worker_environment(legacy: bool, request_r: int, event_w: int, folder: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1", **_tf.forced_environment(legacy))
    env.update({
        procs.CHANNEL_ENV: f"{request_r},{event_w}", procs.PARENT_ENV: str(os.getpid()),
        procs.GUARD_ENV: os.urandom(8).hex(), "TMPDIR": folder, procs.TMPDIR_ENV: folder,
    })
    return env


def _spawn(legacy: bool) -> tuple[subprocess.Popen[bytes], int, int, int, str]:
    """Start a worker: (process, request fd, event fd, output fd, its TMPDIR), the pipes ours, its ends closed."""
    folder = tempfile.mkdtemp(prefix="lossdiag-worker-")
    request_r, request_w = os.pipe()
    event_r, event_w = os.pipe()
    output_r, output_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_COMMAND], stdin=subprocess.DEVNULL, stdout=output_w, stderr=output_w,
            pass_fds=(request_r, event_w), env=_worker_environment(legacy, request_r, event_w, folder),
            start_new_session=True,  # we end it, not the terminal
        )
    except OSError as exc:
        for fd in (request_w, event_r, output_r):
            os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
        raise StartupError(f"cannot start the worker process: {exc}") from None
    finally:
        for fd in (request_r, event_w, output_w):
            os.close(fd)
    return proc, request_w, _set_nonblocking(event_r), _set_nonblocking(output_r), folder


class Worker:
    """One worker process: its pipes, what it printed, its limits, and the module run it is busy with."""

    def __init__(self, legacy: bool, options: dict[str, Any]) -> None:
        self.legacy = legacy
        self.proc, self.requests, self.events, self.output_fd, self.tmpdir = _spawn(legacy)
        key = channel.new_key()
        self.reader = channel.Reader(key)
        self.writer = channel.Writer(self.requests, key)
        self.output = OutputTail()
        self.ready = False
        self.eof = False
        self.keras = ""
        self.run: _Run | None = None
        self.deadline: float | None = time.monotonic() + READY_TIMEOUT
        self.waited: dict[int, float] = {}  # each thread's run-queue wait when the clock was last started
        self.baseline_kb = 0
        self.next_rss = 0.0
        try:
            self.send_raw(key)
            self.send({**options, "legacy": legacy})
        except WorkerFailed as failure:
            self.kill()
            raise StartupError(f"the worker process did not start: {failure.reason}") from None

    def send_raw(self, data: bytes) -> None:
        try:
            channel.write_all(self.requests, data)
        except OSError:
            raise WorkerFailed(self.death()) from None

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.writer.send(message)
        except OSError:
            raise WorkerFailed(self.death()) from None

    def read_events(self) -> list[dict[str, Any]]:
        """What the worker has sent so far, without blocking, up to any bytes that are not ours (then
        `corrupt` says why, for the caller to fail the worker once it has taken these messages)."""
        messages: list[dict[str, Any]] = []
        while not self.eof:
            try:
                chunk = os.read(self.events, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                self.eof = True
                break
            try:
                messages += self.reader.feed(chunk)
            except channel.ChannelError:
                break
        return messages

    @property
    def corrupt(self) -> str | None:
        """Why the channel went bad, once the messages before the bad bytes have been handled."""
        error = self.reader.error
        return None if error is None else f"lossdiag's channel received {error}"

    def read_output(self) -> None:
        """Move what the worker printed into the bounded tail (at most DRAIN_LIMIT bytes at a time)."""
        for _ in range(DRAIN_LIMIT >> 16):
            try:
                chunk = os.read(self.output_fd, 1 << 16)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            self.output.feed(chunk)

    def take_output(self) -> str:
        self.read_output()
        return self.output.take()

    def death(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "the process stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the process crashed ({name})"
        return f"the process exited with status {code}"

    def arm(self, seconds: float | None) -> None:
        """Start the clock of one call of the user's code (None: the worker is idle)."""
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.waited = procs.thread_waits(self.proc.pid) if seconds is not None else {}

    def overdue(self, now: float) -> bool:
        """Past the deadline, not counting the time the machine kept the worker waiting for a CPU."""
        if self.deadline is None or now <= self.deadline:
            return False
        # the thread the load delayed most since the clock started: a call is as late as its slowest step
        waits = procs.thread_waits(self.proc.pid)
        delay = max((wait - self.waited.get(tid, 0.0) for tid, wait in waits.items()), default=0.0)
        return now - delay > self.deadline

    def check(self, now: float, timeout: float, max_kb: int) -> None:
        """WorkerFailed when the process ended, grew past `max_kb` over its baseline, or missed its deadline."""
        if self.proc.poll() is not None:
            raise WorkerFailed(self.death())
        if self.ready and self.run is not None and max_kb and now >= self.next_rss:
            self.next_rss = now + RSS_INTERVAL
            if procs.rss_kb(self.proc.pid) - self.baseline_kb > max_kb:
                raise WorkerFailed(f"used more than {max_kb // 1024} MiB of memory")
        if self.overdue(now):
            raise WorkerFailed(f"timed out after {timeout:g} s" if self.ready else "timed out while starting")

    def kill(self) -> None:
        """End the process, its group and everything it started; close our ends of its pipes."""
        if self.proc.poll() is None:
            procs.kill_tree(self.proc.pid)
        self.proc.wait()
        for fd in (self.requests, self.events, self.output_fd):
            with contextlib.suppress(OSError):  # already closed
                os.close(fd)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


# --- signals --------------------------------------------------------------------------------------


class TerminationSignals:
    """SIGINT, SIGTERM and SIGHUP end the run at a point where it can clean up.

    The handler only notes the signal; `check` raises Interrupted at the loop's next turn (every
    TICK seconds at most), so a signal that lands while a worker is being started cannot leave
    that worker behind. Outside the main thread, handlers cannot be set and Ctrl-C works as usual.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.pending: int | None = None
        self.previous: dict[int, Any] = {}

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.pending = self.pending or signum

    def __enter__(self) -> TerminationSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._note)
        return self

    def check(self) -> None:
        if self.pending is not None:
            raise Interrupted(self.pending)

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if kind is None:
            self.check()  # a signal that arrived while the workers were being closed


# --- the session: every module through the workers ---------------------------------------------------


@dataclass
class _Run:
    """One module on one Keras: where it got to, so a fresh worker can carry on after a crash."""

    job: ModuleJob
    legacy: bool
    outcome: ModuleOutcome = field(default_factory=ModuleOutcome)
    done: set[str] = field(default_factory=set)
    names: list[str] = field(default_factory=list)
    current: str | None = None
    loaded: bool = False
    announced: bool = False
    stalls: int = 0  # times its worker ended between two losses (no loss to blame)
    switched: str = ""  # why this run is on the other Keras
    first: ModuleOutcome | None = None  # the outcome on the Keras the job asked for, when switched


class Session:
    """The parent's side of a run: queues of modules, the workers, one handler per worker event."""

    def __init__(
        self, jobs: list[ModuleJob], options: dict[str, Any], timeout: float, max_memory_mb: int, log: list[str],
        progress: Progress | None = None, workers: int = 1,
    ) -> None:
        self.options = options
        self.timeout = timeout
        self.max_kb = max_memory_mb * 1024
        self.log = log
        self.progress = progress
        self.max_workers = max(1, workers)
        self.queue: dict[bool, deque[_Run]] = {False: deque(), True: deque()}
        for job in jobs:
            self.queue[job.legacy].append(_Run(job, job.legacy))
        self.workers: list[Worker] = []
        self.outcomes: dict[Path, ModuleOutcome] = {}
        self.labels: dict[bool, str] = {}
        self.broken: dict[bool, str] = {}  # a Keras whose worker cannot start, and why
        self.selector = selectors.DefaultSelector()
        self.handlers: dict[str, Callable[[Worker, dict[str, Any]], None]] = {
            "ready": self._on_ready, "fatal": self._on_fatal, "call": self._on_call, "loaded": self._on_loaded,
            "start": self._on_start, "result": self._on_result, "load_error": self._on_load_error,
            "done": self._on_done,
        }

    def run(self) -> dict[Path, ModuleOutcome]:
        with TerminationSignals() as signals:
            try:
                while any(self.queue.values()) or any(w.run is not None for w in self.workers):
                    signals.check()
                    self._fill()
                    self._wait()
                    self._watch()
            finally:
                for worker in list(self.workers):
                    self._retire(worker)
                self.selector.close()
        return self.outcomes

    # scheduling: Keras-3 modules on Keras-3 workers, legacy ones on tf_keras workers

    def _free(self, legacy: bool) -> int:
        return sum(1 for w in self.workers if w.legacy == legacy and w.run is None)

    def _waiting_kind(self) -> bool | None:
        """A Keras kind with more queued modules than free workers of its kind."""
        for legacy in (False, True):
            if len(self.queue[legacy]) > self._free(legacy):
                return legacy
        return None

    def _fill(self) -> None:
        for worker in list(self.workers):
            if worker.ready and worker.run is None and self.queue[worker.legacy]:
                self._assign(worker, self.queue[worker.legacy].popleft())
        while len(self.workers) < self.max_workers and (kind := self._waiting_kind()) is not None:
            self._start(kind)
        kind = self._waiting_kind()
        idle = [w for w in self.workers if w.ready and w.run is None and not self.queue[w.legacy]]
        if kind is not None and idle:  # one kind is done: its worker makes room for the other kind's
            self._retire(idle[0])
            self._start(kind)

    def _start(self, legacy: bool) -> None:
        worker = Worker(legacy, self.options)
        self.workers.append(worker)
        self.selector.register(worker.events, selectors.EVENT_READ, (worker, "events"))
        self.selector.register(worker.output_fd, selectors.EVENT_READ, (worker, "output"))

    def _assign(self, worker: Worker, run: _Run) -> None:
        worker.run = run
        run.current, run.loaded = None, False
        worker.take_output()  # what the worker printed before this module is not the module's
        if self.progress is not None and not run.announced:
            self.progress(str(run.job.path), None)
        run.announced = True
        worker.arm(self.timeout)
        try:
            worker.send(self._request(run))
        except WorkerFailed as failure:
            self._fail(worker, failure.reason)

    def _request(self, run: _Run) -> dict[str, Any]:
        job = run.job
        scan = job.scan
        if scan is None:
            scan = discover.scan_file(job.path, None if job.names is None else frozenset(job.names))
        return {
            "path": str(job.path), "module": job.module, "root": str(job.root), "names": job.names,
            "skip": sorted(run.done), "probes": job.probes, "scan": channel.to_plain(scan),
        }

    def _retire(self, worker: Worker) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        for fd in (worker.events, worker.output_fd):
            with contextlib.suppress(KeyError, ValueError):  # never registered, or already closed
                self.selector.unregister(fd)
        worker.kill()

    # the loop: wait for events, then look at the limits

    def _wait(self) -> None:
        now = time.monotonic()
        # Until a deadline (or, past one that load excuses, TICK): signals and limits are looked at as often.
        deadlines = [w.deadline - now for w in self.workers if w.deadline is not None and w.deadline > now]
        for key, _ in self.selector.select(min([TICK, *deadlines])):
            worker, stream = key.data
            if worker not in self.workers:
                continue
            if stream == "output":
                worker.read_output()
            else:
                self._pump(worker)

    def _pump(self, worker: Worker) -> None:
        for event in worker.read_events():
            if worker not in self.workers:
                return
            kind = event.get("event")
            handler = self.handlers.get(str(kind))
            if handler is None or (worker.run is None and kind not in ("ready", "fatal", "call")):
                self._fail(worker, f"its process sent lossdiag an unexpected message ({kind})")
                return
            if worker.ready and worker.run is not None:
                worker.arm(self.timeout)
            handler(worker, event)
        if worker.corrupt is not None:
            self._fail(worker, worker.corrupt)  # blamed on what ran after the good messages
        elif worker.eof and worker in self.workers:
            self.selector.unregister(worker.events)

    def _watch(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers):
            try:
                worker.check(now, self.timeout, self.max_kb)
            except WorkerFailed as failure:
                if worker.proc.poll() is not None and not worker.eof:
                    self._pump(worker)  # what it sent before it ended still counts
                self._fail(worker, failure.reason)

    def _fail(self, worker: Worker, reason: str) -> None:
        if worker not in self.workers:
            return
        text = worker.take_output()
        run = worker.run
        self._retire(worker)
        if not worker.ready:
            self._cannot_start(worker.legacy, f"the worker process did not start: {reason}", text)
        elif run is not None:
            self._crashed(run, reason, text)

    def _cannot_start(self, legacy: bool, message: str, text: str = "") -> None:
        """A Keras-3 worker that cannot start ends the run (TensorFlow itself is broken: exit 2); a tf_keras one
        costs only the modules that need it (tf_keras may be missing): LD001 naming why, or their first result."""
        if not legacy:
            raise StartupError(message + (f"\n{text[-2000:]}" if text else ""))
        self.log.append(f"lossdiag: {message}")
        self.broken[True] = message
        while self.queue[True]:
            run = self.queue[True].popleft()
            if run.first is not None:  # it was only trying tf_keras: its Keras-3 result stands
                self.outcomes[run.job.path] = run.first
                continue
            run.outcome.load_error = (
                f"it needs tf_keras (Keras 2), which cannot run here: {message}"
                f"{'; install it: pip install tf_keras' if 'tf_keras' in message else ''}",
                None,
            )
            self._finish(run)

    def _crashed(self, run: _Run, reason: str, text: str) -> None:
        """The worker ended under this run: blame the loss it was probing, or the import."""
        if not run.loaded:
            run.outcome.load_error = (f"importing it failed: {reason}", None)
            if text:
                self.log.append(f"{run.job.path}: {text[-2000:]}")
            self._finish(run)
            return
        if run.current is not None:
            if text:
                run.outcome.output[run.current] = collapse_repeats(text)
            run.outcome.measurements.append(_failed(run.job, run.current, f"{reason} while probing"))
            run.done.add(run.current)
            run.current = None
        else:
            run.stalls += 1
        if run.stalls > 2:  # it keeps ending between losses: the rest cannot be checked
            for name in [n for n in run.names if n not in run.done]:
                run.outcome.measurements.append(_failed(run.job, name, f"not probed: {reason} between losses"))
            self._finish(run)
        elif set(run.names) - run.done:
            self.queue[run.legacy].appendleft(run)  # a fresh worker carries on after the losses done
        else:
            self._finish(run)

    # one handler per event

    def _on_ready(self, worker: Worker, event: dict[str, Any]) -> None:
        worker.ready = True
        worker.arm(None)
        worker.keras = str(event.get("keras", ""))
        # --max-memory bounds what the user's code adds on top of the worker's own footprint
        # (TensorFlow alone is about 550 MiB), so a limit below that still lets the worker start.
        worker.baseline_kb = procs.rss_kb(worker.proc.pid)
        if worker.legacy not in self.labels:
            self.labels[worker.legacy] = worker.keras
            ignored = _tf.ignored_backend()
            note = f"; KERAS_BACKEND={ignored} is not used, keras.ops losses are backend-neutral" if ignored else ""
            self.log.append(f"lossdiag: {_name(worker.keras)} on the TensorFlow backend{note}")

    def _on_fatal(self, worker: Worker, event: dict[str, Any]) -> None:
        self._retire(worker)
        self._cannot_start(worker.legacy, str(event.get("message", "the worker could not start")))

    def _on_call(self, worker: Worker, event: dict[str, Any]) -> None:
        """A heartbeat: the user's code is about to be called; `_pump` restarted the clock."""

    def _on_loaded(self, worker: Worker, event: dict[str, Any]) -> None:
        run = self._busy(worker)
        run.loaded, run.names = True, [str(n) for n in event.get("names", [])]
        run.outcome.notes = [scrub(str(note)) for note in event.get("notes", [])]  # cached with its results
        text = worker.take_output()
        if text and not run.outcome.measurements and not run.done:
            self.log.append(f"{run.job.path} printed while it was imported:\n{text[-2000:]}")

    def _on_start(self, worker: Worker, event: dict[str, Any]) -> None:
        run = self._busy(worker)
        run.current = str(event["name"])
        worker.take_output()
        if self.progress is not None:
            self.progress(str(run.job.path), run.current)

    def _on_result(self, worker: Worker, event: dict[str, Any]) -> None:
        run = self._busy(worker)
        m = LossMeasurement.from_json(_scrubbed(event["measurement"]))
        text = worker.take_output()
        if text:
            run.outcome.output[m.name] = collapse_repeats(text)
        run.outcome.measurements.append(m)
        run.done.add(m.name)
        run.current = None

    def _on_load_error(self, worker: Worker, event: dict[str, Any]) -> None:
        run = self._busy(worker)
        line = event.get("line")
        run.outcome.load_error = (scrub(str(event.get("message", ""))), line if isinstance(line, int) else None)
        text = worker.take_output()
        if text:
            self.log.append(f"{run.job.path}: {text[-2000:]}")

    def _on_done(self, worker: Worker, event: dict[str, Any]) -> None:
        run = self._busy(worker)
        worker.run = None
        worker.arm(None)
        worker.take_output()
        if event.get("restored"):
            self.log.append(f"{run.job.path}: put back what it changed: {', '.join(map(str, event['restored']))}")
        if event.get("restart"):
            self.log.append(f"{run.job.path}: the next module gets a fresh worker ({scrub(str(event['restart']))})")
            self._retire(worker)
        self._finish(run)

    def _busy(self, worker: Worker) -> _Run:
        assert worker.run is not None  # _pump lets only these events through for a busy worker
        return worker.run

    # a module is done: keep it, or run it again on the other Keras

    def _finish(self, run: _Run) -> None:
        outcome = run.outcome
        outcome.keras = self.labels.get(run.legacy, "")
        if run.first is None:
            reason = switch_reason(outcome, run.legacy) if run.job.switch else ""
            if reason and (not run.legacy) not in self.broken:
                self.queue[not run.legacy].append(_Run(run.job, not run.legacy, switched=reason, first=outcome))
                return
            self.outcomes[run.job.path] = outcome
            return
        # Keep the rerun unless it could not even import what the first Keras imported.
        if outcome.load_error is None or run.first.load_error is not None:
            outcome.switched = run.switched
            self.outcomes[run.job.path] = outcome
            self.log.append(f"{run.job.path}: checked on {_name(outcome.keras)} ({run.switched})")
        else:
            self.outcomes[run.job.path] = run.first
            self.log.append(f"{run.job.path}: kept {_name(run.first.keras)}; on {_name(outcome.keras)} "
                            f"it fails to import ({outcome.load_error[0]})")


def _name(label: str) -> str:
    return label if label.startswith("tf_keras") else f"Keras {label}"


def _failed(job: ModuleJob, name: str, reason: str) -> LossMeasurement:
    """The measurement of a loss (or metric) that took the worker down with it: its kind and role as the
    parent's scan found them."""
    found = next((c for c in job.scan.candidates if c.name == name), None) if job.scan is not None else None
    return LossMeasurement(
        name=name, kind=found.kind if found else "function", file=str(job.path), line=job.lines.get(name, 1),
        error=reason, role=found.role if found else "loss",
    )


def run_modules(
    jobs: list[ModuleJob], options: dict[str, Any], timeout: float, max_memory_mb: int, log: list[str],
    progress: Progress | None = None, workers: int = 1,
) -> dict[Path, ModuleOutcome]:
    """Check every module in up to `workers` worker processes (each imports TensorFlow once).

    `timeout` bounds one call of the user's code (a call of a loss, a module's import), not a loss's
    ~70 calls together; `max_memory_mb` bounds what the user's code adds to a worker. A failing loss
    costs at most `timeout` and a restart of its worker. `progress(path, None)` is called when a module
    starts, `progress(path, name)` when one of its losses does. SIGINT, SIGTERM and SIGHUP raise
    Interrupted once every worker and everything it started is gone.
    """
    return Session(jobs, options, timeout, max_memory_mb, log, progress, workers).run()
