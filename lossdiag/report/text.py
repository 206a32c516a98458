"""Wrapping text between tokens only: a shape `(32, 7)`, a code span `` `yz[:, 1:2]` `` or `line 12` never splits."""

from __future__ import annotations

import re
from collections.abc import Sequence

# A token is a run of: backtick spans, shape-like parenthesised groups (no nested parentheses, no word of
# three letters or more: prose in parentheses still wraps), other non-space characters. `(B, 2)`,
# `(32, 16, 16, 1)`, `` `sum(..., axis=-1)` `` and `y_true=(B, 2)` are each one token.
_TOKEN = re.compile(r"(?:`[^`\n]*`|\((?:(?![A-Za-z]{3})[^()\n])*\)|\S)+")


def tokens(text: str) -> list[str]:
    """The unbreakable pieces of a sentence."""
    return _TOKEN.findall(text)


def flow(pieces: Sequence[str], width: int | None, indent: str = "") -> list[str]:
    """Pieces joined by spaces into lines of at most `width` (None: one line). A piece longer than the
    width gets a line of its own rather than being cut; `indent` starts every line."""
    if not pieces:
        return [indent] if indent else [""]
    if width is None:
        return [indent + " ".join(pieces)]
    lines: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current} {piece}" if current else piece
        if current and len(indent) + len(candidate) > width:
            lines.append(indent + current)
            current = piece
        else:
            current = candidate
    lines.append(indent + current)
    return lines


def wrap(text: str, width: int | None, indent: str = "") -> str:
    """A paragraph wrapped between tokens (each existing line break kept)."""
    return "\n".join(line for part in text.split("\n") for line in flow(tokens(part), width, indent))


def strip_trailing_spaces(rendered: str) -> str:
    """No line ends in spaces, also before a closing colour code (rich pads cells to their width)."""
    return "\n".join(re.sub(r"[ \t]+((?:\x1b\[[0-9;]*m)*)$", r"\1", line) for line in rendered.split("\n"))
