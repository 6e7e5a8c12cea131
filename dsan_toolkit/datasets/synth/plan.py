"""The generation config and the plan it gives: which videos, how long, where their events are.

Every draw comes from one ``numpy.random.Generator`` per video, seeded from
``(seed, split, normal/anomalous, index)`` (:func:`video_rng`), so the plan of a config never
changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...config import register_config
from ...errors import InputError
from .events import EVENTS, list_events


@register_config
@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a synthetic dataset (hashed into ``synth.json``).

    Anomalous videos are spread over ``classes`` in turn; each has ``1..max_events``
    intervals covering ``coverage`` (min, max) of its frames. ``crf`` is x264's quality.
    """

    seed: int = 0
    train_normal: int = 8
    train_anomalous: int = 8
    test_normal: int = 4
    test_anomalous: int = 6
    min_frames: int = 160
    max_frames: int = 320
    width: int = 160
    height: int = 120
    fps: float = 16.0
    classes: tuple[str, ...] = ("fire", "fight", "crash")
    coverage: tuple[float, float] = (0.2, 0.5)
    max_events: int = 2
    min_event_frames: int = 16
    snippet_len: int = 16
    crf: int = 20

    def check(self) -> None:
        """Raise :class:`InputError` for a config that cannot be generated."""
        problems = []
        for name in ("train_normal", "train_anomalous", "test_normal", "test_anomalous"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if self.train_normal + self.train_anomalous + self.test_normal + self.test_anomalous == 0:
            problems.append("the dataset would have no video")
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            problems.append(f"width and height must be even and >= 16, got {self.width}x{self.height}")
        if not self.fps > 0:
            problems.append(f"fps must be positive, got {self.fps}")
        if not self.classes:
            problems.append("at least one anomaly class is needed")
        unknown = [c for c in self.classes if c not in EVENTS]
        if unknown:
            problems.append(f"unknown event classes {unknown}; known: {list_events()}")
        if len(set(self.classes)) != len(self.classes):
            problems.append("classes must not repeat")
        lo, hi = self.coverage
        if not 0 < lo <= hi < 1:
            problems.append(f"coverage must satisfy 0 < min <= max < 1, got {self.coverage}")
        if self.max_events < 1:
            problems.append("max_events must be >= 1")
        if self.min_event_frames < 1:
            problems.append("min_event_frames must be >= 1")
        if self.min_frames > self.max_frames:
            problems.append(f"min_frames ({self.min_frames}) > max_frames ({self.max_frames})")
        if self.min_frames < max(2 * self.min_event_frames, 8):
            problems.append(
                f"min_frames ({self.min_frames}) must be at least {max(2 * self.min_event_frames, 8)} "
                f"(8, and twice min_event_frames = 2 x {self.min_event_frames})"
            )
        if not 0 <= self.crf <= 51:
            problems.append(f"crf must be in 0..51, got {self.crf}")
        if self.snippet_len < 1:
            problems.append("snippet_len must be >= 1")
        if problems:
            raise InputError("invalid synthetic dataset config: " + "; ".join(problems))


@dataclass(frozen=True)
class PlannedVideo:
    id: str
    split: str
    label: str  # event name, or "normal"
    index: int  # index within (split, normal/anomalous) used for seeding
    num_frames: int
    events: tuple[tuple[int, int], ...]  # [start, end) intervals

    @property
    def rel_path(self) -> str:
        return f"videos/{self.split}/{self.id}.mp4"


_SPLIT_SALT = {"train": 1, "test": 2}


def video_rng(cfg: SynthConfig, split: str, kind: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([cfg.seed, _SPLIT_SALT[split], kind, index]))


def _event_intervals(cfg: SynthConfig, n_frames: int, rng: np.random.Generator) -> tuple[tuple[int, int], ...]:
    """1..max_events disjoint intervals covering ~coverage of the frames, with gaps between."""
    n_events = int(rng.integers(1, cfg.max_events + 1))
    while n_events > 1 and n_events * cfg.min_event_frames > cfg.coverage[0] * n_frames:
        n_events -= 1
    total = int(round(rng.uniform(*cfg.coverage) * n_frames))
    total = max(total, n_events * cfg.min_event_frames)
    # lengths: min length each, the rest split at random
    extra = total - n_events * cfg.min_event_frames
    cuts = np.sort(rng.integers(0, extra + 1, size=n_events - 1))
    lengths = np.diff(np.concatenate([[0], cuts, [extra]])) + cfg.min_event_frames
    # gaps: n_events + 1 gaps; the inner ones are at least min_gap long
    min_gap = min(cfg.min_event_frames // 2, (n_frames - total) // (n_events + 1))
    free = n_frames - total - (n_events - 1) * min_gap
    gcuts = np.sort(rng.integers(0, free + 1, size=n_events))
    gaps = np.diff(np.concatenate([[0], gcuts, [free]]))
    gaps[1:-1] += min_gap
    starts = gaps[:-1].cumsum() + np.concatenate([[0], lengths[:-1].cumsum()])
    return tuple((int(s), int(s + n)) for s, n in zip(starts, lengths))


def plan_dataset(cfg: SynthConfig) -> list[PlannedVideo]:
    """The videos of a config, in manifest order (train then test; normal then anomalous)."""
    cfg.check()
    out: list[PlannedVideo] = []
    for split, n_norm, n_anom in (
        ("train", cfg.train_normal, cfg.train_anomalous),
        ("test", cfg.test_normal, cfg.test_anomalous),
    ):
        for i in range(n_norm):
            rng = video_rng(cfg, split, 0, i)
            n = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
            out.append(PlannedVideo(f"{split}_normal_{i:03d}", split, "normal", i, n, ()))
        for i in range(n_anom):
            rng = video_rng(cfg, split, 1, i)
            n = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
            cls = cfg.classes[i % len(cfg.classes)]
            out.append(PlannedVideo(f"{split}_{cls}_{i:03d}", split, cls, i, n, _event_intervals(cfg, n, rng)))
    return out


__all__ = ["PlannedVideo", "SynthConfig", "plan_dataset", "video_rng"]
