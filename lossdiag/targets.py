"""Turn command-line targets (files, folders, dotted modules, FILE::NAME) into the Python files to check."""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

_SKIP_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "env", ".tox", ".nox", "__pycache__", "node_modules",
              "site-packages", "build", "dist", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".eggs"}
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_KINDS = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
}


class TargetError(Exception):
    """A target that names no file, folder or module (a usage error, exit 2)."""


@dataclass(frozen=True)
class Target:
    """One Python file to check; `names` limits it to the losses named with FILE::NAME."""

    path: Path
    names: frozenset[str] | None = None


@dataclass(frozen=True)
class Resolved:
    """The files to check, and one line for every file a folder walk skipped, saying why."""

    files: tuple[Target, ...]
    notes: tuple[str, ...] = ()


def display_path(path: Path, cwd: Path) -> str:
    """POSIX path relative to the working directory when under it, else absolute."""
    path = path.resolve()
    try:
        return path.relative_to(cwd.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _is_excluded(rel: str, exclude: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(Path(rel).name, pattern) for pattern in exclude)


def unreadable(path: Path) -> str | None:
    """Why `path` cannot be read as a source file (not regular, a dangling link, no permission), or None.

    Opening is non-blocking, so a named pipe can never hang the walk.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a dangling symbolic link" if os.path.islink(path) else "it no longer exists"
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if not stat.S_ISREG(mode):
        return f"{_KINDS.get(stat.S_IFMT(mode), 'a special file')}, not a regular file"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    os.close(fd)
    return None


def _joined(folder: str, name: str) -> str:
    return name if folder in (".", "") else f"{folder}/{name}"


def _walk(folder: Path, cwd: Path, exclude: tuple[str, ...], notes: list[str]) -> list[Path]:
    """Every readable `.py` file under `folder`; symbolic links to folders are not followed (no loops)."""
    found: list[Path] = []
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            notes.append(f"{display_path(current, cwd)}/: skipped, cannot list it ({exc.strerror or exc})")
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in _SKIP_DIRS and not entry.name.startswith("."):
                    stack.append(path)
                continue
            if not entry.name.endswith(".py") or _is_excluded(display_path(path, cwd), exclude):
                continue
            problem = unreadable(path)
            if problem is None:
                found.append(path)
            else:  # named as found: resolving a link would name its target instead
                notes.append(f"{_joined(display_path(path.parent, cwd), entry.name)}: skipped, {problem}")
    return sorted(found)


def _module_file(dotted: str, cwd: Path) -> Path | None:
    """Find a dotted module's file on disk without importing anything (no package code runs)."""
    rel = Path(*dotted.split("."))
    for base in [cwd, *(Path(p) for p in sys.path if p)]:
        for candidate in (base / rel.with_suffix(".py"), base / rel / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _one_file(raw: str, path: Path) -> Path:
    """A file named on the command line: it must be a readable regular file (exit 2 otherwise)."""
    problem = unreadable(path)
    if problem is not None:
        raise TargetError(f"{raw}: {problem}")
    return path


def resolve(targets: list[str], cwd: Path, exclude: tuple[str, ...] = ()) -> Resolved:
    """Files, folders (recursively), dotted modules and FILE::NAME into sorted files and skip notes."""
    by_path: dict[Path, set[str] | None] = {}
    notes: list[str] = []

    def add(path: Path, name: str | None) -> None:
        path = path.resolve()
        if name is None:
            by_path[path] = None
        elif path not in by_path:
            by_path[path] = {name}
        elif (names := by_path[path]) is not None:
            names.add(name)

    for raw in targets:
        spec, _, name = raw.partition("::")
        path = Path(spec) if Path(spec).is_absolute() else cwd / spec
        if path.is_dir() and not name:
            for file in _walk(path, cwd, exclude, notes):
                add(file, None)
        elif os.path.lexists(path) and not path.is_dir():
            add(_one_file(raw, path), name or None)
        elif _DOTTED.fullmatch(spec) and (found := _module_file(spec, cwd)):
            add(found, name or None)
        else:
            raise TargetError(f"{raw}: no such file, folder or module")
    files = tuple(Target(p, None if n is None else frozenset(n)) for p, n in sorted(by_path.items()))
    return Resolved(files, tuple(sorted(set(notes))))


def resolve_targets(targets: list[str], cwd: Path, exclude: tuple[str, ...] = ()) -> list[Target]:
    """The files of `resolve`, without its notes."""
    return list(resolve(targets, cwd, exclude).files)
