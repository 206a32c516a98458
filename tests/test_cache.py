"""The result cache: hits and misses, what the key covers, corrupt entries, concurrent runs, --no-cache.

Most tests run the engine in-process with a fake worker (a stand-in for `isolation.run_modules` that
records which modules it was asked to run), so they take milliseconds; a few run the real CLI.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, cli_env, run_cli_many, run_spied, validate_json_outputs, write

from lossdiag import cache, cli, engine
from lossdiag.isolation import ModuleOutcome
from lossdiag.measurement import Layout, LossMeasurement, ProbeSpec
from lossdiag.models import Finding, LoadError, Location, LossResult, Probe
from lossdiag.report import json as json_report

LOSSES = """\
from helpers import scale


def good_loss(y_true, y_pred):
    return scale(y_true - y_pred)


def summed_loss(y_true, y_pred):
    return sum(y_true - y_pred)
"""
HELPERS = """\
import deep


def scale(x):
    return x * deep.FACTOR
"""
DEEP = "FACTOR = 1\n"
OTHER = """\
def other_loss(y_true, y_pred):
    return y_true - y_pred
"""


# --- a fake worker ------------------------------------------------------------------------------------


def _measure(path: Path, name: str, batch_size: int) -> LossMeasurement:
    """Per-sample output for most losses, a batch-summed scalar (LD101) for one named `summed_*`."""
    summed = name.startswith("summed")
    shapes = ((7, ()), (batch_size, ())) if summed else ((7, (7,)), (batch_size, (batch_size,)))
    layout = Layout(
        ProbeSpec(("B", 2), ("B", 2), "binary"), "ladder", "the default ladder", shapes=shapes,
        reported=8.0 if summed else 0.25, growth=(2.0, 4.0) if summed else (1.0, 1.0), expected=0.25,
        gradient="ok",
    )
    return LossMeasurement(name, "function", str(path), 4, batch_size=batch_size, layout=layout)


class FakeWorker:
    """Records the modules each run sends to the worker; answers with made-up measurements."""

    def __init__(self) -> None:
        self.runs: list[list[str]] = []
        self.fail: dict[str, str] = {}  # loss name -> the error a worker failure would give it
        self.during: Any = None  # called while "probing", to change files mid-run

    def __call__(self, jobs, worker_options, timeout, max_memory_mb, log, progress=None, **_: Any):
        self.runs.append(sorted(job.path.name for job in jobs))
        if self.during is not None:
            self.during()
        outcomes = {}
        for job in jobs:
            names = sorted(job.names) if job.names is not None else sorted(job.lines)
            measurements = [
                LossMeasurement(n, "function", str(job.path), 1, error=self.fail[n]) if n in self.fail
                else _measure(job.path, n, worker_options["batch_size"])
                for n in names
            ]
            outcomes[job.path] = ModuleOutcome(
                measurements=measurements, output={names[0]: "hello from the loss"},
                notes=[f"lossdiag: {job.path.name}: imported its definitions only", "  skipped line 9: fit()"],
            )
            log.append(f"{job.path} printed while it was imported:\nimported")
        log.append("lossdiag: a line about the whole run")
        return outcomes

    @property
    def last(self) -> list[str]:
        return self.runs[-1] if self.runs else []


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> FakeWorker:
    fake = FakeWorker()
    monkeypatch.setattr(engine, "run_modules", fake)
    return fake


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path / "losses.py", LOSSES)
    write(tmp_path / "helpers.py", HELPERS)
    write(tmp_path / "deep.py", DEEP)
    write(tmp_path / "other.py", OTHER)
    return tmp_path


def check(project: Path, targets: list[str] | None = None, **options: Any) -> engine.Report:
    options.setdefault("cache_dir", str(project / ".lossdiag_cache"))
    return engine.check(targets or ["losses.py", "other.py"], engine.Options(**options), cwd=project)


def without_cached(report: engine.Report) -> str:
    data = json_report.to_data(report)
    data["summary"].pop("cached")
    return json.dumps(data, indent=2)


# --- hits and misses ------------------------------------------------------------------------------------


def test_a_second_run_takes_every_module_from_the_cache(project: Path, worker: FakeWorker):
    cold = check(project)
    warm = check(project)
    assert worker.runs == [["losses.py", "other.py"]], "the warm run must not start the worker"
    assert cold.cached == 0 and warm.cached == 3 == len(warm.results)
    assert without_cached(cold) == without_cached(warm)
    assert [r.status for r in warm.results] == ["pass", "fail", "pass"]
    assert json_report.to_data(warm)["summary"]["cached"] == 3


def test_verbose_lines_about_a_module_come_back_from_the_cache(project: Path, worker: FakeWorker):
    cold = check(project)
    warm = check(project)
    per_module = [line for line in cold.log if not line.startswith("lossdiag: ")]
    assert any("printed while it was imported" in line for line in per_module)
    assert any("hello from the loss" in line for line in per_module)
    assert [line for line in warm.log if not line.startswith("lossdiag: ")] == per_module
    skipped = [line for line in cold.log if "definitions only" in line or "skipped line" in line]
    assert len(skipped) == 4 and [line for line in warm.log if line in skipped] == skipped  # what was skipped
    assert "lossdiag: a line about the whole run" in cold.log  # about the run, not a module: not cached
    assert "lossdiag: a line about the whole run" not in warm.log
    assert any(line.startswith("lossdiag: 2 of 2 modules from the cache") for line in warm.log)


def test_editing_the_file_reruns_that_file_only(project: Path, worker: FakeWorker):
    check(project)
    (project / "other.py").write_text(OTHER + "\n# a comment\n", encoding="utf-8")
    report = check(project)
    assert worker.last == ["other.py"]
    assert report.cached == 2  # losses.py's two losses
    check(project)
    assert len(worker.runs) == 2, "the edited file is stored again"


@pytest.mark.parametrize("edited", ["helpers.py", "deep.py"])
def test_editing_a_local_module_it_imports_reruns_it(project: Path, worker: FakeWorker, edited: str):
    check(project)
    path = project / edited
    path.write_text(path.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    check(project)
    assert worker.last == ["losses.py"], f"losses.py imports {edited} (deep.py two imports deep)"


def test_editing_a_module_nothing_imports_changes_nothing(project: Path, worker: FakeWorker):
    check(project)
    write(project / "unrelated.py", "X = 2\n")
    check(project)
    assert len(worker.runs) == 1


PACKAGE = {
    "pkg/__init__.py": "",
    "pkg/losses.py": (
        "from .util import norm\nfrom . import consts\n\n\n"
        "def pkg_loss(y_true, y_pred):\n    return norm(y_true - y_pred)\n"
    ),
    "pkg/util.py": "from .sub.deeper import K\n\n\ndef norm(x):\n    return x * K\n",
    "pkg/sub/__init__.py": "",
    "pkg/sub/deeper.py": "K = 1\n",
    "pkg/consts.py": "EPS = 1e-7\n",
    "pkg/unused.py": "Z = 0\n",
    "pkg/sub/plain.py": "def plain_loss(y_true, y_pred):\n    return y_true - y_pred\n",
}


@pytest.mark.parametrize(
    "edited, reruns",
    [
        ("pkg/util.py", True),  # from .util import
        ("pkg/sub/deeper.py", True),  # two relative imports deep
        ("pkg/consts.py", True),  # from . import consts: a submodule, not a name
        ("pkg/__init__.py", True),  # the package's __init__ runs when the module is imported
        ("pkg/sub/__init__.py", True),
        ("pkg/unused.py", False),
    ],
)
def test_relative_imports_in_a_package(tmp_path: Path, worker: FakeWorker, edited: str, reruns: bool):
    for name, text in PACKAGE.items():
        write(tmp_path / name, text)
    check(tmp_path, ["pkg/losses.py"])
    (tmp_path / edited).write_text((tmp_path / edited).read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    check(tmp_path, ["pkg/losses.py"])
    assert len(worker.runs) == (2 if reruns else 1)


@pytest.mark.parametrize("edited", ["pkg/__init__.py", "pkg/sub/__init__.py"])
def test_the_packages_a_module_lives_in_are_part_of_its_key(tmp_path: Path, worker: FakeWorker, edited: str):
    for name, text in PACKAGE.items():
        write(tmp_path / name, text)
    check(tmp_path, ["pkg/sub/plain.py"])  # imports nothing, but importing pkg.sub.plain runs both __init__s
    (tmp_path / edited).write_text("# edited\n", encoding="utf-8")
    check(tmp_path, ["pkg/sub/plain.py"])
    assert len(worker.runs) == 2


@pytest.mark.parametrize(
    "changed",
    [
        {"batch_size": 16}, {"seed": 1}, {"timeout": 5.0}, {"max_memory_mb": 1024}, {"trace": False},
        {"legacy_keras": True}, {"legacy_keras": False}, {"full_import": True},
        {"probes": {"good_loss": "y_true=B,3;y_pred=B,3;labels=real"}},
        {"probes": {"good_loss": "y_true=B,2;y_pred=B,2;labels=binary"},
         "probe_sources": {"good_loss": "config"}},
    ],
)
def test_an_option_that_can_change_a_verdict_misses(project: Path, worker: FakeWorker, changed: dict[str, Any]):
    base = {"probes": {"good_loss": "y_true=B,2;y_pred=B,2;labels=binary"}} if "probe_sources" in changed else {}
    check(project, **base)
    check(project, **changed)
    assert len(worker.runs) == 2 and "losses.py" in worker.last


@pytest.mark.parametrize(
    "changed",
    [
        {"select": ("LD1",)}, {"ignore": ("LD101",)}, {"jobs": 2},
        {"per_file_ignores": (("*.py", ("LD101",)),)}, {"exclude": ("nothing/*",)},
    ],
)
def test_selection_suppression_and_other_files_probes_are_applied_after_the_cache(
    project: Path, worker: FakeWorker, changed: dict[str, Any]
):
    check(project, ["losses.py"])
    report = check(project, ["losses.py"], **changed)
    assert len(worker.runs) == 1
    assert report.cached == 2


def test_selection_is_applied_to_cached_results(project: Path, worker: FakeWorker):
    check(project)
    report = check(project, ignore=("LD101",))
    assert len(worker.runs) == 1
    assert all(f.code != "LD101" for r in report.results for f in r.active_findings)
    assert [r.status for r in report.results] == ["pass", "pass", "pass"]


def test_a_probe_for_another_files_loss_leaves_this_file_cached(project: Path, worker: FakeWorker):
    check(project)
    check(project, probes={"other_loss": "y_true=B,3;y_pred=B,3;labels=real"})
    assert worker.last == ["other.py"]


def test_every_option_is_either_in_the_key_or_applied_after_the_cache():
    names = {f.name for f in dataclasses.fields(engine.Options)}
    assert set(cache.VERDICT_OPTIONS) | set(cache.AFTER_CACHE_OPTIONS) == names
    assert not set(cache.VERDICT_OPTIONS) & set(cache.AFTER_CACHE_OPTIONS)


def test_file_name_selection_is_its_own_entry(project: Path, worker: FakeWorker):
    one = check(project, ["losses.py::good_loss"])
    assert [r.name for r in one.results] == ["good_loss"]
    both = check(project, ["losses.py"])
    assert worker.last == ["losses.py"] and [r.name for r in both.results] == ["good_loss", "summed_loss"]
    again = check(project, ["losses.py::good_loss"])
    assert len(worker.runs) == 2 and [r.name for r in again.results] == ["good_loss"] and again.cached == 1


@pytest.mark.parametrize("package", ["tensorflow", "keras", "tf_keras"])
def test_a_new_tensorflow_or_keras_version_misses(
    project: Path, worker: FakeWorker, monkeypatch: pytest.MonkeyPatch, package: str
):
    check(project)
    real = cache.distribution_version
    monkeypatch.setattr(
        cache, "distribution_version", lambda names: "99.0" if names == cache.DISTRIBUTIONS[package] else real(names)
    )
    check(project)
    assert len(worker.runs) == 2
    check(project)
    assert len(worker.runs) == 2


def test_versions_are_read_without_importing_tensorflow():
    code = (
        "import sys\nfrom lossdiag import cache\nv = cache.versions()\n"
        "print(v['tensorflow'], 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, check=True)
    version, tf_imported, keras_imported = proc.stdout.split()
    assert version != "None" and (tf_imported, keras_imported) == ("False", "False")


@pytest.mark.parametrize("what", ["lossdiag", "python", "lossdiag_source"])
def test_a_new_lossdiag_or_python_misses(project: Path, worker: FakeWorker, monkeypatch: pytest.MonkeyPatch, what: str):
    check(project)
    real = cache.versions
    monkeypatch.setattr(cache, "versions", lambda: {**real(), what: "something else"})
    check(project)
    assert len(worker.runs) == 2


# --- what is not stored -----------------------------------------------------------------------------------


def test_a_worker_failure_is_not_cached(project: Path, worker: FakeWorker):
    worker.fail["good_loss"] = "timed out after 10 s while probing"
    first = check(project)
    assert any(r.status == "error" for r in first.results)
    worker.fail.clear()
    second = check(project)
    assert worker.last == ["losses.py"], "a timeout on a busy machine must not stick"
    assert second.cached == 1 and all(r.status != "error" for r in second.results)


def test_a_file_edited_while_the_worker_runs_is_not_stored(project: Path, worker: FakeWorker):
    worker.during = lambda: (project / "other.py").write_text(OTHER + "# edited mid-run\n", encoding="utf-8")
    check(project)
    worker.during = None
    check(project)
    assert worker.last == ["other.py"]


# --- --no-cache, the folder, the environment --------------------------------------------------------------


def test_no_cache_neither_reads_nor_writes(project: Path, worker: FakeWorker):
    folder = project / ".lossdiag_cache"
    check(project, cache=False)
    assert not folder.exists(), "--no-cache must not write"
    check(project)
    report = check(project, cache=False)
    assert len(worker.runs) == 3, "--no-cache must not read"
    assert report.cached == 0


def test_the_folder_holds_a_cachedir_tag_and_a_gitignore(project: Path, worker: FakeWorker):
    check(project)
    folder = project / ".lossdiag_cache"
    tag = (folder / "CACHEDIR.TAG").read_text(encoding="utf-8")
    assert tag.startswith("Signature: 8a477f597d28d172789f06886806bc55")
    assert (folder / ".gitignore").read_text(encoding="utf-8").splitlines()[-1] == "*"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_does_not_see_the_cache(project: Path, worker: FakeWorker):
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    check(project)
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=project,
                            capture_output=True, text=True, check=True).stdout
    assert "losses.py" in status and ".lossdiag_cache" not in status


def test_a_cache_folder_that_cannot_be_written_never_fails_the_run(project: Path, worker: FakeWorker):
    (project / "a_file").write_text("not a folder\n", encoding="utf-8")
    blocked = project / "a_file" / "cache"
    cold = check(project, cache_dir=str(blocked))
    again = check(project, cache_dir=str(blocked))
    assert len(worker.runs) == 2 and again.cached == 0
    assert without_cached(cold) == without_cached(again)
    assert any("cannot write the cache" in line and "a_file" in line for line in cold.log)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_folder_is_still_read(project: Path, worker: FakeWorker):
    check(project)
    folder = project / ".lossdiag_cache"
    modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if p.is_dir()}
    try:
        for p in modes:
            p.chmod(0o555)
        assert check(project).cached == 3
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def _cli_check(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> dict:
    """`lossdiag check ARGS --format json` in-process (the fake worker stays in place)."""
    monkeypatch.chdir(cwd)
    status = cli.main(["check", *args, "--format", "json"])
    out = capsys.readouterr().out
    assert status in (0, 1), out
    validate_json_outputs(["--format", "json"], out, cwd)
    return json.loads(out)


def test_cache_dir_from_the_environment(project: Path, worker: FakeWorker, monkeypatch, capsys):
    monkeypatch.setenv("LOSSDIAG_CACHE_DIR", "elsewhere/cache")
    _cli_check(["losses.py"], project, monkeypatch, capsys)
    assert (project / "elsewhere" / "cache" / "CACHEDIR.TAG").is_file()
    assert not (project / ".lossdiag_cache").exists()
    assert _cli_check(["losses.py"], project, monkeypatch, capsys)["summary"]["cached"] == 2
    assert len(worker.runs) == 1


def test_default_folder_is_next_to_the_configuration(project: Path, worker: FakeWorker, monkeypatch, capsys):
    monkeypatch.delenv("LOSSDIAG_CACHE_DIR", raising=False)
    write(project / "pyproject.toml", "[tool.lossdiag]\nseed = 0\n")
    (project / "sub").mkdir()
    _cli_check(["../losses.py"], project / "sub", monkeypatch, capsys)
    assert (project / ".lossdiag_cache" / "CACHEDIR.TAG").is_file()
    assert not (project / "sub" / ".lossdiag_cache").exists()


def test_no_cache_flag(project: Path, worker: FakeWorker, monkeypatch, capsys):
    monkeypatch.delenv("LOSSDIAG_CACHE_DIR", raising=False)
    _cli_check(["losses.py", "--no-cache"], project, monkeypatch, capsys)
    assert not (project / ".lossdiag_cache").exists()
    _cli_check(["losses.py"], project, monkeypatch, capsys)
    assert _cli_check(["losses.py", "--no-cache"], project, monkeypatch, capsys)["summary"]["cached"] == 0
    assert len(worker.runs) == 3


# --- corrupt entries and concurrent runs ------------------------------------------------------------------


def _entries(project: Path) -> list[Path]:
    return sorted((project / ".lossdiag_cache" / "entries").rglob("*.json"))


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # a truncated write
        lambda text: "",
        lambda text: "\x00\xff garbage",
        lambda text: "[]",
        lambda text: text.replace('"status": "pass"', '"status": "fail"'),  # edited: the digest no longer fits
        lambda text: json.dumps({**json.loads(text), "schema": "lossdiag-cache/0"}),
        lambda text: json.dumps({**json.loads(text), "payload": {"results": [{"line": "x"}]}}),
    ],
)
def test_a_corrupt_entry_is_ignored_and_written_again(project: Path, worker: FakeWorker, damage):
    cold = check(project)
    for entry in _entries(project):
        entry.write_text(damage(entry.read_text(encoding="utf-8")), encoding="utf-8")
    again = check(project)
    assert len(worker.runs) == 2 and again.cached == 0
    assert without_cached(cold) == without_cached(again)
    assert check(project).cached == 3 and len(worker.runs) == 2, "the damaged entries were rewritten"


def test_an_unreadable_entry_is_a_miss(project: Path, worker: FakeWorker):
    check(project)
    for entry in _entries(project):
        entry.unlink()
        entry.mkdir()  # reading it raises IsADirectoryError
    assert check(project).cached == 0
    assert len(worker.runs) == 2


def test_two_runs_at_once_on_the_same_cache(project: Path, worker: FakeWorker):
    barrier = threading.Barrier(2)
    worker.during = lambda: (barrier.wait(timeout=10), time.sleep(0.05))  # both are inside the worker at once
    reports: list[engine.Report] = []
    threads = [threading.Thread(target=lambda: reports.append(check(project))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(reports) == 2 and len(worker.runs) == 2
    assert without_cached(reports[0]) == without_cached(reports[1])
    worker.during = None
    warm = check(project)
    assert warm.cached == 3 and len(worker.runs) == 2
    assert not [p for p in (project / ".lossdiag_cache").rglob("*") if p.name.endswith(".tmp")]


def test_readers_never_see_half_an_entry(tmp_path: Path):
    store = cache.Store(tmp_path / "c", tmp_path)
    entry = cache.FileResults(tuple(_rich_result(i) for i in range(50)), None, ("x" * 10_000,))
    store.save("k" * 64, entry)  # then rewritten while being read: a reader sees the old file or the new one
    stop = threading.Event()
    seen: list[object] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(store.load("k" * 64))

    def write_many() -> None:
        for _ in range(10):
            store.save("k" * 64, entry)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write_many) for _ in range(2)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert store.problem is None
    assert seen and all(found == entry for found in seen)
    assert store.load("k" * 64) == entry


# --- entries and keys in detail ---------------------------------------------------------------------------


def _rich_result(i: int = 0) -> LossResult:
    finding = Finding("LD101", "error", "summed", "a.py", 7, "keep the axis",
                      (Location("b.py", 3, "this slice"), Location("a.py", 1)))
    return LossResult(
        f"a.py::loss{i}", f"loss{i}", "a.py", 12 + i, "fail", Probe(32, (32, 2), (32, 2), "binary", "given"),
        (), 0.25, 8.0, 32.0, (finding,), na_reason="", note="n", kind="metric", keras="3.15.1", outputs=("y", "z"),
    )


def test_an_entry_round_trips_exactly():
    entry = cache.FileResults(
        (_rich_result(), LossResult("a.py::s", "s", "a.py", 3, "skipped", note="why")),
        None, ("line one", "line\ntwo"),
    )
    back = cache.from_json(json.loads(json.dumps(cache.to_json(entry))))
    assert back == entry
    errored = cache.FileResults((), LoadError("a.py", "LD001", "SyntaxError: x", 3))
    assert cache.from_json(json.loads(json.dumps(cache.to_json(errored)))) == errored


def test_non_finite_numbers_round_trip():
    result = dataclasses.replace(_rich_result(), expected=float("nan"), actual=float("inf"), ratio=None)
    back = cache.from_json(json.loads(json.dumps(cache.to_json(cache.FileResults((result,))))))
    assert back.results[0].actual == float("inf") and back.results[0].expected != back.results[0].expected


def test_local_imports_leave_libraries_out(tmp_path: Path):
    write(tmp_path / "losses.py", """\
        import json, os.path
        import numpy as np
        from keras import ops
        import helpers
        from helpers import thing
        from missing_module import nothing

        def f():
            import lazy  # imported inside a function: still run when the loss runs
        """)
    write(tmp_path / "helpers.py", "import losses  # a cycle\nthing = 1\n")
    write(tmp_path / "lazy.py", "")
    write(tmp_path / "json.py", "")  # shadows the standard library for the worker, which puts this folder first
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert (site_packages / "numpy").is_dir()
    graph = cache.ImportGraph()
    # even with site-packages among the roots (a module checked by its dotted name), numpy is a library
    found = graph.closure((tmp_path / "losses.py").resolve(), (tmp_path.resolve(), site_packages))
    assert [p.name for p in found] == ["helpers.py", "json.py", "lazy.py"]


def test_a_dependency_with_a_syntax_error_is_still_hashed(tmp_path: Path):
    write(tmp_path / "losses.py", "import broken\n")
    write(tmp_path / "broken.py", "def (:\n")
    graph = cache.ImportGraph()
    assert [p.name for p in graph.closure((tmp_path / "losses.py").resolve(), (tmp_path.resolve(),))] == ["broken.py"]


def test_applicable_probes_ignore_other_files_losses(tmp_path: Path):
    job = engine.ModuleJob(tmp_path / "a.py", "a", tmp_path, None, {"x": ["s", "given"], "y": ["t", "given"]}, {"x": 3})
    assert cache.applicable_probes(job) == {"x": ["s", "given"]}


# --- the real CLI -------------------------------------------------------------------------------------------

FIXTURES = ["fixtures/seed_losses.py", "fixtures/batch_axis.py"]
@pytest.mark.tf
def test_cold_and_warm_runs_print_the_same_json_and_the_warm_one_imports_no_tensorflow(tmp_path: Path):
    folder = tmp_path / "cache"
    args = ["check", *FIXTURES, "--format", "json", "--cache-dir", str(folder)]
    # two cold runs at once on the same (empty) cache
    (rc1, cold1, err1), (rc2, cold2, err2) = run_cli_many([(args, REPO), (args, REPO)])
    assert rc1 == rc2 == 1, err1 + err2  # the fixtures hold LD101s on purpose
    assert json.loads(cold1)["summary"]["cached"] == 0
    verdict, warm, _ = run_spied(args, REPO, timeout=300)
    assert verdict["heavy"] == [] and verdict["started"] == [], "a warm run imports nothing heavy, starts no worker"
    assert verdict["rc"] == rc1
    losses = json.loads(warm)["summary"]["losses"]
    assert losses > 0 and json.loads(warm)["summary"]["cached"] == losses
    assert warm.replace(f'"cached": {losses}', '"cached": 0') == cold1 == cold2


@pytest.mark.tf
def test_only_the_edited_file_is_probed_again(tmp_path: Path):
    for name in FIXTURES:
        shutil.copy(REPO / name, tmp_path / Path(name).name)
    args = ["check", "seed_losses.py", "batch_axis.py", "--format", "json", "-v", "--cache-dir", ".lossdiag_cache"]
    (_, cold, _), = run_cli_many([(args, tmp_path)])
    seed_losses = sum(1 for r in json.loads(cold)["results"] if r["file"] == "seed_losses.py")
    with open(tmp_path / "batch_axis.py", "a", encoding="utf-8") as fh:
        fh.write("\n# edited\n")
    (_, edited, err), = run_cli_many([(args, tmp_path)])
    assert json.loads(edited)["summary"]["cached"] == seed_losses > 0
    assert "1 of 2 modules from the cache" in err
    data = json.loads(edited)
    data["summary"]["cached"] = 0
    assert json.dumps(data, indent=2, ensure_ascii=False) + "\n" == cold
