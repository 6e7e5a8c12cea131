"""Import/export of the released VadCLIP layout and store comparison, on real .npy files."""

from __future__ import annotations

import csv

import numpy as np

from dsan_toolkit.manifest.builtin import load_builtin_manifest
from dsan_toolkit.store import open_store
from dsan_toolkit.store.interop import compare_stores, export_features, import_features, read_feature_list

UCF_IDS = ["Abuse001_x264", "Normal_Videos001_x264", "Abuse028_x264", "Normal_Videos_003_x264"]


def _write_release(tmp_path, crops_per_video=10, T=(5, 7, 4, 6)):
    """A miniature release: per-crop .npy files in category folders + official-style lists."""
    m = load_builtin_manifest("ucf")
    root = tmp_path / "UCFClipFeatures"
    rng = np.random.default_rng(0)
    truth = {}
    for vid, t in zip(UCF_IDS, T):
        v = m.video(vid)
        folder = root / v.path.split("/")[0]
        folder.mkdir(parents=True, exist_ok=True)
        truth[vid] = rng.standard_normal((crops_per_video, t, 512)).astype(np.float32)
        for c in range(crops_per_video):
            np.save(folder / f"{vid}__{c}.npy", truth[vid][c])
    train = tmp_path / "ucf_CLIP_rgb.csv"
    test = tmp_path / "ucf_CLIP_rgbtest.csv"
    with open(train, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for vid in UCF_IDS[:2]:
            for c in range(10):
                w.writerow([f"/data/VAD/UCFCrime/UCFClipFeatures/X/{vid}__{c}.npy", m.video(vid).labels[0]])
    with open(test, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for vid in UCF_IDS[2:]:
            w.writerow([f"/home/someone/feats/{vid}__5.npy", m.video(vid).labels[0]])
    return root, train, test, truth


def test_import_export_round_trip_and_compare(tmp_path, cli):
    root, train, test, truth = _write_release(tmp_path)
    np.save(root / "Abuse" / "Stray_x264__0.npy", np.zeros((2, 512), np.float32))  # an extra file
    rep = import_features("vadclip", [train, test], root, load_builtin_manifest("ucf"), tmp_path / "rel.zarr")
    assert rep.ok and rep.imported == 4 and rep.extra_files == ["Stray_x264__0.npy"]
    assert sorted(rep.unchecked) == sorted(UCF_IDS)  # the built-in manifest has no frame counts
    s = open_store(tmp_path / "rel.zarr")
    assert s.crop_ids == list(range(10)) and s.complete
    assert s.video_ids() == [v.id for v in load_builtin_manifest("ucf").videos if v.id in UCF_IDS]
    for vid in UCF_IDS:
        np.testing.assert_array_equal(s.read(vid), truth[vid])

    out = tmp_path / "export"
    r = export_features(s, out)
    assert r["files"] == 40 and r["test_crop"] == 5
    rows = read_feature_list(out / "ucf_CLIP_rgbtest.csv")
    assert sorted(n for n, _, _ in rows) == sorted(UCF_IDS[2:]) and {c for _, c, _ in rows} == {5}
    assert (out / "Abuse" / "Abuse001_x264__3.npy").is_file()
    np.testing.assert_array_equal(np.load(out / "Abuse" / "Abuse028_x264__5.npy"), truth["Abuse028_x264"][5])

    # re-import the export: identical content, and compare says identical
    code, text = cli(
        "import-features",
        "--list",
        out / "ucf_CLIP_rgb.csv",
        "--list",
        out / "ucf_CLIP_rgbtest.csv",
        "--root",
        out,
        "--dataset",
        "ucf",
        "--out",
        tmp_path / "again.zarr",
    )
    assert code == 0, text
    assert "4 imported videos have no frame count" in " ".join(text.split()) and "--lock" in text
    res = compare_stores(s, open_store(tmp_path / "again.zarr"))
    assert res["summary"]["common"] == 4 and res["summary"]["same_length"] == 4
    assert abs(res["summary"]["cos_mean"] - 1.0) < 1e-6
    code, text = cli("compare-features", tmp_path / "rel.zarr", tmp_path / "again.zarr", "--min-cos", "0.999")
    assert code == 0 and "1.0000" in text


def test_import_reports_missing_bad_and_unknown(tmp_path, cli):
    root, train, test, truth = _write_release(tmp_path)
    (root / "Abuse" / "Abuse001_x264__7.npy").unlink()
    bad = next(root.rglob("Abuse028_x264__2.npy"))
    np.save(bad, np.zeros((4, 256), np.float32))  # wrong feature dim
    for c in range(10):  # a video of no rows
        np.save(next(root.rglob(f"Normal_Videos001_x264__{c}.npy")), np.zeros((0, 512), np.float32))
    # a listed name that is not a UCF video
    with open(test, "a", newline="") as fh:
        csv.writer(fh).writerow(["/x/Bogus_x264__5.npy", "Abuse"])
    code, text = cli(
        "import-features",
        "--list",
        train,
        "--list",
        test,
        "--root",
        root,
        "--dataset",
        "ucf",
        "--out",
        tmp_path / "bad.zarr",
    )
    flat = " ".join(text.split())
    assert code == 1 and "missing file Abuse001_x264__7.npy" in flat and "Bogus_x264" in flat
    assert "Abuse028_x264__2.npy: shape (4, 256), expected (T, 512)" in flat
    assert "Normal_Videos001_x264: no rows (0 snippets)" in flat
    s = open_store(tmp_path / "bad.zarr")
    assert "Abuse001_x264" in s.video_ids("failed") and "Normal_Videos_003_x264" in s.video_ids()
    code, text = cli(
        "import-features",
        "--list",
        tmp_path / "nope.csv",
        "--root",
        root,
        "--dataset",
        "ucf",
        "--out",
        tmp_path / "x.zarr",
    )
    assert code == 2 and "not found" in text


def test_compare_detects_differences(tmp_path):
    root, train, test, truth = _write_release(tmp_path, T=(5, 7, 4, 6))
    m = load_builtin_manifest("ucf")
    import_features("vadclip", [train, test], root, m, tmp_path / "a.zarr")
    for vid in UCF_IDS[:1]:  # perturb one video strongly and shorten another
        for c in range(10):
            p = next(root.rglob(f"{vid}__{c}.npy"))
            np.save(p, -truth[vid][c])
    p = next(root.rglob("Normal_Videos001_x264__0.npy"))
    for c in range(10):
        p = next(root.rglob(f"Normal_Videos001_x264__{c}.npy"))
        np.save(p, truth["Normal_Videos001_x264"][c][:5])
    import_features("vadclip", [train, test], root, m, tmp_path / "b.zarr")
    res = compare_stores(open_store(tmp_path / "a.zarr"), open_store(tmp_path / "b.zarr"), crops=[5])
    by = {r["id"]: r for r in res["videos"]}
    assert by["Abuse001_x264"]["cos_mean"] < -0.99
    assert not by["Normal_Videos001_x264"]["same_length"] and by["Normal_Videos001_x264"]["cos_mean"] > 0.999
    assert res["summary"]["same_length"] == 3


def test_row_counts_that_contradict_the_frame_count_are_refused_or_flagged(tmp_path, cli):
    from dsan_toolkit.datasets.lockfile import LockFile, write_lock

    root, train, test, truth = _write_release(tmp_path, T=(5, 7, 4, 6))
    m = load_builtin_manifest("ucf")
    # frame counts as `dsan verify` records them: Abuse001 (5 rows) has 15 * 16 frames; the
    # others fit within the tolerance of one row (7 rows for 8 * 16 + 3 frames: 8, off by one)
    frames = {
        "Abuse001_x264": 15 * 16,
        "Normal_Videos001_x264": 8 * 16 + 3,
        "Abuse028_x264": 4 * 16 + 15,
        "Normal_Videos_003_x264": 6 * 16,
    }
    lock = tmp_path / "ucf.lock.json"
    write_lock(
        LockFile(
            dataset="ucf",
            manifest_hash=m.content_hash(),
            videos={v: {"status": "ok", "num_frames": n} for v, n in frames.items()},
        ),
        lock,
    )
    args = ["import-features", "--list", train, "--list", test, "--root", root, "--dataset", "ucf", "--lock", lock]
    code, text = cli(*args, "--out", tmp_path / "strict.zarr")
    flat = " ".join(text.split())
    assert code == 1, text
    assert "Abuse001_x264: 5 rows, but its 240 frames give 15 snippets of 16 (tolerance 1 row)" in flat
    assert "--allow-length-mismatch" in flat
    s = open_store(tmp_path / "strict.zarr")
    assert s.video_ids("failed") == ["Abuse001_x264"] and len(s.video_ids()) == 3
    code, text = cli("store", "info", tmp_path / "strict.zarr")
    assert code == 0 and "complete with 1 failed" in " ".join(text.split())
    # explicitly allowed: imported, flagged in the record, in `store info` and `store check`
    code, text = cli(*args, "--allow-length-mismatch", "--out", tmp_path / "flagged.zarr")
    assert code == 0, text
    s = open_store(tmp_path / "flagged.zarr")
    assert len(s.video_ids()) == 4 and list(s.flagged()) == ["Abuse001_x264"]
    assert s.video_info("Abuse001_x264")["num_frames"] == 240
    np.testing.assert_array_equal(s.read("Abuse001_x264"), truth["Abuse001_x264"])
    code, text = cli("store", "info", tmp_path / "flagged.zarr")
    assert code == 0 and "flagged" in text and "Abuse001_x264" in text
    code, text = cli("store", "check", tmp_path / "flagged.zarr", "--no-values")
    assert "Abuse001_x264: flagged: length mismatch: 5 rows" in " ".join(text.split())
    # the two stores have different identities (the option is part of the import config)
    assert open_store(tmp_path / "strict.zarr").attrs["config_hash"] != s.attrs["config_hash"]
    # a lock file of another dataset is refused
    write_lock(LockFile(dataset="xd", manifest_hash="x", videos={}), tmp_path / "xd.lock.json")
    code, text = cli(*args[:-1], tmp_path / "xd.lock.json", "--out", tmp_path / "x.zarr")
    assert code == 2 and "lock file of dataset 'xd'" in text


def test_a_pickled_first_file_is_refused_like_any_other(tmp_path, cli):
    root, train, test, truth = _write_release(tmp_path)
    first = next(root.rglob("Abuse001_x264__0.npy"))  # the first file of the first listed video
    np.save(first, np.array([{"evil": 1}, None], dtype=object), allow_pickle=True)
    code, text = cli(
        "import-features",
        "--list",
        train,
        "--list",
        test,
        "--root",
        root,
        "--dataset",
        "ucf",
        "--out",
        tmp_path / "p.zarr",
    )
    flat = " ".join(text.split())
    assert code == 1 and "Traceback" not in text, text
    assert "failed Abuse001_x264: Abuse001_x264__0.npy: not a readable .npy" in flat
    assert "allow_pickle" in flat  # numpy's own reason: it refused to unpickle
    s = open_store(tmp_path / "p.zarr")
    assert s.video_ids("failed") == ["Abuse001_x264"] and len(s.video_ids()) == 3
    # every file unreadable: one clear message, no store
    for p in root.rglob("*.npy"):
        np.save(p, np.array([None], dtype=object), allow_pickle=True)
    code, text = cli(
        "import-features",
        "--list",
        train,
        "--list",
        test,
        "--root",
        root,
        "--dataset",
        "ucf",
        "--out",
        tmp_path / "none.zarr",
    )
    assert code == 2 and "is a readable (T, D) .npy array" in " ".join(text.split())
    assert not (tmp_path / "none.zarr").exists()
