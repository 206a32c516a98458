"""What a detector returns: a rule code with its message and fix, and which trace events locate it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Detection:
    """One rule that the measurements of one loss show."""

    code: str
    message: str
    hint: str
    locate_by: tuple[str, ...] = ()  # trace event kinds that point at the op to fix, in order of preference
    trace_hint: bool = True  # whether the trace's own fix (e.g. `yz[:, 1:2]`) beats `hint`
