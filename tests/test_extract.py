"""Extraction on real H.264 videos (decord) with the tiny random-init CLIP: geometry, row
rule, failures, SIGKILL-resume and a two-process torchrun run into one store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dsan_toolkit.clip import TINY_MODEL
from dsan_toolkit.datasets.synth import SynthConfig, make_synthetic_dataset, write_video
from dsan_toolkit.decode.crops import crop_box, resized_size
from dsan_toolkit.decode.snippets import row_count, snippet_frame_indices
from dsan_toolkit.extract import ExtractConfig, RunOptions, extract_features
from dsan_toolkit.extract.preprocess import preprocess_frames
from dsan_toolkit.manifest import Manifest, VideoRecord, write_manifest
from dsan_toolkit.store import open_store
from dsan_toolkit.store.check import check_store

TINY = dict(model=TINY_MODEL, pretrained=None)
SMALL = SynthConfig(
    train_normal=3,
    train_anomalous=3,
    test_normal=2,
    test_anomalous=2,
    min_frames=40,
    max_frames=90,
    width=96,
    height=64,
)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> tuple[Path, Manifest]:
    """Synthetic videos plus a short (10 frames) and a broken video, with their manifest."""
    root = tmp_path_factory.mktemp("videos")
    m = make_synthetic_dataset(root, SMALL)
    rng = np.random.default_rng(0)
    write_video(root / "videos" / "short.mp4", rng.integers(0, 255, (10, 64, 96, 3), dtype=np.uint8), 16.0)
    (root / "videos" / "broken.mp4").write_bytes(
        b"\x00\x00\x00\x18ftypmp42" + bytes(rng.integers(0, 255, 3000, dtype=np.uint8))
    )
    extra = (
        VideoRecord(id="short", path="videos/short.mp4", split="train", labels=("Normal",)),
        VideoRecord(id="broken", path="videos/broken.mp4", split="train", labels=("Normal",)),
    )
    m = Manifest(m.info, m.videos + extra)
    write_manifest(m, root / "all.jsonl")
    return root, m


def test_row_rule_and_snippet_indices():
    assert row_count(0) == (0, False) and row_count(10) == (1, True) and row_count(16) == (1, False)
    assert row_count(47) == (2, False) and row_count(48) == (3, False)
    np.testing.assert_array_equal(snippet_frame_indices("first", 40)[:, 0], [0, 16])
    np.testing.assert_array_equal(snippet_frame_indices("middle", 40)[:, 0], [8, 24])
    mean = snippet_frame_indices("mean", 40)
    assert mean.shape == (2, 16) and mean[1, -1] == 31
    np.testing.assert_array_equal(snippet_frame_indices("middle", 5), [[4]])  # padded: clamped


def test_centre_crop_matches_clip_preprocessing_and_mirrors():
    import open_clip
    from PIL import Image

    rng = np.random.default_rng(1)
    frame = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    frame[60:180, 100:220] = 250  # structure so that crops differ
    tf = open_clip.image_transform(224, is_train=False)  # CLIP's own: Resize(224, bicubic) + CenterCrop + Normalize
    ref = tf(Image.fromarray(frame))
    from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    ours = preprocess_frames(
        torch.from_numpy(frame)[None],
        list(range(10)),
        resize=224,
        size=224,
        mean=OPENAI_DATASET_MEAN,
        std=OPENAI_DATASET_STD,
    )
    assert ours.shape == (1, 10, 3, 224, 224)
    diff = (ours[0, 0] - ref).abs()
    # torch's uint8 antialiased bicubic matches PIL within one 8-bit level (1 / (255 * std) <= 0.0151);
    # a geometry error (shift, wrong size, wrong crop) gives differences of ~0.5 on this noise
    assert diff.max() < 0.0151 and diff.mean() < 1e-3
    for i in range(5):
        torch.testing.assert_close(ours[0, 5 + i], ours[0, i].flip(-1))
    assert resized_size(240, 320, 224) == (224, 298)
    b = crop_box(2, 224, 298, 224)  # top-right
    assert (b.top, b.left, b.flip) == (0, 74, False)
    h, w = resized_size(240, 320, 256)
    tl, br = crop_box(1, h, w, 224), crop_box(4, h, w, 224)
    assert (tl.top, tl.left) == (0, 0) and (br.top, br.left) == (h - 224, w - 224)


def test_extract_cli_end_to_end(videos, cli, tmp_path):
    root, m = videos
    out = tmp_path / "f.zarr"
    code, text = cli(
        "extract",
        "--dataset",
        root / "all.jsonl",
        "--root",
        root,
        "--out",
        out,
        "--model",
        TINY_MODEL,
        "--pretrained",
        "none",
        "--snippet",
        "middle",
        "--crops",
        "10",
        "--workers",
        "1",
        "--batch-size",
        "96",
        "--no-progress",
    )
    flat = " ".join(text.split())
    assert code == 1 and "broken" in flat and "1 failed" in flat and "Traceback" not in text
    s = open_store(out)
    assert s.attrs["random_weights"] and "RANDOM WEIGHTS" in s.attrs["warning"]
    assert s.attrs["snippet_rule"] == "middle" and s.crop_ids == list(range(10))
    assert s.attrs["preprocessing"]["resize_short_side"] == 256
    assert s.video_ids("failed") == ["broken"] and "unreadable" in s.video_info("broken")["error"]
    for v in m.videos:
        if v.id == "broken":
            continue
        info = s.video_info(v.id)
        n = info["num_frames"]
        assert info["T"] == (n // 16 if n >= 16 else 1) and info["padded"] == (n < 16)
        if v.num_frames is not None:
            assert n == v.num_frames
        f = s.read(v.id)
        assert f.shape == (10, info["T"], 512) and np.isfinite(f).all()
        assert not np.allclose(f[0], f[1])  # centre and corner differ
    assert s.video_info("short")["T"] == 1
    rep = check_store(s)
    assert rep.problems == ["broken: failed: " + s.video_info("broken")["error"]]
    # same command again: nothing to do but the broken video, which fails again
    code, text = cli(
        "extract",
        "--dataset",
        root / "all.jsonl",
        "--root",
        root,
        "--out",
        out,
        "--model",
        TINY_MODEL,
        "--pretrained",
        "none",
        "--snippet",
        "middle",
        "--crops",
        "10",
        "--no-progress",
    )
    assert code == 1 and "already done" in " ".join(text.split())
    # another configuration is refused, never appended
    code, text = cli(
        "extract",
        "--dataset",
        root / "all.jsonl",
        "--root",
        root,
        "--out",
        out,
        "--model",
        TINY_MODEL,
        "--pretrained",
        "none",
        "--snippet",
        "first",
        "--crops",
        "10",
        "--no-progress",
    )
    assert code == 2 and "different configuration" in " ".join(text.split())


@pytest.mark.parametrize("rule", ["first", "mean"])
def test_snippet_rules_encode_the_right_frames(videos, tmp_path, rule):
    """Rows equal the mean of per-frame encodings of the rule's frames (decoded independently)."""
    root, m = videos
    sub = m.select(["train_normal_000"])
    cfg = ExtractConfig(**TINY, snippet=rule, crops="center")
    res = extract_features(sub, root, tmp_path / "a.zarr", cfg, RunOptions(workers=0))
    assert res.done == 1
    import decord

    from dsan_toolkit.clip import create_clip

    vr = decord.VideoReader(str(root / sub.videos[0].path))
    T = len(vr) // 16
    per_row = 1 if rule == "first" else 16
    idx = [t * 16 + j for t in range(T) for j in range(per_row)]
    frames = torch.from_numpy(vr.get_batch(idx).asnumpy())
    b = create_clip(TINY_MODEL, None)
    x = preprocess_frames(frames, [0], resize=224, size=224, mean=b.info.mean, std=b.info.std)
    with torch.inference_mode():
        ref = b.model.encode_image(x[:, 0]).reshape(T, per_row, -1).mean(1).numpy()
    got = open_store(tmp_path / "a.zarr").read(sub.videos[0].id, 0)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def _cmd(root: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dsan_toolkit.cli.app",
        "extract",
        "--dataset",
        str(root / "all.jsonl"),
        "--root",
        str(root),
        "--out",
        str(out),
        "--model",
        TINY_MODEL,
        "--pretrained",
        "none",
        "--snippet",
        "middle",
        "--crops",
        "center",
        "--workers",
        "0",
        "--batch-size",
        "16",
        "--block-frames",
        "16",
        "--no-progress",
    ]


def _assert_same_store(a, b) -> None:
    """The same videos, lengths and stored bytes (the same command gives the same bytes)."""
    assert a.video_ids(None) == b.video_ids(None) and a.lengths() == b.lengths()
    assert a.content_hash() == b.content_hash()


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory):
    """An uninterrupted in-process run with the configuration of ``_cmd``."""
    root, m = videos
    ref = tmp_path_factory.mktemp("ref") / "ref.zarr"
    cfg = ExtractConfig(**TINY, snippet="middle", crops="center")
    extract_features(m, root, ref, cfg, RunOptions(workers=0, batch_size=16, block_frames=16))
    return open_store(ref)


@pytest.mark.integration
def test_sigkill_then_rerun_equals_uninterrupted(videos, reference, tmp_path):
    root, m = videos
    out = tmp_path / "k.zarr"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cmd(root, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if (out / "videos").is_dir() and any(p.name.startswith("v") for p in (out / "videos").iterdir()):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    partial = open_store(out)
    assert 0 < len(partial.video_ids(None)) < len(m) and not partial.complete
    rerun = subprocess.run(_cmd(root, out), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 1, rerun.stderr  # the broken video fails in both runs
    done = open_store(out)
    assert done.complete
    _assert_same_store(done, reference)
    assert not (out / ".staging").exists()


@pytest.mark.integration
def test_torchrun_two_ranks_write_one_store(videos, reference, tmp_path):
    root, m = videos
    out = tmp_path / "tr.zarr"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--nproc-per-node",
        "2",
        "--master-port",
        str(29500 + os.getpid() % 1000),
        *_cmd(root, out)[1:],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    flat = " ".join(r.stdout.split())
    assert "(shard 0/2)" in flat and "(shard 1/2)" in flat, r.stdout + r.stderr
    assert r.returncode != 0  # the rank that met the broken video exits 1
    s = open_store(out)
    assert s.complete and len(s.video_ids(None)) == len(m)
    _assert_same_store(s, reference)


def test_store_made_in_fp16_on_gpu_is_re_extracted_in_fp32_on_cpu(videos, reference, tmp_path):
    """`dsan score`'s re-extraction uses the store's config; fp16 (recorded by a CUDA run) runs as fp32 on CPU."""
    import dataclasses

    from dsan_toolkit.apps.score import extract_like_store
    from dsan_toolkit.clip import create_clip
    from dsan_toolkit.config import from_dict
    from dsan_toolkit.errors import InputError
    from dsan_toolkit.extract.pipeline import build_spec, precision_for_device, resolve_config
    from dsan_toolkit.store import StoreWriter

    root, m = videos
    assert precision_for_device("fp16", "cuda:1") == "fp16" and precision_for_device("bf16", "cuda") == "bf16"
    assert precision_for_device("fp16", "cpu") == "fp32" and precision_for_device("bf16", "cpu") == "fp32"
    assert precision_for_device("auto", "cpu") == "auto"
    b = create_clip(TINY_MODEL, None)
    cfg = ExtractConfig(**TINY, snippet="middle", crops="center")
    rcfg = resolve_config(cfg, torch.device("cpu"), b.info.image_size)
    gpu_cfg = dataclasses.replace(rcfg, precision="fp16")  # what a CUDA run records
    with pytest.raises(InputError, match="fp16 needs a CUDA device"):
        resolve_config(gpu_cfg, torch.device("cpu"), b.info.image_size)  # a plain CPU run still refuses it
    store = tmp_path / "gpu.zarr"
    with StoreWriter(store, build_spec(gpu_cfg, m, b.info, torch.device("cuda"))) as w:
        for vid in reference.video_ids():
            w.write_video(vid, reference.read(vid), num_frames=reference.video_info(vid)["num_frames"])
        w.finalize()
    s = open_store(store)
    assert from_dict(s.attrs["config"], ExtractConfig).precision == "fp16"
    v = next(v for v in m.videos if v.id == "train_normal_001")
    said: list[str] = []
    feats, L, random_bb = extract_like_store(root / v.path, s, crop=0, device="cpu", say=said.append)
    assert L == 16 and random_bb is True  # the tiny backbone is random and says so
    assert any("fp16" in x and "fp32" in x for x in said)
    np.testing.assert_allclose(feats, reference.read(v.id, 0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("encode_in_workers", [True, False])
def test_two_workers_equal_in_process_whether_or_not_they_encode(videos, reference, tmp_path, encode_in_workers):
    """Workers that decode and encode (the CPU default) and workers that only decode (the
    accelerator layout, main process encodes) give the in-process store, failures included."""
    from dsan_toolkit.extract.decode_stage import encode_lanes

    root, m = videos
    opts = RunOptions(workers=2, batch_size=16, block_frames=16, encode_in_workers=encode_in_workers)
    assert encode_lanes(torch.device("cpu"), opts, len(m)) == (2 if encode_in_workers else 0)
    cfg = ExtractConfig(**TINY, snippet="middle", crops="center")
    events: list[tuple[str, str]] = []
    res = extract_features(
        m, root, tmp_path / "w.zarr", cfg, opts, on_event=lambda kind, d: events.append((kind, d.get("status")))
    )
    assert res.done == len(m) - 1 and [vid for vid, _ in res.failed] == ["broken"]
    assert res.snippets == sum(reference.lengths().values())
    assert events.count(("video", "done")) == len(m) - 1 and events.count(("video", "failed")) == 1
    s = open_store(tmp_path / "w.zarr")
    assert s.complete
    _assert_same_store(s, reference)


@pytest.mark.parametrize("crops", ["center", "10"])
def test_the_same_bytes_whatever_the_workers(videos, tmp_path, crops):
    """Videos of different lengths (a padded one among them) extracted with 0, 1 and 2 workers
    at the default batch size: the same stored bytes. The main process runs with 2 torch
    threads here (conftest), forked workers with one."""
    root, m = videos
    sub = m.select([v.id for v in m.videos[::2]] + ["short", "broken"])
    cfg = ExtractConfig(**TINY, snippet="middle", crops=crops)
    stores = []
    for workers in (0, 1, 2):
        out = tmp_path / f"w{workers}.zarr"
        res = extract_features(sub, root, out, cfg, RunOptions(workers=workers))
        assert res.done == len(sub) - 1
        stores.append(open_store(out))
    assert len({s.content_hash() for s in stores}) == 1
    files = [
        {str(p.relative_to(s.path)): p.read_bytes() for p in (s.path / "videos").rglob("*") if p.is_file()}
        for s in stores
    ]  # raw bytes too: every array chunk and record of every video
    assert len(files[0]) >= len(sub) - 1 and files[0] == files[1] == files[2]


def test_default_workers_and_refused_gpu_encoding_workers(videos, tmp_path):
    from dsan_toolkit.errors import InputError
    from dsan_toolkit.extract import auto_workers

    cores = len(os.sched_getaffinity(0))
    assert auto_workers("cpu") == cores and auto_workers("cuda:1") == min(8, cores)
    root, m = videos
    with pytest.raises(InputError, match="CPU devices"):
        extract_features(
            m,
            root,
            tmp_path / "g.zarr",
            ExtractConfig(**TINY, crops="center"),
            RunOptions(device="cuda", encode_in_workers=True),
        )
    assert not (tmp_path / "g.zarr").exists()


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory) -> Path:
    """400 frames with B-frames and a key frame every 24 frames: sparse blocks seek across GOPs."""
    import av

    path = tmp_path_factory.mktemp("gop") / "gop.mp4"
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    with av.open(str(path), mode="w", format="mp4") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        s.options = {"preset": "veryfast", "g": "24", "bframes": "2", "threads": "1"}
        for i in range(400):
            img = np.roll(base, 3 * i, axis=1)
            img[: 8 + i % 50, :8] = i % 256  # differs frame by frame
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    with av.open(str(path)) as c:
        types = {int(f.pict_type) for f in c.decode(video=0)}
    assert {1, 2, 3} <= types  # AVPictureType I, P and B
    return path


@pytest.mark.parametrize("rule,block_frames", [("middle", 4), ("first", 7), ("mean", 16), ("middle", None)])
def test_blocks_equal_one_decord_call(gop_video, rule, block_frames):
    """Frames delivered block by block (with decord's read-ahead stopped between blocks) are
    exactly those of a single get_batch over the whole video."""
    import decord

    from dsan_toolkit.decode.messages import FrameBlock, VideoEnd, VideoStart
    from dsan_toolkit.decode.reader import iter_video_blocks, rows_per_block

    msgs = list(iter_video_blocks("g", gop_video, rule=rule, block_frames=block_frames))
    assert isinstance(msgs[0], VideoStart) and isinstance(msgs[-1], VideoEnd)
    blocks = [m for m in msgs if isinstance(m, FrameBlock)]
    idx = snippet_frame_indices(rule, 400)
    expected_rows = rows_per_block(idx.shape[1], (64, 96, 3), block_frames=block_frames)
    assert len(blocks) == -(-idx.shape[0] // expected_rows) and (len(blocks) > 1) == (block_frames is not None)
    assert [b.t0 for b in blocks] == list(range(0, idx.shape[0], expected_rows))
    got = torch.cat([b.frames for b in blocks]).numpy()
    ref = decord.VideoReader(str(gop_video), num_threads=1).get_batch(idx.reshape(-1).tolist()).asnumpy()
    assert got.shape == ref.shape and np.array_equal(got, ref)


def test_decoder_messages_go_through_the_dataloader_pinning_as_they_are():
    """On CUDA the DataLoader pins what its workers yield: a frame block pins its frames (through
    its ``pin_memory`` method), the other messages pass unchanged (checked without a GPU)."""
    from torch.utils.data._utils.pin_memory import pin_memory

    from dsan_toolkit.decode.messages import FrameBlock, VideoEnd, VideoFailed, VideoStart

    class Frames:
        def pin_memory(self):
            return "pinned frames"

    assert pin_memory(FrameBlock("v", 3, 2, 1, Frames())) == FrameBlock("v", 3, 2, 1, "pinned frames")
    for msg in (VideoStart("v", 5, 80, 16.0, False), VideoEnd("v"), VideoFailed("v", "empty: zero bytes")):
        assert pin_memory(msg) is msg


def test_block_size_is_bounded_in_bytes():
    from dsan_toolkit.decode.reader import rows_per_block

    assert rows_per_block(1, (240, 320, 3), 64 * 2**20) == 291  # 64 MiB of 320x240 frames
    assert rows_per_block(16, (240, 320, 3), 64 * 2**20) == 18  # the mean rule: 16 frames a row
    assert rows_per_block(1, (720, 1280, 3), 64 * 2**20, block_frames=16) == 16
    assert rows_per_block(16, (2160, 3840, 3), 64 * 2**20) == 1  # never less than one row


def _crash_worker_on(monkeypatch, video_id: str, marker: Path | None = None) -> None:
    """Fault injection: the worker process that starts ``video_id`` kills itself with SIGKILL,
    as a decoder segfault would (always, or only while ``marker`` does not exist). The forked
    workers inherit the patched reader."""
    import dsan_toolkit.extract.decode_stage as stage

    real = stage.iter_video_blocks

    def crashing(vid, path, **kw):
        if vid == video_id and torch.utils.data.get_worker_info() is not None:
            if marker is None or not marker.exists():
                if marker is not None:
                    marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        yield from real(vid, path, **kw)

    monkeypatch.setattr(stage, "iter_video_blocks", crashing)


@pytest.mark.integration
def test_a_video_that_kills_its_worker_twice_is_failed_and_the_rest_go_on(videos, reference, tmp_path, monkeypatch):
    root, m = videos
    victim = m.videos[3].id
    _crash_worker_on(monkeypatch, victim)
    cfg = ExtractConfig(**TINY, snippet="middle", crops="center")
    res = extract_features(m, root, tmp_path / "c.zarr", cfg, RunOptions(workers=2, batch_size=16))
    failed = dict(res.failed)
    assert set(failed) == {victim, "broken"} and "decoder crashed" in failed[victim]
    assert res.done == len(m) - 2
    s = open_store(tmp_path / "c.zarr")
    assert s.complete and set(s.video_ids("failed")) == {victim, "broken"}
    assert "worker process died twice" in s.video_info(victim)["error"]
    assert "killed by SIGKILL" in s.video_info(victim)["error"]  # from the worker's exit status
    assert set(s.video_ids()) == set(reference.video_ids()) - {victim}
    for vid in s.video_ids():
        np.testing.assert_array_equal(s.read(vid), reference.read(vid))
    assert res.snippets == sum(n for vid, n in reference.lengths().items() if vid != victim)


@pytest.mark.integration
def test_a_worker_crash_once_loses_nothing(videos, reference, tmp_path, monkeypatch):
    """The videos in flight when a worker dies are retried alone; the store equals an
    uninterrupted run (decode-only workers: the accelerator layout)."""
    root, m = videos
    _crash_worker_on(monkeypatch, m.videos[6].id, marker=tmp_path / "crashed-once")
    cfg = ExtractConfig(**TINY, snippet="middle", crops="center")
    opts = RunOptions(workers=2, batch_size=16, encode_in_workers=False)
    res = extract_features(m, root, tmp_path / "o.zarr", cfg, opts)
    assert (tmp_path / "crashed-once").exists()
    assert [vid for vid, _ in res.failed] == ["broken"] and res.done == len(m) - 1
    s = open_store(tmp_path / "o.zarr")
    assert s.complete
    _assert_same_store(s, reference)
    assert res.snippets == sum(reference.lengths().values())


@pytest.mark.integration
def test_workers_that_die_before_taking_a_video_end_the_run_with_a_message(videos, tmp_path, monkeypatch):
    """No video to blame and no progress: a clear error, not an endless retry."""
    import dsan_toolkit.extract.decode_stage as stage
    from dsan_toolkit.errors import DsanError

    def die(self):
        os.kill(os.getpid(), signal.SIGKILL)
        yield  # pragma: no cover

    monkeypatch.setattr(stage.DecodeJobs, "__iter__", die)
    root, m = videos
    with pytest.raises(DsanError, match="died before it took a video"):
        extract_features(m, root, tmp_path / "d.zarr", ExtractConfig(**TINY, crops="center"), RunOptions(workers=2))
    assert not open_store(tmp_path / "d.zarr").complete


def test_an_error_raised_in_a_worker_is_not_taken_for_a_dead_worker(videos, tmp_path, monkeypatch):
    """Worker death is read from the worker processes, not from an error's text: an exception
    raised by code in a worker (whatever it says) ends the run with that exception."""
    import dsan_toolkit.extract.decode_stage as stage

    root, m = videos
    victim = m.videos[1].id
    real = stage.iter_video_blocks

    def raising(vid, path, **kw):
        if vid == victim:
            raise RuntimeError("DataLoader worker (pid(s) 1) exited unexpectedly")
        yield from real(vid, path, **kw)

    monkeypatch.setattr(stage, "iter_video_blocks", raising)
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        extract_features(m, root, tmp_path / "e.zarr", ExtractConfig(**TINY, crops="center"), RunOptions(workers=2))
    assert victim not in open_store(tmp_path / "e.zarr").video_ids(None)


@pytest.mark.integration
def test_a_decoder_that_hangs_is_stopped_retried_then_failed(videos, reference, tmp_path, monkeypatch):
    """The watchdog stops a worker stuck in one decode call past --decode-timeout; the video is
    retried alone, hangs again and is recorded failed; the rest equal an uninterrupted run."""
    import time as _time

    import dsan_toolkit.extract.decode_stage as stage

    root, m = videos
    victim = m.videos[2].id
    real = stage.iter_video_blocks

    def hanging(vid, path, **kw):
        if vid == victim and torch.utils.data.get_worker_info() is not None:
            _time.sleep(3600)  # as decord stuck inside get_batch
        yield from real(vid, path, **kw)

    monkeypatch.setattr(stage, "iter_video_blocks", hanging)
    cfg = ExtractConfig(**TINY, snippet="middle", crops="center")
    t0 = _time.monotonic()
    res = extract_features(m, root, tmp_path / "h.zarr", cfg, RunOptions(workers=2, batch_size=16, decode_timeout=1.0))
    assert _time.monotonic() - t0 < 60
    failed = dict(res.failed)
    assert set(failed) == {victim, "broken"} and failed[victim].startswith(
        "decoder hung: one decode call took more than 1 s"
    )
    s = open_store(tmp_path / "h.zarr")
    assert s.complete and set(s.video_ids()) == set(reference.video_ids()) - {victim}
    for vid in s.video_ids():
        np.testing.assert_array_equal(s.read(vid), reference.read(vid))


def test_a_root_without_most_videos_is_refused_before_anything_is_written(videos, cli, tmp_path):
    """No video, or fewer than half of them, under --root: a message (counts, an expected path,
    --split when the videos found are all of one split) and no store; --allow-missing and
    --split go past it; a finished store whose videos were deleted since reruns quietly."""
    import shutil

    root, m = videos

    def extract(video_root: Path, out: Path, *extra: str) -> tuple[int, str]:
        code, text = cli(
            "extract",
            "--dataset",
            root / "all.jsonl",
            "--root",
            video_root,
            "--out",
            out,
            "--model",
            TINY_MODEL,
            "--pretrained",
            "none",
            "--crops",
            "center",
            "--workers",
            "0",
            "--no-progress",
            *extra,
        )
        return code, " ".join(text.split())

    empty = tmp_path / "empty"
    empty.mkdir()
    code, text = extract(empty, tmp_path / "a.zarr")
    assert code == 2 and f"0 of {len(m)} videos found" in text and "Traceback" not in text, text
    assert f"{empty / m.videos[0].path} does not exist" in text and "--allow-missing" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no store, nothing half-made

    part = tmp_path / "part"  # a copy of the test videos only: 4 of 12
    tests = [v for v in m.videos if v.split == "test"]
    for v in tests:
        (part / v.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / v.path, part / v.path)
    code, text = extract(part, tmp_path / "b.zarr")
    assert code == 2 and f"{len(tests)} of {len(m)} videos found" in text and "add --split test" in text, text
    assert not (tmp_path / "b.zarr").exists()
    code, text = extract(part, tmp_path / "b.zarr", "--split", "test")
    assert code == 0 and f"{len(tests)} videos extracted" in text, text
    for v in tests:
        (part / v.path).unlink()
    code, text = extract(part, tmp_path / "b.zarr", "--split", "test")  # all done: nothing needs the files
    assert code == 0 and f"{len(tests)} already done" in text, text

    code, text = extract(empty, tmp_path / "c.zarr", "--allow-missing")
    assert code == 1 and f"{len(m)} failed" in text, text
    s = open_store(tmp_path / "c.zarr")
    assert {s.video_info(vid)["error"] for vid in s.video_ids("failed")} == {"missing: no such file"}
