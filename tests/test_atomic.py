"""dsan_toolkit.utils.atomic: complete-or-absent files with ordinary permissions."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from dsan_toolkit.utils.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    atomic_writer,
    current_umask,
    default_file_mode,
)


@pytest.fixture
def umask():
    """Set a umask for one test and restore the previous one afterwards."""
    old = os.umask(0o022)
    os.umask(old)

    def set_(mask: int) -> None:
        os.umask(mask)

    yield set_
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_open_would_give(tmp_path: Path, umask, mask: int, expected: int) -> None:
    umask(mask)
    assert current_umask() == mask
    assert default_file_mode() == expected
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what a plain open() does under this umask
    writers = {
        "t.txt": lambda p: atomic_write_text(p, "héllo\n"),
        "b.bin": lambda p: atomic_write_bytes(p, b"\x00\x01"),
        "j.json": lambda p: atomic_write_json(p, {"a": 1}),
    }
    for name, write in writers.items():
        write(tmp_path / name)
        assert _mode(tmp_path / name) == expected == _mode(plain), name


def test_contents_round_trip_and_parents_are_created(tmp_path: Path) -> None:
    text = tmp_path / "a" / "b" / "t.txt"
    assert atomic_write_text(text, "line1\r\nline2\n") == text
    assert text.read_bytes() == b"line1\r\nline2\n"  # no newline translation
    data = {"z": [1, 2.5, None], "a": "ü"}
    path = atomic_write_json(tmp_path / "d.json", data)
    assert json.loads(path.read_text(encoding="utf-8")) == data
    assert path.read_text(encoding="utf-8").endswith("\n")
    assert list(json.loads(path.read_text()).keys()) == ["a", "z"]  # sorted keys by default
    with atomic_writer(tmp_path / "lines.jsonl") as fh:
        fh.write("1\n")
        fh.write("2\n")
    assert (tmp_path / "lines.jsonl").read_text() == "1\n2\n"


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, exc: BaseException) -> None:
    target = tmp_path / "report.md"
    target.write_text("old\n")
    with pytest.raises(type(exc)):
        with atomic_writer(target) as fh:
            fh.write("half of the new ")
            raise exc
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]

    new = tmp_path / "never.bin"
    with pytest.raises(type(exc)):
        with atomic_path(new, suffix=".mp4") as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith(".mp4") and tmp.exists()
            tmp.write_bytes(b"partial")
            raise exc
    assert not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_atomic_path_for_writers_that_want_a_name(tmp_path: Path, umask) -> None:
    umask(0o022)
    dest = tmp_path / "clip.mp4"
    with atomic_path(dest, suffix=".mp4") as tmp:
        assert not dest.exists()
        tmp.write_bytes(b"video")
    assert dest.read_bytes() == b"video"
    assert _mode(dest) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_writer_mode_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        with atomic_writer(tmp_path / "x", "a"):
            pass
    assert not any(tmp_path.iterdir())


def test_file_system_refusals_become_input_errors(tmp_path: Path) -> None:
    from dsan_toolkit.errors import InputError

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(InputError, match=r"cannot write .*afile/x\.json: a file is in the way"):
        atomic_write_json(blocker / "x.json", {})
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(InputError, match="it is a folder"):
        atomic_write_text(folder, "x")
    assert folder.is_dir() and not any(folder.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder"]
