"""Ground truth for evaluation, built per video from manifest segments and the store's T.

The official code (``list/make_gt_*.py`` of VadCLIP/DSANet) concatenates one frame vector per
test video: zeros of length ``(T + 1) * 16``, every annotated interval ``[s, e)`` set to 1, then
the last 16 frames dropped. That is the same as a vector of length ``T * 16`` with the
intervals cut at ``T * 16``, which is what :func:`frame_gt` builds (from
``VideoRecord.gt_intervals()``: the segments, or the separate frame-level intervals where a
dataset's official frame ground truth differs from them, as XD-Violence's does) (vectorised over all videos
with a difference array, no pickled files, no dependence on CSV row order).

Detection-mAP ground truth keeps the raw, uncut intervals (the official code does too): see
:func:`segment_table`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..manifest import Manifest, VideoRecord


@dataclass(frozen=True)
class SegmentTable:
    """All annotated intervals of a list of videos, in video order then manifest order.

    ``video`` indexes the video list, ``start``/``end`` are raw frame indices (``[start, end)``,
    not cut to the features' length) and ``label`` is the class index in the manifest's class
    table.
    """

    video: np.ndarray
    start: np.ndarray
    end: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return int(self.video.size)


def check_lengths(videos: Sequence[VideoRecord], lengths: Mapping[str, int]) -> np.ndarray:
    """The number of snippets T of each video (int64), refusing missing or non-positive T."""
    missing = [v.id for v in videos if v.id not in lengths]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"no length (number of snippets) given for {len(missing)} video(s): {shown}")
    t = np.fromiter((int(lengths[v.id]) for v in videos), dtype=np.int64, count=len(videos))
    bad = np.flatnonzero(t < 1)
    if bad.size:
        raise InputError(f"video {videos[int(bad[0])].id!r} has {int(t[bad[0]])} snippets; need at least 1")
    return t


def segment_table(manifest: Manifest, videos: Sequence[VideoRecord]) -> SegmentTable:
    """The annotated segments of ``videos`` as flat arrays (raw intervals, class indices)."""
    index = manifest.class_index()
    rows = [(i, s.start, s.end, s.label) for i, v in enumerate(videos) for s in v.segments]
    unknown = sorted({lab for *_, lab in rows if lab not in index})
    if unknown:
        raise InputError(f"segment classes {unknown} are not in manifest {manifest.name!r}")
    n = len(rows)
    return SegmentTable(
        video=np.fromiter((r[0] for r in rows), dtype=np.int64, count=n),
        start=np.fromiter((r[1] for r in rows), dtype=np.int64, count=n),
        end=np.fromiter((r[2] for r in rows), dtype=np.int64, count=n),
        label=np.fromiter((index[r[3]] for r in rows), dtype=np.int64, count=n),
    )


def intervals_to_frames(num_frames: np.ndarray, video: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Concatenated 0/1 frame vectors (float32): video ``i`` has ``num_frames[i]`` frames and
    every interval ``[start, end)`` of it set to 1, cut at the video's end."""
    num_frames = np.asarray(num_frames, dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(num_frames)))
    total = int(offsets[-1])
    if np.any(np.asarray(start) < 0):
        raise InputError("a ground-truth interval starts before frame 0")
    n = num_frames[video]
    lo = offsets[video] + np.minimum(start, n)
    hi = offsets[video] + np.clip(end, 0, n)
    keep = hi > lo
    diff = np.zeros(total + 1, dtype=np.int64)
    np.add.at(diff, lo[keep], 1)
    np.add.at(diff, hi[keep], -1)
    return (np.cumsum(diff[:-1]) > 0).astype(np.float32)


def frame_gt(
    manifest: Manifest, videos: Sequence[VideoRecord], lengths: Mapping[str, int], *, snippet_len: int | None = None
) -> np.ndarray:
    """Frame-level ground truth of ``videos`` concatenated in order, as the official code
    builds it: video ``i`` contributes ``T_i * snippet_len`` frames (float32 0/1)."""
    snip = manifest.info.snippet_len if snippet_len is None else int(snippet_len)
    t = check_lengths(videos, lengths)
    rows = [(i, a, b) for i, v in enumerate(videos) for a, b in v.gt_intervals()]
    video, start, end = (np.array([r[k] for r in rows], dtype=np.int64) for k in range(3))
    return intervals_to_frames(t * snip, video, start, end)


def video_frame_gt(
    manifest: Manifest, video: VideoRecord | str, num_snippets: int, *, snippet_len: int | None = None
) -> np.ndarray:
    """Frame-level ground truth of one video (length ``num_snippets * snippet_len``)."""
    v = manifest.video(video) if isinstance(video, str) else video
    return frame_gt(manifest, [v], {v.id: num_snippets}, snippet_len=snippet_len)


def snippet_gt(frame_labels: np.ndarray, snippet_len: int = 16) -> np.ndarray:
    """Snippet-level labels from frame labels: the fraction of anomalous frames in each
    snippet (float32 in [0, 1]); ``> 0`` is "any frame anomalous", ``>= 0.5`` the majority."""
    f = np.asarray(frame_labels)
    if f.ndim != 1 or f.size % snippet_len:
        raise InputError(f"frame labels of length {f.size} are not a whole number of {snippet_len}-frame snippets")
    return (f.reshape(-1, snippet_len) > 0).mean(axis=1, dtype=np.float64).astype(np.float32)


def video_is_anomalous(manifest: Manifest, videos: Sequence[VideoRecord]) -> np.ndarray:
    """Boolean per video: does it carry an anomaly label."""
    return np.fromiter((manifest.is_anomalous(v) for v in videos), dtype=bool, count=len(videos))
