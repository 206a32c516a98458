"""The worker process: imports the user's modules and measures their losses, away from the CLI.

It speaks framed, authenticated messages (`lossdiag.channel`) on two pipes moved to high,
close-on-exec file descriptors that user code does not know of. fds 1 and 2 go to the parent, which
keeps a bounded tail of what the user's code prints; fd 0 is /dev/null, so `input()` fails at once
instead of hanging. Before every call of a loss the worker sends a heartbeat, so the parent's
`--timeout` bounds one call, not the sum of them. It dies with its parent, adopts the orphans of what
a loss forks, and kills them when the loss ends.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from lossdiag import channel, discover, probe, procs, runner, script
from lossdiag.measurement import LossMeasurement
from lossdiag.procs import CHANNEL_ENV, GUARD_ENV, PARENT_ENV, TMPDIR_ENV
from lossdiag.state import GlobalState, is_library


def _error_line(exc: BaseException, path: str) -> int | None:
    """The line in the user's file where an import-time exception was raised."""
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename).resolve() == Path(path).resolve():
        return exc.lineno
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename and Path(frame.filename).resolve() == Path(path).resolve():
            return frame.lineno
    return None


def describe_import_error(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"the module called sys.exit({exc.code!r}) at import"
    if isinstance(exc, KeyboardInterrupt):
        return "the module raised KeyboardInterrupt at import"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"ModuleNotFoundError: no module named {exc.name!r} (is the package installed in this environment?)"
    if isinstance(exc, SyntaxError):
        where = f" ({Path(exc.filename).name}:{exc.lineno})" if exc.filename else ""
        return f"SyntaxError: {exc.msg}{where}"
    hint = probe.keras2_hint(str(exc))
    if isinstance(exc, ImportError) and "tf_keras" in str(exc):
        hint = "--legacy-keras maps `keras` to tf_keras (Keras 2), which lacks this; check Keras-3 modules without it"
    return probe.describe_exception(exc) + (f"; {hint}" if hint else "")


def import_user_module(
    name: str, path: Path, root: Path, definitions: dict[str, frozenset[str]] | None = None,
    notes: list[str] | None = None,
) -> Any:
    """Import `path` under `name` with its folder (and the working directory) on sys.path.

    With `definitions` (candidate → the names it needs), only the module's definitions run (see
    `script`): a training script's data loading and `fit` never do. When that slice cannot define
    the candidates, the whole file is imported after all; `-v` shows what was skipped and why.
    """
    for entry in (str(Path.cwd()), str(root)):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    old = sys.modules.get(name)
    if old is not None and _is_from_file(old, path):
        return old
    if old is not None and is_library(old):
        # A user file named like a module TensorFlow or Python already use (json.py, random.py):
        # replacing that module would break them, so the user's file gets a private name.
        name = f"_lossdiag_user_{name}"
    sys.modules.pop(name, None)
    if "." in name and definitions is None:
        module = importlib.import_module(name)
        if _is_from_file(module, path):
            return module
        sys.modules.pop(name, None)
    return _load_file(name, path, definitions, notes)


def _is_from_file(module: ModuleType, path: Path) -> bool:
    """Whether a module object was loaded from `path`."""
    return Path(getattr(module, "__file__", "") or "").resolve() == path.resolve()


def _load_file(name: str, path: Path, definitions: dict[str, frozenset[str]] | None, notes: list[str] | None) -> Any:
    """Load `path` as module `name` from the file itself: a same-named module elsewhere on sys.path must
    not shadow it. With `definitions`, only what they need runs (`script.import_definitions`)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        if definitions is None:
            spec.loader.exec_module(module)
        else:
            module = script.import_definitions(spec, module, definitions, notes)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _context(
    request: dict[str, Any], options: dict[str, Any], name: str, legacy: bool, on_call: Callable[[], None] | None
) -> probe.ProbeContext:
    """How to probe one loss: the run's options, a layout the user pinned for it, and the heartbeat."""
    pinned = request.get("probes", {}).get(name)
    spec, origin = (pinned if isinstance(pinned, (list, tuple)) else (pinned, "given")) if pinned else (None, "given")
    return probe.ProbeContext(
        batch_size=options["batch_size"],
        seed=options["seed"],
        legacy=legacy,
        pinned=probe.parse_spec(spec) if spec else None,
        pinned_origin=origin,
        trace=options.get("trace", True),
        on_call=on_call,
    )


def measure_candidate(
    cand: discover.Candidate, request: dict[str, Any], options: dict[str, Any], legacy: bool,
    on_call: Callable[[], None] | None = None,
) -> LossMeasurement:
    """Probe one candidate; the loss's exceptions (SystemExit included) are its LD002, never the worker's
    end; an exception in lossdiag's own code is LD004, with the traceback kept for -v."""
    base = LossMeasurement(
        name=cand.name, kind=cand.kind, file=cand.file, line=cand.line,
        batch_size=options["batch_size"], error=cand.error, skipped=cand.skipped, role=cand.role,
    )
    if cand.loss is None:
        return base
    try:
        ctx = _context(request, options, cand.name, legacy, on_call)
        if cand.role == "metric":
            from lossdiag import metric_probe

            m = metric_probe.measure_metric(base, cand.loss, ctx)
        else:
            m = probe.measure_loss(base, cand.loss, ctx)
    except Exception:  # a bug of ours: the user's exceptions never get here (the runner wraps them)
        return replace(base, internal_error=traceback.format_exc(limit=8))
    except BaseException as exc:  # SystemExit, KeyboardInterrupt or stranger, raised by the loss
        what = f"sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"raise {type(exc).__name__}"
        return replace(base, error=f"the loss called {what} while probing")
    if m.layout is None and cand.main_set is not None:  # it ran on no layout: most likely because of that None
        m = replace(m, hint=discover.main_set_hint(*cand.main_set))
    return m


class Channel:
    """The worker's end of the channel: requests in, events out, on fds user code does not know of."""

    def __init__(self, request_fd: int, event_fd: int) -> None:
        self.request_fd = procs.high_fd(request_fd)
        self.event_fd = procs.high_fd(event_fd)
        os.close(request_fd)
        os.close(event_fd)
        key = channel.read_exact(self.request_fd, channel.KEY_BYTES)
        self.reader = channel.Reader(key)
        self.writer = channel.Writer(self.event_fd, key, owner_only=True)

    @classmethod
    def from_environment(cls) -> Channel:
        request_fd, event_fd = (int(fd) for fd in os.environ.pop(CHANNEL_ENV).split(","))
        return cls(request_fd, event_fd)

    def send(self, event: str, **fields: Any) -> None:
        self.writer.send({"event": event, **fields})

    def receive(self) -> dict[str, Any] | None:
        return channel.read_message(self.request_fd, self.reader)


class Session:
    """One worker's life after TensorFlow is imported: one module request after another."""

    def __init__(self, link: Channel, options: dict[str, Any], guardian: int) -> None:
        from lossdiag import _tf

        self.link = link
        self.options = options
        self.legacy = bool(options["legacy"])
        self.wrap = lambda fn: _tf.loss_wrapper(fn, self.legacy)
        self.bases = _tf.loss_base_classes(self.legacy)
        self.state = GlobalState(self.legacy, options["seed"], keep=frozenset({guardian}))

    def heartbeat(self) -> None:
        """Sent before every call of the user's code: the parent restarts its `--timeout` clock."""
        self.link.send("call")

    def check_module(self, request: dict[str, Any]) -> None:
        self.state.before_module()
        names = request.get("names")
        wanted = None if names is None else frozenset(names)
        candidates = self._load(request, wanted)
        if candidates is not None:
            self._measure_all(request, candidates)
        restart, restored = self.state.after_module()
        self.link.send("done", restart=restart, restored=restored[:20])

    def _load(self, request: dict[str, Any], wanted: frozenset[str] | None) -> list[discover.Candidate] | None:
        path = Path(request["path"])
        scan = channel.from_plain(discover.FileScan, request["scan"])
        full_import = request.get("full_import", self.options.get("full_import", False))
        definitions = None if full_import else discover.import_roots(scan, wanted)
        notes: list[str] = []
        self.heartbeat()
        try:
            module = import_user_module(request["module"], path, Path(request["root"]), definitions, notes)
        except BaseException as exc:  # SystemExit and friends too: the user's module must not end us
            self.link.send("load_error", message=describe_import_error(exc), line=_error_line(exc, str(path)))
            return None
        self.heartbeat()
        try:
            candidates = discover.materialise(
                module, scan, wanted, self.wrap, self.bases,
                metric_wrap=lambda fn: runner.metric_wrapper(fn, self.legacy),
                metric_bases=runner.metric_base_classes(self.legacy),
            )
        except BaseException as exc:
            message = f"building its losses raised {probe.describe_exception(exc)}"
            self.link.send("load_error", message=message, line=_error_line(exc, str(path)))
            return None
        self.link.send("loaded", names=[c.name for c in candidates], notes=notes)
        return candidates

    def _measure_all(self, request: dict[str, Any], candidates: list[discover.Candidate]) -> None:
        mark = self.state.mark()  # what the module's import set up is its losses' environment
        skip = set(request.get("skip", ()))
        for cand in candidates:
            if cand.name in skip:
                continue
            self.link.send("start", name=cand.name)
            self.state.framework.reseed()
            m = measure_candidate(cand, request, self.options, self.legacy, self.heartbeat)
            self.state.after_loss(mark)
            self.link.send("result", measurement=m.to_json())


def _forked_child() -> None:
    """A process a loss forks dies with the worker, whatever happens to the worker."""
    procs.die_with_parent()


def main() -> int:
    link = Channel.from_environment()
    procs.die_with_parent(int(os.environ.pop(PARENT_ENV, "0")) or None)
    procs.become_subreaper()
    # The parent put the token in our initial environment, which /proc shows for us, for every process we
    # fork and for everything exec'd from here; set here, it would reach only the exec'd ones.
    os.environ.setdefault(GUARD_ENV, os.urandom(8).hex())
    # TensorFlow's autograph and user code leave files in TMPDIR, removed at exit only if the exit is clean.
    folder = os.environ.get(TMPDIR_ENV)
    guardian = procs.start_guardian(GUARD_ENV, os.environ[GUARD_ENV], folder)  # before any thread exists
    os.register_at_fork(after_in_child=_forked_child)
    options = link.receive()
    if options is None:
        return 0
    from lossdiag import _tf

    legacy = bool(options["legacy"])
    try:
        _tf.load(legacy)
        if legacy:
            _tf.install_keras2_alias()
        # paused since the worker started (isolation._WORKER_COMMAND), and what is alive frozen by _tf.load;
        # on before the session saves the interpreter's state, which each module's reset puts back
        gc.enable()
        session = Session(link, options, guardian)
    except Exception as exc:
        link.send("fatal", message=f"cannot import TensorFlow/Keras: {probe.describe_exception(exc)}")
        return 1
    link.send("ready", keras=_tf.keras_label(legacy), backend="tensorflow")
    while (request := link.receive()) is not None:
        session.check_module(request)
    procs.kill_descendants(os.getpid(), frozenset({guardian}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
