"""Verdicts on small loss snippets, in-process (tests/harness.py): one behaviour per test, fast."""

from __future__ import annotations

import pytest
from harness import codes

pytestmark = [pytest.mark.tf, pytest.mark.inprocess]

HEAD = "import tensorflow as tf\nfrom keras import ops\n\n"


def verdict(tmp_path, body: str, **context) -> dict[str, set[str]]:
    return codes(HEAD + body, tmp_path, **context)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("def per_sample(y_true, y_pred):\n    return ops.mean(ops.square(y_true - y_pred), axis=-1)\n", "pass"),
        ("def summed(y_true, y_pred):\n    return ops.sum(ops.square(y_true - y_pred))\n", "LD101"),
        ("def averaged(y_true, y_pred):\n    return ops.mean(ops.square(y_true - y_pred))\n", "LD102"),
        ("def axis0(y_true, y_pred):\n    return ops.mean(ops.square(y_true - y_pred), axis=0)\n", "LD103"),
        ("def crossed(y_true, y_pred):\n    return ops.mean(ops.square(y_true[:, 0:1] - y_pred[:, 0]), axis=-1)\n",
         "LD104"),
        ("def normalised(y_true, y_pred):\n    se = ops.mean(ops.square(y_true - y_pred), axis=-1)\n"
         "    return se / ops.mean(se)\n", "LD105"),
        ("def unclipped(y_true, y_pred):\n    return -ops.mean(y_true * ops.log(y_pred), axis=-1)\n", "LD201"),
        ("def rounded(y_true, y_pred):\n    return ops.mean(ops.abs(y_true - ops.round(y_pred)), axis=-1)\n",
         "LD202"),
    ],
)
def test_one_rule_per_snippet(tmp_path, body, expected):
    ((name, got),) = verdict(tmp_path, body).items()
    assert got == {expected}, name


def test_the_seed_bug_is_a_batch_sum_and_its_twin_passes(tmp_path):
    got = verdict(tmp_path, """\
def per_sample_se(z, zhat):
    return ops.sum(ops.square(z - zhat), axis=-1)


def sums_after_slice(yz, yzhat):
    return per_sample_se(yz[:, 1], yzhat[:, 1])


def keeps_the_axis(yz, yzhat):
    return per_sample_se(yz[:, 1:], yzhat[:, 1:])
""")
    assert got == {"per_sample_se": {"pass"}, "sums_after_slice": {"LD101"}, "keeps_the_axis": {"pass"}}


def test_a_smoothed_pooled_dice_is_a_mean_not_a_sum(tmp_path):
    """Issue 10: smooth = 100 makes a pooled dice grow with the batch, but never in proportion."""
    got = verdict(tmp_path, """\
def dice_loss(y_true, y_pred, smooth=100.0):
    inter = ops.sum(y_true * y_pred)
    return 1 - (2 * inter + smooth) / (ops.sum(y_true) + ops.sum(y_pred) + smooth)
""")
    assert got == {"dice_loss": {"LD102"}}


def test_a_reduction_sum_loss_object_is_a_batch_sum(tmp_path):
    got = verdict(tmp_path, """\
import keras


class PerSample(keras.losses.Loss):
    def call(self, y_true, y_pred):
        return ops.mean(ops.abs(y_true - y_pred), axis=-1)


summed = PerSample(reduction="sum")
averaged = PerSample()
""")
    assert got == {"PerSample": {"pass"}, "summed": {"LD101"}, "averaged": {"pass"}}


def test_a_call_override_is_probed_through_call(tmp_path):
    got = verdict(tmp_path, """\
import keras


class MaskedPooled(keras.losses.Loss):
    def __call__(self, y_true, y_pred, sample_weight=None):
        mask = ops.cast(ops.not_equal(y_true, -1.0), "float32")
        return ops.sum(mask * ops.square(y_true - y_pred)) / (ops.sum(mask) + 1e-7)
""")
    assert got == {"MaskedPooled": {"LD102"}}


def test_a_gaussian_nll_is_not_probed_at_zero_variance(tmp_path):
    got = verdict(tmp_path, """\
def gaussian_nll(y_true, y_pred):
    mean, log_var = y_pred[:, 0:1], y_pred[:, 1:2]
    return ops.mean(0.5 * (log_var + ops.square(y_true - mean) / ops.exp(log_var)), axis=-1)
""")
    assert got == {"gaussian_nll": {"pass"}}


def test_a_wide_embedding_triplet_is_judged_on_its_own_width(tmp_path):
    got = verdict(tmp_path, """\
def triplet(y_true, y_pred, alpha=0.2):
    a, p, n = y_pred[:, 0:128], y_pred[:, 128:256], y_pred[:, 256:384]
    return ops.maximum(ops.sum(ops.square(a - p), axis=1) - ops.sum(ops.square(a - n), axis=1) + alpha, 0.0)
""")
    assert got == {"triplet": {"pass"}}


def test_a_token_loss_is_judged_on_sequences(tmp_path):
    got = verdict(tmp_path, """\
def token_ce(y_true, y_pred):
    mask = ops.cast(ops.not_equal(y_true, 0), "float32")
    ce = ops.sparse_categorical_crossentropy(y_true, y_pred)
    return ops.sum(ce * mask, axis=-1) / (ops.sum(mask, axis=-1) + 1e-7)
""")
    assert got == {"token_ce": {"pass"}}


def test_intended_batch_hard_mining_stays_coupled_not_crossed(tmp_path):
    got = verdict(tmp_path, """\
def batch_hard_triplet(y_true, y_pred):
    labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
    dist = tf.reduce_sum(tf.square(tf.expand_dims(y_pred, 1) - tf.expand_dims(y_pred, 0)), axis=-1)
    same = tf.cast(tf.equal(tf.expand_dims(labels, 1), tf.expand_dims(labels, 0)), tf.float32)
    return tf.maximum(tf.reduce_max(dist * same, axis=1) - tf.reduce_min(dist + 1e6 * same, axis=1) + 1.0, 0.0)
""")
    assert got == {"batch_hard_triplet": {"LD105"}}


def test_a_loss_that_raises_everywhere_is_not_probed(tmp_path):
    got = verdict(tmp_path, "def needs_a_dict(y_true, y_pred):\n    return y_true['mask'] * y_pred\n")
    assert got == {"needs_a_dict": {"LD002"}}
