"""The worker process: imports the user's modules and measures their losses, away from the CLI.

It speaks JSON lines: requests on stdin, events on the file descriptor that was stdout when it
started. Everything the user's code (or TensorFlow) prints goes to stderr, which the parent keeps.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import random
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

from lossdiag import discover, probe, script
from lossdiag.measurement import LossMeasurement


def _send(channel: TextIO, **event: Any) -> None:
    channel.write(json.dumps(event) + "\n")
    channel.flush()


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
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"ModuleNotFoundError: no module named {exc.name!r} (is the package installed in this environment?)"
    if isinstance(exc, SyntaxError):
        where = f" ({Path(exc.filename).name}:{exc.lineno})" if exc.filename else ""
        return f"SyntaxError: {exc.msg}{where}"
    hint = probe.keras2_hint(str(exc))
    if isinstance(exc, ImportError) and "tf_keras" in str(exc):
        hint = "--legacy-keras maps `keras` to tf_keras (Keras 2), which lacks this; check Keras-3 modules without it"
    return probe.describe_exception(exc) + (f"; {hint}" if hint else "")


def _is_library(module: Any) -> bool:
    """A built-in module, or one from the standard library or site-packages (not the user's)."""
    file = getattr(module, "__file__", None)
    if not file:
        return True
    resolved = Path(file).resolve()
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return any(resolved.is_relative_to(prefix) for prefix in prefixes) or "site-packages" in resolved.parts


def import_user_module(
    name: str, path: Path, root: Path, definitions: dict[str, frozenset[str]] | None = None
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
    if old is not None and Path(getattr(old, "__file__", "") or "").resolve() == path.resolve():
        return old
    if old is not None and _is_library(old):
        # A user file named like a module TensorFlow or Python already use (json.py, random.py):
        # replacing that module would break them, so the user's file gets a private name.
        name = f"_lossdiag_user_{name}"
    sys.modules.pop(name, None)
    if "." in name and definitions is None:
        module = importlib.import_module(name)
        if Path(module.__file__ or "").resolve() == path.resolve():
            return module
        sys.modules.pop(name, None)
    # Load from the file itself: a same-named module elsewhere on sys.path must not shadow it.
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        if definitions is None:
            spec.loader.exec_module(module)
        else:
            module = script.import_definitions(spec, module, definitions)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _context(request: dict[str, Any], options: dict[str, Any], name: str) -> probe.ProbeContext:
    """How to probe one loss: the run's options, and a layout the user pinned for it."""
    pinned = request.get("probes", {}).get(name)
    spec, origin = (pinned if isinstance(pinned, (list, tuple)) else (pinned, "given")) if pinned else (None, "given")
    return probe.ProbeContext(
        batch_size=options["batch_size"],
        seed=options["seed"],
        legacy=options["legacy"],
        pinned=probe.parse_spec(spec) if spec else None,
        pinned_origin=origin,
        trace=options.get("trace", True),
    )


def measure_candidate(cand: Any, request: dict[str, Any], options: dict[str, Any]) -> LossMeasurement:
    """Probe one materialised candidate; the user's exceptions are LD002, ours LD004 (traceback kept for -v)."""
    from dataclasses import replace

    base = LossMeasurement(
        name=cand.name, kind=cand.kind, file=cand.file, line=cand.line,
        batch_size=options["batch_size"], error=cand.error, skipped=cand.skipped, role=cand.role,
    )
    if cand.loss is None:
        return base
    try:
        if cand.role == "metric":
            from lossdiag import metric_probe

            return metric_probe.measure_metric(base, cand.loss, _context(request, options, cand.name))
        return probe.measure_loss(base, cand.loss, _context(request, options, cand.name))
    except (SystemExit, KeyboardInterrupt) as exc:  # raised by the loss: it must not end the worker
        what = f"sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else "raise KeyboardInterrupt"
        return replace(base, error=f"the loss called {what} while probing")
    except Exception:  # a bug of ours: the user's exceptions never get here (runner wraps them)
        return replace(base, internal_error=traceback.format_exc(limit=8))


class GlobalState:
    """Process-wide settings that a user's code may change: Keras' floatx, epsilon, image format and
    dtype policy, eager mode, the working directory, and the global random generators.

    The worker is reused across modules and losses, so one loss that calls
    `keras.config.set_floatx("float16")` or `np.random.seed(...)` would otherwise change what every
    later loss computes. Each module is imported in the worker's initial state; each loss then runs
    in the state its module's import left, with every global generator reseeded from `--seed`, so a
    loss measures the same whatever ran before it (and whether or not a crash restarted the worker).
    `sys.stdin`/`stdout`/`stderr` are put back too, so a loss that closes or replaces them cannot
    break the worker or swallow what later losses print.
    """

    def __init__(self, legacy: bool, seed: int) -> None:
        from lossdiag import _tf

        self.tf, self.keras = _tf.load(legacy)
        self.legacy = legacy
        self.seed = seed
        self.initial = self.read()
        self.streams = {"stdin": (sys.stdin, 0, "r"), "stdout": (sys.stdout, 1, "w"), "stderr": (sys.stderr, 2, "w")}

    def _policy(self) -> Any:
        if self.legacy:
            return self.keras.mixed_precision.global_policy()
        return self.keras.config.dtype_policy()

    def read(self) -> dict[str, Any]:
        backend = self.keras.backend
        return {
            "floatx": backend.floatx(),
            "epsilon": backend.epsilon(),
            "image_data_format": backend.image_data_format(),
            "policy": self._policy(),
            "eager": self.tf.config.functions_run_eagerly(),
            "cwd": os.getcwd(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        backend = self.keras.backend
        setters = {
            "floatx": backend.set_floatx,
            "epsilon": backend.set_epsilon,
            "image_data_format": backend.set_image_data_format,
            "policy": (
                self.keras.mixed_precision.set_global_policy if self.legacy else self.keras.config.set_dtype_policy
            ),
            "eager": self.tf.config.run_functions_eagerly,
            "cwd": os.chdir,
        }
        try:
            now = self.read()
        except Exception:  # a loss broke a getter; set everything
            now = {}
        for key, value in state.items():
            if now.get(key, object()) != value:
                try:
                    setters[key](value)
                except Exception:  # best effort: never let a reset end the worker
                    pass
        self.restore_streams()
        self.reseed()

    def restore_streams(self) -> None:
        for name, (saved, fd, mode) in list(self.streams.items()):
            if saved.closed:  # a loss closed it: a fresh wrapper on the same file descriptor
                raw = os.fdopen(fd, mode + "b", closefd=False)
                saved = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", line_buffering=mode == "w")
                self.streams[name] = (saved, fd, mode)
            if getattr(sys, name) is not saved:
                setattr(sys, name, saved)

    def reseed(self) -> None:
        import numpy as np

        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)
        self.tf.random.set_seed(self.seed)
        if not self.legacy:
            try:
                self.keras.utils.set_random_seed(self.seed)  # also resets keras.random's generator
            except Exception:
                pass


_GLOBALS: dict[str, GlobalState] = {}


def _globals(options: dict[str, Any]) -> GlobalState:
    if "state" not in _GLOBALS:
        _GLOBALS["state"] = GlobalState(options["legacy"], options["seed"])
    return _GLOBALS["state"]


def check_module(request: dict[str, Any], options: dict[str, Any], channel: TextIO) -> None:
    from dataclasses import replace

    from lossdiag import _tf

    path = Path(request["path"])
    names = request.get("names")
    scan = discover.scan_file(path, None if names is None else frozenset(names))
    state = _globals(options)
    state.restore(state.initial)
    full_import = request.get("full_import", options.get("full_import", False))
    definitions = None if full_import else discover.import_roots(scan, None if names is None else frozenset(names))
    try:
        module = import_user_module(request["module"], path, Path(request["root"]), definitions)
    except BaseException as exc:  # SystemExit and friends too: the user's module must not end us
        if isinstance(exc, KeyboardInterrupt):
            raise
        _send(channel, event="load_error", message=describe_import_error(exc), line=_error_line(exc, str(path)))
        return
    legacy = options["legacy"]
    from lossdiag import runner

    candidates = discover.materialise(
        module,
        scan,
        None if names is None else frozenset(names),
        lambda fn: _tf.loss_wrapper(fn, legacy),
        _tf.loss_base_classes(legacy),
        metric_wrap=lambda fn: runner.metric_wrapper(fn, legacy),
        metric_bases=runner.metric_base_classes(legacy),
    )
    skip = set(request.get("skip", ()))
    module_state = state.read()  # what the module's import set up is its losses' environment
    _send(channel, event="candidates", names=[c.name for c in candidates])
    for cand in candidates:
        if cand.name in skip:
            continue
        _send(channel, event="start", name=cand.name)
        state.restore(module_state)
        m = measure_candidate(cand, request, options)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed or broken by the loss; restored before the next one
                pass
        _send(channel, event="result", measurement=m.to_json())
    _send(channel, event="done")


def main() -> int:
    # The protocol gets the original stdout; fd 1 then points at stderr, so prints by user code
    # or by TensorFlow can never corrupt it.
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), encoding="utf-8", line_buffering=True)
    # Requests arrive on a private copy of stdin; fd 0 becomes /dev/null, so a loss that calls
    # input() gets EOFError at once instead of hanging until the timeout or eating a request.
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = io.TextIOWrapper(os.fdopen(0, "rb", closefd=False), encoding="utf-8")
    options = json.loads(requests.readline())

    from lossdiag import _tf

    try:
        _tf.load(options["legacy"])
        if options["legacy"]:
            _tf.install_keras2_alias()
    except Exception as exc:
        _send(channel, event="fatal", message=f"cannot import TensorFlow/Keras: {probe.describe_exception(exc)}")
        return 1
    _send(channel, event="ready")
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        check_module(request, options, channel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
