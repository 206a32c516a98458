"""The prober finds the layout a loss runs on and depends on, and measures what Keras sees there."""

from __future__ import annotations

import pytest

from lossdiag import layouts, probe
from lossdiag.measurement import ProbeSpec


def test_parse_spec():
    spec = probe.parse_spec("y_true=B,16,16,1;y_pred=B,16,16,1;labels=binary")
    assert spec == ProbeSpec(("B", 16, 16, 1), ("B", 16, 16, 1), "binary")
    assert probe.parse_spec("y_pred=B,4").y_true == ("B", 4)
    assert probe.parse_spec("y_true=B;y_pred=B,10;labels=sparse").at(8) == ((8,), (8, 10))
    assert probe.parse_spec("y_true=B,7;y_pred=B,7,5;labels=sparse").at(4) == ((4, 7), (4, 7, 5))


@pytest.mark.parametrize("bad", ["y_true=2,3;y_pred=B,3", "y_pred=B,x", "labels=binary", "y_pred=B,2;labels=cats",
                                 "y_pred=B,B", "nonsense", "y_pred=2,B", "y_true=B;y_pred=B;labels=sparse"])
def test_parse_spec_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        probe.parse_spec(bad)


def test_keras2_hint_names_the_function_and_the_flag():
    hint = probe.keras2_hint("AttributeError: module 'keras.backend' has no attribute 'flatten'")
    assert "K.flatten" in hint and "--legacy-keras" in hint
    assert probe.keras2_hint("ValueError: shapes differ") == ""


def _measure(fn, name="loss", spec=None, batch_size=32):
    from lossdiag import _tf
    from lossdiag.measurement import LossMeasurement

    base = LossMeasurement(name, "function", "f.py", 1)
    ctx = probe.ProbeContext(batch_size=batch_size, pinned=spec, trace=False)
    return probe.measure_loss(base, _tf.loss_wrapper(fn), ctx)


@pytest.mark.tf
@pytest.mark.inprocess
class TestMeasurements:
    def test_correct_loss(self):
        from keras import ops

        m = _measure(lambda y_true, y_pred: ops.mean(ops.square(y_true - y_pred), axis=-1))
        layout = m.layout
        assert layout.spec == layouts.LADDER[0] and layout.origin == "ladder"
        assert dict(layout.shapes) == {7: (7,), 32: (32,)}
        assert layout.growth == pytest.approx((1.0, 1.0))
        assert layout.expected == pytest.approx(layout.reported, rel=1e-6)
        assert layout.coupling is None and layout.boundary is None and layout.gradient == "ok"
        assert not layout.pairing_free

    def test_coupling_boundary_and_gradient_evidence(self):
        from keras import ops

        def coupled_unclipped(y_true, y_pred):
            ce = -ops.mean(y_true * ops.log(y_pred), axis=-1)
            return ce / (ops.mean(ce) + 1.0)

        layout = _measure(coupled_unclipped).layout
        assert layout.coupling is not None and len(layout.coupling.kept) == 4 and layout.coupling.delta > 0
        assert layout.boundary is not None and layout.boundary.startswith("NaN in")
        rounded = _measure(lambda t, p: ops.mean(ops.abs(t - ops.round(p)), axis=-1)).layout
        assert rounded.gradient == "none"

    def test_coupling_is_watched_on_samples_a_mask_keeps(self):
        """A masked loss is 0 for the samples it skips: the probe watches samples with a value."""
        from keras import ops

        def masked_by_batch_count(y_true, y_pred):
            keep = ops.cast(ops.arange(ops.shape(y_true)[0]) >= 6, "float32")  # the first six are masked
            se = ops.mean(ops.square(y_true - y_pred), axis=-1) * keep
            return se / (ops.sum(keep * ops.mean(y_true, axis=-1)) + 1.0)  # ...and a batch total couples

        spec = probe.parse_spec("y_true=B,3;y_pred=B,3;labels=real")
        coupling = _measure(masked_by_batch_count, spec=spec).layout.coupling
        assert coupling is not None and coupling.kept == (6, 7, 8, 9) and coupling.via == "targets"

    def test_batch_sum_grows_exactly_linearly(self):
        from keras import ops

        layout = _measure(lambda y_true, y_pred: ops.sum(ops.square(y_true - y_pred))).layout
        assert layout.batch_shape == ()
        assert layout.growth == pytest.approx((2.0, 4.0), rel=1e-5)
        assert layout.reported / layout.expected == pytest.approx(32.0, rel=1e-4)

    def test_a_smoothed_global_dice_is_not_linear(self):
        """A pooled dice with smooth=100 grows when the batch does, but never in proportion (issue 10)."""
        from keras import ops

        def dice(y_true, y_pred, smooth=100.0):
            inter = ops.sum(y_true * y_pred)
            return 1 - (2 * inter + smooth) / (ops.sum(y_true) + ops.sum(y_pred) + smooth)

        layout = _measure(dice, spec=ProbeSpec(("B", 1), ("B", 1), "binary")).layout
        two, four = layout.growth
        assert two > 1.5 and abs(four - 4.0) > 0.1

    def test_a_pairing_pooled_into_a_scalar_is_pairing_free(self):
        from keras import ops

        layout = _measure(lambda t, p: ops.mean(ops.square(t - p[:, 0])), spec=ProbeSpec(("B", 1), ("B", 1), "real")).layout
        assert layout.pairing_free

    @pytest.mark.parametrize("returned, words", [(None, "returned None"), ("bad", "returned a str"),
                                                 ({"a": 1}, "returned a dict")])
    def test_unusable_return_values_are_the_losses_errors(self, returned, words):
        m = _measure(lambda y_true, y_pred: returned, batch_size=8)
        assert m.layout is None and m.internal_error is None
        assert all(words in t.error for t in m.trials)

    def test_a_layout_the_output_does_not_depend_on_is_not_accepted(self):
        """A triplet slicing 128-wide embeddings sees empty slices on narrow layouts (issue 10)."""
        from keras import ops

        def narrow_slices_only(y_true, y_pred):
            return ops.sum(ops.square(y_pred[:, 4:8] - y_true[:, 4:8]), axis=-1) + 1.0

        m = _measure(narrow_slices_only)
        assert m.layout is not None and m.layout.spec.y_pred == ("B", 8) and m.layout.origin == "source"

    def test_sparse_labels_of_any_rank_on_a_given_layout(self):
        """`--probe 'x=y_true=B,7;y_pred=B,7,5;labels=sparse'` crashed inside lossdiag (issue 10)."""
        from keras import ops

        def token_ce(y_true, y_pred):
            picked = ops.take_along_axis(y_pred, ops.expand_dims(ops.cast(y_true, "int32"), -1), axis=-1)
            return -ops.mean(ops.log(picked[..., 0]), axis=-1)

        m = _measure(token_ce, spec=probe.parse_spec("y_true=B,7;y_pred=B,7,5;labels=sparse"))
        assert m.internal_error is None and m.layout is not None
        assert m.layout.origin == "given" and m.layout.boundary is not None  # log(0) for the opposite prediction
