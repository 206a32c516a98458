"""The command line as a user meets it: exit statuses, formats, --output, -q, the rule commands."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import REPO, cli_env, run_cli, run_cli_many, write

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
        "concise": ([SEED, "--format", "concise"], REPO),
        "statistics": ([SEED, "fixtures/shapes.py", "--statistics"], REPO),
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
    assert lines[0].startswith("fixtures/seed_losses.py:7:1: LD101 [loss2] ")
    assert err == ""


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
    for command in ("check", "rules", "rule", "schema"):
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
    assert sorted(p.name for p in no_losses.iterdir()) == ["helpers.py", "taken"]  # no temporary file left


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


# --- machine and log output -----------------------------------------------------------------------


@pytest.mark.tf
def test_concise_is_one_line_per_finding_and_the_summary_goes_to_stderr(seed_runs):
    rc, out, err = seed_runs["concise"]
    assert rc == 1, err
    [line] = out.splitlines()
    assert re.fullmatch(r"fixtures/seed_losses\.py:7:1: LD101 \[loss2\] \S.*", line)
    assert err.splitlines() == ["3 losses in 1 file: 2 pass, 1 fail"]


@pytest.mark.tf
def test_statistics_count_codes_most_frequent_first(seed_runs):
    rc, out, err = seed_runs["statistics"]
    assert rc == 1, err
    rows = [line.split() for line in out.splitlines()]
    assert rows and all(len(row) == 3 and row[0].isdigit() and row[1].startswith("LD") for row in rows)
    assert [int(row[0]) for row in rows] == sorted((int(row[0]) for row in rows), reverse=True)
    counts = {row[1]: int(row[0]) for row in rows}
    assert counts["LD101"] == 2 and counts["LD102"] == 2
    assert "losses in 2 files" in err


@pytest.fixture(scope="module")
def other_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, str]]:
    root = tmp_path_factory.mktemp("cli-more")
    write(root / "warn" / "mean.py", WARN_ONLY)
    write(root / "strict" / "pyproject.toml", '[tool.lossdiag]\nfail-on = "warning"\n')
    write(root / "strict" / "mean.py", WARN_ONLY)
    runs = {
        "warn-default": (["check", "mean.py"], root / "warn"),
        "warn-cli": (["check", "mean.py", "--fail-on", "warning", "-q"], root / "warn"),
        "warn-config": (["check", "mean.py", "-q"], root / "strict"),
    }
    outcome = dict(zip(runs, run_cli_many(runs.values())))
    outcome["pipe"] = run_cli(["check", SEED], REPO, env=cli_env(COLUMNS="80"))  # a width, but not a terminal
    return outcome


WARN_ONLY = """\
from keras import ops


def batch_mean(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred))


def unclipped(y_true, y_pred):
    return -ops.mean(y_true * ops.log(y_pred) + (1.0 - y_true) * ops.log(1.0 - y_pred), axis=-1)
"""


@pytest.mark.tf
def test_warnings_are_shown_but_do_not_fail_by_default(other_runs):
    rc, out, err = other_runs["warn-default"]
    assert rc == 0, out + err
    assert "LD102" in out and "LD201" in out
    assert out.rstrip().splitlines()[-1] == (
        "2 losses in 1 file: 2 warn (not failing: --fail-on warning to fail on them)"
    )


@pytest.mark.tf
@pytest.mark.parametrize("run", ["warn-cli", "warn-config"])
def test_fail_on_warning_fails_on_warnings(other_runs, run):
    rc, out, err = other_runs[run]
    assert rc == 1, out + err
    assert {line.split()[1] for line in out.splitlines()} == {"LD102", "LD201"}


@pytest.mark.tf
def test_a_piped_table_is_not_wrapped_and_has_no_trailing_spaces(other_runs):
    rc, out, err = other_runs["pipe"]
    assert rc == 1, err
    lines = out.splitlines()
    assert all(line == line.rstrip() for line in lines)
    message = next(line for line in lines if line.startswith("  fixtures/seed_losses.py:7: returns shape"))
    assert len(message) > 120 and "was meant." in message  # the whole message on one line
    assert max(len(line) for line in lines[:10]) < 80  # the table is as wide as it needs, no wider


# --- --output never overwrites what it checks, and writes atomically ------------------------------


def test_output_naming_a_checked_file_exits_2_and_leaves_it_alone(no_losses: Path):
    before = (no_losses / "helpers.py").read_bytes()
    for target in ("helpers.py", "./helpers.py", str(no_losses / "helpers.py")):
        rc, out, err = run_cli(["check", "helpers.py", "-o", target], no_losses)
        assert rc == 2 and out == "" and "refusing" in err, err
    write(no_losses / "other.py", "x = 1\n")
    rc, out, err = run_cli(["check", "helpers.py", "-o", "other.py"], no_losses)  # Python source, even unchecked
    assert rc == 2 and "refusing" in err
    assert (no_losses / "helpers.py").read_bytes() == before


def test_output_naming_a_folder_exits_2(no_losses: Path):
    (no_losses / "reports").mkdir()
    rc, out, err = run_cli(["check", "helpers.py", "-o", "reports"], no_losses)
    assert rc == 2 and "is a folder" in err and (no_losses / "reports").is_dir()


def test_output_replaces_an_existing_report_and_leaves_no_temporary_file(no_losses: Path):
    (no_losses / "r.json").write_text("old", encoding="utf-8")
    rc, out, err = run_cli(["check", "helpers.py", "--format", "json", "-o", "r.json"], no_losses)
    assert rc == 0, err
    assert json.loads((no_losses / "r.json").read_text(encoding="utf-8"))["summary"]["losses"] == 0
    assert sorted(p.name for p in no_losses.iterdir()) == ["helpers.py", "r.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert (no_losses / "r.json").stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600


# --- lossdiag schema ------------------------------------------------------------------------------------


def test_schema_prints_the_shipped_json_schema():
    rc, out, err = run_cli(["schema"])
    assert rc == 0, err
    schema = json.loads(out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert out == (REPO / "lossdiag" / "report" / "schema.json").read_text(encoding="utf-8")
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_schema_ships_as_package_data():
    import tomllib

    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "schema.json" in data["tool"]["setuptools"]["package-data"]["lossdiag.report"]
