"""pytest --lossdiag: one test item per loss and metric (`FILE::NAME`), all checked in one lossdiag run per session.

Registered through the `pytest11` entry point; it does nothing unless `--lossdiag` is given. The Python
files pytest is given (or walks) are scanned with `ast` (nothing is imported into pytest's process); when
pytest gets no paths and `[tool.lossdiag]` has `include`, those paths are collected instead. The first
item to run checks every selected item (after `-k`, `-m`, `--deselect`) in one `lossdiag.check` run, so
TensorFlow is imported once, in the worker. An item fails when its loss has a finding at or above
`fail-on` (the finding, its line and its fix are the failure text), is skipped when its findings are all
suppressed (or lossdiag skipped it), and passes otherwise; findings below `fail-on` become warnings.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

MARKER = "lossdiag"
MODULE_ITEM = "<module>"  # the item of a file that cannot be read as Python at all


class LossdiagFailure(Exception):
    """A loss or metric with findings at or above `fail-on`; its text is the failure report."""


class LossdiagWarning(pytest.PytestWarning):
    """Findings below `fail-on`: shown in pytest's warnings summary, never a failure."""


@dataclass
class _Session:
    """The plugin's state for one pytest session: where items come from, and the one lossdiag run."""

    cwd: Path
    file_config: Any
    roots: tuple[Path, ...] | None  # the configured `include`, when pytest was given no paths
    report: Any = None
    failure: str | None = None  # why the run itself could not happen (a usage error, no TensorFlow)
    results: dict[tuple[Path, str], Any] = field(default_factory=dict)
    errors: dict[Path, Any] = field(default_factory=dict)

    @property
    def fail_on(self) -> str:
        return str(self.file_config.values.get("fail_on", "error"))

    def wants(self, path: Path) -> bool:
        """A file under the configured `include` (when it applies) and not matched by `exclude`."""
        if self.roots is not None and not any(path == r or r in path.parents for r in self.roots):
            return False
        from lossdiag import discover, selection

        values = self.file_config.values
        globs = (*(values.get("exclude") or ()), *(values.get("extend_exclude") or ()))
        patterns = selection.anchor(globs, self.file_config.root, self.cwd)
        return not selection.path_matches(discover.display_path(path, self.cwd), patterns)

    def run(self, items: list[LossdiagItem]) -> None:
        """Check every selected item in one run (FILE::NAME targets; a whole file for its module item)."""
        from lossdiag import api, engine
        from lossdiag.discover import TargetError
        from lossdiag.isolation import StartupError
        from lossdiag.models import Report

        targets = sorted({str(i.path) if i.name == MODULE_ITEM else f"{i.path}::{i.name}" for i in items})
        options = api.engine_options({}, self.file_config, self.cwd)
        try:
            self.report = engine.check(targets, options, self.cwd)
        except (TargetError, StartupError) as exc:
            self.report, self.failure = Report(), f"lossdiag could not run: {exc}"
        for result in self.report.results:
            self.results[((self.cwd / result.file).resolve(), result.name)] = result
        for error in self.report.errors:
            self.errors[(self.cwd / error.file).resolve()] = error


_STATE = pytest.StashKey[_Session]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lossdiag")
    group.addoption(
        "--lossdiag", action="store_true", default=False,
        help="check the Keras losses and metrics in the collected Python files with lossdiag (one item per loss)",
    )  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: a lossdiag check of one loss or metric (pytest --lossdiag)")
    if not config.getoption("lossdiag"):
        return
    from lossdiag import config as config_mod

    cwd = config.invocation_params.dir.resolve()
    given = config.args_source == pytest.Config.ArgsSource.ARGS
    try:
        file_config = config_mod.discover(cwd, None, config.args if given else ())
    except config_mod.ConfigError as exc:
        raise pytest.UsageError(f"lossdiag: {exc}") from None
    roots = None
    include = file_config.values.get("include")
    if include and not given:
        base = file_config.root or cwd
        roots = tuple((base / entry).resolve() for entry in include)
        for root in roots:  # walk them too, unless pytest already walks a folder that holds them
            if not any(root == Path(a).resolve() or Path(a).resolve() in root.parents for a in config.args):
                config.args.append(str(root))
    config.stash[_STATE] = _Session(cwd, file_config, roots)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> LossdiagFile | None:
    state = parent.config.stash.get(_STATE, None)
    if state is None or file_path.suffix != ".py" or not state.wants(file_path.resolve()):
        return None
    return LossdiagFile.from_parent(parent, path=file_path)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """With --lossdiag, a file pytest is given that is not a test file (`python_files`) is a loss module:
    it is checked in the worker, not imported into pytest's own process to look for tests."""
    if parent.config.stash.get(_STATE, None) is None:
        return None
    patterns = parent.config.getini("python_files")
    if any(fnmatch.fnmatch(module_path.name if "/" not in p else str(module_path), p) for p in patterns):
        return None
    return _NotATestModule.from_parent(parent, path=module_path)


class _NotATestModule(pytest.File):
    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        return iter(())


class LossdiagFile(pytest.File):
    """A Python file read with `ast` (never imported here): one item per loss or metric it defines or uses."""

    def collect(self) -> Iterator[LossdiagItem]:
        from lossdiag import discover

        scan = discover.scan_file(self.path.resolve())
        if scan.syntax_error is not None:
            yield LossdiagItem.from_parent(self, name=MODULE_ITEM, line=scan.syntax_error[1] or 1)
            return
        for candidate in scan.candidates:
            yield LossdiagItem.from_parent(self, name=candidate.name, line=candidate.line)


class LossdiagItem(pytest.Item):
    """One loss or metric: fails at or above `fail-on` with the findings as the failure text."""

    def __init__(self, *, line: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.line = line
        self.add_marker(MARKER)

    def runtest(self) -> None:
        state = self.config.stash[_STATE]
        if state.report is None:
            state.run([i for i in self.session.items if isinstance(i, LossdiagItem)])
        if state.failure is not None:
            raise LossdiagFailure(state.failure)
        path = self.path.resolve()
        result = state.results.get((path, self.name))
        error = state.errors.get(path)
        if result is None and error is not None:
            from lossdiag.api import load_error_result

            result = load_error_result(error, self.name)
        if result is None:
            pytest.skip("not a loss or metric lossdiag could build")
        self.user_properties += [("lossdiag_status", result.status), ("lossdiag_kind", result.kind)]
        self.user_properties += [("lossdiag_codes", ",".join(f.code for f in result.active_findings))]
        _verdict(result, state.fail_on)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, LossdiagFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.line - 1, f"lossdiag {self.name}"


def _levels(fail_on: str) -> tuple[str, ...]:
    return {"error": ("error",), "warning": ("error", "warning")}.get(fail_on, ())


def _verdict(result: Any, fail_on: str) -> None:
    """Fail, skip, or pass with warnings, as `lossdiag check --fail-on FAIL_ON` would exit for this loss."""
    active = result.active_findings
    failing = [f for f in active if f.severity in _levels(fail_on)]
    if failing:
        raise LossdiagFailure(describe(result, failing))
    if active:
        warnings.warn(LossdiagWarning(describe(result, active)), stacklevel=1)
    if result.status == "skipped":
        pytest.skip(f"lossdiag skipped it: {result.note}")
    suppressed = sorted({f.code for f in result.findings if f.suppressed})
    if suppressed and not active:
        pytest.skip(f"suppressed with # lossdiag: ignore: {', '.join(suppressed)}")


def describe(result: Any, findings: list[Any]) -> str:
    """The failure text, one block per finding: where, code, rule and message; then the fix and related lines."""
    from lossdiag.rules import RULES

    kind = "metric" if result.kind == "metric" else "loss"
    lines: list[str] = []
    for f in findings:
        rule = RULES.get(f.code)
        title = f"{f.code} {rule.name}" if rule is not None else f.code
        lines += [f"{f.file}:{f.line}: {title} ({f.severity}) in {kind} {result.name}: {f.message}"]
        lines += [f"  fix: {f.hint}"] if f.hint else []
        lines += [f"  {r.file}:{r.line}: {r.message}" for r in f.related]
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or state.report is None or state.failure is not None:
        return
    counts = state.report.summary()
    parts = ", ".join(f"{counts[s]} {s}" for s in ("pass", "warn", "fail", "error", "skipped") if counts[s])
    terminalreporter.write_line(f"lossdiag: {counts['losses']} losses and metrics checked in one run ({parts})")
