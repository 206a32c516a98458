"""`pytest --lossdiag` in a real temporary repo: one item per loss, the finding as the failure, one lossdiag run."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from conftest import REPO, cli_env, write

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

THREE_LOSSES = """\
from keras import ops


def loss1(z, zhat):
    return ops.sum(ops.square(z - zhat), axis=-1)


def loss2(yz, yzhat):
    d = ops.square(yz[:, 1] - yzhat[:, 1])
    return ops.sum(d, axis=-1)


def loss2_fixed(yz, yzhat):
    d = ops.square(yz[:, 1:] - yzhat[:, 1:])
    return ops.sum(d, axis=-1)
"""
# Counts the lossdiag runs of a session and says whether pytest's own process imported TensorFlow.
SPY = """\
import sys

import lossdiag.engine

RUNS = []
_check = lossdiag.engine.check


def _counting(*args, **kwargs):
    RUNS.append(args[0])
    return _check(*args, **kwargs)


lossdiag.engine.check = _counting


def pytest_sessionfinish(session):
    tf = "tensorflow" in sys.modules
    print(f"\\nSPY runs={len(RUNS)} targets={sorted(t for run in RUNS for t in run)} tensorflow_in_pytest={tf}")
"""


def _plugin_args() -> list[str]:
    """`-p lossdiag.pytest_plugin` unless the installed package already registers it (pytest11)."""
    installed = any(ep.value == "lossdiag.pytest_plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "lossdiag.pytest_plugin"]


def _pytest(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env()
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, "-m", "pytest", *_plugin_args(), "-p", "no:cacheprovider", "-v", "-rs", *args]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600, check=False)


def _outcomes(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """{node id: PASSED | FAILED | SKIPPED} from pytest -v's one line per item."""
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        match = re.match(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR)\b", line)
        if match:
            out[match.group(1)] = match.group(2)
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plugin_repo")
    write(root / "losses.py", THREE_LOSSES)
    write(root / "conftest.py", SPY)
    write(root / "tests" / "test_plain.py", "def test_plain():\n    assert True\n")
    return root


@pytest.fixture(scope="module")
def runs(repo: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """The pytest runs the tests below read, side by side (each pays one TensorFlow import, in the worker)."""
    variants = {
        "plain": ("--lossdiag", "losses.py", "--junitxml=report.xml"),
        "k": ("--lossdiag", "losses.py", "-k", "loss2 and not fixed"),
        "x": ("--lossdiag", "losses.py", "-x"),
        "off": ("losses.py",),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = {name: pool.submit(_pytest, repo, *args) for name, args in variants.items()}
    return {name: future.result() for name, future in done.items()}


def test_the_entry_point_is_declared():
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert data["project"]["entry-points"]["pytest11"] == {"lossdiag": "lossdiag.pytest_plugin"}


@pytest.mark.tf
def test_one_item_per_loss_one_failing_with_the_finding(runs):
    proc = runs["plain"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert _outcomes(proc) == {
        "losses.py::loss1": "PASSED", "losses.py::loss2": "FAILED", "losses.py::loss2_fixed": "PASSED",
    }  # fmt: skip
    failure = proc.stdout.split("lossdiag loss2 _", 1)[1]
    lines = THREE_LOSSES.splitlines()
    sum_line = next(i for i, text in enumerate(lines, 1) if text == "    return ops.sum(d, axis=-1)")
    assert f"losses.py:{sum_line}: LD101 batch-sum (error) in loss loss2: " in failure
    assert "(32.0×)" in failure and "  fix: " in failure


@pytest.mark.tf
def test_one_lossdiag_run_per_session_and_no_tensorflow_in_pytest(runs):
    spy = next(line for line in runs["plain"].stdout.splitlines() if line.startswith("SPY "))
    assert " runs=1 " in spy and spy.endswith("tensorflow_in_pytest=False")
    targets = spy.split("targets=")[1].split(" tensorflow")[0]
    assert sorted(t.rsplit("::", 1)[1].strip("'") for t in targets.strip("[]").split(", ")) == [
        "loss1", "loss2", "loss2_fixed",
    ]


@pytest.mark.tf
def test_the_junit_file_names_the_loss(runs, repo):
    assert runs["plain"].returncode == 1
    cases = {case.get("name"): case for case in ET.parse(repo / "report.xml").getroot().iter("testcase")}
    assert set(cases) == {"loss1", "loss2", "loss2_fixed"}
    assert cases["loss2"].get("classname") == "losses"
    failure = cases["loss2"].find("failure")
    assert failure is not None and "LD101" in failure.get("message", "")
    properties = {p.get("name"): p.get("value") for p in cases["loss2"].iter("property")}
    assert properties["lossdiag_codes"] == "LD101" and properties["lossdiag_kind"] == "loss"


@pytest.mark.tf
def test_k_selects_items_and_only_they_are_checked(runs):
    proc = runs["k"]
    assert _outcomes(proc) == {"losses.py::loss2": "FAILED"}
    assert "2 deselected" in proc.stdout
    spy = next(line for line in proc.stdout.splitlines() if line.startswith("SPY "))
    assert "runs=1" in spy and "::loss2'" in spy and "loss1" not in spy


@pytest.mark.tf
def test_x_stops_at_the_first_failing_loss(runs):
    proc = runs["x"]
    assert _outcomes(proc) == {"losses.py::loss1": "PASSED", "losses.py::loss2": "FAILED"}
    assert "stopping after 1 failures" in proc.stdout


def test_without_the_flag_the_plugin_does_nothing(runs):
    proc = runs["off"]
    assert proc.returncode == 5, proc.stdout  # no tests collected: losses.py has none
    assert "runs=0" in proc.stdout and "tensorflow_in_pytest" in proc.stdout


@pytest.mark.tf
def test_include_suppressions_and_fail_on_come_from_the_configuration(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.lossdiag]\ninclude = ["src"]\nfail-on = "warning"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    write(tmp_path / "src" / "losses.py", THREE_LOSSES.replace("def loss2(yz, yzhat):", "def loss2(yz, yzhat):  # lossdiag: ignore[LD101]") + (
        "\n\ndef batch_mean(y_true, y_pred):\n    return ops.mean(ops.square(y_true - y_pred))\n"
    ))
    write(tmp_path / "tests" / "test_plain.py", "def test_plain():\n    assert True\n")
    proc = _pytest(tmp_path, "--lossdiag")  # no paths: testpaths for the tests, include for lossdiag
    assert _outcomes(proc) == {
        "tests/test_plain.py::test_plain": "PASSED", "src/losses.py::loss1": "PASSED",
        "src/losses.py::loss2": "SKIPPED", "src/losses.py::loss2_fixed": "PASSED",
        "src/losses.py::batch_mean": "FAILED",  # LD102 is a warning: it fails under fail-on = "warning"
    }, proc.stdout  # fmt: skip
    assert "suppressed with # lossdiag: ignore: LD101" in proc.stdout
    assert "LD102 batch-mean (warning) in loss batch_mean" in proc.stdout


def test_a_run_that_cannot_start_fails_every_item_with_the_reason(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.lossdiag.probes]\nlos1 = "y_true=B,2;y_pred=B,2;labels=binary"\n')
    write(tmp_path / "losses.py", THREE_LOSSES)
    proc = _pytest(tmp_path, "--lossdiag", "losses.py")
    assert set(_outcomes(proc).values()) == {"FAILED"} and len(_outcomes(proc)) == 3, proc.stdout
    assert "lossdiag could not run: --probe los1: no loss named 'los1' in the checked files; did you mean 'loss1'" in proc.stdout


def test_a_file_that_is_not_python_is_one_failing_item(tmp_path):
    write(tmp_path / "broken.py", "def loss(y_true, y_pred):\n    return (\n")
    proc = _pytest(tmp_path, "--lossdiag", "broken.py")
    assert _outcomes(proc) == {"broken.py::<module>": "FAILED"}, proc.stdout
    assert "LD001 load-error (error) in loss <module>: SyntaxError" in proc.stdout
