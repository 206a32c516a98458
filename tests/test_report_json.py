"""The JSON format follows SPEC.md schema 1: every field, in its type, and stable numbers."""

from __future__ import annotations

import json

from lossdiag.models import Finding, LoadError, Location, LossResult, Probe, Report
from lossdiag.report import json as json_report

RESULT_KEYS = {"id", "name", "file", "line", "status", "probe", "output_shape", "expected", "actual", "ratio", "findings"}
FINDING_KEYS = {"code", "severity", "message", "file", "line", "hint", "related"}


def _report() -> Report:
    f = Finding("LD101", "error", "summed", "fixtures/seed_losses.py", 7, "keep the axis",
                (Location("fixtures/seed_losses.py", 12, "this slice dropped the feature axis"),))
    return Report(
        results=(
            LossResult("fixtures/seed_losses.py::loss2", "loss2", "fixtures/seed_losses.py", 10, "fail",
                       Probe(32, (32, 2), (32, 2), "binary"), (), 0.330712345, 10.582794, 32.000001, (f,)),
            LossResult("fixtures/seed_losses.py::x", "x", "fixtures/seed_losses.py", 20, "error",
                       findings=(Finding("LD002", "warning", "raised", "fixtures/seed_losses.py", 20, suppressed=True),)),
        ),
        errors=(LoadError("broken.py", "LD001", "SyntaxError: invalid syntax", 3),),
        files_checked=2,
    )


def test_schema_1_top_level_and_tool():
    data = json.loads(json_report.render(_report()))
    assert data["schema"] == 1
    assert data["tool"]["name"] == "lossdiag" and data["tool"]["version"] == "0.1.0"
    assert set(data) >= {"schema", "tool", "results", "errors", "summary"}


def test_result_and_finding_fields():
    data = json.loads(json_report.render(_report()))
    loss2, unprobed = data["results"]
    assert set(loss2) >= RESULT_KEYS
    assert loss2["probe"] == {"batch_size": 32, "y_true": [32, 2], "y_pred": [32, 2], "labels": "binary",
                              "source": "inferred"}
    assert (loss2["kind"], loss2["keras"], loss2["outputs"]) == ("loss", None, [])
    assert "na_reason" not in loss2
    assert loss2["output_shape"] == []
    assert (loss2["expected"], loss2["actual"], loss2["ratio"]) == (0.3307, 10.58, 32.0)
    (finding,) = loss2["findings"]
    assert set(finding) >= FINDING_KEYS
    assert finding["related"] == [{"file": "fixtures/seed_losses.py", "line": 12, "message": "this slice dropped the feature axis"}]
    assert unprobed["expected"] is None and unprobed["ratio"] is None and unprobed["probe"] is None
    assert unprobed["findings"][0]["suppressed"] is True


def test_errors_and_summary():
    data = json.loads(json_report.render(_report()))
    assert data["errors"][0] == {"file": "broken.py", "code": "LD001", "message": "SyntaxError: invalid syntax",
                                 "line": 3, "suppressed": False}
    assert data["summary"] == {"losses": 2, "pass": 0, "warn": 0, "fail": 1, "error": 1, "skipped": 0, "suppressed": 1,
                               "cached": 0}


def test_nan_and_inf_become_null():
    r = LossResult("a::b", "b", "a", 1, "pass", expected=float("nan"), actual=float("inf"))
    data = json.loads(json_report.render(Report(results=(r,))))
    assert data["results"][0]["expected"] is None and data["results"][0]["actual"] is None


def test_new_result_fields_kind_keras_outputs_source_and_cached():
    probe = Probe(32, (32, 1), (32, 4), "sparse", source="given")
    r = LossResult("m.py::iou", "iou", "m.py", 3, "pass", probe, (32,), 0.5, 0.5, 1.0,
                   kind="metric", keras="tf_keras 2.21.0", outputs=("Y", "YZ"))
    data = json.loads(json_report.render(Report(results=(r,), cached=1)))
    [result] = data["results"]
    assert (result["kind"], result["keras"], result["outputs"]) == ("metric", "tf_keras 2.21.0", ["Y", "YZ"])
    assert result["probe"]["source"] == "given"
    assert data["summary"]["cached"] == 1


def test_a_batch_statistic_has_no_expected_or_ratio_but_says_why():
    r = LossResult("m.py::r2", "r2", "m.py", 3, "warn", Probe(32, (32, 1), (32, 1), "real"), (), 3.185e6, 1.374,
                   4.32e-07, na_reason="batch statistic")
    [result] = json.loads(json_report.render(Report(results=(r,))))["results"]
    assert result["expected"] is None and result["ratio"] is None
    assert result["actual"] == 1.374
    assert result["na_reason"] == "batch statistic"


def test_every_rendered_report_validates_against_the_shipped_schema(report_validator):
    probe = Probe(32, (32, 1), (32, 4), "sparse", source="config")
    extra = LossResult("m.py::iou", "iou", "m.py", 3, "warn", probe, (), None, 1.0, None, kind="metric",
                       keras="3.15.1", outputs=("Y",), na_reason="batch statistic", note="n")
    for report in (_report(), Report(), Report(results=(extra,), cached=1, files_without_losses=("x.py",))):
        report_validator(json.loads(json_report.render(report)))


def test_the_schema_rejects_what_schema_1_forbids(report_validator):
    import pytest

    data = json.loads(json_report.render(_report()))
    data["results"][0]["status"] = "ok"
    with pytest.raises(AssertionError, match="status"):
        report_validator(data)
