"""Which rules run (--select/--ignore, prefixes and names) and which findings fail the run (--fail-on)."""

from __future__ import annotations

import json

import click
import pytest

from conftest import SEED_BUG, run_cli_many, write

from lossdiag import config
from lossdiag.cli import _codes, _exit_status
from lossdiag.engine import is_selected
from lossdiag.models import Finding, LoadError, LossResult, Report

MEAN_LOSS = """\
from keras import ops


def mean_loss(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred))
"""


# --- the decision: prefixes, longest prefix wins -----------------------------------------------


@pytest.mark.parametrize(
    "code, select, ignore, expected",
    [
        ("LD101", (), (), True),  # nothing selected means everything
        ("LD101", ("LD",), (), True),
        ("LD101", ("LD1",), (), True),
        ("LD201", ("LD1",), (), False),
        ("LD101", ("LD101",), (), True),
        ("LD102", ("LD101",), (), False),
        ("LD101", (), ("LD1",), False),
        ("LD201", (), ("LD1",), True),
        ("LD101", ("LD1",), ("LD101",), False),  # the longer ignore wins
        ("LD102", ("LD1",), ("LD101",), True),
        ("LD101", ("LD101",), ("LD1",), True),  # the longer select wins
        ("LD105", ("LD101",), ("LD1",), False),
        ("LD101", ("LD1",), ("LD1",), False),  # a tie ignores
        ("LD202", ("LD2", "LD101"), ("LD20",), False),
        ("LD201", ("LD201",), ("LD20", "LD2"), True),
    ],
)
def test_is_selected(code, select, ignore, expected):
    assert is_selected(code, select, ignore) is expected


@pytest.mark.parametrize(
    "given, expected",
    [
        (("LD101",), ("LD101",)),
        (("ld1",), ("LD1",)),
        (("batch-sum",), ("LD101",)),
        (("LD1,LD201",), ("LD1", "LD201")),
        (("LD1, batch-mean", "nonfinite"), ("LD1", "LD102", "LD201")),
        (("ALL",), ("LD",)),
        (("LD",), ("LD",)),
    ],
)
def test_codes_and_rule_names_become_prefixes(given, expected):
    assert _codes(None, None, given) == expected  # type: ignore[arg-type]
    assert tuple(config.code_prefix(p) for g in given for p in g.replace(",", " ").split()) == expected


@pytest.mark.parametrize("bad", ["XX9", "LD9", "LD1011", "batch", "E501", ""])
def test_unknown_codes_are_rejected(bad):
    with pytest.raises(ValueError, match="not a rule code"):
        config.code_prefix(bad)
    if bad:
        with pytest.raises(click.BadParameter):
            _codes(None, None, (bad,))  # type: ignore[arg-type]


# --- --fail-on on a report (no TensorFlow) ----------------------------------------------------------


def _report(*findings: Finding, errors: tuple[LoadError, ...] = ()) -> Report:
    status = "fail" if any(f.severity == "error" for f in findings) else "warn" if findings else "pass"
    return Report(results=(LossResult("l.py::x", "x", "l.py", 1, status, findings=findings),), errors=errors)


WARNING = Finding("LD102", "warning", "averaged", "l.py", 2)
ERROR = Finding("LD101", "error", "summed", "l.py", 2)


@pytest.mark.parametrize(
    "report, fail_on, expected",
    [
        (_report(), "warning", 0),
        (_report(WARNING), "error", 0),
        (_report(WARNING), "warning", 1),
        (_report(WARNING), "never", 0),
        (_report(ERROR), "error", 1),
        (_report(ERROR), "warning", 1),
        (_report(ERROR), "never", 0),
        (_report(Finding("LD101", "error", "summed", "l.py", 2, suppressed=True)), "warning", 0),
        (_report(errors=(LoadError("b.py", "LD001", "SyntaxError"),)), "error", 1),
    ],
)
def test_exit_status(report, fail_on, expected):
    assert _exit_status(report, fail_on) == expected


# --- through the command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, str]]:
    root = tmp_path_factory.mktemp("selection")
    write(root / "seed.py", SEED_BUG)
    write(root / "mean.py", MEAN_LOSS)
    plan = {
        "select-LD2": ["seed.py", "--select", "LD2", "--format", "json"],
        "ignore-by-name": ["seed.py", "--ignore", "batch-sum", "--format", "json"],
        "mean-fail-on-error": ["mean.py", "--fail-on", "error"],
        "mean-fail-on-warning": ["mean.py", "--fail-on", "warning", "--format", "json"],
        "mean-fail-on-never": ["mean.py", "--fail-on", "never"],
    }
    return dict(zip(plan, run_cli_many([(["check", *args], root) for args in plan.values()])))


@pytest.mark.tf
@pytest.mark.parametrize("run", ["select-LD2", "ignore-by-name"])
def test_deselected_batch_sum_is_not_reported(runs, run):
    rc, out, err = runs[run]
    assert rc == 0, out + err
    report = json.loads(out)
    [loss] = report["results"]
    assert loss["name"] == "loss2"
    assert all(f["code"] != "LD101" for f in loss["findings"])
    assert loss["status"] == "pass"
    assert loss["output_shape"] == []  # still measured: only the finding was deselected


@pytest.mark.tf
def test_warning_only_loss_and_fail_on(runs):
    rc, out, err = runs["mean-fail-on-warning"]
    assert rc == 1, out + err
    [loss] = json.loads(out)["results"]
    assert [(f["code"], f["severity"]) for f in loss["findings"]] == [("LD102", "warning")]
    assert loss["status"] == "warn"
    assert runs["mean-fail-on-error"][0] == 0, runs["mean-fail-on-error"]
    assert "LD102" in runs["mean-fail-on-error"][1]  # reported, just not failing
    assert runs["mean-fail-on-never"][0] == 0, runs["mean-fail-on-never"]
