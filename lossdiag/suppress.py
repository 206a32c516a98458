"""Inline suppressions: `# lossdiag: ignore[LD105]` or a bare `# lossdiag: ignore` on a line."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

# `\b` after `ignore`: `# lossdiag: ignored for now` is prose, not a blanket suppression.
_DIRECTIVE = re.compile(r"#\s*lossdiag:\s*ignore\b(?:\[(?P<codes>[^\]]*)\])?", re.IGNORECASE)


def parse(line: str) -> frozenset[str] | None:
    """The codes a source line suppresses: None for none, an empty set for all of them."""
    match = _DIRECTIVE.search(line)
    if match is None:
        return None
    codes = match.group("codes")
    if codes is None:
        return frozenset()
    from lossdiag.rules import lookup

    parts = [c.strip() for c in re.split(r"[,\s]+", codes) if c.strip()]
    # Rule names work as they do in --select: `ignore[coupled]` is `ignore[LD105]`.
    return frozenset(rule.code if (rule := lookup(c)) is not None else c.upper() for c in parts)


def _lines(path: str) -> tuple[str, ...]:
    try:
        stat = Path(path).stat()
    except OSError:
        return ()
    return _read(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=256)
def _read(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    """Cached per file version, so an edited file is read again (a long-lived process, the tests)."""
    try:
        return tuple(Path(path).read_text(encoding="utf-8", errors="replace").splitlines())
    except OSError:
        return ()


def is_suppressed(code: str, places: list[tuple[str, int]]) -> bool:
    """Whether a directive on any of `places` (file, line) covers `code` (codes match by prefix)."""
    for file, line in places:
        lines = _lines(file)
        if not 1 <= line <= len(lines):
            continue
        codes = parse(lines[line - 1])
        if codes is not None and (not codes or any(code.startswith(c) for c in codes)):
            return True
    return False
