"""Bad video files (zero bytes, text, a cut-off download, corrupted frames, a missing file)
through the probe, `dsan verify` and `dsan extract`: the same failure kind everywhere, and
decord's own log in the failure reason, never on the terminal."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from dsan_toolkit.clip import TINY_MODEL
from dsan_toolkit.datasets.lockfile import read_lock
from dsan_toolkit.datasets.verify import verify_dataset
from dsan_toolkit.extract import ExtractConfig, RunOptions, extract_features
from dsan_toolkit.media.failures import EMPTY, MISSING, UNDECODABLE, UNREADABLE, kind_of, reason
from dsan_toolkit.media.native_log import capture_native_stderr, clean_native_text
from dsan_toolkit.media.probe import VideoError, probe_video
from dsan_toolkit.store import open_store
from dsan_toolkit.testing import (
    cached_synthetic_dataset,
    copy_dataset,
    make_not_a_video,
    make_truncated,
    make_undecodable,
    make_zero_byte,
)

OPEN_LOG = "Invalid data found when processing input"  # what decord logs (only) for a cut-off file
RAW_DECORD_LINE = re.compile(r"\[\d\d:\d\d:\d\d\] \S+\.cc:\d+|ERROR opening")


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """The tiny synthetic dataset with five of its ten videos broken: ``(root, manifest, kinds)``."""
    src_root, m = cached_synthetic_dataset()
    root = copy_dataset(src_root, tmp_path_factory.mktemp("bad") / "data")
    v = m.videos
    good = src_root / v[0].path
    make_zero_byte(root / v[1].path)
    make_not_a_video(root / v[2].path)
    make_truncated(good, root / v[3].path, 0.5)
    make_undecodable(good, root / v[4].path)
    (root / v[5].path).unlink()
    kinds = {v[1].id: EMPTY, v[2].id: UNREADABLE, v[3].id: UNREADABLE, v[4].id: UNDECODABLE, v[5].id: MISSING}
    return root, m, kinds


def test_the_same_file_gets_the_same_failure_kind_everywhere(bad, tmp_path):
    root, m, kinds = bad
    for v in m.videos:
        if v.id in kinds:
            with pytest.raises(VideoError) as info:
                probe_video(root / v.path)
            assert info.value.reason == kinds[v.id]
    report = verify_dataset(m, root, workers=2)
    assert {c.id: c.status for c in report.checks if not c.ok} == kinds
    res = extract_features(
        m,
        root,
        tmp_path / "x.zarr",
        ExtractConfig(model=TINY_MODEL, pretrained=None, crops="center"),
        RunOptions(workers=1),
    )
    assert {vid: kind_of(error) for vid, error in res.failed} == kinds
    store = open_store(tmp_path / "x.zarr")
    assert {vid: kind_of(store.video_info(vid)["error"]) for vid in store.video_ids("failed")} == kinds
    truncated = m.videos[3].id
    assert dict(res.failed)[truncated] == reason(UNREADABLE, OPEN_LOG)  # decord's log line, cleaned
    assert OPEN_LOG in dict((c.id, " ".join(c.problems)) for c in report.checks)[truncated]


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dsan_toolkit.cli.app", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_decord_log_goes_into_the_reason_not_to_stderr(bad, tmp_path, cli, capfd):
    """Nothing decord logs reaches the stderr of `dsan extract` (in a subprocess, decoding in a
    worker process) or of `dsan verify` (in this process, a thread pool); the failure reasons
    carry it."""
    root, m, kinds = bad
    truncated = m.videos[3].id
    out = tmp_path / "x.zarr"
    r = _cli(
        "extract",
        "--dataset",
        root / "manifest.jsonl",
        "--root",
        root,
        "--out",
        out,
        "--model",
        TINY_MODEL,
        "--pretrained",
        "none",
        "--crops",
        "center",
        "--workers",
        "1",
        "--no-progress",
    )
    assert r.returncode == 1, r.stderr
    assert not RAW_DECORD_LINE.search(r.stderr), r.stderr
    assert f"failed {truncated}: unreadable: {OPEN_LOG}" in " ".join(r.stderr.split())
    assert open_store(out).video_info(truncated)["error"] == f"unreadable: {OPEN_LOG}"

    lock = tmp_path / "lock.json"
    capfd.readouterr()
    code, text = cli("verify", "--dataset", root / "manifest.jsonl", "--root", root, "--lock", lock, "--decode", "all")
    assert code == 1 and "5 of 10 videos have problems" in text, text
    assert not RAW_DECORD_LINE.search(capfd.readouterr().err + text)
    entries = read_lock(lock).videos
    assert entries[truncated]["problems"] == [OPEN_LOG]
    assert {vid: e["status"] for vid, e in entries.items() if e["status"] != "ok"} == kinds


def test_capture_keeps_python_stderr_and_always_restores_fd2():
    """In a fresh process whose sys.stderr is fd 2: native writes are captured (nested spans
    each get theirs), Python's stderr still reaches fd 2, an exception restores everything."""
    code = r"""
import os, sys
from dsan_toolkit.media.native_log import capture_native_stderr
before = sys.stderr
with capture_native_stderr() as outer:
    os.write(2, b"native 1\n")
    print("python inside", file=sys.stderr)
    with capture_native_stderr() as inner:
        os.write(2, b"native 2\n")
try:
    with capture_native_stderr() as failed:
        os.write(2, b"native 3\n")
        raise RuntimeError("boom")
except RuntimeError:
    pass
assert sys.stderr is before
os.write(2, b"native after\n")
print(repr(outer.text), repr(inner.text), repr(failed.text))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == repr("native 1\nnative 2\n") + " " + repr("native 2\n") + " " + repr("native 3\n")
    assert r.stderr.splitlines() == ["python inside", "native after"]


def test_native_text_is_cleaned_for_a_reason():
    log = (
        "[12:00:00] /src/video/video_reader.cc:83: ERROR opening: a.mp4, Invalid data found when processing input\n"
        "[12:00:00] /src/video/video_reader.cc:83: ERROR opening: b.mp4, Permission denied\n"
        "[h264 @ 0x55d0c0a8c2c0] error while decoding MB 0 0\n"
        "[h264 @ 0x55d0c0a8c2c1] error while decoding MB 0 0\n"
        "Stack trace:\n  [bt] (0) /lib/libdecord.so(+0x1) [0x7f]\n"
    )
    assert (
        clean_native_text(log, "a.mp4") == "Invalid data found when processing input; h264: error while decoding MB 0 0"
    )
    assert clean_native_text("x" * 1000).endswith("...") and len(clean_native_text("x" * 1000)) == 300
    with capture_native_stderr() as cap:
        pass
    assert cap.text == ""
    assert (
        json.dumps(reason(EMPTY, "zero bytes")) == '"empty: zero bytes"'
        and kind_of("decoder hung: x") == "decoder hung"
    )
