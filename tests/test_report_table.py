"""The table format: nothing essential cut at 80 columns, no colour unless asked, user text not markup."""

from __future__ import annotations

import re

import pytest

from lossdiag.models import Finding, LoadError, Location, LossResult, Probe, Report
from lossdiag.report import table

LONG = "dice_coef_loss_whole_batch_over_all_pixels"


def _report(tmp_path) -> Report:
    src = tmp_path / "losses.py"
    src.write_text("def helper(a, b):\n    return ops.sum(a - b, axis=-1)\n\ndef loss2(yz, yzhat):\n    return helper(yz[:, 1], yzhat[:, 1])\n")
    file = src.as_posix()
    probe = Probe(32, (32, 2), (32, 2), "binary")
    bug = Finding(
        "LD101", "error", "returns shape () at batch size 32: summed [bold]away[/bold]", file, 2,
        hint="keep the axis: yz[:, 1:2]", related=(Location(file, 5, "this slice dropped the feature axis"),),
    )
    return Report(
        results=(
            LossResult(f"{file}::loss2", "loss2", file, 4, "fail", probe, (), 0.3307, 10.58, 32.0, (bug,)),
            LossResult(f"{file}::{LONG}", LONG, file, 9, "warn", probe, (), 0.35, 0.48, 1.36,
                       (Finding("LD102", "warning", "averaged away", file, 9),)),
            LossResult(f"{file}::ok", "ok", file, 12, "pass", probe, (32,), 0.5, 0.5, 1.0),
        ),
        errors=(LoadError("broken.py", "LD001", "SyntaxError: invalid syntax", 3),),
        files_checked=2,
    )


@pytest.mark.parametrize("width", [80, 100, 60, 50])
def test_names_codes_and_ratios_are_never_cut(tmp_path, width):
    out = table.render(_report(tmp_path), width=width)
    lines = out.splitlines()
    for needle in ["loss2", LONG, "LD101", "LD102", "32.0×", "1.36×", "1.00×"]:
        assert any(needle in line for line in lines), (needle, out)
    assert "…" not in out


def test_wide_terminal_gets_the_table_with_every_column(tmp_path):
    out = table.render(_report(tmp_path), width=120)
    title, header = out.splitlines()[:2]
    assert title.strip().endswith("losses.py")  # each file's table is titled with its path
    for column in ("Loss", "Expected", "Actual", "Ratio", "Verdict"):
        assert column in header


def test_findings_show_location_source_line_related_line_and_fix(tmp_path):
    out = " ".join(table.render(_report(tmp_path), width=100).split())  # messages wrap: compare words
    assert "LD101 batch-sum (error) in loss2" in out
    assert "losses.py:2:" in out and "return ops.sum(a - b, axis=-1)" in out
    assert "this slice dropped the feature axis" in out and "yz[:, 1]" in out
    assert "fix: keep the axis: yz[:, 1:2]" in out
    assert "LD001 load-error broken.py:3: SyntaxError" in out


def test_user_text_is_not_read_as_markup(tmp_path):
    out = " ".join(table.render(_report(tmp_path), width=120).split())
    assert "summed [bold]away[/bold]" in out


def test_no_escape_codes_without_colour_and_some_with_it(tmp_path):
    assert "\x1b[" not in table.render(_report(tmp_path), color=False)
    assert re.search("\x1b\\[[0-9;]*m", table.render(_report(tmp_path), color=True))


def test_summary_line_counts_statuses_errors_and_suppressions(tmp_path):
    report = _report(tmp_path)
    line = table.summary_line(report)
    assert line == (
        "3 losses in 2 files: 1 pass, 1 warn (not failing: --fail-on warning to fail on them), 1 fail; "
        "1 could not be loaded"
    )
    assert table.summary_line(report, fail_on="warning") == "3 losses in 2 files: 1 pass, 1 warn, 1 fail; 1 could not be loaded"


def test_quiet_form_is_one_line_per_finding(tmp_path):
    out = table.render_findings(_report(tmp_path))
    assert out.splitlines()[0] == "broken.py:3:1: LD001 SyntaxError: invalid syntax"
    assert len(out.splitlines()) == 3


def test_a_run_with_no_findings_renders(tmp_path):
    ok = LossResult("a.py::ok", "ok", "a.py", 1, "pass", Probe(32, (32, 1), (32, 1), "binary"), (32,), 0.5, 0.5, 1.0)
    out = table.render(Report(results=(ok,), files_checked=1), width=80)
    assert "ok" in out and "1.00×" in out and out.rstrip().endswith("1 loss in 1 file: 1 pass")


def test_an_empty_run_renders_only_the_summary():
    out = table.render(Report(files_checked=1, files_without_losses=("a.py",)), width=80)
    assert out == "0 losses in 1 file; 1 file without losses\n"
