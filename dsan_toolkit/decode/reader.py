"""Decoding the frames of feature rows in bounded blocks (runs in decode worker processes).

:func:`iter_video_blocks` opens one video with a decoder backend (:mod:`.backends`: decord by
default, or PyAV) and yields the messages of
:mod:`.messages`: :class:`~.messages.VideoStart`, then :class:`~.messages.FrameBlock` s (uint8
``(rows * k, H, W, 3)``, the ``k`` encoded frames of rows ``[t0, t0 + rows)``; at most
``block_bytes`` of frames, and ``block_frames`` frames when given, at least one row), then
:class:`~.messages.VideoEnd`; or :class:`~.messages.VideoFailed` when the video cannot be opened,
has no frame, or a block fails to decode. Its ``error`` is a reason of
:mod:`dsan_toolkit.media.failures` (``"<kind>: <detail>"``, the same kind as ``dsan verify``
gives the file); the decoder's log of the failed call is in the detail, not on the terminal
(:mod:`dsan_toolkit.media.native_log`). Between blocks the backend pauses (decord's read-ahead
is stopped there, see :meth:`~.backends.OpenedVideo.pause`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..media.failures import reason
from ..media.probe import VideoError
from .backends import DEFAULT_DECODER, get_decoder
from .messages import DecodeMessage, FrameBlock, VideoEnd, VideoFailed, VideoStart
from .snippets import row_count, snippet_frame_indices

BLOCK_BYTES = 64 * 2**20


def rows_per_block(
    k: int, frame_shape: tuple[int, ...], block_bytes: int = BLOCK_BYTES, block_frames: int | None = None
) -> int:
    """Rows per decoded block: as many as fit in ``block_bytes`` of uint8 frames (and in
    ``block_frames`` frames when given), at least one.

    Blocks are sized in bytes, not frames, because decord charges each pause between two sparse
    ``get_batch`` calls: while the caller computes, its decoding thread runs ahead (up to
    ~0.2 s of CPU per pause, measured in ``docs/benchmarks.md``) and that work is discarded
    at the next sparse call. Few, large calls per video keep that waste small; the byte
    budget keeps memory bounded whatever the resolution and length.
    """
    frame_bytes = max(1, int(np.prod(frame_shape)))
    frames = block_bytes // frame_bytes
    if block_frames is not None:
        frames = min(frames, block_frames)
    return max(1, frames // k)


def iter_video_blocks(
    video_id: str,
    path: str | Path,
    *,
    rule: str,
    snippet_len: int = 16,
    block_frames: int | None = None,
    block_bytes: int = BLOCK_BYTES,
    decoder: str = DEFAULT_DECODER,
) -> Iterator[DecodeMessage]:
    import torch

    try:
        video = get_decoder(decoder).open(path)
        n, fps = video.num_frames, video.fps
    except VideoError as exc:
        yield VideoFailed(video_id, reason(exc.reason, exc.detail))
        return
    T, padded = row_count(n, snippet_len)
    idx = snippet_frame_indices(rule, n, snippet_len)
    k = idx.shape[1]
    try:
        shape = video.frame_shape()
    except VideoError as exc:
        yield VideoFailed(video_id, reason(exc.reason, exc.detail), n, fps)
        return
    rows = rows_per_block(k, shape, block_bytes, block_frames)
    yield VideoStart(video_id, T, n, fps, padded)
    for t0 in range(0, T, rows):
        sel = idx[t0 : t0 + rows].reshape(-1)
        uniq, inverse = np.unique(sel, return_inverse=True)
        try:
            frames = video.frames(uniq)
        except VideoError as exc:
            yield VideoFailed(video_id, reason(exc.reason, exc.detail), n, fps)
            return
        video.pause()  # also after the last block: the reader lives while it is encoded
        if len(uniq) != len(sel):
            frames = frames[inverse]
        yield FrameBlock(video_id, t0, len(sel) // k, k, torch.from_numpy(np.ascontiguousarray(frames)))
    yield VideoEnd(video_id)
