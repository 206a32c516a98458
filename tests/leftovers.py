"""Run the CLI so that nothing it leaves behind can hide: a marker in its environment, a TMPDIR of its own.

Every process the run starts (the worker, and whatever a loss forks or spawns) inherits the marker, so
`/proc/*/environ` finds them all afterwards; every temporary file lands in the run's own TMPDIR.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from conftest import cli_env

MARKER_VAR = "LOSSDIAG_TEST_MARKER"


@dataclass
class Marked:
    """One run: what to pass to the CLI, and how to find what it leaves."""

    tmp: Path
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.tmpdir = self.tmp / f"tmpdir-{self.marker[:8]}"
        self.tmpdir.mkdir(parents=True, exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        return cli_env(**{MARKER_VAR: self.marker, "TMPDIR": str(self.tmpdir), **extra})

    def processes(self) -> list[int]:
        return marked_processes(self.marker)

    def leftovers(self, grace: float = 5.0) -> tuple[list[int], list[str]]:
        """Processes still alive and files in TMPDIR, after `grace` seconds for killed processes to go."""
        deadline = time.monotonic() + grace
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.processes(), sorted(p.name for p in self.tmpdir.iterdir())


def _state(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return "?"


def marked_processes(marker: str) -> list[int]:
    """Live (not zombie) processes whose environment carries `marker`."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if needle in env.split(b"\0") and _state(pid) not in ("Z", "X", "?"):
            found.append(int(pid))
    return found


def run_marked(
    args: Sequence[str], cwd: Path | str, tmp: Path, timeout: float = 600, **env: str
) -> tuple[int, str, str, Marked]:
    """`python -m lossdiag ARGS` with a marker and a TMPDIR of its own: (code, stdout, stderr, marked)."""
    marked = Marked(tmp)
    proc = subprocess.run(
        [sys.executable, "-m", "lossdiag", *args], cwd=cwd, env=marked.env(**env),
        capture_output=True, text=True, timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr, marked


def run_marked_many(
    runs: Iterable[tuple[Sequence[str], Path | str, dict[str, str]]], tmp: Path, parallel: int = 3
) -> list[tuple[int, str, str, Marked]]:
    """Several `run_marked` side by side (each TensorFlow run costs seconds)."""
    runs = list(runs)
    with ThreadPoolExecutor(max_workers=max(1, min(len(runs), parallel))) as pool:
        return list(pool.map(lambda run: run_marked(run[0], run[1], tmp, **run[2]), runs))
