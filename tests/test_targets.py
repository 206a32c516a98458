"""Targets into files: folders walked without hanging, odd files skipped with a note, explicit ones checked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lossdiag import discover, targets


def _rel(found: targets.Resolved, root: Path) -> list[str]:
    return [t.path.relative_to(root.resolve()).as_posix() for t in found.files]


def test_discover_still_exports_what_moved():
    assert discover.resolve_targets is targets.resolve_targets
    assert discover.TargetError is targets.TargetError
    assert discover.display_path is targets.display_path


def test_a_walk_skips_fifos_dangling_links_and_special_files_with_a_note(tmp_path):
    (tmp_path / "good.py").write_text("")
    os.mkfifo(tmp_path / "pipe.py")
    (tmp_path / "dangling.py").symlink_to(tmp_path / "nowhere.py")
    (tmp_path / "link.py").symlink_to(tmp_path / "good.py")  # a link to a regular file: that file, once
    (tmp_path / "folder.py").mkdir()  # a folder named like a module is walked like any folder
    (tmp_path / "folder.py" / "inner.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    found = targets.resolve(["."], tmp_path)
    assert _rel(found, tmp_path) == ["folder.py/inner.py", "good.py"]
    assert found.notes == (
        "dangling.py: skipped, a dangling symbolic link",
        "pipe.py: skipped, a named pipe, not a regular file",
    )


def test_a_walk_skips_unreadable_files_with_a_note(tmp_path, monkeypatch):
    (tmp_path / "good.py").write_text("")
    (tmp_path / "secret.py").write_text("")
    real_open = os.open

    def deny(path, flags, *args, **kwargs):  # root reads everything: simulate a file without permission
        if str(path).endswith("secret.py"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    found = targets.resolve(["."], tmp_path)
    assert _rel(found, tmp_path) == ["good.py"]
    assert found.notes == ("secret.py: skipped, cannot read it (Permission denied)",)


def test_a_walk_does_not_follow_links_to_folders(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("")
    (tmp_path / "pkg" / "loop").symlink_to(tmp_path)  # a cycle, if followed
    found = targets.resolve(["."], tmp_path)
    assert _rel(found, tmp_path) == ["pkg/a.py"]


def test_a_fifo_named_on_the_command_line_is_a_usage_error_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "pipe.py")
    with pytest.raises(targets.TargetError, match=r"pipe\.py: a named pipe, not a regular file"):
        targets.resolve(["pipe.py"], tmp_path)
    (tmp_path / "dangling.py").symlink_to(tmp_path / "nowhere.py")
    with pytest.raises(targets.TargetError, match=r"dangling\.py: a dangling symbolic link"):
        targets.resolve(["dangling.py"], tmp_path)


def test_an_unlistable_folder_is_a_note(tmp_path, monkeypatch):
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.py").write_text("")
    (tmp_path / "closed").mkdir()
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("closed"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = targets.resolve(["."], tmp_path)
    assert _rel(found, tmp_path) == ["ok/a.py"]
    assert found.notes == ("closed/: skipped, cannot list it (Permission denied)",)
