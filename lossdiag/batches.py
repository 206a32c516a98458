"""Seeded synthetic batches for one layout, and the variations the probes need (repeats, rolls, boundaries)."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from lossdiag.measurement import ProbeSpec

Batch = tuple[Any, Any]  # (y_true, y_pred) as float32 numpy arrays


def _softmax(x: Any) -> Any:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def make(spec: ProbeSpec, batch_size: int, seed: int, salt: int = 0) -> Batch:
    """Seeded float32 `(y_true, y_pred)`; every sample is distinct, sparse ids lie in y_pred's class range."""
    # crc32, not hash(): string hashes change between processes, and the batches must not
    rng = np.random.default_rng([seed, salt, batch_size, zlib.crc32(spec.text().encode())])
    t_shape, p_shape = spec.at(batch_size)
    classes = p_shape[-1] if len(p_shape) > 1 else 2
    y_true: Any
    y_pred: Any
    if spec.labels == "real":
        y_true, y_pred = rng.normal(size=t_shape), rng.normal(size=p_shape)
    elif spec.labels == "sparse":
        low, high = (1, classes - 1) if _alignment_free(t_shape, p_shape) and classes > 2 else (0, max(classes, 1))
        y_true = rng.integers(low, high, size=t_shape)
        y_pred = _softmax(rng.normal(size=p_shape))
    elif spec.labels == "onehot":
        ids = rng.integers(0, t_shape[-1], size=t_shape[:-1])
        y_true = np.eye(t_shape[-1])[ids]
        y_pred = _softmax(rng.normal(size=p_shape))
    elif spec.labels == "probs":
        y_true, y_pred = rng.uniform(0.0, 1.0, size=t_shape), rng.uniform(0.05, 0.95, size=p_shape)
    else:  # binary
        y_true, y_pred = rng.integers(0, 2, size=t_shape), rng.uniform(0.05, 0.95, size=p_shape)
    return y_true.astype("float32"), y_pred.astype("float32")


def _alignment_free(t_shape: tuple[int, ...], p_shape: tuple[int, ...]) -> bool:
    """Ids (B, L) against frames (B, T, V) with L != T, as CTC takes them: the ids avoid both places a
    blank may sit (0 for tf.nn.ctc_loss, V - 1 for K.ctc_batch_cost), so a label is never a blank."""
    return len(t_shape) == len(p_shape) - 1 and len(t_shape) > 1 and t_shape[1:] != p_shape[1:-1]


def repeat(batch: Batch, times: int) -> Batch:
    """The same samples `times` over: a sum over samples grows `times`-fold, a mean does not move."""
    return np.concatenate([batch[0]] * times), np.concatenate([batch[1]] * times)


def head(batch: Batch, size: int) -> Batch:
    return batch[0][:size], batch[1][:size]


def roll(array: Any) -> Any:
    """Each sample gets its neighbour's values: the pairing of targets with predictions changes."""
    return np.roll(array, 1, axis=0)


def replacement(spec: ProbeSpec, batch: Batch, seed: int) -> Batch:
    """Other samples for the coupling probe, whose targets also differ in aggregate: binary labels all
    flipped to the rarer value, class ids all 0, so a loss that pools the targets (a mean over the batch)
    cannot miss the change by chance."""
    other_true, other_pred = make(spec, batch[0].shape[0], seed, salt=1)
    if spec.labels == "binary":
        other_true = np.full_like(other_true, 1.0 if float(batch[0].mean()) < 0.5 else 0.0)
    elif spec.labels == "sparse":
        other_true = np.zeros_like(other_true)
    elif spec.labels == "onehot":
        other_true = np.zeros_like(other_true)
        other_true[..., 0] = 1.0
    return other_true, other_pred


def replace_samples(batch: Batch, other: Batch, rows: list[int], which: str) -> Batch:
    """`batch` with `rows` taken from `other`: targets, predictions or both."""
    y_true, y_pred = batch[0].copy(), batch[1].copy()
    if which in ("targets", "both"):
        y_true[rows] = other[0][rows]
    if which in ("predictions", "both"):
        y_pred[rows] = other[1][rows]
    return y_true, y_pred


def _perfect(spec: ProbeSpec, y_true: Any, y_pred: Any) -> Any | None:
    """The prediction that matches the labels exactly, shaped like y_pred (None if the layout has none)."""
    if spec.labels == "sparse":
        ids = y_true.astype(int)
        if ids.ndim == y_pred.ndim and ids.shape[-1] == 1:
            ids = ids[..., 0]
        if ids.shape != y_pred.shape[:-1]:
            return None
        return np.eye(y_pred.shape[-1], dtype="float32")[ids]
    if y_true.shape == y_pred.shape:
        return np.round(y_true).astype("float32")
    return None


def boundary(spec: ProbeSpec, batch_size: int, seed: int) -> tuple[Batch, tuple[str, str]] | None:
    """Predictions exactly at 0 and 1, with what even and odd samples got: the perfect prediction and
    its opposite, or (when y_pred is not shaped like several 0/1 labels) all zeros and all ones.

    Only for layouts whose predictions are probabilities; None for the others (a variance column or a
    regression output at exactly 0 is not a boundary case).
    """
    if spec.labels == "real":
        return None
    y_true, y_pred = make(spec, batch_size, seed)
    perfect = _perfect(spec, y_true, y_pred)
    if perfect is None:
        if y_true.ndim < 2 or y_true.shape[-1] < 2:
            return None  # one target against a wider head: a distribution's parameters, not probabilities
        edge = np.zeros_like(y_pred)
        edge[1::2] = 1.0
        return (y_true, edge), BOUNDARY_FILL_CASES
    edge = perfect.copy()
    edge[1::2] = 1.0 - perfect[1::2]
    return (y_true, edge), BOUNDARY_CASES


BOUNDARY_CASES = ("y_pred exactly equal to the 0/1 labels", "y_pred exactly opposite to the 0/1 labels (1 - y_true)")
BOUNDARY_FILL_CASES = ("y_pred exactly 0 everywhere", "y_pred exactly 1 everywhere")


def second_batch_size(spec: ProbeSpec, batch_size: int) -> list[int]:
    """Batch sizes to try beside --batch-size, none equal to a fixed axis of the layout (so the batch
    axis is the only one that follows the batch size)."""
    fixed = {int(d) for d in (*spec.y_true, *spec.y_pred) if d != "B"}
    return [b for b in (7, 5, 9, 11, 13, 3) if b != batch_size and b not in fixed]


def trace_batch_sizes(spec: ProbeSpec) -> tuple[int, int]:
    """Two small batch sizes for graph traces, coprime to the usual widths and unlike any fixed axis."""
    fixed = {int(d) for d in (*spec.y_true, *spec.y_pred) if d != "B"}
    sizes = [b for b in (7, 11, 13, 5, 9, 3) if b not in fixed]
    return sizes[0], sizes[1]
