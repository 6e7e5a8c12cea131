"""The ``pyav`` decoder backend: a video decoded with PyAV (FFmpeg's libavcodec).

The frame count is the stream's (``nb_frames``, as decord reads it; by counting the demuxed
packets when the container does not say), the fps its average frame rate (decord's
``get_avg_fps``). Frame ``i`` is the ``i``-th frame the decoder outputs, i.e. presentation
order, as decord indexes them. The stream is decoded once, front to back, with FFmpeg's own
threads (``thread_type = "AUTO"``); blocks ask for increasing indices, so each block goes on
where the last one stopped (an earlier index reopens the file). Only the frames asked for are
converted to RGB24 (``to_ndarray(format="rgb24")``). Failures raise
:class:`~dsan_toolkit.media.probe.VideoError` of the kinds of :mod:`dsan_toolkit.media.failures`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..media.failures import UNDECODABLE, UNREADABLE, file_failure
from ..media.native_log import MAX_DETAIL, capture_native_stderr, clean_native_text
from ..media.probe import VideoError

T = TypeVar("T")
# "[Errno 1094995529] Invalid data found when processing input: '/x/a.mp4'" -> the middle
_AV_MESSAGE = re.compile(r"^(?:\[Errno -?\d+\] )?(.*?)(?:: '[^']*')?$")


def _message(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    match = _AV_MESSAGE.match(lines[0]) if lines else None
    return match.group(1) if match else ""


def av_call(path: str | Path, kind: str, what: Callable[[], T], where: str = "") -> T:
    """``what()`` (a PyAV call on ``path``); any failure raises :class:`VideoError` of ``kind``
    whose detail is PyAV's message (FFmpeg's log of the call, if any, kept off the terminal)."""
    with capture_native_stderr() as log:
        try:
            return what()
        except VideoError:
            raise
        except Exception as exc:  # av.error.FFmpegError and its kin, or a broken stream
            error = exc
    parts = [p for p in (_message(error), clean_native_text(log.text, path)) if p]
    detail = "; ".join(dict.fromkeys(parts)) or type(error).__name__
    if len(detail) > MAX_DETAIL:
        detail = detail[: MAX_DETAIL - 3] + "..."
    raise VideoError(path, kind, f"{where}: {detail}" if where else detail) from None


class PyAVVideo:
    """One video opened with PyAV (see the module doc)."""

    def __init__(self, path: str | Path) -> None:
        problem = file_failure(path)
        if problem is not None:
            raise VideoError(path, *problem)
        self.path = path
        self._container: Any = None
        self._decoded: Iterator[Any] | None = None
        self._next = 0  # index of the next frame the decoder outputs
        av_call(path, UNREADABLE, self._open)
        stream = self._container.streams.video[0]
        ctx = stream.codec_context
        self.height, self.width = int(ctx.height), int(ctx.width)
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        n = int(stream.frames or 0)
        if n <= 0:  # the container does not say: count the packets (no decoding)
            n = av_call(path, UNREADABLE, self._count_packets)
        self.num_frames = n
        if n <= 0:
            raise VideoError(path, UNDECODABLE, "no video frames")
        if self.height <= 0 or self.width <= 0:
            raise VideoError(path, UNDECODABLE, f"invalid frame size {self.width}x{self.height}")

    def _open(self) -> None:
        import av

        if self._container is not None:
            self._container.close()
        self._container = av.open(str(self.path))
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(self.path, UNDECODABLE, "no video stream")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        self._decoded = None
        self._next = 0

    def _count_packets(self) -> int:
        stream = self._container.streams.video[0]
        n = sum(1 for p in self._container.demux(stream) if p.size > 0)
        self._open()
        return n

    def frame_shape(self) -> tuple[int, ...]:
        return (self.height, self.width, 3)

    def frames(self, indices: np.ndarray) -> np.ndarray:
        where = f"frames {int(indices[0])}..{int(indices[-1])}"
        return av_call(self.path, UNDECODABLE, lambda: self._frames(indices), where)

    def _frames(self, indices: np.ndarray) -> np.ndarray:
        if int(indices[0]) < self._next:  # an earlier frame: decode again from the start
            self._open()
        if self._decoded is None:
            stream = self._container.streams.video[0]
            self._decoded = iter(self._container.decode(stream))
        out = np.empty((len(indices), self.height, self.width, 3), dtype=np.uint8)
        for j, want in enumerate(indices.tolist()):
            while True:
                frame = next(self._decoded, None)
                if frame is None:
                    raise VideoError(
                        self.path, UNDECODABLE, f"the stream ends after {self._next} frames, frame {want} asked"
                    )
                i = self._next
                self._next += 1
                if i == want:
                    break
            rgb = frame.to_ndarray(format="rgb24")
            if rgb.shape != out.shape[1:]:
                raise VideoError(
                    self.path,
                    UNDECODABLE,
                    f"frame {want} is {rgb.shape[1]}x{rgb.shape[0]}, not {self.width}x{self.height}",
                )
            out[j] = rgb
        return out

    def pause(self) -> None:
        """Nothing runs between blocks (FFmpeg's threads wait for the next packet)."""

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


__all__ = ["PyAVVideo", "av_call"]
