"""Files and folders the toolkit writes get ordinary permissions (the umask's), not 0600.

Each writer goes through a temporary file (``tempfile.mkstemp`` creates 0600 files,
``mkdtemp`` 0700 folders) and renames it into place; these tests check the real outputs
of the commands under two umasks.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from dsan_toolkit.datasets.archives import safe_extract
from dsan_toolkit.testing import write_test_video


@pytest.fixture(params=[0o022, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_manifest_create_and_verify_lock(cli, tmp_path, umask):
    write_test_video(tmp_path / "vids" / "a.mp4", 20, seed=1)
    write_test_video(tmp_path / "vids" / "b.mp4", 20, seed=2)
    (tmp_path / "labels.csv").write_text("path,split,labels,segments\na.mp4,train,Normal,\nb.mp4,test,Fire,2-9\n")
    code, text = cli("manifest", "create", "--videos", "vids", "--labels", "labels.csv", "-o", "cams.jsonl")
    assert code == 0, text
    code, text = cli("verify", "--dataset", "cams.jsonl", "--root", "vids", "--lock", "out/cams.lock.json")
    assert code == 0, text
    expected = 0o666 & ~umask
    for path in (tmp_path / "cams.jsonl", tmp_path / "out" / "cams.lock.json", *_files(tmp_path / "vids")):
        assert _mode(path) == expected, path
    assert not list(tmp_path.rglob(".*.tmp"))


def test_synth_videos_manifest_and_sidecar(cli, tmp_path, umask):
    code, text = cli(
        "synth",
        "--out",
        "s",
        "--train-normal",
        "1",
        "--train-anomalous",
        "1",
        "--test-normal",
        "0",
        "--test-anomalous",
        "1",
        "--min-frames",
        "40",
        "--max-frames",
        "40",
        "--width",
        "32",
        "--height",
        "32",
    )
    assert code == 0, text
    files = _files(tmp_path / "s")
    assert {p.suffix for p in files} == {".mp4", ".jsonl", ".json"} and len(files) == 5
    assert {_mode(p) for p in files} == {0o666 & ~umask}


def test_extracted_archive_folder_is_not_private(tmp_path, umask):
    archive = tmp_path / "part.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("videos/x.mp4", b"data")
    dest = tmp_path / "extracted"
    assert safe_extract(archive, dest) == ["videos/x.mp4"]
    assert _mode(dest) == 0o777 & ~umask  # mkdtemp alone would leave 0700
    assert _mode(dest / "videos") == 0o777 & ~umask
    assert _mode(dest / "videos" / "x.mp4") == 0o666 & ~umask


def test_file_system_refusals_are_short_messages(cli, tmp_path):
    """An OSError the user can fix (a file where a folder must be) is a message, not a traceback."""
    (tmp_path / "afile").write_text("x")
    code, text = cli("synth", "--out", "afile/sub")
    assert code == 2 and "cannot use afile/sub" in text and "Not a directory" in text
    assert "Traceback" not in text
    write_test_video(tmp_path / "vids" / "a.mp4", 20, seed=1)
    (tmp_path / "labels.csv").write_text("path,split,labels\na.mp4,train,Normal\n")
    (tmp_path / "outdir").mkdir()
    code, text = cli("manifest", "create", "--videos", "vids", "--labels", "labels.csv", "-o", "outdir", "--overwrite")
    assert code == 2 and "outdir is a folder" in text
    code, text = cli("manifest", "create", "--videos", "vids", "--labels", "labels.csv", "-o", "afile/m.jsonl")
    assert code == 2 and "cannot write afile/m.jsonl: a file is in the way" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "labels.csv", "outdir", "vids"]
