"""Every option of `lossdiag check`, defined once: its flag, its `[tool.lossdiag]` key, type, bounds, default and help.

The click options, the config loader and the README's options table are all generated from `SETTINGS`,
so a new option is one entry here. Values from the command line (text) and from the config (TOML
values) go through the same validation, so `--timeout nan` and `timeout = nan` fail the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FORMATS = ("table", "concise", "json", "github", "sarif", "junit")
FAIL_ON = ("error", "warning", "never")
BATCH_SIZE_RANGE = (2, 1024)  # above 1024 one call per sample makes a probe take minutes, not seconds
SEED_RANGE = (0, 2**32 - 1)  # numpy's seed range
TIMEOUT_RANGE = (0.0, 3600.0)  # seconds per loss: (0, 1 h]
MAX_MEMORY_RANGE = (64, 1024 * 1024)  # MiB: 64 MiB .. 1 TiB
JOBS_RANGE = (1, 256)
CACHE_DIR_ENV = "LOSSDIAG_CACHE_DIR"


class SettingError(ValueError):
    """A value that an option does not accept; the message says what it accepts. `subkey` names the
    entry of a table setting at fault (`probes.dice`)."""

    def __init__(self, message: str, subkey: str = "") -> None:
        super().__init__(message)
        self.subkey = subkey


@dataclass(frozen=True)
class Kind:
    """How a setting's values are read: `from_text` for the command line, `from_toml` for the config."""

    describe: str  # what it accepts, for the README
    from_text: Callable[[str], Any]
    from_toml: Callable[[Any], Any]


@dataclass(frozen=True)
class Setting:
    name: str  # the click parameter name and engine-facing name
    flags: tuple[str, ...]  # click declarations; () for a config-only setting
    key: str | None  # [tool.lossdiag] key; None for a command-line-only setting
    kind: Kind | None  # None for a flag (a switch without a value)
    default: Any
    help: str
    default_text: str = ""  # how the default reads in --help and the README ("" = no default shown)
    metavar: str | None = None
    multiple: bool = False
    flag_value: Any = None  # for switches: the value the flag sets
    secondary: str = ""  # `--no-legacy-keras` for a two-sided switch
    envvar: str | None = None

    @property
    def is_switch(self) -> bool:
        """A flag without a value on the command line (`--no-cache`, `--legacy-keras/--no-legacy-keras`)."""
        return self.flag_value is not None


# --- value kinds -------------------------------------------------------------------------------


def _reject_bool(value: Any) -> None:
    if isinstance(value, bool):
        raise SettingError(f"expected a number, got {str(value).lower()}")


def integer(low: int, high: int) -> Kind:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise SettingError(f"{value} is not in the range {low}..{high}")
        return value

    def from_text(text: str) -> int:
        try:
            return check(int(text.strip()))
        except ValueError as exc:
            if isinstance(exc, SettingError):
                raise
            raise SettingError(f"{text!r} is not an integer") from None

    def from_toml(value: Any) -> int:
        _reject_bool(value)
        if not isinstance(value, int):
            raise SettingError(f"expected an integer from {low} to {high}, got {value!r}")
        return check(value)

    return Kind(f"integer, {low}..{high}", from_text, from_toml)


def seconds(low: float, high: float) -> Kind:
    """A finite number in (low, high]: nan, inf and negatives are rejected, whatever their spelling."""

    def check(value: float) -> float:
        if not math.isfinite(value):
            raise SettingError(f"{value} is not a finite number")
        if not low < value <= high:
            raise SettingError(f"{value:g} is not in the range ({low:g}, {high:g}]")
        return float(value)

    def from_text(text: str) -> float:
        try:
            number = float(text.strip())
        except ValueError:
            raise SettingError(f"{text!r} is not a number") from None
        return check(number)

    def from_toml(value: Any) -> float:
        _reject_bool(value)
        if not isinstance(value, (int, float)):
            raise SettingError(f"expected a number of seconds, got {value!r}")
        return check(float(value))

    return Kind(f"number of seconds, > {low:g} and ≤ {high:g}", from_text, from_toml)


def choice(*values: str) -> Kind:
    def check(value: Any) -> str:
        if value not in values:
            raise SettingError(f"expected one of {', '.join(values)}, got {value!r}")
        return str(value)

    return Kind(" \\| ".join(f"`{v}`" for v in values), check, check)


def boolean() -> Kind:
    def from_toml(value: Any) -> bool:
        if not isinstance(value, bool):
            raise SettingError(f"expected true or false, got {value!r}")
        return value

    def from_text(text: str) -> bool:
        raise SettingError("takes no value")  # pragma: no cover - switches never parse text

    return Kind("`true` \\| `false`", from_text, from_toml)


def auto_bool() -> Kind:
    """`"auto"` (None: decide per module), true or false."""

    def from_toml(value: Any) -> bool | None:
        if value == "auto":
            return None
        if not isinstance(value, bool):
            raise SettingError(f'expected "auto", true or false, got {value!r}')
        return value

    return Kind('`"auto"` \\| `true` \\| `false`', from_toml, from_toml)


def string_list() -> Kind:
    def from_toml(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise SettingError("expected a list of strings")
        return tuple(value)

    return Kind("list of strings", lambda text: from_toml(text), from_toml)


def codes() -> Kind:
    """Rule codes, prefixes (`LD1`, `ALL`) or names (`batch-sum`), as code prefixes."""

    def parse(parts: list[str]) -> tuple[str, ...]:
        from lossdiag.selection import code_prefix

        return tuple(code_prefix(p) for p in parts)

    def from_text(text: str) -> tuple[str, ...]:
        return parse([p for p in text.replace(",", " ").split() if p])

    def from_toml(value: Any) -> tuple[str, ...]:
        return parse(list(string_list().from_toml(value)))

    return Kind("codes, prefixes or rule names", from_text, from_toml)


def path() -> Kind:
    def from_toml(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise SettingError("expected a non-empty path")
        return value

    return Kind("path", from_toml, from_toml)


def jobs() -> Kind:
    """A number of worker processes, or `auto` (0 here; the engine resolves it from cores and modules)."""
    count = integer(*JOBS_RANGE)

    def from_text(text: str) -> int:
        return 0 if text.strip().lower() == "auto" else count.from_text(text)

    def from_toml(value: Any) -> int:
        return 0 if value == "auto" else count.from_toml(value)

    return Kind(f'integer {JOBS_RANGE[0]}..{JOBS_RANGE[1]} or `"auto"`', from_text, from_toml)


def probe_specs() -> Kind:
    """`NAME=SPEC` on the command line (repeatable); a `[tool.lossdiag.probes]` table in the config."""

    def check(key: str, spec: str) -> None:
        from lossdiag.probe import parse_spec

        try:
            parse_spec(spec)
        except ValueError as exc:
            raise SettingError(str(exc), subkey=key) from None

    def from_text(text: str) -> dict[str, str]:
        key, sep, spec = text.partition("=")
        if not sep or not key:
            raise SettingError(f"{text!r}: expected NAME=SPEC (see the examples below)")
        try:
            check(key, spec)
        except SettingError as exc:
            raise SettingError(f"{text!r}: {exc}") from None
        return {key: spec}

    def from_toml(value: Any) -> dict[str, str]:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise SettingError('expected a table of NAME = "y_true=...;y_pred=...;labels=..."')
        for key, spec in value.items():
            check(key, spec)
        return dict(value)

    return Kind("table NAME = SPEC", from_text, from_toml)


def globs_to_codes() -> Kind:
    """`per-file-ignores`: a table of glob -> codes."""

    def from_toml(value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
        if not isinstance(value, dict):
            raise SettingError('expected a table of "GLOB" = ["CODE", ...]')
        out = []
        for glob, listed in value.items():
            try:
                out.append((glob, codes().from_toml(listed)))
            except ValueError as exc:
                raise SettingError(str(exc), subkey=glob) from None
        return tuple(out)

    return Kind('table "GLOB" = [CODES]', from_toml, from_toml)


# --- the settings ------------------------------------------------------------------------------

PROBE_EXAMPLE = "dice='y_true=B,16,16,1;y_pred=B,16,16,1;labels=binary'"

SETTINGS: tuple[Setting, ...] = (
    Setting("output_format", ("--format",), "format", choice(*FORMATS), "table",
            "Output format: table, concise, json, github, sarif or junit.", "table", metavar="FORMAT"),
    Setting("output", ("--output", "-o"), "output", path(), None,
            "Write the report to FILE instead of stdout (atomically; never over a checked file).",
            "stdout", metavar="FILE"),
    Setting("batch_size", ("--batch-size",), "batch-size", integer(*BATCH_SIZE_RANGE), 32,
            "Batch size of the probes.", "32", metavar="N"),
    Setting("seed", ("--seed",), "seed", integer(*SEED_RANGE), 0,
            "Seed of the synthetic batches.", "0", metavar="N"),
    Setting("select", ("--select",), "select", codes(), None,
            "Only these codes or prefixes (LD1, LD201, batch-sum); replaces the configured selection.",
            "all", metavar="CODES", multiple=True),
    Setting("extend_select", ("--extend-select",), "extend-select", codes(), None,
            "Add these codes or prefixes to the selection.", "", metavar="CODES", multiple=True),
    Setting("ignore", ("--ignore",), "ignore", codes(), None,
            "Skip these codes or prefixes (added to the configured ignores).", "", metavar="CODES", multiple=True),
    Setting("extend_ignore", ("--extend-ignore",), "extend-ignore", codes(), None,
            "Same as --ignore.", "", metavar="CODES", multiple=True),
    Setting("per_file_ignores", (), "per-file-ignores", globs_to_codes(), None,
            'Codes to skip in files matching a glob: {"legacy/*.py" = ["LD105"]}.', ""),
    Setting("include", (), "include", string_list(), None,
            "What `lossdiag check` checks when no TARGET is given (relative to the pyproject.toml).", ""),
    Setting("exclude", (), "exclude", string_list(), None,
            "Globs of files and folders a folder walk skips (relative to the pyproject.toml).", ""),
    Setting("extend_exclude", (), "extend-exclude", string_list(), None,
            "More globs to exclude, added to `exclude`.", ""),
    Setting("force_exclude", ("--force-exclude",), "force-exclude", boolean(), False,
            "Apply exclude to files named on the command line too (what pre-commit needs).", "off",
            flag_value=True),
    Setting("fail_on", ("--fail-on",), "fail-on", choice(*FAIL_ON), "error",
            "Lowest severity that makes the exit status 1: error (warnings are shown but pass), "
            "warning, or never.", "error", metavar="LEVEL"),
    Setting("exit_zero", ("--exit-zero",), None, None, False,
            "Exit 0 even with findings (same as --fail-on never); 2 still means a usage or internal error.",
            "off", flag_value=True),
    Setting("probes", ("--probe",), "probes", probe_specs(), None,
            "Input layout of a loss, NAME=SPEC or FILE::NAME=SPEC; repeatable (examples below).",
            "inferred", metavar="NAME=SPEC", multiple=True),
    Setting("timeout", ("--timeout",), "timeout", seconds(*TIMEOUT_RANGE), 10.0,
            "Seconds one call of a loss may take (LD002 past it), and a module's import (LD001).", "10", metavar="SECONDS"),
    Setting("max_memory", ("--max-memory",), "max-memory", integer(*MAX_MEMORY_RANGE), 4096,
            "MiB a loss may add to the worker before it is stopped (LD002).", "4096", metavar="MIB"),
    Setting("legacy_keras", ("--legacy-keras",), "legacy-keras", auto_bool(), None,
            "Run every module on tf_keras (Keras 2), or none with --no-legacy-keras; "
            "by default each module is detected from its source.", "auto",
            flag_value=True, secondary="--no-legacy-keras"),
    Setting("full_import", ("--full-import",), "full-import", boolean(), False,
            "Import training scripts whole instead of only their definitions.", "off", flag_value=True),
    Setting("jobs", ("--jobs", "-j"), "jobs", jobs(), 1,
            "Worker processes (each imports TensorFlow once); auto: one per core, at most one per module.",
            "1", metavar="N|auto"),
    Setting("cache", ("--no-cache",), "cache", boolean(), True,
            "Neither read nor write the result cache.", "on", flag_value=False),
    Setting("cache_dir", ("--cache-dir",), "cache-dir", path(), None,
            f"Where the cache lives (also ${CACHE_DIR_ENV}).", ".lossdiag_cache", metavar="DIR",
            envvar=CACHE_DIR_ENV),
    Setting("trace", ("--no-trace",), "trace", boolean(), True,
            "Do not trace losses to find the source line (the verdicts stay the same).", "on", flag_value=False),
    Setting("statistics", ("--statistics",), None, None, False,
            "Print one line per code (count, code, rule name) instead of the report.", "off", flag_value=True),
    Setting("add_ignore", ("--add-ignore",), None, None, False,
            "Append `# lossdiag: ignore[CODES]` to the def line of every loss with findings.", "off",
            flag_value=True),
    Setting("config_path", ("--config",), None, path(), None,
            "Read [tool.lossdiag] from this file instead of the nearest pyproject.toml.", "nearest",
            metavar="FILE"),
    Setting("quiet", ("-q", "--quiet"), None, None, False,
            "Only the findings, one line each (the concise format without the summary).", "off", flag_value=True),
    Setting("verbose", ("-v", "--verbose"), None, None, False,
            "Also show what losses printed, and why tracing failed.", "off", flag_value=True),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS if s.key is not None}


def from_toml(key: str, value: Any) -> Any:
    """Validate one `[tool.lossdiag]` value (raises SettingError naming what the key accepts)."""
    setting = BY_KEY[key]
    kind = setting.kind or boolean()
    return kind.from_toml(value)


def merge_text(setting: Setting, texts: tuple[str, ...] | str | None) -> Any:
    """Command-line text into a value: repeatable options are combined (codes join, probes merge)."""
    assert setting.kind is not None
    if not setting.multiple:
        return setting.kind.from_text(texts)  # type: ignore[arg-type]
    parsed = [setting.kind.from_text(t) for t in texts or ()]
    if setting.name == "probes":
        return {k: v for item in parsed for k, v in item.items()}
    return tuple(code for item in parsed for code in item)


# --- the README table ---------------------------------------------------------------------------


def _option_cell(setting: Setting) -> str:
    if not setting.flags:
        return "—"
    long_flags = [f for f in setting.flags if f.startswith("--")] or list(setting.flags)
    text = " / ".join(f"`{f}`" if setting.is_switch else f"`{f} {setting.metavar}`" for f in long_flags[:1])
    shorts = [f for f in setting.flags if not f.startswith("--")]
    if shorts:
        text += " (" + ", ".join(f"`{s}`" for s in shorts) + ")"
    if setting.secondary:
        text += f" / `{setting.secondary}`"
    return text.replace("|", "\\|")  # GitHub tables need `|` escaped, in code spans too


def _key_cell(setting: Setting) -> str:
    if setting.key is None:
        return "—"
    return f"`{setting.key}` ({setting.kind.describe if setting.kind else 'bool'})"


def markdown_table() -> str:
    """The options table of the README (a test keeps the README equal to this)."""
    lines = ["| option | `[tool.lossdiag]` key | default | what it does |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = f"`{s.default_text}`" if s.default_text else ""
        lines.append(f"| {_option_cell(s)} | {_key_cell(s)} | {default} | {s.help.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"
