"""The JSON format, schema 1 of SPEC.md: stable keys, sorted results, no timestamps.

The JSON Schema (2020-12) of this output ships in the package, next to this module (`schema.json`);
`lossdiag schema` prints it. Fields are only ever added within schema 1.
"""

from __future__ import annotations

import json
from typing import Any

from lossdiag import __version__
from lossdiag.models import Finding, LossResult, Report

SCHEMA = 1


def _num(value: float | None) -> float | None:
    """Four significant digits: enough to read, and stable across platforms' last bits."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return float(f"{value:.4g}")


def _finding(f: Finding) -> dict[str, Any]:
    return {
        "code": f.code,
        "severity": f.severity,
        "message": f.message,
        "file": f.file,
        "line": f.line,
        "hint": f.hint,
        "related": [{"file": r.file, "line": r.line, "message": r.message} for r in f.related],
        "suppressed": f.suppressed,
    }


def _result(r: LossResult) -> dict[str, Any]:
    probe = None
    if r.probe is not None:
        probe = {
            "batch_size": r.probe.batch_size,
            "y_true": list(r.probe.y_true),
            "y_pred": list(r.probe.y_pred),
            "labels": r.probe.labels,
            "source": r.probe.source,
        }
    out: dict[str, Any] = {
        "id": r.id,
        "name": r.name,
        "file": r.file,
        "line": r.line,
        "status": r.status,
        "probe": probe,
        "output_shape": None if r.output_shape is None else list(r.output_shape),
        # a batch statistic has no per-sample value: expected and ratio would only mislead
        "expected": None if r.na_reason else _num(r.expected),
        "actual": _num(r.actual),
        "ratio": None if r.na_reason else _num(r.ratio),
        "findings": [_finding(f) for f in r.findings],
        "kind": r.kind,
        "keras": r.keras or None,
        "outputs": list(r.outputs),
    }
    if r.na_reason:
        out["na_reason"] = r.na_reason
    if r.note:
        out["note"] = r.note
    return out


def to_data(report: Report) -> dict[str, Any]:
    data = {
        "schema": SCHEMA,
        "tool": {"name": "lossdiag", "version": __version__},
        "results": [_result(r) for r in report.results],
        "errors": [
            {"file": e.file, "code": e.code, "message": e.message, "line": e.line, "suppressed": e.suppressed}
            for e in report.errors
        ],
        "files_without_losses": list(report.files_without_losses),
        "summary": {**report.summary(), "suppressed": report.suppressed_count, "cached": report.cached},
    }
    if report.notes:  # files a folder walk skipped (a named pipe, a dangling link, no permission)
        data["notes"] = list(report.notes)
    return data


def render(report: Report) -> str:
    return json.dumps(to_data(report), indent=2, ensure_ascii=False) + "\n"


def schema_text() -> str:
    """The JSON Schema of this format, as shipped in the package."""
    from importlib.resources import files

    return files("lossdiag.report").joinpath("schema.json").read_text(encoding="utf-8")
