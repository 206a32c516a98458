"""Check a rendered table the way a reader sees it: re-join each wrapped cell and compare it with the
cell's text unwrapped, and find every name, line reference, shape, code and ratio whole on one line."""

from __future__ import annotations

from lossdiag.models import LossResult, Report
from lossdiag.report import table


def protected(r: LossResult, column: int | None = None) -> list[str]:
    """The tokens that must never be split, per column (None: all of them)."""
    per_column = [
        [r.name, f"line {r.line}"],
        [t for t, _ in table.probe_pieces(r) + table.output_pieces(r)],
        [] if r.na_reason else [table.number(r.expected)],
        [table.number(r.actual)],
        [] if r.na_reason else [table.ratio(r.ratio)],
        [table.verdict_word(r), *sorted({f.code for f in r.findings})],
    ]
    return per_column[column] if column is not None else [t for col in per_column for t in col]


def _norm(text: str) -> str:
    return " ".join(text.split())


def _blocks(lines: list[str], results: list[LossResult], first_token) -> list[list[str]]:
    """The lines of each loss: from the line that starts with its name to the next loss or blank line."""
    starts, at = [], 0
    for r in results:
        while first_token(lines[at]) != r.name:
            at += 1
        starts.append(at)
        at += 1
    blocks = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(lines)
        block = lines[start:end]
        if "" in block:
            block = block[: block.index("")]
        blocks.append(block)
    return blocks


def _check_table_section(lines: list[str], results: list[LossResult], widths: list[int]) -> None:
    starts = [sum(widths[:i]) + table.GAP * i for i in range(len(widths))]
    assert lines[0].startswith("Loss"), lines[:2]
    body = lines[2:]
    for r, block in zip(results, _blocks(body, results, lambda line: (line[: widths[0]].split() or [""])[0])):
        for i, (start, w) in enumerate(zip(starts, widths)):
            cells = [line[start : start + w] for line in block]
            assert all(len(line) <= start + w or i < len(widths) - 1 for line in block)
            unwrapped = table.cell_text(table.COLUMNS[i][2](r), None).plain
            assert _norm(" ".join(cells)) == _norm(unwrapped), (r.name, i, cells, unwrapped)
            for token in protected(r, i):
                assert any(token in cell for cell in cells), (r.name, token, cells)


def _check_stacked_section(lines: list[str], results: list[LossResult]) -> None:
    for r, block in zip(results, _blocks(lines, results, lambda line: (line.split() or [""])[0])):
        shown = protected(r) if r.probe is not None else [r.name, *protected(r, 5)]  # unprobed: no numbers
        for token in [*shown, f"{r.file}:{r.line}"]:
            if token.startswith("line "):
                continue  # the stacked form says FILE:LINE instead
            assert any(token in line for line in block), (r.name, token, block)


def check_tokens(rendered: str, report: Report, width: int | None) -> None:
    """Assert that no table row of `rendered` splits a protected token (see the module docstring)."""
    lines = rendered.split("\n")
    assert all(line == line.rstrip() for line in lines), "a line ends in spaces"
    if width is not None:  # only a single token longer than the terminal (a long path) may overflow
        assert all(len(line) <= width or " " not in line.strip() for line in lines), "wider than the terminal"
    shared = table.column_widths(report.results, width)
    by_file: dict[str, list[LossResult]] = {}
    for r in report.results:
        by_file.setdefault(r.file, []).append(r)
    at = 0
    for file, results in by_file.items():
        at = lines.index(file, at)
        section = lines[at + 1 :]
        section = section[: section.index("")]
        widths = shared or table.column_widths(results, width)
        if widths is not None:
            _check_table_section(section, results, widths)
        else:
            _check_stacked_section(section, results)
        at += 1 + len(section)
