"""Opening and probing a video file with decord: frame count, fps, resolution, decodability.

:func:`open_video` opens a file the one way both the probe and the extraction reader do (file
checks, then decord, its native log captured); ``probe_video(path)`` also reads the stream
metadata and decodes the first and last frames (``decode="all"`` decodes every frame, in
bounded chunks). Anything wrong raises :class:`VideoError`, an
:class:`~dsan_toolkit.errors.InputError` whose ``reason`` is one of :data:`REASONS` (the kinds
of :mod:`dsan_toolkit.media.failures`), with a one-line message naming the file.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..errors import InputError
from .failures import FILE_KINDS, UNDECODABLE, UNREADABLE, file_failure
from .native_log import MAX_DETAIL, capture_native_stderr, clean_native_text

DecodeMode = Literal["ends", "all"]
DECODE_MODES: tuple[str, ...] = ("ends", "all")
REASONS: tuple[str, ...] = FILE_KINDS  # missing, empty, unreadable, undecodable
_CHUNK = 64  # frames per decode call with decode="all" (bounded memory)
T = TypeVar("T")


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
    def from_dict(cls, d: dict[str, Any]) -> VideoProbe:
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
    """decord, with FFmpeg's console logging silenced (decord's own C++ log is captured by
    :func:`decord_call`): errors are raised instead."""
    global _quiet
    import decord

    if not _quiet:
        decord.logging.set_level(decord.logging.QUIET)
        _quiet = True
    return decord


# "Error reading a.mp4..." says nothing the path does not: the reason is in decord's log
_BARE_OPEN_ERROR = re.compile(r"^Error reading .*\.\.\.$")


def _exception_text(exc: BaseException) -> str:
    """decord's exception message without source locations, stack or a bare "Error reading"."""
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    text = clean_native_text(lines[0]) if lines else ""
    return "" if _BARE_OPEN_ERROR.match(text) else text


def failure_detail(exc: BaseException, native: str, path: str | Path) -> str:
    """One line: what decord logged about ``path`` during the failed call, then its exception."""
    parts = [p for p in (clean_native_text(native, path), _exception_text(exc)) if p]
    text = "; ".join(dict.fromkeys(parts)) or type(exc).__name__
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."


def decord_call(path: str | Path, kind: str, what: Callable[[], T], where: str = "") -> T:
    """``what()`` (a decord call on ``path``) with fd 2 captured; a failure raises
    :class:`VideoError` of ``kind`` whose detail carries decord's log of the call."""
    with capture_native_stderr() as log:
        try:
            return what()
        except Exception as exc:  # decord raises RuntimeError / DECORDError for any bad input
            error = exc
    detail = failure_detail(error, log.text, path)
    raise VideoError(path, kind, f"{where}: {detail}" if where else detail) from None


def open_video(path: str | Path, *, num_threads: int = 1) -> tuple[Any, int, float]:
    """``(reader, num_frames, fps)`` of a video decord can open; :class:`VideoError`
    (``missing``, ``empty``, ``unreadable``, or ``undecodable`` without frames) otherwise."""
    problem = file_failure(path)
    if problem is not None:
        raise VideoError(path, *problem)
    decord = _decord()

    def read() -> tuple[Any, int, float]:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=num_threads)
        return vr, len(vr), float(vr.get_avg_fps())

    vr, n, fps = decord_call(path, UNREADABLE, read)
    if n <= 0:
        raise VideoError(path, UNDECODABLE, "no video frames")
    return vr, n, fps


def probe_video(path: str | Path, *, decode: DecodeMode = "ends", num_threads: int = 1) -> VideoProbe:
    """Probe one video; raise :class:`VideoError` when it is missing or cannot be decoded."""
    if decode not in DECODE_MODES:
        raise InputError(f"decode must be one of {list(DECODE_MODES)}, got {decode!r}")
    path = Path(path)
    vr, n, fps = open_video(path, num_threads=num_threads)
    size = path.stat().st_size
    if not fps > 0:
        raise VideoError(path, UNDECODABLE, f"invalid frame rate {fps}")
    if decode == "all":
        for start in range(0, n, _CHUNK):
            stop = min(n, start + _CHUNK)
            decord_call(
                path,
                UNDECODABLE,
                lambda start=start, stop=stop: vr.get_batch(list(range(start, stop))),
                f"frames {start}..{stop - 1}",
            )
    batch = decord_call(path, UNDECODABLE, lambda: vr.get_batch([0, n - 1]).shape, f"frames 0 and {n - 1}")
    height, width = int(batch[1]), int(batch[2])
    return VideoProbe(num_frames=n, fps=fps, width=width, height=height, duration=n / fps, size=size)


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Keep what native code writes to fd 2 off the terminal for the whole block (bulk checks
    wrap their thread pools in it; each decord call of :func:`open_video`/:func:`probe_video`
    already captures its own log into the failure it raises). Python's ``sys.stderr`` keeps
    working (see :mod:`dsan_toolkit.media.native_log`)."""
    with capture_native_stderr():
        yield


__all__ = [
    "DECODE_MODES",
    "REASONS",
    "VideoError",
    "VideoProbe",
    "decord_call",
    "failure_detail",
    "open_video",
    "probe_video",
    "quiet_native_stderr",
]
