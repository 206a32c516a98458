"""LD101–LD105: what a loss did to the batch axis, read from its output shapes, growth, coupling and pairing."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lossdiag.measurement import Layout, LossMeasurement
from lossdiag.rules import text
from lossdiag.rules.detection import Detection

CODES = ("LD101", "LD102", "LD103", "LD104", "LD105")
STATISTIC = "batch statistic"  # LossResult.na_reason for a loss whose samples have no value alone
RUNNING_TOTAL = "running total"  # LossResult.na_reason for a stateful metric that sums on purpose (a count)


@dataclass(frozen=True)
class Shapes:
    """The output's axes at every batch size tried: which follow the batch, which merged it."""

    batch: tuple[int, ...]  # axes equal to the batch size at every size
    merged: tuple[int, ...]  # axes that are a whole multiple (B*k) of it
    squared: bool  # an axis of B*B: every sample paired with every other
    same_rank: bool
    size: int  # elements of the output at the user's batch size

    @classmethod
    def of(cls, layout: Layout) -> Shapes:
        shapes = layout.shapes
        ranks = {len(s) for _, s in shapes}
        out = layout.batch_shape
        size = math.prod(out) if out else 1
        if len(ranks) != 1:
            return cls((), (), False, False, size)
        rank = ranks.pop()
        batch = tuple(i for i in range(rank) if all(s[i] == b for b, s in shapes))
        squared = any(all(s[i] == b * b for b, s in shapes) for i in range(rank))
        merged = tuple(i for i in range(rank) if i not in batch and _multiple(shapes, i))
        return cls(batch, merged, squared, True, size)


def _multiple(shapes: tuple[tuple[int, tuple[int, ...]], ...], axis: int) -> bool:
    """An axis that is the same whole multiple (B*k, k > 1) of the batch size at every size tried."""
    if len(shapes) < 2:
        return False
    factors = {s[axis] / b for b, s in shapes}
    factor = factors.pop()
    return not factors and factor > 1 and float(factor).is_integer()


def is_sum(layout: Layout) -> bool:
    """The reported value doubles when the batch is repeated twice, and quadruples at four times: a sum.

    Exact linearity, not a cut-off on one growth factor: a pooled dice with a large smoothing constant
    also grows on a small batch, but never in exact proportion.
    """
    if len(layout.growth) != 2:
        return False
    two, four = layout.growth
    return abs(two - 2.0) <= 0.02 and abs(four - 4.0) <= 0.04


def is_stateful_metric(m: LossMeasurement) -> bool:
    """A `keras.metrics.Metric` with its own `update_state`: no per-sample output, only a result."""
    return m.role == "metric" and m.layout is not None and not m.layout.via_call


def is_running_total(layout: Layout) -> bool:
    """A stateful metric whose result doubles when the same batch is given to update_state twice."""
    return layout.update_growth is not None and abs(layout.update_growth - 2.0) <= 0.04


def _stateful_na(m: LossMeasurement, layout: Layout, ratio: float) -> str | None:
    """Why a stateful metric's ratio means nothing: a running total (a count on purpose), or an epoch
    statistic (precision, AUC) whose batch value is no mean of per-sample values."""
    if not is_stateful_metric(m) or abs(ratio - 1.0) <= 1e-3:
        return None
    if is_running_total(layout):
        return RUNNING_TOTAL
    return None if is_sum(layout) else STATISTIC


def magnitude(m: LossMeasurement) -> tuple[float | None, float | None, float | None, str]:
    """(expected, actual, ratio, na_reason): the numbers the report shows, n/a where they mean nothing."""
    layout = m.layout
    if layout is None:
        return None, None, None, ""
    expected, actual = layout.expected, layout.reported
    # pooled over the batch (or coupled) and no sum: it may be a statistic with no per-sample value
    pooled = (Shapes.of(layout).batch != (0,) or layout.coupling is not None) and not is_sum(layout)
    if layout.alone_nonfinite or (layout.alone_constant and pooled):
        return None, actual, None, STATISTIC
    if expected is None or actual is None or not expected or not math.isfinite(expected):
        return expected, actual, None, ""
    ratio = actual / expected
    na = _stateful_na(m, layout, ratio) or (STATISTIC if pooled and not 0.01 <= abs(ratio) <= 100 else None)
    if na is not None:
        return None, actual, None, na
    return expected, actual, ratio, ""


def _numbers(m: LossMeasurement) -> str:
    expected, actual, ratio, na = magnitude(m)
    if na == STATISTIC:
        return (
            " It is a statistic of the whole batch: a sample alone has no meaningful value, "
            f"so there is no per-sample value to compare with (Keras reports {text.number(actual)})."
        )
    if ratio is None:
        return ""
    return f" Keras reports {text.number(actual)} where the per-sample mean is {text.number(expected)} ({text.ratio(ratio)})."


def _where(m: LossMeasurement) -> str:
    assert m.layout is not None
    return f"returns shape {text.shape(m.layout.batch_shape)} at batch size {m.batch_size} ({text.layout(m.layout.spec)})"


def _others(layout: Layout, batch_size: int) -> str:
    return ", ".join(f"{text.shape(s)} at {b}" for b, s in layout.shapes if b != batch_size)


def _rank_changes(m: LossMeasurement, layout: Layout, shapes: Shapes) -> Detection | None:
    if shapes.same_rank:
        return None
    return Detection(
        "LD103",
        f"{_where(m)}: the output's rank changes with the batch size ({_others(layout, m.batch_size)}).{_numbers(m)}",
        f"reduce over the feature axes ({text.per_sample_axes(layout.spec)}), not over axis 0",
        ("merged", "reduced"),
    )


def _paired(m: LossMeasurement, layout: Layout, shapes: Shapes) -> Detection | None:
    if len(shapes.batch) >= 2 or shapes.squared:
        what = "two axes follow the batch size" if len(shapes.batch) >= 2 else "an axis holds batch size × batch size"
    elif layout.pairing_free and layout.cross_op and not is_sum(layout):
        # Σ(t - p) ignores the pairing too, but is a plain sum; and mean(y_true, 0) - mean(y_pred, 0) (feature
        # matching) ignores it with no (B, B) anywhere: a batch statistic, not a pairing
        what = (
            "the value stays the same when the targets are handed to other samples, though it changes with "
            "the targets themselves: every prediction was compared with every target"
        )
    elif layout.coupling is not None and layout.cross_op:
        what = f"one value per sample, but a (B,) tensor met a (B, 1) one: {layout.cross_op}"
    elif layout.pooled_pairs and not shapes.batch:
        return Detection(
            "LD104",
            f"{_where(m)}: every prediction was paired with every other sample's and the pairs were pooled at once "
            f"({layout.pooled_pairs}): no sample has a value of its own.{_numbers(m)}",
            "pair the items within each sample (one query's list, on its own axis), not samples across the batch; "
            "if the pairs across the batch are meant, reduce each row to one value per sample first",
            ("broadcast",),
        )
    else:
        return None
    return Detection(
        "LD104",
        f"{_where(m)}: {what}; broadcasting paired every sample with every other.{_numbers(m)}",
        "give both operands the same shape before combining them: (B, 1) with (B, 1), or (B,) with (B,)",
        ("broadcast",),
    )


def _summed_per_sample(m: LossMeasurement, layout: Layout) -> Detection:
    """A per-sample `call()` whose reported value Keras sums: the Loss's reduction, or its own __call__."""
    if layout.reduction is not None and layout.via_call:
        return Detection(
            "LD101",
            f"{_where(m)}, one value per sample, but the Loss is configured with reduction=\"{layout.reduction}\", "
            f"so Keras reports the batch total: doubling the batch doubles the value.{_numbers(m)}",
            'construct it with reduction="sum_over_batch_size" (the default), so Keras averages the per-sample values',
            trace_hint=False,
        )
    return Detection(
        "LD101",
        f"{_where(m)} from its own __call__, and what Keras reports is a sum over the samples: doubling the "
        f"batch doubles the value.{_numbers(m)}",
        "implement call() returning one value per sample and let Keras reduce, instead of summing in __call__",
        ("reduced",),
        trace_hint=False,
    )


def _samples(rows: tuple[int, ...]) -> str:
    """`samples 0–3`, or `samples 1, 4, 5 and 9` when they are not in a run, or `sample 2`."""
    if len(rows) == 1:
        return f"sample {rows[0]}"
    if list(rows) == list(range(rows[0], rows[-1] + 1)):
        return f"samples {rows[0]}–{rows[-1]}"
    return "samples " + ", ".join(map(str, rows[:-1])) + f" and {rows[-1]}"


def _one_batch_axis(m: LossMeasurement, layout: Layout, shapes: Shapes) -> Detection | None:
    if len(shapes.batch) != 1:
        return None
    if layout.coupling is not None:
        coupling = layout.coupling
        kept = _samples(coupling.kept)
        via = "" if coupling.via == "both" else f" (only their {coupling.via})"
        return Detection(
            "LD105",
            f"{_where(m)}: changing the other samples{via} moved the values of {kept} by up to "
            f"{text.number(coupling.delta)}; each sample's loss depends on the rest of the batch.",
            "compute each sample's loss from that sample alone; if the coupling is intended (batch-hard mining, "
            "in-batch negatives), suppress it with `# lossdiag: ignore[LD105]`",
            ("broadcast", "reduced"),
        )
    if is_sum(layout):
        return _summed_per_sample(m, layout)
    expected, actual, ratio, _ = magnitude(m)
    if ratio is not None and abs(ratio - 1.0) > 1e-3:
        return Detection(
            "LD105",
            f"{_where(m)}, one value per sample, but a sample's value depends on the batch size: alone, samples "
            f"report {text.number(expected)} on average; in a batch of {m.batch_size}, Keras reports "
            f"{text.number(actual)} ({text.ratio(ratio)}).",
            "do not divide by the batch size (or any batch statistic) inside the loss: Keras already averages "
            "the per-sample values over the batch",
            ("reduced",),
        )
    return None


def _statistic_hint() -> str:
    return (
        "a batch statistic (R², a correlation, anything normalised by batch statistics) has no per-sample value: "
        "keep it as a metric and train with a per-sample loss such as MSE"
    )


def _no_batch_axis(m: LossMeasurement, layout: Layout, shapes: Shapes) -> Detection | None:
    if shapes.batch:
        return None
    axes = text.per_sample_axes(layout.spec)
    out = layout.batch_shape
    # a reduction over axis 0 that kept a feature axis of size 1 (`sum(axis=(0, 1, 2))` on (B, H, W, 1)
    # masks gives (1,)); a keepdims reduction of everything keeps the layout's rank, and is a scalar
    kept_one = 0 < len(out) < len(layout.spec.y_pred)
    if shapes.merged or shapes.size > 1 or kept_one:
        detail = (
            f"axis {shapes.merged[0]} holds the batch flattened together with other axes ({_others(layout, m.batch_size)})"
            if shapes.merged
            else f"no axis follows the batch size ({_others(layout, m.batch_size)}): the batch was reduced and another axis kept"
        )
        return Detection(
            "LD103", f"{_where(m)}: {detail}.{_numbers(m)}",
            f"reduce over the feature axes ({axes}), not over axis 0", ("merged", "reduced"),
        )  # fmt: skip
    if is_sum(layout):
        return Detection(
            "LD101",
            f"{_where(m)}: the batch axis was summed away — doubling the batch (the same samples twice) doubles "
            f"the value, so it is a sum over samples.{_numbers(m)}",
            f"keep one value per sample: reduce over the feature axes only ({axes}), and slice with `y[:, 1:]` "
            "rather than `y[:, 1]`",
            ("reduced", "merged"),
        )
    statistic = magnitude(m)[3] == STATISTIC
    return Detection(
        "LD102",
        f"{_where(m)}: the batch axis was averaged away — doubling the batch does not double the value, so it "
        f"is pooled over the samples, and sample_weight and class_weight cannot weigh single samples.{_numbers(m)}",
        _statistic_hint() if statistic else f"reduce over the feature axes only ({axes}) and let Keras average over the batch",
        ("reduced", "merged"),
        trace_hint=not statistic,
    )


def _counts_updates(m: LossMeasurement, layout: Layout) -> Detection | None:
    """A stateful metric's one batch-axis mistake: it adds each batch's total but divides by the number of
    `update_state` calls, so what `model.fit` logs is the mean batch total, B times the per-sample mean.

    A stateful metric keeps no per-sample output, so its result without a batch axis is no finding (no
    LD102): precision, AUC and other epoch statistics are what stateful metrics are for. It is the mistake
    only when the result grows in exact proportion to a repeated batch, yet stays when the same batch is
    given twice (a running total, such as a count of errors, doubles there and is a total on purpose).
    """
    growth = layout.update_growth
    if not is_sum(layout) or growth is None or abs(growth - 1.0) > 0.02:
        return None
    return Detection(
        "LD101",
        f"its result after update_state on a batch of {m.batch_size} is the batch's total, but the same batch "
        f"given twice leaves it unchanged: it counts update_state calls, not samples, so model.fit logs the mean "
        f"batch total ({text.layout(layout.spec)}).{_numbers(m)}",
        "count samples, not update_state calls: add the batch size to the count "
        "(self.count.assign_add(ops.cast(ops.shape(y_true)[0], self.dtype))); on keras.metrics.Mean, hand "
        "update_state one value per sample",
        trace_hint=False,
    )


def detect(m: LossMeasurement) -> Detection | None:
    """The one batch-axis verdict of a measured loss, or None when it keeps one value per sample."""
    layout = m.layout
    if layout is None:
        return None
    if is_stateful_metric(m):
        return _counts_updates(m, layout)
    shapes = Shapes.of(layout)
    for check in (_rank_changes, _paired, _one_batch_axis, _no_batch_axis):
        found = check(m, layout, shapes)
        if found is not None:
            return found
    return None
