"""Call one loss or metric the way `model.fit` does, through Keras' own `Loss` and `Metric` objects; whatever raises inside is the user's."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class UserLossError(Exception):
    """The loss (or Keras, on what the loss returned) raised, or returned something that is not a number."""


def describe_exception(exc: BaseException) -> str:
    """`Type: first useful line`, without run-specific addresses, at most ~300 characters."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    # TF errors put the useful sentence first, then node/graph context lines.
    text = _ADDRESS.sub("", lines[0].strip()) if lines else ""
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def overrides_call(loss: Any) -> bool:
    """A Loss subclass that implements `__call__` itself: its output is what Keras reports, no reduction."""
    for klass in type(loss).__mro__:
        module = getattr(klass, "__module__", "") or ""
        if module.startswith(("keras", "tf_keras", "tensorflow")):
            return False
        if "__call__" in vars(klass):
            return True
    return False


def reduction_of(loss: Any) -> str | None:
    """The reduction of a Loss object when it is not the per-sample average Keras uses by default."""
    value = getattr(loss, "reduction", None)
    text = str(getattr(value, "value", value)).lower() if value is not None else "none"
    if text in ("sum_over_batch_size", "auto", "mean", "mean_with_sample_weight"):
        return None
    return text


class LossRunner:
    """One loss object and the three ways lossdiag calls it; `on_call` runs before every call (a heartbeat)."""

    def __init__(self, loss: Any, legacy: bool = False, on_call: Callable[[], None] | None = None) -> None:
        from lossdiag import _tf

        self.loss = loss
        self.tf, _ = _tf.load(legacy)
        self.on_call = on_call
        self.via_call = not overrides_call(loss)

    def _tensors(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        tf = self.tf
        return tf.constant(y_true, dtype=tf.float32), tf.constant(y_pred, dtype=tf.float32)

    def _enter(self) -> None:
        if self.on_call is not None:
            self.on_call()

    def raw(self, y_true: Any, y_pred: Any) -> Any:
        """The loss's unreduced output as a float64 numpy array (`call`, or `__call__` when overridden)."""
        self._enter()
        try:
            yt, yp = self._tensors(y_true, y_pred)
            value = self.loss.call(yt, yp) if self.via_call else self.loss(yt, yp)
            return self._to_numpy(value)
        except UserLossError:
            raise
        except Exception as exc:
            raise UserLossError(describe_exception(exc)) from exc

    def reported(self, y_true: Any, y_pred: Any) -> float:
        """What Keras reports for this batch: the `Loss` object's own call and reduction."""
        self._enter()
        try:
            yt, yp = self._tensors(y_true, y_pred)
            return self._scalar(self.loss(yt, yp))
        except UserLossError:
            raise
        except Exception as exc:
            raise UserLossError(describe_exception(exc)) from exc

    def reported_and_gradient(self, y_true: Any, y_pred: Any) -> tuple[float, str | None]:
        """The reported value, and whether its gradient with respect to y_pred is ok, None or zero."""
        self._enter()
        tf = self.tf
        try:
            yt, yp = self._tensors(y_true, y_pred)
            with tf.GradientTape() as tape:
                tape.watch(yp)
                value = self.loss(yt, yp)
            scalar = self._scalar(value)
        except UserLossError:
            raise
        except Exception as exc:
            raise UserLossError(describe_exception(exc)) from exc
        try:
            grad = tape.gradient(value, yp)
        except Exception:  # no gradient registered for an op (e.g. a py_function): no gradient flows
            return scalar, "none"
        if grad is None:
            return scalar, "none"
        return scalar, "ok" if bool(np.any(np.abs(grad.numpy()) > 0)) else "zero"

    def _scalar(self, value: Any) -> float:
        array = self._to_numpy(value)
        return float(array.reshape(-1)[0]) if array.size == 1 else float(array.mean())

    def _to_numpy(self, value: Any) -> Any:
        tf = self.tf
        if value is None:
            raise UserLossError("returned None, not a tensor")
        if isinstance(value, (str, bytes, dict, tuple)) or (isinstance(value, list) and not value):
            raise UserLossError(f"returned a {type(value).__name__}, not a tensor")
        try:
            tensor = tf.convert_to_tensor(value)
        except (TypeError, ValueError) as exc:
            # the reason is the first line only: TF puts the whole value (a SparseTensor's indices) after it
            raise UserLossError(f"returned a {type(value).__name__}, which is not a tensor ({describe_exception(exc)})") from None
        if tensor.dtype == tf.string:
            raise UserLossError("returned a string tensor")
        if tensor.dtype.is_complex:
            raise UserLossError(f"returned a {tensor.dtype.name} tensor, not a real number")
        return np.asarray(tf.cast(tensor, tf.float64).numpy(), dtype="float64")


# ----------------------------------------------------------------------------------------------
# metrics: what `compile(metrics=[...])` builds, updated the way `model.fit` updates it


def metric_wrapper(fn: Any, legacy: bool = False) -> Any:
    """Keras' own `MeanMetricWrapper` around a function, as `compile(metrics=[fn])` builds it."""
    from lossdiag import _tf

    _, keras = _tf.load(legacy)
    return keras.metrics.MeanMetricWrapper(fn, name=getattr(fn, "__name__", None))


def metric_base_classes(legacy: bool = False) -> tuple[type, ...]:
    """The `Metric` base classes a user's metric may derive from, for the Keras in use."""
    import sys

    from lossdiag import _tf

    _, keras = _tf.load(legacy)
    bases: list[type] = [keras.metrics.Metric]
    if not legacy and "tf_keras" in sys.modules:
        bases.append(sys.modules["tf_keras"].metrics.Metric)
    return tuple(bases)


def is_function_metric(metric: Any) -> bool:
    """A `MeanMetricWrapper` around a function whose `update_state` is Keras' own: the function's per-sample
    values are what it averages, so it is probed like a loss. Anything else is a stateful metric."""
    if not hasattr(metric, "_fn"):
        return False
    for klass in type(metric).__mro__:
        if "update_state" in vars(klass):
            return (getattr(klass, "__module__", "") or "").startswith(("keras", "tf_keras"))
    return False


def _as_float(array: Any) -> float:
    """A metric's result as one number (the mean of a vector result, e.g. per-class values)."""
    return float(array.reshape(-1)[0]) if array.size == 1 else float(array.mean())


class FunctionMetric:
    """The function inside a `MeanMetricWrapper`, seen as a loss object: `call` gives the values the wrapper
    averages (tf_keras squeezes or expands y_true to y_pred's rank first; Keras 3 does not), and `fn` /
    `_fn_kwargs` let the layout and trace code read the user's function as they read a loss wrapper's."""

    def __init__(self, wrapper: Any, legacy: bool = False) -> None:
        self.wrapper = wrapper
        self.fn = wrapper._fn
        self._fn_kwargs = dict(getattr(wrapper, "_fn_kwargs", {}) or {})
        self.legacy = legacy
        self.__name__ = getattr(self.fn, "__name__", type(self.fn).__name__)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        if self.legacy:
            from tf_keras.src.utils import losses_utils

            y_pred, y_true = losses_utils.squeeze_or_expand_dimensions(y_pred, y_true)
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def __call__(self, y_true: Any, y_pred: Any) -> Any:
        self.wrapper.reset_state()
        self.wrapper.update_state(y_true, y_pred)
        return self.wrapper.result()


class MetricRunner(LossRunner):
    """One metric and the ways lossdiag calls it, with LossRunner's interface so `probe` measures it alike.

    `reported` is what `model.fit` logs for a batch: the metric reset (as Keras resets it every epoch),
    `update_state` on the batch, then `result()`. A function metric's `raw` is its per-sample values
    (`via_call`), so every loss probe applies to it unchanged. A stateful metric has no per-sample output:
    its `raw` is its result after that one update (a scalar), `via_call` is False, and
    `repeated_update` tells a mean that counts updates from a running total. No gradient is measured:
    a metric is never differentiated.
    """

    def __init__(self, metric: Any, legacy: bool = False, on_call: Callable[[], None] | None = None) -> None:
        from lossdiag import _tf

        self.metric = metric
        self.tf, _ = _tf.load(legacy)
        self.on_call = on_call
        self.stateful = not is_function_metric(metric)
        self.via_call = not self.stateful
        self.loss = metric if self.stateful else FunctionMetric(metric, legacy)

    def _result_after(self, y_true: Any, y_pred: Any, updates: int = 1) -> Any:
        self._enter()
        try:
            yt, yp = self._tensors(y_true, y_pred)
            self.metric.reset_state()
            for _ in range(updates):
                self.metric.update_state(yt, yp)
            return self._to_numpy(self.metric.result())
        except UserLossError:
            raise
        except Exception as exc:
            raise UserLossError(describe_exception(exc)) from exc

    def raw(self, y_true: Any, y_pred: Any) -> Any:
        """A function metric's per-sample values; a stateful metric's result after one update."""
        if self.stateful:
            return self._result_after(y_true, y_pred)
        return super().raw(y_true, y_pred)

    def reported(self, y_true: Any, y_pred: Any) -> float:
        """What `model.fit` logs for this batch: reset, `update_state`, `result()`."""
        return _as_float(self._result_after(y_true, y_pred))

    def reported_and_gradient(self, y_true: Any, y_pred: Any) -> tuple[float, str | None]:
        """The reported value; the gradient is not measured (None): metrics are never differentiated."""
        return self.reported(y_true, y_pred), None

    def repeated_update(self, y_true: Any, y_pred: Any) -> float | None:
        """The result after two updates with the same batch over the result after one: 1 for a metric that
        divides by what it counted, 2 for a running total; None when the first result is 0 or not finite."""
        once = self.reported(y_true, y_pred)
        twice = _as_float(self._result_after(y_true, y_pred, updates=2))
        if not once or not np.isfinite(once) or not np.isfinite(twice):
            return None
        return twice / once
