"""Render a Report as a SARIF 2.1.0 log (plain dicts through `json.dumps`) for GitHub code scanning."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import quote

from lossdiag import __version__
from lossdiag.models import Finding, LoadError, Location, LossResult, Report
from lossdiag.rules import RULES, Rule, rule_doc_markdown

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/lossdiag/"
SRCROOT = "%SRCROOT%"
FINGERPRINT_KEY = "lossdiag/v1"

_SORTED_RULES: tuple[Rule, ...] = tuple(sorted(RULES.values(), key=lambda rule: rule.code))
_RULE_INDEX: dict[str, int] = {rule.code: index for index, rule in enumerate(_SORTED_RULES)}
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:/")

_FAMILY_TAGS = {"LD0": "tooling", "LD1": "batch-axis", "LD2": "numerics"}


def _rule_help_text(rule: Rule) -> str:
    return (
        f"{rule.code} {rule.name}: {rule.summary}.\n\n{rule.what}\n\n{rule.why}\n\n"
        f"Example:\n\n{rule.example}\nUse instead:\n\n{rule.use_instead}"
    )


def _rule_descriptor(rule: Rule) -> dict[str, Any]:
    tags = ["keras", "loss"]
    if rule.code[:3] in _FAMILY_TAGS:
        tags.append(_FAMILY_TAGS[rule.code[:3]])
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.what},
        "help": {"text": _rule_help_text(rule), "markdown": rule_doc_markdown(rule)},
        "defaultConfiguration": {"level": _level(rule.severity)},
        "properties": {"tags": tags},
    }


def _level(severity: str) -> str:
    return severity if severity in ("error", "warning") else "warning"


def _artifact(path: str) -> dict[str, Any]:
    """A repo-relative path becomes a URI under %SRCROOT%; one outside the working directory stays absolute."""
    if path.startswith("/"):
        return {"uri": "file://" + quote(path, safe="/")}
    if _WINDOWS_DRIVE.match(path):
        return {"uri": "file:///" + quote(path, safe="/:")}
    return {"uri": quote(path, safe="/"), "uriBaseId": SRCROOT}


def _location(file: str, line: int | None) -> dict[str, Any]:
    # SARIF lines are 1-based and GitHub needs a region to anchor an alert; an unknown line becomes 1.
    return {"physicalLocation": {"artifactLocation": _artifact(file), "region": {"startLine": line or 1}}}


def _related(index: int, location: Location) -> dict[str, Any]:
    out: dict[str, Any] = {"id": index, **_location(location.file, location.line)}
    if location.message:  # GitHub rejects empty strings where a message is given
        out["message"] = {"text": location.message}
    return out


def _fingerprint(*parts: str) -> str:
    # Message-free and line-free on purpose: measured numbers and edits above the loss must not
    # turn one alert into a new one. `parts` ends with an occurrence count to keep repeats apart.
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:32]


def _rule_fields(code: str) -> dict[str, Any]:
    out: dict[str, Any] = {"ruleId": code}
    if code in _RULE_INDEX:
        out["ruleIndex"] = _RULE_INDEX[code]
    return out


def _finding_result(result: LossResult, finding: Finding, occurrence: int) -> dict[str, Any]:
    text = finding.message + (f" — fix: {finding.hint}" if finding.hint else "")
    out: dict[str, Any] = {
        **_rule_fields(finding.code),
        "level": _level(finding.severity),
        "message": {"text": text},
        "locations": [_location(finding.file, finding.line)],
    }
    if finding.related:
        out["relatedLocations"] = [_related(i, loc) for i, loc in enumerate(finding.related, start=1)]
    out["partialFingerprints"] = {FINGERPRINT_KEY: _fingerprint(finding.code, result.id, str(occurrence))}
    if finding.suppressed:
        out["suppressions"] = [{"kind": "inSource"}]
    out["properties"] = {"loss": result.id}
    return out


def _error_level(error: LoadError) -> str:
    rule = RULES.get(error.code)
    return _level(rule.severity) if rule else "error"


def _error_result(error: LoadError, occurrence: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        **_rule_fields(error.code),
        "level": _error_level(error),
        "message": {"text": error.message},
        "locations": [_location(error.file, error.line)],
        "partialFingerprints": {FINGERPRINT_KEY: _fingerprint(error.code, error.file, str(occurrence))},
    }
    if error.suppressed:
        out["suppressions"] = [{"kind": "inSource"}]
    return out


def _notification(error: LoadError) -> dict[str, Any]:
    out: dict[str, Any] = {
        "level": _error_level(error),
        "message": {"text": f"{error.file}: {error.message}"},
        "locations": [_location(error.file, error.line)],
        "associatedRule": {"id": error.code},
    }
    if error.code in _RULE_INDEX:
        out["associatedRule"]["index"] = _RULE_INDEX[error.code]
    return out


def _results(report: Report) -> list[dict[str, Any]]:
    seen: dict[tuple[str, ...], int] = {}

    def occurrence(*key: str) -> int:
        seen[key] = seen.get(key, 0) + 1
        return seen[key]

    out = [_error_result(e, occurrence("error", e.code, e.file)) for e in report.errors]
    for result in report.results:
        for finding in result.findings:
            out.append(_finding_result(result, finding, occurrence("finding", finding.code, result.id)))
    return out


def to_sarif(report: Report) -> dict[str, Any]:
    """The SARIF log as plain dicts: one run, every catalogue rule, one result per finding or load error."""
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "lossdiag",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": [_rule_descriptor(rule) for rule in _SORTED_RULES],
            }
        },
        # The checkout root is only known to whoever reads the log (GitHub resolves it itself),
        # and an absolute path here would make the output differ between machines.
        "originalUriBaseIds": {
            SRCROOT: {"description": {"text": "The directory lossdiag was run in; result paths are relative to it."}}
        },
        "invocations": [
            {
                # Load errors are findings about the user's code (LD001), not a failure of lossdiag.
                "executionSuccessful": True,
                "toolExecutionNotifications": [_notification(e) for e in report.errors],
            }
        ],
        "results": _results(report),
        "properties": {
            "batchSize": report.batch_size,
            "seed": report.seed,
            "filesChecked": report.files_checked,
        },
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def render(report: Report) -> str:
    """The SARIF log as indented JSON, the same bytes for the same report."""
    return json.dumps(to_sarif(report), indent=2, sort_keys=False) + "\n"
