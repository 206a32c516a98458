"""Which source line of the user's own files an op came from, read off the op's traceback."""

from __future__ import annotations

import contextlib
import os
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lossdiag.trace.ops import WRAPPER_FRAMES

LOSSDIAG_ROOT = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENTRY = "_lossdiag_trace_entry"  # the function the graph is traced through; frames above it are ours


@dataclass(frozen=True)
class Site:
    """A line in the user's code, and the library function that line called (e.g. "sum")."""

    file: str
    line: int
    api: str = ""


@lru_cache(maxsize=1)
def library_roots() -> tuple[str, ...]:
    """The standard library, site-packages and lossdiag itself: never the user's code."""
    roots: set[str] = set()
    for prefix in (sys.base_prefix, sys.prefix, sys.exec_prefix):
        scheme_vars = {"base": prefix, "platbase": prefix}
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            with contextlib.suppress(KeyError, ValueError):  # exotic interpreters lack some paths
                roots.add(os.path.realpath(sysconfig.get_path(key, vars=scheme_vars)))
    roots.add(LOSSDIAG_ROOT)
    return tuple(sorted(r + os.sep for r in roots if r))


def is_user_file(filename: str, extra: tuple[str, ...] = ()) -> bool:
    if not filename or filename.startswith("<"):
        return False
    path = os.path.realpath(filename)
    if any(path == e or path.startswith(e + os.sep) for e in extra):
        return True
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not any(path.startswith(root) for root in library_roots())


def loss_source_dir(raw_call: Callable[..., Any]) -> tuple[str, ...]:
    """The folder of the loss's own code, trusted even when it is installed in site-packages."""
    target: Any = getattr(raw_call, "__self__", None)
    fn = getattr(target, "fn", None) or getattr(raw_call, "__func__", None) or raw_call
    code = getattr(getattr(fn, "func", fn), "__code__", None)
    if code is None:
        return ()
    path = os.path.realpath(code.co_filename)
    parts = set(path.split(os.sep))
    if parts & {"keras", "tf_keras", "tensorflow", "lossdiag"} or path.startswith("<"):
        return ()
    if not ({"site-packages", "dist-packages"} & parts):
        return ()  # already a user file by the ordinary rule
    return (os.path.dirname(path),)


def _called_api(frames: list[Any]) -> str:
    """The first library function below the user's frame that is not a mere wrapper."""
    return next((f.name for f in frames if f.name not in WRAPPER_FRAMES and not f.name.startswith("_")), "")


def site_of(op: Any, extra: tuple[str, ...] = ()) -> Site | None:
    """The innermost frame of `op`'s traceback in the user's files, below the traced entry."""
    try:
        frames = list(op.traceback)
    except Exception:
        return None
    start = max((i + 1 for i, f in enumerate(frames) if f.name == ENTRY and LOSSDIAG_ROOT in os.path.realpath(f.filename)), default=0)
    for i in range(len(frames) - 1, start - 1, -1):
        if is_user_file(frames[i].filename, extra):
            return Site(os.path.abspath(frames[i].filename), int(frames[i].lineno), _called_api(frames[i + 1 :]))
    return None
