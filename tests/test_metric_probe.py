"""Metrics are measured as `model.fit` logs them: the runner's numbers, and a real fit history, agree with lossdiag."""

from __future__ import annotations

import functools
import importlib.util
import json

import pytest
from conftest import REPO, run_cli

pytestmark = pytest.mark.tf
BUGS_AND_TWINS = {  # metric with the batch-axis bug -> its correct twin (fixtures/metrics.py)
    "summed_abs_error_metric": "abs_error_metric",
    "total_gap": "gap",
    "BatchCountingMAE": "SampleCountingMAE",
    "SummedMeanError": "PerSampleMeanError",
}


def _fixture_module():
    spec = importlib.util.spec_from_file_location("metrics_fixture_for_fit", REPO / "fixtures" / "metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _metric(module, name: str):
    """The metric as compile(metrics=[...]) takes it: a function, or an instance of the Metric class
    (named, so that two metrics built on keras.metrics.Mean do not share the log key "mean")."""
    obj = getattr(module, name)
    return obj(name=name) if isinstance(obj, type) else obj


@pytest.fixture(scope="module")
def fixture_module():
    from lossdiag import _tf

    _tf.load()
    return _fixture_module()


def _batch(size: int = 32, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, size=(size, 3)).astype("float32")
    y_pred = rng.uniform(0.05, 0.95, size=(size, 3)).astype("float32")
    return y_true, y_pred


def test_a_function_metric_is_run_through_keras_mean_metric_wrapper(fixture_module):
    from lossdiag.runner import MetricRunner, metric_wrapper

    runner = MetricRunner(metric_wrapper(fixture_module.abs_error_metric))
    y_true, y_pred = _batch()
    assert not runner.stateful and runner.via_call
    assert runner.raw(y_true, y_pred).shape == (32,)
    assert runner.reported(y_true, y_pred) == pytest.approx(float(abs(y_true - y_pred).mean()), rel=1e-5)
    assert runner.reported_and_gradient(y_true, y_pred)[1] is None  # never differentiated
    summed = MetricRunner(metric_wrapper(fixture_module.summed_abs_error_metric))
    assert summed.reported(y_true, y_pred) == pytest.approx(32 * runner.reported(y_true, y_pred), rel=1e-5)


def test_a_stateful_metric_reports_its_result_after_one_update_from_a_reset_state(fixture_module):
    from lossdiag.runner import MetricRunner

    y_true, y_pred = _batch()
    mean_error = float(abs(y_true - y_pred).mean())
    counting = MetricRunner(fixture_module.SampleCountingMAE())
    assert counting.stateful and not counting.via_call
    assert counting.raw(y_true, y_pred).shape == ()
    for _ in range(2):  # each call starts from a reset metric: no state leaks between probes
        assert counting.reported(y_true, y_pred) == pytest.approx(mean_error, rel=1e-5)
    assert counting.repeated_update(y_true, y_pred) == pytest.approx(1.0)
    batches_counted = MetricRunner(fixture_module.BatchCountingMAE())
    assert batches_counted.reported(y_true, y_pred) == pytest.approx(32 * mean_error, rel=1e-5)
    assert batches_counted.repeated_update(y_true, y_pred) == pytest.approx(1.0)
    assert MetricRunner(fixture_module.WrongLabelCount()).repeated_update(y_true, y_pred) == pytest.approx(2.0)


def _fit_history(module, batch_size: int, samples: int) -> dict[str, float]:
    """One epoch of a small model whose compile() logs every bug and twin of fixtures/metrics.py."""
    import numpy as np

    from lossdiag import _tf

    _, keras = _tf.load()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 4)).astype("float32")
    y = (x[:, :3] > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="sigmoid")])
    names = [*BUGS_AND_TWINS, *BUGS_AND_TWINS.values()]
    # functions as they are: Keras builds their MeanMetricWrapper itself and logs them under their names
    metrics = [_metric(module, name) for name in names]
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="binary_crossentropy", metrics=metrics)
    history = model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return {name: float(history.history[name][-1]) for name in names}


@functools.cache
def _lossdiag(batch_size: int) -> dict:
    code, out, err = run_cli(["check", "fixtures/metrics.py", "--format", "json", "--batch-size", str(batch_size)], REPO)
    assert code == 1, err
    return {r["name"]: r for r in json.loads(out)["results"]}


@pytest.fixture(scope="module")
def lossdiag_report() -> dict:
    return _lossdiag(32)


@pytest.mark.parametrize("batch_size", [32, 8])
def test_model_fit_logs_the_bugs_at_the_ratio_lossdiag_reports(fixture_module, batch_size):
    """A batch-summed function metric and a batch-counting stateful metric log ~B×; their twins log the mean."""
    logged = _fit_history(fixture_module, batch_size=batch_size, samples=batch_size * 20)
    lossdiag_report = _lossdiag(batch_size)
    mean_error = logged["abs_error_metric"]
    assert logged["SampleCountingMAE"] == pytest.approx(mean_error, rel=1e-4)  # a correct stateful mean agrees
    for bug, twin in BUGS_AND_TWINS.items():
        fit_ratio = logged[bug] / logged[twin]
        assert fit_ratio == pytest.approx(batch_size, rel=0.01), (bug, logged)
        reported = lossdiag_report[bug]
        assert [f["code"] for f in reported["findings"]] == ["LD101"] and reported["kind"] == "metric"
        assert reported["ratio"] == pytest.approx(fit_ratio, rel=0.05), bug
        assert lossdiag_report[twin]["status"] == "pass" and lossdiag_report[twin]["ratio"] == pytest.approx(1.0)


def test_metrics_are_marked_and_stateful_ones_have_no_output_shape(lossdiag_report):
    assert {r["kind"] for r in lossdiag_report.values()} == {"metric"}
    assert lossdiag_report["BatchCountingMAE"]["output_shape"] is None
    assert lossdiag_report["abs_error_metric"]["output_shape"] == [32]
    assert lossdiag_report["EpochPrecision"]["na_reason"] == "batch statistic"
    assert lossdiag_report["WrongLabelCount"]["na_reason"] == "running total"
    line = (REPO / "fixtures" / "metrics.py").read_text().splitlines()[lossdiag_report["BatchCountingMAE"]["line"] - 1]
    assert line.startswith("class BatchCountingMAE")


def test_the_table_marks_metrics():
    code, out, _ = run_cli(["check", "fixtures/metrics.py::total_gap"], REPO)
    assert code == 1
    assert "metric" in out.split("total_gap", 1)[1].splitlines()[1]
