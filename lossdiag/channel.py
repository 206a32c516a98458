"""The worker's private channel: numbered, authenticated frames on pipes that user code does not know of.

Each frame is `MAGIC | sequence number | payload length | HMAC-SHA256(key, number + payload) | payload`,
the payload one JSON object. The key is random per worker and travels on the request pipe, so bytes a
loss writes to a stray file descriptor, or a message sent twice by a process it forked, are told
apart from the worker's own messages (`ChannelError`) instead of being read as one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import struct
import types
import typing
from pathlib import Path
from typing import Any

MAGIC = b"LDW1"
KEY_BYTES = 32
MAX_PAYLOAD = 32 << 20  # a measurement is a few KiB; anything near this is not ours
_HEADER = struct.Struct(">4sQI32s")
_NUMBER = struct.Struct(">Q")


class ChannelError(Exception):
    """Bytes on the channel that are not a well-formed, authentic, next-in-sequence frame."""


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def _mac(key: bytes, number: int, payload: bytes) -> bytes:
    return hmac.new(key, _NUMBER.pack(number) + payload, hashlib.sha256).digest()


def write_all(fd: int, data: bytes) -> None:
    """Write every byte to a blocking file descriptor (pipes may take a large write in pieces)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue


class Writer:
    """Sends frames on one file descriptor. With `owner_only`, a forked copy of the sender exits instead."""

    def __init__(self, fd: int, key: bytes, owner_only: bool = False) -> None:
        self.fd = fd
        self.key = key
        self.number = 0
        self.owner = os.getpid() if owner_only else None

    def send(self, message: dict[str, Any]) -> None:
        if self.owner is not None and os.getpid() != self.owner:
            # A process that user code forked has come back into lossdiag's code: it must never speak
            # for the worker (its messages would duplicate the worker's). It leaves at once.
            os._exit(0)
        payload = json.dumps(message, separators=(",", ":"), allow_nan=True).encode()
        self.number += 1
        header = _HEADER.pack(MAGIC, self.number, len(payload), _mac(self.key, self.number, payload))
        write_all(self.fd, header + payload)


class Reader:
    """Turns the bytes of one pipe back into messages; raises ChannelError at the first bad frame."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.number = 0
        self.buffer = bytearray()
        self.pending: list[dict[str, Any]] = []  # decoded but not yet taken by read_message
        self.error: ChannelError | None = None  # the first bad frame: everything after it is suspect

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The messages completed by `data`. A bad frame raises ChannelError, but only after the good
        messages before it were returned (at the next call): they were sent before the bad bytes, by
        code that had finished, and a failure must be blamed on what ran when the bad bytes came."""
        if self.error is not None:
            raise self.error
        self.buffer += data
        messages: list[dict[str, Any]] = []
        while len(self.buffer) >= _HEADER.size:
            try:
                message = self._frame()
            except ChannelError as exc:
                self.error = exc
                if messages:
                    return messages
                raise
            if message is None:
                break
            messages.append(message)
        return messages

    def _frame(self) -> dict[str, Any] | None:
        """The next whole message at the start of the buffer (None: not all of it has come yet)."""
        magic, number, length, mac = _HEADER.unpack_from(self.buffer)
        if magic != MAGIC or length > MAX_PAYLOAD:
            raise ChannelError("bytes that are not a lossdiag message")
        if len(self.buffer) < _HEADER.size + length:
            return None
        payload = bytes(self.buffer[_HEADER.size : _HEADER.size + length])
        if not hmac.compare_digest(mac, _mac(self.key, number, payload)):
            raise ChannelError("a message that is not authentic")
        if number != self.number + 1:
            raise ChannelError("a message out of sequence (a duplicate, or one lost)")
        del self.buffer[: _HEADER.size + length]
        self.number = number
        return _decode(payload)


def _decode(payload: bytes) -> dict[str, Any]:
    try:
        message = json.loads(payload)
    except ValueError as exc:
        raise ChannelError(f"an unreadable message ({exc})") from None
    if not isinstance(message, dict):
        raise ChannelError("a message that is not an object")
    return message


def read_exact(fd: int, size: int) -> bytes:
    """Exactly `size` bytes from `fd` (fewer only at end of file); never reads past them."""
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_message(fd: int, reader: Reader) -> dict[str, Any] | None:
    """Block until the next message on `fd`; None at end of file."""
    while not reader.pending:
        if reader.error is not None:
            raise reader.error
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return None
        reader.pending.extend(reader.feed(chunk))
    return reader.pending.pop(0)


# --- dataclasses as plain JSON, driven by their type hints ----------------------------------------


def to_plain(value: Any) -> Any:
    """A dataclass (with Paths, tuples, frozensets, nested dataclasses) as JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (frozenset, set)):
        return sorted(to_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    return value


def from_plain(cls: type, data: dict[str, Any]) -> Any:
    """The dataclass `cls` back from `to_plain` data. Unknown keys are ignored, missing ones defaulted,
    so both sides keep working while fields are added."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**{name: _typed(hints[name], value) for name, value in data.items() if name in names})


def _typed(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return _typed(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return from_plain(hint, value)  # type: ignore[arg-type]
    if hint is Path:
        return Path(value)
    if origin in (tuple, list, frozenset, set, dict):
        return _typed_collection(origin, args, value)
    return value


def _typed_collection(origin: Any, args: tuple[Any, ...], value: Any) -> Any:
    if origin is dict:
        return {k: _typed(args[1] if args else Any, v) for k, v in value.items()}
    if origin is tuple and args and (len(args) != 2 or args[1] is not Ellipsis):
        return tuple(_typed(a, v) for a, v in zip(args, value, strict=False))
    return origin(_typed(args[0] if args else Any, v) for v in value)
