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


# --- no token is ever split; what the new result fields look like ---------------------------------

from table_check import check_tokens  # noqa: E402

from lossdiag.models import LossResult as _LR  # noqa: E402


def _rich_report(tmp_path) -> Report:
    src = tmp_path / "seg.py"
    src.write_text("\n".join(f"# line {n}" for n in range(1, 80)) + "\n")
    f = src.as_posix()
    image = Probe(32, (32, 16, 16, 1), (32, 16, 16, 1), "binary", source="given")
    sparse = Probe(32, (32,), (32, 4), "sparse")
    seq = Probe(32, (32, 7), (32, 7, 5), "sparse", source="config")
    return Report(
        results=(
            _LR(f"{f}::r2_score_loss", "r2_score_loss", f, 3, "warn", Probe(32, (32, 1), (32, 1), "real"), (),
                3.185e6, 1.374, 4.32e-07, (Finding("LD105", "warning", "a batch statistic", f, 4),),
                na_reason="batch statistic"),
            _LR(f"{f}::loss2", "loss2", f, 10, "fail", seq, (), 0.3307, 10.58, 32.0,
                (Finding("LD101", "error", "summed", f, 11),), outputs=("YZ",)),
            _LR(f"{f}::mean_iou", "mean_iou", f, 20, "pass", sparse, (32,), 0.5, 0.5, 1.0, kind="metric"),
            _LR(f"{f}::{LONG}", LONG, f, 30, "pass", image, (32,), 0.5, 0.5, 1.0,
                (Finding("LD102", "warning", "averaged", f, 30, suppressed=True),)),
            _LR(f"{f}::not_probed", "not_probed", f, 40, "error",
                findings=(Finding("LD002", "warning", "every probe raised", f, 40),)),
            _LR(f"{f}::skipped", "skipped", f, 50, "skipped", note="deselected"),
        ),
        files_checked=1,
    )


@pytest.mark.parametrize("width", [80, 90, 100, 120, 160, 60, 40, None])
def test_no_token_is_split_at_any_width(tmp_path, width):
    for report in (_report(tmp_path), _rich_report(tmp_path)):
        check_tokens(table.render(report, width=width), report, width)


def test_new_fields_and_verdict_words(tmp_path):
    out = table.render(_rich_report(tmp_path), width=None)
    rows = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    assert "n/a (batch statistic)" in rows["r2_score_loss"] and "n/a" in rows["r2_score_loss"]
    assert "3.185e+06" not in out and "4.32e-07" not in out  # meaningless numbers are not shown
    assert "loss2 → YZ" in rows["loss2"]
    assert "true (32, 7) pred (32, 7, 5) sparse " in rows["loss2"]  # pinned in the config: no mark
    assert "line 20 metric" in " ".join(out.split())
    assert rows[LONG].rstrip().endswith("suppressed") and "(LD102)" in out
    assert "sparse*" in rows["mean_iou"]  # inferred
    assert "(32, 16, 16, 1) binary " in rows[LONG]  # given: no mark
    assert out.count("→") == 1 + 5 + 1 + 1  # header, output shapes, the outputs of loss2; one arrow meaning
    legend = [line for line in out.splitlines() if " = " in line]
    assert [line.split(" = ")[0] for line in legend] == ["error", "skipped", "suppressed", "*"]


def test_output_that_is_not_a_terminal_is_not_wrapped_and_has_no_trailing_spaces(tmp_path):
    report = _report(tmp_path)
    out = table.render(report, width=None)
    assert all(line == line.rstrip() for line in out.splitlines())
    message = next(line for line in out.splitlines() if "summed [bold]away[/bold]" in line)
    assert message.startswith("  ") and "returns shape ()" in message  # one line, however long


def test_summary_counts_cached_results_and_unprobed_warnings():
    unprobed = LossResult("a.py::f", "f", "a.py", 1, "error",
                          findings=(Finding("LD002", "warning", "every probe raised", "a.py", 1),))
    report = Report(results=(unprobed,), files_checked=1, cached=1)
    assert table.summary_line(report) == (
        "1 loss in 1 file: 1 error, 1 warning (not failing: --fail-on warning to fail on them); 1 from the cache"
    )
