"""Targets resolve to files, and the ast pre-scan finds what a user would call a loss, and nothing else."""

from __future__ import annotations

import inspect
import json
import textwrap
import types
from pathlib import Path

import pytest

from lossdiag import discover

SOURCE = textwrap.dedent(
    """
    import functools
    import keras
    from keras.losses import mse            # imported: not a candidate

    def loss1(z, zhat):                     # two required positional parameters
        return z - zhat

    def weighted(y_true, y_pred, w=2.0):    # extra parameters with defaults are fine
        return y_true

    def build_model(units, depth):          # two parameters, but not a loss by name or parameters
        pass

    def three(y_true, y_pred, mask):        # three required: not a loss Keras can call
        pass

    def focal(gamma=2.0):                   # a factory returning a closure
        def inner(y_true, y_pred):
            return y_true
        return inner

    def train():                            # no loss returned: never called
        return 1

    class DiceLoss(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return y_true

    class FocalDice(DiceLoss):              # derives from a loss class of this file
        pass

    class Model:
        pass

    dice = DiceLoss()
    focal3 = focal(gamma=3.0)
    smooth_bce = functools.partial(weighted, w=5.0)
    mae_lambda = lambda y_true, y_pred: y_true
    CONFIG = dict(lr=0.1)

    if __name__ == "__main__":
        raise SystemExit("never run")
    """
)


def test_scan_finds_every_kind_of_loss_and_nothing_else():
    found = {(c.name, c.kind) for c in discover.scan_source(SOURCE)}
    assert found == {
        ("loss1", "function"), ("weighted", "function"), ("focal", "factory"), ("DiceLoss", "class"),
        ("FocalDice", "class"), ("dice", "assign"), ("focal3", "assign"), ("smooth_bce", "assign"),
        ("mae_lambda", "assign"),
    }


def test_scan_reports_definition_lines():
    lines = {c.name: c.line for c in discover.scan_source(SOURCE)}
    assert SOURCE.splitlines()[lines["loss1"] - 1].startswith("def loss1(")
    assert SOURCE.splitlines()[lines["DiceLoss"] - 1].startswith("class DiceLoss(")


@pytest.mark.parametrize("name, params, expected", [
    ("loss2", ["yz", "yzhat"], True),
    ("anything", ["y_true", "y_pred"], True),
    ("dice_coef", ["a", "b"], True),
    ("build_model", ["units", "depth"], False),
    ("add", ["a", "b"], False),
])
def test_looks_like_loss(name, params, expected):
    assert discover.looks_like_loss(name, params) is expected


def test_syntax_error_is_reported_with_its_line(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("def loss(y_true, y_pred):\n    return (\n")
    scan = discover.scan_file(bad)
    assert scan.syntax_error is not None and scan.syntax_error[0].startswith("SyntaxError")
    assert scan.syntax_error[1] is not None


def test_binary_file_is_not_python(tmp_path):
    bad = tmp_path / "blob.py"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    assert discover.scan_file(bad).syntax_error is not None


def test_resolve_files_folders_dotted_and_names(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "losses.py").write_text("")
    (pkg / "sub" / "more.py").write_text("")
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "hidden.py").write_text("")
    targets = discover.resolve_targets(["."], tmp_path)
    assert [t.path.relative_to(tmp_path).as_posix() for t in targets] == [
        "pkg/__init__.py", "pkg/losses.py", "pkg/sub/more.py"]
    (dotted,) = discover.resolve_targets(["pkg.losses::focal"], tmp_path)
    assert dotted.path == (pkg / "losses.py").resolve() and dotted.names == frozenset({"focal"})
    merged = discover.resolve_targets(["pkg/losses.py::a", "pkg/losses.py::b"], tmp_path)
    assert len(merged) == 1 and merged[0].names == frozenset({"a", "b"})
    assert discover.resolve_targets(["pkg/losses.py::a", "pkg/losses.py"], tmp_path)[0].names is None
    excluded = discover.resolve_targets(["."], tmp_path, exclude=("pkg/sub/*",))
    assert "pkg/sub/more.py" not in [t.path.relative_to(tmp_path).as_posix() for t in excluded]


def test_missing_target_is_an_error(tmp_path):
    with pytest.raises(discover.TargetError, match=r"no_such\.py: no such file"):
        discover.resolve_targets(["no_such.py"], tmp_path)


def test_module_identity_follows_packages(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "losses.py").write_text("")
    (tmp_path / "loose.py").write_text("")
    assert discover.module_identity(tmp_path / "pkg" / "sub" / "losses.py") == ("pkg.sub.losses", tmp_path.resolve())
    assert discover.module_identity(tmp_path / "loose.py") == ("loose", tmp_path.resolve())


def test_display_path_is_relative_posix_under_cwd(tmp_path):
    assert discover.display_path(tmp_path / "a" / "b.py", tmp_path) == "a/b.py"
    assert discover.display_path(Path("/elsewhere/x.py"), tmp_path) == "/elsewhere/x.py"


# --- discovery from use ------------------------------------------------------------------------------

USES = textwrap.dedent(
    """
    import functools
    import keras
    from keras import ops
    from keras.losses import BinaryCrossentropy

    def loss1(z, zhat):
        return z - zhat

    def gap(a, b):                              # no loss word, no loss-like parameters
        return a - b

    def agreement(a, b):
        return a == b

    def dice_coef(a, b):                        # found by its name, and used as a metric
        return a * b

    def looked_up(a, b):
        return a

    def registered(a, b):
        return a

    def swish(x):                               # an activation in custom_objects
        return x

    def make_focal(gamma):
        def inner(y_true, y_pred):
            return y_true ** gamma
        return inner

    WEIGHTS = {"Y": 1.0}
    CUSTOM = {"swish": swish, "registered": registered}
    criterion = object()

    def build(model, local_gamma):
        model.compile(
            optimizer="adam",
            loss={"Y": "mse", "Z": loss1, "YZ": gap},
            loss_weights=WEIGHTS,
            metrics=[agreement, dice_coef, "mae"],
        )
        model.compile(loss=[gap, make_focal(gamma=2.0)])
        model.compile(loss=criterion)
        model.compile(loss=BinaryCrossentropy(from_logits=True))
        model.compile(loss=keras.losses.Huber(delta=0.5))
        model.compile(loss=functools.partial(gap, b=0.0))
        model.compile(loss=make_focal(gamma=local_gamma))   # reads a local: cannot be built from the module
        model.compile("adam", "binary_crossentropy")
        return keras.losses.get(looked_up)

    def reload(path):
        return keras.models.load_model(path, custom_objects=CUSTOM)
    """
)


def _by_name(source: str = USES) -> dict[str, discover.AstCandidate]:
    return {c.name: c for c in discover.scan_source(source)}


def test_what_compile_metrics_get_and_custom_objects_are_handed_is_a_candidate():
    found = _by_name()
    assert set(found) == {
        "loss1", "gap", "agreement", "dice_coef", "looked_up", "registered", "swish", "criterion",
        "make_focal(gamma=2.0)", "functools.partial(gap, b=0.0)",
    }
    assert found["gap"].kind == "use" and found["gap"].via == ("compile",)
    assert found["loss1"].kind == "function" and found["loss1"].via == ("compile",)
    assert found["criterion"].kind == "use"
    assert found["looked_up"].via == ("losses.get",)
    assert found["registered"].via == found["swish"].via == ("custom_objects",)


def test_compile_records_the_outputs_a_loss_is_for():
    found = _by_name()
    assert found["loss1"].outputs == ("Z",)
    assert found["gap"].outputs == ("YZ", "output 0")
    assert found["make_focal(gamma=2.0)"].outputs == ("output 1",)
    assert found["criterion"].outputs == ()


def test_a_call_handed_to_compile_is_an_expression_candidate_at_its_line():
    found = _by_name()
    focal = found["make_focal(gamma=2.0)"]
    assert (focal.kind, focal.expr) == ("expr", "make_focal(gamma=2.0)")
    assert USES.splitlines()[focal.line - 1].strip() == "model.compile(loss=[gap, make_focal(gamma=2.0)])"
    assert focal.roots == {"make_focal"}
    assert found["functools.partial(gap, b=0.0)"].roots == {"functools", "gap"}


def test_what_metrics_get_has_the_metric_role_and_is_imported_for():
    found = _by_name()
    assert found["agreement"].role == found["dice_coef"].role == "metric"  # handed to metrics=[...] only
    assert found["gap"].role == found["loss1"].role == "loss"  # handed to compile(loss=...)
    scan = discover.FileScan(Path("x.py"), "x", Path("."), tuple(found.values()))
    assert "agreement" in discover.import_roots(scan, None)


@pytest.mark.parametrize("params, order", [
    (["y_true", "y_pred"], "target_first"),
    (["labels", "logits"], "target_first"),
    (["target", "output"], "target_first"),
    (["y", "y_hat"], "target_first"),
    (["gt", "pred"], "target_first"),
    (["y_true_batch", "y_pred_batch"], "target_first"),
    (["yz", "yzhat"], "target_first"),
    (["yTrue", "yPred"], "target_first"),
    (["predictions", "labels"], "prediction_first"),
    (["logits", "labels"], "prediction_first"),
    (["y_pred", "y_true"], "prediction_first"),
    (["output", "target"], "prediction_first"),
    (["pred_mask", "gt_mask"], "prediction_first"),
    (["t_flat", "p_flat"], None),
    (["y", "p"], "target_first"),
    (["units", "depth"], None),
    (["a", "b"], None),
    (["labels", "targets"], None),
])
def test_parameter_order(params, order):
    assert discover.param_order(params) == order


def test_private_helpers_are_found_only_by_use():
    """`_cell_loss(logits, labels)` is a helper of the public losses, whatever its name says."""
    source = "def _terms(logits, labels):\n    return labels\ndef _cell_loss(logits, labels):\n    return labels\n"
    assert set(_by_name(source)) == set()
    assert set(_by_name(source + "model.compile(loss=_cell_loss)\n")) == {"_cell_loss"}


def test_prediction_first_functions_are_found_and_swapped_unless_keras_calls_them():
    found = _by_name(textwrap.dedent(
        """
        def agreement_rate(predictions, labels):
            return predictions
        def token_nll(logits, labels):
            return logits
        def compiled(logits, labels):
            return logits
        model.compile(loss=compiled)
        """
    ))
    assert found["agreement_rate"].swapped and found["token_nll"].swapped
    assert found["compiled"].kind == "function" and not found["compiled"].swapped


LOSS_CLASSES = textwrap.dedent(
    """
    import keras

    class WeightedLoss(keras.losses.Loss):
        def __init__(self, weights, name="weighted"):
            super().__init__(name=name)

    class NeedsGamma(keras.losses.Loss):
        def __init__(self, *, gamma):
            super().__init__()

    class Subclass(NeedsGamma):
        pass

    class Plain(keras.losses.Loss):
        pass

    class BuiltInFactory(keras.losses.Loss):
        def __init__(self, alpha):
            super().__init__()

    def default_loss():
        return BuiltInFactory(alpha=0.5)

    heavy = WeightedLoss(weights=[1.0, 2.0])
    """
)


def test_a_loss_class_needing_arguments_is_covered_by_what_builds_it():
    found = _by_name(LOSS_CLASSES)
    assert "WeightedLoss" not in found and "heavy" in found  # the instance stands for it
    assert "BuiltInFactory" not in found and found["default_loss"].kind == "factory"
    assert {"NeedsGamma", "Subclass", "Plain"} <= set(found)  # nothing builds them: listed (and skipped)


def test_what_main_compiles_is_found_when_the_module_defines_it():
    found = _by_name(textwrap.dedent(
        """
        def gap(a, b):
            return a - b
        def make_gap(scale):
            return lambda y_true, y_pred: scale * (y_true - y_pred)
        if __name__ == "__main__":
            args = parse()
            configured = make_gap(args.scale)
            model.compile(loss={"out": gap, "aux": make_gap(args.scale), "more": configured})
        """
    ))
    assert set(found) == {"gap"} and found["gap"].outputs == ("out",)


def test_main_only_globals_are_recorded_on_the_candidate():
    found = _by_name(textwrap.dedent(
        """
        def scaled(y_true, y_pred):
            return y_true * SCALE
        if __name__ == "__main__":
            SCALE = 2.0
        """
    ))
    assert found["scaled"].main_only == ("SCALE", 5)


def test_scan_file_reads_coding_lines_and_boms_and_judges_the_keras(tmp_path):
    latin = tmp_path / "latin.py"
    latin.write_bytes(
        b"# -*- coding: latin-1 -*-\nimport keras.backend as K\nUNIT = '\xb5m'\n"
        b"def loss(y_true, y_pred):\n    return K.sum(y_true)\n"
    )
    scan = discover.scan_file(latin)
    assert scan.syntax_error is None and [c.name for c in scan.candidates] == ["loss"]
    assert scan.keras2 is not None and scan.keras2.line == 5
    bom = tmp_path / "bom.py"
    bom.write_bytes(b"\xef\xbb\xbffrom keras import ops\ndef loss(y_true, y_pred):\n    return ops.sum(y_true)\n")
    scan = discover.scan_file(bom)
    assert scan.syntax_error is None and scan.keras2 is None and [c.name for c in scan.candidates] == ["loss"]


# --- --probe keys ----------------------------------------------------------------------------------


def _scans(tmp_path: Path) -> list[discover.FileScan]:
    (tmp_path / "losses.py").write_text("def focal_loss(y_true, y_pred):\n    return y_true\n"
                                        "def focal_dice(y_true, y_pred):\n    return y_true\n")
    (tmp_path / "other.py").write_text("def huber(y_true, y_pred):\n    return y_true\n")
    return [discover.scan_file(tmp_path / "losses.py"), discover.scan_file(tmp_path / "other.py")]


def test_probe_keys_that_name_a_loss_are_accepted(tmp_path):
    discover.check_probe_keys(["focal_loss", "huber", "other.py::huber", f"{tmp_path}/losses.py::focal_dice"],
                              _scans(tmp_path), tmp_path)


@pytest.mark.parametrize("key, message", [
    ("focal_los", "--probe focal_los: no loss named 'focal_los' in the checked files; did you mean 'focal_loss'"),
    ("other.py::focal_loss", "--probe other.py::focal_loss: no loss named 'focal_loss' in other.py"),
    ("nothing_alike", "--probe nothing_alike: no loss named 'nothing_alike' in the checked files"),
    ("missing.py::huber", "--probe missing.py::huber: missing.py: no such file"),
])
def test_probe_keys_that_name_no_loss_are_usage_errors(tmp_path, key, message):
    with pytest.raises(discover.TargetError) as info:
        discover.check_probe_keys([key], _scans(tmp_path), tmp_path)
    assert str(info.value).startswith(message)
    if key == "nothing_alike":
        assert "did you mean" not in str(info.value)


def test_engine_check_rejects_a_probe_key_before_running_anything(tmp_path):
    from lossdiag import engine

    _scans(tmp_path)
    with pytest.raises(discover.TargetError, match="did you mean 'focal_loss'"):
        engine.check(["losses.py"], engine.Options(probes={"focal_lose": "y_true=B,2;y_pred=B,2;labels=binary"}), tmp_path)


# --- materialise ---------------------------------------------------------------------------------


class FakeLoss:
    """Stands in for keras.losses.Loss: materialise takes the base classes as a parameter."""


def _wrap(fn):
    return ("wrapped", fn)


MATERIALISE = textwrap.dedent(
    """
    import sys

    def plain_loss(y_true, y_pred):
        return (y_true, y_pred)

    def nll(logits, labels):
        return (logits, labels)

    class ExitingLoss(FakeLoss):
        def __init__(self):
            sys.exit(3)

    class NeedsWeights(FakeLoss):
        def __init__(self, weights, eps=1e-7):
            self.weights = weights

    def interrupted_loss_factory():
        raise KeyboardInterrupt
        def inner(y_true, y_pred):
            return y_true
        return inner

    def vanishing_loss(y_true, y_pred):
        return y_true

    def agreement(a, b):
        return a

    def make(scale):
        return lambda y_true, y_pred: scale

    def uses_main(y_true, y_pred):
        return MAIN_ONLY

    def build(model):
        model.compile(loss=make(scale=3), metrics=[agreement])

    if __name__ == "__main__":
        MAIN_ONLY = 1
    """
)


def _materialise(tmp_path: Path, names: frozenset[str] | None = None) -> dict[str, discover.Candidate]:
    path = tmp_path / "mod.py"
    path.write_text(MATERIALISE)
    scan = discover.scan_file(path, names)
    module = types.ModuleType("mod")
    module.__dict__["FakeLoss"] = FakeLoss
    exec(compile(MATERIALISE, str(path), "exec"), module.__dict__)
    del module.vanishing_loss

    def module_getattr(name):
        raise RuntimeError(f"lazy {name} failed")

    module.__getattr__ = module_getattr
    return {c.name: c for c in discover.materialise(module, scan, names, _wrap, (FakeLoss,))}


def test_one_bad_candidate_costs_only_itself(tmp_path):
    built = _materialise(tmp_path)
    assert built["plain_loss"].loss == ("wrapped", built["plain_loss"].loss[1]) and built["plain_loss"].error is None
    assert built["ExitingLoss"].error == "building it called sys.exit(3)"
    assert built["interrupted_loss_factory"].error == "building it raised KeyboardInterrupt: KeyboardInterrupt"
    assert built["vanishing_loss"].error == "building it raised RuntimeError: lazy vanishing_loss failed"


def test_a_class_needing_arguments_is_skipped_with_how_to_configure_it(tmp_path):
    cand = _materialise(tmp_path)["NeedsWeights"]
    assert cand.loss is None and cand.skipped == (
        "its constructor needs `weights`; create an instance at module level (`loss = NeedsWeights(weights=...)`) "
        "or pass one to compile() in this file"
    )


def test_prediction_first_functions_get_the_prediction_first(tmp_path):
    wrapped = _materialise(tmp_path)["nll"].loss[1]
    assert wrapped("TRUE", "PRED") == ("PRED", "TRUE")
    assert wrapped.__name__ == "nll"
    assert inspect.getsource(wrapped).startswith("def nll(logits, labels):")


def test_expressions_and_metrics_are_built_and_main_only_globals_are_explained(tmp_path):
    built = _materialise(tmp_path)
    assert built["make(scale=3)"].loss[1](0, 0) == 3
    assert built["agreement"].role == "metric"
    line = MATERIALISE.splitlines().index("    MAIN_ONLY = 1") + 1
    assert built["uses_main"].error == (
        f'`MAIN_ONLY` is only set under `if __name__ == "__main__":` (line {line}), which lossdiag does not run: '
        "define it at module level"
    )
    assert "agreement" in _materialise(tmp_path, frozenset({"agreement"}))


# --- end to end ------------------------------------------------------------------------------------


@pytest.mark.tf
def test_losses_found_from_use_are_probed_as_keras_calls_them():
    from conftest import REPO, run_cli

    code, out, err = run_cli(["check", "fixtures/from_use.py", "--format", "json"], REPO)
    assert code == 1, err
    results = {r["name"]: r for r in json.loads(out)["results"]}
    assert "Rescale" not in results  # a layer in custom_objects
    assert (results["agreement"]["kind"], results["agreement"]["status"]) == ("metric", "pass")  # no LD202 for a metric
    # prediction first: the probe hands the integer labels to `labels`, the logits to `logits`
    probe = results["next_token"]["probe"]
    assert probe["labels"] == "sparse" and len(probe["y_pred"]) == len(probe["y_true"]) + 1
    (finding,) = results["next_token_batch_mean"]["findings"]
    lines = (REPO / "fixtures" / "from_use.py").read_text().splitlines()
    assert finding["code"] == "LD102" and "ops.mean(" in lines[finding["line"] - 1]
    assert results["make_focal(gamma=2.0)"]["status"] == results["ScaledError(scale=2.0)"]["status"] == "pass"


def test_a_probe_key_that_names_no_loss_exits_2_naming_the_closest(tmp_path):
    from conftest import run_cli

    (tmp_path / "losses.py").write_text("def focal_loss(y_true, y_pred):\n    return y_true\n")
    code, out, err = run_cli(["check", "losses.py", "--probe", "focal_los=y_true=B,2;y_pred=B,2;labels=binary"], tmp_path)
    assert code == 2 and out == ""
    assert "focal_los" in err and "did you mean 'focal_loss'" in err and "Traceback" not in err
