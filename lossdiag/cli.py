"""Command-line wiring: the one place that prints and decides the exit status."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from lossdiag import __version__, settings
from lossdiag import config as config_mod
from lossdiag.rules import RULES, lookup, rule_doc_markdown


class ExitCode(IntEnum):
    OK = 0  # no finding at or above --fail-on
    FINDINGS = 1  # at least one finding at or above --fail-on
    USAGE = 2  # bad arguments or config, a missing target, or an internal error
    INTERRUPTED = 130


class UsageError(click.ClickException):
    exit_code = ExitCode.USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"lossdiag: error: {self.message}", err=True)


EXIT_STATUS = (
    "Exit status: 0 no finding at or above --fail-on (by default errors fail, warnings are shown but "
    "pass); 1 at least one; 2 usage error, missing target or internal error."
)
# `\b` keeps click from re-wrapping a paragraph: the examples must never be split inside a token.
CHECK_EPILOG = f"""\b
Examples:
  lossdiag check losses.py                 a file
  lossdiag check src/ --format concise     a folder, one line per finding
  lossdiag check losses.py::dice_loss      one loss
  lossdiag check src/ --fail-on warning    warnings fail the run too
  lossdiag check src/ --add-ignore         adopt the gate on an existing repo
\b
Pin the input layout of a loss (B is the batch axis):
  --probe {settings.PROBE_EXAMPLE}
  --probe 'losses.py::focal=y_true=B;y_pred=B,10;labels=sparse'

{EXIT_STATUS}
"""


# --- click options from settings.SETTINGS ---------------------------------------------------------


# Recent clicks type ParamType as generic in the value it converts to; older ones (pyproject allows
# click>=8.1) have a plain class, which cannot be subscripted at run time: only the type checker sees it.
if TYPE_CHECKING:
    _ParamType = click.ParamType[Any]
else:
    _ParamType = click.ParamType


class _SettingType(_ParamType):
    """Command-line text through the same validation as the config (settings.Kind.from_text)."""

    def __init__(self, setting: settings.Setting) -> None:
        self.setting = setting
        self.name = setting.metavar or setting.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        assert self.setting.kind is not None
        try:
            return self.setting.kind.from_text(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _help(setting: settings.Setting) -> str:
    """The help text, with the default for options that take a value (a switch is off unless given)."""
    shown = setting.default_text and (not setting.is_switch or setting.secondary)
    return f"{setting.help} [default: {setting.default_text}]" if shown else setting.help


def _click_option(setting: settings.Setting) -> Callable[[Any], Any]:
    if setting.secondary:  # a two-sided switch whose absence means "auto"
        return click.option(f"{setting.flags[0]}/{setting.secondary}", setting.name, default=None, help=_help(setting))
    if setting.is_switch:
        return click.option(
            *setting.flags, setting.name, flag_value=setting.flag_value, default=setting.default, help=_help(setting)
        )
    return click.option(
        *setting.flags, setting.name, type=_SettingType(setting), multiple=setting.multiple,
        metavar=setting.metavar, envvar=setting.envvar, help=_help(setting),
    )


def setting_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for setting in reversed([s for s in settings.SETTINGS if s.flags]):
        func = _click_option(setting)(func)
    return func


# --- resolving settings: defaults < pyproject.toml < command line --------------------------------

SELECTION = ("select", "extend_select", "ignore", "extend_ignore")


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _combine(setting: settings.Setting, value: Any) -> Any:
    """Repeated options: codes concatenate, `--probe` tables merge."""
    if not setting.multiple:
        return value
    if setting.name == "probes":
        return {k: v for item in value for k, v in item.items()}
    return tuple(code for item in value for code in item)


def resolve(ctx: click.Context, given: dict[str, Any], file_config: config_mod.FileConfig) -> dict[str, Any]:
    """Every setting's value: the command line's if given there, else the config's, else the default.
    The selection settings keep both sources apart (`cli:select` …): they are layered, not replaced."""
    values: dict[str, Any] = {"cli_given": frozenset(s.name for s in settings.SETTINGS if s.flags and _given(ctx, s.name))}
    for s in settings.SETTINGS:
        from_cli = s.name in values["cli_given"]
        if s.name in SELECTION:
            values[f"cli:{s.name}"] = _combine(s, given[s.name]) if from_cli else None
            values[s.name] = file_config.values.get(s.name)
        elif from_cli:
            values[s.name] = _combine(s, given[s.name])
        else:
            values[s.name] = file_config.values.get(s.name, s.default)
    return values


def enabled_codes(values: dict[str, Any]) -> frozenset[str]:
    """Ruff's layering: the configuration's selection, then the command line's on top of it."""
    from lossdiag import selection

    layers = []
    for prefix in ("", "cli:"):
        layers.append(selection.Layer(
            select=values[prefix + "select"],
            extend_select=values[prefix + "extend_select"] or (),
            ignore=(*(values[prefix + "ignore"] or ()), *(values[prefix + "extend_ignore"] or ())),
        ))
    return selection.enabled_codes(*layers)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_STATUS)
@click.version_option(__version__, "--version", prog_name="lossdiag", message="%(prog)s %(version)s")
def cli() -> None:
    """Probe Keras losses for batch-axis mistakes: summed, averaged, broadcast or coupled batches."""


@cli.command(epilog=CHECK_EPILOG)
@click.argument("targets", nargs=-1)
@setting_options
@click.pass_context
def check(ctx: click.Context, /, targets: tuple[str, ...], **given: Any) -> None:
    """Check the losses in TARGETS: files, folders, dotted modules or FILE::NAME."""
    cwd = Path.cwd()
    try:
        file_config = config_mod.discover(cwd, _path_or_none(given["config_path"]), targets)
    except config_mod.ConfigError as exc:
        raise UsageError(str(exc)) from None
    values = resolve(ctx, given, file_config)
    targets = _targets(targets, values, file_config, cwd)
    # `output` in the config is relative to the pyproject.toml, like every other path there
    base = cwd if "output" in values["cli_given"] or file_config.root is None else file_config.root
    out_path = _output_path(values["output"], targets, cwd, base)
    options = build_options(values, file_config, cwd)
    report = _run(targets, options, cwd)
    if not values["quiet"]:
        for note in report.notes:  # files a folder walk skipped: said once, whatever the format
            click.echo(f"lossdiag: {note}", err=True)
    if values["add_ignore"]:
        status = _add_ignore(report, cwd)
    else:
        fail_on = "never" if values["exit_zero"] else values["fail_on"]
        _emit(report, values, out_path, fail_on)
        status = exit_status(report, fail_on)
    if values["verbose"]:
        for entry in report.log:
            click.echo(entry, err=True)
    raise SystemExit(status)


def _path_or_none(value: Any) -> Path | None:
    return None if value is None else Path(value)


def _targets(
    targets: tuple[str, ...], values: dict[str, Any], file_config: config_mod.FileConfig, cwd: Path
) -> tuple[str, ...]:
    if targets:
        return targets
    if not values["include"]:
        raise UsageError("no TARGET given and no `include` in [tool.lossdiag]; try `lossdiag check losses.py`")
    root = file_config.root or cwd
    return tuple(os.path.relpath(root / inc, cwd) for inc in values["include"])


PYTHON_SUFFIXES = (".py", ".pyi", ".pyw")


def _output_path(text: str | None, targets: Sequence[str], cwd: Path, base: Path) -> Path | None:
    """`--output` is checked before anything runs: never a folder, never a checked or Python file."""
    if text is None:
        return None
    path = Path(text) if Path(text).is_absolute() else base / text
    if path.is_dir():
        raise UsageError(f"{text}: is a folder; --output needs a file name")
    resolved = path.resolve()
    named = {(cwd / t.partition("::")[0]).resolve() for t in targets}
    if resolved in named or (resolved.suffix in PYTHON_SUFFIXES and resolved.exists()):
        raise UsageError(f"{text}: is a file lossdiag checks or Python source; refusing to write the report over it")
    return path


def _anchor_probe_key(key: str, root: Path) -> str:
    file, sep, name = key.rpartition("::")
    return f"{(root / file).resolve().as_posix()}::{name}" if sep and not Path(file).is_absolute() else key


def _cache_dir(values: dict[str, Any], file_config: config_mod.FileConfig, cwd: Path) -> str:
    """--cache-dir / $LOSSDIAG_CACHE_DIR (relative to the cwd), else `cache-dir` (relative to the config
    file), else `.lossdiag_cache` in the project root (the config file's folder, else the cwd)."""
    root = file_config.root or cwd
    configured = file_config.values.get("cache_dir")
    if "cache_dir" in values["cli_given"]:
        return str((cwd / values["cache_dir"]).resolve())
    if configured is not None:
        return str((root / configured).resolve())
    return str((root / ".lossdiag_cache").resolve())


def build_options(values: dict[str, Any], file_config: config_mod.FileConfig, cwd: Path) -> Any:
    """The engine's one input, from the resolved settings (globs and keys anchored to the config file)."""
    from lossdiag import engine, selection

    root = file_config.root
    probes: dict[str, str] = {}
    sources: dict[str, str] = {}
    for key, spec in (file_config.values.get("probes") or {}).items():
        anchored = _anchor_probe_key(key, root) if root is not None else key
        probes[anchored], sources[anchored] = spec, "config"
    if "probes" in values["cli_given"]:  # --probe wins over the config key by key
        for key, spec in (values["probes"] or {}).items():
            probes[key], sources[key] = spec, "given"
    enabled = enabled_codes(values)
    exclude = (*(values["exclude"] or ()), *(values["extend_exclude"] or ()))
    per_file = values["per_file_ignores"] or ()
    return engine.Options(
        batch_size=values["batch_size"], seed=values["seed"],
        select=tuple(sorted(enabled)), ignore=tuple(sorted(set(RULES) - enabled)),
        probes=probes, probe_sources=sources, timeout=values["timeout"], legacy_keras=values["legacy_keras"],
        max_memory_mb=values["max_memory"], exclude=selection.anchor(exclude, root, cwd), trace=values["trace"],
        full_import=values["full_import"], jobs=values["jobs"], cache=values["cache"],
        cache_dir=_cache_dir(values, file_config, cwd), force_exclude=values["force_exclude"],
        per_file_ignores=selection.anchor_per_file_ignores(per_file, root or cwd),
    )


def _run(targets: Sequence[str], options: Any, cwd: Path) -> Any:
    from lossdiag import engine
    from lossdiag.discover import TargetError

    progress = None
    if sys.stderr.isatty():
        from lossdiag.progress import ProgressDisplay

        progress = ProgressDisplay(cwd, sys.stderr)
        progress.start()
    try:
        return engine.check(list(targets), options, cwd, progress=progress)
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if progress is not None:
            progress.stop()


# --- output ----------------------------------------------------------------------------------------


def _table_width(to_file: bool) -> int | None:
    """A terminal's width (COLUMNS, else the terminal's own); in a pipe or a file, no wrapping at all."""
    if not to_file and sys.stdout.isatty():
        import shutil

        return shutil.get_terminal_size((80, 24)).columns
    return None


def render(report: Any, values: dict[str, Any], fail_on: str, to_file: bool) -> str:
    fmt = values["output_format"]
    if values["statistics"]:
        from lossdiag.report.concise import render_statistics

        return render_statistics(report)
    if fmt == "concise" or (fmt == "table" and values["quiet"]):
        from lossdiag.report import concise

        return concise.render(report)
    if fmt == "table":
        from lossdiag.report import table

        color = (
            not to_file and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        ) or bool(os.environ.get("FORCE_COLOR"))
        return table.render(report, color=color, width=_table_width(to_file), fail_on=fail_on)
    if fmt == "junit":
        from lossdiag.report import junit

        return junit.render(report, fail_on=fail_on)
    render_format: Callable[[Any], str] = importlib.import_module(f"lossdiag.report.{fmt}").render
    return render_format(report)


def _emit(report: Any, values: dict[str, Any], out_path: Path | None, fail_on: str) -> None:
    """The report to stdout or the file; the summary line to stderr wherever stdout is not the table."""
    from lossdiag.report.table import summary_line

    text = render(report, values, fail_on, to_file=out_path is not None)
    if out_path is not None:
        write_atomically(out_path, text, values["output"])
    elif text:
        click.echo(text, nl=False)
    summary_on_stderr = out_path is not None or values["statistics"] or values["output_format"] == "concise"
    if summary_on_stderr and not values["quiet"]:
        click.echo(summary_line(report, fail_on), err=True)


def write_atomically(path: Path, text: str, shown: str | None = None) -> None:
    """Write to a temporary file in the same folder, then rename it over `path` (a reader never sees
    half a report; a failed write leaves the old file)."""
    import tempfile

    shown = shown or str(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # CI writes to reports/lossdiag.sarif
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"{shown}: cannot write the report: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"{shown}: cannot write the report: {exc.strerror or exc}") from None


def _add_ignore(report: Any, cwd: Path) -> int:
    from lossdiag import suppress

    try:
        added = suppress.add_ignores(report.results, cwd)
    except OSError as exc:
        raise UsageError(f"--add-ignore: cannot rewrite {exc.filename}: {exc.strerror or exc}") from None
    files = f"{added.files} file{'s' if added.files != 1 else ''}"
    comment = "comment" if added.comments == 1 else "comments"
    click.echo(f"Added {added.comments} `# lossdiag: ignore` {comment} to {files}.")
    for place in added.skipped:
        click.echo(f"{place}: cannot hold a comment (continued line or inside a string): suppress it by hand", err=True)
    unloadable = [e for e in report.errors if not e.suppressed]
    for e in unloadable:
        click.echo(f"{e.file}:{e.line or 1}: {e.code} cannot be suppressed with a comment: fix the import", err=True)
    return ExitCode.FINDINGS if unloadable or added.skipped else ExitCode.OK


def exit_status(report: Any, fail_on: str) -> int:
    if fail_on == "never":
        return ExitCode.OK
    levels = ("error",) if fail_on == "error" else ("error", "warning")
    failing = [f for _, f in report.active_findings() if getattr(f, "severity", "error") in levels]
    return ExitCode.FINDINGS if failing else ExitCode.OK


_exit_status = exit_status  # the name tests and older callers use


@cli.command("rules")
def rules_command() -> None:
    """List every rule: code, name, severity and what it reports."""
    width = max(len(r.name) for r in RULES.values())
    for rule in RULES.values():
        click.echo(f"{rule.code}  {rule.name:<{width}}  {rule.severity:<7}  {rule.summary}")


@cli.command("rule")
@click.argument("code")
def rule_command(code: str) -> None:
    """Explain one rule: what it does, why it is bad, an example and the fix."""
    rule = lookup(code)
    if rule is None:
        raise UsageError(f"unknown rule {code!r}; `lossdiag rules` lists them")
    click.echo(rule_doc_markdown(rule), nl=False)


@cli.command("schema")
def schema_command() -> None:
    """Print the JSON Schema (2020-12) of `--format json`."""
    from lossdiag.report.json import schema_text

    click.echo(schema_text(), nl=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status (tracebacks only with -v)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="lossdiag", standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else ExitCode.USAGE
    except click.exceptions.Abort as exc:  # click turns KeyboardInterrupt into Abort
        click.echo("Aborted.", err=True)
        return int(getattr(exc.__cause__, "exit_status", ExitCode.INTERRUPTED))
    except KeyboardInterrupt as exc:  # isolation.Interrupted carries 128 + SIGTERM/SIGHUP
        click.echo("Interrupted.", err=True)
        return int(getattr(exc, "exit_status", ExitCode.INTERRUPTED))
    except click.ClickException as exc:
        exc.show()
        return ExitCode.USAGE if exc.exit_code in (1, 2) else exc.exit_code
    except Exception as exc:  # a bug of ours: one line, the traceback only with -v
        if "-v" in args or "--verbose" in args:
            traceback.print_exc()
        click.echo(f"lossdiag: internal error: {type(exc).__name__}: {exc}", err=True)
        return ExitCode.USAGE
    return ExitCode.OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
