"""probe_video and dsan verify on real synthetic videos and deliberately broken files."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from dsan_toolkit import __version__
from dsan_toolkit.config import sha256_file
from dsan_toolkit.datasets.lockfile import read_lock
from dsan_toolkit.datasets.verify import verify_dataset
from dsan_toolkit.errors import InputError
from dsan_toolkit.manifest import Manifest, Segment, read_manifest, write_manifest
from dsan_toolkit.media import VideoError, probe_video
from dsan_toolkit.testing import (
    cached_synthetic_dataset,
    copy_dataset,
    make_corrupt,
    make_not_a_video,
    make_truncated,
    make_zero_byte,
    write_test_video,
)


@pytest.fixture(scope="module")
def clean():
    return cached_synthetic_dataset()  # shared, read-only


@pytest.fixture()
def data(clean, tmp_path):
    """A private copy of the tiny synthetic dataset, free to break."""
    root, m = clean
    return copy_dataset(root, tmp_path / "data"), m


# -- probe ----------------------------------------------------------------------------------


def test_probe_real_video(clean, tmp_path):
    root, m = clean
    v = m.videos[0]
    p = probe_video(root / v.path)
    assert (p.num_frames, p.fps, p.width, p.height) == (v.num_frames, 16.0, 64, 48)
    assert p.duration == pytest.approx(v.num_frames / 16.0)
    assert p.size == (root / v.path).stat().st_size
    assert probe_video(root / v.path, decode="all") == p
    other = probe_video(write_test_video(tmp_path / "x.mp4", 20, width=32, height=24, fps=25.0))
    assert (other.num_frames, other.fps, other.width, other.height) == (20, 25.0, 32, 24)
    assert type(p).from_dict(p.to_dict()) == p


def test_probe_broken_files(clean, tmp_path):
    root, m = clean
    src = root / m.videos[0].path
    cases = {
        "missing": tmp_path / "nope.mp4",
        "empty": make_zero_byte(tmp_path / "zero.mp4"),
        "unreadable": make_not_a_video(tmp_path / "text.mp4"),
    }
    for reason, path in cases.items():
        with pytest.raises(VideoError) as info:
            probe_video(path)
        assert info.value.reason == reason and str(path) in str(info.value)
        assert "\n" not in str(info.value)
    for keep in (0.3, 0.9):
        with pytest.raises(VideoError) as info:
            probe_video(make_truncated(src, tmp_path / f"trunc{keep}.mp4", keep))
        assert info.value.reason in {"unreadable", "undecodable"}
    with pytest.raises(VideoError) as info:
        probe_video(make_corrupt(src, tmp_path / "corrupt.mp4", fraction=0.2))
    assert info.value.reason in {"unreadable", "undecodable"}
    with pytest.raises(VideoError) as info:
        probe_video(tmp_path)
    assert info.value.reason == "unreadable"
    with pytest.raises(InputError, match="decode"):
        probe_video(src, decode="some")  # type: ignore[arg-type]


# -- verify_dataset -----------------------------------------------------------------------


def test_verify_clean_dataset_writes_lock(data):
    root, m = data
    lock_path = root / "synth.lock.json"
    report = verify_dataset(m, root, checksums=True, workers=2, lock_path=lock_path)
    assert report.ok and report.counts()["ok"] == len(m) and report.summary() == f"all {len(m)} videos ok"
    assert report.diff is None
    lock = read_lock(lock_path)
    raw = json.loads(lock_path.read_text())
    assert raw["lock_version"] == 1 and raw["toolkit_version"] == __version__
    assert lock.dataset == "synth" and lock.manifest_hash == m.content_hash() and lock.checksums
    assert set(lock.videos) == {v.id for v in m.videos}
    for v in m.videos:
        e = lock.videos[v.id]
        assert e["status"] == "ok" and e["path"] == v.path
        assert e["num_frames"] == v.num_frames and e["fps"] == 16.0
        assert (e["width"], e["height"]) == (64, 48)
        assert e["size"] == (root / v.path).stat().st_size
        assert e["sha256"] == sha256_file(root / v.path)
        assert lock.probe_of(v.id).num_frames == v.num_frames
    assert not list(root.glob(".*.tmp"))  # atomic write left nothing behind

    again = verify_dataset(m, root, workers=1, lock_path=lock_path)
    assert again.ok and again.diff is not None and again.diff.empty
    assert any("--checksums" in n for n in again.diff.notes)
    assert "sha256" not in read_lock(lock_path).videos[m.videos[0].id]


def test_verify_broken_and_mismatching(data, tmp_path):
    root, m = data
    vids = list(m.videos)
    src = root / vids[0].path
    make_truncated(src, root / vids[1].path, 0.5)
    make_zero_byte(root / vids[2].path)
    make_not_a_video(root / vids[3].path)
    (root / vids[4].path).unlink()
    # manifest lies: a wrong frame count, a wrong explicit fps, a segment past the end
    test_anom = next(v for v in vids if v.segments)
    changed = {
        vids[5].id: replace(vids[5], num_frames=vids[5].num_frames + 1),
        vids[6].id: replace(vids[6], fps=25.0),
        test_anom.id: replace(
            test_anom, segments=(Segment(0, test_anom.num_frames + 5, test_anom.labels[0]),), num_frames=None
        ),
    }
    lying = Manifest(m.info, tuple(changed.get(v.id, v) for v in vids))
    report = verify_dataset(lying, root, lock_path=tmp_path / "lock.json")
    status = {c.id: c.status for c in report.checks}
    assert status[vids[1].id] == "unreadable"
    assert status[vids[2].id] == "empty"
    assert status[vids[3].id] == "unreadable"
    assert status[vids[4].id] == "missing"
    assert status[vids[5].id] == "mismatch" and status[vids[6].id] == "mismatch"
    assert status[test_anom.id] == "mismatch"
    problems = {c.id: " ".join(c.problems) for c in report.checks}
    assert f"num_frames: manifest {vids[5].num_frames + 1}, file {vids[5].num_frames}" in problems[vids[5].id]
    assert "fps: manifest 25, file 16" in problems[vids[6].id]
    assert "past the last frame" in problems[test_anom.id]
    assert not report.ok
    assert report.counts() == {
        "ok": len(vids) - 7,
        "missing": 1,
        "empty": 1,
        "unreadable": 2,
        "undecodable": 0,
        "mismatch": 3,
    }
    assert "7 of 10 videos have problems" in report.summary()
    lock = read_lock(tmp_path / "lock.json")
    assert lock.videos[vids[4].id]["status"] == "missing" and "num_frames" not in lock.videos[vids[4].id]
    assert lock.probe_of(vids[4].id) is None


def test_nominal_fps_difference_is_a_warning(data):
    root, m = data
    nominal = Manifest(replace(m.info, fps=30.0), tuple(replace(v, fps=None) for v in m.videos))
    report = verify_dataset(nominal, root)
    assert report.ok and len(report.warned) == len(m)
    assert "(nominal)" in report.warned[0].warnings[0]
    assert verify_dataset(nominal, root, fps_tolerance=1.0).warned == ()


def test_rerun_reports_changes(data, tmp_path):
    root, m = data
    lock = tmp_path / "lock.json"
    verify_dataset(m, root, checksums=True, lock_path=lock)
    vids = list(m.videos)
    # a file replaced by another valid video (other length), one removed from the manifest, one added
    write_test_video(root / vids[0].path, num_frames=vids[0].num_frames + 3, width=64, height=48)
    extra = replace(vids[1], id="extra_video")
    smaller = Manifest(m.info, tuple(v for v in vids if v.id != vids[2].id) + (extra,))
    report = verify_dataset(smaller, root, checksums=True, lock_path=lock)
    diff = report.diff
    assert diff is not None and not diff.empty
    assert set(diff.changed) == {vids[0].id}
    text = " ".join(diff.changed[vids[0].id])
    assert f"num_frames: {vids[0].num_frames} -> {vids[0].num_frames + 3}" in text and "sha256" in text
    assert diff.added == ("extra_video",) and diff.removed == (vids[2].id,)
    assert any("manifest changed" in n for n in diff.notes)
    # a video that breaks shows up as a status change
    make_zero_byte(root / vids[1].path)
    report = verify_dataset(smaller, root, lock_path=lock)
    assert report.diff.changed[vids[1].id] == ("status: ok -> empty",)


def test_same_result_serial_and_parallel(data):
    root, m = data
    make_zero_byte(root / m.videos[3].path)
    a = verify_dataset(m, root, workers=1, checksums=True)
    b = verify_dataset(m, root, workers=4, checksums=True)
    assert [(c.id, c.status, c.probe, c.sha256) for c in a.checks] == [
        (c.id, c.status, c.probe, c.sha256) for c in b.checks
    ]


def test_verify_input_errors(data, tmp_path):
    root, m = data
    with pytest.raises(InputError, match="not a folder"):
        verify_dataset(m, tmp_path / "nope")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not a readable lock file"):
        verify_dataset(m, root, lock_path=tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"dataset": "ucf", "manifest_hash": "x", "videos": {}}))
    with pytest.raises(InputError, match="belongs to dataset 'ucf'"):
        verify_dataset(m, root, lock_path=tmp_path / "other.json")
    with pytest.raises(InputError, match="decode"):
        verify_dataset(m, root, decode="fast")
    with pytest.raises(InputError, match="workers"):
        verify_dataset(m, root, workers=0)


# -- CLI ----------------------------------------------------------------------------------


def test_cli_verify_ok_then_changed(cli, data):
    root, m = data
    manifest = root / "manifest.jsonl"
    code, out = cli("verify", "--dataset", manifest, "--root", root, "--checksums", "-j", "2")
    assert code == 0, out
    assert f"all {len(m)} videos ok" in out and (root / "synth.lock.json").is_file()
    code, out = cli("verify", "-d", manifest, "-r", root, "--fail-on-change")
    assert code == 0 and "no change since the previous lock file" in out
    # same frame count, other content: still valid, but not the file the lock recorded
    write_test_video(root / m.videos[0].path, num_frames=m.videos[0].num_frames, width=64, height=48)
    code, out = cli("verify", "-d", manifest, "-r", root, "--fail-on-change", "--no-lock")
    assert code == 0  # without a lock there is nothing to compare
    code, out = cli("verify", "-d", manifest, "-r", root, "--fail-on-change", "--checksums")
    assert code == 1 and "changes since the previous lock file" in out and m.videos[0].id in out
    assert "size" in out and "files changed" in out
    code, out = cli("verify", "-d", manifest, "-r", root)  # the lock was updated: now it passes
    assert code == 0 and "no change" in out


def test_cli_verify_broken(cli, data, tmp_path):
    root, m = data
    make_truncated(root / m.videos[0].path, root / m.videos[1].path, 0.5)
    make_zero_byte(root / m.videos[2].path)
    (root / m.videos[3].path).unlink()
    code, out = cli(
        "verify", "-d", root / "manifest.jsonl", "-r", root, "--lock", tmp_path / "l.json", "--decode", "all"
    )
    assert code == 1
    for v in (m.videos[1], m.videos[2], m.videos[3]):
        assert v.id in out
    assert "unreadable" in out and "empty" in out and "missing" in out
    assert "3 of 10 videos have problems" in out and "Traceback" not in out
    assert read_lock(tmp_path / "l.json").videos[m.videos[2].id]["status"] == "empty"
    code, out = cli("verify", "-d", root / "manifest.jsonl", "-r", root, "--no-lock", "--show", "1")
    assert code == 1 and "and 2 more" in out


def test_cli_verify_split(cli, data):
    root, m = data
    code, out = cli("verify", "-d", root / "manifest.jsonl", "-r", root, "--split", "test")
    assert code == 0 and "all 5 videos ok" in out
    assert (root / "synth-test.lock.json").is_file() and not (root / "synth.lock.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "nosuch"], "unknown dataset 'nosuch'"),
        (["--dataset", "missing.jsonl"], "not found"),
        (["--root", "/nonexistent/dir"], "not a folder"),
        (["--decode", "fast"], "decode"),
        (["--split", "val"], "split 'val'"),
        (["--workers", "0"], "workers"),
    ],
)
def test_cli_verify_errors(cli, clean, args, message):
    root, _ = clean
    base = {"--dataset": str(root / "manifest.jsonl"), "--root": str(root)}
    opts = dict(base)
    extra: list[str] = []
    for i in range(0, len(args), 2):
        if args[i] in opts:
            opts[args[i]] = args[i + 1]
        else:
            extra += args[i : i + 2]
    flat = [x for kv in opts.items() for x in kv] + extra + ["--no-lock"]
    code, out = cli("verify", *flat)
    assert code == 2, out
    assert message in out and "Traceback" not in out


def test_cli_verify_builtin_dataset_missing_root_videos(cli, tmp_path):
    """A built-in manifest against an empty root: refused, nothing written; with
    --allow-missing every video is missing, exit 1, lock written."""
    code, out = cli("verify", "--dataset", "xd", "--root", tmp_path, "--split", "test", "--show", "3")
    flat = " ".join(out.split())
    assert code == 2 and "does not look like this dataset's video root: 0 of 800 videos found" in flat, out
    assert f"{tmp_path}/test/" in flat and "--allow-missing" in flat and "Traceback" not in out
    assert list(tmp_path.iterdir()) == []
    code, out = cli(
        "verify", "--dataset", "xd", "--root", tmp_path, "--split", "test", "--show", "3", "--allow-missing"
    )
    assert code == 1
    assert "800 of 800 videos have problems (800 missing)" in out
    lock = read_lock(tmp_path / "xd-test.lock.json")
    assert len(lock.videos) == 800 and {e["status"] for e in lock.videos.values()} == {"missing"}


def test_a_root_with_few_of_the_videos_is_refused_before_the_lock(cli, data, tmp_path):
    """More than half missing: refused with the counts, an example path and, when the videos
    found are all of one split, that split; exactly half missing goes on."""
    root, m = data
    manifest = root / "manifest.jsonl"
    train = [v for v in m.videos if v.split == "train"]
    for v in train:
        (root / v.path).unlink()
    (root / next(v for v in m.videos if v.split == "test").path).unlink()  # 4 of 10 left, all test
    code, out = cli("verify", "-d", manifest, "-r", root)
    flat = " ".join(out.split())
    assert code == 2 and "4 of 10 videos found" in flat and f"{root / train[0].path} does not exist" in flat, out
    assert "add --split test" in flat
    assert not (root / "synth.lock.json").exists()
    with pytest.raises(InputError, match="4 of 10 videos found"):
        verify_dataset(m, root, lock_path=tmp_path / "l.json")
    assert not (tmp_path / "l.json").exists()
    code, out = cli("verify", "-d", manifest, "-r", root, "--split", "test")  # 4 of 5: checked
    assert code == 1 and "1 of 5 videos have problems (1 missing)" in out
    report = verify_dataset(m, root, allow_missing=True)
    assert report.counts()["missing"] == 6


def test_manifest_written_and_read_back_verifies(data, tmp_path):
    """A manifest written elsewhere (paths relative to the root) verifies against the root."""
    root, m = data
    write_manifest(m, tmp_path / "elsewhere.jsonl")
    assert verify_dataset(read_manifest(tmp_path / "elsewhere.jsonl"), root).ok


def test_decord_logging_is_silenced_during_verify(data, capfd):
    """decord's C++ logger writes to fd 2 for every unreadable file; verify keeps it quiet."""
    root, m = data
    make_not_a_video(root / m.videos[0].path)
    import decord

    with pytest.raises(RuntimeError):  # decord's "Error reading ..."
        decord.VideoReader(str(root / m.videos[0].path))
    assert "ERROR opening" in capfd.readouterr().err  # what decord does on its own
    report = verify_dataset(m, root, workers=2)
    assert report.counts()["unreadable"] == 1
    assert capfd.readouterr().err == ""
