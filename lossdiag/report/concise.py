"""The concise format: one line per unsuppressed finding, `path:line:col: CODE [loss] message`, for logs and editors.

Columns are 1-based; lossdiag points at lines, so the column is always 1. A module that could not be
imported has no loss: its line is `path:line:1: LD001 message`. Messages are joined onto one line.
"""

from __future__ import annotations

from lossdiag.models import Report


def _one_line(text: str) -> str:
    return " ".join(text.split())


def lines(report: Report) -> list[str]:
    out = []
    for e in report.errors:
        if not e.suppressed:
            out.append(f"{e.file}:{e.line or 1}:1: {e.code} {_one_line(e.message)}")
    for r in report.results:
        for f in r.active_findings:
            out.append(f"{f.file}:{f.line}:1: {f.code} [{r.name}] {_one_line(f.message)}")
    return out


def render(report: Report) -> str:
    """Every finding, one a line, in report order (errors first); nothing else."""
    return "".join(line + "\n" for line in lines(report))


def statistics(report: Report) -> list[tuple[int, str, str]]:
    """(count, code, rule name) of the unsuppressed findings, most frequent first."""
    from lossdiag.rules import RULES

    counts: dict[str, int] = {}
    for _, finding in report.active_findings():
        counts[finding.code] = counts.get(finding.code, 0) + 1
    rows = [(n, code, RULES[code].name if code in RULES else "") for code, n in counts.items()]
    return sorted(rows, key=lambda row: (-row[0], row[1]))


def render_statistics(report: Report) -> str:
    """`--statistics`: `count  CODE  name`, one line per code, sorted by count."""
    rows = statistics(report)
    width = max((len(str(n)) for n, _, _ in rows), default=1)
    return "".join(f"{n:>{width}}  {code}  {name}\n" for n, code, name in rows)
