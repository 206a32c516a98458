"""The CI formats on real fixture runs: SARIF is schema-valid, annotations and JUnit match the findings."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest
from conftest import run_cli

pytestmark = pytest.mark.tf
TARGETS = ["fixtures/seed_losses.py", "fixtures/batch_axis.py", "fixtures/numerics.py"]


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    out = {}
    for fmt in ("json", "sarif", "github", "junit"):
        rc, stdout, stderr = run_cli(["check", *TARGETS, "--format", fmt])
        assert rc == 1, stderr
        out[fmt] = stdout
    return out


def _findings(outputs) -> list[tuple[str, int, str]]:
    data = json.loads(outputs["json"])
    return [(f["file"], f["line"], f["code"]) for r in data["results"] for f in r["findings"] if not f["suppressed"]]


def test_sarif_is_schema_valid_and_has_every_finding(outputs, sarif_validator):
    log = json.loads(outputs["sarif"])
    errors = sorted(sarif_validator.iter_errors(log), key=str)
    assert not errors, errors[:3]
    results = log["runs"][0]["results"]
    got = sorted(
        (r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
         r["locations"][0]["physicalLocation"]["region"]["startLine"], r["ruleId"])
        for r in results
    )
    assert got == sorted(_findings(outputs))
    ld101 = next(r for r in results if r["ruleId"] == "LD101" and "seed_losses" in json.dumps(r["locations"]))
    assert ld101["level"] == "error"
    assert ld101["relatedLocations"], "the slice that set the bug up"


def test_github_annotations_one_per_finding(outputs):
    """Every finding once, in report order: an annotation while its level is under GitHub's cap of 10,
    a plain `file:line:1: CODE` line after that, and one notice saying how many were not annotated."""
    lines = outputs["github"].splitlines()
    findings = _findings(outputs)
    annotated = [line for line in lines if line.startswith(("::error ", "::warning "))]
    plain = [line for line in lines if not line.startswith("::")]
    notices = [line for line in lines if line.startswith("::notice ")]
    assert len(annotated) + len(plain) == len(findings) and len(lines) == len(findings) + len(notices)
    assert sum(line.startswith("::error ") for line in annotated) <= 10
    assert sum(line.startswith("::warning ") for line in annotated) <= 10
    assert len(plain) > 0 and notices == [notices[0]] and f"{len(plain)} more findings not annotated" in notices[0]
    seen = [(m.group(1), int(m.group(2)), m.group(3)) for line in annotated + plain
            if (m := re.search(r"(?:file=|^)(fixtures/[\w/.]+)(?:,line=|:)(\d+)(?:,title=| *:1: )(LD\d+)", line))]
    assert sorted(seen) == sorted(findings)
    assert "::error file=fixtures/seed_losses.py,line=7,title=LD101 batch-sum::" in outputs["github"]


def test_junit_one_testcase_per_loss_failures_per_error_finding(outputs):
    root = ET.fromstring(outputs["junit"])
    data = json.loads(outputs["json"])
    cases = root.findall(".//testcase")
    assert len(cases) == len(data["results"])
    failures = [(c.get("name"), f.get("type")) for c in cases for f in c.findall("failure")]
    assert ("loss2", "LD101") in failures
    severity = {f["code"]: f["severity"] for r in data["results"] for f in r["findings"]}
    errors = [f for f in _findings(outputs) if severity[f[2]] == "error"]
    assert len(failures) == len(errors)  # warnings do not fail by default: they go to <system-out>
    warned = [c for c in cases if c.find("system-out") is not None]
    assert len(warned) == sum(
        1 for r in data["results"] if any(f["severity"] == "warning" and not f["suppressed"] for f in r["findings"])
        and r["status"] != "error"
    )
    failing = {r["name"] for r in data["results"] if any(f["severity"] == "error" and not f["suppressed"] for f in r["findings"])}
    assert int(root.get("failures")) == len(failing)


# --- the table never splits a token, on every fixture, at 80 columns and wider ----------------------


def _every_fixture() -> list[str]:
    from conftest import FIXTURES

    files = sorted(FIXTURES.glob("*.py")) + sorted((FIXTURES / "corpus").rglob("*.py"))
    return [p.relative_to(FIXTURES.parent).as_posix() for p in files]


@pytest.fixture(scope="module")
def every_fixture_report():
    from conftest import report_from_json

    rc, out, err = run_cli(["check", *_every_fixture(), "--format", "json", "--fail-on", "never"], timeout=1200)
    assert rc == 0, err
    return report_from_json(json.loads(out))


@pytest.mark.parametrize("width", [80, 100, 132, None])
def test_no_table_row_splits_a_token_on_any_fixture(every_fixture_report, width):
    from table_check import check_tokens

    from lossdiag.report import table

    assert len(every_fixture_report.results) > 50
    check_tokens(table.render(every_fixture_report, width=width), every_fixture_report, width)
