"""Targets resolve to files, and the ast pre-scan finds what a user would call a loss, and nothing else."""

from __future__ import annotations

import textwrap
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
    with pytest.raises(discover.TargetError, match="no_such.py: no such file"):
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
