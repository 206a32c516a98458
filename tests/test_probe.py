"""Synthetic batches are seeded and well-formed; measurements on one loss see what Keras sees."""

from __future__ import annotations

import pytest

from lossdiag import probe
from lossdiag.measurement import ProbeSpec


def test_parse_spec():
    spec = probe.parse_spec("y_true=B,16,16,1;y_pred=B,16,16,1;labels=binary")
    assert spec == ProbeSpec(("B", 16, 16, 1), ("B", 16, 16, 1), "binary")
    assert probe.parse_spec("y_pred=B,4").y_true == ("B", 4)
    assert probe.parse_spec("y_true=B;y_pred=B,10;labels=sparse").at(8) == ((8,), (8, 10))


@pytest.mark.parametrize("bad", ["y_true=2,3;y_pred=B,3", "y_pred=B,x", "labels=binary", "y_pred=B,2;labels=cats",
                                 "y_pred=B,B", "nonsense"])
def test_parse_spec_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        probe.parse_spec(bad)


@pytest.mark.parametrize("spec", probe.DEFAULT_LADDER, ids=lambda s: s.text())
def test_batches_are_seeded_shaped_and_in_range(spec):
    import numpy as np

    y_true, y_pred = probe.make_batch(spec, 32, seed=0)
    again = probe.make_batch(spec, 32, seed=0)
    other = probe.make_batch(spec, 32, seed=1)
    assert (y_true.shape, y_pred.shape) == spec.at(32)
    assert y_true.dtype == y_pred.dtype == np.float32
    assert np.array_equal(y_true, again[0]) and np.array_equal(y_pred, again[1])
    assert not np.array_equal(y_pred, other[1])
    if spec.labels != "real":
        assert 0.0 < y_pred.min() and y_pred.max() < 1.0  # away from the boundary: LD201 probes it apart
    if spec.labels == "sparse":
        assert set(np.unique(y_true)) <= set(range(y_pred.shape[-1]))
    if spec.labels == "onehot":
        assert np.all(y_true.sum(axis=-1) == 1)
    # every sample distinct, so that a perturbation of one is visible
    flat = y_pred.reshape(32, -1)
    assert len({row.tobytes() for row in flat}) == 32


def test_keras2_hint_names_the_function_and_the_flag():
    hint = probe.keras2_hint("AttributeError: module 'keras.backend' has no attribute 'flatten'")
    assert "K.flatten" in hint and "--legacy-keras" in hint
    assert probe.keras2_hint("ValueError: shapes differ") == ""


@pytest.fixture(scope="module")
def wrap():
    from lossdiag import _tf

    return lambda fn: probe.LossRunner(_tf.loss_wrapper(fn))


@pytest.mark.tf
class TestMeasurements:
    def test_correct_loss(self, wrap):
        from keras import ops

        runner = wrap(lambda y_true, y_pred: ops.mean(ops.square(y_true - y_pred), axis=-1))
        m = probe.measure_probe(runner, ProbeSpec(("B", 2), ("B", 2), "binary"), 32, 0)
        assert m.error is None
        assert dict(m.shapes) == {7: (7,), 32: (32,)}
        assert m.reported == pytest.approx(m.reported_doubled, rel=1e-6)
        assert m.coupled_from == () and m.boundary is None and m.gradient == "ok"

    def test_coupling_boundary_and_gradient_evidence(self, wrap):
        from keras import ops

        def coupled_unclipped(y_true, y_pred):
            ce = -ops.mean(y_true * ops.log(y_pred), axis=-1)
            return ce / (ops.mean(ce) + 1.0)

        m = probe.measure_probe(wrap(coupled_unclipped), ProbeSpec(("B", 2), ("B", 2), "binary"), 32, 0)
        assert m.coupled_from == (0, 31) and m.coupled_delta > 0
        assert m.boundary is not None and m.boundary.startswith("NaN in 32 of 32 samples")
        rounded = probe.measure_probe(wrap(lambda t, p: ops.mean(ops.abs(t - ops.round(p)), axis=-1)),
                                      ProbeSpec(("B", 2), ("B", 2), "binary"), 32, 0)
        assert rounded.gradient == "none"

    def test_batch_sum_doubles_when_the_batch_is_repeated(self, wrap):
        from keras import ops

        runner = wrap(lambda y_true, y_pred: ops.sum(ops.square(y_true - y_pred)))
        m = probe.measure_probe(runner, ProbeSpec(("B", 2), ("B", 2), "binary"), 32, 0)
        assert dict(m.shapes)[32] == ()
        assert m.reported_doubled / m.reported == pytest.approx(2.0, rel=1e-5)
        expected = probe.expected_per_sample(runner, ProbeSpec(("B", 2), ("B", 2), "binary"), 32, 0)
        assert m.reported / expected == pytest.approx(32.0, rel=1e-4)

    @pytest.mark.parametrize("returned, words", [(None, "returned None"), ("bad", "returned a str"),
                                                 ({"a": 1}, "returned a dict")])
    def test_unusable_return_values_are_errors_not_crashes(self, wrap, returned, words):
        m = probe.measure_probe(wrap(lambda y_true, y_pred: returned), ProbeSpec(("B", 1), ("B", 1), "binary"), 8, 0)
        assert m.error is not None and words in m.error

    def test_identically_zero_output_is_not_accepted(self, wrap):
        from keras import ops

        runner = wrap(lambda y_true, y_pred: ops.sum(ops.square(y_true[:, 1:] - y_pred[:, 1:]), axis=-1))
        m = probe.measure_probe(runner, ProbeSpec(("B", 1), ("B", 1), "binary"), 8, 0)
        assert m.error is not None and "identically zero" in m.error
