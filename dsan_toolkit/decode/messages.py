"""What the block reader says about a video (:func:`~.reader.iter_video_blocks`): small frozen
records that cross process boundaries (a DataLoader's worker queues) as they are.

A video gives :class:`VideoStart`, then :class:`FrameBlock` s in row order, then
:class:`VideoEnd`; or :class:`VideoFailed` at any point (the rows already sent are dropped with
the video). The extraction's model stage passes start, end and failure on to the store writer
and turns each block into feature rows (:class:`dsan_toolkit.extract.encoder.FeatureRows`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VideoStart:
    """A video opened: ``T`` rows will follow (``padded``: one row from fewer than L frames)."""

    id: str
    T: int
    num_frames: int
    fps: float
    padded: bool


@dataclass(frozen=True)
class FrameBlock:
    """The ``k`` encoded frames of each of rows ``[t0, t0 + rows)``: uint8 ``(rows * k, H, W, 3)``
    (a torch tensor, so that it crosses processes through shared memory)."""

    id: str
    t0: int
    rows: int
    k: int
    frames: Any

    def pin_memory(self) -> FrameBlock:
        """The same block with its frames in pinned memory (a DataLoader with ``pin_memory``
        calls this on each item it does not know how to pin)."""
        return dataclasses.replace(self, frames=self.frames.pin_memory())


@dataclass(frozen=True)
class VideoEnd:
    """The last row of the video was sent."""

    id: str


@dataclass(frozen=True)
class VideoFailed:
    """The video cannot be used: ``error`` is a reason of :mod:`dsan_toolkit.media.failures`
    (``"<kind>: <detail>"``); frame count and fps when they were known."""

    id: str
    error: str
    num_frames: int | None = None
    fps: float | None = None


DecodeMessage = VideoStart | FrameBlock | VideoEnd | VideoFailed

__all__ = ["DecodeMessage", "FrameBlock", "VideoEnd", "VideoFailed", "VideoStart"]
