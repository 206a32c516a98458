"""A progress line on stderr for long runs at a terminal: files and losses done, the loss in progress.

It is shown only when stderr is a terminal (the CLI decides) and only once the run has lasted `delay`
seconds, so short runs, pipes, files and CI logs never see it. It is transient: it disappears when
the run ends, leaving the report alone on the screen.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import IO, Any


class ProgressDisplay:
    """The engine's `progress(module, loss)` callback, drawn with rich once the run is long enough."""

    def __init__(self, cwd: Path, stream: IO[str], delay: float = 1.0) -> None:
        self._cwd = cwd
        self._stream = stream
        self._lock = threading.Lock()
        self._timer = threading.Timer(delay, self._show)
        self._timer.daemon = True
        self._progress: Any = None
        self._task: Any = None
        self._modules = self._losses = 0
        self._module_total: int | None = None
        self._loss_total: int | None = None
        self._current: str | None = None  # the loss being checked, as FILE::NAME
        self._module: str | None = None
        self._stopped = False

    # --- the engine's side -----------------------------------------------------------------------

    def plan(self, modules: int, losses: int) -> None:
        """How many modules and loss candidates the run holds (the engine calls this once)."""
        with self._lock:
            self._module_total, self._loss_total = modules, losses
        self._refresh()

    def __call__(self, module: str, loss: str | None) -> None:
        with self._lock:
            shown = self._shown(module)
            if loss is None:
                self._modules += 1
                self._module, self._current = shown, None
            else:
                self._losses += 1
                self._current = f"{shown}::{loss}"
        self._refresh()

    # --- the CLI's side --------------------------------------------------------------------------

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._timer.cancel()
            progress, self._progress = self._progress, None
        if progress is not None:
            progress.stop()

    def __enter__(self) -> ProgressDisplay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- drawing ---------------------------------------------------------------------------------

    def _shown(self, module: str) -> str:
        path = Path(module)
        try:
            return path.resolve().relative_to(self._cwd.resolve()).as_posix()
        except ValueError:
            return path.as_posix() if path.is_absolute() else module

    def description(self) -> str:
        """The text of the line: `2/5 files, 7/21 losses done · checking a.py::dice` (tested alone)."""
        files_done = max(0, self._modules - (1 if self._module is not None else 0))
        losses_done = max(0, self._losses - (1 if self._current is not None else 0))
        files = f"{files_done}/{self._module_total}" if self._module_total else str(files_done)
        losses = f"{losses_done}/{self._loss_total}" if self._loss_total else str(losses_done)
        if self._current is not None:
            doing = f"checking {self._current}"
        elif self._module is not None:
            doing = f"importing {self._module}"
        else:
            doing = "starting the worker (importing TensorFlow)"
        return f"{files} files, {losses} losses done · {doing}"

    def _show(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with self._lock:
            if self._stopped:
                return
            console = Console(file=self._stream, no_color="NO_COLOR" in os.environ, highlight=False)
            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20), TimeElapsedColumn(),
                console=console, transient=True,
            )
            self._task = self._progress.add_task(self.description(), total=self._loss_total)
            self._progress.start()
        self._refresh()

    def _refresh(self) -> None:
        with self._lock:
            if self._progress is None:
                return
            done = max(0, self._losses - (1 if self._current is not None else 0))
            self._progress.update(
                self._task, description=self.description(), completed=done, total=self._loss_total, refresh=True
            )
