"""Synthetic feature stores: CLIP-like features with annotated anomalies, written directly.

For training tests and demos at realistic scale without videos or a backbone. The
statistics imitate CLIP image features of surveillance video:

- every row is close to unit norm (``norm`` +- a few percent) and shares a strong common
  direction (random CLIP image features have pairwise cosine around 0.5);
- each video has its own scene direction, rows drift smoothly along T (noise drawn at a
  coarse time step and interpolated), the crops of a row are highly correlated;
- anomalous snippets add a class-specific direction (one per anomaly class) with strength
  ``signal``: inside the annotated segments for test videos, inside one or two hidden
  intervals for training videos (weak labels only, as in the real datasets);
- lengths T follow a log-normal distribution (UCF-Crime's test set: median ~ 250, mean ~ 400
  snippets) clipped to ``[min_t, max_t]``.

The manifest (classes of UCF or XD, segments in frames, num_frames = 16 T + r with
0 <= r < 16, fps) is embedded in the store as for a real extraction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..config import register_config, to_dict
from ..errors import InputError
from ..manifest import DatasetInfo, Manifest, Segment, VideoRecord
from .schema import StoreSpec
from .writer import StoreWriter


@register_config
@dataclass(frozen=True)
class SynthFeaturesConfig:
    """Size and statistics of a synthetic feature store.

    UCF-Crime sized: ``SynthFeaturesConfig(num_train=1610, num_test=290, crops=10)``.
    """

    name: str = "synth"
    class_table: str = "ucf"  # "ucf" or "xd": class codes/prompts of that built-in dataset
    num_train: int = 16
    num_test: int = 8
    anomalous_fraction: float = 0.5
    crops: int = 10
    feature_dim: int = 512
    median_t: float = 250.0
    sigma_t: float = 0.8
    min_t: int = 8
    max_t: int = 2000
    snippet_len: int = 16
    fps: float = 30.0
    signal: float = 0.6
    norm: float = 1.0
    dtype: str = "float32"
    seed: int = 0


def _class_table(cfg: SynthFeaturesConfig) -> DatasetInfo:
    from ..manifest.builtin import load_builtin_manifest

    if cfg.class_table not in ("ucf", "xd"):
        raise InputError(f"class_table must be 'ucf' or 'xd', not {cfg.class_table!r}")
    base = load_builtin_manifest(cfg.class_table).info
    return DatasetInfo(
        name=cfg.name,
        classes=base.classes,
        fps=cfg.fps,
        snippet_len=cfg.snippet_len,
        test_crop=base.test_crop if base.test_crop < cfg.crops else 0,
        description=f"synthetic CLIP-like features ({cfg.class_table} classes), seed {cfg.seed}",
    )


def _intervals(rng: np.random.Generator, T: int) -> list[tuple[int, int]]:
    """One or two anomalous snippet intervals [a, b) inside [0, T)."""
    n = 1 if T < 40 or rng.random() < 0.7 else 2
    out: list[tuple[int, int]] = []
    for part in range(n):
        lo, hi = part * T // n, (part + 1) * T // n
        span = hi - lo
        length = max(1, int(span * rng.uniform(0.15, 0.5)))
        a = lo + int(rng.integers(0, max(1, span - length)))
        out.append((a, min(hi, a + length)))
    return out


def synthetic_manifest(cfg: SynthFeaturesConfig) -> tuple[Manifest, dict[str, list[tuple[int, int]]]]:
    """The manifest and the anomalous snippet intervals of every anomalous video."""
    if cfg.num_train < 0 or cfg.num_test < 0 or cfg.num_train + cfg.num_test == 0:
        raise InputError("a synthetic store needs at least one video")
    if not 0.0 <= cfg.anomalous_fraction <= 1.0:
        raise InputError("anomalous_fraction must be in [0, 1]")
    info = _class_table(cfg)
    normal = next(c.code for c in info.classes if c.normal)
    anomaly_codes = [c.code for c in info.classes if not c.normal]
    rng = np.random.default_rng(cfg.seed)
    n_all = cfg.num_train + cfg.num_test
    Ts = np.exp(np.log(cfg.median_t) + cfg.sigma_t * rng.standard_normal(n_all))
    Ts = np.clip(np.round(Ts), cfg.min_t, cfg.max_t).astype(int)
    rests = rng.integers(0, cfg.snippet_len, n_all)
    videos: list[VideoRecord] = []
    hidden: dict[str, list[tuple[int, int]]] = {}
    for i in range(n_all):
        split = "train" if i < cfg.num_train else "test"
        j = i if split == "train" else i - cfg.num_train
        n_split = cfg.num_train if split == "train" else cfg.num_test
        anomalous = j < round(n_split * cfg.anomalous_fraction)
        T = int(Ts[i])
        vid = f"{cfg.name}_{split}_{j:05d}"
        num_frames = T * cfg.snippet_len + int(rests[i])
        if anomalous:
            code = anomaly_codes[j % len(anomaly_codes)]
            iv = _intervals(rng, T)
            hidden[vid] = iv
            segs = (
                tuple(Segment(a * cfg.snippet_len, b * cfg.snippet_len, code) for a, b in iv) if split == "test" else ()
            )
            labels: tuple[str, ...] = (code,)
        else:
            segs, labels = (), (normal,)
        videos.append(
            VideoRecord(
                id=vid,
                path=f"{split}/{vid}.mp4",
                split=split,
                labels=labels,
                segments=segs,
                fps=cfg.fps,
                num_frames=num_frames,
            )
        )
    return Manifest(info, tuple(videos)), hidden


def _smooth_noise(rng: np.random.Generator, T: int, D: int, step: int = 8) -> np.ndarray:
    """(T, D) noise that drifts smoothly: knots every ``step`` rows, linear interpolation."""
    knots = rng.standard_normal((T // step + 2, D)).astype(np.float32)
    pos = np.arange(T, dtype=np.float32) / step
    i0 = pos.astype(int)
    w = (pos - i0)[:, None]
    return knots[i0] * (1 - w) + knots[i0 + 1] * w


def _video_features(
    rng: np.random.Generator,
    cfg: SynthFeaturesConfig,
    T: int,
    common: np.ndarray,
    class_dir: np.ndarray | None,
    intervals: list[tuple[int, int]],
) -> np.ndarray:
    D, C = cfg.feature_dim, cfg.crops
    scene = rng.standard_normal(D).astype(np.float32)
    scene /= np.linalg.norm(scene)
    drift = _smooth_noise(rng, T, D) / np.sqrt(D)
    base = 0.75 * common + 0.5 * scene + 0.35 * drift  # (T, D) by broadcasting
    if class_dir is not None:
        mask = np.zeros(T, dtype=np.float32)
        for a, b in intervals:
            mask[a:b] = 1.0
        base = base + cfg.signal * mask[:, None] * class_dir
    crop_noise = rng.standard_normal((C, T, D)).astype(np.float32) * (0.12 / np.sqrt(D))
    x = base[None] + crop_noise
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    scale = cfg.norm * (1.0 + 0.03 * rng.standard_normal((C, T, 1)).astype(np.float32))
    return x * scale


def write_synthetic_feature_store(
    out: Path,
    cfg: SynthFeaturesConfig,
    *,
    overwrite: bool = False,
    mislabel: dict[str, tuple[str, ...]] | None = None,
) -> Path:
    """Write a complete synthetic store at ``out`` (deterministic in ``cfg``) and return it.

    ``mislabel`` (label noise, for tests of model selection): video id -> the labels its
    manifest record gets; its features follow its original labels."""
    out = Path(out)
    manifest, hidden = synthetic_manifest(cfg)
    features_of = manifest.videos
    if mislabel:
        unknown = sorted(set(mislabel) - {v.id for v in manifest.videos})
        if unknown:
            raise InputError(f"mislabel: {len(unknown)} ids are not synthetic videos, e.g. {unknown[0]!r}")
        manifest = Manifest(
            manifest.info,
            tuple(replace(v, labels=tuple(mislabel[v.id])) if v.id in mislabel else v for v in manifest.videos),
        )
    D = cfg.feature_dim
    rng = np.random.default_rng([cfg.seed, 1])
    common = rng.standard_normal(D).astype(np.float32)
    common /= np.linalg.norm(common)
    class_dirs = {}
    for c in manifest.info.classes:
        d = rng.standard_normal(D).astype(np.float32)
        class_dirs[c.code] = d / np.linalg.norm(d)
    spec = StoreSpec(
        manifest=manifest,
        crops=tuple(range(cfg.crops)),
        feature_dim=D,
        backbone={"model": "synthetic", "pretrained": None, "embed_dim": D},
        random_weights=False,
        preprocessing={"kind": "synthetic"},
        snippet_rule="synthetic",
        snippet_len=cfg.snippet_len,
        config=to_dict(cfg),
        producer="synthetic",
        dtype=cfg.dtype,
        extra={"synthetic": True},
    )
    with StoreWriter(out, spec, overwrite=overwrite) as w:
        pending = set(w.pending_ids())
        for i, v in enumerate(features_of):
            if v.id not in pending:
                continue
            vrng = np.random.default_rng([cfg.seed, 2, i])
            T = (v.num_frames or 0) // cfg.snippet_len
            iv = hidden.get(v.id, [])
            cdir = class_dirs[v.labels[0]] if iv else None
            feats = _video_features(vrng, cfg, T, common, cdir, iv)
            w.write_video(v.id, feats, num_frames=v.num_frames, fps=v.fps)
        w.finalize()
    return out
