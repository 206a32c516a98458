"""Command-line wiring: the one place that prints and decides the exit status."""

from __future__ import annotations

import os
import shutil
import sys
import traceback
from enum import IntEnum
from pathlib import Path
from typing import Any, Sequence

import click

from lossdiag import __version__
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


EPILOG = (
    "Exit status: 0 no finding at or above --fail-on; 1 at least one; "
    "2 usage error, missing target or internal error."
)


def _codes(ctx: click.Context, param: click.Parameter, value: Any) -> tuple[str, ...] | None:
    """`LD1,LD202` or rule names into code prefixes (None when not given)."""
    if not value:
        return None
    out: list[str] = []
    for item in value:
        for part in filter(None, (p.strip() for p in item.replace(",", " ").split())):
            out.append(_code_prefix(part))
    return tuple(out)


def _code_prefix(part: str) -> str:
    try:
        return config_mod.code_prefix(part)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _probe_option(ctx: click.Context, param: click.Parameter, value: Any) -> dict[str, str] | None:
    if not value:
        return None
    from lossdiag.probe import parse_spec

    out: dict[str, str] = {}
    for item in value:
        key, sep, spec = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected NAME=SPEC, e.g. dice='y_true=B,16,16,1;y_pred=B,16,16,1'")
        try:
            parse_spec(spec)
        except ValueError as exc:
            raise click.BadParameter(f"{item!r}: {exc}") from None
        out[key] = spec
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, "--version", prog_name="lossdiag", message="%(prog)s %(version)s")
def cli() -> None:
    """Probe Keras losses for batch-axis mistakes: summed, averaged, broadcast or coupled batches."""


@cli.command(epilog=EPILOG)
@click.argument("targets", nargs=-1)
@click.option("--format", "output_format", type=click.Choice(config_mod.FORMATS), help="Output format [default: table].")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the report to FILE instead of stdout.")
@click.option("--batch-size", type=click.IntRange(min=2), help="Batch size of the probes [default: 32].")
@click.option("--seed", type=click.IntRange(min=0), help="Seed of the synthetic batches [default: 0].")
@click.option("--select", multiple=True, callback=_codes, help="Only these codes or prefixes (LD1, LD201, batch-sum).")
@click.option("--ignore", multiple=True, callback=_codes, help="Skip these codes or prefixes.")
@click.option("--fail-on", type=click.Choice(config_mod.FAIL_ON), help="Lowest severity that fails [default: warning].")
@click.option("--probe", "probes", multiple=True, callback=_probe_option, metavar="NAME=SPEC",
              help="Probe layout for a loss, e.g. dice='y_true=B,16,16,1;y_pred=B,16,16,1;labels=binary'.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds per loss [default: 10].")
@click.option("--legacy-keras", is_flag=True, default=None, help="Run Keras-2 code (import keras.backend as K) on tf_keras.")
@click.option("--max-memory", type=click.IntRange(min=64), help="MiB a loss may use before it is stopped [default: 4096].")
@click.option("--no-trace", "no_trace", is_flag=True, default=False,
              help="Do not trace losses to find the source line (the verdicts stay the same).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Read [tool.lossdiag] from this file instead of the nearest pyproject.toml.")
@click.option("-q", "--quiet", is_flag=True, help="Only the findings: no table, no summary when clean.")
@click.option("-v", "--verbose", is_flag=True, help="Also show what losses printed, and why tracing failed.")
def check(
    targets: tuple[str, ...], config_path: Path | None, no_trace: bool, quiet: bool, verbose: bool, **flags: Any
) -> None:
    """Check the losses in TARGETS: files, folders, dotted modules or FILE::NAME."""
    cwd = Path.cwd()
    try:
        file_config = config_mod.discover(cwd, config_path)
    except config_mod.ConfigError as exc:
        raise UsageError(str(exc)) from None
    settings: dict[str, Any] = {
        "output_format": "table", "output": None, "batch_size": 32, "seed": 0, "select": (), "ignore": (),
        "fail_on": "warning", "probes": {}, "timeout": 10.0, "legacy_keras": False, "max_memory": 4096,
        "include": (), "exclude": (),
    }
    settings.update(file_config.values)  # select/ignore arrive validated as code prefixes
    if file_config.root is not None and settings["probes"]:
        # FILE::NAME keys in [tool.lossdiag.probes] are relative to the pyproject.toml, not to the cwd
        settings["probes"] = {_anchor_probe_key(k, file_config.root): v for k, v in settings["probes"].items()}
    for key, value in flags.items():
        if value is None:
            continue
        if key == "probes":
            value = {**settings["probes"], **value}
        settings[key] = value

    if not targets:
        if not settings["include"]:
            raise UsageError("no TARGET given and no `include` in [tool.lossdiag]; try `lossdiag check losses.py`")
        root = file_config.root or cwd
        targets = tuple(os.path.relpath(root / inc, cwd) for inc in settings["include"])

    from lossdiag import engine
    from lossdiag.discover import TargetError

    options = engine.Options(
        batch_size=settings["batch_size"], seed=settings["seed"], select=tuple(settings["select"]),
        ignore=tuple(settings["ignore"]), probes=settings["probes"], timeout=settings["timeout"],
        legacy_keras=settings["legacy_keras"], max_memory_mb=settings["max_memory"],
        exclude=_anchored(settings["exclude"], file_config.root, cwd), trace=not no_trace,
    )
    try:
        report = engine.check(list(targets), options, cwd)
    except TargetError as exc:
        raise UsageError(str(exc)) from None

    text = _render(report, settings["output_format"], to_file=settings["output"] is not None, quiet=quiet)
    if settings["output"]:
        out_path = Path(settings["output"])
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)  # CI writes to reports/lossdiag.sarif
            out_path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{out_path}: cannot write the report: {exc.strerror or exc}") from None
        if not quiet:
            from lossdiag.report.table import summary_line

            click.echo(summary_line(report), err=True)
    elif text:
        click.echo(text, nl=False)
    if verbose:
        for entry in report.log:
            click.echo(entry, err=True)
    raise SystemExit(_exit_status(report, settings["fail_on"]))


def _anchor_probe_key(key: str, root: Path) -> str:
    file, sep, name = key.rpartition("::")
    return f"{(root / file).resolve().as_posix()}::{name}" if sep and not Path(file).is_absolute() else key


def _anchored(patterns: Sequence[str], root: Path | None, cwd: Path) -> tuple[str, ...]:
    """`exclude` globs are relative to the pyproject.toml's folder; discover matches them against paths
    shown relative to the working directory (absolute outside it), so restate them for a subfolder."""
    if root is None or root.resolve() == cwd.resolve():
        return tuple(patterns)
    out: list[str] = []
    for pattern in patterns:
        if "/" not in pattern:  # a bare name or glob matches file names anywhere
            out.append(pattern)
            continue
        anchored = (root.resolve() / pattern).as_posix()
        out.append(anchored)
        rel = os.path.relpath(anchored, cwd.resolve()).replace(os.sep, "/")
        if not rel.startswith("../"):
            out.append(rel)
    return tuple(out)


def _render(report: Any, fmt: str, to_file: bool, quiet: bool) -> str:
    if fmt == "table":
        from lossdiag.report import table

        if quiet:
            return table.render_findings(report)
        color = (
            not to_file and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        ) or bool(os.environ.get("FORCE_COLOR"))
        width = shutil.get_terminal_size((80, 24)).columns
        return table.render(report, color=color, width=width)
    module = __import__(f"lossdiag.report.{fmt}", fromlist=["render"])
    return module.render(report)


def _exit_status(report: Any, fail_on: str) -> int:
    if fail_on == "never":
        return ExitCode.OK
    levels = ("error",) if fail_on == "error" else ("error", "warning")
    failing = [f for _, f in report.active_findings() if getattr(f, "severity", "error") in levels]
    return ExitCode.FINDINGS if failing else ExitCode.OK


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
