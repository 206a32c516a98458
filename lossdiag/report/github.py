"""Render a Report as GitHub Actions workflow commands (`::error file=…,line=…,title=…::…`), one per finding."""

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


def render(report: Report) -> str:
    """One workflow command a line for every unsuppressed finding and load error, in report order."""
    return "".join(_command(item) + "\n" for _, item in report.active_findings())
