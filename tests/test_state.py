"""The resets between losses and modules, one kind of state at a time, in this process."""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings

import pytest

from lossdiag import state

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def framework() -> state.FrameworkState:
    from lossdiag import _tf

    _tf.load(False)
    return state.FrameworkState(False, 0)


def test_alarms_timers_handlers_and_pending_signals_are_reset():
    saved = state.ProcessState()
    signal.signal(signal.SIGUSR1, lambda *a: None)
    signal.alarm(30)
    signal.setitimer(signal.ITIMER_REAL, 20.0)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    # pending while blocked: it would end the process once unblocked. Directed at this thread, the one
    # that blocks it: a process-directed signal would go to another thread (TensorFlow starts many in
    # a test process) and end the test run at once.
    signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)
    saved.signals()
    assert signal.alarm(0) == 0
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    assert signal.SIGUSR2 not in signal.sigpending()
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == saved.mask


def test_closed_or_replaced_standard_fds_and_streams_come_back():
    saved = state.ProcessState()
    before = os.fstat(2).st_ino
    stdout = sys.stdout
    replacement = open(os.devnull, "w")  # noqa: SIM115 - replaced on purpose
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    os.close(0)
    sys.stdout = replacement
    saved.files()
    assert os.fstat(2).st_ino == before
    os.fstat(0)  # open again
    assert sys.stdout is stdout
    replacement.close()


def test_warnings_environment_directory_and_interpreter_hooks_come_back(tmp_path):
    saved = state.ProcessState()
    filters = list(warnings.filters)
    warnings.simplefilter("error")
    os.environ["LOSSDIAG_STATE_TEST"] = "1"
    os.chdir(tmp_path)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + 123)
    sys.settrace(lambda *a: None)
    sys.excepthook = lambda *a: None
    saved.interpreter()
    assert warnings.filters == filters
    assert "LOSSDIAG_STATE_TEST" not in os.environ
    assert os.getcwd() == saved.cwd
    assert sys.getrecursionlimit() == limit
    assert sys.gettrace() is None
    assert sys.excepthook is saved.hooks["excepthook"]


def test_user_modules_and_path_entries_go_after_a_module(tmp_path):
    saved = state.ImportState()
    (tmp_path / "lossdiag_state_utils.py").write_text("VALUE = 1\n")
    sys.path.insert(0, str(tmp_path))
    import lossdiag_state_utils  # noqa: F401

    json_module = sys.modules["json"]
    sys.modules["json"] = object()  # a library module replaced
    saved.reset()
    assert "lossdiag_state_utils" not in sys.modules
    assert str(tmp_path) not in sys.path
    assert sys.modules["json"] is json_module


def test_patched_library_functions_and_methods_are_put_back(framework):
    import keras
    import numpy as np

    library = state.LibraryState()
    mean, call = np.mean, keras.losses.Loss.__call__
    np.mean = lambda *a, **k: 0.0
    keras.losses.Loss.__call__ = lambda self, *a, **k: 0.0
    keras.losses.Loss.extra_method = lambda self: 0.0
    restored, problems = library.restore_all()
    assert np.mean is mean and keras.losses.Loss.__call__ is call
    assert not hasattr(keras.losses.Loss, "extra_method")
    loss = "keras.src.losses.loss.Loss"
    assert {"numpy.mean", f"{loss}.__call__", f"{loss}.extra_method"} <= set(restored)
    assert problems == []


def test_data_attributes_may_change_but_code_replaced_by_data_comes_back(framework):
    import json

    import keras

    library = state.LibraryState()
    dumps, call = json.dumps, keras.losses.Loss.__call__
    json.lossdiag_counter = 0  # added data: no one's function
    keras.losses.Loss.__call__ = None  # a method replaced by data
    json.dumps = "not a function"
    try:
        restored, problems = library.restore_all()
    finally:
        del json.lossdiag_counter
    assert json.dumps is dumps and keras.losses.Loss.__call__ is call
    assert {"json.dumps", "keras.src.losses.loss.Loss.__call__"} <= set(restored)
    assert not any("lossdiag_counter" in name for name in restored) and problems == []


def test_a_user_function_left_in_a_library_module_asks_for_a_fresh_worker(framework):
    import json

    library = state.LibraryState()

    def dumps_everything(*args, **kwargs):  # defined in this file: user code
        return "{}"

    json.lossdiag_test_helper = dumps_everything
    try:
        _, problems = library.restore_all()
    finally:
        del json.lossdiag_test_helper
    assert problems == ["json.lossdiag_test_helper is the user's own function"]


def test_a_patch_made_at_import_stays_for_the_modules_own_losses(framework):
    import keras

    original = keras.ops.sum
    library = state.LibraryState()
    keras.ops.sum = patched = lambda *a, **k: 0.0  # the module's import patches it on purpose
    try:
        mark = library.mark()
        keras.ops.sum = lambda *a, **k: 1.0  # a loss patches it again
        assert library.restore(mark) == ["keras.ops.sum"]
        assert keras.ops.sum is patched  # back to what the import left, not to the original
    finally:
        library.restore_all()
    assert keras.ops.sum is original


def test_tensorflow_debugging_modes_and_keras_settings_come_back(framework):
    import keras
    import tensorflow as tf
    from tensorflow.python.eager import context

    tf.debugging.enable_check_numerics()
    keras.config.set_floatx("float16")
    tf.config.run_functions_eagerly(True)
    framework.restore(framework.initial)
    assert context.context().op_callbacks == []
    assert keras.config.floatx() == "float32"
    assert not tf.config.functions_run_eagerly()


def test_modes_that_cannot_be_switched_back_are_reported(framework, monkeypatch):
    assert framework.changed_for_good() == []
    monkeypatch.setattr(framework.tf, "executing_eagerly", lambda: False)
    assert framework.changed_for_good() == ["executing eagerly changed from True to False"]


def test_library_files_are_told_apart_from_user_files(tmp_path):
    import numpy

    assert state.is_library_file(numpy.__file__)
    assert state.is_library_file(state.__file__)  # lossdiag itself
    assert state.is_library_file("<string>")  # generated code (TensorFlow's op wrappers)
    assert not state.is_library_file(str(tmp_path / "losses.py"))
