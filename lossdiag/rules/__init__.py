"""Rules: the catalogue of codes, and the detectors that turn one loss's measurements into findings."""

from __future__ import annotations

from dataclasses import dataclass

from lossdiag.measurement import LossMeasurement
from lossdiag.rules import batch_axis, gradient, not_probed, numerics
from lossdiag.rules.catalogue import RULES, RULES_BY_NAME, Rule, lookup, rule_doc_markdown
from lossdiag.rules.detection import Detection

__all__ = [
    "BATCH_AXIS_CODES", "RULES", "RULES_BY_NAME", "Detection", "Located", "Rule", "detect", "locate", "lookup",
    "magnitude", "not_probed", "pin", "rule_doc_markdown",
]

BATCH_AXIS_CODES = batch_axis.CODES
magnitude = batch_axis.magnitude

# The passes, in report order: one batch-axis verdict, then the numeric and gradient checks.
DETECTORS = (batch_axis.detect, numerics.detect, gradient.detect)


def detect(m: LossMeasurement) -> list[Detection]:
    """Every rule a measured loss breaks (none for a loss that keeps the contract)."""
    return [d for d in (detector(m) for detector in DETECTORS) if d is not None]


def pin(m: LossMeasurement) -> str:
    """For an inferred layout, the `--probe` that pins it, to add to a finding's hint ("" when it was given)."""
    layout = m.layout
    if layout is None or layout.origin in ("given", "config"):
        return ""
    return f" (layout inferred from {layout.origin}; pin it with --probe '{m.name}={layout.spec.text()}')"


@dataclass(frozen=True)
class Located:
    """Where a detection points: the op to fix, what the trace said of it, and the lines that set it up."""

    file: str
    line: int
    extra: str = ""
    related: tuple[tuple[str, int, str], ...] = ()
    hint: str = ""


def locate(d: Detection, m: LossMeasurement) -> Located:
    """The traced op behind a detection, else the loss's own definition line."""
    trace = m.trace
    event = None
    if trace is not None:
        event = next((e for kind in d.locate_by if (e := trace.first(kind)) is not None), None)
    if trace is None or event is None:
        return Located(m.file, m.line)
    related = tuple(
        (e.file, e.line, e.message or f"{e.op} {e.shapes}".strip())
        for e in trace.events
        if e.kind == "setup" and (e.file, e.line) != (event.file, event.line)
    )
    extra = event.message or f"{event.op} {event.shapes}".strip()
    return Located(event.file, event.line, extra, related, trace.hint if d.trace_hint else "")
