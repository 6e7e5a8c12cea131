"""The anomaly classes of the synthetic dataset: a registry of event renderers.

A renderer paints an event into frames in place (see :data:`Renderer`); ``fire``, ``fight`` and
``crash`` are built in, :func:`register_event` adds others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

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


__all__ = ["EVENTS", "EventSpec", "Renderer", "list_events", "register_event"]
