"""Which rules run on which file: ruff's select / extend-select / ignore layering, per-file-ignores and excludes.

A selection is built in layers, the configuration's first and then the command line's. A layer with
`select` starts from nothing; one without starts from what the layers before it enabled. Within a
layer the most specific matching prefix decides (`LD101` beats `LD1`), and on a tie the ignore wins.
So `--select LD102` brings back a code the config ignores, and `--ignore LD105` adds to the config's
ignores instead of replacing them.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ALL = "LD"


def code_prefix(part: str) -> str:
    """A rule code, code prefix (`LD1`, `ALL`) or rule name (`batch-sum`) as a code prefix (raises ValueError)."""
    from lossdiag.rules import RULES, lookup

    rule = lookup(part)
    if rule is not None:
        return rule.code
    upper = part.strip().upper()
    if upper in ("ALL", ALL):
        return ALL
    if upper.startswith(ALL) and upper[2:].isdigit() and any(code.startswith(upper) for code in RULES):
        return upper
    raise ValueError(f"{part!r} is not a rule code, prefix or name (see `lossdiag rules`)")


def all_codes() -> tuple[str, ...]:
    from lossdiag.rules import RULES

    return tuple(RULES)


@dataclass(frozen=True)
class Layer:
    """One source's selection: `select` (None: keep what earlier layers enabled), additions, ignores."""

    select: tuple[str, ...] | None = None
    extend_select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()  # ignore and extend-ignore, which mean the same


def _longest(code: str, prefixes: Iterable[str]) -> int:
    return max((len(p) for p in prefixes if code.startswith(p)), default=-1)


def apply(enabled: frozenset[str], layer: Layer, codes: Sequence[str]) -> frozenset[str]:
    """The codes enabled after one layer, given those enabled before it."""
    base = frozenset() if layer.select is not None else enabled
    selectors = (*(layer.select or ()), *layer.extend_select)
    out = set()
    for code in codes:
        chosen, ignored = _longest(code, selectors), _longest(code, layer.ignore)
        if ignored >= 0 and ignored >= chosen:
            continue  # the more specific prefix wins; on a tie, ignore wins
        if chosen >= 0 or code in base:
            out.add(code)
    return frozenset(out)


def enabled_codes(*layers: Layer, codes: Sequence[str] | None = None) -> frozenset[str]:
    """Every layer in order over the default of all rules."""
    codes = all_codes() if codes is None else tuple(codes)
    enabled = frozenset(codes)
    for layer in layers:
        enabled = apply(enabled, layer, codes)
    return enabled


def is_selected(code: str, select: tuple[str, ...], ignore: tuple[str, ...]) -> bool:
    """One layer's decision for one code: an empty `select` means every rule."""
    layer = Layer(select=select or (ALL,), ignore=ignore)
    return code in apply(frozenset(), layer, (code,))


# --- globs: exclude and per-file-ignores --------------------------------------------------------


def anchor(patterns: Sequence[str], root: Path | None, cwd: Path) -> tuple[str, ...]:
    """Globs written relative to the pyproject.toml's folder, restated for paths shown relative to `cwd`
    (or absolute outside it). A bare name or glob without `/` matches file names anywhere. A leading
    `!` is kept."""
    if root is None or root.resolve() == cwd.resolve():
        return tuple(patterns)
    out: list[str] = []
    for pattern in patterns:
        bang, body = ("!", pattern[1:]) if pattern.startswith("!") else ("", pattern)
        if "/" not in body:
            out.append(pattern)
            continue
        absolute = (root.resolve() / body).as_posix()
        out.append(bang + absolute)
        rel = os.path.relpath(absolute, cwd.resolve()).replace(os.sep, "/")
        if not rel.startswith("../"):
            out.append(bang + rel)
    return tuple(out)


def path_matches(display: str, patterns: Iterable[str]) -> bool:
    """Whether a shown path (POSIX, relative to the working directory or absolute) matches a glob."""
    name = display.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(display, p) or fnmatch.fnmatch(name, p) for p in patterns)


def anchor_per_file_ignores(
    table: Sequence[tuple[str, tuple[str, ...]]], root: Path
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`per-file-ignores` globs containing `/` made absolute from the pyproject.toml's folder."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for pattern, prefixes in table:
        bang, body = ("!", pattern[1:]) if pattern.startswith("!") else ("", pattern)
        if "/" in body and not body.startswith("/"):
            body = (root.resolve() / body).as_posix()
        out.append((bang + body, prefixes))
    return tuple(out)


def ignored_in_file(path: Path, per_file_ignores: Sequence[tuple[str, tuple[str, ...]]]) -> tuple[str, ...]:
    """The code prefixes per-file-ignores switch off for one file (absolute path); a glob without `/`
    matches the file name, `!glob` the files that do not match."""
    full, name = path.as_posix(), path.name
    out: list[str] = []
    for pattern, prefixes in per_file_ignores:
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        hit = fnmatch.fnmatch(full, body) or ("/" not in body and fnmatch.fnmatch(name, body))
        if hit != negated:
            out.extend(prefixes)
    return tuple(out)
