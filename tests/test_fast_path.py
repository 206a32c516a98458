"""Files without losses are skipped without importing them, and never start TensorFlow or the worker.

Proofs are behavioural: `sys.modules` after the run, a spy on `subprocess.Popen` (the worker is the
only subprocess lossdiag starts), and `-X importtime` for the commands that never check anything.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HEAVY, cli_env, run_spied, write

TRAINING_SCRIPT = """\
import this_package_does_not_exist  # importing this file would fail here already


def normalise(values, scale):
    return [v / scale for v in values]


def train(model, data):
    model.fit(data, epochs=10)


def build(units=8):
    return units * 2


raise SystemExit("training would start here; lossdiag must never import this file")
"""

HELPERS = """\
import os


def join(a, b):
    return os.path.join(a, b)


class Config:
    def __init__(self, name):
        self.name = name
"""

@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path / "train.py", TRAINING_SCRIPT)
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "helpers.py", HELPERS)
    return tmp_path


def test_file_without_losses_is_not_imported_and_starts_nothing(project: Path):
    verdict, out, err = run_spied(["check", "train.py"], project)
    assert verdict["rc"] == 0, out + err
    assert verdict["heavy"] == []
    assert verdict["started"] == [], "no worker process may start when no file has a loss"
    assert "without losses" in out
    assert "0 losses" in out
    assert "LD001" not in out + err
    assert "training would start here" not in out + err


def test_folder_without_losses_json(project: Path):
    verdict, out, err = run_spied(["check", ".", "--format", "json"], project)
    assert verdict["rc"] == 0, out + err
    assert verdict["heavy"] == [] and verdict["started"] == []
    report = json.loads(out)
    assert report["results"] == [] and report["errors"] == []
    assert report["summary"]["losses"] == 0


def test_quiet_clean_run_prints_nothing(project: Path):
    verdict, out, err = run_spied(["check", "-q", "train.py", "pkg/helpers.py"], project)
    assert verdict == {"rc": 0, "heavy": [], "started": []}
    assert out.strip() == ""


def test_syntax_error_is_reported_without_the_worker(tmp_path: Path):
    write(tmp_path / "broken_loss.py", "def my_loss(y_true, y_pred)\n    return y_true\n")
    verdict, out, err = run_spied(["check", "broken_loss.py", "--format", "json"], tmp_path)
    assert verdict["heavy"] == [] and verdict["started"] == []
    assert verdict["rc"] == 1  # LD001 is an error finding, not a crash
    report = json.loads(out)
    assert [e["code"] for e in report["errors"]] == ["LD001"]


def test_importing_the_cli_imports_nothing_heavy():
    code = (
        "import sys, lossdiag.cli\n"
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r}]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


_IMPORT_LINE = re.compile(r"^import time:\s+\d+\s+\|\s+\d+\s+\|\s+(?P<module>\S+)", re.MULTILINE)


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["rules"], ["rule", "LD101"], ["check", "--help"], ["rule", "batch-sum"]],
    ids=" ".join,
)
def test_light_commands_never_import_tensorflow_keras_or_numpy(args: list[str]):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lossdiag", *args],
        env=cli_env(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    imported = {m.group("module") for m in _IMPORT_LINE.finditer(proc.stderr)}
    assert "lossdiag.cli" in imported  # the importtime output was parsed
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert heavy == []
    assert proc.stdout.strip()


@pytest.mark.tf
def test_the_spy_does_see_the_worker_when_a_file_has_a_loss(tmp_path: Path):
    """The control for the tests above: the same harness notices the worker when there is one."""
    write(tmp_path / "losses.py", "from keras import ops\n\n\ndef my_loss(y_true, y_pred):\n"
          "    return ops.mean(ops.square(y_true - y_pred), axis=-1)\n")
    verdict, out, err = run_spied(["check", "-q", "losses.py"], tmp_path)
    assert verdict["rc"] == 0, out + err
    assert any("lossdiag.worker" in arg for args in verdict["started"] for arg in args)
