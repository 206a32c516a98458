"""Call one loss the way `model.fit` does, through Keras' own `Loss` objects; whatever raises inside is the user's."""

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

    def reported_and_gradient(self, y_true: Any, y_pred: Any) -> tuple[float, str]:
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
            raise UserLossError(f"returned {type(value).__name__}, which is not a tensor: {exc}") from None
        if tensor.dtype == tf.string:
            raise UserLossError("returned a string tensor")
        if tensor.dtype.is_complex:
            raise UserLossError(f"returned a {tensor.dtype.name} tensor, not a real number")
        return np.asarray(tf.cast(tensor, tf.float64).numpy(), dtype="float64")
