"""Objects reach the worker intact: importable ones by reference, the rest by their source, at their own lines."""

from __future__ import annotations

import functools
import math
import threading
from pathlib import Path

import pytest

from lossdiag import transfer

SCALE = 3.0


def module_level(y_true, y_pred):
    return (y_true - y_pred) * SCALE


def _round_trip(obj):
    return transfer.loads(transfer.dumps(obj, "_lossdiag_check_loss_test"), [])


def test_importable_functions_go_by_reference_and_are_found_as_file_and_name():
    assert transfer.importable(module_level)
    assert _round_trip(module_level) is module_level
    assert transfer.module_binding(module_level) == (Path(__file__).resolve(), "module_level")


def test_a_closure_is_rebuilt_from_its_source_with_its_values_and_its_own_lines():
    offset = 0.5

    def shifted(y_true, y_pred, power=2):  # a local function: not importable
        return abs(y_true - y_pred + offset) ** power * SCALE * math.pi

    assert not transfer.importable(shifted) and transfer.module_binding(shifted) is None
    copy = _round_trip(shifted)
    assert copy is not shifted and copy(1.0, 0.0) == shifted(1.0, 0.0)
    assert copy.__code__.co_filename == __file__  # traces and findings point at this file
    assert copy.__code__.co_firstlineno == shifted.__code__.co_firstlineno
    assert copy.__module__ == "_lossdiag_check_loss_test"  # defined in the private module, not imported


def test_defaults_that_read_locals_of_the_enclosing_function_keep_their_values():
    eps = 1e-3

    def clipped(y_true, y_pred, eps=eps, *, floor=eps / 10):
        return max(y_true - y_pred, eps) + floor

    assert _round_trip(clipped)(0.0, 0.0) == pytest.approx(1e-3 + 1e-4)


def test_a_lambda_is_rebuilt_even_next_to_another_one_on_its_line():
    pair = (lambda a: a, lambda y_true, y_pred: (y_true - y_pred) * SCALE)
    copy = _round_trip(pair[1])
    assert copy(2.0, 1.0) == 3.0 and copy.__code__.co_firstlineno == pair[1].__code__.co_firstlineno


def test_a_local_class_and_a_partial_of_a_local_function():
    class Weighted:
        def __init__(self, weight=2.0):
            self.weight = weight

        def __call__(self, y_true, y_pred):
            return self.weight * (y_true - y_pred)

    def gap(y_true, y_pred, power):
        return (y_true - y_pred) ** power

    assert _round_trip(Weighted(weight=5.0))(1.0, 0.0) == 5.0
    assert _round_trip(functools.partial(gap, power=3))(2.0, 0.0) == 8.0
    assert transfer.display_name(functools.partial(gap, power=3)) == "gap"
    assert transfer.definition(Weighted(weight=5.0)) == (__file__, Weighted.__init__.__code__.co_firstlineno - 1)


def test_a_value_that_cannot_be_sent_is_a_clear_error():
    lock = threading.Lock()

    def guarded(y_true, y_pred):
        with lock:
            return y_true - y_pred

    with pytest.raises(transfer.TransferError, match="cannot be sent to the worker"):
        transfer.dumps(guarded, "_lossdiag_check_loss_test")


def test_the_private_module_binds_the_copy_under_a_name_python_accepts(tmp_path):
    path, name = transfer.write_module(lambda y_true, y_pred: y_true, tmp_path)
    assert name == "lambda_" and path.parent == tmp_path and path.name.startswith(transfer.MODULE_PREFIX)
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    assert namespace[name](1, 2) == 1
