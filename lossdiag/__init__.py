"""lossdiag: probe Keras losses and metrics for batch-axis mistakes (`lossdiag.check`, `lossdiag.check_loss`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["LossResult", "ProbeSpec", "Report", "check", "check_loss"]

if TYPE_CHECKING:  # the real imports happen on first use: `import lossdiag` stays cheap and never loads TensorFlow
    from lossdiag.api import check, check_loss
    from lossdiag.measurement import ProbeSpec
    from lossdiag.models import LossResult, Report

_LAZY = {
    "check": "lossdiag.api", "check_loss": "lossdiag.api", "ProbeSpec": "lossdiag.measurement",
    "LossResult": "lossdiag.models", "Report": "lossdiag.models",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'lossdiag' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
