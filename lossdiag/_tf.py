"""The only module that imports TensorFlow and Keras: lazily, quietly, and once."""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.abc
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

_ENV_DEFAULTS = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    # oneDNN reorders floating-point sums: perturbation checks need bit-stable results
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "CUDA_VISIBLE_DEVICES": "",
    "AUTOGRAPH_VERBOSITY": "0",
}
# Keras reads its backend from KERAS_BACKEND when it is first imported: the worker always runs Keras on
# TensorFlow, whatever the user's environment says (keras.ops losses are backend-neutral, and with jax
# or torch TensorFlow's GradientTape would see no gradient, or the import would fail).
BACKEND = "tensorflow"

_state: dict[str, Any] = {}


def forced_environment(legacy: bool) -> dict[str, str]:
    """The variables the worker's environment must have, whatever the user set."""
    return {"KERAS_BACKEND": BACKEND, "TF_USE_LEGACY_KERAS": "1" if legacy else "0"}


def prepare_environment(legacy: bool = False) -> None:
    """Set TensorFlow's environment before its first import; the user's own settings win, except for the
    Keras backend and flavour, which lossdiag decides."""
    for key, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.update(forced_environment(legacy))


def ignored_backend(environ: dict[str, str] | None = None) -> str | None:
    """The KERAS_BACKEND the user set that the worker does not use, if any (for -v)."""
    value = (os.environ if environ is None else environ).get("KERAS_BACKEND", "").strip()
    return value if value and value != BACKEND else None


def keras_label(legacy: bool) -> str:
    """Which Keras the worker runs: "3.15.1" or "tf_keras 2.21.0"."""
    _, keras_module = load(legacy)
    version = getattr(keras_module, "__version__", "?")
    return f"tf_keras {version}" if legacy else str(version)


def _quiet_import(name: str) -> ModuleType:
    """Import a module with file descriptor 2 redirected: TF's C++ logging ignores the env vars."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            return importlib.import_module(name)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic collector paused for the import, whose millions of long-lived objects are then frozen.

    The import makes next to no cyclic garbage (about a thousand objects), but with the collector on, every
    full collection walks all it has built so far: pausing it makes the import about a fifth faster, and
    freezing keeps every later collection in the process (one per few losses) off those objects.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def load(legacy: bool = False) -> tuple[ModuleType, ModuleType]:
    """Return `(tensorflow, keras)`; with `legacy`, keras is tf_keras (Keras 2)."""
    key = "legacy" if legacy else "keras"
    if key in _state:
        return _state["tf"], _state[key]
    prepare_environment(legacy)
    with warnings.catch_warnings(), _collector_paused():
        warnings.simplefilter("ignore")
        tf = _quiet_import("tensorflow")
        keras_module = _quiet_import("tf_keras" if legacy else "keras")
    tf.get_logger().setLevel("ERROR")
    tf.autograph.set_verbosity(0)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TensorFlow
        pass
    _state["tf"] = tf
    _state[key] = keras_module
    return tf, keras_module


def loss_wrapper(fn: Any, legacy: bool = False) -> Any:
    """Keras' own wrapper that turns a plain function into a `Loss` with the default reduction."""
    load(legacy)
    if legacy:
        from tf_keras.src.losses import LossFunctionWrapper
    else:
        from keras.src.losses.losses import LossFunctionWrapper
    # Neither Keras exports the wrapper; both build every `compile(loss=fn)` with it.
    return LossFunctionWrapper(fn, reduction="sum_over_batch_size", name=getattr(fn, "__name__", None))


def loss_base_classes(legacy: bool = False) -> tuple[type, ...]:
    """The `Loss` base classes a user's class may derive from, for the Keras in use."""
    _, keras = load(legacy)
    bases: list[type] = [keras.losses.Loss]
    if not legacy and "tf_keras" in sys.modules:
        bases.append(sys.modules["tf_keras"].losses.Loss)
    return tuple(bases)


class _Keras2Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes `import keras` / `keras.backend` resolve to tf_keras, for Keras-2 code."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname == "keras" or fullname.startswith("keras."):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: Any) -> ModuleType:
        return importlib.import_module("tf_keras" + spec.name[len("keras") :])

    def exec_module(self, module: ModuleType) -> None:
        pass


def install_keras2_alias() -> None:
    """Route `keras` imports in user modules to tf_keras (the `--legacy-keras` mode)."""
    load(legacy=True)
    for name in [m for m in sys.modules if m == "keras" or m.startswith("keras.")]:
        del sys.modules[name]
    if not any(isinstance(f, _Keras2Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Keras2Alias())
