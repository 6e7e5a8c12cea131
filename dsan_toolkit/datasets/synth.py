"""A small synthetic WS-VAD dataset of real H.264 videos, in the manifest schema.

``make_synthetic_dataset(out_dir, SynthConfig(...))`` writes::

    out_dir/videos/<split>/<id>.mp4   H.264, yuv420p, constant frame rate
    out_dir/manifest.jsonl            dataset "synth": class table, num_frames/fps per video,
                                      [start, end) segments for the anomalous *test* videos
    out_dir/synth.json                the generation config, its sha256, every event interval
                                      (train ones too: the hidden truth of the weak labels)

Every video shows a textured background that pans slowly, with a few dim blobs drifting
over it (normal motion). An anomalous video overlays, during one or two intervals covering
roughly 20-50% of its frames, a large, saturated, class-specific event drawn by a renderer
from :data:`EVENTS` (``fire``: a pulsing red/orange disc; ``fight``: two bright yellow/cyan
squares clashing fast; ``crash``: a bright streak sweeping across). The events are meant to be
learnable from pixels even by a random-init CLIP on 224x224 resized frames.

Pixels depend only on the config (one ``numpy.random.Generator`` per video, seeded from
``(seed, split, index)``) and x264 runs single-threaded, so a seed gives identical frames
(and in practice identical bytes).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import config_hash, register_config, to_dict
from ..errors import InputError
from ..manifest import ClassInfo, DatasetInfo, Manifest, Segment, VideoRecord, read_manifest, write_manifest
from ..utils.atomic import atomic_path, atomic_write_json

MANIFEST_NAME = "manifest.jsonl"
SIDECAR_NAME = "synth.json"
NORMAL_CODE = "Normal"

# ----------------------------------------------------------------------------------------
# Event renderers: a registry of class-specific overlays
# ----------------------------------------------------------------------------------------

# A renderer paints an event into frames in place: (frames (n,H,W,3) float32 in [0,1],
# local time t (n,) float32 = frame indices inside the interval, rng) -> None. Frames come
# in chunks: every call for one interval gets a fresh Generator with the same seed, so a
# renderer must draw its parameters from ``rng`` first and be a pure function of ``t``.
Renderer = Callable[[np.ndarray, np.ndarray, np.random.Generator], None]


@dataclass(frozen=True)
class EventSpec:
    """One anomaly class of the synthetic dataset."""

    name: str
    code: str
    prompt: str
    description: str
    render: Renderer = field(compare=False, repr=False)


EVENTS: dict[str, EventSpec] = {}


def register_event(name: str, code: str, prompt: str, description: str) -> Callable[[Renderer], Renderer]:
    def deco(fn: Renderer) -> Renderer:
        if name in EVENTS:
            raise ValueError(f"synthetic event {name!r} registered twice")
        EVENTS[name] = EventSpec(name, code, prompt, description, fn)
        return fn

    return deco


def list_events() -> list[str]:
    return sorted(EVENTS)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy = np.arange(h, dtype=np.float32)[None, :, None]
    xx = np.arange(w, dtype=np.float32)[None, None, :]
    return yy, xx


def _paint(frames: np.ndarray, mask: np.ndarray, color: np.ndarray) -> None:
    """Blend ``color`` (T,1,1,3 or 3) into frames where ``mask`` (T,H,W, in [0,1]) is set."""
    m = mask[..., None]
    frames *= 1.0 - m
    frames += m * color


@register_event("fire", "Fire", "fire", "a large pulsing, flickering red/orange disc")
def _render_fire(frames: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> None:
    _, h, w, _ = frames.shape
    yy, xx = _grid(h, w)
    cy = h * rng.uniform(0.4, 0.6)
    cx = w * rng.uniform(0.35, 0.65)
    phase = rng.uniform(0, 2 * np.pi)
    radius = (0.36 * h * (1.0 + 0.25 * np.sin(2 * np.pi * t / 6.0 + phase)))[:, None, None]
    wobble = (0.06 * h * np.sin(2 * np.pi * t / 3.0))[:, None, None]
    d = np.sqrt((yy - cy + wobble) ** 2 + (xx - cx) ** 2)
    mask = np.clip((radius - d) / 3.0, 0.0, 1.0)
    # red outside, orange/yellow at the core, flickering brightness
    core = np.clip(1.0 - d / np.maximum(radius, 1.0), 0.0, 1.0)
    flicker = (0.85 + 0.15 * np.sin(2 * np.pi * t / 2.5 + phase))[:, None, None]
    color = np.stack([flicker * np.ones_like(core), flicker * (0.15 + 0.7 * core), 0.05 * core], axis=-1)
    _paint(frames, mask, color)


@register_event("fight", "Fight", "fighting", "two bright yellow/cyan squares clashing fast")
def _render_fight(frames: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> None:
    _, h, w, _ = frames.shape
    yy, xx = _grid(h, w)
    side = 0.45 * h
    cy = h * rng.uniform(0.4, 0.6)
    period = float(rng.uniform(5.0, 8.0))
    # the squares swing between the sides and a collision at the centre
    swing = 0.5 * (1.0 + np.cos(2 * np.pi * t / period))  # 1 apart, 0 colliding
    offset = (side * 0.5 + swing * 0.22 * w)[:, None, None]
    jitter = (0.08 * h * np.sin(2 * np.pi * t / 2.0))[:, None, None]
    cx = 0.5 * w
    for sign, color in ((-1.0, np.array([1.0, 1.0, 0.1], np.float32)), (1.0, np.array([0.1, 1.0, 1.0], np.float32))):
        x0 = cx + sign * offset
        y0 = cy + sign * jitter
        mask = ((np.abs(xx - x0) < side / 2) & (np.abs(yy - y0) < side / 2)).astype(np.float32)
        _paint(frames, mask, color)


@register_event("crash", "Crash", "road accident", "a bright white/cyan streak sweeping across the frame")
def _render_crash(frames: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> None:
    _, h, w, _ = frames.shape
    yy, xx = _grid(h, w)
    slope = float(rng.uniform(-0.6, 0.6))
    sweep = float(rng.uniform(8.0, 12.0))  # frames per crossing
    thick = 0.34 * w
    # the streak's leading edge sweeps across, restarting each sweep; its opaque head
    # (the leading half) never leaves the frame, its tail fades out
    lead = (0.55 * thick + ((t % sweep) / sweep) * (w - 0.55 * thick))[:, None, None]
    pos = xx + slope * (yy - h / 2)
    behind = (lead - pos) / thick  # 0 at the head, 1 at the end of the tail
    inside = (behind >= 0) & (behind <= 1)
    mask = np.where(behind < 0.5, 1.0, 1.0 - 1.2 * (behind - 0.5)) * inside
    _paint(frames, mask.astype(np.float32), np.array([0.75, 1.0, 1.0], np.float32))


# ----------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------
# Planning: which videos, how long, where the events are
# ----------------------------------------------------------------------------------------


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


def _rng(cfg: SynthConfig, split: str, kind: int, index: int) -> np.random.Generator:
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
            rng = _rng(cfg, split, 0, i)
            n = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
            out.append(PlannedVideo(f"{split}_normal_{i:03d}", split, "normal", i, n, ()))
        for i in range(n_anom):
            rng = _rng(cfg, split, 1, i)
            n = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
            cls = cfg.classes[i % len(cfg.classes)]
            out.append(PlannedVideo(f"{split}_{cls}_{i:03d}", split, cls, i, n, _event_intervals(cfg, n, rng)))
    return out


# ----------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth, muted, tileable texture (2h x 2w x 3, float32 in [0,1]).

    Greyish with a slight tint: videos differ by texture and motion, not by a global colour
    cast, so that the saturated events stand out even in random-init CLIP features.
    """
    th, tw = 2 * h, 2 * w
    out = np.zeros((th, tw, 3), np.float32)
    # a sum of low-frequency tileable sinusoids
    yy = np.arange(th, dtype=np.float32)[:, None] / th
    xx = np.arange(tw, dtype=np.float32)[None, :] / tw
    base = (0.42 + rng.uniform(-0.06, 0.06) + rng.uniform(-0.03, 0.03, size=3)).astype(np.float32)
    for _ in range(6):
        ky, kx = rng.integers(1, 7, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        amp = (rng.uniform(0.02, 0.07) * (1.0 + rng.uniform(-0.2, 0.2, size=3))).astype(np.float32)
        wave = np.sin(2 * np.pi * (ky * yy + kx * xx) + phase)
        out += wave[..., None] * amp
    noise = rng.normal(0.0, 0.02, size=(th, tw, 1)).astype(np.float32)
    return np.clip(out + base + noise, 0.0, 1.0)


@dataclass(frozen=True)
class Background:
    """The drawn parameters of a video's background: texture, pan speed, drifting blobs."""

    tiled: np.ndarray = field(repr=False)  # the texture tiled 2x2: (4h, 4w, 3)
    velocity: tuple[float, float]  # pixels per frame (y, x)
    blobs: tuple[tuple[float, ...], ...]  # (y0, x0, dy, dx, ry, rx, shade) each
    height: int
    width: int

    @classmethod
    def draw(cls, rng: np.random.Generator, h: int, w: int) -> "Background":
        tex = _texture(rng, h, w)
        vy, vx = rng.uniform(-0.4, 0.4, size=2)
        blobs = []
        for _ in range(int(rng.integers(2, 5))):
            y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
            dy, dx = rng.uniform(-0.3, 0.3), rng.uniform(-0.8, 0.8)
            ry, rx = h * rng.uniform(0.06, 0.1), h * rng.uniform(0.03, 0.05)
            blobs.append((y0, x0, dy, dx, ry, rx, rng.uniform(-0.12, 0.12)))
        tiled = np.concatenate([np.concatenate([tex, tex], axis=1)] * 2, axis=0)
        return cls(tiled, (float(vy), float(vx)), tuple(blobs), h, w)

    def paint(self, t: np.ndarray, out: np.ndarray) -> None:
        """Write frames ``t`` (absolute indices, (n,)) into ``out`` ((n, H, W, 3) float32)."""
        h, w = self.height, self.width
        th, tw = self.tiled.shape[0] // 2, self.tiled.shape[1] // 2
        tf = t.astype(np.float32)
        oy = np.round(tf * self.velocity[0]).astype(np.int64) % th
        ox = np.round(tf * self.velocity[1]).astype(np.int64) % tw
        # every (H, W) window of the tiled texture; frame t is the window at (oy[t], ox[t])
        windows = np.lib.stride_tricks.sliding_window_view(self.tiled, (h, w), axis=(0, 1))
        out[...] = np.moveaxis(windows[oy, ox], 1, -1)
        # drifting dim "pedestrians": small low-contrast ellipses moving slowly
        ys = np.arange(h, dtype=np.float32)[None, :]
        xs = np.arange(w, dtype=np.float32)[None, :]
        shade = np.zeros(out.shape[:3], np.float32)
        for y0, x0, dy, dx, ry, rx, value in self.blobs:
            ey = ((ys - ((y0 + dy * tf) % h)[:, None]) / ry) ** 2  # (n, H)
            ex = ((xs - ((x0 + dx * tf) % w)[:, None]) / rx) ** 2  # (n, W)
            shade += (ey[:, :, None] + ex[:, None, :] < 1.0) * np.float32(value)
        out += shade[..., None]
        np.clip(out, 0.0, 1.0, out=out)


def render_background(rng: np.random.Generator, n_frames: int, h: int, w: int) -> np.ndarray:
    """(T,H,W,3) float32: a slowly panning texture with a few dim blobs drifting over it."""
    out = np.empty((n_frames, h, w, 3), np.float32)
    Background.draw(rng, h, w).paint(np.arange(n_frames), out)
    return out


CHUNK_FRAMES = 32  # frames rendered at a time: small buffers stay in cache


def render_video(cfg: SynthConfig, video: PlannedVideo) -> np.ndarray:
    """The frames of one planned video: (T, H, W, 3) uint8.

    Rendered in chunks of :data:`CHUNK_FRAMES` frames into a reused float buffer (big
    fresh float arrays cost more in page faults than the drawing itself). Each event
    interval has its own seed, so its renderer draws the same parameters for every chunk.
    """
    kind = 0 if video.label == "normal" else 1
    rng = _rng(cfg, video.split, kind, video.index)
    rng.integers(0, 1)  # keep the stream apart from the planner's draws
    rng = np.random.default_rng(rng.integers(0, 2**63 - 1))
    background = Background.draw(rng, cfg.height, cfg.width)
    event_seeds = rng.integers(0, 2**63 - 1, size=len(video.events))
    spec = EVENTS.get(video.label)
    n = video.num_frames
    frames = np.empty((n, cfg.height, cfg.width, 3), np.uint8)
    buf = np.empty((min(CHUNK_FRAMES, n), cfg.height, cfg.width, 3), np.float32)
    for c0 in range(0, n, CHUNK_FRAMES):
        c1 = min(n, c0 + CHUNK_FRAMES)
        chunk = buf[: c1 - c0]
        background.paint(np.arange(c0, c1), chunk)
        for (start, end), seed in zip(video.events, event_seeds):
            a, b = max(start, c0), min(end, c1)
            if spec is not None and a < b:
                local = np.arange(a - start, b - start, dtype=np.float32)
                spec.render(chunk[a - c0 : b - c0], local, np.random.default_rng(int(seed)))
        chunk *= 255.0
        chunk += 0.5
        np.copyto(frames[c0:c1], chunk, casting="unsafe")
    return frames


# ----------------------------------------------------------------------------------------
# Encoding
# ----------------------------------------------------------------------------------------


def fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def write_video(path: str | Path, frames: np.ndarray, fps: float, *, crf: int = 20) -> Path:
    """Encode ``frames`` (T,H,W,3 uint8 RGB) as an H.264/yuv420p ``.mp4``, atomically.

    x264 runs with one thread so that the same frames give the same bytes.
    """
    import av

    path = Path(path)
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise InputError(f"frames must be a non-empty (T, H, W, 3) array, got shape {frames.shape}")
    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise InputError(f"H.264/yuv420p needs an even frame size, got {w}x{h}")
    with atomic_path(path, suffix=".mp4") as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps_fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.thread_count = 1
        stream.options = {"crf": str(crf), "preset": "ultrafast", "threads": "1", "bframes": "0"}
        container.metadata["comment"] = "dsan_toolkit synthetic video"
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


# ----------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------


def class_table(cfg: SynthConfig) -> tuple[ClassInfo, ...]:
    classes = [ClassInfo(NORMAL_CODE, "normal", "normal", normal=True)]
    classes += [ClassInfo(EVENTS[c].code, EVENTS[c].name, EVENTS[c].prompt) for c in cfg.classes]
    return tuple(classes)


def build_manifest(cfg: SynthConfig) -> Manifest:
    """The manifest of a config (no video is written)."""
    chash = config_hash(cfg)
    info = DatasetInfo(
        name="synth",
        classes=class_table(cfg),
        fps=float(cfg.fps),
        snippet_len=cfg.snippet_len,
        test_crop=0,
        description=f"synthetic WS-VAD videos (dsan synth), config sha256 {chash}",
    )
    videos = []
    for v in plan_dataset(cfg):
        label = NORMAL_CODE if v.label == "normal" else EVENTS[v.label].code
        segments = tuple(Segment(s, e, label) for s, e in v.events) if v.split == "test" else ()
        videos.append(
            VideoRecord(
                id=v.id, path=v.rel_path, split=v.split, labels=(label,), segments=segments,
                fps=float(cfg.fps), num_frames=v.num_frames,
            )
        )
    return Manifest(info, tuple(videos))


def read_sidecar(out_dir: str | Path) -> dict[str, Any] | None:
    """The ``synth.json`` of a generated dataset, or None when there is none (or it is bad)."""
    path = Path(out_dir) / SIDECAR_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(out_dir: str | Path, cfg: SynthConfig) -> bool:
    """True when ``out_dir`` holds a finished dataset generated from exactly ``cfg``."""
    out_dir = Path(out_dir)
    side = read_sidecar(out_dir)
    if not side or not side.get("complete") or side.get("config_hash") != config_hash(cfg):
        return False
    if not (out_dir / MANIFEST_NAME).is_file():
        return False
    return all((out_dir / v.rel_path).is_file() for v in plan_dataset(cfg))


def _generate_one(args: tuple[SynthConfig, PlannedVideo, str]) -> str:
    cfg, video, out_dir = args
    write_video(Path(out_dir) / video.rel_path, render_video(cfg, video), cfg.fps, crf=cfg.crf)
    return video.id


def make_synthetic_dataset(
    out_dir: str | Path,
    cfg: SynthConfig = SynthConfig(),
    *,
    overwrite: bool = False,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> Manifest:
    """Generate the dataset of ``cfg`` under ``out_dir`` and return its manifest.

    A folder that already holds the same config's finished dataset is reused as is. A
    folder holding another finished synthetic dataset is refused unless ``overwrite`` (its
    ``videos/`` are then deleted and regenerated); an unfinished one (interrupted run) is
    regenerated; any other non-empty folder is refused. ``synth.json`` says
    ``"complete": false`` until every file is written. ``workers > 1`` renders
    and encodes videos in that many processes. ``progress`` is called with each finished id.
    """
    from .. import __version__

    cfg.check()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a folder")
    if is_complete(out_dir, cfg) and not overwrite:
        return read_manifest(out_dir / MANIFEST_NAME)
    side = read_sidecar(out_dir)
    if side is None and out_dir.is_dir() and any(out_dir.iterdir()):
        raise InputError(f"{out_dir} is not empty and does not hold a synthetic dataset; choose another folder")
    if side is not None and side.get("config_hash") != config_hash(cfg) and side.get("complete") and not overwrite:
        raise InputError(
            f"{out_dir} holds a synthetic dataset made with another config; pass --overwrite "
            "to replace it, or choose another folder"
        )
    # from here on the folder is ours: start clean, mark it as a generation in progress
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir / "videos", ignore_errors=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    sidecar = {"config": to_dict(cfg), "config_hash": config_hash(cfg), "toolkit_version": __version__}
    atomic_write_json(out_dir / SIDECAR_NAME, {**sidecar, "complete": False})

    manifest = build_manifest(cfg)
    plan = plan_dataset(cfg)
    jobs = [(cfg, v, str(out_dir)) for v in plan]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            for vid in pool.map(_generate_one, jobs):
                if progress:
                    progress(vid)
    else:
        for job in jobs:
            vid = _generate_one(job)
            if progress:
                progress(vid)

    write_manifest(manifest, out_dir / MANIFEST_NAME)
    events = {
        v.id: [{"start": s, "end": e, "label": EVENTS[v.label].code} for s, e in v.events] for v in plan if v.events
    }
    atomic_write_json(
        out_dir / SIDECAR_NAME,
        {**sidecar, "complete": True, "manifest_hash": manifest.content_hash(), "events": events},
    )
    return manifest


__all__ = [
    "EVENTS",
    "EventSpec",
    "MANIFEST_NAME",
    "SIDECAR_NAME",
    "PlannedVideo",
    "SynthConfig",
    "build_manifest",
    "is_complete",
    "list_events",
    "make_synthetic_dataset",
    "plan_dataset",
    "read_sidecar",
    "register_event",
    "render_video",
    "write_video",
]
