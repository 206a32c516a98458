"""LD201: NaN or inf when predictions sit exactly at 0 or 1 on a layout whose predictions are probabilities."""

from __future__ import annotations

from lossdiag.measurement import LossMeasurement
from lossdiag.rules import text
from lossdiag.rules.detection import Detection


def detect(m: LossMeasurement) -> Detection | None:
    layout = m.layout
    if layout is None or not layout.boundary:
        return None
    return Detection(
        "LD201",
        f"{layout.boundary} ({text.layout(layout.spec)}).",
        "clip predictions before log or division: ops.clip(y_pred, 1e-7, 1 - 1e-7)",
    )
