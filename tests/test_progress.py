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


def _run_with_stderr_on_a_pty(args: list[str], cwd: Path) -> tuple[int, str, str]:
    master, slave = pty.openpty()
    env = cli_env(TERM="xterm", COLUMNS="100")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lossdiag", *args], cwd=cwd, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
    )
    os.close(slave)
    chunks: list[bytes] = []
    assert proc.stdout is not None
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other end closed
                data = b""
            if not data and proc.poll() is not None:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    out = proc.stdout.read().decode()
    os.close(master)
    return proc.wait(), out, b"".join(chunks).decode(errors="replace")


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
