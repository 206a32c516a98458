"""Run the pipeline (targets → candidates → measurements → findings) and return a Report."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from lossdiag import discover, rules, suppress, targets as targets_mod
from lossdiag.isolation import ModuleJob, Progress, run_modules
from lossdiag.measurement import LossMeasurement
from lossdiag.models import Finding, LoadError, Location, LossResult, Probe, Report


@dataclass(frozen=True)
class Options:
    """Everything that shapes a check; the CLI builds it from flags over `[tool.lossdiag]`."""

    batch_size: int = 32
    seed: int = 0
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    probes: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    legacy_keras: bool | None = None  # None: decide per module from its source (auto)
    max_memory_mb: int = 4096
    exclude: tuple[str, ...] = ()
    trace: bool = True
    full_import: bool = False  # import training scripts whole instead of their definitions only
    jobs: int = 1  # worker processes
    cache: bool = True
    cache_dir: str | None = None


def is_selected(code: str, select: tuple[str, ...], ignore: tuple[str, ...]) -> bool:
    """flake8's rule: codes match by prefix, the longest matching prefix decides, a tie ignores."""
    selected = max((len(p) for p in select if code.startswith(p)), default=None)
    if select and selected is None:
        return False
    ignored = max((len(p) for p in ignore if code.startswith(p)), default=None)
    return ignored is None or (selected is not None and selected > ignored)


def _probe_overrides(options: Options, cwd: Path) -> tuple[dict[str, str], dict[Path, dict[str, str]]]:
    """`--probe` keys are a loss name (in any file) or FILE::NAME: split them once."""
    by_name: dict[str, str] = {}
    by_file: dict[Path, dict[str, str]] = {}
    for key, spec in options.probes.items():
        file, sep, name = key.rpartition("::")
        if sep:
            by_file.setdefault((cwd / file).resolve(), {})[name] = spec
        else:
            by_name[name] = spec
    return by_name, by_file


def _rel(path: str, cwd: Path) -> str:
    return discover.display_path(Path(path), cwd)


def _result(m: LossMeasurement, display: str, cwd: Path, options: Options) -> LossResult:
    rid = f"{display}::{m.name}"
    def_place = (m.file, m.line)
    if m.skipped:
        return LossResult(rid, m.name, display, m.line, "skipped", note=m.skipped)
    chosen = m.probes[m.chosen] if m.chosen is not None else None
    probe = None
    if chosen is not None:
        t_shape, p_shape = chosen.spec.at(m.batch_size)
        probe = Probe(m.batch_size, t_shape, p_shape, chosen.spec.labels)
    if chosen is None:
        code = "LD002"
        if not is_selected(code, options.select, options.ignore):
            return LossResult(rid, m.name, display, m.line, "skipped", note="not probed: " + rules.not_probed_message(m))
        finding = Finding(
            code, rules.RULES[code].severity, rules.not_probed_message(m), display, m.line,
            hint=rules.not_probed_hint(m),
            suppressed=suppress.is_suppressed(code, [def_place]),
        )
        status = "pass" if finding.suppressed else "error"
        return LossResult(rid, m.name, display, m.line, status, findings=(finding,))
    findings = []
    for code, message, file, line, hint, related in rules.findings_for(m):
        if not is_selected(code, options.select, options.ignore):
            continue
        findings.append(
            Finding(
                code, rules.RULES[code].severity, message, _rel(file, cwd), line, hint,
                tuple(Location(_rel(f, cwd), ln, msg) for f, ln, msg in related),
                suppressed=suppress.is_suppressed(code, [def_place, (file, line)]),
            )
        )
    severities = {f.severity for f in findings if not f.suppressed}
    status = "fail" if "error" in severities else "warn" if "warning" in severities else "pass"
    ratio = None
    if m.expected and m.actual is not None:
        ratio = m.actual / m.expected
    return LossResult(
        rid, m.name, display, m.line, status, probe=probe, output_shape=m.output_shape,
        expected=m.expected, actual=m.actual, ratio=ratio,
        findings=tuple(sorted(findings, key=lambda f: (f.code, f.file, f.line))),
    )


def check(targets: list[str], options: Options, cwd: Path | None = None, progress: Progress | None = None) -> Report:
    """Check every loss the targets name. Raises discover.TargetError for a target that does not exist."""
    cwd = (cwd or Path.cwd()).resolve()
    resolved = targets_mod.resolve(targets, cwd, options.exclude)
    files = list(resolved.files)
    probes_by_name, probes_by_file = _probe_overrides(options, cwd)
    errors: list[LoadError] = []
    without: list[str] = []
    jobs: list[ModuleJob] = []
    for target in files:
        display = discover.display_path(target.path, cwd)
        scan = discover.scan_file(target.path, target.names)
        if scan.syntax_error is not None:
            message, line = scan.syntax_error
            errors.append(LoadError(display, "LD001", message, line))
            continue
        wanted = [c for c in scan.candidates if target.names is None or c.name in target.names]
        if not wanted and target.names is None:
            without.append(display)
            continue
        probes = {**probes_by_name, **probes_by_file.get(target.path.resolve(), {})}
        names = None if target.names is None else sorted(target.names)
        lines = {c.name: c.line for c in scan.candidates}
        jobs.append(ModuleJob(
            target.path, scan.module, scan.sys_path_root, names, probes, lines,
            legacy=bool(options.legacy_keras), scan=scan, switch=options.legacy_keras is None,
        ))

    log: list[str] = []
    results: list[LossResult] = []
    if jobs:
        worker_options = {"batch_size": options.batch_size, "seed": options.seed, "trace": options.trace}
        outcomes = run_modules(
            jobs, worker_options, options.timeout, options.max_memory_mb, log, progress, workers=options.jobs
        )
        for job in jobs:
            outcome = outcomes[job.path]
            display = discover.display_path(job.path, cwd)
            if outcome.load_error is not None:
                message, line = outcome.load_error
                if is_selected("LD001", options.select, options.ignore):
                    errors.append(LoadError(display, "LD001", message, line))
                continue
            for m in outcome.measurements:
                results.append(replace(_result(m, display, cwd, options), keras=outcome.keras))
                if m.trace is not None and m.trace.error:
                    log.append(f"{display}::{m.name}: could not trace it as a graph ({m.trace.error})")
                if m.name in outcome.output:
                    log.append(f"{display}::{m.name} printed:\n{outcome.output[m.name]}")
    results.sort(key=lambda r: (r.file, r.line, r.name))
    errors.sort(key=lambda e: (e.file, e.line or 0))
    return Report(
        results=tuple(results),
        errors=tuple(errors),
        files_checked=len(files),
        files_without_losses=tuple(sorted(without)),
        batch_size=options.batch_size,
        seed=options.seed,
        log=tuple(log),
        notes=resolved.notes,
    )
