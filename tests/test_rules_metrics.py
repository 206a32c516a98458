"""The rules for metrics: no LD202, and a stateful metric is LD101 only when it counts updates instead of samples."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lossdiag import rules
from lossdiag.measurement import Layout, LossMeasurement, ProbeSpec

SCALAR = ((7, ()), (32, ()))
PER_SAMPLE = ((7, (7,)), (32, (32,)))


def _stateful(growth=(1.0, 1.0), update_growth=1.0, expected=1.0, reported=1.0, **kw) -> LossMeasurement:
    layout = Layout(ProbeSpec(("B", 2), ("B", 2), "binary"), "ladder", "the default ladder", shapes=SCALAR,
                    reported=reported, growth=growth, expected=expected, via_call=False,
                    update_growth=update_growth, **kw)  # fmt: skip
    return LossMeasurement("Hits", "class", "/x/metrics.py", 3, layout=layout, role="metric")


@pytest.mark.parametrize("growth, update_growth, reported, code, na", [
    ((2.0, 4.0), 1.0, 32.0, "LD101", ""),               # adds batch totals, counts updates: B×
    ((2.0, 4.0), 2.0, 32.0, None, "running total"),     # a count on purpose
    ((1.0, 1.0), 1.0, 1.0, None, ""),                   # a correct mean over samples
    ((1.0, 1.0), 1.0, 1.3, None, "batch statistic"),    # precision over the batch: no per-sample mean
    ((2.0, 4.0), None, 32.0, None, ""),                 # the second update failed: no verdict either way
])  # fmt: skip
def test_stateful_metric_verdicts(growth, update_growth, reported, code, na):
    m = _stateful(growth, update_growth, reported=reported)
    found = rules.batch_axis.detect(m)
    assert (found.code if found else None) == code
    assert rules.magnitude(m)[3] == na


def test_a_stateful_metric_is_never_a_batch_mean_or_wrong_axis():
    """LD102 and LD103 read the output's axes; a stateful metric's result has none to keep."""
    assert rules.detect(_stateful()) == []
    scalar = _stateful()
    per_class = replace(scalar, layout=replace(scalar.layout, shapes=((7, (4,)), (32, (4,)))))  # a vector result
    assert rules.detect(per_class) == []


def test_the_counting_finding_says_what_to_count():
    (found,) = rules.detect(_stateful((2.0, 4.0), 1.0, reported=32.0))
    assert found.code == "LD101" and "counts update_state calls, not samples" in found.message
    assert "self.count.assign_add" in found.hint and found.locate_by == ()


@pytest.mark.parametrize("role, codes", [("loss", ["LD202"]), ("metric", [])])
def test_ld202_never_applies_to_a_metric(role, codes):
    layout = Layout(ProbeSpec(("B", 2), ("B", 2), "binary"), "ladder", "", shapes=PER_SAMPLE, reported=1.0,
                    growth=(1.0, 1.0), expected=1.0, gradient="none")
    m = LossMeasurement("accuracy", "function", "/x/m.py", 1, layout=layout, role=role)
    assert [d.code for d in rules.detect(m)] == codes


def test_a_function_metric_gets_the_loss_verdicts():
    layout = Layout(ProbeSpec(("B", 2), ("B", 2), "binary"), "ladder", "", shapes=SCALAR, reported=32.0,
                    growth=(2.0, 4.0), expected=1.0, gradient=None)
    m = LossMeasurement("total_gap", "function", "/x/m.py", 1, layout=layout, role="metric")
    assert [d.code for d in rules.detect(m)] == ["LD101"]
