"""Inline suppressions: `# lossdiag: ignore[LD105]` or `# lossdiag: ignore`, which ones went unused (LD003),
and `--add-ignore`, which writes them for every loss with findings.

A directive sits on a loss's `def`/`class` line, or on the line a finding points at. Codes match by
prefix; rule names work as in `--select`. Several directives on one line add up.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from lossdiag.models import Finding, LossResult

# `\b` after `ignore`: `# lossdiag: ignore[d] for now` is a directive, `# lossdiag: ignored` is prose.
_DIRECTIVE = re.compile(r"#\s*lossdiag:\s*ignore\b(?:\[(?P<codes>[^\]]*)\])?", re.IGNORECASE)
_LINE_ENDS = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")

Place = tuple[str, int]  # (absolute file, 1-based line)
Selector = Callable[[str], Callable[[str], bool]]  # shown file -> code -> reported there?


def parse(line: str) -> frozenset[str] | None:
    """The codes a source line suppresses: None for none, an empty set for all of them."""
    matches = list(_DIRECTIVE.finditer(line))
    if not matches:
        return None
    from lossdiag.rules import lookup

    codes: set[str] = set()
    for match in matches:
        listed = match.group("codes")
        if listed is None:
            return frozenset()  # a blanket directive covers everything, whatever else the line says
        parts = [c.strip() for c in re.split(r"[,\s]+", listed) if c.strip()]
        # Rule names work as they do in --select: `ignore[coupled]` is `ignore[LD105]`.
        codes.update(rule.code if (rule := lookup(c)) is not None else c.upper() for c in parts)
    return frozenset(codes)


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
        with tokenize.open(path) as handle:  # the file's own encoding (coding line, BOM), as Python reads it
            return tuple(_split_lines(handle.read()))
    except (OSError, SyntaxError, UnicodeDecodeError):
        try:
            return tuple(_split_lines(Path(path).read_text(encoding="utf-8", errors="replace")))
        except OSError:
            return ()


def _split_lines(text: str) -> list[str]:
    """Lines as Python counts them (\\r\\n, \\r or \\n), without their endings."""
    return [line.rstrip("\r\n") for line in _LINE_ENDS.findall(text)]


def directive_at(place: Place) -> frozenset[str] | None:
    file, line = place
    lines = _lines(file)
    return parse(lines[line - 1]) if 1 <= line <= len(lines) else None


def covering(code: str, places: Iterable[Place], blanket: bool = True) -> Place | None:
    """The first of `places` whose directive covers `code` (codes match by prefix), if any; a bare
    `# lossdiag: ignore` covers every code unless `blanket` is False."""
    for place in places:
        codes = directive_at(place)
        if codes is not None and ((blanket and not codes) or any(code.startswith(c) for c in codes)):
            return place
    return None


def is_suppressed(code: str, places: list[Place]) -> bool:
    """Whether a directive on any of `places` (file, line) covers `code`."""
    return covering(code, places) is not None


# --- applying suppressions to a run, and LD003 --------------------------------------------------


def _absolute(file: str, cwd: Path) -> str:
    return str((cwd / file).resolve())


def _shown(file: str, cwd: Path) -> str:
    path = Path(file)
    try:
        return path.relative_to(cwd.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _measured(result: LossResult) -> bool:
    """Only losses that were checked can show that a directive on them suppressed nothing."""
    return result.status in ("pass", "warn", "fail")


def _outcome(original: LossResult, findings: Sequence[Finding]) -> tuple[str, str]:
    """Status and note after selection and suppression."""
    active = [f for f in findings if not f.suppressed]
    if any(f.code in ("LD002", "LD004") for f in active):
        return "error", original.note
    if any(f.severity == "error" for f in active):
        return "fail", original.note
    if active:
        return "warn", original.note
    if original.status == "error" and not findings:  # its not-probed finding was deselected
        dropped = [f.message for f in original.findings if f.code in ("LD002", "LD004")]
        return "skipped", original.note or ("not probed: " + dropped[0] if dropped else "")
    if original.status == "skipped":
        return "skipped", original.note
    return "pass", original.note


@dataclass
class _Usage:
    used: dict[Place, set[str]]
    owners: dict[Place, int]  # which result a directive's LD003 belongs to


def _mark(results: Sequence[LossResult], selector: Selector, cwd: Path) -> tuple[list[LossResult], _Usage]:
    usage = _Usage(defaultdict(set), {})
    marked: list[LossResult] = []
    for index, result in enumerate(results):
        selected = selector(result.file)
        def_place = (_absolute(result.file, cwd), result.line)
        findings = []
        for f in (f for f in result.findings if selected(f.code)):
            place = covering(f.code, [def_place, (_absolute(f.file, cwd), f.line)])
            if place is not None:
                usage.used[place].add(f.code)
            findings.append(replace(f, suppressed=place is not None))
            if _measured(result):
                usage.owners.setdefault((_absolute(f.file, cwd), f.line), index)
        if _measured(result):
            usage.owners.setdefault(def_place, index)
        marked.append(replace(result, findings=tuple(findings)))
    return marked, usage


def _unused(place: Place, used: set[str], selected: Callable[[str], bool]) -> list[str] | None:
    """The directive's codes that suppressed nothing ([] for a blanket one), None when all were used.
    LD003 itself and codes of rules that did not run are never reported."""
    from lossdiag.rules import RULES

    codes = directive_at(place)
    if codes is None:
        return None
    if not codes:
        return None if used else []
    unused = [
        c for c in sorted(codes)
        if c != "LD003" and not any(u.startswith(c) for u in used)
        and any(selected(code) for code in RULES if code.startswith(c) and code != "LD003")
    ]
    return unused or None


def unused_finding(place: Place, unused: list[str], name: str, cwd: Path) -> Finding:
    from lossdiag.rules import RULES

    if unused:
        listed = ", ".join(unused)
        message = f"`# lossdiag: ignore[...]` lists {listed}, which suppressed nothing on {name} in this run"
        hint = f"remove {listed} from the comment (or the comment, if nothing is left)"
    else:
        message = f"`# lossdiag: ignore` suppressed nothing on {name} in this run"
        hint = "remove the comment"
    file, line = place
    return Finding("LD003", RULES["LD003"].severity, message, _shown(file, cwd), line, hint=hint)


def apply(results: Sequence[LossResult], selector: Selector, cwd: Path) -> tuple[LossResult, ...]:
    """Drop findings of rules not selected for their file, mark suppressed ones, add LD003 for
    directives (on def lines, or on lines this run's findings point at) that suppressed nothing,
    and set each status from what is left."""
    marked, usage = _mark(results, selector, cwd)
    extra: dict[int, list[Finding]] = defaultdict(list)
    for place, index in sorted(usage.owners.items()):
        selected = selector(marked[index].file)
        if not selected("LD003"):
            continue
        unused = _unused(place, usage.used.get(place, set()), selected)
        if unused is not None:
            finding = unused_finding(place, unused, marked[index].name, cwd)
            # only a directive naming LD003 silences it: an unused blanket one is reported, as ruff's RUF100
            def_line = (_absolute(marked[index].file, cwd), marked[index].line)
            own = covering("LD003", [place, def_line], blanket=False)
            extra[index].append(replace(finding, suppressed=own is not None))
    out = []
    for index, result in enumerate(marked):
        findings = tuple(sorted((*result.findings, *extra[index]), key=lambda f: (f.code, f.file, f.line)))
        status, note = _outcome(results[index], findings)
        out.append(replace(result, findings=findings, status=status, note=note))
    return tuple(out)


# --- --add-ignore ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Added:
    comments: int = 0  # directives written
    files: int = 0
    skipped: tuple[str, ...] = ()  # FILE:LINE where a comment could not go (continuation, string)


def planned(results: Sequence[LossResult], cwd: Path) -> dict[Path, dict[int, set[str]]]:
    """For every loss with unsuppressed findings: its file, its def line, and the codes to ignore there."""
    plan: dict[Path, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for result in results:
        codes = {f.code for f in result.active_findings}
        if codes:
            plan[(cwd / result.file).resolve()][result.line].update(codes)
    return plan


def _unsafe_lines(text: str) -> set[int]:
    """Lines where a trailing comment would change the code: inside a multi-line string, or continued
    with a backslash."""
    unsafe = {n for n, line in enumerate(_split_lines(text), 1) if line.rstrip().endswith("\\")}
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.STRING and token.end[0] > token.start[0]:
                unsafe.update(range(token.start[0], token.end[0]))
    except (tokenize.TokenError, SyntaxError):
        pass
    return unsafe


def add_to_file(path: Path, lines: dict[int, set[str]]) -> tuple[int, list[int]]:
    """Append a directive to each given line of one file, keeping its encoding and line endings.
    Returns (comments written, lines skipped)."""
    raw = path.read_bytes()
    encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    text = raw.decode(encoding)
    chunks = _LINE_ENDS.findall(text)
    unsafe = _unsafe_lines(text)
    written, skipped = 0, []
    for number, codes in sorted(lines.items()):
        if not 1 <= number <= len(chunks) or number in unsafe:
            skipped.append(number)
            continue
        chunk = chunks[number - 1]
        body = chunk.rstrip("\r\n")
        ending = chunk[len(body):]
        chunks[number - 1] = f"{body.rstrip()}  # lossdiag: ignore[{', '.join(sorted(codes))}]{ending}"
        written += 1
    if written:
        _replace_file(path, "".join(chunks).encode(encoding))
    return written, skipped


def _replace_file(path: Path, data: bytes) -> None:
    """Write next to the file, then rename over it: a crash leaves the old file, never half of one."""
    import os
    import tempfile

    mode = path.stat().st_mode
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_ignores(results: Sequence[LossResult], cwd: Path) -> Added:
    """`--add-ignore`: a `# lossdiag: ignore[CODES]` on the def line of every loss with findings."""
    comments, files, skipped = 0, 0, []
    for path, lines in sorted(planned(results, cwd).items()):
        written, missed = add_to_file(path, lines)
        comments += written
        files += 1 if written else 0
        skipped += [f"{_shown(str(path), cwd)}:{n}" for n in missed]
    return Added(comments, files, tuple(skipped))
