"""Layout inference reads what a loss's code needs of its inputs, and proposes that layout first."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lossdiag import layouts
from lossdiag.measurement import ProbeSpec

sys.path.insert(0, str(Path(__file__).parent / "data"))
import layout_samples as samples


def first(name: str) -> layouts.Proposal:
    return layouts.propose(getattr(samples, name), (name,))[0]


@pytest.mark.parametrize(
    "name, spec",
    [
        ("seed_slices", "y_true=B,2;y_pred=B,2;labels=binary"),  # `yz[:, 1]`: two columns
        ("per_image_dice", "y_true=B,16,16,1;y_pred=B,16,16,1;labels=binary"),  # axis=[1, 2, 3] and the name
        ("token_ce", "y_true=B,6;y_pred=B,6,5;labels=sparse"),  # sparse CE, the name `token`
        ("triplet", "y_true=B,384;y_pred=B,384;labels=binary"),  # three 128-wide slices
        ("gaussian_nll", "y_true=B,1;y_pred=B,2;labels=real"),  # [mean, log-variance]: real, no boundary probe
        ("yolo", "y_true=B,7,7,30;y_pred=B,7,7,30;labels=binary"),  # a constant reshape target: the grid
        ("cells_folded", "y_true=B,48;y_pred=B,48;labels=binary"),  # (-1, 8) folds a wider input into rows
        ("sparse_focal", "y_true=B;y_pred=B,10;labels=sparse"),  # one_hot(cast(y_true, int32), depth=10)
        ("quantile", "y_true=B,1;y_pred=B,3;labels=real"),  # y_pred[:, i] for i over three quantiles
        ("ssim_loss", "y_true=B,16,16,3;y_pred=B,16,16,3;labels=probs"),  # SSIM needs images
        ("anchors_box", "y_true=B,12,5;y_pred=B,12,4;labels=binary"),  # y_true[:, :, :4] meets y_pred whole
        ("query_key", "y_true=B,256;y_pred=B,256;labels=binary"),  # [:, :128] and [:, 128:]: two halves
        ("weighted_cce", "y_true=B,3;y_pred=B,3;labels=binary"),  # three class weights times y_true
        ("third_column", "y_true=B,3;y_pred=B,3;labels=binary"),  # a lambda indexing column 2
        ("dice_partial", "y_true=B,16,16,1;y_pred=B,16,16,1;labels=binary"),  # through functools.partial
        ("ctc_utterance", "y_true=B,4;y_pred=B,24,5;labels=sparse"),  # CTC: fewer label ids than frames
        ("cox_risk", "y_true=B,2;y_pred=B,1;labels=binary"),  # squeeze(y_pred, -1); take(..., axis=0) sorts samples
        ("triplet_int_slices", "y_true=B,256;y_pred=B,256;labels=binary"),  # int(total * 2 / 3) is a bound
        ("normalised_cce", "y_true=B,3;y_pred=B,3;labels=onehot"),  # y_pred / sum(y_pred, -1, keepdims=True)
        ("frame_ce", "y_true=B,6;y_pred=B,6,4;labels=sparse"),
        ("quantile_heads", "y_true=B;y_pred=B,3;labels=real"),  # expand_dims(y_true, -1) - y_pred: y_true lacks an axis
        ("quantile_heads_newaxis", "y_true=B;y_pred=B,3;labels=real"),  # y_true[..., tf.newaxis] - y_pred
        ("view_cosine", "y_true=B,128;y_pred=B,128;labels=binary"),  # _views(y_pred) with width=VIEW_WIDTH
        ("prototype_pull", "y_true=B,6;y_pred=B,16;labels=binary"),  # dot(y_true, a 6×16 table) meets y_pred
        ("packed_target_offset", "y_true=B,2;y_pred=B,1;labels=binary"),  # y_pred + y_true[:, 1:2]: one column
        ("argmax_misses", "y_true=B;y_pred=B,4;labels=sparse"),  # argmax(y_pred) == y_true: class ids
        ("total_objective", "y_true=B,16,16,1;y_pred=B,16,16,1;labels=binary"),  # calls dice_coef_loss
        ("waveform_l1", "y_true=B,4000;y_pred=B,4000;labels=real"),  # tf.signal.stft: waveforms
        ("projected_gap", "y_true=B,6,3;y_pred=B,6,3;labels=binary"),  # einsum "bnc,cd->bnd" with a 3×8 table
        ("mixture_head", "y_true=B,1;y_pred=B,12;labels=real"),  # split sizes [MIXES] * 3
        ("chamfer", "y_true=B,64,3;y_pred=B,64,3;labels=real"),  # the name: a point cloud
        ("field_mse", "y_true=B,10,16,3;y_pred=B,10,16,3;labels=binary"),  # a (1, 10, 1, 1) constant: rank and size
        ("object_xent", "y_true=B,3;y_pred=B,3;labels=onehot"),  # xent = CategoricalCrossentropy(); xent(...)
        ("hard_votes", "y_true=B,7;y_pred=B,7;labels=onehot"),  # one_hot(argmax(y_pred), VOTES)
        ("step_answers", "y_true=B,6,2;y_pred=B,6;labels=binary"),  # y_true[..., 0] meets y_pred: (value, mask) per step
        ("padded_objective", "y_true=B,6;y_pred=B,6,5;labels=sparse"),  # y_true != PAD_ID: padded sequences  # ids reduced over axis=-1: (B, T) frames
    ],
)
def test_the_code_decides_the_first_layout(name, spec):
    assert first(name).spec.text() == spec


def test_a_loss_without_hints_gets_the_ladder():
    proposals = layouts.propose(samples.no_hints, ("no_hints",))
    assert [p.spec for p in proposals] == list(layouts.LADDER)
    assert all(p.origin == "ladder" for p in proposals)


def test_reasons_quote_the_code():
    proposal = first("triplet")
    assert proposal.origin == "source" and "`y_pred[:, 0:EMB]`" in proposal.reason


def test_the_ladder_still_follows_the_inferred_layouts():
    """A wrong inference must not hide a layout the loss runs on: the default ladder comes after."""
    specs = [p.spec for p in layouts.propose(samples.triplet, ("triplet",))]
    assert specs[0] == ProbeSpec(("B", 384), ("B", 384), "binary")
    assert set(layouts.LADDER) <= set(specs)


def test_unreadable_source_falls_back_to_the_ladder():
    proposals = layouts.propose(len, ("len",))
    assert proposals[0].spec == layouts.LADDER[0]


def test_fixed_axes_never_equal_a_batch_size_the_prober_uses():
    from lossdiag import batches

    for spec in layouts.LADDER:
        fixed = {int(d) for d in (*spec.y_true, *spec.y_pred) if d != "B"}
        assert not fixed & {32, *batches.second_batch_size(spec, 32)[:1]}


def test_a_variance_column_means_no_layout_is_probed_at_exactly_0_and_1():
    """`sigma` is a scale, not a probability: even a binary fallback layout gets no boundary probe."""
    proposals = layouts.propose(samples.sigma_nll, ("sigma_nll",))
    assert proposals[0].spec.labels == "real"
    assert not any(p.probabilities for p in proposals)
    assert all(p.probabilities for p in layouts.propose(samples.no_hints, ("no_hints",)))


def test_keras2_layouts_are_what_tf_keras_fit_hands_a_loss():
    """tf_keras expands (B,) targets to (B, 1) against (B, C) predictions: no such layout is proposed."""
    plain = [p.spec for p in layouts.propose(samples.no_hints, ("no_hints",))]
    legacy = [p.spec for p in layouts.propose(samples.no_hints, ("no_hints",), legacy=True)]
    assert ProbeSpec(("B",), ("B", layouts.CLASSES), "sparse") in plain
    assert not any(len(s.y_true) == 1 and len(s.y_pred) == 2 for s in legacy)
    assert ProbeSpec(("B", 1), ("B", layouts.CLASSES), "sparse") in legacy and len(set(legacy)) == len(legacy)


def test_a_tail_after_a_slice_is_also_tried_one_column_and_half_as_wide():
    """`y[:, :8]` and `y[:, 8:]` read as halves (16); 12 (8 coordinates, 4 flags) and 9 are tried after."""
    widths = [p.spec.y_true[-1] for p in layouts.propose(samples.parts_and_flags, ("parts_and_flags",))]
    assert widths.index(16) < widths.index(12) < widths.index(9)
