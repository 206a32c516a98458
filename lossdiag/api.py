"""The Python API: `check` files and modules, or `check_loss` one object, with the CLI's verdicts and worker isolation."""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lossdiag.measurement import ProbeSpec
from lossdiag.models import Finding, LoadError, Location, LossResult, Report

__all__ = ["OPTION_NAMES", "check", "check_loss", "engine_options", "load_error_result", "options"]

PathLike = str | os.PathLike[str]
ConfigChoice = bool | str | os.PathLike[str]

# engine.Options field -> the settings.SETTINGS entry that defines and validates it
_SETTING_OF = {
    "batch_size": "batch_size", "seed": "seed", "select": "select", "ignore": "ignore", "probes": "probes",
    "timeout": "timeout", "legacy_keras": "legacy_keras", "max_memory_mb": "max_memory", "exclude": "exclude",
    "trace": "trace", "full_import": "full_import", "jobs": "jobs", "cache": "cache", "cache_dir": "cache_dir",
    "per_file_ignores": "per_file_ignores", "force_exclude": "force_exclude",
}  # fmt: skip
# The keyword options `check` and `check_loss` take: every engine.Options field but `probe_sources`
# (probes given here are "given", probes from [tool.lossdiag.probes] are "config", as on the command line).
OPTION_NAMES: tuple[str, ...] = tuple(_SETTING_OF)
_SELECTION = ("select", "extend_select", "ignore", "extend_ignore")


def _as_toml(name: str, value: Any) -> Any:
    """A Python value in the shape the config file gives it (lists, not tuples; text, not paths)."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (tuple, set, frozenset)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    if name == "probes" and isinstance(value, dict):
        return {key: spec.text() if isinstance(spec, ProbeSpec) else spec for key, spec in value.items()}
    if name == "per_file_ignores" and isinstance(value, dict):
        return {glob: _as_toml("codes", codes) for glob, codes in value.items()}
    if name == "legacy_keras" and value is None:
        return "auto"
    return value


def options(**given: Any) -> dict[str, Any]:
    """Validate keyword options (named like `engine.Options` fields) through `settings.SETTINGS`, the one
    definition of every option: the value for each setting it names. Raises TypeError for an unknown
    name and ValueError, naming the option and what it accepts, for a bad value."""
    from lossdiag import settings

    values: dict[str, Any] = {}
    for name, value in given.items():
        if name not in _SETTING_OF:
            close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (options: {', '.join(OPTION_NAMES)})"
            raise TypeError(f"lossdiag: unknown option {name!r}{hint}")
        setting = settings.BY_NAME[_SETTING_OF[name]]
        kind = setting.kind or settings.boolean()
        try:
            values[setting.name] = kind.from_toml(_as_toml(name, value))
        except ValueError as exc:
            key = getattr(exc, "subkey", "")
            shown = f"{name}[{key!r}]={value[key]!r}" if key and isinstance(value, dict) and key in value else f"{name}={value!r}"
            raise ValueError(f"lossdiag: {shown}: {exc}") from None
    return values


def _file_config(cwd: Path, config: ConfigChoice, targets: Sequence[str]) -> Any:
    from lossdiag import config as config_mod

    if config is False:
        return config_mod.FileConfig()
    explicit = None if config is True else Path(os.fspath(config))
    try:
        return config_mod.discover(cwd, explicit, targets)
    except config_mod.ConfigError as exc:
        raise ValueError(f"lossdiag: {exc}") from None


def engine_options(given: dict[str, Any], file_config: Any, cwd: Path) -> Any:
    """engine.Options as the CLI builds them: defaults < [tool.lossdiag] < what the caller passed (which
    plays the command line's part, selection layered as ruff layers it)."""
    from lossdiag import cli, settings

    values: dict[str, Any] = {"cli_given": frozenset(given)}
    for s in settings.SETTINGS:
        if s.name in _SELECTION:
            values[f"cli:{s.name}"] = given.get(s.name)
            values[s.name] = file_config.values.get(s.name)
        else:
            values[s.name] = given[s.name] if s.name in given else file_config.values.get(s.name, s.default)
    return cli.build_options(values, file_config, cwd)


def _targets(targets: PathLike | Sequence[PathLike], file_config: Any, cwd: Path) -> list[str]:
    listed = [targets] if isinstance(targets, (str, os.PathLike)) else list(targets)
    if listed:
        return [os.fspath(t) for t in listed]
    include = file_config.values.get("include")
    if not include:
        raise ValueError("lossdiag: no targets given and no `include` in [tool.lossdiag]")
    root = file_config.root or cwd
    return [os.path.relpath(root / inc, cwd) for inc in include]


def check(
    targets: PathLike | Sequence[PathLike] = (),
    *,
    cwd: PathLike | None = None,
    config: ConfigChoice = True,
    **option_values: Any,
) -> Report:
    """Check every loss and metric the targets name, as `lossdiag check TARGETS` does, and return the Report.

    `targets`: files, folders, dotted modules or `FILE::NAME`, relative to `cwd` (default: the working
    directory); none: the `include` of `[tool.lossdiag]`. `config`: True finds `[tool.lossdiag]` from the
    targets as the CLI does, False ignores it, a path names the file. `option_values` are named like the
    fields of `engine.Options` (`batch_size=8`, `select=["LD1"]`, `probes={"dice": "y_true=B,4;..."}`,
    `timeout=30`, ...; see `OPTION_NAMES`) and win over the config, as command-line flags do.

    Every loss runs in a worker process: a loss that hangs or crashes becomes an LD002 result, never a hang
    or a crash of the caller. Raises TypeError for an unknown option, ValueError for a bad option value, a
    target that does not exist or a bad configuration (the CLI's usage errors, exit status 2).
    """
    from lossdiag import discover, engine

    here = Path(os.fspath(cwd)).resolve() if cwd is not None else Path.cwd().resolve()
    given = options(**option_values)
    named = [targets] if isinstance(targets, (str, os.PathLike)) else list(targets)
    file_config = _file_config(here, config, [os.fspath(t) for t in named])
    resolved = _targets(targets, file_config, here)
    try:
        return engine.check(resolved, engine_options(given, file_config, here), here)
    except discover.TargetError as exc:
        raise ValueError(f"lossdiag: {exc}") from None


def check_loss(
    fn_or_loss: Any,
    probe: ProbeSpec | str | None = None,
    *,
    cwd: PathLike | None = None,
    config: ConfigChoice = True,
    **option_values: Any,
) -> LossResult:
    """Check one loss or metric object and return its result: what `lossdiag check` prints for it.

    `fn_or_loss`: a function, a lambda, a `keras.losses.Loss` instance (or class), a `functools.partial`, a
    `keras.metrics.Metric`. `probe`: the layout to probe it on, a `ProbeSpec` or the `--probe` SPEC text
    (`"y_true=B,2;y_pred=B,2;labels=binary"`); None lets lossdiag infer it. Other arguments as for `check`.

    An object a user module binds at top level is checked through that module, as `FILE::NAME`: the very
    result the CLI gives, with that file's suppressions and configuration. Any other object (defined in a
    test, built there) is sent to the worker in a private temporary module (`lossdiag.transfer`), never in
    your tree; its result points at its own definition. Raises ValueError when the object cannot be sent
    (e.g. it reads a value that cannot be pickled) or for a bad option, TypeError for an unknown one.
    """
    from lossdiag import transfer

    here = Path(os.fspath(cwd)).resolve() if cwd is not None else Path.cwd().resolve()
    spec = _spec_text(probe)
    bound = transfer.module_binding(fn_or_loss)
    if bound is not None:
        file, name = bound
        probes = {f"{file.as_posix()}::{name}": spec} if spec else {}
        report = _check_one(f"{file}::{name}", probes, here, config, option_values)
        return _only_result(report, name)
    with tempfile.TemporaryDirectory(prefix="lossdiag-check-loss-") as folder:
        path, name = transfer.write_module(fn_or_loss, Path(folder))
        # the copy is private and short-lived: import it whole, and keep no cache entry for it in the project
        option_values = {"full_import": True, "cache": False, **option_values}
        report = _check_one(f"{path}::{name}", {name: spec} if spec else {}, here, config, option_values)
        result = _only_result(report, name)
        return _remapped(result, fn_or_loss, path, here, option_values, config)


def _spec_text(probe: ProbeSpec | str | None) -> str | None:
    if probe is None or isinstance(probe, ProbeSpec):
        return None if probe is None else probe.text()
    from lossdiag.probe import parse_spec

    try:
        return parse_spec(probe).text()
    except ValueError as exc:
        raise ValueError(f"lossdiag: probe={probe!r}: {exc}") from None


def _check_one(target: str, probes: dict[str, str], cwd: Path, config: ConfigChoice, option_values: dict[str, Any]) -> Report:
    merged = {**option_values, "probes": {**option_values.get("probes", {}), **probes}}
    return check([target], cwd=cwd, config=config, **merged)


def _only_result(report: Report, name: str) -> LossResult:
    """The one result of a one-loss run; a module that could not be imported becomes an LD001 result."""
    return report.results[0] if report.results else load_error_result(report.errors[0], name)


def load_error_result(error: LoadError, name: str) -> LossResult:
    """A loss whose module could not be imported (LD001), as a result of its own (status "error")."""
    finding = Finding(error.code, "error", error.message, error.file, error.line or 1, suppressed=error.suppressed)
    return LossResult(f"{error.file}::{name}", name, error.file, error.line or 1, "error", findings=(finding,))


def _remapped(
    result: LossResult, obj: Any, path: Path, cwd: Path, option_values: dict[str, Any], config: ConfigChoice
) -> LossResult:
    """A result of the private module, told as the object's own: its name and definition line, findings
    that pointed into the private module moved there, and the suppressions written at its definition."""
    from lossdiag import discover, engine, suppress, transfer

    where = transfer.definition(obj)
    if where is None:
        return result
    file = discover.display_path(Path(where[0]), cwd)
    line = where[1]
    private = discover.display_path(path, cwd)
    name = transfer.display_name(obj)

    def moved(place: Finding | Location) -> Any:
        return replace(place, file=file, line=line) if place.file == private else place

    findings = tuple(
        replace(moved(f), related=tuple(moved(r) for r in f.related))
        for f in result.findings if f.code != "LD003"
    )
    told = replace(result, id=f"{file}::{name}", name=name, file=file, line=line, findings=findings)
    file_config = _file_config(cwd, config, [str(where[0])])
    selector = engine.file_selector(engine_options(options(**option_values), file_config, cwd), cwd)
    return suppress.apply([told], selector, cwd)[0]

