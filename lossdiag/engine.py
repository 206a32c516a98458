"""Run the pipeline (targets → candidates → measurements → findings) and return a Report."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from lossdiag import cache, discover, rules, selection, suppress
from lossdiag import targets as targets_mod
from lossdiag.cache import FileResults
from lossdiag.isolation import ModuleJob, ModuleOutcome, run_modules
from lossdiag.measurement import LossMeasurement
from lossdiag.models import Finding, LoadError, Location, LossResult, Probe, Report
from lossdiag.rules import text

# Called with (module path, None) when a module starts and (module path, loss name) when a loss starts.
ProgressCallback = Callable[[str, "str | None"], None]


@dataclass(frozen=True)
class Options:
    """Everything that shapes a check; the CLI builds it from flags over `[tool.lossdiag]` (settings.py).

    `select`/`ignore` are code prefixes decided as one layer (the longest matching prefix wins, a tie
    ignores, an empty `select` means every rule); the CLI passes the codes its layered selection
    enabled. Globs in `exclude` and `per_file_ignores` are matched against paths as shown (relative to
    `cwd`, else absolute) and file names; per-file-ignores globs with `/` are absolute.
    """

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
    jobs: int = 1  # worker processes; 0 = auto (see resolve_jobs)
    cache: bool = True
    cache_dir: str | None = None  # None: .lossdiag_cache in the project root
    per_file_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (glob, code prefixes)
    force_exclude: bool = False  # apply `exclude` to files named as targets too
    probe_sources: dict[str, str] = field(default_factory=dict)  # probes key -> "given" | "config"


def is_selected(code: str, select: tuple[str, ...], ignore: tuple[str, ...]) -> bool:
    """flake8's and ruff's rule: codes match by prefix, the longest matching prefix decides, a tie ignores."""
    return selection.is_selected(code, select, ignore)


def resolve_jobs(jobs: int, modules: int) -> int:
    """Worker processes for a run: `jobs`, or for auto (0) one per core but no more than modules."""
    if jobs > 0:
        return jobs
    return max(1, min(os.cpu_count() or 1, modules))


def file_selector(options: Options, cwd: Path) -> Callable[[str], Callable[[str], bool]]:
    """For a shown file path: whether a code is reported there (selection, then per-file-ignores)."""

    def for_file(display: str) -> Callable[[str], bool]:
        off = selection.ignored_in_file((cwd / display).resolve(), options.per_file_ignores)

        def selected(code: str) -> bool:
            return is_selected(code, options.select, options.ignore) and not any(code.startswith(p) for p in off)

        return selected

    return for_file


Override = tuple[str, str]  # (SPEC, where it came from: "given" | "config")


def _probe_overrides(options: Options, cwd: Path) -> tuple[dict[str, Override], dict[Path, dict[str, Override]]]:
    """`--probe` keys are a loss name (in any file) or FILE::NAME: split them once."""
    by_name: dict[str, Override] = {}
    by_file: dict[Path, dict[str, Override]] = {}
    for key, spec in options.probes.items():
        source = options.probe_sources.get(key, "given")
        file, sep, name = key.rpartition("::")
        if sep:
            by_file.setdefault((cwd / file).resolve(), {})[name] = (spec, source)
        else:
            by_name[name] = (spec, source)
    return by_name, by_file


def _rel(path: str, cwd: Path) -> str:
    return discover.display_path(Path(path), cwd)


def _probe(m: LossMeasurement) -> Probe | None:
    if m.layout is None:
        return None
    t_shape, p_shape = m.layout.spec.at(m.batch_size)
    source = m.layout.origin if m.layout.origin in ("given", "config") else "inferred"
    return Probe(m.batch_size, t_shape, p_shape, m.layout.spec.labels, source)


def _unprobed(m: LossMeasurement, rid: str, display: str) -> LossResult:
    """A loss that could not be measured: LD004 when lossdiag failed, LD002 when the loss ran on nothing."""
    code = "LD004" if m.internal_error else "LD002"
    message = rules.not_probed.internal_message(m) if m.internal_error else rules.not_probed.message(m)
    hint = rules.not_probed.INTERNAL_HINT if m.internal_error else rules.not_probed.hint(m)
    finding = Finding(code, rules.RULES[code].severity, message, display, m.line, hint=hint)
    return LossResult(rid, m.name, display, m.line, "error", findings=(finding,))


def _finding(d: rules.Detection, m: LossMeasurement, cwd: Path) -> Finding:
    place = rules.locate(d, m)
    message = d.message + (f" {text.sentence(place.extra)}" if place.extra else "")
    return Finding(
        d.code, rules.RULES[d.code].severity, message, _rel(place.file, cwd), place.line,
        (place.hint or d.hint) + rules.pin(m),
        tuple(Location(_rel(f, cwd), ln, msg) for f, ln, msg in place.related),
    )


def _result(m: LossMeasurement, display: str, cwd: Path) -> LossResult:
    """Every finding the measurements show; selection and suppression come after (suppress.apply)."""
    rid = f"{display}::{m.name}"
    if m.skipped:
        return LossResult(rid, m.name, display, m.line, "skipped", note=m.skipped)
    if m.layout is None or m.internal_error:
        return _unprobed(m, rid, display)
    findings = sorted((_finding(d, m, cwd) for d in rules.detect(m)), key=lambda f: (f.code, f.file, f.line))
    severities = {f.severity for f in findings}
    status = "fail" if "error" in severities else "warn" if "warning" in severities else "pass"
    expected, actual, ratio, na_reason = rules.magnitude(m)
    return LossResult(
        rid, m.name, display, m.line, status, probe=_probe(m), output_shape=m.layout.batch_shape,
        expected=expected, actual=actual, ratio=ratio, na_reason=na_reason, findings=tuple(findings),
    )


def _with_role(result: LossResult, m: LossMeasurement) -> LossResult:
    """A metric is marked `kind="metric"`; a stateful one has no output per call (its result is not one)."""
    stateful = m.role == "metric" and m.layout is not None and not m.layout.via_call
    return replace(result, kind=m.role, output_shape=None if stateful else result.output_shape)


@dataclass
class _Plan:
    jobs: list[ModuleJob] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)
    without: list[str] = field(default_factory=list)
    candidates: int = 0
    counts: dict[Path, int] = field(default_factory=dict)  # candidates per module, for the progress display
    log: list[str] = field(default_factory=list)  # for -v: why a module was judged Keras 2


def _plan(files: list[discover.Target], options: Options, cwd: Path) -> _Plan:
    """Scan every file (no import): syntax errors, files without losses, and a job per module to run."""
    plan = _Plan()
    by_name, by_file = _probe_overrides(options, cwd)
    scans = [discover.scan_file(target.path, target.names) for target in files]
    discover.check_probe_keys(options.probes, scans, cwd)
    for target, scan in zip(files, scans, strict=True):  # one scan per target
        overrides = {**by_name, **by_file.get(target.path.resolve(), {})}
        _plan_module(plan, target, scan, overrides, options, cwd)
    return plan


def _plan_module(
    plan: _Plan, target: discover.Target, scan: discover.FileScan, overrides: dict[str, Override], options: Options,
    cwd: Path,
) -> None:
    """Add one scanned file to the plan: its syntax error, that it has no losses, or a job to run."""
    display = discover.display_path(target.path, cwd)
    if scan.syntax_error is not None:
        message, line = scan.syntax_error
        plan.errors.append(LoadError(display, "LD001", message, line))
        return
    wanted = [c for c in scan.candidates if target.names is None or c.name in target.names]
    if not wanted and target.names is None:
        plan.without.append(display)
        return
    names = None if target.names is None else sorted(target.names)
    lines = {c.name: c.line for c in scan.candidates}
    # the worker gets each pinned layout with where it came from (given or config): JSON probe.source
    probes = {name: [spec, source] for name, (spec, source) in overrides.items()}
    legacy = options.legacy_keras if options.legacy_keras is not None else scan.keras2 is not None
    if options.legacy_keras is None and scan.keras2 is not None:
        plan.log.append(f"{display}: judged Keras 2 ({scan.keras2.reason}): run on tf_keras")
    plan.jobs.append(ModuleJob(
        target.path, scan.module, scan.sys_path_root, names, probes, lines,
        legacy=legacy, scan=scan, switch=options.legacy_keras is None,
    ))
    plan.counts[target.path] = len(names) if names is not None else len(wanted)
    plan.candidates += plan.counts[target.path]


def _run(
    plan: _Plan, options: Options, cwd: Path, progress: ProgressCallback | None, log: list[str]
) -> dict[Path, FileResults]:
    """Run the planned modules in the worker: each module's results, load error and -v lines; lines
    about the run as a whole (not about one module) go to `log`."""
    if not plan.jobs:
        return {}
    worker_options = {
        "batch_size": options.batch_size, "seed": options.seed, "trace": options.trace,
        "full_import": options.full_import,
    }
    announce = getattr(progress, "plan", None)
    if callable(announce):
        announce(len(plan.jobs), plan.candidates)
    run_log: list[str] = []
    workers = resolve_jobs(options.jobs, len(plan.jobs))
    outcomes = run_modules(
        plan.jobs, worker_options, options.timeout, options.max_memory_mb, run_log, progress, workers=workers
    )
    fresh = {job.path: _file_results(job, outcomes[job.path], cwd, run_log) for job in plan.jobs}
    log.extend(line for line in run_log if not any(_is_about(line, job.path) for job in plan.jobs))
    return fresh


def _is_about(line: str, path: Path) -> bool:
    """The worker's -v lines about a module start with its path."""
    return line.startswith((f"{path}:", f"{path} "))


def _file_results(job: ModuleJob, outcome: ModuleOutcome, cwd: Path, run_log: list[str]) -> FileResults:
    """One module's raw results (before selection and suppression) and what -v says about it."""
    display = discover.display_path(job.path, cwd)
    lines = [*outcome.notes, *(line for line in run_log if _is_about(line, job.path))]
    if outcome.load_error is not None:
        message, line_no = outcome.load_error
        return FileResults((), LoadError(display, "LD001", message, line_no), tuple(lines), _reproducible(outcome))
    results = []
    # the model outputs a compile(loss={...}) call uses each loss for, as the parent's scan found them
    outputs = {c.name: c.outputs for c in job.scan.candidates} if job.scan is not None else {}
    for m in outcome.measurements:
        result = _with_role(_result(m, display, cwd), m)
        results.append(replace(result, keras=outcome.keras, outputs=tuple(outputs.get(m.name, ()))))
        lines += _measurement_log(m, display, outcome)
    return FileResults(tuple(results), None, tuple(lines), _reproducible(outcome))


def _measurement_log(m: LossMeasurement, display: str, outcome: ModuleOutcome) -> list[str]:
    """What -v says about one loss: why its trace failed, what it printed, lossdiag's own traceback."""
    lines = []
    if m.trace is not None and m.trace.error:
        lines.append(f"{display}::{m.name}: could not trace it as a graph ({m.trace.error})")
    if m.name in outcome.output:
        lines.append(f"{display}::{m.name} printed:\n{outcome.output[m.name]}")
    if m.internal_error:
        lines.append(f"{display}::{m.name}: lossdiag failed (LD004):\n{m.internal_error.rstrip()}")
    return lines


def _reproducible(outcome: ModuleOutcome) -> bool:
    """Whether the same inputs would give the same outcome: not when the worker timed out, crashed or
    ran out of memory (isolation reports those as a failed import or a loss that failed "while
    probing"), nor when lossdiag itself failed (LD004). Such modules are not cached."""
    if outcome.load_error is not None and outcome.load_error[0].startswith("importing it failed:"):
        return False
    return not any(m.internal_error or (m.error or "").endswith(" while probing") for m in outcome.measurements)


# --- the result cache (cache.py): hits are taken out of the plan before the worker runs, misses stored after


def _take_cached(
    plan: _Plan, store: cache.Store | None, options: Options
) -> tuple[dict[Path, FileResults], dict[Path, str]]:
    """Take the modules the cache has out of `plan.jobs`: their stored results, and the key under
    which each remaining module's results are to be stored."""
    hits: dict[Path, FileResults] = {}
    keys: dict[Path, str] = {}
    if store is None:
        return hits, keys
    misses = []
    for job in plan.jobs:
        key = store.key(job, options)
        entry = None if key is None else store.load(key)
        if entry is not None:
            hits[job.path] = entry
            plan.candidates -= plan.counts.get(job.path, 0)
            continue
        misses.append(job)
        if key is not None:
            keys[job.path] = key
    plan.jobs = misses
    return hits, keys


def _store_fresh(
    store: cache.Store | None, keys: dict[Path, str], fresh: dict[Path, FileResults], jobs: list[ModuleJob],
    options: Options,
) -> None:
    """Store what the worker found, under the key computed before the run, unless a file changed
    while it ran (its key now differs: the results may be of either version)."""
    if store is None:
        return
    store.forget_files()
    for job in jobs:
        key = keys.get(job.path)
        if key is not None and job.path in fresh and store.key(job, options) == key:
            store.save(key, fresh[job.path])


def _gather(by_file: dict[Path, FileResults]) -> tuple[list[LossResult], list[LoadError], list[str]]:
    """Every module's results, load errors and -v lines, module by module in path order."""
    results: list[LossResult] = []
    errors: list[LoadError] = []
    log: list[str] = []
    for path in sorted(by_file):
        entry = by_file[path]
        results += entry.results
        errors += [entry.load_error] if entry.load_error is not None else []
        log += entry.log
    return results, errors, log


def _cache_log(store: cache.Store | None, hits: int, modules: int) -> list[str]:
    if store is None:
        return []
    lines = [f"lossdiag: {hits} of {modules} modules from the cache in {store.folder}"] if modules else []
    return lines + ([f"lossdiag: {store.problem}"] if store.problem else [])


def check(
    targets: list[str], options: Options, cwd: Path | None = None, progress: ProgressCallback | None = None
) -> Report:
    """Check every loss the targets name. Raises discover.TargetError for a target that does not exist.

    `progress`, if given, is called with (module path, None) when a module starts and (module path,
    loss name) when a loss starts; if it has a `plan(modules, candidates)` method, that is called once
    before the first module.
    """
    cwd = (cwd or Path.cwd()).resolve()
    resolved = targets_mod.resolve(targets, cwd, options.exclude)
    files = list(resolved.files)
    if options.force_exclude:  # files named on the command line obey `exclude` too (pre-commit names files)
        files = [t for t in files if not selection.path_matches(discover.display_path(t.path, cwd), options.exclude)]
    plan = _plan(files, options, cwd)
    modules = len(plan.jobs)
    store = cache.open_store(options, cwd)
    hits, keys = _take_cached(plan, store, options)
    log: list[str] = list(plan.log)
    fresh = _run(plan, options, cwd, progress, log)
    _store_fresh(store, keys, fresh, plan.jobs, options)
    raw, load_errors, module_log = _gather({**hits, **fresh})
    log += _cache_log(store, len(hits), modules) + module_log
    selector = file_selector(options, cwd)
    errors = [e for e in plan.errors + load_errors if selector(e.file)(e.code)]
    results = list(suppress.apply(raw, selector, cwd))
    results.sort(key=lambda r: (r.file, r.line, r.name))
    errors.sort(key=lambda e: (e.file, e.line or 0))
    return Report(
        results=tuple(results),
        errors=tuple(errors),
        files_checked=len(files),
        files_without_losses=tuple(sorted(plan.without)),
        batch_size=options.batch_size,
        seed=options.seed,
        cached=sum(len(entry.results) for entry in hits.values()),
        log=tuple(log),
        notes=resolved.notes,
    )
