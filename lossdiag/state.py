"""Process-wide state that user code may change, put back between modules and between losses.

The worker is reused across modules and losses, so a loss that calls `keras.config.set_floatx`,
`warnings.simplefilter("error")`, `signal.alarm(2)`, `os.close(2)` or replaces `keras.ops.sum` would
otherwise change what every later loss computes, or blame a later loss for its own alarm. Each module
is imported in the worker's initial state; each loss runs in the state its module's import left,
with every global generator reseeded from `--seed`, so a loss measures the same whatever ran before
it. Where a change cannot be undone for certain (a thread still running, eager execution switched
off, a library function replaced by one of the user's own), `after_module` says why and the parent
starts a fresh worker for the next module.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import logging
import operator
import os
import random
import signal
import sys
import tempfile
import threading
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lossdiag import procs

if TYPE_CHECKING:  # typeshed has no stub for the C module; `signal` re-exports its functions, so type them so
    import signal as _signal
else:  # the C module: no enum conversion on every call (this runs after each loss)
    import _signal

# The library modules a loss most likely patches; checked after every loss (the rest after each module).
_FAST_CLASS_MODULES = ("keras.losses", "keras.src.losses.loss", "keras.src.losses.losses", "tf_keras.losses",
                       "tf_keras.src.losses", "tensorflow.python.framework.tensor")
_FAST_MODULES = (
    "builtins", "math", "numpy", "keras", "keras.ops", "keras.losses", "keras.backend", "keras.src.ops.numpy",
    "keras.src.ops.math", "keras.src.ops.nn", "keras.src.ops.core", "keras.src.losses.loss",
    "keras.src.losses.losses", "keras.src.backend.tensorflow.numpy", "keras.src.backend.tensorflow.math",
    "keras.src.backend.tensorflow.nn", "keras.src.backend.tensorflow.core", "tensorflow",
    "tensorflow.python.ops.math_ops", "tensorflow.python.ops.array_ops", "tensorflow.python.ops.nn_ops",
    "tf_keras", "tf_keras.backend", "tf_keras.losses", "tf_keras.src.backend", "tf_keras.src.losses",
    "lossdiag.probe",
)
# Classes of these packages are watched for replaced methods.
_CLASS_PACKAGES = {"numpy", "tensorflow", "keras", "tf_keras", "lossdiag"}
# Class attributes that libraries fill in lazily: never a patch.
_LAZY_CLASS_KEYS = {"__annotations__", "__doc__", "__abstractmethods__", "__slotnames__", "__parameters__",
                    "__orig_bases__", "__dict__", "__weakref__", "__signature__"}
_HOOKS = ("excepthook", "displayhook", "unraisablehook", "breakpointhook")
_MISSING = object()
_ALL_SIGNALS = signal.valid_signals()
_library_files: dict[str, bool] = {}
_LIBRARY_PREFIXES: list[str] = []


def is_library_file(filename: str) -> bool:
    """A file of the standard library, of site-packages, or of lossdiag itself (not the user's)."""
    known = _library_files.get(filename)
    if known is None:
        known = _library_files[filename] = _classify_file(filename)
    return known


def _library_prefixes() -> tuple[str, ...]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(__file__).resolve().parent)}
    roots |= {os.path.realpath(r) for r in roots}
    return tuple(os.path.join(r, "") for r in roots)


def _classify_file(filename: str) -> bool:
    if not filename or filename.startswith("<"):
        return True  # frozen, built-in or generated code (TensorFlow's op wrappers are exec'd strings)
    if "site-packages" in filename or "dist-packages" in filename:
        return True
    if not _LIBRARY_PREFIXES:
        _LIBRARY_PREFIXES.extend(_library_prefixes())
    prefixes = tuple(_LIBRARY_PREFIXES)
    absolute = os.path.abspath(filename)
    # Module paths come from sys.path entries and are usually real paths already: resolve only the rest.
    return absolute.startswith(prefixes) or os.path.realpath(absolute).startswith(prefixes)


def is_library(module: Any) -> bool:
    """A built-in module, or one from the standard library, site-packages or lossdiag (not the user's)."""
    file = getattr(module, "__file__", None)
    return not file or is_library_file(str(file))


def _is_code(value: Any) -> bool:
    """Functions, classes and other callables are what a monkeypatch replaces; data may change legitimately."""
    return callable(value) and not isinstance(value, types.ModuleType)


# --- signals, timers, file descriptors, interpreter hooks ------------------------------------------


def _settable_signals() -> list[int]:
    return [int(sig) for sig in signal.valid_signals() if sig not in (signal.SIGKILL, signal.SIGSTOP)]


class ProcessState:
    """Signal handlers and mask, alarms and interval timers, fds 0-2 and sys streams, interpreter hooks,
    the environment, working directory, umask, warnings filters and the root logger."""

    def __init__(self) -> None:
        self.handlers = {sig: _signal.getsignal(sig) for sig in _settable_signals()}
        self.mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, [])
        self.fds = {fd: procs.high_fd(fd) for fd in (0, 1, 2)}
        self.streams: dict[str, tuple[Any, int, str]] = {
            "stdin": (sys.stdin, 0, "r"), "stdout": (sys.stdout, 1, "w"), "stderr": (sys.stderr, 2, "w"),
        }
        self.hooks = {name: getattr(sys, name) for name in _HOOKS}
        self.environ = dict(os.environ)
        self.cwd = os.getcwd()
        self.tempdir = tempfile.gettempdir()
        self.umask = os.umask(0o022)
        os.umask(self.umask)
        self.limits = (sys.getrecursionlimit(), sys.getswitchinterval(), gc.isenabled(), gc.get_threshold())
        self.warnings: tuple[Any, Any, Any] = (list(warnings.filters), warnings.showwarning, warnings.formatwarning)
        root = logging.getLogger()
        self.logging = (root.level, list(root.handlers), logging.root.manager.disable)

    def reset(self) -> None:
        self.signals()
        self.files()
        self.interpreter()

    @staticmethod
    def timers() -> None:
        """No alarm or interval timer set so far may fire later (on a loss that did not set it)."""
        _signal.alarm(0)
        for which in (_signal.ITIMER_REAL, _signal.ITIMER_VIRTUAL, _signal.ITIMER_PROF):
            _signal.setitimer(which, 0)

    def signals(self) -> None:
        """No alarm or timer a loss set may fire later, and every handler is the worker's own again."""
        self.timers()
        _signal.pthread_sigmask(_signal.SIG_BLOCK, _ALL_SIGNALS)
        for sig in _signal.sigpending():
            _signal.sigtimedwait([sig], 0)  # a signal that arrived while blocked must not fire later
        for sig, handler in self.handlers.items():
            if handler is not None and _signal.getsignal(sig) is not handler:
                with contextlib.suppress(OSError, ValueError, TypeError):  # best effort: a signal Python may not set
                    _signal.signal(sig, handler)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, self.mask)

    def files(self) -> None:
        """fds 0-2 and sys.stdin/stdout/stderr, even if a loss closed or replaced them."""
        for fd, copy in self.fds.items():
            with contextlib.suppress(OSError):  # best effort: the streams are put back below in any case
                os.dup2(copy, fd)
        for name, (saved, fd, mode) in list(self.streams.items()):
            if saved.closed:  # a loss closed it: a fresh wrapper on the same file descriptor
                raw = os.fdopen(fd, mode + "b", closefd=False)
                saved = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", line_buffering=mode == "w")
                self.streams[name] = (saved, fd, mode)
            if getattr(sys, name) is not saved:
                setattr(sys, name, saved)

    def interpreter(self) -> None:
        sys.settrace(None)
        sys.setprofile(None)
        threading.settrace(None)
        threading.setprofile(None)
        for name, hook in self.hooks.items():
            setattr(sys, name, hook)
        if os.environ != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)
        if os.getcwd() != self.cwd:
            os.chdir(self.cwd)
        tempfile.tempdir = self.tempdir
        if not os.path.isdir(self.tempdir):  # a loss removed it; autograph and others write there
            os.makedirs(self.tempdir, exist_ok=True)
        os.umask(self.umask)
        recursion, switch, gc_on, thresholds = self.limits
        sys.setrecursionlimit(recursion)
        sys.setswitchinterval(switch)
        gc.set_threshold(*thresholds)
        (gc.enable if gc_on else gc.disable)()
        filters, show, fmt = self.warnings
        # typeshed types warnings.filters as a read-only Sequence (it is a list) and has no _filters_mutated,
        # the private call that makes the warnings module notice the change
        warnings.filters[:] = filters  # type: ignore[index]
        warnings._filters_mutated()  # type: ignore[attr-defined]
        warnings.showwarning, warnings.formatwarning = show, fmt
        level, handlers, disabled = self.logging
        root = logging.getLogger()
        root.setLevel(level)
        root.handlers[:] = handlers
        logging.disable(disabled)

    def flush(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # closed or broken by the loss; put back by files()
                stream.flush()


# --- imports -----------------------------------------------------------------------------------


class ImportState:
    """sys.path, the import machinery, and which modules are loaded: the user's go after each module, so
    `a/utils.py` and `b/utils.py` in one run each get imported by their own neighbours."""

    def __init__(self) -> None:
        self.modules: dict[str, Any] = dict(sys.modules)
        self.path = list(sys.path)
        self.meta_path = list(sys.meta_path)
        self.path_hooks = list(sys.path_hooks)
        self.importer_cache = set(sys.path_importer_cache)

    def reset(self) -> None:
        sys.path[:] = self.path
        sys.meta_path[:] = self.meta_path
        sys.path_hooks[:] = self.path_hooks
        for key in set(sys.path_importer_cache) - self.importer_cache:
            sys.path_importer_cache.pop(key, None)
        for name in list(sys.modules):
            module = sys.modules.get(name)
            original = self.modules.get(name, _MISSING)
            if original is _MISSING:
                if not is_library(module):
                    del sys.modules[name]
            elif module is not original:
                sys.modules[name] = original
        importlib.invalidate_caches()


# --- attributes of the libraries the worker uses -------------------------------------------------


@dataclass
class _Saved:
    """Every attribute of one module or class as it was, and how many there were; only code is put back."""

    owner: Any
    keys: tuple[str, ...]
    values: tuple[Any, ...]
    size: int

    def changed(self) -> list[str]:
        """The attributes that held code and now hold something else (compared at C speed: this runs often;
        data attributes may change legitimately, so they are told apart only when something changed)."""
        get = self.owner.__dict__.get
        if not any(map(operator.is_not, map(get, self.keys), self.values)):
            return []
        return [k for k, v in zip(self.keys, self.values, strict=True) if get(k, _MISSING) is not v and _is_code(v)]


def _save(owner: Any) -> _Saved:
    # Every value, unfiltered: telling code from data here, over every attribute of every library module and
    # class at the worker's start, cost 0.25 s; `changed` tells them apart only when something changed.
    namespace = owner.__dict__
    keys, values = tuple(namespace), tuple(namespace.values())
    if len(keys) != len(values):  # another thread changed it in between
        pairs = tuple(namespace.items())
        keys, values = tuple(k for k, _ in pairs), tuple(v for _, v in pairs)
    return _Saved(owner, keys, values, len(keys))


def _classes_of(modules: list[Any]) -> dict[int, type]:
    found: dict[int, type] = {}
    for module in modules:
        for value in [v for v in vars(module).values() if isinstance(v, type)]:
            owner = getattr(value, "__module__", None)
            if isinstance(owner, str) and owner.partition(".")[0] in _CLASS_PACKAGES:
                found[id(value)] = value
    return found


def _put_back_module(saved: _Saved, restored: list[str]) -> None:
    namespace = saved.owner.__dict__
    for key in saved.changed():
        namespace[key] = saved.values[saved.keys.index(key)]
        restored.append(f"{saved.owner.__name__}.{key}")


def _put_back_class(saved: _Saved, restored: list[str], failed: list[str]) -> None:
    cls, namespace = saved.owner, saved.owner.__dict__
    label = f"{cls.__module__}.{cls.__qualname__}"
    for key in saved.changed():
        _class_attribute(cls, key, saved.values[saved.keys.index(key)], failed)
        restored.append(f"{label}.{key}")
    if len(namespace) != saved.size:  # something was added: a method a loss bolted on goes again
        for key in set(namespace) - set(saved.keys) - _LAZY_CLASS_KEYS:
            if _is_code(namespace[key]) and not key.startswith("_abc"):
                _class_attribute(cls, key, _MISSING, failed)
                restored.append(f"{label}.{key}")


def _class_attribute(cls: type, key: str, value: Any, failed: list[str]) -> None:
    try:
        if value is _MISSING:
            delattr(cls, key)
        else:
            setattr(cls, key, value)
    except (TypeError, AttributeError):
        failed.append(f"{cls.__qualname__}.{key}")


def _user_functions(module: Any) -> list[str]:
    found = []
    for key, value in list(getattr(module, "__dict__", {}).items()):
        # isinstance first: getattr on a lazy module proxy would import it
        if isinstance(value, types.FunctionType) and not is_library_file(value.__code__.co_filename):
            found.append(f"{module.__name__}.{key}")
    return found


def _library_modules() -> list[types.ModuleType]:
    return [m for m in list(sys.modules.values()) if isinstance(m, types.ModuleType) and is_library(m)]


@dataclass
class LibraryMark:
    """The code attributes of the most-patched library modules and classes, as a module's import left them."""

    saved: list[_Saved]
    classes: list[_Saved]


class LibraryState:
    """Functions and classes of every library module loaded, and the methods of numpy's, TensorFlow's and
    Keras' classes: a replaced one is put back (a proven reset); the user's own function found in a
    library module is reported, since what it replaced is unknown."""

    def __init__(self) -> None:
        self.modules: dict[int, _Saved] = {}
        self.classes: list[_Saved] = []
        self.adopt()

    def adopt(self) -> None:
        """Watch the library modules loaded since the last look (lazily imported ones included)."""
        new = [m for m in _library_modules() if id(m) not in self.modules and hasattr(m, "__dict__")]
        self.modules.update((id(m), _save(m)) for m in new)
        self.classes += [_save(c) for c in _classes_of(new).values()]

    def mark(self) -> LibraryMark:
        chosen = [m for m in map(sys.modules.get, _FAST_MODULES) if isinstance(m, types.ModuleType)]
        with_classes = [m for m in map(sys.modules.get, _FAST_CLASS_MODULES) if isinstance(m, types.ModuleType)]
        return LibraryMark([_save(m) for m in chosen], [_save(c) for c in _classes_of(with_classes).values()])

    def restore(self, mark: LibraryMark) -> list[str]:
        """After a loss: back to what the module's import left."""
        restored: list[str] = []
        failed: list[str] = []
        for saved in mark.saved:
            _put_back_module(saved, restored)
        for saved in mark.classes:
            _put_back_class(saved, restored, failed)
        return restored

    def restore_all(self) -> tuple[list[str], list[str]]:
        """After a module: (what was put back, what cannot be: the user's functions left in library modules)."""
        restored: list[str] = []
        problems: list[str] = []
        for saved in self.modules.values():
            _put_back_module(saved, restored)
            if len(saved.owner.__dict__) != saved.size:
                problems += [f"{name} is the user's own function" for name in _user_functions(saved.owner)]
        for saved in self.classes:
            _put_back_class(saved, restored, problems)
        for module in _library_modules():
            if id(module) not in self.modules:
                problems += [f"{name} is the user's own function" for name in _user_functions(module)]
        return restored, problems


# --- TensorFlow, Keras, numpy, random generators ----------------------------------------------------


class FrameworkState:
    """Keras' floatx, epsilon, image format and dtype policy; TensorFlow's execution and debugging modes;
    numpy's error and print settings; and the seeds of every global random generator."""

    def __init__(self, legacy: bool, seed: int) -> None:
        from lossdiag import _tf

        self.tf, self.keras = _tf.load(legacy)
        self.legacy = legacy
        self.seed = seed
        self.initial = self.read()
        self.fixed = self.unchangeable()

    def _policy(self) -> Any:
        if self.legacy:
            return self.keras.mixed_precision.global_policy()
        return self.keras.config.dtype_policy()

    def _config(self) -> Any:
        from tensorflow.python.framework import config

        return config

    def read(self) -> dict[str, Any]:
        import numpy as np

        backend, config = self.keras.backend, self._config()
        return {
            "floatx": backend.floatx(),
            "epsilon": backend.epsilon(),
            "image_data_format": backend.image_data_format(),
            "policy": self._policy(),
            "eager": self.tf.config.functions_run_eagerly(),
            "tf32": config.tensor_float_32_execution_enabled(),
            "jit": config.get_optimizer_jit(),
            "soft_placement": config.get_soft_device_placement(),
            "log_placement": self.tf.debugging.get_log_device_placement(),
            "determinism": config.is_op_determinism_enabled(),
            "np_err": np.geterr(),
            "np_print": np.get_printoptions(),
        }

    def _setters(self) -> dict[str, Callable[[Any], Any]]:
        import numpy as np

        backend, config = self.keras.backend, self._config()
        set_policy = self.keras.mixed_precision.set_global_policy if self.legacy else self.keras.config.set_dtype_policy
        return {
            "floatx": backend.set_floatx,
            "epsilon": backend.set_epsilon,
            "image_data_format": backend.set_image_data_format,
            "policy": set_policy,
            "eager": self.tf.config.run_functions_eagerly,
            "tf32": config.enable_tensor_float_32_execution,
            "jit": config.set_optimizer_jit,
            "soft_placement": config.set_soft_device_placement,
            "log_placement": self.tf.debugging.set_log_device_placement,
            "determinism": lambda on: (config.enable_op_determinism if on else config.disable_op_determinism)(),
            "np_err": lambda err: np.seterr(**err),
            "np_print": lambda opts: np.set_printoptions(**opts),
        }

    def restore(self, state: dict[str, Any]) -> None:
        try:
            now = self.read()
        except Exception:  # a loss broke a getter; set everything
            now = {}
        setters = self._setters()
        for key, value in state.items():
            if now.get(key, _MISSING) != value:
                with contextlib.suppress(Exception):  # best effort: never let a reset end the worker
                    setters[key](value)
        self.debugging_off()
        self.reseed()

    def debugging_off(self) -> None:
        """`tf.debugging.enable_check_numerics()`, `experimental.enable_dump_debug_info()` and any other
        op callback a module installed: they turn a NaN into an exception, or write files."""
        from tensorflow.python.eager import context

        debugging = self.tf.debugging
        for disable in (debugging.disable_check_numerics, debugging.experimental.disable_dump_debug_info):
            with contextlib.suppress(Exception):  # best effort, as every reset
                disable()
        ctx = context.context()
        for callback in list(ctx.op_callbacks):
            with contextlib.suppress(Exception):  # best effort, as every reset
                ctx.remove_op_callback(callback)

    def unchangeable(self) -> dict[str, Any]:
        """Modes that cannot be switched back in a running process."""
        from tensorflow.python import tf2
        from tensorflow.python.framework import ops

        backend = getattr(self.keras.backend, "backend", lambda: "tensorflow")
        return {
            "executing eagerly": self.tf.executing_eagerly(),
            "TF2 behaviour": tf2.enabled(),
            "numpy-style type promotion": ops.is_numpy_style_type_promotion(),
            "Keras backend": backend(),
        }

    def changed_for_good(self) -> list[str]:
        try:
            now = self.unchangeable()
        except Exception as exc:
            return [f"TensorFlow's state cannot be read ({type(exc).__name__})"]
        was = self.fixed
        return [f"{key} changed from {was[key]!r} to {value!r}" for key, value in now.items() if value != was[key]]

    def reseed(self) -> None:
        import numpy as np

        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)
        self.tf.random.set_seed(self.seed)
        if not self.legacy:
            with contextlib.suppress(Exception):  # best effort, as every reset
                self.keras.utils.set_random_seed(self.seed)  # also resets keras.random's generator


# --- all of it ---------------------------------------------------------------------------------


@dataclass
class ModuleMark:
    """The state a module's import left: what each of its losses starts from."""

    framework: dict[str, Any]
    library: LibraryMark
    processes: frozenset[int]  # what the import started (a helper server, a pool): its losses may use it


class GlobalState:
    """Everything above, with the two resets the worker needs: after a loss, and after a module."""

    def __init__(self, legacy: bool, seed: int, keep: frozenset[int] = frozenset()) -> None:
        self.keep = keep  # processes of lossdiag's own among the worker's children (its guardian)
        self.framework = FrameworkState(legacy, seed)
        self.process = ProcessState()
        self.imports = ImportState()
        self.library = LibraryState()
        self.threads = {t.ident for t in threading.enumerate()}

    def before_module(self) -> None:
        self.framework.reseed()

    def mark(self) -> ModuleMark:
        self.process.timers()  # an alarm the import set must not end the first loss
        started = frozenset(procs.descendants(os.getpid()))
        return ModuleMark(self.framework.read(), self.library.mark(), started)

    def after_loss(self, mark: ModuleMark) -> None:
        """Kill what the loss started, then put back what it changed, in the order that stops a late
        alarm or child from landing on the next loss."""
        self.process.flush()
        self.process.signals()
        procs.kill_descendants(os.getpid(), self.keep | mark.processes)
        procs.reap_children()
        self.process.files()
        self.process.interpreter()
        self.framework.restore(mark.framework)
        self.library.restore(mark.library)

    def after_module(self) -> tuple[str | None, list[str]]:
        """Back to the worker's initial state: (why a fresh worker is needed, or None; what was put back)."""
        self.process.flush()
        procs.kill_descendants(os.getpid(), self.keep)
        procs.reap_children()
        self.process.reset()
        self.framework.restore(self.framework.initial)
        restored, problems = self.library.restore_all()
        self.imports.reset()
        self.library.adopt()
        problems += self.framework.changed_for_good()
        started = [t for t in threading.enumerate() if t.ident not in self.threads and t.is_alive()]
        if started:
            problems.append(f"{len(started)} thread(s) it started still run ({started[0].name})")
        return ("; ".join(problems[:3]) or None), restored
