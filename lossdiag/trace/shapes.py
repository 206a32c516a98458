"""Symbolic shapes from two graph traces: an axis that is `b` in both is the batch axis `B`."""

from __future__ import annotations

from typing import Any

Labels = tuple[str, ...]


def label(d1: int | None, d2: int | None, b1: int, b2: int) -> str:
    """One axis: `B`, `B*B` (every sample paired with every other), `B*k` (merged with k features) or its size."""
    if d1 is None or d2 is None:
        return "?"
    if d1 == b1 and d2 == b2:
        return "B"
    if d1 == b1 * b1 and d2 == b2 * b2:
        return "B*B"
    if d1 % b1 == 0 and d2 % b2 == 0 and d1 // b1 == d2 // b2 and d1 // b1 > 1:
        return f"B*{d1 // b1}"
    if d1 == d2:
        return str(d1)
    return "~B"  # depends on the batch size some other way


def labels(shape1: Any, shape2: Any, b1: int, b2: int) -> Labels | None:
    """Symbolic dims of one tensor, or None when its rank is unknown or differs between traces."""
    if shape2 is None or shape1.rank is None or shape2.rank is None or shape1.rank != shape2.rank:
        return None
    return tuple(label(a, b, b1, b2) for a, b in zip(shape1.as_list(), shape2.as_list(), strict=True))


def batchy(dims: Labels | None) -> bool:
    """Might depend on the batch size (unknown shapes included)."""
    return dims is None or any(d == "B" or d.startswith("B*") or d in ("~B", "?") for d in dims)


def has_batch(dims: Labels | None) -> bool:
    return dims is not None and any(d == "B" or d.startswith("B*") or d == "~B" for d in dims)


def crossed(dims: Labels | None) -> bool:
    return dims is not None and ("B*B" in dims or dims.count("B") >= 2)


def paired(dims: Labels | None) -> bool:
    """Two axes that each follow the batch (`B` or the batch merged with features, `B*k`), or a `B*B` one:
    samples (or their elements) were paired across the batch."""
    if dims is None:
        return False
    return "B*B" in dims or sum(1 for d in dims if d == "B" or d.startswith("B*")) >= 2


def merged(dims: Labels | None) -> bool:
    return dims is not None and any(d.startswith("B*") and d != "B*B" for d in dims)


def fmt(dims: Labels | None) -> str:
    if dims is None:
        return "(?)"
    if len(dims) == 1:
        return f"({dims[0]},)"
    return "(" + ", ".join(dims) + ")"
