"""LD202: no gradient reaches a loss's y_pred (round, argmax, a cast to integers or stop_gradient on the way); never for a metric."""

from __future__ import annotations

from lossdiag.measurement import LossMeasurement
from lossdiag.rules import text
from lossdiag.rules.detection import Detection


def detect(m: LossMeasurement) -> Detection | None:
    layout = m.layout
    if m.role == "metric":  # a metric is logged, never differentiated: it needs no gradient
        return None
    if layout is None or layout.gradient not in ("none", "zero"):
        return None
    what = "None" if layout.gradient == "none" else "zero everywhere"
    return Detection(
        "LD202",
        f"the gradient of the reported loss with respect to y_pred is {what} ({text.layout(layout.spec)}).",
        "remove round/argmax/cast/stop_gradient from the path from y_pred to the loss value",
    )
