"""LD002 and LD004: a loss that ran on no layout, and a loss on which lossdiag's own code failed."""

from __future__ import annotations

from lossdiag.measurement import LossMeasurement, Trial
from lossdiag.rules import text


def _layout(trial: Trial) -> str:
    spec = trial.spec
    shapes = text.shape(spec.y_pred) if spec.y_true == spec.y_pred else f"{text.shape(spec.y_true)} against {text.shape(spec.y_pred)}"
    return f"{shapes} {spec.labels}"


def message(m: LossMeasurement) -> str:
    """Why, with each distinct error and the layouts that raised it."""
    if m.error:
        return m.error
    groups: dict[str, list[str]] = {}
    for trial in m.trials:
        groups.setdefault(trial.error or "no usable output", []).append(_layout(trial))
    if m.hint.startswith("K."):
        return f"{m.hint.split(':')[0]} ({next(iter(groups), 'no layout')})"
    if not groups:
        return "no layout was tried"
    parts = [f"{error} [{', '.join(layouts[:4])}{', …' if len(layouts) > 4 else ''}]" for error, layouts in list(groups.items())[:3]]
    more = f"; and {len(groups) - 3} other errors" if len(groups) > 3 else ""
    return f"every probe layout failed ({len(m.trials)} tried): " + "; ".join(parts) + more


def hint(m: LossMeasurement) -> str:
    """What to do about an LD002, by its cause."""
    error = m.error or ""
    if m.hint:
        return m.hint
    if error.startswith("timed out"):
        return "if one call of the loss is only slow, give it more time with --timeout (or timeout = ... in [tool.lossdiag])"
    if error.startswith("used more than"):
        return "if it really needs that much memory, raise --max-memory; otherwise look for a (B, B, ...) tensor"
    if error.startswith(("the process crashed", "the process exited", "the loss called")):
        return "the loss ended the process: call it on a small batch outside lossdiag to see why (-v shows what it printed)"
    if error.startswith("building it raised"):
        return "the factory or constructor needs other arguments: create the loss at module level and check that"
    if "only set under" in error:
        return "define the value at module level (lossdiag imports definitions only and never runs the __main__ block)"
    pinned = [t for t in m.trials if t.origin in ("given", "config")]
    if pinned:
        return f"the loss raised on the layout you gave ({pinned[0].spec.text()}): check the shapes and labels kind"
    return (
        f"give the shapes it takes: --probe '{m.name}=y_true=B,...;y_pred=B,...;labels=binary' "
        "or [tool.lossdiag.probes] (labels: binary, probs, onehot, sparse or real)"
    )


def internal_message(m: LossMeasurement) -> str:
    first = (m.internal_error or "").strip().splitlines()
    last = first[-1] if first else "an unexpected error"
    return f"lossdiag failed while checking this loss ({last}); this is a bug in lossdiag, not in the loss"


INTERNAL_HINT = "run with -v for the traceback and please report it; the rest of the report is intact"
