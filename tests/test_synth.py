"""Synthetic dataset: real H.264 files, manifest, determinism, visible events, CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import av
import decord
import numpy as np
import pytest

from dsan_toolkit.config import config_hash, from_dict, to_dict
from dsan_toolkit.datasets.synth import (
    EVENTS,
    SynthConfig,
    is_complete,
    make_synthetic_dataset,
    plan_dataset,
    read_sidecar,
    render_video,
    write_video,
)
from dsan_toolkit.errors import InputError
from dsan_toolkit.manifest import read_manifest
from dsan_toolkit.testing import TINY_SYNTH, tiny_config


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return root, make_synthetic_dataset(root, TINY_SYNTH)


def _frames(path: Path) -> np.ndarray:
    vr = decord.VideoReader(str(path), num_threads=1)
    return vr.get_batch(list(range(len(vr)))).asnumpy()


def _vivid(f: np.ndarray) -> np.ndarray:
    """Pixels no muted background has: strongly saturated, or bright in every channel."""
    return ((f.max(-1) - f.min(-1)) > 0.45) | (f.min(-1) > 0.7)


def _vivid_fraction(frames: np.ndarray) -> np.ndarray:
    """Per frame: the fraction of vivid pixels."""
    return _vivid(frames.astype(np.float32) / 255.0).mean(axis=(1, 2))


def test_layout_and_manifest(synth):
    root, m = synth
    assert (root / "manifest.jsonl").is_file()
    assert read_manifest(root / "manifest.jsonl") == m
    assert m.name == "synth" and m.normal_class == "Normal"
    assert m.class_codes == ("Normal", "Fire", "Fight", "Crash")
    assert config_hash(TINY_SYNTH) in m.info.description
    counts = m.counts()
    assert counts["train"]["videos"] == 5 and counts["train"]["anomalous"] == 3
    assert counts["test"]["videos"] == 5 and counts["test"]["anomalous"] == 3
    # anomalies spread over the classes; only anomalous TEST videos carry segments
    assert {counts["train"][f"class:{c}"] for c in ("Fire", "Fight", "Crash")} == {1}
    assert counts["train"]["annotated"] == 0 and counts["test"]["annotated"] == 3
    for v in m.videos:
        assert v.path == f"videos/{v.split}/{v.id}.mp4" and (root / v.path).is_file()
        assert v.fps == 16.0 and TINY_SYNTH.min_frames <= v.num_frames <= TINY_SYNTH.max_frames
        if v.split == "test" and m.is_anomalous(v):
            assert v.segments and all(s.label == v.labels[0] for s in v.segments)
        else:
            assert not v.segments
    side = read_sidecar(root)
    assert side["complete"] is True and side["config_hash"] == config_hash(TINY_SYNTH)
    assert side["manifest_hash"] == m.content_hash()
    assert from_dict(side["config"]) == TINY_SYNTH
    # the sidecar holds every event, train ones too, and agrees with the test segments
    anomalous = [v for v in m.videos if m.is_anomalous(v)]
    assert sorted(side["events"]) == sorted(v.id for v in anomalous)
    for v in anomalous:
        if v.split == "test":
            assert [(s.start, s.end) for s in v.segments] == [(e["start"], e["end"]) for e in side["events"][v.id]]


def test_files_are_h264_decodable_by_decord(synth):
    root, m = synth
    for v in m.videos:
        vr = decord.VideoReader(str(root / v.path), num_threads=1)
        assert len(vr) == v.num_frames
        assert vr.get_avg_fps() == pytest.approx(16.0)
        assert vr[len(vr) - 1].shape == (48, 64, 3)
    with av.open(str(root / m.videos[0].path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert c.format.name.startswith("mov,mp4")


def test_event_intervals(synth):
    root, m = synth
    side = read_sidecar(root)
    for v in m.videos:
        events = [(e["start"], e["end"]) for e in side["events"].get(v.id, [])]
        if not m.is_anomalous(v):
            assert events == []
            continue
        assert 1 <= len(events) <= TINY_SYNTH.max_events
        assert all(0 <= s < e <= v.num_frames for s, e in events)
        assert all(e1 < s2 for (_, e1), (s2, _) in zip(events, events[1:]))  # sorted, disjoint, with a gap
        covered = sum(e - s for s, e in events) / v.num_frames
        assert 0.18 <= covered <= 0.52


def test_coverage_over_many_plans():
    cfg = SynthConfig(train_normal=0, train_anomalous=60, test_normal=0, test_anomalous=60)
    plans = plan_dataset(cfg)
    cover = np.array([sum(e - s for s, e in p.events) / p.num_frames for p in plans])
    n_events = np.array([len(p.events) for p in plans])
    assert cover.min() >= 0.19 and cover.max() <= 0.51
    assert set(n_events) == {1, 2}
    assert {p.label for p in plans} == set(cfg.classes)


def test_events_visible_in_decoded_pixels(synth):
    """Every annotated frame shows a large vivid event; no other frame does."""
    root, m = synth
    side = read_sidecar(root)
    for v in m.videos:
        sat = _vivid_fraction(_frames(root / v.path))
        mask = np.zeros(v.num_frames, bool)
        for e in side["events"].get(v.id, []):
            mask[e["start"] : e["end"]] = True
        assert (sat[~mask] < 0.01).all(), v.id
        if mask.any():
            assert (sat[mask] > 0.08).all(), v.id
            assert sat[mask].mean() > 0.15, v.id


def test_events_are_class_specific(synth):
    """Mean colour of the vivid event pixels differs by class (red / yellow+cyan / cyan-white)."""
    root, m = synth
    side = read_sidecar(root)
    colour: dict[str, np.ndarray] = {}
    for v in m.videos:
        if v.id not in side["events"]:
            continue
        e = side["events"][v.id][0]
        f = _frames(root / v.path)[e["start"] : e["end"]].astype(np.float32) / 255.0
        sat = _vivid(f)
        colour.setdefault(v.labels[0], []).append(f[sat].mean(0))  # type: ignore[arg-type]
    mean = {k: np.mean(v, axis=0) for k, v in colour.items()}
    assert mean["Fire"][0] > 0.8 and mean["Fire"][2] < 0.3  # red/orange
    assert mean["Fight"][1] > 0.8  # yellow and cyan squares: green high
    assert mean["Crash"][2] > 0.8 and mean["Crash"][1] > 0.8  # cyan-white streak
    codes = sorted(mean)
    for i, a in enumerate(codes):
        for b in codes[i + 1 :]:
            assert np.abs(mean[a] - mean[b]).max() > 0.25, (a, b)


def test_same_seed_same_pixels_other_seed_differs(synth, tmp_path):
    root, m = synth
    again = make_synthetic_dataset(tmp_path / "again", TINY_SYNTH)
    assert again == m
    for v in m.videos[:4]:
        assert np.array_equal(_frames(root / v.path), _frames(tmp_path / "again" / v.path))
        # single-threaded x264: the bytes are the same too
        assert (root / v.path).read_bytes() == (tmp_path / "again" / v.path).read_bytes()
    other_cfg = tiny_config(seed=1)
    other = make_synthetic_dataset(tmp_path / "other", other_cfg)
    assert [v.num_frames for v in other.videos] != [v.num_frames for v in m.videos]
    a, b = _frames(root / m.videos[0].path), _frames(tmp_path / "other" / other.videos[0].path)
    n = min(len(a), len(b))
    assert not np.array_equal(a[:n], b[:n])


def test_reuse_refuse_overwrite(synth, tmp_path):
    root, m = synth
    video = root / m.videos[0].path
    before = video.stat().st_mtime_ns
    assert make_synthetic_dataset(root, TINY_SYNTH) == m  # reused, not rewritten
    assert video.stat().st_mtime_ns == before

    out = tmp_path / "d"
    make_synthetic_dataset(out, tiny_config(train_normal=3))
    smaller = tiny_config(train_normal=1)
    with pytest.raises(InputError, match="another config"):
        make_synthetic_dataset(out, smaller)
    m2 = make_synthetic_dataset(out, smaller, overwrite=True)
    files = sorted(p.relative_to(out).as_posix() for p in (out / "videos").rglob("*.mp4"))
    assert files == sorted(v.path for v in m2.videos)  # the stale videos are gone
    assert is_complete(out, smaller) and not is_complete(out, tiny_config(train_normal=3))

    # an interrupted run (sidecar says incomplete) is regenerated without --overwrite
    side = json.loads((out / "synth.json").read_text())
    (out / "synth.json").write_text(json.dumps({**side, "complete": False}))
    (out / m2.videos[0].path).unlink()
    assert make_synthetic_dataset(out, tiny_config(seed=5)).videos[0].num_frames > 0

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        make_synthetic_dataset(foreign, TINY_SYNTH)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        make_synthetic_dataset(tmp_path / "file", TINY_SYNTH)


def test_parallel_generation_matches_serial(synth, tmp_path):
    root, m = synth
    par = make_synthetic_dataset(tmp_path / "par", TINY_SYNTH, workers=2)
    assert par == m
    for v in m.videos:
        assert (root / v.path).read_bytes() == (tmp_path / "par" / v.path).read_bytes()


def test_config_round_trip_and_checks():
    cfg = tiny_config(classes=("crash", "fire"), coverage=(0.3, 0.4))
    assert from_dict(to_dict(cfg)) == cfg
    assert config_hash(cfg) != config_hash(TINY_SYNTH)
    bad = {
        "width": dict(width=63),
        "classes": dict(classes=("fire", "flood")),
        "min_frames": dict(min_frames=100, max_frames=90),
        "coverage": dict(coverage=(0.6, 0.3)),
        "no video": dict(train_normal=0, train_anomalous=0, test_normal=0, test_anomalous=0),
        "fps": dict(fps=0.0),
    }
    for _what, kw in bad.items():
        with pytest.raises(InputError):
            replace(TINY_SYNTH, **kw).check()
    with pytest.raises(
        InputError, match=r"min_frames \(24\) must be at least 32 \(8, and twice min_event_frames = 2 x 16\)"
    ):
        replace(TINY_SYNTH, min_frames=24, max_frames=40, min_event_frames=16).check()
    with pytest.raises(InputError, match="even"):
        write_video(Path("/tmp/never.mp4"), np.zeros((2, 5, 6, 3), np.uint8), 16.0)


def test_events_separable_in_random_tiny_clip_features():
    """The point of the data: a random-init tiny CLIP on 224x224 frames already tells
    event frames from background frames (distance to the normal mean)."""
    import torch
    from sklearn.metrics import roc_auc_score

    from dsan_toolkit.clip import TINY_MODEL, create_clip

    cfg = SynthConfig(
        train_normal=2,
        train_anomalous=0,
        test_normal=2,
        test_anomalous=3,
        min_frames=64,
        max_frames=80,
        min_event_frames=8,
    )
    bundle = create_clip(TINY_MODEL, seed=0)
    mean = torch.tensor(bundle.info.mean).view(1, 3, 1, 1)
    std = torch.tensor(bundle.info.std).view(1, 3, 1, 1)
    feats, labels, splits = [], [], []
    for v in plan_dataset(cfg):
        idx = np.arange(0, v.num_frames, 6)
        x = torch.from_numpy(render_video(cfg, v)[idx]).permute(0, 3, 1, 2).float() / 255.0
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        with torch.no_grad():
            f = bundle.model.encode_image((x - mean) / std)
        feats.append(torch.nn.functional.normalize(f, dim=-1).numpy())
        lab = np.zeros(v.num_frames, int)
        for s, e in v.events:
            lab[s:e] = 1
        labels.append(lab[idx])
        splits += [v.split] * len(idx)
    X, y, split = np.concatenate(feats), np.concatenate(labels), np.array(splits)
    mu = X[split == "train"].mean(0)
    score = np.linalg.norm(X[split == "test"] - mu, axis=1)
    assert roc_auc_score(y[split == "test"], score) > 0.85


def test_registry_lists_the_events():
    assert {"fire", "fight", "crash"} <= set(EVENTS)
    assert len({EVENTS[c].code for c in EVENTS}) == len(EVENTS)


# -- CLI ----------------------------------------------------------------------------------

_TINY_ARGS = [
    "--train-normal",
    "1",
    "--train-anomalous",
    "2",
    "--test-normal",
    "1",
    "--test-anomalous",
    "2",
    "--min-frames",
    "48",
    "--max-frames",
    "64",
    "--width",
    "64",
    "--height",
    "48",
]


def test_cli_synth(cli, tmp_path):
    code, out = cli("synth", "--out", tmp_path / "s", *_TINY_ARGS, "--classes", "fire,crash", "--seed", "3")
    assert code == 0, out
    m = read_manifest(tmp_path / "s" / "manifest.jsonl")
    assert len(m) == 6 and m.class_codes == ("Normal", "Fire", "Crash")
    assert "Fire" in out and "with segments" in out
    cfg = from_dict(read_sidecar(tmp_path / "s")["config"])
    assert cfg.seed == 3 and cfg.classes == ("fire", "crash") and cfg.width == 64

    code, out = cli("synth", "--out", tmp_path / "s", *_TINY_ARGS, "--classes", "fire,crash", "--seed", "3")
    assert code == 0 and "reusing" in out

    # --config: a JSON of fields, or the sidecar itself
    (tmp_path / "cfg.json").write_text(json.dumps({"seed": 3, "classes": ["fire", "crash"], "width": 64}))
    code, out = cli("synth", "--out", tmp_path / "s2", "--config", tmp_path / "synth_unused.json")
    assert code == 2 and "not found" in out
    code, out = cli("synth", "--out", tmp_path / "s3", "--config", tmp_path / "s" / "synth.json")
    assert code == 0, out
    assert read_manifest(tmp_path / "s3" / "manifest.jsonl") == m


@pytest.mark.parametrize(
    "args, message",
    [
        (["--classes", "fire,flood"], "unknown event classes"),
        (["--width", "65"], "even"),
        (["--min-frames", "400", "--max-frames", "300"], "min_frames"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_cli_synth_errors(cli, tmp_path, args, message):
    code, out = cli("synth", "--out", tmp_path / "e", *args)
    assert code == 2
    assert message in out and "Traceback" not in out


def test_cli_synth_refuses_foreign_and_other_config(cli, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "a.txt").write_text("x")
    code, out = cli("synth", "--out", tmp_path / "busy", *_TINY_ARGS)
    assert code == 2 and "not empty" in out
    assert cli("synth", "--out", tmp_path / "s", *_TINY_ARGS)[0] == 0
    code, out = cli("synth", "--out", tmp_path / "s", *_TINY_ARGS, "--seed", "9")
    assert code == 2 and "--overwrite" in out
    assert cli("synth", "--out", tmp_path / "s", *_TINY_ARGS, "--seed", "9", "--overwrite")[0] == 0
    (tmp_path / "bad.json").write_text('{"seed": 1, "colour": "red"}')
    code, out = cli("synth", "--out", tmp_path / "t", "--config", tmp_path / "bad.json")
    assert code == 2 and "unknown config keys" in out


def test_cli_synth_features(cli, tmp_path):
    """`dsan synth --features`: a synthetic feature store instead of videos."""
    from dsan_toolkit.store import open_store

    (tmp_path / "f.json").write_text(
        json.dumps({"num_train": 3, "num_test": 2, "crops": 2, "feature_dim": 16, "median_t": 12.0, "max_t": 20})
    )
    code, out = cli("synth", "--features", tmp_path / "f.zarr", "--config", tmp_path / "f.json", "--seed", "4")
    assert code == 0, out
    store = open_store(tmp_path / "f.zarr")
    assert store.complete and store.num_crops == 2 and store.feature_dim == 16
    assert len(store.video_ids()) == 5
    v = store.video_ids()[0]
    assert store.read(v).shape[-1] == 16
    code, out = cli("synth", "--features", tmp_path / "g.zarr", "--width", "64")
    assert code == 2 and "--width" in out and "video options" in out
    code, out = cli("synth", "--out", tmp_path / "v", "--like", "ucf")
    assert code == 2 and "--like only applies to --features" in out
    code, out = cli("synth")
    assert code == 2 and "exactly one of --out" in out
