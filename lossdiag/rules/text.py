"""Shared wording for findings: shapes, numbers and layouts as the messages write them."""

from __future__ import annotations

from lossdiag.measurement import ProbeSpec


def shape(dims: tuple[int | str, ...]) -> str:
    """`(32,)`, `(B, 2)`, `()`."""
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def ratio(value: float) -> str:
    return f"{value:#.3g}×"


def layout(spec: ProbeSpec) -> str:
    """`binary y_true=(B, 2) y_pred=(B, 2)`."""
    return f"{spec.labels} y_true={shape(spec.y_true)} y_pred={shape(spec.y_pred)}"


def per_sample_axes(spec: ProbeSpec) -> str:
    """The reduction that keeps one value per sample for this layout."""
    rank = len(spec.y_pred)
    return "axis=-1" if rank <= 2 else "axis=[" + ", ".join(str(i) for i in range(1, rank)) + "]"


def sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".") if text else ""
