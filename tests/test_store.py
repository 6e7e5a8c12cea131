"""Feature store: writer/reader round trip, resume semantics, refusal, check, synthetic stores."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from dsan_toolkit.errors import InputError
from dsan_toolkit.manifest import DatasetInfo, Manifest, VideoRecord
from dsan_toolkit.manifest.builtin import load_builtin_manifest
from dsan_toolkit.store import StoreSpec, StoreWriter, finalize_store, open_store
from dsan_toolkit.store.check import check_store
from dsan_toolkit.store.synthetic import SynthFeaturesConfig, synthetic_manifest, write_synthetic_feature_store


def _manifest(n: int = 4) -> Manifest:
    base = load_builtin_manifest("ucf").info
    info = DatasetInfo(name="t", classes=base.classes, fps=30.0)
    vids = tuple(
        VideoRecord(
            id=f"vid #{i}=x",
            path=f"a/{i}.mp4",
            split="train" if i % 2 else "test",
            labels=("Normal",),
            num_frames=16 * (i + 2),
        )
        for i in range(n)
    )
    return Manifest(info, vids)


def _spec(m: Manifest, **kw) -> StoreSpec:
    args = dict(
        manifest=m,
        crops=(0, 5),
        feature_dim=8,
        backbone={"model": "x"},
        random_weights=False,
        preprocessing={"p": 1},
        snippet_rule="middle",
        config={"c": 1},
        producer="test",
        chunk_t=3,
    )
    args.update(kw)
    return StoreSpec(**args)


def _feats(i: int, T: int) -> np.ndarray:
    return np.random.default_rng(i).standard_normal((2, T, 8)).astype(np.float32)


def test_round_trip_blocks_and_api(tmp_path):
    m = _manifest()
    path = tmp_path / "s.zarr"
    with StoreWriter(path, _spec(m)) as w:
        for i, v in enumerate(m.videos[:3]):
            T = i + 2
            sink = w.begin_video(v.id, T, num_frames=v.num_frames, fps=30.0)
            f = _feats(i, T)
            for t0 in range(0, T, 2):  # blocks smaller than a chunk, across chunk borders
                sink.write_rows(t0, f[:, t0 : t0 + 2])
            sink.commit()
        w.fail_video(m.videos[3].id, "unreadable: broken file", num_frames=0)
        res = w.finalize()
    assert res.complete and res.done == 3 and res.failed == 1
    s = open_store(path)
    assert s.attrs["complete"] and s.crop_ids == [0, 5] and s.num_crops == 2 and s.feature_dim == 8
    assert s.video_ids() == [v.id for v in m.videos[:3]]
    assert s.video_ids("failed") == [m.videos[3].id]
    assert s.lengths() == {m.videos[i].id: i + 2 for i in range(3)}
    assert s.video_info(m.videos[3].id)["error"] == "unreadable: broken file"
    np.testing.assert_array_equal(s.read(m.videos[1].id), _feats(1, 3))
    np.testing.assert_array_equal(s.read(m.videos[1].id, 5), _feats(1, 3)[1])
    np.testing.assert_array_equal(s.read(m.videos[1].id, [5, 0]), _feats(1, 3)[::-1])
    assert s.read_tensor(m.videos[0].id, 0).shape == (2, 8)
    feats, offs = s.load_all(crop=5)
    assert offs.tolist() == [0, 2, 5, 9]
    np.testing.assert_array_equal(feats[2:5], _feats(1, 3)[1])
    assert s.manifest.content_hash() == m.content_hash()
    with pytest.raises(InputError, match="crop 3"):
        s.read(m.videos[0].id, 3)
    with pytest.raises(InputError, match="failed"):
        s.read(m.videos[3].id)


def test_a_feature_store_is_feature_store_like(tmp_path):
    """The protocol the layers above take a store as (checked statically too: its members are
    FeatureStore's)."""
    from dsan_toolkit.store import FeatureStore, FeatureStoreLike

    m = _manifest(2)
    with StoreWriter(tmp_path / "s.zarr", _spec(m)) as w:
        w.write_video(m.videos[0].id, _feats(0, 2))
    s = open_store(tmp_path / "s.zarr")
    assert isinstance(s, FeatureStoreLike) and isinstance(s, FeatureStore)
    assert not isinstance(object(), FeatureStoreLike)


def test_resume_skips_done_and_refuses_other_config(tmp_path):
    m = _manifest()
    path = tmp_path / "s.zarr"
    with StoreWriter(path, _spec(m)) as w:
        w.write_video(m.videos[0].id, _feats(0, 2))
        # a half-written video (as left by SIGKILL) is only staging debris
        sink = w.begin_video(m.videos[1].id, 3, num_frames=None, fps=None)
        sink.write_rows(0, _feats(1, 3)[:, :1])
        assert not w.finalize().complete
    assert open_store(path).video_ids() == [m.videos[0].id]
    with StoreWriter(path, _spec(m)) as w:
        assert w.pending_ids() == [v.id for v in m.videos[1:]]
        assert not (path / ".staging" / "r0").exists() or not any((path / ".staging" / "r0").iterdir())
    with pytest.raises(InputError, match="different configuration"):
        StoreWriter(path, _spec(m, snippet_rule="mean")).open()
    with pytest.raises(InputError, match="different configuration"):
        StoreWriter(path, _spec(m.select([v.id for v in m.videos[:2]]))).open()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(InputError, match="not a dsan feature store"):
        StoreWriter(tmp_path / "other", _spec(m), overwrite=True).open()


def test_open_store_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        open_store(tmp_path / "nope.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a Zarr store"):
        open_store(tmp_path / "empty")
    import zarr

    zarr.create_group(str(tmp_path / "plain.zarr"))
    with pytest.raises(InputError, match="not a dsan feature store"):
        open_store(tmp_path / "plain.zarr")
    m = _manifest(1)
    with StoreWriter(tmp_path / "s.zarr", _spec(m)) as w:
        w.write_video(m.videos[0].id, _feats(0, 2))
    meta = tmp_path / "s.zarr" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["schema_version"] = 99
    meta.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="schema version 99"):
        open_store(tmp_path / "s.zarr")


def test_content_hash_detects_swapped_arrays_and_check_finds_problems(tmp_path):
    m = _manifest(3)
    path = tmp_path / "s.zarr"
    with StoreWriter(path, _spec(m)) as w:
        for i, v in enumerate(m.videos):
            w.write_video(v.id, _feats(i, 3), num_frames=v.num_frames)
        w.finalize()
    s = open_store(path)
    h0 = s.content_hash()
    assert check_store(s).ok
    # swap the data of two same-shaped videos: same index, different content
    a, b = path / "videos" / "v000000" / "c", path / "videos" / "v000001" / "c"
    shutil.move(a, tmp_path / "tmp_c")
    shutil.move(b, a)
    shutil.move(tmp_path / "tmp_c", b)
    assert open_store(path).content_hash() != h0
    # NaNs and a missing video are reported
    import zarr

    arr = zarr.open_array(str(path / "videos" / "v000002"), mode="r+")
    arr[0, 1, 3] = np.nan
    shutil.rmtree(path / "videos" / "v000000")
    finalize_store(path)
    rep = check_store(open_store(path))
    assert not rep.ok
    text = "\n".join(rep.problems)
    assert "1 non-finite values" in text and "no record" in text and "not finalized" in text


def test_synthetic_feature_store_statistics(tmp_path):
    cfg = SynthFeaturesConfig(num_train=6, num_test=6, crops=2, feature_dim=64, median_t=40, max_t=120, seed=3)
    path = write_synthetic_feature_store(tmp_path / "syn.zarr", cfg)
    s = open_store(path)
    m, hidden = synthetic_manifest(cfg)
    assert s.complete and s.manifest.content_hash() == m.content_hash()
    assert len(s.video_ids()) == 12 and s.num_crops == 2
    test_anom = [v for v in s.manifest.videos if v.split == "test" and v.segments]
    assert len(test_anom) == 3
    for v in s.manifest.videos:
        f = s.read(v.id)
        assert f.shape[1] == v.num_frames // 16
        norms = np.linalg.norm(f, axis=-1)
        assert np.all(np.abs(norms - 1.0) < 0.2)
    # anomalous snippets lean towards their class direction: more similar to each other
    v = test_anom[0]
    f = s.read(v.id, 0)
    inside = np.zeros(f.shape[0], bool)
    for seg in v.segments:
        inside[seg.start // 16 : seg.end // 16] = True
    mean_in, mean_out = f[inside].mean(0), f[~inside].mean(0)
    assert np.linalg.norm(mean_in - mean_out) > 0.3
    # deterministic and resumable: the same config reproduces the same content
    again = write_synthetic_feature_store(tmp_path / "syn2.zarr", cfg)
    assert open_store(again).content_hash() == s.content_hash()


def test_store_cli_info_check_finalize(cli, tmp_path):
    cfg = SynthFeaturesConfig(num_train=2, num_test=2, crops=1, feature_dim=16, median_t=10, max_t=30)
    path = write_synthetic_feature_store(tmp_path / "c.zarr", cfg)

    def run(*args):
        code, out = cli(*args)
        return code, " ".join(out.split())  # rich wraps long lines

    code, out = run("store", "info", path)
    assert code == 0 and "synth" in out and "complete" in out and "failed (no features" not in out
    code, out = run("store", "check", path)
    assert code == 0 and "4 videos checked" in out
    code, out = run("store", "check", path, "--dataset", "ucf", "--no-values")
    assert code == 1 and "not in the store's manifest" in out
    code, out = run("store", "finalize", path)
    assert code == 0 and "complete" in out
    code, out = run("store", "info", tmp_path / "missing.zarr")
    assert code == 2 and "not found" in out and "Traceback" not in out


def test_raw_chunk_reads_equal_zarr_reads(tmp_path):
    """The direct chunk-file path gives exactly what zarr gives: float16 storage, several
    chunks with a partial edge chunk, and an all-zero crop whose chunks zarr never writes."""
    import zarr

    m = _manifest(3)
    path = tmp_path / "h.zarr"
    with StoreWriter(path, _spec(m, dtype="float16", chunk_t=4)) as w:
        for i, v in enumerate(m.videos):
            f = _feats(i, 3 + 4 * i)
            if i == 1:
                f[0] = 0.0
            w.write_video(v.id, f)
        w.finalize()
    s = open_store(path)
    assert s._raw_layout
    assert not (path / "videos" / "v000001" / "c" / "0").exists()  # zarr skipped the zero chunks
    for i, v in enumerate(m.videos):
        ref = zarr.open_array(str(path / "videos" / f"v{i:06d}"), mode="r")[...].astype(np.float32)
        np.testing.assert_array_equal(s.read(v.id), ref)
        np.testing.assert_array_equal(s.read(v.id, 5), ref[1])
        np.testing.assert_allclose(
            ref, _feats(i, 3 + 4 * i) * (np.arange(2)[:, None, None] > 0 if i == 1 else 1), rtol=1e-3, atol=1e-3
        )
    feats, offs = s.load_all(crop=0)
    assert offs.tolist() == [0, 3, 10, 21] and not feats[3:10].any()


def test_content_hash_same_through_zarr_and_raw_paths(tmp_path):
    m = _manifest(3)
    path = tmp_path / "h.zarr"
    with StoreWriter(path, _spec(m, dtype="float16", chunk_t=2)) as w:
        for i, v in enumerate(m.videos):
            w.write_video(v.id, _feats(i, 5))
        w.finalize()
    s = open_store(path)
    assert s._raw_layout
    fast = s.content_hash()
    s.__dict__["_raw_layout"] = False  # force the zarr path
    assert s.content_hash() == fast


_CREATE_AND_HANG = """
import os, sys, time
from dsan_toolkit.manifest.builtin import load_builtin_manifest
from dsan_toolkit.manifest import DatasetInfo, Manifest, VideoRecord
from dsan_toolkit.store import StoreSpec, StoreWriter

def hang(src, dst):  # the process dies between building the store and renaming it into place
    print("building", src, flush=True)
    time.sleep(600)

os.rename = hang
info = DatasetInfo(name="t", classes=load_builtin_manifest("ucf").info.classes, fps=30.0)
m = Manifest(info, (VideoRecord(id="a", path="a.mp4", split="test", labels=("Normal",)),))
spec = StoreSpec(manifest=m, crops=(0,), feature_dim=4, backbone={"model": "x"}, random_weights=False,
                 preprocessing={}, snippet_rule="middle", config={}, producer="test")
StoreWriter(sys.argv[1], spec).open()
"""


@pytest.mark.integration
def test_sigkill_during_creation_leaves_a_folder_the_next_run_removes(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from dsan_toolkit.store.writer import _HOST, CREATING_TAG, remove_stale_creating

    path = tmp_path / "s.zarr"
    proc = subprocess.Popen([sys.executable, "-c", _CREATE_AND_HANG, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("building"), line
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    stale = tmp_path / f".s.zarr{CREATING_TAG}{_HOST}-{proc.pid}"
    assert stale.is_dir() and (stale / "zarr.json").is_file() and not path.exists()
    # folders that must survive: a live process's, another host's, an unrelated name
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = tmp_path / f".s.zarr{CREATING_TAG}{_HOST}-{sleeper.pid}"
        other_host = tmp_path / f".s.zarr{CREATING_TAG}elsewhere.example-{proc.pid}"
        unrelated = tmp_path / ".t.zarr.creating-1"
        for d in (live, other_host, unrelated):
            d.mkdir()
        m = _manifest(2)
        with StoreWriter(path, _spec(m)) as w:
            w.write_video(m.videos[0].id, _feats(0, 2))
        assert not stale.exists() and open_store(path).video_ids() == [m.videos[0].id]
        assert live.is_dir() and other_host.is_dir() and unrelated.is_dir()
        # the old name format (no host) of a dead process is removed too; a rerun cleans when the store exists
        legacy = tmp_path / f".s.zarr{CREATING_TAG}{proc.pid}"
        legacy.mkdir()
        assert remove_stale_creating(path) == [legacy] and not legacy.exists()
        legacy.mkdir()
        StoreWriter(path, _spec(m)).open()
        assert not legacy.exists() and live.is_dir()
        if sys.platform.startswith("linux"):  # a reused PID: its process started after the folder was made
            os.utime(live, (time.time() - 3600, time.time() - 3600))
            assert remove_stale_creating(path) == [live]
            live.mkdir()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale_creating(path) == [live]  # its process is gone now
    assert other_host.is_dir() and unrelated.is_dir()


def test_store_identity_hashes_what_changes_values_not_prose():
    """Editing a prose description (preprocessing notes, a backbone's source text, a weight
    file's path) keeps the store's identity; a crop, a config value or the weights change it."""
    from dataclasses import replace

    from dsan_toolkit.config import config_hash

    m = _manifest(2)
    base = _spec(m)
    h = config_hash(base.identity())
    prose = replace(
        base,
        preprocessing={**base.preprocessing, "note": "reworded"},
        backbone={**base.backbone, "source": "another description", "weights_file": "/moved/w.pt"},
    )
    assert config_hash(prose.identity()) == h
    assert config_hash(replace(base, crops=(0, 1)).identity()) != h
    assert config_hash(replace(base, config={**base.config, "resize": 999}).identity()) != h
    assert config_hash(replace(base, backbone={**base.backbone, "weights_sha256": "ff"}).identity()) != h
    assert config_hash(replace(base, numeric={"resize_kernel": "float"}).identity()) != h


_HOLD_LOCK = """
import sys, time
from dsan_toolkit.store.index import store_lock
lock = store_lock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.mark.integration
def test_finalize_waits_for_the_store_lock_and_a_killed_holder_releases_it(tmp_path):
    """Finalize runs under the store's file lock: it waits while another process holds it (a
    rank finalizing), and a holder killed with SIGKILL keeps nobody waiting."""
    import subprocess
    import sys
    import time

    m = _manifest(2)
    path = tmp_path / "s.zarr"
    with StoreWriter(path, _spec(m)) as w:
        for i, v in enumerate(m.videos):
            w.write_video(v.id, _feats(i, 2))
    for kill in (False, True):
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(path), "60" if kill else "1.5"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout.readline().strip() == "held"
            t0 = time.monotonic()
            if kill:
                holder.kill()
            res = finalize_store(path)
            waited = time.monotonic() - t0
        finally:
            holder.kill()
            holder.wait()
        assert res.complete and res.done == 2
        assert (waited < 10) if kill else (waited > 1.0), waited
    assert open_store(path).complete


def _store_with_a_failed_video(tmp_path, **spec_kw):
    m = _manifest(4)
    path = tmp_path / "s.zarr"
    with StoreWriter(path, _spec(m, **spec_kw)) as w:
        for i, v in enumerate(m.videos[:3]):
            w.write_video(v.id, _feats(i, 2 + 3 * i), num_frames=v.num_frames, fps=30.0)
        w.fail_video(m.videos[3].id, "unreadable: broken file")
        assert w.finalize().complete
    return m, path


def test_a_truncated_or_missing_chunk_names_the_video_and_the_file(tmp_path):
    """A chunk file of the wrong size (a cut-off copy) is an InputError naming the video and the
    file, through the direct path and through zarr; a missing chunk file is the fill value, as
    zarr reads it (zarr does not write all-zero chunks), unless the video's whole array is gone."""
    import zarr

    m, path = _store_with_a_failed_video(tmp_path)
    vid, key = m.videos[2].id, "v000002"  # T = 8, chunk_t = 3: chunks 0, 1, 2 (the last padded)
    chunk = path / "videos" / key / "c" / "1" / "2" / "0"
    data = chunk.read_bytes()
    chunk.write_bytes(data[:-4])
    s = open_store(path)
    assert s._raw_layout
    for read in (lambda: s.read(vid), lambda: s.read(vid, 5), lambda: s.load_all(crop=5), s.content_hash):
        with pytest.raises(
            InputError,
            match=rf"video {re.escape(repr(vid))} are damaged: chunk file "
            rf"{re.escape(str(chunk))} has {len(data) - 4} bytes, {len(data)} expected",
        ):
            read()
    np.testing.assert_array_equal(s.read(vid, 0), _feats(2, 8)[0])  # the other crop is intact
    s.__dict__["_raw_layout"] = False  # through zarr: its reshape error becomes ours
    with pytest.raises(InputError, match=rf"video {re.escape(repr(vid))} are damaged \(reading"):
        s.read(vid)
    with pytest.raises(InputError, match="are damaged"):
        s.load_all(crop=5)

    chunk.unlink()  # a missing chunk reads as zeros, as in zarr
    s = open_store(path)
    ref = zarr.open_array(str(path / "videos" / key), mode="r")[...]
    expected = _feats(2, 8)
    expected[1, 6:] = 0.0
    np.testing.assert_array_equal(ref, expected)
    np.testing.assert_array_equal(s.read(vid), ref)

    shutil.rmtree(path / "videos" / key)  # the whole array gone: not zeros
    gone = re.escape(str(path / "videos" / key))
    with pytest.raises(InputError, match=rf"video {re.escape(repr(vid))} are missing \({gone} is gone"):
        open_store(path).read(vid)


def test_zarr_and_xarray_open_every_array_as_ordinary_zarr_v3(tmp_path):
    import warnings

    import xarray as xr
    import zarr

    m, path = _store_with_a_failed_video(tmp_path, dtype="float16")
    s = open_store(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing in the store that zarr does not recognise (the lock is beside it)
        root = zarr.open_group(str(path), mode="r")
        assert root.metadata.zarr_format == 3
        assert sorted(name for name, _ in root.groups()) == ["index", "meta", "videos"]
        assert root.attrs["format"] == "dsan-feature-store" and root.attrs["complete"]
        assert [r["id"] for r in root["meta"].attrs["manifest"][1:]] == [v.id for v in m.videos]
        assert root["index"].attrs["id"] == [v.id for v in m.videos]
        arrays = dict(root["videos"].arrays())
    assert sorted(arrays) == [f"v{i:06d}" for i in range(len(m))]
    for i, v in enumerate(m.videos):
        key = f"v{i:06d}"
        arr = arrays[key]
        assert arr.attrs["id"] == v.id and arr.metadata.dimension_names == ("crop", "t", "feature")
        assert arr.dtype == np.float16 and arr.shape == (2, s.video_info(v.id)["T"], 8)
        others = [k for k in arrays if k != key]
        ds = xr.open_zarr(str(path), group="videos", consolidated=False, drop_variables=others)
        da = ds[key]
        assert da.dims == ("crop", "t", "feature")
        assert da.attrs["id"] == v.id and da.attrs["status"] == arr.attrs["status"]
        if arr.attrs["status"] == "done":
            np.testing.assert_array_equal(arr[...], s.read(v.id).astype(np.float16))
            np.testing.assert_array_equal(da.values, arr[...])
        else:
            assert da.shape == (2, 0, 8) and da.attrs["error"] == "unreadable: broken file"
