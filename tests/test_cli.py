"""The command line as a user meets it: exit statuses, formats, --output, -q, the rule commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import REPO, run_cli, run_cli_many, write

import lossdiag
from lossdiag.rules import RULES

SEED = "fixtures/seed_losses.py"


# --- runs that start TensorFlow: made once, side by side, read by several tests -----------------


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, str]]:
    out_dir = tmp_path_factory.mktemp("cli-output")
    runs = {
        "table": ([SEED], REPO),
        "quiet": (["-q", SEED], REPO),
        "json-file": ([SEED, "--format", "json", "--output", str(out_dir / "report.json")], REPO),
        "clean": (["-q", f"{SEED}::loss1", f"{SEED}::loss2_fixed"], REPO),
    }
    results = run_cli_many([(["check", *args], cwd) for args, cwd in runs.values()])
    outcome = dict(zip(runs, results))
    outcome["report-path"] = (0, str(out_dir / "report.json"), "")
    return outcome


@pytest.mark.tf
def test_finding_exits_1_and_table_shows_it(seed_runs):
    rc, out, err = seed_runs["table"]
    assert rc == 1, out + err
    for text in ("loss2", "LD101", "batch-sum", "fixtures/seed_losses.py:7", "3 losses in 1 file"):
        assert text in out
    assert re.search(r"\b32(\.0)?×", out)  # the ratio is never cut
    assert "\x1b[" not in out  # NO_COLOR, and not a terminal
    assert err == ""  # nothing from TensorFlow's logging


@pytest.mark.tf
def test_quiet_prints_one_line_per_finding(seed_runs):
    rc, out, err = seed_runs["quiet"]
    assert rc == 1, out + err
    lines = out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("fixtures/seed_losses.py:7: LD101 [loss2] ")


@pytest.mark.tf
def test_clean_losses_exit_0_and_quiet_prints_nothing(seed_runs):
    rc, out, err = seed_runs["clean"]
    assert (rc, out) == (0, ""), err


@pytest.mark.tf
def test_output_file_gets_the_report_and_stdout_stays_empty(seed_runs):
    rc, out, err = seed_runs["json-file"]
    assert rc == 1, out + err
    assert out == ""
    assert "3 losses in 1 file" in err  # the summary goes to stderr
    report = json.loads(Path(seed_runs["report-path"][1]).read_text(encoding="utf-8"))
    assert report["schema"] == 1
    assert report["tool"] == {"name": "lossdiag", "version": lossdiag.__version__}
    by_name = {r["name"]: r for r in report["results"]}
    assert [f["code"] for f in by_name["loss2"]["findings"]] == ["LD101"]
    assert by_name["loss2"]["status"] == "fail"
    assert by_name["loss1"]["status"] == by_name["loss2_fixed"]["status"] == "pass"
    assert report["summary"]["losses"] == 3 and report["summary"]["fail"] == 1


# --- usage errors: exit 2, no TensorFlow needed --------------------------------------------------


def test_missing_target_exits_2_with_one_line(tmp_path: Path):
    rc, out, err = run_cli(["check", "no_such_losses.py"], tmp_path)
    assert rc == 2
    assert out == ""
    assert err.splitlines() == ["lossdiag: error: no_such_losses.py: no such file, folder or module"]


def test_missing_target_among_good_ones_still_exits_2(tmp_path: Path):
    write(tmp_path / "helpers.py", "def add(a, b):\n    return a + b\n")
    rc, out, err = run_cli(["check", "helpers.py", "missing.py"], tmp_path)
    assert rc == 2 and len(err.splitlines()) == 1 and "missing.py" in err


@pytest.mark.parametrize(
    "probe",
    ["my_loss=y_true=B,2;y_pred=3", "my_loss=y_pred=B,B", "my_loss=y_pred=B,2;labels=colour", "my_loss", "=y_pred=B"],
)
def test_bad_probe_spec_exits_2(tmp_path: Path, probe: str):
    write(tmp_path / "helpers.py", "def add(a, b):\n    return a + b\n")
    rc, out, err = run_cli(["check", "helpers.py", "--probe", probe], tmp_path)
    assert rc == 2, out + err
    assert "--probe" in err


@pytest.mark.parametrize(
    "args",
    [
        ["check", "--bogus", "x.py"],
        ["check", "--format", "xml", "x.py"],
        ["check", "--fail-on", "info", "x.py"],
        ["check", "--batch-size", "1", "x.py"],
        ["check", "--select", "XX9", "x.py"],
        ["check", "--ignore", "not-a-rule", "x.py"],
        ["frobnicate"],
    ],
    ids=" ".join,
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]):
    rc, out, err = run_cli(args, tmp_path)
    assert rc == 2, out + err
    assert err


def test_no_target_and_no_include_exits_2(tmp_path: Path):
    rc, out, err = run_cli(["check"], tmp_path)
    assert rc == 2
    assert len(err.splitlines()) == 1 and "include" in err


def test_unknown_rule_exits_2(tmp_path: Path):
    rc, out, err = run_cli(["rule", "LD999"], tmp_path)
    assert rc == 2
    assert out == ""
    assert err.splitlines() == ["lossdiag: error: unknown rule 'LD999'; `lossdiag rules` lists them"]


# --- the commands that never check anything -------------------------------------------------------


def test_version():
    rc, out, err = run_cli(["--version"])
    assert (rc, out) == (0, f"lossdiag {lossdiag.__version__}\n")


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_commands_and_exit_statuses(flag: str):
    rc, out, err = run_cli([flag])
    assert rc == 0, err
    for command in ("check", "rules", "rule"):
        assert f"  {command} " in out
    assert "Exit status" in out


def test_check_help_lists_every_option():
    rc, out, err = run_cli(["check", "--help"])
    assert rc == 0, err
    for option in ("--format", "--output", "--batch-size", "--seed", "--select", "--ignore", "--fail-on",
                   "--probe", "--timeout", "--legacy-keras", "-q", "-v"):
        assert option in out
    assert "Exit status" in out


def test_rules_lists_every_rule_once():
    rc, out, err = run_cli(["rules"])
    assert rc == 0, err
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == list(RULES)
    for line, rule in zip(lines, RULES.values()):
        assert line.split()[1:3] == [rule.name, rule.severity]


@pytest.mark.parametrize("name", ["LD101", "ld101", "batch-sum"])
def test_rule_explains_ld101(name: str):
    rc, out, err = run_cli(["rule", name])
    assert rc == 0, err
    assert out.startswith("# LD101 batch-sum (error)")
    for section in ("## What it does", "## Why is this bad?", "## Example", "Use instead:", "```python"):
        assert section in out


# --- every format on a run without losses (no TensorFlow) ----------------------------------------


@pytest.fixture
def no_losses(tmp_path: Path) -> Path:
    write(tmp_path / "helpers.py", "def add(a, b):\n    return a + b\n")
    return tmp_path


@pytest.mark.parametrize("fmt", ["table", "json", "github", "sarif", "junit"])
def test_every_format_renders_an_empty_report(no_losses: Path, fmt: str):
    rc, out, err = run_cli(["check", "helpers.py", "--format", fmt], no_losses)
    assert rc == 0, out + err
    assert "internal error" not in err
    if fmt in ("json", "sarif"):
        json.loads(out)


def test_output_creates_missing_folders(no_losses: Path):
    rc, out, err = run_cli(["check", "helpers.py", "--format", "sarif", "-o", "reports/ci/lossdiag.sarif"], no_losses)
    assert rc == 0, err
    assert out == ""
    assert json.loads((no_losses / "reports" / "ci" / "lossdiag.sarif").read_text(encoding="utf-8"))["version"] == "2.1.0"
    assert "0 losses in 1 file" in err


def test_output_that_cannot_be_written_exits_2_with_one_line(no_losses: Path):
    (no_losses / "taken").write_text("a file, not a folder", encoding="utf-8")
    rc, out, err = run_cli(["check", "helpers.py", "-o", "taken/report.txt"], no_losses)
    assert rc == 2
    [line] = err.splitlines()
    assert line.startswith("lossdiag: error: taken/report.txt: cannot write the report")


def test_quiet_output_file_prints_nothing(no_losses: Path):
    rc, out, err = run_cli(["check", "helpers.py", "-q", "--format", "json", "-o", "r.json"], no_losses)
    assert (rc, out, err) == (0, "", "")
    assert json.loads((no_losses / "r.json").read_text(encoding="utf-8"))["summary"]["losses"] == 0


def test_a_name_the_file_does_not_define_exits_2_before_any_import(tmp_path: Path):
    write(tmp_path / "losses.py", "raise RuntimeError('must not be imported')\n\ndef loss(y_true, y_pred):\n    return y_true\n")
    rc, out, err = run_cli(["check", "losses.py::nope"], cwd=tmp_path)
    assert rc == 2 and out == ""
    assert err.strip() == "lossdiag: error: losses.py defines no top-level 'nope'"


@pytest.mark.tf
def test_an_explicit_name_is_probed_whatever_it_is_called(tmp_path: Path):
    import json

    write(tmp_path / "helpers.py", "from keras import ops\n\ndef combine(a, b):\n    return ops.sum(a - b)\n")
    rc, out, _ = run_cli(["check", "helpers.py", "--format", "json"], cwd=tmp_path)
    assert rc == 0 and json.loads(out)["results"] == []  # not loss-like: not a candidate
    rc, out, _ = run_cli(["check", "helpers.py::combine", "--format", "json"], cwd=tmp_path)
    (result,) = json.loads(out)["results"]
    assert rc == 1 and [f["code"] for f in result["findings"]] == ["LD101"]
