"""lossdiag.trace: the source line where a loss lost, broadcast or merged the batch axis.

The expectations live in fixtures/pointing.py (and pointing_helpers.py) as comments:
`# expect: CODE` on the loss's def/class line, `# expect-line: CODE` on the line a finding must name,
`# expect-related: CODE` on the line that set it up (the slice). A marker inside a helper belongs to
every loss that calls that helper.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
POINTING = FIXTURES / "pointing.py"
HELPERS = FIXTURES / "pointing_helpers.py"
MARKER = re.compile(r"#\s*expect(?P<kind>-line|-related)?:\s*(?P<code>LD\d{3})")


# --------------------------------------------------------------------------------------------
# reading the markers (no TensorFlow needed)


def _markers(path: Path) -> dict[int, tuple[str, str]]:
    """line -> (kind, code), kind in "" | "-line" | "-related"."""
    found = {}
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        match = MARKER.search(text)
        if match:
            found[number] = (match.group("kind") or "", match.group("code"))
    return found


def _definitions() -> dict[str, tuple[Path, ast.AST]]:
    """Top-level functions and classes of the fixture files, by name."""
    defs: dict[str, tuple[Path, ast.AST]] = {}
    for path in (HELPERS, POINTING):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defs[node.name] = (path, node)
    return defs


def _called_names(node: ast.AST) -> set[str]:
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            if isinstance(func, ast.Name):
                names.add(func.id)
            elif isinstance(func, ast.Attribute):
                names.add(func.attr)
    return names


def _expected(name: str) -> dict[str, object]:
    """What the markers say about one loss: its code, and the (file, line) of each marker kind."""
    defs = _definitions()
    markers = {path: _markers(path) for path in (POINTING, HELPERS)}
    path, node = defs[name]
    code = markers[path][node.lineno][1]
    lines: dict[str, set[tuple[str, int]]] = {"-line": set(), "-related": set()}
    todo, seen = [name], set()
    while todo:
        current = todo.pop()
        if current in seen or current not in defs:
            continue
        seen.add(current)
        cpath, cnode = defs[current]
        for number in range(cnode.lineno, cnode.end_lineno + 1):
            kind_code = markers[cpath].get(number)
            if kind_code and kind_code[0] in lines:
                lines[kind_code[0]].add((str(cpath), number))
        todo.extend(_called_names(cnode))
    return {"code": code, "line": lines["-line"], "related": lines["-related"]}


def _marked_losses() -> list[str]:
    markers = _markers(POINTING)
    return [
        name
        for name, (path, node) in _definitions().items()
        if path == POINTING and markers.get(node.lineno, ("", ""))[0] == ""
        and node.lineno in markers
    ]


# --------------------------------------------------------------------------------------------
# running the tracer


@pytest.fixture(scope="module")
def pointing():
    from lossdiag import _tf

    _tf.load()
    sys.path.insert(0, str(FIXTURES))
    try:
        yield importlib.import_module("pointing")
    finally:
        sys.path.remove(str(FIXTURES))


def _inputs(feature_shape: tuple[int, ...]):
    def make(b: int):
        rng = np.random.default_rng(0)
        shape = (b, *feature_shape)
        y_true = rng.integers(0, 2, size=shape).astype("float32")
        y_pred = rng.uniform(0.05, 0.95, size=shape).astype("float32")
        return y_true, y_pred

    return make


def _raw_call(obj):
    from lossdiag import _tf

    if isinstance(obj, type):
        return obj().call
    return _tf.loss_wrapper(obj).call


def _trace(pointing, name: str):
    from lossdiag.trace import trace_loss

    shape = (6, 6, 1) if name == "means_every_pixel" else (2,)
    return trace_loss(_raw_call(getattr(pointing, name)), _inputs(shape)).trace


def test_the_fixture_markers_are_complete():
    names = _marked_losses()
    assert {
        "sums_over_batch_after_slice",
        "k2_sums_over_batch_after_slice",
        "sums_without_axis",
        "k2_flattens_batch_then_means",
        "means_over_axis_zero",
        "broadcasts_b_against_b1",
        "sums_over_batch_in_helper_module",
        "SumsEverything",
    } <= set(names)
    for name in names:
        expected = _expected(name)
        assert len(expected["line"]) == 1, (name, expected)
    assert any(path == str(HELPERS) for path, _ in _expected("sums_over_batch_in_helper_module")["line"])


@pytest.mark.tf
@pytest.mark.inprocess
@pytest.mark.parametrize("name", _marked_losses())
def test_event_points_at_the_marked_line(pointing, name):
    trace = _trace(pointing, name)
    expected = _expected(name)
    assert trace.error is None, trace.error
    kind = "broadcast" if expected["code"] == "LD104" else "reduced"
    event = trace.first(kind)
    assert event is not None, trace
    assert {(event.file, event.line)} == expected["line"], event
    assert Path(event.file).is_absolute()
    assert event.message and event.shapes and event.op
    setups = {(e.file, e.line) for e in trace.events if e.kind == "setup"}
    assert setups == expected["related"], trace.events
    if kind == "broadcast":
        assert "(B, B)" in event.shapes


@pytest.mark.tf
@pytest.mark.inprocess
@pytest.mark.parametrize(
    "name", ["sums_over_batch_after_slice", "k2_sums_over_batch_after_slice"]
)
def test_seed_pattern_hint_keeps_the_axis(pointing, name):
    trace = _trace(pointing, name)
    assert "1:" in trace.hint and "keep the axis" in trace.hint, trace.hint
    assert "yz[:, 1:2]" in trace.hint and "yzhat[:, 1:2]" in trace.hint
    reduced = trace.first("reduced")
    assert reduced.shapes == "(B,) -> ()"
    assert "sum(axis=-1)" in reduced.message and "batch axis" in reduced.message
    setup = trace.first("setup")
    assert setup.op == "slice [:, 1]" and setup.shapes == "(B, 2) -> (B,)"


@pytest.mark.tf
@pytest.mark.inprocess
@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("sums_without_axis", "axis=-1"),
        ("SumsEverything", "axis=-1"),
        ("means_every_pixel", "axis=[1, 2, 3]"),
        ("means_over_axis_zero", "axis=-1"),
        ("k2_flattens_batch_then_means", "K.batch_flatten(x)"),
        ("broadcasts_b_against_b1", "y_true[:, 0:1]"),
        ("sums_over_batch_in_helper_module", "y_true[:, 0:1]"),
    ],
)
def test_hints(pointing, name, needle):
    trace = _trace(pointing, name)
    assert needle in trace.hint, trace.hint


@pytest.mark.tf
@pytest.mark.inprocess
def test_flatten_is_a_merge_before_the_reduction(pointing):
    trace = _trace(pointing, "k2_flattens_batch_then_means")
    merged = trace.first("merged")
    assert merged is not None and merged.shapes == "(B, 2) -> (B*2,)"
    assert [e.kind for e in trace.events] == ["merged", "reduced"]


def _flatten_on_its_own_line(y_true, y_pred):
    from keras import ops

    diff = ops.reshape(y_true, (-1,)) - ops.reshape(y_pred, (-1,))
    return ops.mean(ops.square(diff))


@pytest.mark.tf
@pytest.mark.inprocess
def test_merge_and_reduction_on_separate_lines():
    from lossdiag import _tf
    from lossdiag.trace import trace_loss

    _tf.load()
    trace = trace_loss(_tf.loss_wrapper(_flatten_on_its_own_line).call, _inputs((2,))).trace
    start = _flatten_on_its_own_line.__code__.co_firstlineno
    assert (trace.first("merged").file, trace.first("merged").line) == (__file__, start + 3)
    assert trace.first("reduced").line == start + 4
    assert next(e.kind for e in trace.events if e.kind != "setup") == "merged"
    assert "ops.reshape(x, (ops.shape(x)[0], -1))" in trace.hint


@pytest.mark.tf
@pytest.mark.inprocess
@pytest.mark.parametrize("name", ["per_sample_mse", "keeps_feature_axis"])
def test_correct_loss_has_no_event(pointing, name):
    trace = _trace(pointing, name)
    assert trace.error is None
    assert trace.first("reduced") is None and trace.first("broadcast") is None and trace.first("merged") is None
    assert trace.hint == ""


def _calls_numpy(y_true, y_pred):
    from keras import ops

    scale = float(y_pred.numpy().mean())
    return ops.mean(ops.square(y_true - y_pred), axis=-1) * scale


def _branches_on_a_tensor(y_true, y_pred):
    from keras import ops

    if ops.sum(y_true) > 0:
        return ops.mean(y_true, axis=-1)
    return ops.mean(y_pred, axis=-1)


@pytest.mark.tf
@pytest.mark.inprocess
@pytest.mark.parametrize("fn", [_calls_numpy, _branches_on_a_tensor])
def test_untraceable_loss_gives_an_error_not_an_exception(fn):
    from lossdiag import _tf
    from lossdiag.trace import trace_loss

    _tf.load()
    trace = trace_loss(_tf.loss_wrapper(fn).call, _inputs((2,))).trace
    assert trace.error and "\n" not in trace.error
    assert trace.events == ()


@pytest.mark.tf
@pytest.mark.inprocess
def test_a_failing_input_factory_gives_an_error():
    from lossdiag.trace import trace_loss

    def broken(b):
        raise ValueError("no inputs\nsecond line")

    trace = trace_loss(lambda t, p: t, broken).trace
    assert trace.error == "ValueError: no inputs"


def test_importing_trace_does_not_import_tensorflow():
    code = "import sys, lossdiag.trace; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


@pytest.mark.tf
@pytest.mark.inprocess
def test_broadcast_found_in_an_image_layout(pointing):
    from lossdiag.trace import trace_loss

    result = trace_loss(_raw_call(pointing.broadcasts_b_against_b1), _inputs((6, 6, 1)))
    trace = result.trace
    assert result.cross_op == "(B, 6, 1) - (B, 1, 6, 1) -> (B, B, 6, 1)"
    event = trace.first("broadcast")
    assert {(event.file, event.line)} == _expected("broadcasts_b_against_b1")["line"]
    assert event.shapes == "(B, 6, 1) and (B, 1, 6, 1) -> (B, B, 6, 1)"
    assert "y_true[:, 0:1]" in trace.hint


@pytest.mark.tf
@pytest.mark.inprocess
def test_a_deliberate_pairwise_matrix_is_not_an_accidental_cross_broadcast():
    """Batch-hard mining builds (B, B) distances on purpose, with expand_dims: the verdict stays LD105."""
    from keras import ops

    from lossdiag import _tf
    from lossdiag.trace import trace_loss

    def pairwise(y_true, y_pred):
        d = ops.sum(ops.square(ops.expand_dims(y_pred, 1) - ops.expand_dims(y_pred, 0)), axis=-1)
        return ops.max(d, axis=-1) + 0.0 * y_true[:, 0]

    def accidental(y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred[:, 0]), axis=-1)

    assert trace_loss(_tf.loss_wrapper(pairwise).call, _inputs((2,))).cross_op == ""
    assert trace_loss(_tf.loss_wrapper(accidental).call, _inputs((1,))).cross_op == "(B, 1) - (B,) -> (B, B)"


@pytest.mark.tf
@pytest.mark.inprocess
def test_pairs_of_samples_pooled_at_once_are_told_from_rows_reduced_first():
    """A pairwise ranking hinge sums its (B, B) pairs straight into one value (LD104); a per-anchor mining,
    or a pair mask built from y_true alone, does not pool y_pred's pairs that way."""
    from keras import ops

    from lossdiag import _tf
    from lossdiag.trace import trace_loss

    def ranking(y_true, y_pred):
        return ops.sum(ops.relu(1.0 - (y_pred - ops.transpose(y_pred))) * (y_true * ops.transpose(1.0 - y_true)))

    def mined(y_true, y_pred):
        d = ops.sum(ops.square(ops.expand_dims(y_pred, 1) - ops.expand_dims(y_pred, 0)), axis=-1)
        return ops.mean(ops.max(d, axis=-1)) + 0.0 * ops.sum(y_true)

    def counted(y_true, y_pred):
        same = ops.cast(ops.equal(y_true, ops.transpose(y_true)), "float32")
        return ops.mean(ops.square(y_true - y_pred)) / (ops.sum(same) + 1.0)

    assert trace_loss(_tf.loss_wrapper(ranking).call, _inputs((1,))).pooled_pairs == "sum over (B, B) -> ()"
    assert trace_loss(_tf.loss_wrapper(mined).call, _inputs((2,))).pooled_pairs == ""
    assert trace_loss(_tf.loss_wrapper(counted).call, _inputs((1,))).pooled_pairs == ""
