"""JUnit renderer: parsed back with ElementTree; suites per file, testcases per loss, counts, names, escaping."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from lossdiag.models import Finding, LoadError, LossResult, Report
from lossdiag.report import junit

FILE = "fixtures/seed_losses.py"


def finding(code="LD101", severity="error", message="batch summed", line=7, hint="", suppressed=False, file=FILE):
    return Finding(code, severity, message, file, line, hint=hint, suppressed=suppressed)


def loss(name="loss2", findings=(), status="fail", file=FILE, line=12, note=""):
    return LossResult(f"{file}::{name}", name, file, line, status, findings=tuple(findings), note=note)


def full_report() -> Report:
    return Report(
        results=(
            loss("loss2", [finding(hint="keep the axis: yz[:, 1:]"), finding("LD201", "warning", "nan", line=8)]),
            loss("clean", status="pass", line=20),
            loss("coupled_ok", [finding("LD105", "warning", "coupled", suppressed=True)], status="pass", line=30),
            loss("np", [finding("LD002", "warning", "every probe raised: ValueError", line=40)], "error", line=40),
            loss("excluded", status="skipped", line=50, note="excluded by --ignore"),
            loss("wrong_axis", [finding("LD103", "error", "shape (2,)", 3, file="pkg/mod.py")], file="pkg/mod.py"),
        ),
        errors=(LoadError("broken.py", "LD001", "SyntaxError: invalid syntax", line=5),),
    )


def parse(report: Report) -> ET.Element:
    return ET.fromstring(junit.render(report))


def suite(root: ET.Element, name: str) -> ET.Element:
    [found] = [s for s in root.findall("testsuite") if s.get("name") == name]
    return found


def case(root: ET.Element, file: str, name: str) -> ET.Element:
    [found] = [c for c in suite(root, file).findall("testcase") if c.get("name") == name]
    return found


def counts(element: ET.Element) -> dict[str, str]:
    return {k: element.get(k) for k in ("tests", "failures", "errors", "skipped")}


def test_declaration_and_root():
    text = junit.render(full_report())
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites ')
    root = ET.fromstring(text)
    assert root.tag == "testsuites"
    assert root.get("name") == "lossdiag"
    assert counts(root) == {"tests": "7", "failures": "2", "errors": "2", "skipped": "1"}


def test_one_suite_per_file_sorted():
    root = parse(full_report())
    assert [s.get("name") for s in root.findall("testsuite")] == ["broken.py", FILE, "pkg/mod.py"]
    assert all(child.tag == "testsuite" for child in root)


def test_suite_counts():
    root = parse(full_report())
    assert counts(suite(root, FILE)) == {"tests": "5", "failures": "1", "errors": "1", "skipped": "1"}
    assert counts(suite(root, "broken.py")) == {"tests": "1", "failures": "0", "errors": "1", "skipped": "0"}
    assert counts(suite(root, "pkg/mod.py")) == {"tests": "1", "failures": "1", "errors": "0", "skipped": "0"}


def test_counts_agree_with_testcases_everywhere():
    root = parse(full_report())
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for s in root.findall("testsuite"):
        cases = s.findall("testcase")
        outcome = {
            "failures": sum(1 for c in cases if c.find("failure") is not None and c.find("error") is None),
            "errors": sum(1 for c in cases if c.find("error") is not None),
            "skipped": sum(1 for c in cases if c.find("skipped") is not None),
        }
        assert int(s.get("tests")) == len(cases)
        assert {k: int(s.get(k)) for k in outcome} == outcome
        totals["tests"] += len(cases)
        for k, v in outcome.items():
            totals[k] += v
    assert {k: int(v) for k, v in counts(root).items()} == totals


def test_testcase_attributes():
    c = case(parse(full_report()), "pkg/mod.py", "wrong_axis")
    assert c.attrib == {"classname": "pkg.mod", "name": "wrong_axis", "file": "pkg/mod.py", "line": "12", "time": "0"}
    assert case(parse(full_report()), FILE, "loss2").get("classname") == "fixtures.seed_losses"


def test_one_failure_per_unsuppressed_error_and_warnings_as_output():
    c = case(parse(full_report()), FILE, "loss2")
    failures = c.findall("failure")
    assert [f.get("type") for f in failures] == ["LD101"]
    assert failures[0].get("message") == "batch summed"
    assert failures[0].text == f"{FILE}:7: LD101 batch-sum: batch summed\nkeep the axis: yz[:, 1:]"
    # a warning does not fail the run by default, so it does not fail the test either
    assert c.find("system-out").text == f"warning: {FILE}:8: LD201 nonfinite: nan"  # no hint, no extra line


def test_with_fail_on_warning_a_warning_is_a_failure():
    root = ET.fromstring(junit.render(full_report(), fail_on="warning"))
    c = case(root, FILE, "loss2")
    assert [f.get("type") for f in c.findall("failure")] == ["LD101", "LD201"]
    assert c.find("system-out") is None
    warning_only = Report(results=(loss("w", [finding("LD102", "warning", "averaged")], status="warn"),))
    assert counts(ET.fromstring(junit.render(warning_only)))["failures"] == "0"
    assert counts(ET.fromstring(junit.render(warning_only, fail_on="warning")))["failures"] == "1"


def test_failure_points_at_the_finding_not_the_loss():
    f = case(parse(full_report()), "pkg/mod.py", "wrong_axis").find("failure")
    assert f.text.startswith("pkg/mod.py:3: LD103 wrong-axis: ")


def test_passing_and_suppressed_losses_are_passed_testcases():
    root = parse(full_report())
    assert len(case(root, FILE, "clean")) == 0
    assert len(case(root, FILE, "coupled_ok")) == 0  # only a suppressed finding


def test_error_status_becomes_error_element():
    c = case(parse(full_report()), FILE, "np")
    [error] = list(c)
    assert error.tag == "error"
    assert error.get("type") == "LD002"
    assert error.get("message") == "every probe raised: ValueError"
    assert error.text == f"{FILE}:40: LD002 not-probed: every probe raised: ValueError"


def test_error_status_without_finding_still_errors():
    root = parse(Report(results=(loss("np", status="error", note="timed out after 10 s"),)))
    [error] = list(case(root, FILE, "np"))
    assert (error.tag, error.get("type"), error.get("message")) == ("error", "LD002", "timed out after 10 s")
    assert counts(root)["errors"] == "1"


def test_skipped_status_becomes_skipped_with_note():
    [skipped] = list(case(parse(full_report()), FILE, "excluded"))
    assert skipped.tag == "skipped"
    assert skipped.get("message") == "excluded by --ignore"


def test_load_error_becomes_import_testcase():
    c = case(parse(full_report()), "broken.py", "<import>")
    assert c.get("classname") == "broken" and c.get("file") == "broken.py" and c.get("line") == "5"
    [error] = list(c)
    assert (error.tag, error.get("type")) == ("error", "LD001")
    assert error.get("message") == "SyntaxError: invalid syntax"
    assert error.text == "broken.py:5: LD001 load-error: SyntaxError: invalid syntax"


def test_load_error_and_losses_share_the_file_suite():
    report = Report(
        results=(loss("a", status="pass", file="m.py"),),
        errors=(LoadError("m.py", "LD001", "boom"), LoadError("m.py", "LD001", "again")),
    )
    s = suite(parse(report), "m.py")
    assert [c.get("name") for c in s.findall("testcase")] == ["<import>", "a"]
    assert [e.get("message") for e in s.find("testcase").findall("error")] == ["boom", "again"]
    assert counts(s) == {"tests": "2", "failures": "0", "errors": "1", "skipped": "0"}


def test_suppressed_load_error_is_skipped_not_an_error():
    root = parse(Report(errors=(LoadError("old.py", "LD001", "ImportError: K.sum", suppressed=True),)))
    c = case(root, "old.py", "<import>")
    assert [child.tag for child in c] == ["skipped"]
    assert "ImportError: K.sum" in c.find("skipped").get("message")
    assert counts(root) == {"tests": "1", "failures": "0", "errors": "0", "skipped": "1"}


def test_duplicate_loss_names_are_disambiguated_by_line():
    report = Report(
        results=(
            loss("dup", status="pass", line=3),
            loss("dup", status="pass", line=9),
            loss("other", status="pass", line=15),
            loss("twin", status="pass", line=20),
            loss("twin", status="pass", line=20),
        )
    )
    names = [c.get("name") for c in suite(parse(report), FILE).findall("testcase")]
    assert names[:3] == ["dup (line 3)", "dup (line 9)", "other"]
    assert len(set(names)) == len(names) == 5


def test_same_name_in_different_files_is_not_renamed():
    report = Report(results=(loss("mse", status="pass", file="a.py"), loss("mse", status="pass", file="b.py")))
    root = parse(report)
    assert [c.get("name") for c in root.iter("testcase")] == ["mse", "mse"]


WEIRD = "we&ird/<x>.py"
HOSTILE = 'a <b> & "c" \'d\'\nsecond line, 100%: x'


def test_xml_special_characters_round_trip():
    report = Report(results=(loss('l<&>"', [finding(message=HOSTILE, hint="use <&>", file=WEIRD)], file=WEIRD),))
    text = junit.render(report)
    assert "<b>" not in text  # escaped, not markup
    root = ET.fromstring(text)
    [s] = root.findall("testsuite")
    assert s.get("name") == "we&ird/<x>.py"
    [c] = s.findall("testcase")
    assert c.get("name") == 'l<&>"'
    assert c.get("classname") == "we&ird.<x>"
    failure = c.find("failure")
    assert failure.get("message") == HOSTILE  # the newline survives as &#10; in the attribute
    assert failure.text == f"we&ird/<x>.py:7: LD101 batch-sum: {HOSTILE}\nuse <&>"


def test_control_characters_do_not_break_the_document():
    message = "ValueError: \x1b[31mred\x1b[0m\x00end"
    report = Report(results=(loss("np", [finding("LD002", "warning", message)], status="error"),))
    error = case(parse(report), FILE, "np").find("error")
    assert error.get("message") == "ValueError: \\x1b[31mred\\x1b[0m\\x00end"


def test_empty_report():
    text = junit.render(Report())
    root = ET.fromstring(text)
    assert root.tag == "testsuites" and len(root) == 0
    assert counts(root) == {"tests": "0", "failures": "0", "errors": "0", "skipped": "0"}


def test_no_clock_and_deterministic():
    text = junit.render(full_report())
    assert text == junit.render(full_report())
    root = ET.fromstring(text)
    timed = [e for e in root.iter() if e.tag in ("testsuites", "testsuite", "testcase")]
    assert {e.get("time") for e in timed} == {"0"}
    assert "timestamp" not in text
