"""Decoder backends (decord, pyav) on real H.264 files: the same frame counts, frame indices
and pixels, the same features, and what a store records of the backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dsan_toolkit.config import to_dict
from dsan_toolkit.datasets.synth import write_video
from dsan_toolkit.decode.backends import decoder_choices, get_decoder, list_decoders, resolve_decoder
from dsan_toolkit.decode.messages import FrameBlock, VideoEnd, VideoFailed, VideoStart
from dsan_toolkit.decode.reader import iter_video_blocks
from dsan_toolkit.decode.snippets import snippet_frame_indices
from dsan_toolkit.errors import InputError
from dsan_toolkit.extract import ExtractConfig, tiny_extract_config
from dsan_toolkit.store import open_store
from dsan_toolkit.testing import TINY_SYNTH
from dsan_toolkit.testing.videos import cached_synthetic_dataset, extract_tiny, make_truncated

MEAN_DIFF_BOUND = 1.0  # grey levels, mean |decord - pyav| over a video's frames (docs/extraction.md)
MAX_DIFF_BOUND = 16


@pytest.fixture(scope="module")
def bframe_video(tmp_path_factory) -> Path:
    """300 frames of 96x64 with I, P and B frames (key frame every 24): sparse blocks cross GOPs."""
    import av

    path = tmp_path_factory.mktemp("bframes") / "b.mp4"
    rng = np.random.default_rng(5)
    base = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    with av.open(str(path), mode="w", format="mp4") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        s.options = {"preset": "veryfast", "g": "24", "bframes": "2", "threads": "1"}
        for i in range(300):
            img = np.roll(base, 2 * i, axis=1)
            img[: 8 + i % 40, :8] = i % 256
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    with av.open(str(path)) as c:
        assert {1, 2, 3} <= {int(f.pict_type) for f in c.decode(video=0)}  # I, P and B
    return path


def _decode(path: Path, decoder: str, rule: str, block_frames: int | None) -> tuple[list, np.ndarray]:
    msgs = list(iter_video_blocks("v", path, rule=rule, block_frames=block_frames, decoder=decoder))
    assert isinstance(msgs[0], VideoStart) and isinstance(msgs[-1], VideoEnd), msgs[-1]
    blocks = [m for m in msgs if isinstance(m, FrameBlock)]
    return [msgs[0], [(b.t0, b.rows) for b in blocks]], torch.cat([b.frames for b in blocks]).numpy()


def test_registry_and_auto():
    assert list_decoders() == ["decord", "pyav"] and decoder_choices() == ["auto", "decord", "pyav"]
    assert resolve_decoder("auto") == "pyav" and resolve_decoder("pyav") == "pyav"  # the faster one (benchmarks.md)
    with pytest.raises(InputError, match="--decoder must be one of auto, decord, pyav, not 'opencv'"):
        get_decoder("opencv")
    with pytest.raises(InputError, match="--decoder"):
        ExtractConfig(decoder="opencv").check()
    ExtractConfig(decoder="auto").check()


def _agree(path: Path, rule: str, block_frames: int | None) -> tuple[float, int]:
    (start_d, layout_d), ref = _decode(path, "decord", rule, block_frames)
    (start_p, layout_p), got = _decode(path, "pyav", rule, block_frames)
    assert start_p == start_d and layout_p == layout_d  # frame count, fps, T, blocks
    assert got.shape == ref.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
    return float(diff.mean()), int(diff.max())


@pytest.mark.parametrize("rule,block_frames", [("middle", 3), ("first", None), ("mean", 40)])
def test_same_frames_on_the_synthetic_corpus(rule, block_frames):
    root, m = cached_synthetic_dataset(TINY_SYNTH)
    for v in m.videos:
        mean, worst = _agree(root / v.path, rule, block_frames)
        assert mean <= MEAN_DIFF_BOUND and worst <= MAX_DIFF_BOUND, (v.id, mean, worst)


@pytest.mark.parametrize("rule,block_frames", [("middle", 4), ("mean", 16), ("first", None)])
def test_same_frames_with_b_frames(bframe_video, rule, block_frames):
    mean, worst = _agree(bframe_video, rule, block_frames)
    assert mean <= MEAN_DIFF_BOUND and worst <= MAX_DIFF_BOUND
    # the indices themselves: frame i of pyav is decord's frame i (each frame differs)
    import decord

    n = len(decord.VideoReader(str(bframe_video)))
    idx = snippet_frame_indices(rule, n).reshape(-1)
    ref = decord.VideoReader(str(bframe_video), num_threads=1).get_batch(idx.tolist()).asnumpy()
    _, got = _decode(bframe_video, "pyav", rule, block_frames)
    assert np.abs(got.astype(np.int16) - ref).mean() <= MEAN_DIFF_BOUND


def test_pyav_reopens_for_an_earlier_frame_and_pads_a_short_video(bframe_video, tmp_path):
    video = get_decoder("pyav").open(bframe_video)
    late = video.frames(np.array([200, 250]))
    early = video.frames(np.array([10, 200]))  # earlier than the last frame given: decoded again
    assert np.array_equal(early[1], late[0]) and not np.array_equal(early[0], late[0])
    rng = np.random.default_rng(1)
    short = write_video(tmp_path / "short.mp4", rng.integers(0, 255, (10, 48, 64, 3), dtype=np.uint8), 16.0)
    (start_d, _), ref = _decode(short, "decord", "mean", None)
    (start_p, _), got = _decode(short, "pyav", "mean", None)
    assert start_p == start_d and start_p.padded and start_p.num_frames == 10 and got.shape == (16, 48, 64, 3)
    assert np.abs(got.astype(np.int16) - ref).mean() <= MEAN_DIFF_BOUND


def test_bad_files_get_the_same_kinds(tmp_path, bframe_video):
    (tmp_path / "text.mp4").write_text("this is not a video\n")
    (tmp_path / "zero.mp4").write_bytes(b"")
    cut = make_truncated(bframe_video, tmp_path / "cut.mp4", keep=0.3)
    for name in ("text.mp4", "zero.mp4", "missing.mp4"):
        kinds = {}
        for decoder in ("decord", "pyav"):
            msgs = list(iter_video_blocks("v", tmp_path / name, rule="middle", decoder=decoder))
            assert len(msgs) == 1 and isinstance(msgs[0], VideoFailed)
            kinds[decoder] = msgs[0].error
        assert kinds["decord"].split(":")[0] == kinds["pyav"].split(":")[0], kinds
    assert kinds["pyav"] == "missing: no such file"
    # a cut-off file: whatever each backend makes of it, pyav ends with a message, not an exception
    last = list(iter_video_blocks("v", cut, rule="mean", decoder="pyav"))[-1]
    assert isinstance(last, (VideoEnd, VideoFailed))


def test_stores_of_both_backends_agree_and_record_their_backend(tmp_path):
    import av
    import decord

    root, m = cached_synthetic_dataset(TINY_SYNTH)
    a = open_store(extract_tiny(m, root, tmp_path / "decord.zarr"))
    b = open_store(extract_tiny(m, root, tmp_path / "pyav.zarr", decoder="pyav"))
    auto = open_store(extract_tiny(m, root, tmp_path / "auto.zarr", decoder="auto"))
    assert a.video_ids() == b.video_ids() and len(a.video_ids()) == len(m.videos)
    cosines = []
    for vid in a.video_ids():
        x, y = a.read(vid), b.read(vid)
        assert x.shape == y.shape
        cos = float((x * y).sum() / (np.linalg.norm(x) * np.linalg.norm(y)))
        cosines.append(cos)
    assert min(cosines) >= 0.9999, cosines
    # decord, the default: the config record and its hash are those of a config without the field;
    # auto is the fastest installed backend (pyav) and writes its store
    assert "decoder" not in to_dict(tiny_extract_config()) and "decoder" not in a.attrs["config"]
    assert b.attrs["config_hash"] == auto.attrs["config_hash"] and b.content_hash() == auto.content_hash()
    assert a.attrs["decoder"] == {"name": "decord", "version": decord.__version__}
    assert b.attrs["config"]["decoder"] == "pyav" and b.attrs["config_hash"] != a.attrs["config_hash"]
    assert b.attrs["decoder"] == {"name": "pyav", "version": av.__version__}
    # resuming the decord store with pyav is another configuration: refused, nothing changed
    before = a.content_hash()
    with pytest.raises(InputError, match="config"):
        extract_tiny(m, root, tmp_path / "decord.zarr", decoder="pyav")
    assert open_store(tmp_path / "decord.zarr").content_hash() == before


def test_cli_refuses_an_unknown_decoder_before_writing(cli, tmp_path):
    root, _ = cached_synthetic_dataset(TINY_SYNTH)
    out = tmp_path / "x.zarr"
    code, text = cli(
        "extract", "--dataset", root / "manifest.jsonl", "--root", root, "--out", out,
        "--model", "dsan-tiny", "--pretrained", "none", "--decoder", "opencv", "--no-progress",
    )  # fmt: skip
    assert code != 0 and "--decoder must be one of auto, decord, pyav" in " ".join(text.split())
    assert "Traceback" not in text and not out.exists()
