"""Progress on stderr: only at a terminal, only for runs longer than about a second, never in pipes."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, cli_env, run_cli, write

from lossdiag.progress import ProgressDisplay


def test_description_counts_files_and_losses_done_and_names_the_loss_in_progress(tmp_path: Path):
    display = ProgressDisplay(tmp_path, io.StringIO())
    assert display.description() == "0 files, 0 losses done · starting the worker (importing TensorFlow)"
    display.plan(2, 3)
    display(str(tmp_path / "a.py"), None)
    assert display.description() == "0/2 files, 0/3 losses done · importing a.py"
    display(str(tmp_path / "a.py"), "dice")
    display(str(tmp_path / "a.py"), "focal")
    assert display.description() == "0/2 files, 1/3 losses done · checking a.py::focal"
    display(str(tmp_path / "b.py"), None)
    assert display.description() == "1/2 files, 2/3 losses done · importing b.py"


def test_a_short_run_never_draws(tmp_path: Path):
    stream = io.StringIO()
    with ProgressDisplay(tmp_path, stream, delay=0.5) as display:
        display(str(tmp_path / "a.py"), "dice")
    time.sleep(0.7)
    assert stream.getvalue() == ""


def _drain(fds: list[int], proc: subprocess.Popen) -> dict[int, bytes]:
    """Read every pseudo-terminal until the process is gone and they are empty."""
    chunks: dict[int, list[bytes]] = {fd: [] for fd in fds}
    open_fds = list(fds)
    while open_fds:
        ready, _, _ = select.select(open_fds, [], [], 0.2)
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the other end closed
                data = b""
            if data:
                chunks[fd].append(data)
            elif proc.poll() is not None:
                open_fds.remove(fd)
        if not ready and proc.poll() is not None:
            break
    return {fd: b"".join(parts) for fd, parts in chunks.items()}


def _run_on_ptys(args: list[str], cwd: Path, stdout_too: bool = False, columns: str = "100") -> tuple[int, str, str]:
    """Run the CLI with stderr (and stdout, if asked) on pseudo-terminals; (status, stdout, stderr)."""
    err_master, err_slave = pty.openpty()
    out_master, out_slave = pty.openpty() if stdout_too else (None, None)
    env = cli_env(TERM="xterm", COLUMNS=columns)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lossdiag", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        stdout=out_slave if stdout_too else subprocess.PIPE, stderr=err_slave,
    )
    os.close(err_slave)
    if out_slave is not None:
        os.close(out_slave)
    read = _drain([fd for fd in (err_master, out_master) if fd is not None], proc)
    out = read[out_master] if out_master is not None else proc.stdout.read()  # type: ignore[union-attr]
    for fd in (err_master, out_master):
        if fd is not None:
            os.close(fd)
    decode = lambda data: data.decode(errors="replace").replace("\r\n", "\n")  # noqa: E731
    return proc.wait(), decode(out), decode(read[err_master])


def _run_with_stderr_on_a_pty(args: list[str], cwd: Path) -> tuple[int, str, str]:
    return _run_on_ptys(args, cwd)


@pytest.mark.tf
def test_a_long_run_at_a_terminal_shows_progress_on_stderr_only():
    rc, out, err = _run_with_stderr_on_a_pty(["check", "fixtures/seed_losses.py"], REPO)
    assert rc == 1, out + err
    assert "losses done" in err and "files" in err  # drawn while TensorFlow imported and losses ran
    assert "checking fixtures/seed_losses.py::loss2" in err  # the engine reported each loss as it started
    assert "losses done" not in out and "\x1b[" not in out  # stdout (a pipe) has only the report
    assert "3 losses in 1 file" in out


def test_nothing_is_drawn_when_stderr_is_not_a_terminal(tmp_path: Path):
    write(tmp_path / "helpers.py", "def add(a, b):\n    return a + b\n")
    rc, out, err = run_cli(["check", "helpers.py"], tmp_path)
    assert rc == 0 and err == ""


def test_a_run_shorter_than_a_second_draws_nothing_even_at_a_terminal(tmp_path: Path):
    write(tmp_path / "helpers.py", "def add(a, b):\n    return a + b\n")
    rc, out, err = _run_with_stderr_on_a_pty(["check", "helpers.py"], tmp_path)
    assert rc == 0 and err == "", err


@pytest.mark.tf
def test_at_an_80_column_terminal_the_report_fits_and_nothing_is_split():
    rc, out, err = _run_on_ptys(["check", "fixtures/seed_losses.py", "fixtures/shapes.py"], REPO, True, "80")
    assert rc == 1, out + err
    lines = out.splitlines()
    assert lines and max(len(line) for line in lines) <= 80
    assert "sparse_categorical_per_sample" in out and "(32, 16, 16, 1)" in out
    assert all(line == line.rstrip() for line in lines)
