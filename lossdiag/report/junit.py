"""Render a Report as JUnit XML (one testsuite per file, one testcase per loss) for CI test-report views.

An error-level finding is a `<failure>`. A warning is not, unless the run fails on warnings
(`--fail-on warning`): it is written to the test case's `<system-out>` and the test passes, as the
exit status does.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter

from lossdiag.models import LoadError, LossResult, Report
from lossdiag.rules import RULES

IMPORT_CASE = "<import>"
_COUNTED = ("failures", "errors", "skipped")

# Characters XML 1.0 cannot carry at all, not even as character references (ANSI escapes in
# exception messages are the usual source). ElementTree would write them raw and break the file.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _classname(file: str) -> str:
    return file.removesuffix(".py").strip("/").replace("/", ".")


def _title(code: str) -> str:
    rule = RULES.get(code)
    return f"{code} {rule.name}" if rule else code


def _describe(code: str, file: str, line: int | None, message: str, hint: str = "") -> str:
    text = f"{file}:{line or 1}: {_title(code)}: {message}"
    return text + (f"\n{hint}" if hint else "")


def _child(case: ET.Element, tag: str, message: str, code: str | None = None, text: str = "") -> None:
    attrs = {"type": code} if code else {}
    if message:
        attrs["message"] = _clean(message)
    element = ET.SubElement(case, tag, attrs)
    if text:
        element.text = _clean(text)


def _testcase(suite: ET.Element, file: str, name: str, line: int | None) -> ET.Element:
    attrs = {"classname": _clean(_classname(file)), "name": _clean(name), "file": _clean(file)}
    if line:
        attrs["line"] = str(line)
    attrs["time"] = "0"
    return ET.SubElement(suite, "testcase", attrs)


def _import_case(suite: ET.Element, file: str, errors: list[LoadError]) -> None:
    active = [e for e in errors if not e.suppressed]
    case = _testcase(suite, file, IMPORT_CASE, (active or errors)[0].line)
    for error in active:
        text = _describe(error.code, error.file, error.line, error.message)
        _child(case, "error", error.message, error.code, text)
    if not active:
        # The module still was not imported, so its losses were not checked: say so without failing.
        _child(case, "skipped", f"{_title(errors[0].code)} suppressed: {errors[0].message}")


def _loss_case(suite: ET.Element, result: LossResult, name: str, fail_on: str) -> None:
    case = _testcase(suite, result.file, name, result.line)
    warnings = []
    for finding in result.active_findings:
        text = _describe(finding.code, finding.file, finding.line, finding.message, finding.hint)
        if finding.code == "LD002":  # the loss could not be measured: an error of the test, not a failed check
            _child(case, "error", finding.message, finding.code, text)
        elif finding.severity == "warning" and fail_on != "warning":
            warnings.append(f"warning: {text}")
        else:
            _child(case, "failure", finding.message, finding.code, text)
    if result.status == "error" and not any(f.code == "LD002" for f in result.findings):
        message = result.note or "the loss could not be probed"
        _child(case, "error", message, "LD002", _describe("LD002", result.file, result.line, message))
    if result.status == "skipped" and len(case) == 0:
        _child(case, "skipped", result.note)
    if warnings:
        ET.SubElement(case, "system-out").text = _clean("\n".join(warnings))


def _case_names(results: list[LossResult]) -> list[str]:
    """Loss names, made unique within a file (GitLab keeps only the first of equal names)."""
    counts = Counter(r.name for r in results)
    names = [f"{r.name} (line {r.line})" if counts[r.name] > 1 else r.name for r in results]
    seen: Counter[str] = Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return unique


def _outcome(case: ET.Element) -> str | None:
    """What a test case counts as; `<system-out>` (warnings) counts as nothing: the test passed."""
    tags = {child.tag for child in case}
    for tag, counted in (("error", "errors"), ("failure", "failures"), ("skipped", "skipped")):
        if tag in tags:
            return counted
    return None


def _set_counts(element: ET.Element, tests: int, counts: Counter[str]) -> None:
    element.set("tests", str(tests))
    for key in _COUNTED:
        element.set(key, str(counts[key]))
    element.set("time", "0")


def to_element(report: Report, fail_on: str = "error") -> ET.Element:
    """The `<testsuites>` tree; a testcase counts once, as error before failure before skipped."""
    errors: dict[str, list[LoadError]] = {}
    results: dict[str, list[LossResult]] = {}
    for error in report.errors:
        errors.setdefault(error.file, []).append(error)
    for result in report.results:
        results.setdefault(result.file, []).append(result)

    root = ET.Element("testsuites", name="lossdiag")
    total_tests, totals = 0, Counter[str]()
    for file in sorted(errors.keys() | results.keys()):
        suite = ET.SubElement(root, "testsuite", name=_clean(file))
        if file in errors:
            _import_case(suite, file, errors[file])
        file_results = results.get(file, [])
        for result, name in zip(file_results, _case_names(file_results), strict=True):
            _loss_case(suite, result, name, fail_on)
        cases = list(suite)
        counts = Counter(outcome for outcome in map(_outcome, cases) if outcome)
        _set_counts(suite, len(cases), counts)
        total_tests += len(cases)
        totals.update(counts)
    _set_counts(root, total_tests, totals)
    return root


def render(report: Report, fail_on: str = "error") -> str:
    """The JUnit XML document, with declaration, indented, the same text for the same report."""
    root = to_element(report, fail_on)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
