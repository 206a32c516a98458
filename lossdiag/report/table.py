"""Render a Report for a person: one table per file, each finding with its source line and fix, a summary line.

Cells are wrapped here, between tokens, never by rich: a loss name, `line 12`, a shape such as
`(32, 16, 16, 1)`, a code or a ratio always stays on one line. When the terminal is too narrow for the
table without splitting one of them, each loss becomes a block of lines instead. `width=None` (stdout is
not a terminal) means no wrapping at all. No line ends in spaces.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, JustifyMethod
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from lossdiag.models import Finding, LoadError, LossResult, Report
from lossdiag.report.text import strip_trailing_spaces, tokens, wrap
from lossdiag.rules import RULES

_STATUS_STYLE = {
    "pass": "green", "warn": "yellow", "fail": "bold red", "error": "red", "skipped": "dim", "suppressed": "dim",
}
UNLIMITED = 10_000  # the console width standing for "no wrapping"
GAP = 2  # between columns (collapsed padding)
INFERRED_MARK = "*"

Piece = tuple[str, str]  # (token, style)


@dataclass(frozen=True)
class Line:
    """One logical line of a cell: tokens that may wrap onto more lines, each starting with `indent`."""

    pieces: tuple[Piece, ...]
    indent: str = ""


Cell = tuple[Line, ...]


# --- cell contents ------------------------------------------------------------------------------


def shape(dims: Sequence[int] | None) -> str:
    if dims is None:
        return "n/a"
    return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:#.3g}×"


def verdict_word(r: LossResult) -> str:
    """The status as the table says it: a loss whose every finding is suppressed is `suppressed`."""
    if r.status == "pass" and any(f.suppressed for f in r.findings):
        return "suppressed"
    return r.status


def _codes(r: LossResult) -> list[str]:
    return sorted({f.code for f in r.active_findings})


def _suppressed_codes(r: LossResult) -> list[str]:
    return sorted({f.code for f in r.findings if f.suppressed} - set(_codes(r)))


def _code_style(code: str) -> str:
    return _STATUS_STYLE["fail" if RULES[code].severity == "error" else "warn"]


def probe_pieces(r: LossResult) -> list[Piece]:
    """`(32, 2) binary`, or `true (32,) pred (32, 4) sparse` when y_true and y_pred differ; `*` if inferred."""
    if r.probe is None:
        return [("n/a", "")]
    p = r.probe
    mark = INFERRED_MARK if p.source == "inferred" else ""
    if p.y_true == p.y_pred:
        return [(shape(p.y_pred), ""), (p.labels + mark, "")]
    return [(f"true {shape(p.y_true)}", ""), (f"pred {shape(p.y_pred)}", ""), (p.labels + mark, "")]


def output_pieces(r: LossResult) -> list[Piece]:
    """`→ (32,)`: what the loss returned; `want (32,)` when that has no single batch axis."""
    if r.output_shape is None or r.probe is None:
        return [("→ n/a", "")]
    pieces = [(f"→ {shape(r.output_shape)}", "")]
    if sum(1 for d in r.output_shape if d == r.probe.batch_size) != 1:
        pieces.append((f"want ({r.probe.batch_size},)", "dim"))
    return pieces


def _loss_cell(r: LossResult) -> Cell:
    head: list[Piece] = [(r.name, "bold")]
    if r.outputs:
        head.append(("→ " + ", ".join(r.outputs), "cyan"))
    second: list[Piece] = [(f"line {r.line}", "dim")]
    if r.kind == "metric":
        second.append(("metric", "magenta"))
    return (Line(tuple(head)), Line(tuple(second), "  "))


def _probe_cell(r: LossResult) -> Cell:
    return (Line(tuple(probe_pieces(r))), Line(tuple(output_pieces(r))))


def _na(reason: str) -> tuple[Piece, ...]:
    return (("n/a", ""), *((word, "dim") for word in f"({reason})".split()))


def _expected_cell(r: LossResult) -> Cell:
    return (Line(_na(r.na_reason) if r.na_reason else ((number(r.expected), ""),)),)


def _actual_cell(r: LossResult) -> Cell:
    return (Line(((number(r.actual), ""),)),)


def _ratio_cell(r: LossResult) -> Cell:
    return (Line(_na(r.na_reason) if r.na_reason else ((ratio(r.ratio), ""),)),)


def _verdict_cell(r: LossResult) -> Cell:
    word = verdict_word(r)
    lines = [Line(((word, _STATUS_STYLE[word]),))]
    lines += [Line(((code, _code_style(code)),)) for code in _codes(r)]
    lines += [Line(((f"({code})", "dim"),)) for code in _suppressed_codes(r)]
    return tuple(lines)


COLUMNS: tuple[tuple[str, JustifyMethod, Callable[[LossResult], Cell]], ...] = (
    ("Loss", "left", _loss_cell),
    ("Probe → out", "left", _probe_cell),
    ("Expected", "right", _expected_cell),
    ("Actual", "right", _actual_cell),
    ("Ratio", "right", _ratio_cell),
    ("Verdict", "left", _verdict_cell),
)
SHRINK_ORDER = (4, 2, 1, 0, 5, 3)  # n/a reasons wrap first, then the probe column, then the line under a name


# --- layout -------------------------------------------------------------------------------------


def _flowed(line: Line, width: int | None) -> list[list[Piece]]:
    rows: list[list[Piece]] = []
    current: list[Piece] = []
    used = len(line.indent)
    for piece in line.pieces:
        extra = len(piece[0]) + (1 if current else 0)
        if current and width is not None and used + extra > width:
            rows.append(current)
            current, used = [], len(line.indent)
            extra = len(piece[0])
        current.append(piece)
        used += extra
    rows.append(current)
    return rows


def cell_text(cell: Cell, width: int | None) -> Text:
    """A cell wrapped between its tokens to `width`."""
    text = Text()
    for line in cell:
        for row in _flowed(line, width):
            if len(text):
                text.append("\n")
            text.append(line.indent)
            for i, (token, style) in enumerate(row):
                text.append((" " if i else "") + token, style=style or None)
    return text


def _min_width(cell: Cell) -> int:
    return max(len(line.indent) + len(token) for line in cell for token, _ in line.pieces)


def _natural_width(cell: Cell) -> int:
    return max(len(line.indent) + len(" ".join(t for t, _ in line.pieces)) for line in cell)


def column_widths(results: Sequence[LossResult], width: int | None) -> list[int] | None:
    """Widths for every column, shrinking the wrappable ones down to their longest token; None when
    even that does not fit (then the losses are stacked)."""
    cells = [[make(r) for _, _, make in COLUMNS] for r in results]
    natural = [max([len(h), *(_natural_width(c[i]) for c in cells)]) for i, (h, _, _) in enumerate(COLUMNS)]
    if width is None:
        return natural
    least = [max([len(h), *(_min_width(c[i]) for c in cells)]) for i, (h, _, _) in enumerate(COLUMNS)]
    widths = list(natural)
    excess = sum(widths) + GAP * (len(widths) - 1) - width
    for i in SHRINK_ORDER:
        if excess <= 0:
            break
        cut = min(excess, widths[i] - least[i])
        widths[i] -= cut
        excess -= cut
    return widths if excess <= 0 else None


def file_table(results: Sequence[LossResult], widths: list[int]) -> Table:
    """One file's losses (the caller prints the file's path above it)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    for (header, justify, _), w in zip(COLUMNS, widths, strict=True):  # column_widths gives one per column
        # no_wrap: the cells are already wrapped between tokens; rich must not wrap them again
        table.add_column(header, width=w, justify=justify, no_wrap=True, overflow="fold")
    for r in results:
        table.add_row(*(cell_text(make(r), w) for (_, _, make), w in zip(COLUMNS, widths, strict=True)))
    return table


def stacked_text(r: LossResult, width: int | None) -> Text:
    """One loss as a block of lines, for terminals too narrow for the table."""
    verdict: list[Piece] = [(verdict_word(r), _STATUS_STYLE[verdict_word(r)])]
    verdict += [(code, _code_style(code)) for code in _codes(r)]
    verdict += [(f"({code})", "dim") for code in _suppressed_codes(r)]
    head = list(_loss_cell(r)[0].pieces) + verdict
    where: list[Piece] = [(f"{r.file}:{r.line}", "dim"), *_loss_cell(r)[1].pieces[1:]]
    lines = [Line(tuple(head)), Line(tuple(where), "  ")]
    if r.probe is not None:
        lines.append(Line((("probe", ""), *probe_pieces(r), *output_pieces(r)), "  "))
        values = [("expected", ""), *_expected_cell(r)[0].pieces, ("actual", ""), *_actual_cell(r)[0].pieces,
                  ("ratio", ""), *_ratio_cell(r)[0].pieces]
        lines.append(Line(tuple(values), "  "))
    return cell_text(tuple(lines), width)


# --- findings, legend, summary ------------------------------------------------------------------


def _source(file: str, line: int, color: bool, width: int | None) -> Syntax | None:
    try:
        code = Path(file).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    lines = code.splitlines()
    if not 1 <= line <= len(lines):
        return None
    return Syntax(
        code, "python", line_numbers=True, line_range=(line, line), highlight_lines={line},
        theme="ansi_dark" if color else "bw", word_wrap=width is not None, background_color="default",
        code_width=len(lines[line - 1].expandtabs()) + 1 if width is None else None,
    )


def _para(text: str, width: int | None, style: str = "", indent: str = "  ") -> Text:
    """A paragraph wrapped between tokens here; print it with `_put` so that rich does not wrap it again."""
    return Text(wrap(text, width, indent), style=style or "")


def _put(console: Console, *renderables: Any) -> None:
    """Print already-wrapped text as it is: a token longer than the terminal overflows, it is never cut."""
    for renderable in renderables:
        if isinstance(renderable, Text):
            console.print(renderable, no_wrap=True, overflow="ignore", crop=False)
        else:
            console.print(renderable)


def _finding(r: LossResult, f: Finding, color: bool, width: int | None) -> list[Any]:
    rule = RULES[f.code]
    head = _para(f"{f.code} {rule.name} ({f.severity}) in {r.name}", width, indent="")
    head.stylize(_code_style(f.code), 0, len(f.code) + 1 + len(rule.name))
    head.stylize("bold", len(head.plain) - len(r.name))
    parts: list[Any] = [head, _para(f"{f.file}:{f.line}: {f.message}", width)]
    snippet = _source(f.file, f.line, color, width)
    if snippet is not None:
        parts.append(snippet)
    for rel in f.related:
        parts.append(_para(f"{rel.file}:{rel.line}: {rel.message}", width, "dim"))
        snippet = _source(rel.file, rel.line, color, width)
        if snippet is not None:
            parts.append(snippet)
    if f.hint:
        fix = _para(f"fix: {f.hint}", width)
        fix.stylize("bold", 2, 6)
        parts.append(fix)
    return parts


def _load_error(e: LoadError, width: int | None) -> Text:
    where = f"{e.file}:{e.line}" if e.line else e.file
    text = _para(f"{e.code} {RULES[e.code].name} {where}: {e.message}", width, indent="")
    text.stylize("bold red", 0, len(e.code) + 1 + len(RULES[e.code].name))
    return text


_LEGEND = {
    "error": "error = not checked: the loss could not be probed (LD002, a warning) or lossdiag failed on it (LD004)",
    "skipped": "skipped = not checked, for the reason given below",
    "suppressed": "suppressed = every finding is silenced by a `# lossdiag: ignore` comment",
}


def legend(report: Report) -> list[str]:
    """What the less obvious verdicts and marks in this table mean (only those that appear)."""
    shown = {verdict_word(r) for r in report.results}
    lines = [_LEGEND[word] for word in _LEGEND if word in shown]
    if any(r.probe is not None and r.probe.source == "inferred" for r in report.results):
        lines.append(f"{INFERRED_MARK} = layout inferred by lossdiag; pin it with --probe NAME=SPEC")
    return lines


def _plural(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _status_counts(report: Report, fail_on: str) -> list[str]:
    """`2 pass, 1 warn (not failing: ...)`: warnings that do not fail the run say how to make them fail."""
    s = report.summary()
    counts = [f"{s[k]} {k}" for k in ("pass", "warn", "fail", "error", "skipped") if s[k]]
    warnings = [f for _, f in report.active_findings() if getattr(f, "severity", "error") == "warning"]
    if fail_on != "error" or not warnings:
        return counts
    note = "(not failing: --fail-on warning to fail on them)"
    if s["warn"]:
        at = [c.endswith(" warn") for c in counts].index(True)
        counts[at] += " " + note
    else:  # warnings only on losses that could not be probed (LD002)
        counts.append(f"{_plural(len(warnings), 'warning')} {note}")
    return counts


def summary_line(report: Report, fail_on: str = "error") -> str:
    """`3 losses in 1 file: 1 pass, 2 warn (not failing: --fail-on warning to fail on them); 1 suppressed`."""
    losses = len(report.results)
    line = f"{_plural(losses, 'loss', 'losses')} in {_plural(report.files_checked, 'file')}"
    counts = _status_counts(report, fail_on)
    line += (": " + ", ".join(counts)) if counts else ""
    if report.errors:
        line += f"; {len([e for e in report.errors if not e.suppressed])} could not be loaded"
    if report.suppressed_count:
        line += f"; {report.suppressed_count} suppressed"
    if report.cached:
        line += f"; {report.cached} from the cache"
    if report.files_without_losses:
        line += f"; {_plural(len(report.files_without_losses), 'file')} without losses"
    return line


# --- the whole report ---------------------------------------------------------------------------


def _console(buffer: io.StringIO, color: bool, width: int | None) -> Console:
    return Console(
        file=buffer, width=UNLIMITED if width is None else width, color_system="standard" if color else None,
        no_color=not color, force_terminal=color, highlight=False, emoji=False, soft_wrap=False,
        legacy_windows=False,
    )


def _print_results(console: Console, report: Report, width: int | None) -> None:
    """A table per file with the columns aligned across files; where that is too wide, each file gets
    its own widths, and a file that still does not fit gets one block of lines per loss."""
    by_file: dict[str, list[LossResult]] = {}
    for r in report.results:
        by_file.setdefault(r.file, []).append(r)
    shared = column_widths(report.results, width)
    for file, results in by_file.items():
        widths = shared or column_widths(results, width)
        _put(console, Text(file, style="bold"))  # the title: a path is one token, never wrapped
        if widths is not None:
            console.print(file_table(results, widths))
        else:
            _put(console, *(stacked_text(r, width) for r in results))
        console.print()
    for line in legend(report):
        _put(console, _para(line, width, "dim", indent=""))
    if legend(report):
        console.print()


def render(report: Report, *, color: bool = False, width: int | None = 80, fail_on: str = "error") -> str:
    """The table, the findings and the summary; `width=None` wraps nothing (output that is not a terminal)."""
    buffer = io.StringIO()
    console = _console(buffer, color, width)
    if report.results:
        _print_results(console, report, width)
    for e in report.errors:
        if not e.suppressed:
            _put(console, _load_error(e, width))
    for r in report.results:
        for f in r.active_findings:
            _put(console, *_finding(r, f, color, width))
            console.print()
        if r.status == "skipped" and r.note:
            _put(console, _para(f"{r.name} ({r.file}:{r.line}) skipped: {r.note}", width, "dim", indent=""))
    _put(console, _para(summary_line(report, fail_on), width, "bold", indent=""))
    return strip_trailing_spaces(buffer.getvalue())


def render_findings(report: Report) -> str:
    """The `-q` form: the concise format, one line per unsuppressed finding."""
    from lossdiag.report import concise

    return concise.render(report)


__all__ = ["legend", "render", "render_findings", "summary_line", "tokens"]
