"""`[tool.lossdiag]` in pyproject.toml: found by walking up from the working directory, validated.

Precedence is defaults < pyproject.toml < command line; the CLI does the merge. Keys are the
`check` options in kebab-case, plus `include`, `exclude` and the `[tool.lossdiag.probes]` table.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FORMATS = ("table", "json", "github", "sarif", "junit")
FAIL_ON = ("error", "warning", "never")


class ConfigError(Exception):
    """An invalid configuration file (a usage error: exit 2)."""


def _str_list(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} must be a list of strings")
    return tuple(value)


def code_prefix(part: str) -> str:
    """A rule code, code prefix (`LD1`, `ALL`) or rule name (`batch-sum`) as a code prefix (raises ValueError)."""
    from lossdiag.rules import RULES, lookup

    rule = lookup(part)
    if rule is not None:
        return rule.code
    upper = part.strip().upper()
    if upper in ("ALL", "LD"):
        return "LD"
    if upper.startswith("LD") and upper[2:].isdigit() and any(code.startswith(upper) for code in RULES):
        return upper
    raise ValueError(f"{part!r} is not a rule code, prefix or name (see `lossdiag rules`)")


def _codes(key: str, value: Any) -> tuple[str, ...]:
    try:
        return tuple(code_prefix(v) for v in _str_list(key, value))
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _choice(choices: tuple[str, ...]) -> Any:
    def check(key: str, value: Any) -> str:
        if value not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
        return value

    return check


def _int_at_least(minimum: int) -> Any:
    """The same lower bounds as the command line's options (--batch-size >= 2, --max-memory >= 64)."""

    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{key} must be an integer of at least {minimum}, got {value!r}")
        return value

    return check


def _int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key} must be a non-negative integer, got {value!r}")
    return value


def _positive_number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{key} must be a positive number, got {value!r}")
    return float(value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string")
    return value


def _probes(key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f"{key} must be a table of NAME = \"y_true=...;y_pred=...;labels=...\"")
    from lossdiag.probe import parse_spec

    for name, spec in value.items():
        try:
            parse_spec(spec)
        except ValueError as exc:
            raise ConfigError(f"{key}.{name}: {exc}") from None
    return dict(value)


# key in pyproject -> (click parameter name, validator)
KEYS: dict[str, tuple[str, Any]] = {
    "include": ("include", _str_list),
    "exclude": ("exclude", _str_list),
    "format": ("output_format", _choice(FORMATS)),
    "output": ("output", _string),
    "batch-size": ("batch_size", _int_at_least(2)),
    "seed": ("seed", _int),
    "select": ("select", _codes),
    "ignore": ("ignore", _codes),
    "fail-on": ("fail_on", _choice(FAIL_ON)),
    "timeout": ("timeout", _positive_number),
    "legacy-keras": ("legacy_keras", _bool),
    "max-memory": ("max_memory", _int_at_least(64)),
    "probes": ("probes", _probes),
}


@dataclass(frozen=True)
class FileConfig:
    path: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)  # click parameter name -> value

    @property
    def root(self) -> Path | None:
        return None if self.path is None else self.path.parent


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above `start` that has a [tool.lossdiag] table (as ruff does)."""
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{candidate}: cannot parse: {exc}") from None
            if "lossdiag" in data.get("tool", {}):
                return candidate
    return None


def load(path: Path) -> FileConfig:
    """Read and validate `[tool.lossdiag]` of one file (unknown keys and wrong types are errors)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    table = data.get("tool", {}).get("lossdiag", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.lossdiag] must be a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in KEYS:
            known = ", ".join(sorted(KEYS))
            raise ConfigError(f"{path}: unknown key {key!r} in [tool.lossdiag] (known keys: {known})")
        name, validate = KEYS[key]
        try:
            values[name] = validate(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{path}: [tool.lossdiag] {exc}") from None
    return FileConfig(path, values)


def discover(cwd: Path, explicit: Path | None = None) -> FileConfig:
    """The configuration in force: an explicit --config file, else the nearest one, else none."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"{explicit}: no such file")
        return load(explicit)
    found = find_pyproject(cwd)
    return load(found) if found is not None else FileConfig()
