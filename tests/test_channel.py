"""The worker's channel: frames survive any split, and garbage, forgeries and duplicates are refused."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lossdiag import channel, discover


def _frames(key: bytes, *messages: dict) -> bytes:
    r, w = os.pipe()
    writer = channel.Writer(w, key)
    for message in messages:
        writer.send(message)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    return data


def test_messages_come_back_whatever_the_pieces_they_arrive_in():
    key = channel.new_key()
    data = _frames(key, {"event": "a", "n": 1}, {"event": "b", "text": "é" * 1000})
    reader = channel.Reader(key)
    got = []
    for i in range(0, len(data), 7):
        got += reader.feed(data[i : i + 7])
    assert got == [{"event": "a", "n": 1}, {"event": "b", "text": "é" * 1000}]


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda data, key: b"garbage\n" + data, "not a lossdiag message"),
        (lambda data, key: data[:-3] + b"2" + data[-2:], "not authentic"),
        (lambda data, key: _frames(channel.new_key(), {"event": "done"}), "not authentic"),
        (lambda data, key: data + data, "out of sequence"),  # the same message twice: a forked copy
    ],
    ids=["garbage", "altered", "other_key", "duplicate"],
)
def test_bad_bytes_are_a_channel_error(mangle, reason):
    key = channel.new_key()
    data = mangle(_frames(key, {"event": "result", "n": 1}), key)
    reader = channel.Reader(key)
    with pytest.raises(channel.ChannelError, match=reason):
        reader.feed(data)
        reader.feed(b"")  # the duplicate: the first copy is good and comes back first


def test_good_messages_before_bad_bytes_come_back_before_the_error():
    """A loss that finished sent its result; the next one wrote garbage: the result still counts, and
    the failure is blamed on the code that ran when the garbage came."""
    key = channel.new_key()
    data = _frames(key, {"event": "done", "n": 1}, {"event": "call"}) + b"LDW1" + b"\x00" * 60
    reader = channel.Reader(key)
    assert reader.feed(data) == [{"event": "done", "n": 1}, {"event": "call"}]
    assert isinstance(reader.error, channel.ChannelError)
    for later in (b"", _frames(key, {"event": "done"})):
        with pytest.raises(channel.ChannelError, match="not authentic"):
            reader.feed(later)


def test_a_forked_copy_of_the_sender_exits_instead_of_speaking():
    key = channel.new_key()
    r, w = os.pipe()
    writer = channel.Writer(w, key, owner_only=True)
    pid = os.fork()
    if pid == 0:
        writer.send({"event": "from the child"})
        os._exit(3)  # not reached: send() left with status 0
    _, status = os.waitpid(pid, 0)
    writer.send({"event": "from the owner"})
    os.close(w)
    assert os.waitstatus_to_exitcode(status) == 0
    assert channel.Reader(key).feed(os.read(r, 1 << 16)) == [{"event": "from the owner"}]
    os.close(r)


def test_a_file_scan_crosses_as_plain_data():
    scan = discover.FileScan(
        Path("/x/losses.py"), "losses", Path("/x"),
        (discover.AstCandidate("dice", "function", 3), discover.AstCandidate("Focal", "class", 9)),
        syntax_error=None,
    )
    plain = channel.to_plain(scan)
    assert {k: plain["candidates"][1][k] for k in ("name", "kind", "line")} == {"name": "Focal", "kind": "class", "line": 9}
    json.dumps(plain)  # plain data: it crosses the channel as JSON
    assert channel.from_plain(discover.FileScan, plain) == scan


@dataclass(frozen=True)
class _Later:
    """A FileScan-like class after the source helper adds fields: old data still decodes, extra keys pass."""

    path: Path
    names: frozenset[str] = frozenset()
    where: tuple[int, ...] = ()
    error: tuple[str, int | None] | None = None
    extra: dict[str, list[int]] = field(default_factory=dict)


def test_the_plain_form_survives_added_and_missing_fields():
    value = _Later(Path("/a.py"), frozenset({"b", "a"}), (1, 2), ("bad", None), {"k": [1]})
    assert channel.from_plain(_Later, channel.to_plain(value)) == value
    assert channel.from_plain(_Later, {"path": "/a.py", "unknown": 1}) == _Later(Path("/a.py"))
