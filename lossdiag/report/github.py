"""Render a Report as GitHub Actions workflow commands (`::error file=…,line=…,title=…::…`), one per finding.

GitHub shows at most 10 error and 10 warning annotations per step and drops the rest silently. Past
those, findings are printed as plain `path:line:col: CODE message` lines (still in the log) and one
`::notice` says how many were not annotated.
"""

from __future__ import annotations

from lossdiag.models import Finding, LoadError, Report
from lossdiag.rules import RULES


def _escape_data(text: str) -> str:
    # The same escaping as actions/toolkit `escapeData` (command.ts); `%` first so we do not re-escape.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    # `:` and `,` would end a property value early (toolkit `escapeProperty`).
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _command(item: Finding | LoadError) -> str:
    rule = RULES.get(item.code)
    if isinstance(item, Finding):
        severity, hint = item.severity, item.hint
    else:
        severity, hint = (rule.severity if rule else "error"), ""
    level = "warning" if severity == "warning" else "error"
    # GitHub needs a line to anchor an annotation; a module that failed before any line is known gets 1.
    line = item.line or 1
    title = f"{item.code} {rule.name}" if rule else item.code
    # Prefix `path:line: CODE` so the raw log stays greppable without the annotation UI (ruff does the same).
    message = f"{item.file}:{line}: {item.code} {item.message}"
    if hint:
        message += f" — fix: {hint}"
    properties = f"file={_escape_property(item.file)},line={line},title={_escape_property(title)}"
    return f"::{level} {properties}::{_escape_data(message)}"


ANNOTATION_CAP = 10  # per level and step (actions/toolkit, "annotation limits")


def _plain(item: Finding | LoadError) -> str:
    return f"{item.file}:{item.line or 1}:1: {item.code} {' '.join(item.message.split())}"


def _level(item: Finding | LoadError) -> str:
    if isinstance(item, Finding):
        return "warning" if item.severity == "warning" else "error"
    rule = RULES.get(item.code)
    return "warning" if rule is not None and rule.severity == "warning" else "error"


def render(report: Report) -> str:
    """One workflow command a line for every unsuppressed finding and load error, in report order,
    up to GitHub's cap per level; the rest as plain lines and one notice."""
    shown = {"error": 0, "warning": 0}
    lines, more = [], 0
    for _, item in report.active_findings():
        level = _level(item)
        if shown[level] < ANNOTATION_CAP:
            shown[level] += 1
            lines.append(_command(item))
        else:
            more += 1
            lines.append(_plain(item))
    if more:
        lines.append(
            f"::notice title=lossdiag::{more} more finding{'s' if more != 1 else ''} not annotated "
            f"(GitHub shows at most {ANNOTATION_CAP} errors and {ANNOTATION_CAP} warnings per step): "
            "see the lines above, or run with --format concise"
        )
    return "".join(line + "\n" for line in lines)
