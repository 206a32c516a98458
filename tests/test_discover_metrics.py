"""Which candidates are metrics: what the file hands to Keras first, then what they are, then their names."""

from __future__ import annotations

import textwrap
import types
from pathlib import Path

import pytest

from lossdiag import discover

SOURCE = textwrap.dedent(
    """\
    import keras
    from keras import ops

    def dice_coef(y_true, y_pred):              # a metric word, no "loss": a metric
        return y_true * y_pred

    def dice_coef_loss(y_true, y_pred):         # "loss" wins over "coef"
        return 1 - dice_coef(y_true, y_pred)

    def f1_m(y_true, y_pred):
        return y_true

    def jaccard_score(y_true, y_pred):
        return y_true

    def accumulate_error(y_true, y_pred):       # "accumulate" is not the word "acc"
        return y_true

    def agreement(a, b):                        # no word at all: metrics=[...] says so
        return a == b

    def f1_score(y_true, y_pred):               # a metric name handed to compile(loss=...): a loss
        return y_true

    class Hits(keras.metrics.Metric):
        def update_state(self, y_true, y_pred, sample_weight=None):
            pass

    class TopHits(Hits):                        # built on a metric class of this file
        pass

    class MeanGap(keras.metrics.Mean):
        pass

    class ScoreLoss(keras.losses.Loss):         # a Loss subclass is a loss whatever its name
        def call(self, y_true, y_pred):
            return y_true

    hits = Hits()                               # an instance of a metric class

    def build(model):
        model.compile(loss=f1_score, metrics=[agreement, TopHits(name="top")])
    """
)


@pytest.fixture(scope="module")
def found() -> dict[str, discover.AstCandidate]:
    return {c.name: c for c in discover.scan_source(SOURCE)}


@pytest.mark.parametrize("name, role", [
    ("dice_coef", "metric"), ("dice_coef_loss", "loss"), ("f1_m", "metric"), ("jaccard_score", "metric"),
    ("accumulate_error", "loss"), ("agreement", "metric"), ("f1_score", "loss"), ("Hits", "metric"),
    ("TopHits", "metric"), ("MeanGap", "metric"), ("ScoreLoss", "loss"), ("hits", "metric"),
    ("TopHits(name='top')", "metric"),
])  # fmt: skip
def test_the_role_rule(found, name, role):
    assert found[name].role == role


def test_metric_classes_are_candidates_by_their_bases(found):
    assert found["Hits"].kind == found["MeanGap"].kind == "class"
    assert discover.metric_classes(__import__("ast").parse(SOURCE)) == {"Hits", "TopHits", "MeanGap"}


class FakeLoss:
    def __init__(self, fn=None):
        self.fn = fn


class FakeMetric:
    def __init__(self, fn=None):
        self.fn = fn


def test_materialise_builds_metrics_as_keras_builds_them(tmp_path: Path):
    """Functions in a MeanMetricWrapper, Metric objects as they are, a Loss used as a metric wrapped."""
    source = textwrap.dedent(
        """\
        def accuracy_rate(y_true, y_pred):
            return y_true

        def plain_loss(y_true, y_pred):
            return y_true

        counter_metric = FakeMetric()        # an object that is a Metric: a metric, whatever its name says
        loss_object = FakeLoss()

        def build(model):
            model.compile(loss=plain_loss, metrics=[loss_object])
        """
    )
    path = tmp_path / "mod.py"
    path.write_text(source)
    scan = discover.scan_file(path, frozenset({"accuracy_rate", "plain_loss", "counter_metric", "loss_object"}))
    module = types.ModuleType("mod")
    module.__dict__.update(FakeLoss=FakeLoss, FakeMetric=FakeMetric)
    exec(compile(source, str(path), "exec"), module.__dict__)
    built = {
        c.name: c for c in discover.materialise(
            module, scan, None, FakeLoss, (FakeLoss,), metric_wrap=FakeMetric, metric_bases=(FakeMetric,),
        )
    }
    assert built["accuracy_rate"].role == "metric" and built["accuracy_rate"].loss.fn is module.accuracy_rate
    assert isinstance(built["plain_loss"].loss, FakeLoss) and built["plain_loss"].role == "loss"
    assert built["counter_metric"].role == "metric" and built["counter_metric"].loss is module.counter_metric
    assert built["loss_object"].role == "metric" and built["loss_object"].loss.fn is module.loss_object
