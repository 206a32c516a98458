"""Inline suppressions: `# lossdiag: ignore[CODES]` / `# lossdiag: ignore`, on the def line or the finding's line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli_many, write

from lossdiag import suppress


@pytest.mark.parametrize(
    "line, expected",
    [
        ("def loss(y_true, y_pred):  # lossdiag: ignore", frozenset()),
        ("def loss(y_true, y_pred):  # lossdiag: ignore[LD105]", frozenset({"LD105"})),
        ("x = 1  # lossdiag: ignore[LD101, LD2]", frozenset({"LD101", "LD2"})),
        ("x = 1  # lossdiag: ignore[LD101,LD2]", frozenset({"LD101", "LD2"})),
        ("x = 1  # lossdiag: ignore[LD101 LD2]", frozenset({"LD101", "LD2"})),
        ("x = 1  # LossDiag: IGNORE[ld101]", frozenset({"LD101"})),
        ("x = 1  #lossdiag:ignore", frozenset()),
        ("x = 1  # noqa: E501  # lossdiag: ignore[LD102]", frozenset({"LD102"})),
        ("x = 1  # lossdiag: ignore[ LD101 ] and why", frozenset({"LD101"})),
    ],
)
def test_parse_directive(line: str, expected: frozenset[str]):
    assert suppress.parse(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "def loss(y_true, y_pred):",
        "x = 1  # noqa: LD101",
        "x = 1  # lossdiag ignore",
        "x = 1  # lossdiag: ignored for now, see issue 12",  # prose, not a blanket directive
        "x = 1  # lossdiag: check",
        "",
    ],
)
def test_no_directive(line: str):
    assert suppress.parse(line) is None


def test_blanket_and_listed_codes_match_by_prefix(tmp_path: Path):
    path = write(
        tmp_path / "losses.py",
        """\
        def a(y_true, y_pred):  # lossdiag: ignore
            pass
        def b(y_true, y_pred):  # lossdiag: ignore[LD1]
            pass
        def c(y_true, y_pred):  # lossdiag: ignore[LD105]
            pass
        """,
    )
    file = str(path)
    assert suppress.is_suppressed("LD201", [(file, 1)])
    assert suppress.is_suppressed("LD101", [(file, 3)]) and suppress.is_suppressed("LD105", [(file, 3)])
    assert not suppress.is_suppressed("LD201", [(file, 3)])
    assert suppress.is_suppressed("LD105", [(file, 5)])
    assert not suppress.is_suppressed("LD101", [(file, 5)])
    assert not suppress.is_suppressed("LD101", [(file, 2)])  # a line without a directive
    assert suppress.is_suppressed("LD101", [(file, 2), (file, 1)])  # any of the places counts
    assert not suppress.is_suppressed("LD101", [(file, 0), (file, 99), (str(tmp_path / "gone.py"), 1)])


def test_an_edited_file_is_read_again(tmp_path: Path):
    path = tmp_path / "losses.py"
    path.write_text("def a(y_true, y_pred):\n    pass\n", encoding="utf-8")
    assert not suppress.is_suppressed("LD101", [(str(path), 1)])
    path.write_text("def a(y_true, y_pred):  # lossdiag: ignore[LD101]\n    pass\n", encoding="utf-8")
    assert suppress.is_suppressed("LD101", [(str(path), 1)])


# --- end to end: the JSON report marks the finding, and the exit status ignores it ---------------

# Line numbers matter: the def lines are 4, 9, 14, 19; the `sum` lines are 6, 11, 16, 21.
SUPPRESSED = """\
from keras import ops


def on_def(yz, yzhat):  # lossdiag: ignore[LD101]
    d = ops.square(yz[:, 1] - yzhat[:, 1])
    return ops.sum(d, axis=-1)


def on_sum_line(yz, yzhat):
    d = ops.square(yz[:, 1] - yzhat[:, 1])
    return ops.sum(d, axis=-1)  # lossdiag: ignore[LD101]


def other_code(yz, yzhat):  # lossdiag: ignore[LD105]
    d = ops.square(yz[:, 1] - yzhat[:, 1])
    return ops.sum(d, axis=-1)


def blanket(yz, yzhat):  # LossDiag: Ignore
    d = ops.square(yz[:, 1] - yzhat[:, 1])
    return ops.sum(d, axis=-1)
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("suppress")
    write(root / "losses.py", SUPPRESSED)
    both = ["losses.py::on_def", "losses.py::on_sum_line", "losses.py::blanket"]
    whole, only_suppressed = run_cli_many(
        [(["check", "losses.py", "--format", "json"], root), (["check", *both, "--format", "json"], root)]
    )
    return whole, only_suppressed


def test_fixture_lines_are_where_the_comments_say():
    lines = SUPPRESSED.splitlines()
    assert lines[3].startswith("def on_def") and lines[8].startswith("def on_sum_line")
    assert "ops.sum" in lines[10] and "ignore[LD101]" in lines[10]
    assert lines[13].startswith("def other_code") and lines[18].startswith("def blanket")


@pytest.mark.tf
def test_suppressed_findings_are_reported_as_suppressed(runs):
    rc, out, err = runs[0]
    report = json.loads(out)
    by_name = {r["name"]: r for r in report["results"]}
    for name in ("on_def", "on_sum_line", "blanket"):
        findings = by_name[name]["findings"]
        assert [(f["code"], f["suppressed"]) for f in findings] == [("LD101", True)], name
        assert by_name[name]["status"] == "pass"
    # the finding points at the `sum` line, which is where the second directive sits
    assert by_name["on_sum_line"]["findings"][0]["line"] == 11
    assert report["summary"]["suppressed"] >= 3


@pytest.mark.tf
def test_a_directive_for_another_code_does_not_suppress(runs):
    rc, out, err = runs[0]
    report = json.loads(out)
    other = next(r for r in report["results"] if r["name"] == "other_code")
    assert [(f["code"], f["suppressed"]) for f in other["findings"]] == [("LD101", False)]
    assert other["status"] == "fail"
    assert rc == 1, err


@pytest.mark.tf
def test_only_suppressed_findings_exit_0(runs):
    rc, out, err = runs[1]
    assert rc == 0, out + err
    report = json.loads(out)
    assert {r["name"] for r in report["results"]} == {"on_def", "on_sum_line", "blanket"}
    assert report["summary"]["suppressed"] == 3
    assert report["summary"]["fail"] == 0
