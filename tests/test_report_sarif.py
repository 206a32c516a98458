"""SARIF renderer: valid against the OASIS 2.1.0 schema, every rule listed, results located, suppressed and stable."""

from __future__ import annotations

import json
import os
import re

import pytest

import lossdiag
from lossdiag.models import Finding, LoadError, Location, LossResult, Report
from lossdiag.report import sarif
from lossdiag.rules import RULES, rule_doc_markdown

FILE = "fixtures/seed_losses.py"


def finding(code="LD101", severity="error", message="batch summed", line=7, hint="", suppressed=False, **kw):
    return Finding(code, severity, message, kw.pop("file", FILE), line, hint=hint, suppressed=suppressed, **kw)


def loss(name="loss2", findings=(), status="fail", file=FILE, line=12):
    return LossResult(f"{file}::{name}", name, file, line, status, findings=tuple(findings))


def full_report() -> Report:
    return Report(
        results=(
            loss(
                "loss2",
                [
                    finding(
                        hint="keep the axis: yz[:, 1:]",
                        related=(Location(FILE, 12, "this slice dropped the feature axis"), Location(FILE, 3)),
                    ),
                    finding("LD105", "warning", "coupled", line=12, suppressed=True),
                ],
            ),
            loss("ok", status="pass", line=20),
            loss("np", [finding("LD002", "warning", "every probe raised: ValueError", line=30)], status="error"),
        ),
        errors=(
            LoadError("broken.py", "LD001", "SyntaxError: invalid syntax"),
            LoadError("pkg/old.py", "LD001", "ImportError: keras.backend.sum", line=3, suppressed=True),
        ),
        files_checked=4,
    )


def sarif_log(report: Report) -> dict:
    return json.loads(sarif.render(report))


def run_of(report: Report) -> dict:
    [run] = sarif_log(report)["runs"]
    return run


WEIRD = "100% sure: a, b\r\nnext line <&>\"quoted\" \\ back \x1b[31m → ünïcode"


@pytest.mark.parametrize(
    "report",
    [
        Report(),
        full_report(),
        Report(results=(loss(findings=[finding(message=WEIRD, hint=WEIRD, file="my dir/a#b.py")]),)),
        Report(errors=(LoadError("/abs/outside.py", "LD001", "x"),)),
    ],
    ids=["empty", "full", "weird-text", "absolute-path"],
)
def test_valid_against_sarif_schema(sarif_validator, report):
    errors = sorted(sarif_validator.iter_errors(sarif_log(report)), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_envelope_and_driver():
    log = sarif_log(Report())
    assert list(log) == ["$schema", "version", "runs"]
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert log["version"] == "2.1.0"
    [run] = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "lossdiag"
    assert driver["version"] == lossdiag.__version__
    assert driver["informationUri"] == "https://pypi.org/project/lossdiag/"
    assert run["results"] == []
    assert run["invocations"] == [{"executionSuccessful": True, "toolExecutionNotifications": []}]
    assert "%SRCROOT%" in run["originalUriBaseIds"]
    assert "uri" not in run["originalUriBaseIds"]["%SRCROOT%"]  # no machine-specific absolute path


def test_all_catalogue_rules_sorted_with_docs():
    rules = run_of(Report())["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted(RULES)
    for descriptor in rules:
        rule = RULES[descriptor["id"]]
        assert descriptor["name"] == rule.name
        assert descriptor["shortDescription"]["text"] == rule.summary
        assert descriptor["fullDescription"]["text"] == rule.what
        assert descriptor["help"]["markdown"] == rule_doc_markdown(rule)
        assert rule.why in descriptor["help"]["text"]
        assert descriptor["defaultConfiguration"]["level"] == rule.severity
        assert descriptor["properties"]["tags"] and all(descriptor["properties"]["tags"])


def test_finding_result_fields():
    run = run_of(full_report())
    rules = run["tool"]["driver"]["rules"]
    by_rule = {r["ruleId"]: r for r in run["results"]}
    result = by_rule["LD101"]
    assert rules[result["ruleIndex"]]["id"] == "LD101"
    assert result["level"] == "error"
    assert result["message"]["text"] == "batch summed — fix: keep the axis: yz[:, 1:]"
    [location] = result["locations"]
    assert location["physicalLocation"] == {
        "artifactLocation": {"uri": FILE, "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 7},
    }
    assert "suppressions" not in result
    assert by_rule["LD002"]["level"] == "warning"
    assert rules[by_rule["LD002"]["ruleIndex"]]["id"] == "LD002"


def test_related_locations_have_ids_and_messages():
    result = next(r for r in run_of(full_report())["results"] if r["ruleId"] == "LD101")
    first, second = result["relatedLocations"]
    assert first["id"] == 1 and second["id"] == 2
    assert first["message"] == {"text": "this slice dropped the feature axis"}
    assert first["physicalLocation"]["region"] == {"startLine": 12}
    assert first["physicalLocation"]["artifactLocation"]["uri"] == FILE
    assert "message" not in second  # an empty message is left out, not sent as ""


def test_results_cover_every_finding_and_error_in_order():
    run = run_of(full_report())
    assert [r["ruleId"] for r in run["results"]] == ["LD001", "LD001", "LD101", "LD105", "LD002"]


def test_suppressed_findings_are_kept_with_in_source_suppression():
    run = run_of(full_report())
    suppressed = [r for r in run["results"] if "suppressions" in r]
    assert [r["ruleId"] for r in suppressed] == ["LD001", "LD105"]
    assert all(r["suppressions"] == [{"kind": "inSource"}] for r in suppressed)
    unsuppressed = [r for r in run["results"] if "suppressions" not in r]
    assert len(unsuppressed) == 3


def test_load_errors_become_ld001_results_and_notifications():
    run = run_of(full_report())
    ld001 = [r for r in run["results"] if r["ruleId"] == "LD001"]
    broken = ld001[0]
    assert broken["level"] == "error"
    assert broken["message"]["text"] == "SyntaxError: invalid syntax"
    assert broken["locations"][0]["physicalLocation"]["region"] == {"startLine": 1}  # line unknown
    assert broken["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "broken.py"
    assert ld001[1]["locations"][0]["physicalLocation"]["region"] == {"startLine": 3}
    rules = run["tool"]["driver"]["rules"]
    assert rules[broken["ruleIndex"]]["id"] == "LD001"
    [invocation] = run["invocations"]
    assert invocation["executionSuccessful"] is True
    notes = invocation["toolExecutionNotifications"]
    assert len(notes) == 2
    assert notes[0]["level"] == "error"
    assert "SyntaxError: invalid syntax" in notes[0]["message"]["text"]
    assert notes[0]["associatedRule"] == {"id": "LD001", "index": broken["ruleIndex"]}


def _fingerprints(report: Report) -> list[str]:
    return [next(iter(r["partialFingerprints"].values())) for r in run_of(report)["results"]]


def test_fingerprints_ignore_message_and_line_but_not_code_or_loss():
    base = _fingerprints(Report(results=(loss(findings=[finding(message="ratio 32.0", line=7)]),)))
    moved = _fingerprints(Report(results=(loss(findings=[finding(message="ratio 31.2", line=9)], line=14),)))
    assert base == moved
    other_code = _fingerprints(Report(results=(loss(findings=[finding("LD103")]),)))
    other_loss = _fingerprints(Report(results=(loss("loss3", findings=[finding()]),)))
    assert len({base[0], other_code[0], other_loss[0]}) == 3


def test_fingerprints_unique_within_a_run():
    report = Report(
        results=(loss(findings=[finding(line=7), finding(line=8)]),),
        errors=(LoadError("a.py", "LD001", "x"), LoadError("b.py", "LD001", "x")),
    )
    prints = _fingerprints(report)
    assert len(set(prints)) == len(prints) == 4


def test_text_is_escaped_by_json_and_round_trips():
    report = Report(results=(loss(findings=[finding(message=WEIRD, hint="h")]),))
    text = sarif.render(report)
    [result] = json.loads(text)["runs"][0]["results"]
    assert result["message"]["text"] == WEIRD + " — fix: h"
    assert "\x1b" not in text and "\r" not in text


def test_uris_are_percent_encoded_and_relative():
    report = Report(results=(loss(findings=[finding(file="my dir/a#b%.py")]),))
    [result] = run_of(report)["results"]
    artifact = result["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact == {"uri": "my%20dir/a%23b%25.py", "uriBaseId": "%SRCROOT%"}


def test_absolute_path_outside_the_run_directory_becomes_a_file_uri():
    [result] = run_of(Report(errors=(LoadError("/abs/outside.py", "LD001", "x"),)))["results"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"] == {"uri": "file:///abs/outside.py"}


def test_deterministic_without_timestamps_or_absolute_paths():
    text = sarif.render(full_report())
    assert text == sarif.render(full_report())
    assert text == json.dumps(json.loads(text), indent=2) + "\n"  # indent=2, insertion order kept
    assert os.getcwd() not in text
    assert "file://" not in text
    assert not re.search(r"Utc|\d{4}-\d{2}-\d{2}T", text)


def test_schema_check_is_not_vacuous(sarif_validator):
    log = sarif_log(full_report())
    log["runs"][0]["results"][0]["level"] = "fatal"
    del log["runs"][0]["results"][1]["message"]
    assert len(list(sarif_validator.iter_errors(log))) == 2
