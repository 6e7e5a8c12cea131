"""Decoder backends (a registry: ``--decoder NAME``): what opens a video and decodes the frames
of its feature rows for :func:`~.reader.iter_video_blocks`.

- ``decord`` (the default): decord's ``VideoReader`` with one thread, frames by ``get_batch``
  (its read-ahead stopped between blocks, see :mod:`.reader`); the frame count and fps are the
  ones :mod:`dsan_toolkit.media.probe` reports.
- ``pyav``: PyAV (FFmpeg's libavcodec), threaded decoding (``thread_type = "AUTO"``), the
  stream decoded once, front to back, in presentation order; only the frames a row needs are
  converted to RGB24 (:mod:`.pyav_reader`).

``auto`` is resolved before a config is hashed (:func:`resolve_decoder`): the first backend of
:data:`AUTO_ORDER` whose module imports. Both backends give uint8 ``(n, H, W, 3)`` frames in
the same layout; a backend that cannot be used raises
:class:`~dsan_toolkit.media.probe.VideoError` with a kind of :mod:`dsan_toolkit.media.failures`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import InputError
from ..media.failures import UNDECODABLE
from ..media.native_log import capture_native_stderr
from ..media.probe import decord_call, open_video

AUTO = "auto"
DEFAULT_DECODER = "decord"


class OpenedVideo(Protocol):
    """A video a backend opened: its frame count and fps, and its frames by index."""

    num_frames: int
    fps: float

    def frame_shape(self) -> tuple[int, ...]:
        """``(H, W, 3)`` of a decoded frame."""
        ...

    def frames(self, indices: np.ndarray) -> np.ndarray:
        """uint8 ``(len(indices), H, W, 3)`` RGB frames of sorted, unique ``indices``."""
        ...

    def pause(self) -> None:
        """Called after each block, while the caller computes on it."""
        ...


@dataclass(frozen=True)
class DecoderBackend:
    name: str
    description: str
    module: str  # the Python module it needs (its distribution's version is recorded)
    distribution: str
    open: Callable[[str | Path], OpenedVideo]

    def available(self) -> bool:
        try:
            importlib.import_module(self.module)
        except ImportError:
            return False
        return True

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return str(getattr(importlib.import_module(self.module), "__version__", "unknown"))


_BACKENDS: dict[str, DecoderBackend] = {}
AUTO_ORDER = ("pyav", "decord")  # what ``auto`` tries: the fastest first (docs/benchmarks.md)


def register_decoder(
    name: str, description: str, module: str, distribution: str
) -> Callable[[Callable[[str | Path], OpenedVideo]], Callable[[str | Path], OpenedVideo]]:
    def deco(fn: Callable[[str | Path], OpenedVideo]) -> Callable[[str | Path], OpenedVideo]:
        if name in _BACKENDS or name == AUTO:
            raise ValueError(f"decoder {name!r} registered twice")
        _BACKENDS[name] = DecoderBackend(name, description, module, distribution, fn)
        return fn

    return deco


def list_decoders() -> list[str]:
    """The registered backends (``auto`` is not one; see :func:`decoder_choices`)."""
    return sorted(_BACKENDS)


def decoder_choices() -> list[str]:
    return [AUTO, *list_decoders()]


def get_decoder(name: str) -> DecoderBackend:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise InputError(f"--decoder must be one of {', '.join(decoder_choices())}, not {name!r}") from None


def resolve_decoder(name: str) -> str:
    """A backend that can run here: ``auto`` -> the first importable one of :data:`AUTO_ORDER`;
    a named one is checked (an :class:`InputError` when its module is not installed)."""
    if name == AUTO:
        for candidate in AUTO_ORDER:
            if get_decoder(candidate).available():
                return candidate
        raise InputError(f"no decoder backend is installed (install one of: {', '.join(AUTO_ORDER)})")
    backend = get_decoder(name)
    if not backend.available():
        raise InputError(f"--decoder {name}: its module {backend.module!r} is not installed")
    return name


def decoder_record(name: str) -> dict[str, str]:
    """``{"name", "version"}`` of a resolved backend, as a store records it."""
    return {"name": name, "version": get_decoder(name).version()}


class _DecordVideo:
    def __init__(self, path: str | Path) -> None:
        self.path = path
        self.vr, self.num_frames, self.fps = open_video(path)

    def frame_shape(self) -> tuple[int, ...]:
        # one frame (decord has no size query)
        return tuple(decord_call(self.path, UNDECODABLE, lambda: self.vr[0].shape, "frame 0"))

    def frames(self, indices: np.ndarray) -> np.ndarray:
        return decord_call(
            self.path,
            UNDECODABLE,
            lambda: self.vr.get_batch(indices.tolist()).asnumpy(),
            f"frames {int(indices[0])}..{int(indices[-1])}",
        )

    def pause(self) -> None:
        """After a sparse ``get_batch`` decord's decoding thread keeps decoding the frames that
        follow, and the next sparse call discards them: while the caller computes on a block,
        that costs up to ~0.2 s of CPU per pause (``docs/benchmarks.md``). Seeking to frame 0 (a
        key frame) stops it; the next call seeks to the key frame before its first frame, as it
        would anyway. Frames are unchanged (``tests/test_extract.py`` compares blocks with one
        call). Called after the last block too: the reader stays open while it is encoded."""
        try:
            with capture_native_stderr():  # its log, if any, is of no use: the frames are out
                self.vr.seek(0)
        except Exception:  # only a missed saving: the next get_batch seeks by itself
            pass


@register_decoder("decord", "decord VideoReader, one thread, get_batch per block", "decord", "decord")
def _open_decord(path: str | Path) -> OpenedVideo:
    return _DecordVideo(path)


@register_decoder("pyav", "PyAV (libavcodec), threaded decoding, one pass in presentation order", "av", "av")
def _open_pyav(path: str | Path) -> OpenedVideo:
    from .pyav_reader import PyAVVideo

    return PyAVVideo(path)


__all__ = [
    "AUTO",
    "AUTO_ORDER",
    "DEFAULT_DECODER",
    "DecoderBackend",
    "OpenedVideo",
    "decoder_choices",
    "decoder_record",
    "get_decoder",
    "list_decoders",
    "register_decoder",
    "resolve_decoder",
]
