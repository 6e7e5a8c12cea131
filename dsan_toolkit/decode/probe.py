"""Probing a video file with decord: frame count, fps, resolution, decodability.

``probe_video(path)`` opens the file, reads its stream metadata and decodes the first and
last frames (``decode="all"`` decodes every frame, in bounded chunks). Anything wrong
raises :class:`VideoError`, an :class:`~dsan_toolkit.errors.InputError` whose ``reason``
is one of :data:`REASONS`, with a one-line message naming the file.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

from ..errors import InputError

DecodeMode = Literal["ends", "all"]
DECODE_MODES: tuple[str, ...] = ("ends", "all")
# missing: no such file; empty: zero bytes; unreadable: not a file decord can open
# (not a video, truncated container); undecodable: opens but frames fail to decode.
REASONS: tuple[str, ...] = ("missing", "empty", "unreadable", "undecodable")
_CHUNK = 64  # frames per decode call with decode="all" (bounded memory)


class VideoError(InputError):
    """A video that cannot be used; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, path: str | Path, reason: str, detail: str) -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {reason} ({detail})")


@dataclass(frozen=True)
class VideoProbe:
    """What decord sees in a video file."""

    num_frames: int
    fps: float
    width: int
    height: int
    duration: float  # seconds: num_frames / fps
    size: int  # bytes on disk

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VideoProbe":
        return cls(
            num_frames=int(d["num_frames"]),
            fps=float(d["fps"]),
            width=int(d["width"]),
            height=int(d["height"]),
            duration=float(d["duration"]),
            size=int(d["size"]),
        )


_quiet = False


def _decord() -> Any:
    """decord, with its (and FFmpeg's) console logging silenced: errors are raised instead."""
    global _quiet
    import decord

    if not _quiet:
        decord.logging.set_level(decord.logging.QUIET)
        _quiet = True
    return decord


def _short(exc: BaseException) -> str:
    """decord's messages carry a C++ source location and a stack: keep the reason."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "] " in text and text.startswith("["):
        text = text.split("] ", 1)[1]
    if ".cc:" in text and ": " in text:
        text = text.split(": ", 1)[1]
    return text[:200]


def probe_video(path: str | Path, *, decode: DecodeMode = "ends", num_threads: int = 1) -> VideoProbe:
    """Probe one video; raise :class:`VideoError` when it is missing or cannot be decoded."""
    if decode not in DECODE_MODES:
        raise InputError(f"decode must be one of {list(DECODE_MODES)}, got {decode!r}")
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise VideoError(path, "missing", "no such file") from None
    except OSError as exc:
        raise VideoError(path, "unreadable", exc.strerror or str(exc)) from None
    if not path.is_file():
        raise VideoError(path, "unreadable", "not a regular file")
    if size == 0:
        raise VideoError(path, "empty", "zero bytes")
    decord = _decord()
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=num_threads)
        n = len(vr)
        fps = float(vr.get_avg_fps())
    except Exception as exc:  # decord raises RuntimeError / DECORDError for any bad input
        raise VideoError(path, "unreadable", _short(exc)) from None
    if n <= 0:
        raise VideoError(path, "undecodable", "no video frames")
    if not fps > 0:
        raise VideoError(path, "undecodable", f"invalid frame rate {fps}")
    try:
        if decode == "all":
            for start in range(0, n, _CHUNK):
                batch = vr.get_batch(list(range(start, min(n, start + _CHUNK)))).shape
        ends = vr.get_batch([0, n - 1])
        batch = ends.shape
    except Exception as exc:
        raise VideoError(path, "undecodable", _short(exc)) from None
    height, width = int(batch[1]), int(batch[2])
    return VideoProbe(num_frames=n, fps=fps, width=width, height=height, duration=n / fps, size=size)


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what native code (decord's C++ logger) writes to file descriptor 2.

    decord logs every file it cannot open before raising; the error is reported anyway,
    so bulk checks wrap their work in this. Python-level ``sys.stderr`` is left alone when
    it is not fd 2 (e.g. captured by a test runner); otherwise it is flushed first.
    """
    try:
        fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


__all__ = ["DECODE_MODES", "REASONS", "VideoError", "VideoProbe", "probe_video", "quiet_native_stderr"]
