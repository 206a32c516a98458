"""`[tool.lossdiag]` in pyproject.toml: found from the checked files (or the working directory), validated.

Precedence is defaults < pyproject.toml < command line; the CLI does the merge. The keys and what they
accept come from `settings.SETTINGS`. The file used is the nearest `pyproject.toml` with a
`[tool.lossdiag]` table at or above the checked files, as ruff finds its configuration.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossdiag import settings
from lossdiag.selection import code_prefix as code_prefix  # re-exported: kept importable from here

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FORMATS = settings.FORMATS
FAIL_ON = settings.FAIL_ON


class ConfigError(Exception):
    """An invalid configuration file (a usage error: exit 2)."""


@dataclass(frozen=True)
class FileConfig:
    path: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)  # setting name -> validated value

    @property
    def root(self) -> Path | None:
        return None if self.path is None else self.path.parent


def _parse(path: Path) -> dict[str, Any]:
    try:
        # annotated: mypy checks as Python 3.10, where `tomllib` is the tomli backport, absent (Any) on 3.11+
        table: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    return table


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above `start` that has a [tool.lossdiag] table (as ruff does)."""
    start = start.resolve()
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and "lossdiag" in _parse(candidate).get("tool", {}):
            return candidate
    return None


def load(path: Path) -> FileConfig:
    """Read and validate `[tool.lossdiag]` of one file (unknown keys, wrong types and bad numbers are errors)."""
    table = _parse(path).get("tool", {}).get("lossdiag", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.lossdiag] must be a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in settings.BY_KEY:
            known = ", ".join(sorted(settings.BY_KEY))
            raise ConfigError(f"{path}: unknown key {key!r} in [tool.lossdiag] (known keys: {known})")
        try:
            values[settings.BY_KEY[key].name] = settings.from_toml(key, value)
        except ValueError as exc:
            subkey = exc.subkey if isinstance(exc, settings.SettingError) else ""
            where = f"{key}.{subkey}" if subkey else key
            raise ConfigError(f"{path}: [tool.lossdiag] {where}: {exc}") from None
    return FileConfig(path, values)


def _start_folder(target: str, cwd: Path) -> Path:
    """Where to look for the configuration of one TARGET: its folder (a dotted module: the cwd)."""
    spec = target.partition("::")[0]
    path = Path(spec) if Path(spec).is_absolute() else cwd / spec
    if path.is_dir():
        return path
    if path.is_file() or path.parent.is_dir():
        return path.parent
    return cwd


def discover(cwd: Path, explicit: Path | None = None, targets: Sequence[str] = ()) -> FileConfig:
    """The configuration in force: an explicit --config file, else the nearest one to the targets
    (to the working directory when there are none), else none. Targets under two different
    configurations are a usage error: one run has one configuration; targets outside any configured
    project use the working directory's."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"{explicit}: no such file")
        return load(explicit)
    starts = {_start_folder(t, cwd).resolve() for t in targets}
    found = {find_pyproject(start) for start in sorted(starts)}
    configs = sorted(p for p in found if p is not None)
    if not configs:  # targets outside any project fall back to the working directory's (ruff does too)
        configs = [p for p in [find_pyproject(cwd)] if p is not None]
    if len(configs) > 1:
        names = ", ".join(str(p) for p in configs)
        raise ConfigError(
            f"the targets belong to different configurations ({names}): check them in separate runs, "
            "or pass --config FILE"
        )
    return load(configs[0]) if configs else FileConfig()
