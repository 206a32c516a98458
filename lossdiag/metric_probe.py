"""Measure one custom metric: the loss probes through Keras' metric machinery, and for a stateful metric what it divides by."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lossdiag import batches, probe
from lossdiag.measurement import LossMeasurement
from lossdiag.runner import MetricRunner, UserLossError


def measure_metric(base: LossMeasurement, metric: Any, ctx: probe.ProbeContext) -> LossMeasurement:
    """Find the metric's layout and measure it as `model.fit` updates it (`runner.MetricRunner`).

    A function metric is measured exactly as a loss is, on the values `MeanMetricWrapper` averages. A
    stateful metric also gets `Layout.update_growth`: its result after the same batch was given to
    `update_state` twice, over once, which tells a mean that counts batches instead of samples (1) from a
    running total (2); both grow with the batch, only the first claims to be a per-sample mean.
    """
    runner = MetricRunner(metric, ctx.legacy, ctx.on_call)
    m = probe.measure_loss(replace(base, role="metric"), runner.loss, ctx, runner=runner)
    if not runner.stateful or m.layout is None:
        return m
    batch = batches.make(m.layout.spec, ctx.batch_size, ctx.seed)
    try:
        growth = runner.repeated_update(*batch)
    except UserLossError:
        growth = None
    return replace(m, layout=replace(m.layout, update_growth=growth))
