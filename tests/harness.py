"""In-process verdicts for a source snippet, as pyflakes' `flakes()` does for messages: no worker, no CLI.

    codes("def f(y_true, y_pred):\n    return ops.sum(y_true - y_pred)\n") == {"f": {"LD101"}}

The snippet is scanned and materialised the way the worker does it, every candidate is probed with
`probe.measure_loss`, and the rules turn the measurements into codes. TensorFlow is imported once per
test session; each call costs the probes only, so verdict tests run in a fraction of a second each.
"""

from __future__ import annotations

import textwrap
import types
from itertools import count
from pathlib import Path
from typing import Any

from lossdiag import discover, probe, rules
from lossdiag.measurement import LossMeasurement

_modules = count()


def _module(source: str, folder: Path) -> tuple[types.ModuleType, discover.FileScan]:
    """Write the snippet to a file (tracebacks and `inspect.getsource` need one) and import it."""
    import importlib.util

    path = folder / f"snippet_{next(_modules)}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, discover.scan_file(path)


def measure(source: str, folder: Path, **context: Any) -> dict[str, LossMeasurement]:
    """Every candidate of the snippet, measured as the worker would (`context`: ProbeContext fields)."""
    from lossdiag import _tf

    module, scan = _module(textwrap.dedent(source), folder)
    candidates = discover.materialise(module, scan, None, _tf.loss_wrapper, _tf.loss_base_classes())
    ctx = probe.ProbeContext(trace=False, **context)
    out = {}
    for cand in candidates:
        base = LossMeasurement(cand.name, cand.kind, cand.file, cand.line, error=cand.error, skipped=cand.skipped)
        out[cand.name] = probe.measure_loss(base, cand.loss, ctx) if cand.loss is not None else base
    return out


def codes(source: str, folder: Path, **context: Any) -> dict[str, set[str]]:
    """{loss name: the codes it gets}; `{"pass"}` for none, `{"LD002"}` when no layout was accepted."""
    verdicts: dict[str, set[str]] = {}
    for name, m in measure(source, folder, **context).items():
        if m.skipped:
            verdicts[name] = {"skipped"}
        elif m.layout is None:
            verdicts[name] = {"LD004"} if m.internal_error else {"LD002"}
        else:
            verdicts[name] = {d.code for d in rules.detect(m)} or {"pass"}
    return verdicts
