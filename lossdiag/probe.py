"""Measure one loss: find the layout it was written for, then measure magnitudes, coupling, boundaries and gradients there."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lossdiag import batches, layouts
from lossdiag.measurement import (
    LABEL_KINDS,
    PROBABILITY_LABELS,
    Coupling,
    Layout,
    LossMeasurement,
    ProbeSpec,
    Trial,
)
from lossdiag.runner import LossRunner, UserLossError, describe_exception, reduction_of

__all__ = ["ProbeContext", "describe_exception", "keras2_hint", "measure_loss", "parse_spec"]

MAX_TRIALS = 24  # layouts tried before a loss is reported as not probed
PROBE_BYTES = 100 * 2**20  # no single tensor of a probe may need more than this


@dataclass(frozen=True)
class ProbeContext:
    """How to probe: the batch, the seed, the Keras, a layout the user pinned, and the heartbeat."""

    batch_size: int = 32
    seed: int = 0
    legacy: bool = False
    pinned: ProbeSpec | None = None
    pinned_origin: str = "given"  # "given" (--probe) | "config" ([tool.lossdiag.probes])
    trace: bool = True
    on_call: Callable[[], None] | None = None


def parse_spec(text: str) -> ProbeSpec:
    """`y_true=B,2;y_pred=B,2;labels=binary` into a ProbeSpec (raises ValueError with the reason)."""
    parts: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in ("y_true", "y_pred", "labels"):
            raise ValueError(f"expected y_true=...;y_pred=...;labels=..., got {item!r}")
        parts[key.strip()] = value.strip()
    if "y_pred" not in parts:
        raise ValueError("y_pred=... is required")
    y_pred = _parse_shape("y_pred", parts["y_pred"])
    y_true = _parse_shape("y_true", parts["y_true"]) if "y_true" in parts else y_pred
    labels = parts.get("labels", "binary")
    if labels not in LABEL_KINDS:
        raise ValueError(f"labels must be one of {', '.join(LABEL_KINDS)}, got {labels!r}")
    if labels == "sparse" and len(y_pred) < 2:
        raise ValueError("sparse labels need y_pred with a class axis, e.g. y_true=B;y_pred=B,10;labels=sparse")
    return ProbeSpec(y_true, y_pred, labels)


def _parse_shape(key: str, text: str) -> tuple[int | str, ...]:
    dims: list[int | str] = []
    for d in (part.strip() for part in text.split(",")):
        if d == "B":
            dims.append("B")
        elif d.isdigit() and 0 < int(d) <= 100_000:
            dims.append(int(d))
        else:
            raise ValueError(f"{key}: dimension {d!r} is neither B nor a positive integer")
    if dims.count("B") != 1 or dims[0] != "B":
        raise ValueError(f"{key}: the shape must start with the batch axis B, and have it once")
    return tuple(dims)


# ----------------------------------------------------------------------------------------------
# finding the layout


@dataclass(frozen=True)
class _Accepted:
    proposal: layouts.Proposal
    batch: batches.Batch
    out: Any
    shapes: tuple[tuple[int, tuple[int, ...]], ...]
    idle: bool = False  # the output does not depend on y_pred here


def _close(a: Any, b: Any) -> bool:
    if a.shape != b.shape:
        return False
    scale = float(np.abs(a).max()) if a.size else 0.0
    return bool(np.allclose(a, b, rtol=1e-5, atol=1e-6 * max(scale, 1.0)))


def _too_big(spec: ProbeSpec, batch_size: int) -> str | None:
    """A layout whose own batches (at twice the batch size, for the growth probe) exceed the budget."""
    t_shape, p_shape = spec.at(2 * batch_size)
    size = 4 * (math.prod(t_shape) + math.prod(p_shape))
    if size > PROBE_BYTES:
        return f"the layout's batches alone need {size / 2**20:.0f} MB at batch size {2 * batch_size}"
    return None


def _explodes(runner: LossRunner, spec: ProbeSpec, ctx: ProbeContext) -> str | None:
    """A wide layout on which the loss would build a tensor over the budget (a (B, B, H, W) pairing on
    images): estimated from graph traces at small batch sizes before anything large is allocated."""
    per_sample = math.prod(spec.at(1)[1])
    largest = 2 * ctx.batch_size  # the growth probe repeats half the batch four times
    if (largest * per_sample) ** 2 * 4 <= PROBE_BYTES:
        return None  # even a full pairing of every element with every other fits
    from lossdiag import trace

    sizes = batches.trace_batch_sizes(spec)
    call = runner.loss.call if runner.via_call else runner.loss
    if ctx.on_call is not None:
        ctx.on_call()
    peak = trace.estimate_peak_bytes(call, lambda b: batches.make(spec, b, ctx.seed), sizes, largest)
    if peak is not None and peak > PROBE_BYTES:
        return f"it would build a {peak / 2**20:.0f} MB tensor at batch size {largest} (every sample paired with every other?)"
    return None


def try_layout(runner: LossRunner, proposal: layouts.Proposal, ctx: ProbeContext) -> tuple[Trial, _Accepted | None]:
    """Whether the loss runs on this layout, gives finite values and depends on y_pred."""
    spec, size = proposal.spec, ctx.batch_size

    def rejected(error: str) -> tuple[Trial, None]:
        return Trial(spec, proposal.origin, proposal.reason, error), None

    if (too_big := _too_big(spec, size) or _explodes(runner, spec, ctx)) is not None:
        return rejected(too_big)
    batch = batches.make(spec, size, ctx.seed)
    try:
        out = runner.raw(*batch)
        if not np.isfinite(out).all():
            return rejected(f"NaN or inf on ordinary inputs (output shape {tuple(out.shape)})")
        moved = runner.raw(batch[0], batches.make(spec, size, ctx.seed, salt=2)[1])
    except UserLossError as exc:
        return rejected(str(exc))
    idle = _close(out, moved)
    shapes = [(size, tuple(out.shape))]
    for other in batches.second_batch_size(spec, size):
        try:
            shapes.append((other, tuple(runner.raw(*batches.make(spec, other, ctx.seed)).shape)))
            break
        except UserLossError:
            continue
    accepted = _Accepted(proposal, batch, out, tuple(sorted(shapes)), idle)
    if idle:
        return Trial(spec, proposal.origin, proposal.reason, f"its output does not depend on y_pred here (shape {tuple(out.shape)})"), accepted
    return Trial(spec, proposal.origin, proposal.reason), accepted


def find_layout(
    runner: LossRunner, proposals: list[layouts.Proposal], ctx: ProbeContext
) -> tuple[tuple[Trial, ...], _Accepted | None]:
    """The first proposal the loss runs on and depends on; every trial, for the report.

    A loss whose output depends on y_pred on no layout at all (it returns a constant) is measured on
    the first layout it ran on: what it lacks is a gradient, and LD202 says so.
    """
    trials: list[Trial] = []
    idle: tuple[int, _Accepted] | None = None
    for proposal in proposals[:MAX_TRIALS]:
        trial, accepted = try_layout(runner, proposal, ctx)
        trials.append(trial)
        if accepted is not None and not accepted.idle:
            return tuple(trials), accepted
        if accepted is not None and idle is None:
            idle = (len(trials) - 1, accepted)
    if idle is None:
        return tuple(trials), None
    index, accepted = idle
    trials[index] = replace(trials[index], error=None)
    return tuple(trials), accepted


# ----------------------------------------------------------------------------------------------
# measuring it


def batch_axes(shapes: tuple[tuple[int, tuple[int, ...]], ...]) -> list[int]:
    """Axes equal to the batch size at every batch size tried."""
    ranks = {len(s) for _, s in shapes}
    if len(ranks) != 1:
        return []
    rank = ranks.pop()
    return [i for i in range(rank) if all(s[i] == b for b, s in shapes)]


def _growth(runner: LossRunner, batch: batches.Batch, size: int) -> tuple[float, ...]:
    """The reported value for the half batch repeated twice and four times, over its value once."""
    half = batches.head(batch, max(2, size // 2))
    try:
        once = runner.reported(*half)
        if not once or not math.isfinite(once):
            return ()
        out = tuple(runner.reported(*batches.repeat(half, k)) / once for k in (2, 4))
    except UserLossError:  # a loss that only takes some batch sizes
        return ()
    return out if all(math.isfinite(g) for g in out) else ()


KEPT = 4  # samples kept while every other sample is replaced, in the coupling probe


def _coupling(runner: LossRunner, acc: _Accepted, ctx: ProbeContext) -> Coupling | None:
    """Replace every sample but the first few: their values must not move. (Replacing all the others, not
    one or two, also catches a coupling through the batch's extreme, such as `K.max(x, 0)`.)"""
    axes = batch_axes(acc.shapes)
    size = ctx.batch_size
    if len(axes) != 1 or size <= KEPT:
        return None
    axis = axes[0]
    kept = _watched(acc.out, axis, size)
    changed = [i for i in range(size) if i not in kept]
    other = batches.replacement(acc.proposal.spec, acc.batch, ctx.seed)

    def moved(which: str) -> float:
        try:
            out = runner.raw(*batches.replace_samples(acc.batch, other, changed, which))
        except UserLossError:
            return 0.0
        if out.shape != acc.out.shape:
            return 0.0
        before = np.take(acc.out, kept, axis=axis)
        diff = np.abs(np.take(out, kept, axis=axis) - before)
        # relative to each value itself: a few huge outputs elsewhere must not hide a real change here
        moved_by = diff[diff > 1e-6 + 1e-4 * np.abs(before)]
        return float(moved_by.max()) if moved_by.size else 0.0

    delta = moved("both")
    if not delta:
        return None
    via = [w for w in ("targets", "predictions") if moved(w)]
    return Coupling(tuple(kept), delta, via[0] if len(via) == 1 else "both")


def _valued_samples(out: Any, axis: int, size: int) -> list[int]:
    """The samples whose output along the batch axis is not all 0: a masked loss is 0 for the samples
    it skips, and a 0 that stays 0 (or matches any scale) shows nothing."""
    rows = np.moveaxis(np.asarray(out), axis, 0).reshape(size, -1)
    return [int(i) for i in np.flatnonzero(np.any(rows != 0, axis=1))]


def _watched(out: Any, axis: int, size: int) -> list[int]:
    """The samples whose values the coupling probe watches: the first few with a value, else the first few."""
    live = _valued_samples(out, axis, size)
    return live[:KEPT] if len(live) >= KEPT else list(range(KEPT))


def _pairing_free(runner: LossRunner, acc: _Accepted, ctx: ProbeContext) -> bool:
    """The value follows the targets, yet stays when the targets (or the predictions) are handed to other
    samples: every prediction was compared with every target. A loss that ignores its targets has no
    pairing to measure."""
    y_true, y_pred = acc.batch
    other = batches.make(acc.proposal.spec, ctx.batch_size, ctx.seed, salt=3)
    try:
        if _close(runner.raw(other[0], y_pred), acc.out):
            return False  # the targets do not matter here
        return any(
            _close(runner.raw(*rolled), acc.out)
            for rolled in ((batches.roll(y_true), y_pred), (y_true, batches.roll(y_pred)))
        )
    except UserLossError:
        return False


def _boundary(runner: LossRunner, spec: ProbeSpec, ctx: ProbeContext) -> str | None:
    made = batches.boundary(spec, ctx.batch_size, ctx.seed) if spec.labels in PROBABILITY_LABELS else None
    if made is None:
        return None
    batch, cases = made
    try:
        out = runner.raw(*batch)
    except UserLossError:
        return None
    if np.isfinite(out).all():
        return None
    bad = "NaN" if np.isnan(out).any() else "inf"
    size = ctx.batch_size
    if out.ndim and out.shape[0] == size:
        rows = ~np.isfinite(out.reshape(size, -1)).all(axis=1)
        hit = [cases[i] for i in (0, 1) if rows[i::2].any()]
        return f"{bad} in {int(rows.sum())} of {size} samples for " + " and for ".join(hit)
    return f"{bad} for predictions exactly at 0 and 1 ({cases[0]} in even samples, {cases[1]} in odd ones)"


def _alone(runner: LossRunner, batch: batches.Batch, rows: range | list[int]) -> list[float]:
    return [runner.reported(batch[0][i : i + 1], batch[1][i : i + 1]) for i in rows]


def _expected(runner: LossRunner, acc: _Accepted, per_sample: bool) -> tuple[float | None, bool, bool]:
    """Mean over samples of the Keras-reported value of each sample alone; and whether one was nonfinite.

    For an uncoupled per-sample output, a sample alone that matches its row of the batch output stands
    for all of them (the mean of the rows is then the answer: a division by the batch size would show
    in that one row); otherwise every sample is run.
    """
    out, size = acc.out, acc.batch[0].shape[0]
    try:
        return _expected_values(runner, acc, per_sample, out, size)
    except UserLossError:  # the loss cannot take one sample alone (a fixed reshape, a batch statistic)
        return None, False, False


def _expected_values(
    runner: LossRunner, acc: _Accepted, per_sample: bool, out: Any, size: int
) -> tuple[float | None, bool, bool]:
    """(expected, some sample alone was nonfinite, every sample alone gave the same value)."""
    witness = next(iter(_valued_samples(out, 0, size)), None) if per_sample else None
    if witness is not None:
        first = _alone(runner, acc.batch, [witness])
        if math.isfinite(first[0]) and np.allclose(first, [float(out[witness].mean())], rtol=1e-4, atol=1e-6):
            return float(out.mean()), False, False
    values = _alone(runner, acc.batch, range(size))
    if not all(math.isfinite(v) for v in values):
        return None, True, False
    constant = size > 2 and max(values) - min(values) <= 1e-6 * max(1.0, abs(values[0]))
    return sum(values) / len(values), False, constant


def _gradient(runner: LossRunner, acc: _Accepted, ctx: ProbeContext) -> tuple[float, str | None]:
    reported, gradient = runner.reported_and_gradient(*acc.batch)
    if gradient == "zero":  # a saturated batch (every hinge inactive) is not a missing gradient: try another
        _, gradient = runner.reported_and_gradient(*batches.make(acc.proposal.spec, ctx.batch_size, ctx.seed, salt=4))
    return reported, gradient


def measure_layout(runner: LossRunner, acc: _Accepted, ctx: ProbeContext) -> Layout:
    """Every measurement the rules need, on the accepted layout."""
    axes = batch_axes(acc.shapes)
    reported, gradient = _gradient(runner, acc, ctx)
    coupling = _coupling(runner, acc, ctx)
    reduction = reduction_of(runner.loss)
    per_sample = axes == [0] and coupling is None and runner.via_call
    expected, alone_nonfinite, alone_constant = _expected(runner, acc, per_sample)
    # An uncoupled per-sample output under Keras' own averaging cannot grow with the batch, and cannot
    # ignore the pairing of targets with predictions: those probes are only run where they can show something.
    plain = per_sample and reduction is None
    return Layout(
        spec=acc.proposal.spec,
        origin=acc.proposal.origin,
        reason=acc.proposal.reason,
        shapes=acc.shapes,
        reported=reported,
        growth=(1.0, 1.0) if plain else _growth(runner, acc.batch, ctx.batch_size),
        coupling=coupling,
        pairing_free=False if plain else _pairing_free(runner, acc, ctx),
        boundary=_boundary(runner, acc.proposal.spec, ctx) if acc.proposal.probabilities else None,
        gradient=gradient,
        expected=expected,
        alone_nonfinite=alone_nonfinite,
        alone_constant=alone_constant,
        reduction=reduction,
        via_call=runner.via_call,
    )


def needs_location(layout: Layout) -> bool:
    """Whether the batch axis did something worth pointing at in the source (a trace is then worth it)."""
    axes = batch_axes(layout.shapes)
    linear = len(layout.growth) == 2 and abs(layout.growth[0] - 2) < 0.01
    return axes != [0] or layout.coupling is not None or layout.pairing_free or linear


_KERAS2_BACKEND = re.compile(r"module 'keras(\.src)?\.backend' has no attribute '(\w+)'")


def keras2_hint(error: str) -> str:
    """Advice for a loss that failed only because Keras 3 removed a Keras-2 backend function."""
    match = _KERAS2_BACKEND.search(error)
    if not match:
        return ""
    return (
        f"K.{match.group(2)} is a Keras-2 backend function that Keras 3 removed: "
        "rerun with --legacy-keras (or set legacy-keras = true) to check it on tf_keras"
    )


def _proposals(loss: Any, names: tuple[str, ...], ctx: ProbeContext) -> list[layouts.Proposal]:
    if ctx.pinned is not None:
        return layouts.pinned(ctx.pinned, ctx.pinned_origin)
    return layouts.propose(loss, names, legacy=ctx.legacy)


def measure_loss(base: LossMeasurement, loss: Any, ctx: ProbeContext, runner: LossRunner | None = None) -> LossMeasurement:
    """Find the loss's layout and measure it; a loss that runs on none is returned with its trials (LD002).
    `runner` calls it another way with the same interface (a metric: `runner.MetricRunner`)."""
    runner = runner if runner is not None else LossRunner(loss, ctx.legacy, ctx.on_call)
    trials, accepted = find_layout(runner, _proposals(loss, (base.name,), ctx), ctx)
    if accepted is None:
        hint = next((h for h in (keras2_hint(t.error or "") for t in trials) if h), "")
        return replace(base, trials=trials, batch_size=ctx.batch_size, hint=hint)
    try:
        layout = measure_layout(runner, accepted, ctx)
    except UserLossError as exc:
        error = f"it ran on {accepted.proposal.spec.text()} but then raised: {exc}"
        return replace(base, trials=trials, batch_size=ctx.batch_size, error=error)
    m = replace(base, trials=trials, layout=layout, batch_size=ctx.batch_size)
    if needs_location(layout):
        m = _with_trace(runner, m, ctx)
    return m


def _with_trace(runner: LossRunner, m: LossMeasurement, ctx: ProbeContext) -> LossMeasurement:
    """Trace the loss as a graph: where the batch axis went (for the report), and whether a (B,)-vs-(B, 1)
    broadcast paired samples (for the verdict, so it is measured even with --no-trace)."""
    from lossdiag import trace

    assert m.layout is not None
    spec = m.layout.spec
    call = runner.loss.call if runner.via_call else runner.loss
    make = lambda b: batches.make(spec, b, ctx.seed)  # noqa: E731
    result = trace.trace_loss(call, make, batch_sizes=batches.trace_batch_sizes(spec), on_call=ctx.on_call)
    layout = replace(m.layout, cross_op=result.cross_op, pooled_pairs=result.pooled_pairs)
    return replace(m, layout=layout, trace=result.trace if ctx.trace else None)
