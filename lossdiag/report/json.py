"""The JSON format, schema 1 of SPEC.md: stable keys, sorted results, no timestamps."""

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
        }
    out: dict[str, Any] = {
        "id": r.id,
        "name": r.name,
        "file": r.file,
        "line": r.line,
        "status": r.status,
        "probe": probe,
        "output_shape": None if r.output_shape is None else list(r.output_shape),
        "expected": _num(r.expected),
        "actual": _num(r.actual),
        "ratio": _num(r.ratio),
        "findings": [_finding(f) for f in r.findings],
    }
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
        "summary": {**report.summary(), "suppressed": report.suppressed_count},
    }
    if report.notes:  # files a folder walk skipped (a named pipe, a dangling link, no permission)
        data["notes"] = list(report.notes)
    return data


def render(report: Report) -> str:
    return json.dumps(to_data(report), indent=2, ensure_ascii=False) + "\n"
