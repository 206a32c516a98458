"""Synthetic batches, and the measurements of one loss on them: shapes, magnitudes, perturbations."""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import replace
from typing import Any, Callable

from lossdiag.measurement import LossMeasurement, ProbeMeasurement, ProbeSpec
from lossdiag.rules import PROBABILITY_LABELS, accepted, batch_axes

# The default ladder, in the order a loss is tried. 2-D widths first (a loss that slices
# `y[:, 1]` needs d >= 2), then images, then class labels, then regression targets.
# Spatial size 16 (enough for an 11x11 SSIM window) and class count 4 differ from the extra batch
# sizes below, so a dim that equals the batch size at every size tried can only be the batch axis.
DEFAULT_LADDER: tuple[ProbeSpec, ...] = (
    ProbeSpec(("B", 1), ("B", 1), "binary"),
    ProbeSpec(("B", 2), ("B", 2), "binary"),
    ProbeSpec(("B", 3), ("B", 3), "binary"),
    ProbeSpec(("B", 4), ("B", 4), "binary"),
    ProbeSpec(("B", 16, 16, 1), ("B", 16, 16, 1), "binary"),
    ProbeSpec(("B", 16, 16, 3), ("B", 16, 16, 3), "onehot"),
    ProbeSpec(("B", 1), ("B", 2), "real"),  # a distribution head: [mean, log-variance] for one target
    ProbeSpec(("B",), ("B", 4), "sparse"),
    ProbeSpec(("B", 1), ("B", 4), "sparse"),
    ProbeSpec(("B", 4), ("B", 4), "onehot"),
    ProbeSpec(("B", 1), ("B", 1), "real"),
    ProbeSpec(("B", 3), ("B", 3), "real"),
)
# One more batch size beside --batch-size tells the batch axis apart from every other axis; 5 is
# the fallback for when --batch-size is 7 or 7 fails.
EXTRA_BATCH_SIZES = (7, 5)
LABEL_KINDS = ("binary", "probs", "onehot", "sparse", "real")


class ProbeError(Exception):
    """The loss did not produce a usable value on a probe."""


def parse_spec(text: str) -> ProbeSpec:
    """`y_true=B,2;y_pred=B,2;labels=binary` into a ProbeSpec (raises ValueError with the reason)."""
    parts: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in ("y_true", "y_pred", "labels"):
            raise ValueError(f"expected y_true=...;y_pred=...;labels=..., got {item!r}")
        parts[key.strip()] = value.strip()

    def shape(key: str) -> tuple[int | str, ...]:
        dims: list[int | str] = []
        for d in parts[key].split(","):
            d = d.strip()
            if d == "B":
                dims.append("B")
            elif d.isdigit() and int(d) > 0:
                dims.append(int(d))
            else:
                raise ValueError(f"{key}: dimension {d!r} is neither B nor a positive integer")
        if dims.count("B") != 1:
            raise ValueError(f"{key}: the shape must contain the batch axis B exactly once")
        return tuple(dims)

    if "y_pred" not in parts:
        raise ValueError("y_pred=... is required")
    y_pred = shape("y_pred")
    y_true = shape("y_true") if "y_true" in parts else y_pred
    labels = parts.get("labels", "binary")
    if labels not in LABEL_KINDS:
        raise ValueError(f"labels must be one of {', '.join(LABEL_KINDS)}, got {labels!r}")
    return ProbeSpec(y_true, y_pred, labels)


def make_batch(spec: ProbeSpec, batch_size: int, seed: int, salt: int = 0) -> tuple[Any, Any]:
    """Seeded float32 `(y_true, y_pred)` for one layout; every sample is distinct."""
    import numpy as np

    # crc32, not hash(): string hashes change between processes, and the batches must not
    rng = np.random.default_rng([seed, salt, batch_size, zlib.crc32(spec.text().encode())])
    t_shape, p_shape = spec.at(batch_size)
    classes = p_shape[-1]
    if spec.labels == "real":
        y_true = rng.normal(size=t_shape)
        y_pred = rng.normal(size=p_shape)
    elif spec.labels == "sparse":
        y_true = rng.integers(0, classes, size=t_shape)
        y_pred = _softmax(rng.normal(size=p_shape))
    elif spec.labels == "onehot":
        ids = rng.integers(0, t_shape[-1], size=t_shape[:-1])
        y_true = np.eye(t_shape[-1])[ids]
        y_pred = _softmax(rng.normal(size=p_shape))
    elif spec.labels == "probs":
        y_true = rng.uniform(0.0, 1.0, size=t_shape)
        y_pred = rng.uniform(0.05, 0.95, size=p_shape)
    else:  # binary
        y_true = rng.integers(0, 2, size=t_shape)
        y_pred = rng.uniform(0.05, 0.95, size=p_shape)
    return y_true.astype("float32"), y_pred.astype("float32")


def boundary_batch(spec: ProbeSpec, batch_size: int, seed: int) -> tuple[Any, Any] | None:
    """Predictions exactly at 0 and 1: even samples get the perfect prediction, odd ones its opposite."""
    import numpy as np

    y_true, y_pred = make_batch(spec, batch_size, seed)
    if spec.labels == "sparse":
        ids = y_true.reshape(y_true.shape[0]).astype(int)
        perfect = np.eye(y_pred.shape[-1], dtype="float32")[ids]
    elif y_true.shape == y_pred.shape:
        perfect = np.round(y_true).astype("float32")
    else:
        return None
    boundary = perfect.copy()
    boundary[1::2] = 1.0 - perfect[1::2]
    return y_true, boundary


BOUNDARY_CASES = ("y_pred exactly equal to the 0/1 labels", "y_pred exactly opposite to the 0/1 labels (1 - y_true)")


def _softmax(x: Any) -> Any:
    import numpy as np

    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class LossRunner:
    """Calls one Keras `Loss` the way `model.fit` does: `call` for the raw values, `__call__` reported."""

    def __init__(self, loss: Any, legacy: bool = False, on_call: Callable[[], None] | None = None) -> None:
        from lossdiag import _tf

        self.loss = loss
        self.tf, _ = _tf.load(legacy)
        self.on_call = on_call  # told before every call of the user's loss (the worker's heartbeat)

    def _tensors(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        tf = self.tf
        return tf.constant(y_true, dtype=tf.float32), tf.constant(y_pred, dtype=tf.float32)

    def raw(self, y_true: Any, y_pred: Any) -> Any:
        """The loss's unreduced output as a float numpy array (raises ProbeError if unusable)."""
        if self.on_call is not None:
            self.on_call()
        yt, yp = self._tensors(y_true, y_pred)
        return self._to_numpy(self.loss.call(yt, yp))

    def reported(self, y_true: Any, y_pred: Any) -> float:
        """What Keras reports for this batch: the `Loss` object's own call and reduction."""
        if self.on_call is not None:
            self.on_call()
        yt, yp = self._tensors(y_true, y_pred)
        return self._scalar(self.loss(yt, yp))

    def reported_and_gradient(self, y_true: Any, y_pred: Any) -> tuple[float, str]:
        """The reported value, and whether its gradient with respect to y_pred is ok, None or zero."""
        if self.on_call is not None:
            self.on_call()
        tf = self.tf
        yt, yp = self._tensors(y_true, y_pred)
        try:
            with tf.GradientTape() as tape:
                tape.watch(yp)
                value = self.loss(yt, yp)
            grad = tape.gradient(value, yp)
        except Exception:  # no gradient registered for an op, e.g. a py_function
            return self.reported(y_true, y_pred), "none"
        if grad is None:
            return self._scalar(value), "none"
        return self._scalar(value), "ok" if (abs(grad.numpy()) > 0).any() else "zero"

    def _scalar(self, value: Any) -> float:
        array = self._to_numpy(value)
        return float(array.reshape(-1)[0]) if array.size == 1 else float(array.mean())

    def _to_numpy(self, value: Any) -> Any:
        import numpy as np

        tf = self.tf
        if value is None:
            raise ProbeError("returned None, not a tensor")
        if isinstance(value, (str, bytes)):
            raise ProbeError(f"returned a {type(value).__name__}, not a tensor")
        if isinstance(value, (dict, tuple)) or (isinstance(value, list) and not value):
            raise ProbeError(f"returned a {type(value).__name__}, not a tensor")
        try:
            tensor = tf.convert_to_tensor(value)
        except (TypeError, ValueError) as exc:
            raise ProbeError(f"returned {type(value).__name__}, which is not a tensor: {exc}") from None
        if tensor.dtype == tf.string:
            raise ProbeError("returned a string tensor")
        if tensor.dtype.is_complex:
            raise ProbeError(f"returned a {tensor.dtype.name} tensor, not a real number")
        return np.asarray(tf.cast(tensor, tf.float64).numpy(), dtype="float64")


def measure_probe(runner: LossRunner, spec: ProbeSpec, batch_size: int, seed: int) -> ProbeMeasurement:
    """All structural measurements of one loss on one layout; `error` says why it was not accepted."""
    import numpy as np

    y_true, y_pred = make_batch(spec, batch_size, seed)
    try:
        out = runner.raw(y_true, y_pred)
    except ProbeError as exc:
        return ProbeMeasurement(spec, error=str(exc))
    except Exception as exc:
        return ProbeMeasurement(spec, error=describe_exception(exc))
    if not np.isfinite(out).all():
        return ProbeMeasurement(spec, error=f"NaN or inf on ordinary inputs (output shape {tuple(out.shape)})")
    if out.size and not np.any(out):
        # A width where the loss is identically zero (an empty slice) says nothing about it.
        return ProbeMeasurement(spec, error=f"output is identically zero (shape {tuple(out.shape)})")

    shapes = [(batch_size, tuple(out.shape))]
    for b in EXTRA_BATCH_SIZES:
        if b == batch_size:
            continue
        try:
            shapes.append((b, tuple(runner.raw(*make_batch(spec, b, seed)).shape)))
            break
        except Exception:
            continue
    shapes_t = tuple(sorted(shapes))
    try:
        reported, gradient = runner.reported_and_gradient(y_true, y_pred)
        doubled = runner.reported(np.concatenate([y_true, y_true]), np.concatenate([y_pred, y_pred]))
    except Exception as exc:
        return ProbeMeasurement(spec, error="Keras could not reduce it: " + describe_exception(exc), shapes=shapes_t)

    # Coupling: replace the first and the last sample at once; no other sample's value may move.
    coupled_from: tuple[int, ...] = ()
    delta = None
    axes, _, same_rank = batch_axes(shapes_t)
    if same_rank and len(axes) == 1 and batch_size >= 3:
        axis, ends = axes[0], [0, batch_size - 1]
        other_t, other_p = make_batch(spec, batch_size, seed, salt=1)
        yt2, yp2 = y_true.copy(), y_pred.copy()
        yt2[ends], yp2[ends] = other_t[ends], other_p[ends]
        try:
            out2 = runner.raw(yt2, yp2)
        except Exception:
            out2 = None
        if out2 is not None and out2.shape == out.shape:
            diff = np.abs(np.delete(out2, ends, axis=axis) - np.delete(out, ends, axis=axis))
            if diff.size and float(diff.max()) > 1e-6 + 1e-4 * float(np.abs(out).max()):
                coupled_from, delta = tuple(ends), float(diff.max())

    boundary = None
    batch = boundary_batch(spec, batch_size, seed) if spec.labels in PROBABILITY_LABELS else None
    if batch is not None:
        try:
            bout = runner.raw(*batch)
        except Exception:
            bout = None
        if bout is not None and not np.isfinite(bout).all():
            bad = "NaN" if np.isnan(bout).any() else "inf"
            if bout.ndim and bout.shape[0] == batch_size:
                rows = ~np.isfinite(bout.reshape(batch_size, -1)).all(axis=1)
                cases = [BOUNDARY_CASES[i] for i in (0, 1) if rows[i::2].any()]
                boundary = f"{bad} in {int(rows.sum())} of {batch_size} samples for " + " and for ".join(cases)
            else:
                boundary = f"{bad} for predictions exactly at 0 and 1 ({BOUNDARY_CASES[0]} or opposite)"

    return ProbeMeasurement(
        spec,
        shapes=shapes_t,
        reported=reported,
        reported_doubled=doubled,
        coupled_from=coupled_from,
        coupled_delta=delta,
        boundary=boundary,
        gradient=gradient,
    )


def expected_per_sample(runner: LossRunner, spec: ProbeSpec, batch_size: int, seed: int) -> float | None:
    """Mean over samples of the Keras-reported value of each sample alone."""
    y_true, y_pred = make_batch(spec, batch_size, seed)
    values = []
    for i in range(batch_size):
        try:
            values.append(runner.reported(y_true[i : i + 1], y_pred[i : i + 1]))
        except Exception:
            return None
    mean = sum(values) / len(values)
    return mean if math.isfinite(mean) else None


_KERAS2_BACKEND = re.compile(r"module 'keras(\.src)?\.backend' has no attribute '(\w+)'")


def keras2_hint(error: str) -> str:
    """Advice for a loss that failed only because Keras 3 removed a Keras-2 backend function."""
    match = _KERAS2_BACKEND.search(error)
    if not match:
        return ""
    return (
        f"K.{match.group(2)} is a Keras-2 backend function that Keras 3 removed: "
        "rerun with --legacy-keras (or set legacy-keras = true) to check it on tf_keras"
    )


def describe_exception(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    # TF errors put the useful sentence first, then node/graph context lines.
    text = lines[0].strip() if lines else ""
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def measure_loss(
    runner: LossRunner,
    base: LossMeasurement,
    ladder: tuple[ProbeSpec, ...],
    batch_size: int,
    seed: int,
    choose: Callable[[tuple[ProbeMeasurement, ...], str], int | None],
) -> LossMeasurement:
    """Probe one loss on every layout of the ladder; measure magnitudes on the most telling one."""
    dense: list[ProbeMeasurement | None] = []
    measured: dict[tuple[str, int], int] = {}  # accepted layouts per family (labels, rank)
    for spec in ladder:
        if spec.y_true != spec.y_pred:
            dense.append(None)
            continue
        family = (spec.labels, len(spec.y_pred))
        if measured.get(family, 0) >= 2:
            # Two widths of a family already decide it; a third costs time and shows nothing new.
            dense.append(ProbeMeasurement(spec, error="not measured: two layouts of this kind were enough"))
            continue
        dense.append(measure_probe(runner, spec, batch_size, seed))
        if accepted(dense[-1]):
            measured[family] = measured.get(family, 0) + 1
    # Sparse layouts only decide for a loss that runs on no dense layout or says `sparse` in its name
    # (rules.relevant); measuring them for the others would cost time and change nothing.
    skip_sparse = "sparse" not in base.name.lower() and any(p is not None and accepted(p) for p in dense)
    probes = tuple(
        p if p is not None
        else ProbeMeasurement(spec, error="not measured: the loss runs on dense layouts")
        if skip_sparse
        else measure_probe(runner, spec, batch_size, seed)
        for spec, p in zip(ladder, dense)
    )
    chosen = choose(probes, base.name)
    if chosen is None:
        errors = [p.error for p in probes if p.error]
        hint = next((h for h in map(keras2_hint, errors) if h), "")
        return replace(base, probes=probes, batch_size=batch_size, hint=hint)
    spec = probes[chosen].spec
    expected = expected_per_sample(runner, spec, batch_size, seed)
    shape = dict(probes[chosen].shapes)[batch_size]
    return replace(
        base,
        probes=probes,
        chosen=chosen,
        batch_size=batch_size,
        expected=expected,
        actual=probes[chosen].reported,
        output_shape=shape,
    )
