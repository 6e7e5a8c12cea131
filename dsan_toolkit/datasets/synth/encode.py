"""Encoding frames as an H.264 ``.mp4`` with PyAV: deterministic (one x264 thread), atomic."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...utils.atomic import atomic_path


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


__all__ = ["fps_fraction", "write_video"]
