"""Definitions-only import: the losses of a training script are defined, the training never runs."""

from __future__ import annotations

import inspect
import json
import sys
import textwrap
import traceback
import types
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO, run_cli, run_cli_many, write
from test_fixtures import markers

from lossdiag import discover, script

SCRIPTS = FIXTURES / "scripts"


def load(path: Path, names: frozenset[str] | None = None) -> tuple[types.ModuleType, script.SliceOutcome]:
    """Run the definitions-only import of `path` in a fresh module, as the worker does."""
    scan = discover.scan_file(path, names)
    module = types.ModuleType(f"sliced_{path.stem}")
    module.__file__ = str(path)
    outcome = script.run_definitions(module, path, discover.import_roots(scan, names))
    return module, outcome


def plan_of(source: str, roots: set[str]) -> tuple[script.ModuleAnalysis, script.Plan]:
    analysis = script.ModuleAnalysis(textwrap.dedent(source), "<test>")
    return analysis, analysis.plan(roots)


def kept_lines(analysis: script.ModuleAnalysis, plan: script.Plan) -> list[int]:
    return [analysis.statements[i].first for i in plan.kept]


# --- what is kept and what is skipped ------------------------------------------------------------


def test_the_training_is_skipped_and_what_the_loss_reads_is_kept():
    analysis, plan = plan_of(
        """\
        import numpy as np
        EPS = 1e-7
        SCALE = np.float32(2.0)
        def helper(x):
            return x * SCALE
        def loss(y_true, y_pred):
            return helper(y_true - y_pred) + EPS
        data = np.load("train.npz")
        model = build(data)
        model.compile(loss=loss)
        model.fit(data["x"], data["y"], epochs=100)
        print("done")
        """,
        {"loss"},
    )
    assert kept_lines(analysis, plan) == [1, 2, 3, 4, 6]
    assert [(r.first, r.last, r.text) for r in plan.skipped] == [(8, 12, 'data = np.load("train.npz")')]


def test_mutations_loops_and_if_blocks_that_fill_a_needed_name_are_kept():
    analysis, plan = plan_of(
        """\
        import os, sys
        sys.path.insert(0, os.path.dirname(__file__))
        os.environ["MY_FLAG"] = "1"
        try:
            import tf_keras as keras
        except ImportError:
            import keras
        weights = [1.0, 1.0, 1.0]
        weights[0] = 2.0
        table = {}
        table.update(a=1)
        for i, w in enumerate([3.0, 4.0]):
            weights[i + 1] = w
        if os.environ.get("BIG"):
            MARGIN = 10.0
        else:
            MARGIN = 1.0
        unrelated = [0]
        unrelated.append(1)
        i = 99
        def loss(y_true, y_pred):
            return (y_true - y_pred) * weights[0] * MARGIN + table["a"]
        """,
        {"loss"},
    )
    assert kept_lines(analysis, plan) == [1, 2, 3, 4, 8, 9, 10, 11, 12, 14, 21]
    assert [r.text for r in plan.skipped] == ["unrelated = [0]"]  # the loop variable `i` pulls in nothing


def test_a_global_the_loss_updates_is_kept():
    analysis, plan = plan_of(
        """\
        CALLS = 0
        def counting_loss(y_true, y_pred):
            global CALLS
            CALLS += 1
            return y_true
        """,
        {"counting_loss"},
    )
    assert kept_lines(analysis, plan) == [1, 2]


def test_a_fit_that_reads_a_needed_name_is_still_skipped():
    analysis, plan = plan_of(
        """\
        import numpy as np
        class_weight = np.ones(3)
        def loss(y_true, y_pred):
            return y_true * class_weight
        model.fit(x, y, class_weight=class_weight.tolist())
        model.evaluate(x, y)
        class_weight.sort()
        """,
        {"loss"},
    )
    assert kept_lines(analysis, plan) == [1, 2, 3, 7]


def test_everything_under_main_is_skipped_and_main_only_globals_are_named():
    analysis, plan = plan_of(
        """\
        def helper(x):
            return x * SCALE
        def loss(y_true, y_pred):
            return helper(y_true - y_pred)
        def other(y_true, y_pred):
            return y_true
        if __name__ == "__main__":
            import argparse
            SCALE = 2.0
            train()
        """,
        {"loss", "other"},
    )
    assert kept_lines(analysis, plan) == [1, 3, 5]
    assert analysis.main_only({"loss"}) == ("SCALE", 9)
    assert analysis.main_only({"other"}) is None


def test_a_definition_whose_decorator_needs_a_skipped_name_is_left_out():
    analysis, plan = plan_of(
        """\
        app = make_app()
        @app.route("/")
        def index():
            return "hi"
        def loss(y_true, y_pred):
            return y_true
        """,
        {"loss"},
    )
    assert kept_lines(analysis, plan) == [5]


def test_expression_names_are_the_free_names_of_an_expression():
    assert script.expression_names("focal_loss(gamma=GAMMA, alpha=[a for a in ALPHAS])") == {"focal_loss", "GAMMA", "ALPHAS"}
    assert script.expression_names("lambda y, p: (y - p) * W") == {"W"}


# --- running the slice ---------------------------------------------------------------------------


@pytest.mark.tf  # the fixture imports keras
def test_class_weights_script_defines_its_losses_without_loading_data():
    path = SCRIPTS / "class_weights.py"
    module, outcome = load(path)
    assert outcome.complete, outcome.problem
    assert module.CLASS_WEIGHTS.tolist() == pytest.approx([0.05, 0.25, 1.0], rel=1e-6)
    assert module.SETTINGS == {"clip": 1e-6}
    assert not hasattr(module, "x_train") and not hasattr(module, "model")
    assert [r.text for r in outcome.skipped] == [
        'DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")'
    ]


def test_line_numbers_source_and_tracebacks_stay_right(tmp_path):
    path = write(tmp_path / "train.py", """\
        import math

        rows = open("missing.csv").read()


        def loss(y_true, y_pred):
            return math.log(y_pred) - y_true


        print("training")
        """)
    module, outcome = load(path, frozenset({"loss"}))
    assert outcome.complete
    assert module.loss.__code__.co_firstlineno == 6
    assert inspect.getsource(module.loss).startswith("def loss(y_true, y_pred):")
    with pytest.raises(ValueError) as info:
        module.loss(1.0, 0.0)
    frame = traceback.extract_tb(info.value.__traceback__)[-1]
    assert (frame.filename, frame.lineno) == (str(path), 7)


def test_a_needed_statement_that_fails_asks_for_a_full_import(tmp_path):
    path = write(tmp_path / "train.py", """\
        STATE = {}
        def register():
            STATE["w"] = 2.0
        register()
        WEIGHT = STATE["w"]
        def loss(y_true, y_pred):
            return (y_true - y_pred) * WEIGHT
        """)
    _, outcome = load(path)
    assert not outcome.complete
    assert outcome.problem.startswith("line 5 (`WEIGHT = STATE[\"w\"]`) raised KeyError: 'w'")
    assert outcome.notes("train.py")[-1].endswith("; importing the whole file instead")


def test_an_unneeded_import_that_fails_is_noted_and_the_rest_runs(tmp_path):
    path = write(tmp_path / "nb.py", """\
        import not_a_real_plotting_package_xyz as plt
        import math
        def loss(y_true, y_pred):
            return math.fabs(y_true - y_pred)
        plt.plot([1, 2])
        """)
    module, outcome = load(path)
    assert outcome.complete and module.loss(1.0, 3.0) == 2.0
    (failed,) = outcome.failed
    assert failed.startswith("line 1 (`import not_a_real_plotting_package_xyz as plt`) raised ModuleNotFoundError")
    assert failed.endswith("no loss needs it")


def test_sys_exit_in_a_needed_statement_does_not_end_the_import(tmp_path):
    path = write(tmp_path / "cli.py", """\
        import sys
        ARGS = sys.exit("usage: cli.py DATA")
        def loss(y_true, y_pred):
            return ARGS
        """)
    _, outcome = load(path)
    assert "raised SystemExit('usage: cli.py DATA')" in outcome.problem


def test_a_name_the_slice_cannot_define_asks_for_a_full_import(tmp_path):
    path = write(tmp_path / "odd.py", """\
        def loss(y_true, y_pred):
            return y_true
        del loss
        """)
    _, outcome = load(path)
    assert outcome.problem == "`loss` (needed by loss) was not defined by the definitions-only import"


@pytest.mark.tf  # the fixture imports keras
def test_a_main_only_global_does_not_ask_for_a_full_import():
    module, outcome = load(SCRIPTS / "main_only_global.py")
    assert outcome.complete and not hasattr(module, "SCALE")
    scan = discover.scan_file(SCRIPTS / "main_only_global.py")
    found = {c.name: (c.main_only, c.main_set) for c in scan.candidates}
    assert found == {
        "scaled_mse": (("SCALE", 35), None), "scaled_mse_fixed": (None, None),
        "weighted_mse": (None, ("WEIGHTS", 34)), "weighted_mse_or_plain": (None, ("WEIGHTS", 34)),
    }


@pytest.mark.parametrize("encoding, prefix", [("latin-1", b"# -*- coding: latin-1 -*-\n"), ("utf-8", b"\xef\xbb\xbf")])
def test_source_is_read_as_python_reads_it(tmp_path, encoding, prefix):
    path = tmp_path / "enc.py"
    path.write_bytes(prefix + 'UNIT = "\u00b5m"\ndef loss(y_true, y_pred):\n    return UNIT\n'.encode(encoding))
    assert 'UNIT = "\u00b5m"' in script.read_source(path)
    module, outcome = load(path)
    assert outcome.complete and module.loss(0, 0) == "\u00b5m"


# --- end to end ------------------------------------------------------------------------------------


def _results(stdout: str) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(stdout)["results"]}


def _codes(result: dict) -> set[str]:
    return {f["code"] for f in result["findings"] if not f["suppressed"]} or {result["status"]}


@pytest.mark.tf
def test_training_scripts_are_checked_without_training(tmp_path, monkeypatch):
    marker = tmp_path / "trained.txt"
    monkeypatch.setenv("LOSSDIAG_TRAINING_MARKER", str(marker))
    names = ["class_weights.py", "main_only_global.py", "notebook_export.py"]
    runs = [(["check", f"fixtures/scripts/{name}", "--format", "json", "-v"], REPO) for name in names]
    # The seed script is Keras-2 code, run on tf_keras with no flag (the worker reads that from its source)
    runs.append((["check", "fixtures/scripts/train_seed_k2.py", "--format", "json", "-v"], REPO))
    for name, (code, out, err) in zip([*names, "train_seed_k2.py"], run_cli_many(runs)):
        assert code in (0, 1), err
        assert json.loads(out)["errors"] == []
        if name == "train_seed_k2.py":
            assert {r["keras"] for r in json.loads(out)["results"]} == {"tf_keras 2.21.0"}
        expected = markers(SCRIPTS / name)
        results = _results(out)
        assert set(results) == set(expected), name
        for loss, codes in expected.items():
            assert _codes(results[loss]) == ({"pass"} if codes == {"pass"} else codes), (name, loss, results[loss])
        assert "imported its definitions only" in err and "importing the whole file" not in err
    assert not marker.exists(), marker.read_text()


@pytest.mark.tf
def test_the_seed_script_points_at_the_sum_and_the_slices():
    code, out, err = run_cli(["check", "fixtures/scripts/train_seed_k2.py::loss2", "--format", "json"], REPO)
    assert code == 1, err
    (result,) = json.loads(out)["results"]
    (finding,) = result["findings"]
    lines = (SCRIPTS / "train_seed_k2.py").read_text().splitlines()
    assert finding["code"] == "LD101" and result["ratio"] == pytest.approx(32, rel=0.05)
    assert "K.sum(" in lines[finding["line"] - 1]
    body = range(result["line"] + 1, result["line"] + 4)
    assert {r["line"] for r in finding["related"]} == {n for n in body if "[:, 1]" in lines[n - 1]} == {23, 24}


@pytest.mark.tf
def test_main_only_global_gets_a_clear_message():
    code, out, _ = run_cli(["check", "fixtures/scripts/main_only_global.py::scaled_mse", "--format", "json"], REPO)
    (result,) = json.loads(out)["results"]
    (finding,) = result["findings"]
    assert finding["code"] == "LD002"
    assert finding["message"] == (
        '`SCALE` is only set under `if __name__ == "__main__":` (line 35), which lossdiag does not run: '
        "define it at module level"
    )


@pytest.mark.tf
def test_a_none_placeholder_set_under_main_is_named_in_the_fix():
    code, out, _ = run_cli(["check", "fixtures/scripts/main_only_global.py::weighted_mse", "--format", "json"], REPO)
    (result,) = json.loads(out)["results"]
    (finding,) = result["findings"]
    assert finding["code"] == "LD002" and "NoneType" in finding["message"]
    assert finding["hint"].startswith(
        '`WEIGHTS` is None at module level and only set under `if __name__ == "__main__":` (line 34)'
    )


@pytest.mark.tf
def test_fallback_to_a_full_import_is_said_and_works(tmp_path):
    write(tmp_path / "train.py", """\
        from keras import ops

        STATE = {}


        def register():
            STATE["w"] = 2.0


        register()
        WEIGHT = STATE["w"]


        def weighted_error(y_true, y_pred):
            return ops.mean(ops.square(y_true - y_pred), axis=-1) * WEIGHT
        """)
    code, out, err = run_cli(["check", "train.py", "--format", "json", "-v"], tmp_path)
    assert code == 0, err
    assert _results(out)["weighted_error"]["status"] == "pass"
    assert "line 11 (`WEIGHT = STATE[\"w\"]`) raised KeyError" in err and "importing the whole file instead" in err


@pytest.mark.tf
def test_full_import_option_runs_the_whole_file(tmp_path, monkeypatch):
    from lossdiag import engine

    marker = tmp_path / "ran.txt"
    write(tmp_path / "train.py", f"""\
        from keras import ops


        def squared_error(y_true, y_pred):
            return ops.mean(ops.square(y_true - y_pred), axis=-1)


        open({str(marker)!r}, "a").write("module-level code ran\\n")
        """)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    sliced = engine.check(["train.py"], engine.Options(), tmp_path)
    assert [r.status for r in sliced.results] == ["pass"] and not marker.exists()
    full = engine.check(["train.py"], engine.Options(full_import=True), tmp_path)
    assert [r.status for r in full.results] == ["pass"] and marker.exists()


def test_a_package_module_is_sliced_after_its_package_is_imported(tmp_path, monkeypatch):
    import importlib.util

    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "helpers.py", "EPS = 0.5\n")
    path = write(tmp_path / "pkg" / "train.py", """\
        from .helpers import EPS
        def loss(y_true, y_pred):
            return y_true - y_pred + EPS
        raise SystemExit("training")
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.spec_from_file_location("pkg.train", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "pkg.train", module)
    try:
        loaded = script.import_definitions(spec, module, {"loss": frozenset({"loss"})})
        assert loaded is module and module.loss(1.0, 1.0) == 0.5
    finally:
        for name in ("pkg", "pkg.helpers"):
            sys.modules.pop(name, None)


def test_when_the_whole_file_fails_too_the_losses_that_do_not_need_the_failure_are_kept(tmp_path, monkeypatch):
    import importlib.util

    path = write(tmp_path / "train_cli.py", """\
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument("--gamma", type=float, required=True)
        args = parser.parse_args(["--no-such-flag"])
        def gamma_loss(y_true, y_pred):
            return (y_true - y_pred) ** args.gamma
        def plain_loss(y_true, y_pred):
            return y_true - y_pred
        """)
    scan = discover.scan_file(path)
    spec = importlib.util.spec_from_file_location("train_cli", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_cli", module)
    loaded = script.import_definitions(spec, module, discover.import_roots(scan, None))
    built = {c.name: c for c in discover.materialise(loaded, scan, None, lambda fn: fn, (type(None),))}
    assert built["plain_loss"].error is None and built["plain_loss"].loss(3, 1) == 2
    assert built["gamma_loss"].loss is None
    assert built["gamma_loss"].error == (
        "module-level code it needs failed: line 4 (`args = parser.parse_args([\"--no-such-flag\"])`) raised SystemExit(2)"
    )


def test_when_no_loss_survives_the_whole_files_error_is_the_modules(tmp_path, monkeypatch):
    import importlib.util

    path = write(tmp_path / "needs_data.py", """\
        WEIGHTS = open("no_such_weights.txt").read()
        def weighted(y_true, y_pred):
            return WEIGHTS
        """)
    scan = discover.scan_file(path)
    spec = importlib.util.spec_from_file_location("needs_data", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "needs_data", module)
    with pytest.raises(FileNotFoundError):
        script.import_definitions(spec, module, discover.import_roots(scan, None))
