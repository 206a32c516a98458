"""The human format: a rich table of losses, one explanation per finding, and a summary line."""

from __future__ import annotations

import io
from pathlib import Path

from rich import box
from rich.console import Console, Group
from rich.padding import Padding
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from lossdiag.models import Finding, LoadError, LossResult, Report
from lossdiag.rules import RULES

_STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "error": "red", "skipped": "dim"}


def _shape(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "n/a"
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:#.3g}×"


def _probe(r: LossResult) -> str:
    if r.probe is None:
        return "n/a"
    p = r.probe
    if p.y_true == p.y_pred:
        return f"{_shape(p.y_pred)} {p.labels}"
    return f"{_shape(p.y_true)}→{_shape(p.y_pred)} {p.labels}"


def _output(r: LossResult) -> Text:
    if r.output_shape is None or r.probe is None:
        return Text("n/a")
    text = Text(_shape(r.output_shape))
    batch_axes = [d for d in r.output_shape if d == r.probe.batch_size]
    if len(batch_axes) != 1:
        text.append(f" want ({r.probe.batch_size},)", style="dim")
    return text


def _codes(r: LossResult) -> list[str]:
    return sorted({f.code for f in r.active_findings})


def _code_style(code: str) -> str:
    return _STATUS_STYLE["fail" if RULES[code].severity == "error" else "warn"]


def _verdict(r: LossResult, sep: str = "\n") -> Text:
    text = Text(r.status, style=_STATUS_STYLE[r.status])
    for code in _codes(r):
        text.append(sep + code, style=_code_style(code))
    return text


def _tables(report: Report, width: int) -> list[Table]:
    """One table per file, titled with its path; the columns line up from one table to the next."""
    name_width = max(len(r.name) for r in report.results + (LossResult("", "Loss", "", 0, "pass"),))
    numbers = [(_num(r.expected), _num(r.actual), _ratio(r.ratio)) for r in report.results]
    widths = [max(len(h), *(len(n[i]) for n in numbers)) for i, h in enumerate(("Expected", "Actual", "Ratio"))]
    verdict = max([7, *(len(c) for r in report.results for c in _codes(r))])
    # Names, numbers and codes are never cut: the probe column takes what is left and wraps.
    probe_natural = max(max(len(_probe(r)), len(_output(r).plain) + 2) for r in report.results)
    probe_width = max(8, min(probe_natural, width - name_width - sum(widths) - verdict - 3 * 5))  # 5 gaps
    tables = []
    for file in dict.fromkeys(r.file for r in report.results):
        table = Table(
            box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
            title=Text(file, style="bold"), title_justify="left",
        )
        table.add_column("Loss", width=name_width, overflow="fold")
        table.add_column("Probe → out", width=probe_width, overflow="fold")
        for header, w in zip(("Expected", "Actual", "Ratio"), widths):
            table.add_column(header, width=w, justify="right", no_wrap=True)
        table.add_column("Verdict", width=verdict, no_wrap=True)
        for r in (r for r in report.results if r.file == file):
            name = Text(r.name, style="bold")
            name.append(f"\n  line {r.line}", style="dim")
            cell = Text(_probe(r) + "\n→ ")
            cell.append_text(_output(r))
            table.add_row(name, cell, _num(r.expected), _num(r.actual), _ratio(r.ratio), _verdict(r))
        tables.append(table)
    return tables


def _intact(rendered: str, report: Report) -> bool:
    """Whether every loss name, code and ratio appears unbroken on one line of the table."""
    lines = rendered.splitlines()
    if not any("Verdict" in line for line in lines[:3]):
        return False
    for r in report.results:
        needles = [r.name, _ratio(r.ratio), *_codes(r)]
        if not all(any(n in line for line in lines) for n in needles):
            return False
    return True


def _stacked(r: LossResult) -> Text:
    """One loss as a block of lines, for terminals too narrow for the table."""
    text = Text(r.name, style="bold")
    text.append("  ")
    text.append_text(_verdict(r, sep=" "))
    text.append(f"\n  {r.file}:{r.line}", style="dim")
    if r.probe is not None:
        text.append(f"\n  probe {_probe(r)} → output ")
        text.append_text(_output(r))
        text.append(f"\n  expected {_num(r.expected)}  actual {_num(r.actual)}  ratio {_ratio(r.ratio)}")
    return text


def _source(file: str, line: int, color: bool) -> Syntax | None:
    path = Path(file)
    try:
        code = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if not 1 <= line <= code.count("\n") + 1:
        return None
    return Syntax(
        code, "python", line_numbers=True, line_range=(line, line), highlight_lines={line},
        theme="ansi_dark" if color else "bw", word_wrap=True, background_color="default",
    )


def _finding(r: LossResult, f: Finding, color: bool) -> Group:
    rule = RULES[f.code]
    head = Text()
    head.append(f"{f.code} {rule.name}", style=_code_style(f.code))
    head.append(f" ({f.severity}) in ")
    head.append(r.name, style="bold")
    parts: list = [head, Padding(Text(f"{f.file}:{f.line}: {f.message}"), (0, 0, 0, 2), expand=False)]
    snippet = _source(f.file, f.line, color)
    if snippet is not None:
        parts.append(snippet)
    for rel in f.related:
        parts.append(Padding(Text(f"{rel.file}:{rel.line}: {rel.message}", style="dim"), (0, 0, 0, 2), expand=False))
        snippet = _source(rel.file, rel.line, color)
        if snippet is not None:
            parts.append(snippet)
    if f.hint:
        fix = Text("fix: ", style="bold")
        fix.append(f.hint)
        parts.append(Padding(fix, (0, 0, 0, 2), expand=False))
    return Group(*parts)


def _load_error(e: LoadError) -> Text:
    text = Text()
    text.append(f"{e.code} {RULES[e.code].name}", style="bold red")
    where = f"{e.file}:{e.line}" if e.line else e.file
    text.append(f" {where}: {e.message}")
    return text


def summary_line(report: Report) -> str:
    s = report.summary()
    files = report.files_checked
    parts = [f"{s['losses']} loss{'es' if s['losses'] != 1 else ''} in {files} file{'s' if files != 1 else ''}"]
    counts = ", ".join(f"{s[k]} {k}" for k in ("pass", "warn", "fail", "error", "skipped") if s[k])
    line = parts[0] + (f": {counts}" if counts else "")
    if report.errors:
        line += f"; {len([e for e in report.errors if not e.suppressed])} could not be loaded"
    if report.suppressed_count:
        line += f"; {report.suppressed_count} suppressed"
    if report.files_without_losses:
        n = len(report.files_without_losses)
        line += f"; {n} file{'s' if n != 1 else ''} without losses"
    return line


def render(report: Report, *, color: bool = False, width: int = 80) -> str:
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, color_system="standard" if color else None, no_color=not color,
        force_terminal=color, highlight=False, emoji=False, soft_wrap=False,
    )
    if report.results:
        trial = Console(file=io.StringIO(), width=width, color_system=None, highlight=False, emoji=False)
        for table in _tables(report, width):
            trial.print(table)
        if _intact(trial.file.getvalue(), report):
            for table in _tables(report, width):
                console.print(table)
                console.print()
        else:  # too narrow for the table without cutting a name: one block per loss
            for r in report.results:
                console.print(_stacked(r))
            console.print()
    for e in report.errors:
        if not e.suppressed:
            console.print(_load_error(e))
    for r in report.results:
        for f in r.active_findings:
            console.print(_finding(r, f, color))
            console.print()
        if r.status == "skipped" and r.note:
            console.print(Text(f"{r.name} ({r.file}:{r.line}) skipped: {r.note}", style="dim"))
    console.print(Text(summary_line(report), style="bold"))
    return buffer.getvalue()


def render_findings(report: Report) -> str:
    """The `-q` form: one line per unsuppressed finding, `file:line: CODE message`, nothing else."""
    lines = []
    for e in report.errors:
        if not e.suppressed:
            lines.append(f"{e.file}:{e.line or 1}: {e.code} {e.message}")
    for r in report.results:
        for f in r.active_findings:
            lines.append(f"{f.file}:{f.line}: {f.code} [{r.name}] {f.message}")
    return "".join(line + "\n" for line in lines)
