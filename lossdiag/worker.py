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
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

from lossdiag import discover, probe, rules
from lossdiag.measurement import LossMeasurement, Trace


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
    return probe.describe_exception(exc) + (f"; {hint}" if hint else "")


def import_user_module(name: str, path: Path, root: Path) -> Any:
    """Import `path` under `name` with its folder (and the working directory) on sys.path."""
    for entry in (str(Path.cwd()), str(root)):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    old = sys.modules.get(name)
    if old is not None and Path(getattr(old, "__file__", "") or "").resolve() == path.resolve():
        return old
    sys.modules.pop(name, None)
    if "." in name:
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
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _ladder(request: dict[str, Any], name: str) -> tuple[probe.ProbeSpec, ...]:
    override = request.get("probes", {}).get(name)
    if override:
        return (probe.parse_spec(override),)
    return probe.DEFAULT_LADDER


def _trace(runner: probe.LossRunner, m: LossMeasurement, seed: int) -> Trace | None:
    if m.chosen is None:
        return None
    codes = {code for code, _ in rules.classify(m.probes[m.chosen])}
    if not codes & set(rules.BATCH_AXIS_CODES):
        return None
    try:
        from lossdiag import trace
    except ImportError:  # pragma: no cover - trace ships with lossdiag
        return None
    spec = m.probes[m.chosen].spec
    try:
        return trace.trace_loss(runner.loss.call, lambda b: probe.make_batch(spec, b, seed))
    except Exception as exc:  # tracing is best effort: the numeric verdict stands without it
        return Trace(error=probe.describe_exception(exc))


def check_module(request: dict[str, Any], options: dict[str, Any], channel: TextIO) -> None:
    from dataclasses import replace

    from lossdiag import _tf

    path = Path(request["path"])
    scan = discover.scan_file(path)
    try:
        module = import_user_module(request["module"], path, Path(request["root"]))
    except BaseException as exc:  # SystemExit and friends too: the user's module must not end us
        if isinstance(exc, KeyboardInterrupt):
            raise
        _send(channel, event="load_error", message=describe_import_error(exc), line=_error_line(exc, str(path)))
        return
    legacy = options["legacy"]
    names = request.get("names")
    candidates = discover.materialise(
        module,
        scan,
        None if names is None else frozenset(names),
        lambda fn: _tf.loss_wrapper(fn, legacy),
        _tf.loss_base_classes(legacy),
    )
    skip = set(request.get("skip", ()))
    _send(channel, event="candidates", names=[c.name for c in candidates])
    for cand in candidates:
        if cand.name in skip:
            continue
        _send(channel, event="start", name=cand.name)
        base = LossMeasurement(
            name=cand.name, kind=cand.kind, file=cand.file, line=cand.line,
            batch_size=options["batch_size"], error=cand.error, skipped=cand.skipped,
        )
        m = base
        if cand.loss is not None:
            try:
                runner = probe.LossRunner(cand.loss, legacy)
                m = probe.measure_loss(
                    runner, base, _ladder(request, cand.name), options["batch_size"], options["seed"], rules.choose_probe
                )
                if options.get("trace", True):
                    m = replace(m, trace=_trace(runner, m, options["seed"]))
            except Exception as exc:  # a bug of ours or a loss that breaks Keras itself
                m = replace(base, error="probing raised " + probe.describe_exception(exc))
        sys.stdout.flush()
        sys.stderr.flush()
        _send(channel, event="result", measurement=m.to_json())
    _send(channel, event="done")


def main() -> int:
    # The protocol gets the original stdout; fd 1 then points at stderr, so prints by user code
    # or by TensorFlow can never corrupt it.
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), encoding="utf-8", line_buffering=True)
    options = json.loads(sys.stdin.readline())

    from lossdiag import _tf

    try:
        _tf.load(options["legacy"])
        if options["legacy"]:
            _tf.install_keras2_alias()
    except Exception as exc:
        _send(channel, event="fatal", message=f"cannot import TensorFlow/Keras: {probe.describe_exception(exc)}")
        return 1
    _send(channel, event="ready")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        check_module(request, options, channel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
