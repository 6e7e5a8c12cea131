"""Rendering the frames of a planned video: a panning texture with dim blobs drifting over it,
and the video's events painted by their renderers (:mod:`.events`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .events import EVENTS
from .plan import PlannedVideo, SynthConfig, video_rng


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
    def draw(cls, rng: np.random.Generator, h: int, w: int) -> Background:
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


CHUNK_FRAMES = 32  # frames rendered at a time: small buffers stay in cache


def render_video(cfg: SynthConfig, video: PlannedVideo) -> np.ndarray:
    """The frames of one planned video: (T, H, W, 3) uint8.

    Rendered in chunks of :data:`CHUNK_FRAMES` frames into a reused float buffer (big
    fresh float arrays cost more in page faults than the drawing itself). Each event
    interval has its own seed, so its renderer draws the same parameters for every chunk.
    """
    kind = 0 if video.label == "normal" else 1
    rng = video_rng(cfg, video.split, kind, video.index)
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


__all__ = ["CHUNK_FRAMES", "Background", "render_video"]
